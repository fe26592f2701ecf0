import assert from 'node:assert/strict';
import { silentLogger } from '../../src/log.js';
import { NftApplier } from '../../src/rules/applier.js';
import { createNft, type Nft } from '../../src/rules/nft/exec.js';
import { Lab } from '../../scripts/lab/index.js';
import { requireKernel } from '../support/capabilities.js';
import { deleteStaleFlows, labRules, STICKY_PORTS, stickyService } from '../support/lab-rules.js';

/**
 * sessionAffinity ClientIP over IPv6 in the real kernel: each sticky frontend group records its
 * clients in maps of its own (client → endpoint address, client → endpoint port), which nft
 * 1.0.6 can update where it aborts on IPv4's concatenated maps. Synced by the applier as the
 * daemon does: partial transactions, full syncs and restarts.
 */
describe('kernel: session affinity over IPv6', function () {
  this.timeout(240_000);
  const TABLE = 'kube-nftproxy';
  const VIP = 'fd00:10:96::60';
  const EXTERNAL = 'fd00:10:97::1';
  const pods = {
    p1: { ip: '10.244.1.31', ipv6: 'fd00:10:244:1::31' },
    p2: { ip: '10.244.1.32', ipv6: 'fd00:10:244:1::32' },
    p3: { ip: '10.244.1.33', ipv6: 'fd00:10:244:1::33' },
  } as const;
  type Pod = keyof typeof pods;
  const clients = ['c1', 'c2', 'c3', 'c4'] as const;
  type Client = (typeof clients)[number];
  let lab: Lab;
  let nft: Nft;

  before(async function () {
    requireKernel(this);
    lab = await Lab.create({ ipv6: true });
    for (const [name, p] of Object.entries(pods)) {
      await lab.addPod(name, p);
      await lab.serve(name, { tcp: [8080], udp: [5353] });
    }
    for (const [i, name] of clients.entries())
      await lab.addPod(name, { ip: `10.244.1.${61 + i}`, ipv6: `fd00:10:244:1::${61 + i}` });
    nft = createNft({ netns: lab.nodeNs });
  });
  after(async () => lab?.destroy());

  /** One IPv6 Service, sticky for 600 s, on its ClusterIP and an external IP, TCP 80 and UDP 53. */
  const objects = (endpoints: Pod[]) =>
    stickyService(
      'web6',
      {
        ipFamilyPolicy: 'SingleStack',
        ipFamilies: ['IPv6'],
        clusterIP: VIP,
        clusterIPs: [VIP],
        externalIPs: [EXTERNAL],
      },
      endpoints.map((p) => pods[p].ipv6),
      'IPv6',
    );
  const rules = (endpoints: Pod[]) => labRules(objects(endpoints), { ipv6: true });

  /** The one pod that answers every attempt of `client`; fails on zero or several. */
  const stuckTo = async (client: Client, proto: 'tcp' | 'udp', dst = VIP): Promise<string> => {
    const { port } = STICKY_PORTS.find((p) => p.proto === proto)!;
    const r = await lab.probe(client, { dst, port, proto, count: 6 });
    assert.equal(r.answers.size, 1, `${client} ${proto} ${dst}: ${JSON.stringify([...r.answers])}`);
    assert.equal(r.timedOut + r.refused, 0, `${client} ${proto} ${dst}: every attempt answered`);
    return [...r.answers.keys()][0]!;
  };

  const everyone = async (): Promise<Record<string, string>> => {
    const out: Record<string, string> = {};
    for (const c of clients)
      for (const { proto } of STICKY_PORTS) out[`${c}/${proto}`] = await stuckTo(c, proto);
    return out;
  };

  /** The group's maps in the kernel: client → `endpoint (seconds left)`. */
  const recorded = async (): Promise<Record<string, string>> => {
    const name = (await nft.list('ip6', TABLE)).match(/map (affinity-[0-9a-f]{12}-cluster) \{/g) ?? [];
    const out: Record<string, string> = {};
    for (const m of name) {
      const map = m.slice(4, -2);
      const doc = JSON.parse(await nft.listMapJson('ip6', TABLE, map)) as {
        nftables: Array<{ map?: { elem?: Array<[{ elem: { val: string; expires: number } }, string]> } }>;
      };
      for (const [k, v] of doc.nftables.find((o) => o.map)!.map!.elem ?? [])
        out[`${map.slice(-20)} ${k.elem.val}`] = `${v} (${k.elem.expires <= 600 ? 'ok' : k.elem.expires})`;
    }
    return out;
  };

  it('keeps every connection of a client on one endpoint, TCP and UDP, on every frontend', async () => {
    const applier = new NftApplier({ nft, log: silentLogger() });
    assert.equal((await applier.sync(rules(['p1', 'p2', 'p3']))).full, true);
    const first = await everyone();
    assert.deepEqual(await everyone(), first, 'the same again');
    // The ClusterIP and the external IP share the group: a client keeps its endpoint on both.
    for (const c of clients) assert.equal(await stuckTo(c, 'tcp', EXTERNAL), first[`${c}/tcp`]);
    assert.ok(Object.keys(await recorded()).length >= clients.length, 'the kernel recorded the clients');
  });

  it('moves a client whose endpoint is removed, and only to endpoints that remain', async () => {
    const applier = new NftApplier({ nft, log: silentLogger() });
    await applier.sync(rules(['p1', 'p2', 'p3']));
    const before = await everyone();
    const victim = before['c1/tcp'] as Pod;
    const remaining = (['p1', 'p2', 'p3'] as const).filter((p) => p !== victim);
    const result = await applier.sync(rules(remaining));
    // The UDP flows to the victim go, as the daemon's cleanup would delete them.
    await deleteStaleFlows(lab, objects(remaining), { ipv6: true });
    assert.equal(result.full, false);
    assert.match(applier.lastTransaction, /delete element ip6 kube-nftproxy affinity-[0-9a-f]{12}-cluster /);
    const after = await everyone();
    for (const [key, pod] of Object.entries(before)) {
      if (pod === victim) assert.ok(remaining.includes(after[key] as Pod), `${key} moved to ${after[key]}`);
      else assert.equal(after[key], pod, `${key} stays`);
    }
    await applier.sync(rules(['p1', 'p2', 'p3']));
  });

  it('keeps every client on its endpoint across a full sync and a restart', async () => {
    const applier = new NftApplier({ nft, log: silentLogger() });
    await applier.sync(rules(['p1', 'p2', 'p3']));
    const before = await everyone();
    const entries = await recorded();
    applier.invalidate();
    assert.equal((await applier.sync(rules(['p1', 'p2', 'p3']))).full, true);
    assert.deepEqual(await recorded(), entries, 'the entries are back, none renewed past its timeout');
    assert.deepEqual(await everyone(), before, 'after a full sync');
    const restarted = new NftApplier({ nft, log: silentLogger() });
    assert.equal((await restarted.sync(rules(['p1', 'p2', 'p3']))).full, true);
    assert.deepEqual(await everyone(), before, 'after a restart');
  });

  it('takes the group’s maps away, entries and all, when its last endpoint goes', async () => {
    const applier = new NftApplier({ nft, log: silentLogger() });
    await applier.sync(rules(['p1', 'p2', 'p3']));
    await everyone();
    assert.ok(Object.keys(await recorded()).length > 0);
    assert.equal((await applier.sync(rules([]))).full, false);
    assert.doesNotMatch(await nft.list('ip6', TABLE), /map affinity-[0-9a-f]{12}-cluster/);
  });
});
