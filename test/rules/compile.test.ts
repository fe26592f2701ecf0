import assert from 'node:assert/strict';
import { buildState } from '../../src/model/build-state.js';
import type { ProxyState } from '../../src/model/types.js';
import { fullTransaction, partialTransaction, renderRuleset } from '../../src/rules/diff.js';
import { compile, Compiler, programmedState, type CompileConfig } from '../../src/rules/compile.js';
import { FakeNft } from '../../src/rules/nft/fake.js';
import { Transaction } from '../../src/rules/nft/transaction.js';
import { service, slice } from '../support/objects.js';

export const CONFIG: CompileConfig = {
  table: 'kube-nftproxy',
  clusterCIDRs: ['10.244.0.0/16'],
  masqueradeAll: false,
  serviceCIDRs: ['10.96.0.0/16'],
  nodePortIPs: { ipv4: ['192.168.0.10'], ipv6: [] },
  maglevSeed: 0,
};

/** A ClusterIP with two endpoints, a UDP one with none, a NodePort with eTP Local, a LB with source ranges. */
/**
 * The representative cluster's state; `reversed` gives the same objects in the opposite order
 * (Services, slices and the endpoints inside each slice), as a watch may deliver them.
 */
export function representativeState(order: 'as-written' | 'reversed' = 'as-written') {
  const input = representativeInput();
  if (order === 'reversed') {
    input.services.reverse();
    input.slices.reverse();
    for (const s of input.slices) s.endpoints.reverse();
  }
  return buildState(input, { nodeName: 'n1', nodeIPs: ['192.168.0.10'], lbAlgorithm: 'random' });
}

function representativeInput() {
  return {
    services: [
      service('ns', 'a', { clusterIP: '10.96.0.1', ports: [{ name: 'p', port: 80 }] }),
      service('ns', 'b', { clusterIP: '10.96.0.2', ports: [{ port: 53, protocol: 'UDP' }] }),
      service('ns', 'np', {
        type: 'NodePort',
        clusterIP: '10.96.0.3',
        externalTrafficPolicy: 'Local',
        ports: [{ port: 80, nodePort: 30080 }],
      }),
      service(
        'ns',
        'lb',
        {
          type: 'LoadBalancer',
          clusterIP: '10.96.0.4',
          loadBalancerSourceRanges: ['192.0.2.0/24'],
          ports: [{ port: 443, nodePort: 30443 }],
        },
        { lbIPs: ['198.51.100.7'] },
      ),
    ],
    slices: [
      slice(
        'ns',
        'a-1',
        'a',
        [{ name: 'p', port: 8080 }],
        [
          { ip: '10.244.1.2', nodeName: 'n1' },
          { ip: '10.244.2.2', nodeName: 'n2' },
        ],
      ),
      slice(
        'ns',
        'np-1',
        'np',
        [{ port: 8080 }],
        [
          { ip: '10.244.1.3', nodeName: 'n1' },
          { ip: '10.244.2.3', nodeName: 'n2' },
        ],
      ),
      slice('ns', 'lb-1', 'lb', [{ port: 8443 }], [{ ip: '10.244.2.4', nodeName: 'n2' }]),
    ],
  };
}

const ipv4Only = (dump: string): string =>
  dump
    .split('\n')
    .filter((l) => l !== '' && !l.includes(' ip6 '))
    .map((l) => `${l}\n`)
    .join('');

describe('compile', () => {
  it('compiles a representative state to exactly this ruleset (whole Fake dump)', async () => {
    const fake = new FakeNft();
    await fake.run(fullTransaction(compile(representativeState(), CONFIG)));
    assert.equal(ipv4Only(fake.dump()), EXPECTED);
  });

  it('is deterministic: the same objects in another order give the same bytes', () => {
    const a = fullTransaction(compile(representativeState(), CONFIG)).toString();
    const b = fullTransaction(compile(representativeState('reversed'), CONFIG)).toString();
    assert.equal(a, b);
  });

  it("creates both families' tables even with no IPv6 service", () => {
    const rs = compile(representativeState(), CONFIG);
    assert.deepEqual(
      rs.tables.map((t) => t.family),
      ['ip', 'ip6'],
    );
  });

  it('masquerades all ClusterIP traffic with --masquerade-all, and none without a cluster CIDR', () => {
    const all = compile(representativeState(), { ...CONFIG, masqueradeAll: true });
    const none = compile(representativeState(), { ...CONFIG, clusterCIDRs: [] });
    const rulesOf = (rs: ReturnType<typeof compile>, chain: string) =>
      rs.chains.find((c) => c.chain.family === 'ip' && c.chain.name === chain)!.rules.map((r) => r.rule);
    assert.deepEqual(rulesOf(all, 'clusterip-2')[0], 'jump mark-for-masquerade');
    assert.equal(rulesOf(none, 'clusterip-2').length, 3, 'one DNAT per protocol and no masquerade');
    assert.match(rulesOf(none, 'clusterip-2')[0]!, /^meta l4proto tcp dnat ip to /);
  });
});

