import assert from 'node:assert/strict';
import { buildState } from '../../src/model/build-state.js';
import { silentLogger } from '../../src/log.js';
import { NftApplier } from '../../src/rules/applier.js';
import { compile } from '../../src/rules/compile.js';
import { createNft } from '../../src/rules/nft/exec.js';
import { LAB, Lab } from '../../scripts/lab/index.js';
import { requireKernel } from '../support/capabilities.js';
import { service, slice } from '../support/objects.js';

/**
 * sessionAffinity ClientIP and Maglev through the real kernel, synced by the applier as the
 * daemon does (partial transactions after the first).
 */
describe('kernel: session affinity and Maglev', function () {
  this.timeout(240_000);
  let lab: Lab;
  let applier: NftApplier;
  const pods = ['10.244.1.31', '10.244.1.32', '10.244.1.33', '10.244.1.34'];
  const names = ['e1', 'e2', 'e3', 'e4'];
  /** The Maglev Service's external IPs: its frontends share one table. */
  const externalIPs = ['192.0.2.71', '192.0.2.72', '192.0.2.73'];

  const sync = async (sticky: string[], maglev: string[]) => {
    const eps = (ips: string[]) => ips.map((ip) => ({ ip, nodeName: LAB.nodeName }));
    const state = buildState(
      {
        services: [
          service('ns', 'sticky', {
            clusterIP: '10.96.1.1',
            sessionAffinity: 'ClientIP',
            ports: [
              { name: 't', port: 80 },
              { name: 'u', port: 53, protocol: 'UDP' },
            ],
          }),
          service(
            'ns',
            'mg',
            { clusterIP: '10.96.1.2', externalIPs, ports: [{ port: 80 }] },
            { annotations: { 'kube-nftproxy.io/lb-algorithm': 'maglev' } },
          ),
        ],
        slices: [
          slice(
            'ns',
            'sticky-1',
            'sticky',
            [
              { name: 't', port: 8080 },
              { name: 'u', port: 5353, protocol: 'UDP' },
            ],
            eps(sticky),
          ),
          slice('ns', 'mg-1', 'mg', [{ port: 8080 }], eps(maglev)),
        ],
      },
      { nodeName: LAB.nodeName, nodeIPs: [LAB.nodeIp], lbAlgorithm: 'random' },
    );
    return applier.sync(
      compile(state, {
        table: 'kube-nftproxy',
        clusterCIDRs: [LAB.clusterCidr],
        masqueradeAll: false,
        serviceCIDRs: [],
        nodePortIPs: { ipv4: [], ipv6: [] },
        maglevSeed: 42,
      }),
    );
  };

  before(async function () {
    requireKernel(this);
    lab = await Lab.create();
    for (const [i, ip] of pods.entries()) {
      await lab.addPod(names[i]!, { ip });
      await lab.serve(names[i]!, { tcp: [8080], udp: [5353] });
    }
    await lab.addPod('client-a', { ip: '10.244.1.60' });
    await lab.addPod('client-b', { ip: '10.244.1.61' });
    applier = new NftApplier({ nft: createNft({ netns: lab.nodeNs }), log: silentLogger() });
    await sync(pods.slice(0, 3), pods);
  });
  after(async () => lab?.destroy());

  const only = (r: { answers: Map<string, number> }): string => {
    assert.equal(r.answers.size, 1, `one endpoint, got ${JSON.stringify([...r.answers])}`);
    return [...r.answers.keys()][0]!;
  };

  it('keeps every connection of one client on one endpoint, TCP and UDP', async () => {
    const a = only(await lab.probe('client-a', { dst: '10.96.1.1', port: 80, proto: 'tcp' }));
    only(await lab.probe('client-b', { dst: '10.96.1.1', port: 80, proto: 'tcp' }));
    assert.equal(
      only(await lab.probe('client-a', { dst: '10.96.1.1', port: 80, proto: 'tcp', count: 10 })),
      a,
    );
    only(await lab.probe('client-a', { dst: '10.96.1.1', port: 53, proto: 'udp' }));
  });

  it('moves a client whose endpoint is removed, and only to endpoints that remain', async () => {
    const a = only(await lab.probe('client-a', { dst: '10.96.1.1', port: 80, proto: 'tcp', count: 5 }));
    const remaining = pods.slice(0, 3).filter((_, i) => names[i] !== a);
    const result = await sync(remaining, pods);
    assert.equal(result.full, false);
    assert.match(
      applier.lastTransaction,
      /delete element ip kube-nftproxy affinity-tcp /,
      'the stale entry goes',
    );
    const after = only(await lab.probe('client-a', { dst: '10.96.1.1', port: 80, proto: 'tcp' }));
    assert.notEqual(after, a);
    assert.ok(remaining.includes(pods[names.indexOf(after)]!));
  });

  it('Maglev: every frontend of a Service picks the same endpoint for the same client flow', async () => {
    const ports = Array.from({ length: 12 }, (_, i) => 42000 + i);
    const picked = new Set<string>();
    for (const srcPort of ports) {
      const answers = new Set<string>();
      for (const dst of ['10.96.1.2', ...externalIPs])
        answers.add(only(await lab.probe('client-a', { dst, port: 80, proto: 'tcp', srcPort, count: 1 })));
      assert.equal(answers.size, 1, `source port ${srcPort}: ${[...answers].join(', ')}`);
      picked.add([...answers][0]!);
    }
    assert.ok(picked.size >= 2, 'flows spread over several endpoints');
  });

  it('Maglev: a flow keeps its endpoint across a sync that removes another endpoint', async () => {
    const ports = Array.from({ length: 24 }, (_, i) => 41000 + i);
    const before = new Map<number, string>();
    for (const srcPort of ports)
      before.set(
        srcPort,
        only(await lab.probe('client-a', { dst: '10.96.1.2', port: 80, proto: 'tcp', srcPort, count: 2 })),
      );
    assert.ok(new Set(before.values()).size >= 2, 'flows spread over several endpoints');
    // remove the endpoint that the fewest flows use, so that most flows must stay put
    const counts = names.map((n) => [...before.values()].filter((v) => v === n).length);
    const victim = names[counts.indexOf(Math.min(...counts.filter((c) => c > 0)))]!;
    await sync(
      pods.slice(0, 3),
      pods.filter((_, i) => names[i] !== victim),
    );
    let moved = 0;
    for (const srcPort of ports) {
      const now = only(
        await lab.probe('client-a', { dst: '10.96.1.2', port: 80, proto: 'tcp', srcPort, count: 1 }),
      );
      if (before.get(srcPort) === victim) assert.notEqual(now, victim);
      else if (now !== before.get(srcPort)) moved++;
    }
    // Maglev moves about 1/N of the slots plus a fraction of a percent: with 24 flows, at most one
    // flow of a surviving endpoint may move by that margin.
    assert.ok(moved <= 1, `${moved} flows of surviving endpoints moved`);
  });
});
