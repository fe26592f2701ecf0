import assert from 'node:assert/strict';
import type { Conntrack } from '../../src/conntrack/exec.js';
import { Daemon } from '../../src/daemon.js';
import { silentLogger } from '../../src/log.js';
import { FakeNft } from '../../src/rules/nft/fake.js';
import { FakeClock } from '../support/fake-clock.js';
import { node, service, slice } from '../support/objects.js';
import { waitFor } from '../support/wait-for.js';
import { HandSource, testDaemonConfig } from '../support/daemon-harness.js';

/** A Conntrack whose listings hang until released: a cleanup stays in flight while syncs go on. */
class HeldConntrack implements Conntrack {
  listings = 0;
  #release: Array<() => void> = [];
  async listUdp(): Promise<void> {
    this.listings++;
    await new Promise<void>((resolve) => this.#release.push(resolve));
  }
  async deleteUdp(): Promise<number> {
    return 0;
  }
  releaseAll(): void {
    for (const r of this.#release.splice(0)) r();
  }
}

/** The daemon's wiring of the cleanup (the cleanup itself: reconciler.test.ts, test/kernel/). */
describe('Daemon: stale UDP conntrack cleanup wiring', () => {
  const NODE = 'node-a';
  const flags = (mode: string) =>
    testDaemonConfig(NODE, ['--proxy-mode', mode, '--userspace-bind', 'loopback']);
  const dnsSlice = (ips: string[]) =>
    slice(
      'default',
      'dns-a',
      'dns',
      [{ port: 5353, protocol: 'UDP' }],
      ips.map((ip) => ({ ip, nodeName: NODE })),
    );

  it('cleans in the background after nftables syncs: the next sync does not wait for it', async () => {
    const clock = new FakeClock();
    const source = new HandSource();
    const conntrack = new HeldConntrack();
    const daemon = new Daemon(flags('nftables'), {
      log: silentLogger(),
      env: { localAddresses: ['10.0.0.1'] },
      nft: new FakeNft(),
      source,
      clock,
      conntrack,
    });
    try {
      await daemon.start();
      const h = source.handler!;
      h.upsert('Node', node(NODE, ['10.0.0.1']));
      h.upsert(
        'Service',
        service('default', 'dns', {
          clusterIP: '10.96.0.10',
          ports: [{ port: 53, protocol: 'UDP', targetPort: 5353 }],
        }),
      );
      h.upsert('EndpointSlice', dnsSlice(['10.244.1.11', '10.244.1.12']));
      h.synced();
      await clock.advance(0);
      assert.equal(daemon.syncs, 1);
      assert.equal(conntrack.listings, 1, 'the first sync started a cleanup');
      // The cleanup hangs; two more syncs happen anyway, and queue one more cleanup.
      h.upsert('EndpointSlice', dnsSlice(['10.244.1.12']));
      await clock.advance(0);
      h.upsert('EndpointSlice', dnsSlice(['10.244.1.13']));
      await clock.advance(0);
      assert.equal(daemon.syncs, 3);
      assert.equal(conntrack.listings, 1);
      conntrack.releaseAll();
      await waitFor(() => conntrack.listings === 2, { what: 'one more cleanup for both changes' });
      conntrack.releaseAll();
      await daemon.conntrack!.idle();
    } finally {
      conntrack.releaseAll();
      await daemon.stop();
    }
  });

  it('has nothing to clean in userspace mode (no DNAT)', () => {
    const daemon = new Daemon(flags('userspace'), {
      log: silentLogger(),
      env: { localAddresses: ['10.0.0.1'] },
      nft: new FakeNft(),
      source: new HandSource(),
      conntrack: new HeldConntrack(),
    });
    assert.equal(daemon.conntrack, undefined);
  });

  it('has nothing to clean without a conntrack', () => {
    const daemon = new Daemon(flags('nftables'), {
      log: silentLogger(),
      env: { localAddresses: ['10.0.0.1'] },
      nft: new FakeNft(),
      source: new HandSource(),
    });
    assert.equal(daemon.conntrack, undefined);
  });
});