/** One Maglev Service: `externalIPs` external IPs, endpoints 10.244.1.9 (local) and 10.244.2.9. */
function maglevState(
  opts: { externalIPs?: number; eTPLocal?: boolean; sticky?: boolean; endpoints?: number } = {},
) {
  const n = opts.endpoints ?? 2;
  return buildState(
    {
      services: [
        service(
          'ns',
          'mg',
          {
            type: 'LoadBalancer',
            clusterIP: '10.96.0.9',
            ...(opts.eTPLocal ? { externalTrafficPolicy: 'Local' } : {}),
            ...(opts.sticky ? { sessionAffinity: 'ClientIP' } : {}),
            externalIPs: Array.from({ length: opts.externalIPs ?? 0 }, (_, i) => `192.0.2.${i + 1}`),
            ports: [{ port: 80, nodePort: 30080 }],
          },
          { annotations: { 'kube-nftproxy.io/lb-algorithm': 'maglev' }, lbIPs: ['198.51.100.9'] },
        ),
      ],
      slices: [
        slice(
          'ns',
          'mg-1',
          'mg',
          [{ port: 8080 }],
          Array.from({ length: n }, (_, i) => ({ ip: `10.244.${i + 1}.9`, nodeName: `n${i + 1}` })),
        ),
      ],
    },
    { nodeName: 'n1', nodeIPs: ['192.168.0.10'], lbAlgorithm: 'random' },
  );
}

const elementCount = (rs: ReturnType<typeof compile>): number =>
  rs.fragments.reduce((n, f) => n + f.elements.length, 0);

describe('compile: Maglev', () => {
  it('writes one table per service port and endpoint list, however many frontends share it', () => {
    const few = compile(maglevState({ externalIPs: 0 }), CONFIG);
    const many = compile(maglevState({ externalIPs: 10 }), CONFIG);
    // Each external IP adds its service-ips and maglev-ports elements, and no slot.
    assert.equal(elementCount(many) - elementCount(few), 10 * 2);
    const slots = many.fragments[0]!.elements.filter((el) => /^maglev-[0-9a-f]{12}-cluster$/.test(el.set));
    assert.equal(slots.length, 16381, 'one table of M = 16381 slots for 2 endpoints');
    assert.deepEqual([...new Set(slots.map((el) => el.value))].sort(), [
      '10.244.1.9 . 8080',
      '10.244.2.9 . 8080',
    ]);
    assert.ok(elementCount(many) < 16381 + 50, `${elementCount(many)} elements`);
  });

  it('compiles eTP Local with affinity to these chains, maps and elements (Fake dump, slots counted)', async () => {
    const fake = new FakeNft();
    await fake.run(
      fullTransaction(compile(maglevState({ externalIPs: 1, eTPLocal: true, sticky: true }), CONFIG)),
    );
    const lines = ipv4Only(fake.dump()).split('\n');
    const slot = /^add element ip kube-nftproxy (maglev-[0-9a-f]{12}-\w+) \{ (\d+) : (.*) \}$/;
    const slots = new Map<string, Set<string>>();
    for (const line of lines) {
      const m = slot.exec(line);
      if (m) slots.set(`${m[1]} ${m[3]}`, (slots.get(`${m[1]} ${m[3]}`) ?? new Set()).add(m[2]!));
    }
    const hash = /maglev-([0-9a-f]{12})-/.exec(lines.find((l) => slot.test(l))!)![1]!;
    assert.deepEqual(
      [...slots].map(([table, s]) => [table.replace(hash, 'H'), s.size]).sort(),
      [
        ['maglev-H-cluster 10.244.1.9 . 8080', 8191],
        ['maglev-H-cluster 10.244.2.9 . 8080', 8190],
        ['maglev-H-local 10.244.1.9 . 8080', 251],
      ],
      'local table: M = 251 for the one local endpoint; cluster-wide: M = 16381 shared out',
    );
    const shown = lines
      .filter((l) => !slot.test(l) && /maglev|sticky|affinity-record-|element/.test(l))
      .map((l) => l.replaceAll(hash, 'H'))
      .join('\n');
    assert.equal(`${shown}\n`, EXPECTED_MAGLEV);
  });

  it('keeps a table across syncs that change endpoints: element operations only', async () => {
    const fake = new FakeNft();
    const rs1 = compile(maglevState({ endpoints: 3 }), CONFIG);
    const rs2 = compile(maglevState({ endpoints: 2 }), CONFIG);
    await fake.run(fullTransaction(rs1));
    const tx = partialTransaction(rs1, rs2);
    assert.ok(tx.operations.every((op) => op.object.kind === 'element'));
    // Only the slots of the endpoint that went move: about a third, once for all frontends.
    assert.ok(tx.size > 2 * 5000 && tx.size < 2 * 6000, `${tx.size} operations`);
  });
});

describe('compile: IPv6 session affinity', () => {
  it('records each sticky group in maps of its own, looked up through @affinity-ports (Fake dump)', async () => {
    const state = buildState(
      {
        services: [
          service('ns', 's6', {
            type: 'NodePort',
            ipFamilies: ['IPv6'],
            clusterIP: 'fd00:96::1',
            clusterIPs: ['fd00:96::1'],
            sessionAffinity: 'ClientIP',
            ports: [{ port: 80, nodePort: 30080 }],
          }),
        ],
        slices: [
          slice('ns', 's6-1', 's6', [{ port: 8080 }], [{ ip: 'fd00:244::1' }, { ip: 'fd00:244::2' }], 'IPv6'),
        ],
      },
      { nodeName: 'n1', nodeIPs: ['192.168.0.10', 'fd00:1::10'], lbAlgorithm: 'random' },
    );
    const fake = new FakeNft();
    await fake.run(
      fullTransaction(compile(state, { ...CONFIG, nodePortIPs: { ipv4: [], ipv6: ['fd00:1::10'] } })),
    );
    const dump = fake.dump();
    const hash = /affinity-([0-9a-f]{12})-cluster/.exec(dump)![1]!;
    const shown = dump
      .split('\n')
      .filter((l) => l.includes(' ip6 ') && /affinity|sticky/.test(l))
      .map((l) => l.replaceAll(hash, 'H'))
      .join('\n');
    assert.equal(`${shown}\n`, EXPECTED_IPV6_AFFINITY);
    assert.doesNotMatch(dump, /map ip6 kube-nftproxy affinity-tcp/, 'no frontend . client map in ip6');
  });
});

