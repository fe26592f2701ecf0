import assert from 'node:assert/strict';
import type { V1Node } from '@kubernetes/client-node';
import { Daemon } from '../src/daemon.js';
import { createLogger } from '../src/log.js';
import { FakeNft } from '../src/rules/nft/fake.js';
import { FakeClock } from './support/fake-clock.js';
import { node, service, slice } from './support/objects.js';
import { HandSource, testDaemonConfig } from './support/daemon-harness.js';

/** The daemon with --detect-local-mode over a FakeNft and a fake clock. */
describe('Daemon: --detect-local-mode', () => {
  const NODE = 'node-a';
  const withPodCIDRs = (cidrs: string[]): V1Node => ({
    ...node(NODE, ['10.0.0.1']),
    spec: cidrs.length ? { podCIDR: cidrs[0], podCIDRs: cidrs } : {},
  });

  async function started(flags: string[]) {
    const clock = new FakeClock();
    const nft = new FakeNft();
    const source = new HandSource();
    const lines: Array<{ msg?: string; node?: string }> = [];
    const log = createLogger({ destination: { write: (line: string) => void lines.push(JSON.parse(line)) } });
    const config = testDaemonConfig(NODE, [...flags]);
    const daemon = new Daemon(config, { log, env: { localAddresses: ['10.0.0.1'] }, nft, source, clock });
    await daemon.start();
    const h = source.handler!;
    h.upsert('Service', service('default', 'web', { clusterIP: '10.96.0.10', ports: [{ port: 80 }] }));
    h.upsert('EndpointSlice', slice('default', 'web-a', 'web', [{ port: 8080 }], [{ ip: '10.244.1.11' }]));
    return { clock, nft, h, daemon, lines };
  }

  it('NodeCIDR: programs nothing until the Node has pod CIDRs, says so once, then follows them', async () => {
    const { clock, nft, h, daemon, lines } = await started(['--detect-local-mode', 'NodeCIDR']);
    try {
      h.upsert('Node', withPodCIDRs([]));
      h.synced();
      await clock.advance(0);
      h.upsert('EndpointSlice', slice('default', 'web-a', 'web', [{ port: 8080 }], [{ ip: '10.244.1.12' }]));
      await clock.advance(0);
      assert.equal(daemon.syncs, 0, 'nothing applied without the pod CIDRs');
      assert.equal(nft.dump(), '');
      const waits = lines.filter((l) => /waiting for the Node's spec.podCIDRs/.test(l.msg ?? ''));
      assert.equal(waits.length, 1, 'the wait is logged once');
      assert.equal(waits[0]!.node, NODE);

      h.upsert('Node', withPodCIDRs(['10.244.1.0/24', 'fd00:244:1::/64']));
      await clock.advance(0);
      assert.equal(daemon.syncs, 1);
      const v4 = await nft.list('ip', 'kube-nftproxy');
      assert.match(v4, /ip saddr != \{ 10\.244\.1\.0\/24 \} jump mark-for-masquerade/);

      // The CIDRs of a Node made again: the rules follow (kube-proxy would restart for it).
      h.upsert('Node', withPodCIDRs(['10.244.7.0/24']));
      await clock.advance(0);
      const after = await nft.list('ip', 'kube-nftproxy');
      assert.match(after, /ip saddr != \{ 10\.244\.7\.0\/24 \} jump mark-for-masquerade/);
      assert.doesNotMatch(after, /10\.244\.1\.0\/24/);

      // /debug/trace tells this node's pods from others by the same CIDRs.
      const port = daemon.servers!.metrics.port;
      const traced = async (src: string) =>
        (await (
          await fetch(`http://127.0.0.1:${port}/debug/trace?src=${src}&dst=10.96.0.10&port=80&proto=tcp`)
        ).json()) as { masquerade?: boolean };
      assert.equal((await traced('10.244.7.5')).masquerade, false);
      assert.equal((await traced('10.244.1.5')).masquerade, true);
    } finally {
      await daemon.stop();
    }
  });

  it('InterfaceNamePrefix: /debug/trace decides by iif', async () => {
    const { clock, h, daemon } = await started([
      '--detect-local-mode',
      'InterfaceNamePrefix',
      '--pod-interface-name-prefix',
      'cali',
    ]);
    try {
      h.upsert('Node', withPodCIDRs([]));
      h.synced();
      await clock.advance(0);
      assert.equal(daemon.syncs, 1, 'no pod CIDRs needed');
      const port = daemon.servers!.metrics.port;
      const traced = async (query: string) => {
        const res = await fetch(
          `http://127.0.0.1:${port}/debug/trace?src=10.244.1.5&dst=10.96.0.10&port=80&proto=tcp&${query}`,
        );
        return {
          status: res.status,
          body: (await res.json()) as { masquerade?: boolean; parameter?: string },
        };
      };
      assert.equal((await traced('iif=cali1234')).body.masquerade, false);
      assert.equal((await traced('iif=eth0')).body.masquerade, true);
      const bad = await traced('iif=cali%22%20accept');
      assert.equal(bad.status, 400);
      assert.equal(bad.body.parameter, 'iif');
    } finally {
      await daemon.stop();
    }
  });
});
