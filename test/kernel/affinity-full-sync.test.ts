import assert from 'node:assert/strict';
import { silentLogger } from '../../src/log.js';
import { cleanupTables, NftApplier } from '../../src/rules/applier.js';
import { createNft, type Nft } from '../../src/rules/nft/exec.js';
import { Lab } from '../../scripts/lab/index.js';
import { requireKernel } from '../support/capabilities.js';
import { deleteStaleFlows, labRules, STICKY_PORTS, stickyService } from '../support/lab-rules.js';

/**
 * sessionAffinity ClientIP across full syncs in the real kernel. A full sync (start, restart,
 * after a failure, hourly) replaces our tables in one transaction, affinity maps included:
 * kube-proxy never drops its sticky clients that way, so the applier puts back the entries
 * that still hold, with the time they had left, and leaves out those of removed endpoints.
 */
describe('kernel: session affinity across full syncs', function () {
  this.timeout(180_000);
  const VIP = '10.96.12.10';
  const TABLE = 'kube-nftproxy';
  const pods = { p1: '10.244.1.31', p2: '10.244.1.32', p3: '10.244.1.33' } as const;
  type Pod = keyof typeof pods;
  const clients = { c1: '10.244.1.61', c2: '10.244.1.62', c3: '10.244.1.63', c4: '10.244.1.64' } as const;
  type Client = keyof typeof clients;
  let lab: Lab;
  let nft: Nft;

  before(async function () {
    requireKernel(this);
    lab = await Lab.create();
    for (const [name, ip] of Object.entries(pods)) {
      await lab.addPod(name, { ip });
      await lab.serve(name, { tcp: [8080], udp: [5353] });
    }
    for (const [name, ip] of Object.entries(clients)) await lab.addPod(name, { ip });
    nft = createNft({ netns: lab.nodeNs });
  });
  after(async () => lab?.destroy());

  /** One sticky ClusterIP (600 s), TCP 80 and UDP 53, over these pods. */
  const objects = (endpoints: Pod[]) =>
    stickyService(
      'web',
      { clusterIP: VIP },
      endpoints.map((p) => pods[p]),
    );
  const rules = (endpoints: Pod[]) => labRules(objects(endpoints));

  /** The one pod that answers every attempt of `client` on `proto`; fails on zero or several. */
  const stuckTo = async (client: Client, proto: 'tcp' | 'udp'): Promise<string> => {
    const { port } = STICKY_PORTS.find((p) => p.proto === proto)!;
    const r = await lab.probe(client, { dst: VIP, port, proto, count: 8 });
    assert.equal(r.attempts, 8);
    assert.equal(r.answers.size, 1, `${client} ${proto}: ${JSON.stringify([...r.answers])}`);
    assert.equal(r.timedOut + r.refused, 0, `${client} ${proto}: every attempt answered`);
    return [...r.answers.keys()][0]!;
  };

  const everyone = async (): Promise<Record<string, string>> => {
    const out: Record<string, string> = {};
    for (const c of Object.keys(clients) as Client[])
      for (const { proto } of STICKY_PORTS) out[`${c}/${proto}`] = await stuckTo(c, proto);
    return out;
  };

  /** client → [endpoint ip, element timeout, seconds left], as the kernel lists affinity-<proto>. */
  const entries = async (proto: 'tcp' | 'udp'): Promise<Map<string, [string, number, number]>> => {
    const json = await nft.listMapJson('ip', TABLE, `affinity-${proto}`);
    const doc = JSON.parse(json) as {
      nftables: Array<{
        map?: {
          timeout?: number;
          elem?: Array<
            [
              { elem: { val: { concat: unknown[] }; timeout?: number; expires: number } },
              { concat: unknown[] },
            ]
          >;
        };
      }>;
    };
    const map = doc.nftables.find((o) => o.map)!.map!;
    const out = new Map<string, [string, number, number]>();
    for (const [k, v] of map.elem ?? [])
      out.set(String(k.elem.val.concat[2]), [
        String(v.concat[0]),
        k.elem.timeout ?? map.timeout ?? -1,
        k.elem.expires,
      ]);
    return out;
  };

  /** Stands in for a client that reached `pod` a while ago: 300 s of its 600 s left. */
  const aged = (client: string, pod: Pod, proto: 'tcp' | 'udp' = 'tcp'): string => {
    const { port, target } = STICKY_PORTS.find((p) => p.proto === proto)!;
    return `add element ip ${TABLE} affinity-${proto} { ${VIP} . ${port} . ${client} timeout 600s expires 300s : ${pods[pod]} . ${target} }\n`;
  };

  it('keeps every client on its endpoint, with the time it had left, across invalidate() and a restart', async () => {
    const applier = new NftApplier({ nft, log: silentLogger() });
    assert.equal((await applier.sync(rules(['p1', 'p2', 'p3']))).full, true);
    const before = await everyone();
    // A client seen 5 minutes ago (not in the lab: its entry is only checked, never refreshed).
    await lab.nft(aged('10.244.1.99', 'p3'));

    const checkAfterFullSync = async (what: string): Promise<void> => {
      const tcp = await entries('tcp');
      const old = tcp.get('10.244.1.99');
      assert.ok(old, `${what}: the aged entry is back`);
      assert.equal(old[0], pods.p3, `${what}: to its endpoint`);
      assert.equal(old[1], 600, `${what}: with its timeout`);
      assert.ok(old[2] <= 300, `${what}: not renewed (${old[2]} s left)`);
      for (const c of Object.keys(clients) as Client[])
        for (const proto of ['tcp', 'udp'] as const) {
          const e = (proto === 'tcp' ? tcp : await entries('udp')).get(clients[c]);
          assert.equal(e?.[0], pods[before[`${c}/${proto}`] as Pod], `${what}: ${c}/${proto} entry`);
        }
      assert.deepEqual(await everyone(), before, `${what}: every client answered by the pod it had`);
    };

    applier.invalidate();
    const full = await applier.sync(rules(['p1', 'p2', 'p3']));
    assert.equal(full.full, true);
    assert.match(applier.lastTransaction, /^delete table ip kube-nftproxy$/m, 'the tables were replaced');
    await checkAfterFullSync('after invalidate()');

    const restarted = new NftApplier({ nft: createNft({ netns: lab.nodeNs }), log: silentLogger() });
    assert.equal((await restarted.sync(rules(['p1', 'p2', 'p3']))).full, true);
    await checkAfterFullSync('after a restart');
  });

  it('does not bring back the entries of a removed endpoint; the others stay', async () => {
    await cleanupTables(nft, TABLE);
    const applier = new NftApplier({ nft, log: silentLogger() });
    await applier.sync(rules(['p1', 'p2', 'p3']));
    // Deterministic stickiness: c1 had p1, c2 had p2, on both protocols.
    await lab.nft(aged(clients.c1, 'p1') + aged(clients.c2, 'p2') + aged(clients.c1, 'p1', 'udp'));
    assert.equal(await stuckTo('c1', 'tcp'), 'p1', 'the entry steers the kernel');
    assert.equal(await stuckTo('c2', 'tcp'), 'p2');
    assert.equal(await stuckTo('c1', 'udp'), 'p1');

    const restarted = new NftApplier({ nft: createNft({ netns: lab.nodeNs }), log: silentLogger() });
    assert.equal((await restarted.sync(rules(['p2', 'p3']))).full, true);
    // The UDP flows to p1 go, as the daemon's cleanup would delete them.
    await deleteStaleFlows(lab, objects(['p2', 'p3']));
    for (const proto of ['tcp', 'udp'] as const) {
      const left = [...(await entries(proto)).values()].map((e) => e[0]);
      assert.ok(!left.includes(pods.p1), `${proto}: nothing points at the removed p1: ${left.join(', ')}`);
    }
    assert.equal((await entries('tcp')).get(clients.c2)?.[0], pods.p2, 'c2 keeps p2');
    assert.equal(await stuckTo('c2', 'tcp'), 'p2');
    assert.ok(['p2', 'p3'].includes(await stuckTo('c1', 'tcp')), 'c1 moves to a pod that is left');
    assert.ok(['p2', 'p3'].includes(await stuckTo('c1', 'udp')));
  });
});