describe('compile: --max-service-elements', () => {
  const sized = (budget: number) => ({ ...CONFIG, maxServiceElements: budget });

  it('leaves a Service over the budget out, with the reason, and compiles the others as before', () => {
    const state = representativeState();
    const all = compile(state, CONFIG);
    // ns/np, eTP Local over a local and a remote endpoint: its ClusterIP (cluster-ips,
    // service-ips, 2 backends) and NodePort (service-ips, 1 local backend, shortcircuit-ips,
    // 2 cluster-backends): 9 elements. ns/lb: 9 too (with its source range's); a and b fewer.
    const size = (name: string): number =>
      elementCount({ ...all, fragments: all.fragments.filter((f) => f.key.startsWith(`${name}:`)) });
    assert.deepEqual(['ns/a', 'ns/b', 'ns/lb', 'ns/np'].map(size), [4, 2, 9, 9]);
    const rs = compile(state, sized(8));
    const reason = 'needs about 9 nft elements, more than --max-service-elements 8';
    assert.deepEqual(rs.skipped, [
      { kind: 'Service', name: 'ns/lb', reason, overBudget: true },
      { kind: 'Service', name: 'ns/np', reason, overBudget: true },
    ]);
    assert.deepEqual(
      rs.fragments,
      all.fragments.filter((f) => f.key.startsWith('ns/a:') || f.key.startsWith('ns/b:')),
      'the others compile as before',
    );
    const programmed = programmedState(state, rs);
    assert.deepEqual([...new Set(programmed.ports.map((sp) => sp.service))], ['ns/a', 'ns/b']);
    assert.deepEqual(programmed.skipped.slice(-2), rs.skipped, 'listed with the model’s skipped objects');
    assert.equal(programmedState(state, all), state, 'nothing left out: the same state');
    assert.deepEqual(compile(state, sized(9)).skipped, [], 'at the budget is within it');
    assert.deepEqual(all.skipped, [], 'no budget, nothing left out');
  });

  it('counts all ports and families of a Service together', () => {
    const dual = buildState(
      {
        services: [
          service('ns', 'd', {
            clusterIP: '10.96.0.5',
            clusterIPs: ['10.96.0.5', 'fd00:96::5'],
            ipFamilies: ['IPv4', 'IPv6'],
            ipFamilyPolicy: 'RequireDualStack',
            ports: [
              { name: 'a', port: 80 },
              { name: 'b', port: 81 },
            ],
          }),
        ],
        slices: [
          slice(
            'ns',
            'd-4',
            'd',
            [
              { name: 'a', port: 8080 },
              { name: 'b', port: 8081 },
            ],
            [{ ip: '10.244.1.5' }],
          ),
          slice(
            'ns',
            'd-6',
            'd',
            [
              { name: 'a', port: 8080 },
              { name: 'b', port: 8081 },
            ],
            [{ ip: 'fd00:244::5' }],
            'IPv6',
          ),
        ],
      },
      { nodeName: 'n1', nodeIPs: ['192.168.0.10'], lbAlgorithm: 'random' },
    );
    // Four ports of 3 elements each (cluster-ips, service-ips, one backend).
    assert.equal(elementCount(compile(dual, CONFIG)), 12);
    assert.equal(compile(dual, sized(11)).fragments.length, 0);
    assert.equal(compile(dual, sized(12)).fragments.length, 4);
  });

  it('does not build the elements of a port far over the budget', () => {
    const rs = compile(maglevState({ externalIPs: 3, endpoints: 400 }), sized(1000));
    assert.match(rs.skipped[0]!.reason, /^needs about 66000 nft elements/);
  });

  it('an incremental compile skips and restores a Service as it crosses the budget, as compile() does', () => {
    const compiler = new Compiler(sized(16381 + 10));
    const steps = [0, 1, 5, 10, 2, 0].map((externalIPs) => maglevState({ externalIPs }));
    let prev: ProxyState | undefined;
    const left: number[] = [];
    for (const state of steps) {
      const delta = prev && { base: prev, ports: new Set(state.ports.map((sp) => sp.key)) };
      const compiled = compiler.compile(state, delta);
      const rs = compiled.ruleset;
      if (prev) assert.ok(compiled.delta, 'incremental');
      assert.equal(renderRuleset(rs), renderRuleset(compile(state, sized(16381 + 10))));
      assert.deepEqual(rs.skipped, compile(state, sized(16381 + 10)).skipped);
      left.push(rs.skipped.length);
      prev = state;
    }
    // 16381 slots and 7 elements, plus 2 per external IP.
    assert.deepEqual(left, [0, 0, 1, 1, 1, 0]);
  });
});

describe('FakeNft with compiled rules', () => {
  it('rejects an element whose goto names a chain that does not exist, and keeps its state', async () => {
    const fake = new FakeNft();
    const rs = compile(representativeState(), CONFIG);
    await fake.run(fullTransaction(rs));
    const before = fake.dump();
    const tx = new Transaction();
    tx.add({
      kind: 'element',
      family: 'ip',
      table: 'kube-nftproxy',
      set: 'service-ips',
      key: '10.96.9.9 . tcp . 80',
      value: 'goto clusterip-7',
    });
    await assert.rejects(fake.run(tx), (err: { code?: string }) => err.code === 'NFT_DANGLING_REFERENCE');
    assert.equal(fake.dump(), before);
  });
});

