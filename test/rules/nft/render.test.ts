import assert from 'node:assert/strict';
import { renderOperation, renderPriority } from '../../../src/rules/nft/render.js';
import type { NftObject, Verb } from '../../../src/rules/nft/types.js';

const at = { family: 'ip', table: 'kube-nftproxy' } as const;

/** Every form the wrapper renders; the kernel test loads the same list into real nft. */
export const RENDER_CASES: Array<{ verb: Verb; object: NftObject; lines: string[] }> = [
  {
    verb: 'add',
    object: { kind: 'table', ...at, comment: 'rules for kube-nftproxy' },
    lines: ['add table ip kube-nftproxy { comment "rules for kube-nftproxy" ; }'],
  },
  {
    verb: 'add',
    object: { kind: 'table', family: 'ip6', table: 'kube-nftproxy' },
    lines: ['add table ip6 kube-nftproxy'],
  },
  {
    verb: 'add',
    object: {
      kind: 'chain',
      ...at,
      name: 'nat-prerouting',
      type: 'nat',
      hook: 'prerouting',
      priority: 'dstnat',
    },
    lines: ['add chain ip kube-nftproxy nat-prerouting { type nat hook prerouting priority dstnat ; }'],
  },
  {
    verb: 'add',
    object: {
      kind: 'chain',
      ...at,
      name: 'filter-fwd',
      type: 'filter',
      hook: 'forward',
      priority: 'filter-10',
      comment: 'fw',
    },
    lines: [
      'add chain ip kube-nftproxy filter-fwd { type filter hook forward priority filter - 10 ; comment "fw" ; }',
    ],
  },
  {
    verb: 'add',
    object: { kind: 'chain', ...at, name: 'nat-output', type: 'nat', hook: 'output', priority: -100 },
    lines: ['add chain ip kube-nftproxy nat-output { type nat hook output priority -100 ; }'],
  },
  {
    verb: 'add',
    object: { kind: 'chain', ...at, name: 'services' },
    lines: ['add chain ip kube-nftproxy services'],
  },
  {
    verb: 'add',
    object: { kind: 'chain', ...at, name: 'cip-2', comment: 'two endpoints' },
    lines: ['add chain ip kube-nftproxy cip-2 { comment "two endpoints" ; }'],
  },
  {
    verb: 'add',
    object: {
      kind: 'map',
      ...at,
      name: 'service-ips',
      type: ['ipv4_addr', 'inet_proto', 'inet_service'],
      valueType: ['verdict'],
      comment: 'vip . proto . port',
    },
    lines: [
      'add map ip kube-nftproxy service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; comment "vip . proto . port" ; }',
    ],
  },
  {
    verb: 'add',
    object: {
      kind: 'map',
      ...at,
      name: 'backends',
      typeof: 'ip daddr . meta l4proto . th dport . numgen random mod 2',
      valueTypeof: 'ip daddr . th dport',
    },
    lines: [
      'add map ip kube-nftproxy backends { typeof ip daddr . meta l4proto . th dport . numgen random mod 2 : ip daddr . th dport ; }',
    ],
  },
  {
    verb: 'add',
    object: { kind: 'set', ...at, name: 'cluster-ips', type: ['ipv4_addr'], flags: ['interval'] },
    lines: ['add set ip kube-nftproxy cluster-ips { type ipv4_addr ; flags interval ; }'],
  },
  {
    verb: 'add',
    object: { kind: 'set', ...at, name: 'affinity', type: ['ipv4_addr'], flags: ['timeout'], timeout: '3h' },
    lines: ['add set ip kube-nftproxy affinity { type ipv4_addr ; flags timeout ; timeout 3h ; }'],
  },
  {
    verb: 'create',
    object: {
      kind: 'set',
      ...at,
      name: 'ranges',
      type: ['ipv4_addr', 'inet_proto', 'inet_service', 'ipv4_addr'],
      flags: ['interval'],
    },
    lines: [
      'create set ip kube-nftproxy ranges { type ipv4_addr . inet_proto . inet_service . ipv4_addr ; flags interval ; }',
    ],
  },
  {
    verb: 'add',
    object: {
      kind: 'rule',
      ...at,
      chain: 'services',
      rule: 'ip daddr . meta l4proto . th dport vmap @service-ips',
    },
    lines: ['add rule ip kube-nftproxy services ip daddr . meta l4proto . th dport vmap @service-ips'],
  },
  {
    verb: 'add',
    object: {
      kind: 'rule',
      ...at,
      chain: 'cip-2',
      rule: 'dnat ip to ip daddr . meta l4proto . th dport . numgen random mod 2 map @backends',
      comment: 'two endpoints',
    },
    lines: [
      'add rule ip kube-nftproxy cip-2 dnat ip to ip daddr . meta l4proto . th dport . numgen random mod 2 map @backends comment "two endpoints"',
    ],
  },
  {
    verb: 'add',
    object: {
      kind: 'element',
      ...at,
      set: 'service-ips',
      key: '10.96.0.10 . tcp . 53',
      value: 'goto cip-2',
    },
    lines: ['add element ip kube-nftproxy service-ips { 10.96.0.10 . tcp . 53 : goto cip-2 }'],
  },
  {
    verb: 'add',
    object: {
      kind: 'element',
      ...at,
      set: 'service-ips',
      key: '10.96.0.11 . udp . 53',
      value: 'goto cip-2',
      comment: 'kube-system/dns',
    },
    lines: [
      'add element ip kube-nftproxy service-ips { 10.96.0.11 . udp . 53 comment "kube-system/dns" : goto cip-2 }',
    ],
  },
  {
    verb: 'add',
    object: {
      kind: 'element',
      ...at,
      set: 'backends',
      key: '10.96.0.10 . tcp . 53 . 1',
      value: '10.0.0.2 . 8053',
    },
    lines: ['add element ip kube-nftproxy backends { 10.96.0.10 . tcp . 53 . 1 : 10.0.0.2 . 8053 }'],
  },
  {
    verb: 'add',
    object: { kind: 'element', ...at, set: 'cluster-ips', key: '10.96.0.10' },
    lines: ['add element ip kube-nftproxy cluster-ips { 10.96.0.10 }'],
  },
  {
    verb: 'add',
    object: { kind: 'element', ...at, set: 'cluster-ips', key: '10.97.0.0/16', comment: 'range' },
    lines: ['add element ip kube-nftproxy cluster-ips { 10.97.0.0/16 comment "range" }'],
  },
  {
    verb: 'add',
    object: {
      kind: 'element',
      ...at,
      set: 'affinity',
      key: '10.1.2.4',
      timeout: '600s',
      expires: '420s',
      comment: 'restored',
    },
    lines: [
      'add element ip kube-nftproxy affinity { 10.1.2.4 timeout 600s expires 420s comment "restored" }',
    ],
  },
  {
    verb: 'create',
    object: { kind: 'element', ...at, set: 'affinity', key: '10.1.2.3', comment: 'client' },
    lines: ['create element ip kube-nftproxy affinity { 10.1.2.3 comment "client" }'],
  },
  {
    verb: 'delete',
    object: {
      kind: 'element',
      ...at,
      set: 'service-ips',
      key: '10.96.0.10 . tcp . 53',
      value: 'goto cip-2',
      comment: 'x',
    },
    lines: ['delete element ip kube-nftproxy service-ips { 10.96.0.10 . tcp . 53 }'],
  },
  {
    verb: 'flush',
    object: { kind: 'chain', ...at, name: 'services' },
    lines: ['flush chain ip kube-nftproxy services'],
  },
  {
    verb: 'flush',
    object: { kind: 'map', ...at, name: 'service-ips' },
    lines: ['flush map ip kube-nftproxy service-ips'],
  },
  {
    verb: 'flush',
    object: { kind: 'set', ...at, name: 'cluster-ips' },
    lines: ['flush set ip kube-nftproxy cluster-ips'],
  },
  {
    verb: 'delete',
    object: {
      kind: 'chain',
      ...at,
      name: 'cip-9',
      type: 'nat',
      hook: 'output',
      priority: 0,
      comment: 'ignored',
    },
    lines: ['delete chain ip kube-nftproxy cip-9'],
  },
  {
    verb: 'delete',
    object: { kind: 'set', ...at, name: 'old-set' },
    lines: ['delete set ip kube-nftproxy old-set'],
  },
  {
    verb: 'delete',
    object: { kind: 'map', ...at, name: 'old-map' },
    lines: ['delete map ip kube-nftproxy old-map'],
  },
  {
    verb: 'destroy',
    object: { kind: 'chain', ...at, name: 'gone', type: 'nat', hook: 'output', priority: 0 },
    lines: ['add chain ip kube-nftproxy gone', 'delete chain ip kube-nftproxy gone'],
  },
  {
    verb: 'destroy',
    object: { kind: 'set', ...at, name: 'gone-set', type: ['ipv4_addr'], comment: 'ignored' },
    lines: ['add set ip kube-nftproxy gone-set { type ipv4_addr ; }', 'delete set ip kube-nftproxy gone-set'],
  },
  {
    verb: 'destroy',
    object: { kind: 'map', ...at, name: 'gone-map', type: ['ipv4_addr'], valueType: ['verdict'] },
    lines: [
      'add map ip kube-nftproxy gone-map { type ipv4_addr : verdict ; }',
      'delete map ip kube-nftproxy gone-map',
    ],
  },
  {
    verb: 'destroy',
    object: { kind: 'table', family: 'ip6', table: 'kube-nftproxy', comment: 'ignored' },
    lines: ['add table ip6 kube-nftproxy', 'delete table ip6 kube-nftproxy'],
  },
  {
    verb: 'delete',
    object: { kind: 'table', ...at, comment: 'ignored' },
    lines: ['delete table ip kube-nftproxy'],
  },
];

describe('nft render', () => {
  for (const c of RENDER_CASES) {
    it(`${c.verb} ${c.object.kind}: ${c.lines[0]}`, () => {
      assert.deepEqual(renderOperation({ verb: c.verb, object: c.object }), c.lines);
    });
  }

  it('normalises priority offsets and leaves numbers alone', () => {
    assert.equal(renderPriority('dstnat'), 'dstnat');
    assert.equal(renderPriority('srcnat+10'), 'srcnat + 10');
    assert.equal(renderPriority(' filter -  5 '), 'filter - 5');
    assert.equal(renderPriority('-100'), '-100');
    assert.equal(renderPriority(-100), '-100');
  });
});