const EXPECTED = `add table ip kube-nftproxy { comment "rules for kube-nftproxy" ; }
add chain ip kube-nftproxy affinity-record
add chain ip kube-nftproxy cluster-ips-check
add chain ip kube-nftproxy clusterip-1
add chain ip kube-nftproxy clusterip-2
add chain ip kube-nftproxy endpoints-check
add chain ip kube-nftproxy external-1
add chain ip kube-nftproxy external-local-1
add chain ip kube-nftproxy filter-forward { type filter hook forward priority -110 ; }
add chain ip kube-nftproxy filter-input { type filter hook input priority -110 ; }
add chain ip kube-nftproxy filter-output { type filter hook output priority -110 ; }
add chain ip kube-nftproxy filter-output-post-dnat { type filter hook output priority -90 ; }
add chain ip kube-nftproxy filter-prerouting { type filter hook prerouting priority -110 ; }
add chain ip kube-nftproxy filter-prerouting-post-dnat { type filter hook prerouting priority -90 ; }
add chain ip kube-nftproxy firewall-check
add chain ip kube-nftproxy mark-for-masquerade
add chain ip kube-nftproxy masquerading
add chain ip kube-nftproxy nat-output { type nat hook output priority -100 ; }
add chain ip kube-nftproxy nat-postrouting { type nat hook postrouting priority 100 ; }
add chain ip kube-nftproxy nat-prerouting { type nat hook prerouting priority -100 ; }
add chain ip kube-nftproxy reject-chain
add chain ip kube-nftproxy services
add chain ip kube-nftproxy shortcircuit
add chain ip kube-nftproxy shortcircuit-2
add map ip kube-nftproxy affinity-frontends-sctp { type ipv4_addr . inet_service : verdict ; comment "sctp frontends with sessionAffinity: goto the recorder of their service port" ; }
add map ip kube-nftproxy affinity-frontends-tcp { type ipv4_addr . inet_service : verdict ; comment "tcp frontends with sessionAffinity: goto the recorder of their service port" ; }
add map ip kube-nftproxy affinity-frontends-udp { type ipv4_addr . inet_service : verdict ; comment "udp frontends with sessionAffinity: goto the recorder of their service port" ; }
add map ip kube-nftproxy affinity-sctp { typeof ip daddr . th dport . ip saddr : ip daddr . sctp dport ; flags dynamic,timeout ; timeout 3h ; comment "frontend . client: the sctp endpoint it had (sessionAffinity ClientIP)" ; }
add map ip kube-nftproxy affinity-tcp { typeof ip daddr . th dport . ip saddr : ip daddr . tcp dport ; flags dynamic,timeout ; timeout 3h ; comment "frontend . client: the tcp endpoint it had (sessionAffinity ClientIP)" ; }
add map ip kube-nftproxy affinity-udp { typeof ip daddr . th dport . ip saddr : ip daddr . udp dport ; flags dynamic,timeout ; timeout 3h ; comment "frontend . client: the udp endpoint it had (sessionAffinity ClientIP)" ; }
add map ip kube-nftproxy backends-sctp { typeof ip daddr . th dport . numgen random mod 1 : ip daddr . sctp dport ; comment "frontend . slot: the sctp endpoint for this traffic policy" ; }
add map ip kube-nftproxy backends-tcp { typeof ip daddr . th dport . numgen random mod 1 : ip daddr . tcp dport ; comment "frontend . slot: the tcp endpoint for this traffic policy" ; }
add map ip kube-nftproxy backends-udp { typeof ip daddr . th dport . numgen random mod 1 : ip daddr . udp dport ; comment "frontend . slot: the udp endpoint for this traffic policy" ; }
add map ip kube-nftproxy cluster-backends-sctp { typeof ip daddr . th dport . numgen random mod 1 : ip daddr . sctp dport ; comment "eTP Local frontend . slot: cluster-wide sctp endpoints" ; }
add map ip kube-nftproxy cluster-backends-tcp { typeof ip daddr . th dport . numgen random mod 1 : ip daddr . tcp dport ; comment "eTP Local frontend . slot: cluster-wide tcp endpoints" ; }
add map ip kube-nftproxy cluster-backends-udp { typeof ip daddr . th dport . numgen random mod 1 : ip daddr . udp dport ; comment "eTP Local frontend . slot: cluster-wide udp endpoints" ; }
add set ip kube-nftproxy cluster-ips { type ipv4_addr ; comment "active ClusterIPs" ; }
add map ip kube-nftproxy cluster-maglev-ports { type ipv4_addr . inet_proto . inet_service : verdict ; comment "eTP Local Maglev frontends: goto their service port's cluster-wide table" ; }
add set ip kube-nftproxy firewall-allow { type ipv4_addr . inet_proto . inet_service . ipv4_addr ; flags interval ; comment "frontend . allowed source range" ; }
add set ip kube-nftproxy firewall-ips { type ipv4_addr . inet_proto . inet_service ; comment "frontends with loadBalancerSourceRanges" ; }
add set ip kube-nftproxy hairpin { type ipv4_addr . ipv4_addr ; comment "local endpoint . itself" ; }
add map ip kube-nftproxy maglev-ports { type ipv4_addr . inet_proto . inet_service : verdict ; comment "Maglev frontends: goto their service port's table" ; }
add map ip kube-nftproxy no-endpoint-services { type ipv4_addr . inet_proto . inet_service : verdict ; comment "frontends without endpoints: reject or drop" ; }
add set ip kube-nftproxy service-cidrs { type ipv4_addr ; flags interval ; comment "ClusterIP ranges (ServiceCIDRs, else --service-cidr): unallocated addresses are dropped" ; }
add map ip kube-nftproxy service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; comment "frontends with endpoints: goto the chain that picks one" ; }
add map ip kube-nftproxy shortcircuit-ips { type ipv4_addr . inet_proto . inet_service : verdict ; comment "eTP Local frontends: pods and the node use every endpoint" ; }
add rule ip kube-nftproxy affinity-record meta l4proto tcp ct original ip daddr . ct original proto-dst vmap @affinity-frontends-tcp
add rule ip kube-nftproxy affinity-record meta l4proto udp ct original ip daddr . ct original proto-dst vmap @affinity-frontends-udp
add rule ip kube-nftproxy affinity-record meta l4proto sctp ct original ip daddr . ct original proto-dst vmap @affinity-frontends-sctp
add rule ip kube-nftproxy cluster-ips-check ip daddr @cluster-ips goto reject-chain
add rule ip kube-nftproxy cluster-ips-check ip daddr @service-cidrs drop
add rule ip kube-nftproxy clusterip-1 ip saddr != { 10.244.0.0/16 } jump mark-for-masquerade
add rule ip kube-nftproxy clusterip-1 meta l4proto tcp dnat ip to ip daddr . th dport . numgen random mod 1 map @backends-tcp
add rule ip kube-nftproxy clusterip-1 meta l4proto udp dnat ip to ip daddr . th dport . numgen random mod 1 map @backends-udp
add rule ip kube-nftproxy clusterip-1 meta l4proto sctp dnat ip to ip daddr . th dport . numgen random mod 1 map @backends-sctp
add rule ip kube-nftproxy clusterip-2 ip saddr != { 10.244.0.0/16 } jump mark-for-masquerade
add rule ip kube-nftproxy clusterip-2 meta l4proto tcp dnat ip to ip daddr . th dport . numgen random mod 2 map @backends-tcp
add rule ip kube-nftproxy clusterip-2 meta l4proto udp dnat ip to ip daddr . th dport . numgen random mod 2 map @backends-udp
add rule ip kube-nftproxy clusterip-2 meta l4proto sctp dnat ip to ip daddr . th dport . numgen random mod 2 map @backends-sctp
add rule ip kube-nftproxy endpoints-check ip daddr . meta l4proto . th dport vmap @no-endpoint-services
add rule ip kube-nftproxy external-1 jump mark-for-masquerade
add rule ip kube-nftproxy external-1 meta l4proto tcp dnat ip to ip daddr . th dport . numgen random mod 1 map @backends-tcp
add rule ip kube-nftproxy external-1 meta l4proto udp dnat ip to ip daddr . th dport . numgen random mod 1 map @backends-udp
add rule ip kube-nftproxy external-1 meta l4proto sctp dnat ip to ip daddr . th dport . numgen random mod 1 map @backends-sctp
add rule ip kube-nftproxy external-local-1 ip saddr { 10.244.0.0/16 } goto shortcircuit
add rule ip kube-nftproxy external-local-1 fib saddr type local jump mark-for-masquerade
add rule ip kube-nftproxy external-local-1 fib saddr type local goto shortcircuit
add rule ip kube-nftproxy external-local-1 meta l4proto tcp dnat ip to ip daddr . th dport . numgen random mod 1 map @backends-tcp
add rule ip kube-nftproxy external-local-1 meta l4proto udp dnat ip to ip daddr . th dport . numgen random mod 1 map @backends-udp
add rule ip kube-nftproxy external-local-1 meta l4proto sctp dnat ip to ip daddr . th dport . numgen random mod 1 map @backends-sctp
add rule ip kube-nftproxy filter-forward ct state new jump endpoints-check
add rule ip kube-nftproxy filter-forward ct state new jump cluster-ips-check
add rule ip kube-nftproxy filter-input ct state new jump endpoints-check
add rule ip kube-nftproxy filter-output ct state new jump firewall-check
add rule ip kube-nftproxy filter-output-post-dnat ct state new ct status dnat jump affinity-record
add rule ip kube-nftproxy filter-output-post-dnat ct state new jump endpoints-check
add rule ip kube-nftproxy filter-output-post-dnat ct state new jump cluster-ips-check
add rule ip kube-nftproxy filter-prerouting ct state new jump firewall-check
add rule ip kube-nftproxy filter-prerouting-post-dnat ct state new ct status dnat jump affinity-record
add rule ip kube-nftproxy firewall-check ip daddr . meta l4proto . th dport @firewall-ips ip daddr . meta l4proto . th dport . ip saddr != @firewall-allow drop
add rule ip kube-nftproxy mark-for-masquerade meta mark set meta mark | 0x00004000
add rule ip kube-nftproxy masquerading ct status dnat ip saddr . ip daddr @hairpin masquerade fully-random
add rule ip kube-nftproxy masquerading meta mark & 0x00004000 == 0 return
add rule ip kube-nftproxy masquerading meta mark set meta mark ^ 0x00004000
add rule ip kube-nftproxy masquerading masquerade fully-random
add rule ip kube-nftproxy nat-output jump services
add rule ip kube-nftproxy nat-postrouting jump masquerading
add rule ip kube-nftproxy nat-prerouting jump services
add rule ip kube-nftproxy reject-chain meta l4proto tcp reject with tcp reset
add rule ip kube-nftproxy reject-chain reject
add rule ip kube-nftproxy services ip daddr . meta l4proto . th dport vmap @service-ips
add rule ip kube-nftproxy shortcircuit ip daddr . meta l4proto . th dport vmap @shortcircuit-ips
add rule ip kube-nftproxy shortcircuit-2 meta l4proto tcp dnat ip to ip daddr . th dport . numgen random mod 2 map @cluster-backends-tcp
add rule ip kube-nftproxy shortcircuit-2 meta l4proto udp dnat ip to ip daddr . th dport . numgen random mod 2 map @cluster-backends-udp
add rule ip kube-nftproxy shortcircuit-2 meta l4proto sctp dnat ip to ip daddr . th dport . numgen random mod 2 map @cluster-backends-sctp
add element ip kube-nftproxy backends-tcp { 10.96.0.1 . 80 . 0 : 10.244.1.2 . 8080 }
add element ip kube-nftproxy backends-tcp { 10.96.0.1 . 80 . 1 : 10.244.2.2 . 8080 }
add element ip kube-nftproxy backends-tcp { 10.96.0.3 . 80 . 0 : 10.244.1.3 . 8080 }
add element ip kube-nftproxy backends-tcp { 10.96.0.3 . 80 . 1 : 10.244.2.3 . 8080 }
add element ip kube-nftproxy backends-tcp { 10.96.0.4 . 443 . 0 : 10.244.2.4 . 8443 }
add element ip kube-nftproxy backends-tcp { 192.168.0.10 . 30080 . 0 : 10.244.1.3 . 8080 }
add element ip kube-nftproxy backends-tcp { 192.168.0.10 . 30443 . 0 : 10.244.2.4 . 8443 }
add element ip kube-nftproxy backends-tcp { 198.51.100.7 . 443 . 0 : 10.244.2.4 . 8443 }
add element ip kube-nftproxy cluster-backends-tcp { 192.168.0.10 . 30080 . 0 : 10.244.1.3 . 8080 }
add element ip kube-nftproxy cluster-backends-tcp { 192.168.0.10 . 30080 . 1 : 10.244.2.3 . 8080 }
add element ip kube-nftproxy cluster-ips { 10.96.0.1 }
add element ip kube-nftproxy cluster-ips { 10.96.0.2 }
add element ip kube-nftproxy cluster-ips { 10.96.0.3 }
add element ip kube-nftproxy cluster-ips { 10.96.0.4 }
add element ip kube-nftproxy firewall-allow { 198.51.100.7 . tcp . 443 . 192.0.2.0/24 }
add element ip kube-nftproxy firewall-ips { 198.51.100.7 . tcp . 443 }
add element ip kube-nftproxy hairpin { 10.244.1.2 . 10.244.1.2 }
add element ip kube-nftproxy hairpin { 10.244.1.3 . 10.244.1.3 }
add element ip kube-nftproxy no-endpoint-services { 10.96.0.2 . udp . 53 : goto reject-chain }
add element ip kube-nftproxy service-cidrs { 10.96.0.0/16 }
add element ip kube-nftproxy service-ips { 10.96.0.1 . tcp . 80 : goto clusterip-2 }
add element ip kube-nftproxy service-ips { 10.96.0.3 . tcp . 80 : goto clusterip-2 }
add element ip kube-nftproxy service-ips { 10.96.0.4 . tcp . 443 : goto clusterip-1 }
add element ip kube-nftproxy service-ips { 192.168.0.10 . tcp . 30080 : goto external-local-1 }
add element ip kube-nftproxy service-ips { 192.168.0.10 . tcp . 30443 : goto external-1 }
add element ip kube-nftproxy service-ips { 198.51.100.7 . tcp . 443 : goto external-1 }
add element ip kube-nftproxy shortcircuit-ips { 192.168.0.10 . tcp . 30080 : goto shortcircuit-2 }
`;

const EXPECTED_MAGLEV = `add chain ip kube-nftproxy affinity-record-H-cluster
add chain ip kube-nftproxy affinity-record-H-local
add chain ip kube-nftproxy clusterip-maglev-sticky
add chain ip kube-nftproxy external-local-maglev-sticky
add chain ip kube-nftproxy maglev-H-cluster
add chain ip kube-nftproxy maglev-H-local
add chain ip kube-nftproxy shortcircuit-maglev-sticky
add map ip kube-nftproxy cluster-maglev-ports { type ipv4_addr . inet_proto . inet_service : verdict ; comment "eTP Local Maglev frontends: goto their service port's cluster-wide table" ; }
add map ip kube-nftproxy maglev-H-cluster { typeof numgen random mod 1 : ip daddr . tcp dport ; comment "Maglev slot: the tcp endpoint of one service port's endpoint list" ; }
add map ip kube-nftproxy maglev-H-local { typeof numgen random mod 1 : ip daddr . tcp dport ; comment "Maglev slot: the tcp endpoint of one service port's endpoint list" ; }
add map ip kube-nftproxy maglev-ports { type ipv4_addr . inet_proto . inet_service : verdict ; comment "Maglev frontends: goto their service port's table" ; }
add rule ip kube-nftproxy affinity-record-H-cluster meta l4proto tcp update @affinity-tcp { 10.96.0.9 . 80 . ip saddr timeout 10800s : ip daddr . th dport }
add rule ip kube-nftproxy affinity-record-H-local meta l4proto tcp update @affinity-tcp { 192.0.2.1 . 80 . ip saddr timeout 10800s : ip daddr . th dport }
add rule ip kube-nftproxy affinity-record-H-local meta l4proto tcp update @affinity-tcp { 198.51.100.9 . 80 . ip saddr timeout 10800s : ip daddr . th dport }
add rule ip kube-nftproxy affinity-record-H-local meta l4proto tcp update @affinity-tcp { 192.168.0.10 . 30080 . ip saddr timeout 10800s : ip daddr . th dport }
add rule ip kube-nftproxy clusterip-maglev-sticky ip saddr != { 10.244.0.0/16 } jump mark-for-masquerade
add rule ip kube-nftproxy clusterip-maglev-sticky meta l4proto tcp dnat ip to ip daddr . th dport . ip saddr map @affinity-tcp
add rule ip kube-nftproxy clusterip-maglev-sticky meta l4proto udp dnat ip to ip daddr . th dport . ip saddr map @affinity-udp
add rule ip kube-nftproxy clusterip-maglev-sticky meta l4proto sctp dnat ip to ip daddr . th dport . ip saddr map @affinity-sctp
add rule ip kube-nftproxy clusterip-maglev-sticky ip daddr . meta l4proto . th dport vmap @maglev-ports
add rule ip kube-nftproxy external-local-maglev-sticky ip saddr { 10.244.0.0/16 } goto shortcircuit
add rule ip kube-nftproxy external-local-maglev-sticky fib saddr type local jump mark-for-masquerade
add rule ip kube-nftproxy external-local-maglev-sticky fib saddr type local goto shortcircuit
add rule ip kube-nftproxy external-local-maglev-sticky meta l4proto tcp dnat ip to ip daddr . th dport . ip saddr map @affinity-tcp
add rule ip kube-nftproxy external-local-maglev-sticky meta l4proto udp dnat ip to ip daddr . th dport . ip saddr map @affinity-udp
add rule ip kube-nftproxy external-local-maglev-sticky meta l4proto sctp dnat ip to ip daddr . th dport . ip saddr map @affinity-sctp
add rule ip kube-nftproxy external-local-maglev-sticky ip daddr . meta l4proto . th dport vmap @maglev-ports
add rule ip kube-nftproxy maglev-H-cluster meta l4proto tcp dnat ip to jhash ip saddr . th sport mod 16381 seed 0x00000000 map @maglev-H-cluster
add rule ip kube-nftproxy maglev-H-local meta l4proto tcp dnat ip to jhash ip saddr . th sport mod 251 seed 0x00000000 map @maglev-H-local
add rule ip kube-nftproxy shortcircuit-maglev-sticky meta l4proto tcp dnat ip to ip daddr . th dport . ip saddr map @affinity-tcp
add rule ip kube-nftproxy shortcircuit-maglev-sticky meta l4proto udp dnat ip to ip daddr . th dport . ip saddr map @affinity-udp
add rule ip kube-nftproxy shortcircuit-maglev-sticky meta l4proto sctp dnat ip to ip daddr . th dport . ip saddr map @affinity-sctp
add rule ip kube-nftproxy shortcircuit-maglev-sticky ip daddr . meta l4proto . th dport vmap @cluster-maglev-ports
add element ip kube-nftproxy affinity-frontends-tcp { 10.96.0.9 . 80 : goto affinity-record-H-cluster }
add element ip kube-nftproxy affinity-frontends-tcp { 192.0.2.1 . 80 : goto affinity-record-H-local }
add element ip kube-nftproxy affinity-frontends-tcp { 192.168.0.10 . 30080 : goto affinity-record-H-local }
add element ip kube-nftproxy affinity-frontends-tcp { 198.51.100.9 . 80 : goto affinity-record-H-local }
add element ip kube-nftproxy cluster-ips { 10.96.0.9 }
add element ip kube-nftproxy cluster-maglev-ports { 192.0.2.1 . tcp . 80 : goto maglev-H-cluster }
add element ip kube-nftproxy cluster-maglev-ports { 192.168.0.10 . tcp . 30080 : goto maglev-H-cluster }
add element ip kube-nftproxy cluster-maglev-ports { 198.51.100.9 . tcp . 80 : goto maglev-H-cluster }
add element ip kube-nftproxy hairpin { 10.244.1.9 . 10.244.1.9 }
add element ip kube-nftproxy maglev-ports { 10.96.0.9 . tcp . 80 : goto maglev-H-cluster }
add element ip kube-nftproxy maglev-ports { 192.0.2.1 . tcp . 80 : goto maglev-H-local }
add element ip kube-nftproxy maglev-ports { 192.168.0.10 . tcp . 30080 : goto maglev-H-local }
add element ip kube-nftproxy maglev-ports { 198.51.100.9 . tcp . 80 : goto maglev-H-local }
add element ip kube-nftproxy service-cidrs { 10.96.0.0/16 }
add element ip kube-nftproxy service-ips { 10.96.0.9 . tcp . 80 : goto clusterip-maglev-sticky }
add element ip kube-nftproxy service-ips { 192.0.2.1 . tcp . 80 : goto external-local-maglev-sticky }
add element ip kube-nftproxy service-ips { 192.168.0.10 . tcp . 30080 : goto external-local-maglev-sticky }
add element ip kube-nftproxy service-ips { 198.51.100.9 . tcp . 80 : goto external-local-maglev-sticky }
add element ip kube-nftproxy shortcircuit-ips { 192.0.2.1 . tcp . 80 : goto shortcircuit-maglev-sticky }
add element ip kube-nftproxy shortcircuit-ips { 192.168.0.10 . tcp . 30080 : goto shortcircuit-maglev-sticky }
add element ip kube-nftproxy shortcircuit-ips { 198.51.100.9 . tcp . 80 : goto shortcircuit-maglev-sticky }
`;

const EXPECTED_IPV6_AFFINITY = `add chain ip6 kube-nftproxy affinity-H-cluster
add chain ip6 kube-nftproxy affinity-record
add chain ip6 kube-nftproxy affinity-record-H-cluster
add chain ip6 kube-nftproxy clusterip-2-sticky
add chain ip6 kube-nftproxy external-2-sticky
add map ip6 kube-nftproxy affinity-H-cluster { typeof ip6 saddr : ip6 daddr ; flags dynamic,timeout ; timeout 3h ; comment "client: the address of the tcp endpoint it had (sessionAffinity ClientIP)" ; }
add map ip6 kube-nftproxy affinity-H-cluster-port { typeof ip6 saddr : tcp dport ; flags dynamic,timeout ; timeout 3h ; comment "client: the port of the tcp endpoint it had (sessionAffinity ClientIP)" ; }
add map ip6 kube-nftproxy affinity-frontends-sctp { type ipv6_addr . inet_service : verdict ; comment "sctp frontends with sessionAffinity: goto the recorder of their service port" ; }
add map ip6 kube-nftproxy affinity-frontends-tcp { type ipv6_addr . inet_service : verdict ; comment "tcp frontends with sessionAffinity: goto the recorder of their service port" ; }
add map ip6 kube-nftproxy affinity-frontends-udp { type ipv6_addr . inet_service : verdict ; comment "udp frontends with sessionAffinity: goto the recorder of their service port" ; }
add map ip6 kube-nftproxy affinity-ports { type ipv6_addr . inet_proto . inet_service : verdict ; comment "sticky frontends: jump to the lookup of their service port (sessionAffinity ClientIP)" ; }
add rule ip6 kube-nftproxy affinity-H-cluster meta l4proto tcp dnat ip6 to ip6 saddr map @affinity-H-cluster : ip6 saddr map @affinity-H-cluster-port
add rule ip6 kube-nftproxy affinity-record meta l4proto tcp ct original ip6 daddr . ct original proto-dst vmap @affinity-frontends-tcp
add rule ip6 kube-nftproxy affinity-record meta l4proto udp ct original ip6 daddr . ct original proto-dst vmap @affinity-frontends-udp
add rule ip6 kube-nftproxy affinity-record meta l4proto sctp ct original ip6 daddr . ct original proto-dst vmap @affinity-frontends-sctp
add rule ip6 kube-nftproxy affinity-record-H-cluster meta l4proto tcp update @affinity-H-cluster { ip6 saddr timeout 10800s : ip6 daddr } update @affinity-H-cluster-port { ip6 saddr timeout 10800s : th dport }
add rule ip6 kube-nftproxy clusterip-2-sticky ip6 daddr . meta l4proto . th dport vmap @affinity-ports
add rule ip6 kube-nftproxy clusterip-2-sticky meta l4proto tcp dnat ip6 to ip6 daddr . th dport . numgen random mod 2 map @backends-tcp
add rule ip6 kube-nftproxy clusterip-2-sticky meta l4proto udp dnat ip6 to ip6 daddr . th dport . numgen random mod 2 map @backends-udp
add rule ip6 kube-nftproxy clusterip-2-sticky meta l4proto sctp dnat ip6 to ip6 daddr . th dport . numgen random mod 2 map @backends-sctp
add rule ip6 kube-nftproxy external-2-sticky jump mark-for-masquerade
add rule ip6 kube-nftproxy external-2-sticky ip6 daddr . meta l4proto . th dport vmap @affinity-ports
add rule ip6 kube-nftproxy external-2-sticky meta l4proto tcp dnat ip6 to ip6 daddr . th dport . numgen random mod 2 map @backends-tcp
add rule ip6 kube-nftproxy external-2-sticky meta l4proto udp dnat ip6 to ip6 daddr . th dport . numgen random mod 2 map @backends-udp
add rule ip6 kube-nftproxy external-2-sticky meta l4proto sctp dnat ip6 to ip6 daddr . th dport . numgen random mod 2 map @backends-sctp
add rule ip6 kube-nftproxy filter-output-post-dnat ct state new ct status dnat jump affinity-record
add rule ip6 kube-nftproxy filter-prerouting-post-dnat ct state new ct status dnat jump affinity-record
add element ip6 kube-nftproxy affinity-frontends-tcp { fd00:1::10 . 30080 : goto affinity-record-H-cluster }
add element ip6 kube-nftproxy affinity-frontends-tcp { fd00:96::1 . 80 : goto affinity-record-H-cluster }
add element ip6 kube-nftproxy affinity-ports { fd00:1::10 . tcp . 30080 : jump affinity-H-cluster }
add element ip6 kube-nftproxy affinity-ports { fd00:96::1 . tcp . 80 : jump affinity-H-cluster }
add element ip6 kube-nftproxy service-ips { fd00:1::10 . tcp . 30080 : goto external-2-sticky }
add element ip6 kube-nftproxy service-ips { fd00:96::1 . tcp . 80 : goto clusterip-2-sticky }
`;
