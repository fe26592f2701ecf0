/**
 * The layout of our tables: every chain, set and map name, and the static skeleton every
 * family's table holds (hooks, static chains, maps, and the pick chains, recorders and Maglev
 * tables in use), as data in one place.
 */
import { compareStrings } from '../util/sorted-index.js';
import type { Family, LbAlgorithm } from '../model/types.js';
import type { Chain, NftFamily, NftMap, NftSet, Rule } from './nft/types.js';
import type { Ruleset } from './ruleset.js';

/** The masquerade bit, kube-proxy's default (--masquerade-bit 14). */
export const MASQ_MARK = '0x00004000';

interface FamilySyntax {
  nft: NftFamily;
  /** `ip` or `ip6`: the payload keyword. */
  x: string;
  addr: string;
}
export const SYNTAX: Record<Family, FamilySyntax> = {
  ipv4: { nft: 'ip', x: 'ip', addr: 'ipv4_addr' },
  ipv6: { nft: 'ip6', x: 'ip6', addr: 'ipv6_addr' },
};

/** What a pick chain is for: which masquerade and short-circuit rules precede the pick. */
export type Role = 'clusterip' | 'external' | 'external-local' | 'shortcircuit';

export interface PickSpec {
  role: Role;
  algo: LbAlgorithm;
  /**
   * random: the endpoint count (0 for an eTP Local frontend with no local endpoint). maglev: 0,
   * the size lives in the service port's own Maglev chain.
   */
  size: number;
  /** sessionAffinity ClientIP: look the client up before picking. */
  sticky: boolean;
}

/** `clusterip-3`, `external-maglev`, `clusterip-2-sticky`: one chain per combination in use. */
export const pickChainName = (s: PickSpec): string =>
  `${s.role}-${s.algo === 'maglev' ? 'maglev' : s.size}${s.sticky ? '-sticky' : ''}`;

const PROTOCOLS = ['tcp', 'udp', 'sctp'] as const;
type Protocol = (typeof PROTOCOLS)[number];

/**
 * One Maglev table of a service port (one per endpoint list: cluster-wide, and local for a
 * traffic policy Local): a chain of that name hashes the flow into M slots and a map of that
 * name holds slot → endpoint. Its frontends reach it through @maglev-ports, so the table is
 * written once however many frontends share it.
 */
export interface MaglevTable {
  proto: Protocol;
  /** Slots (a prime, see src/lb/maglev.ts). */
  m: number;
}

/** The set of ClusterIP ranges whose unallocated addresses are dropped. */
export const SERVICE_CIDRS = 'service-cidrs';

/**
 * A sticky frontend group's recorder: its chain's rules (the updates after a DNAT) and, for
 * IPv6, the group's own maps and lookup chain (`lookup`, the name of all three). nft 1.0.6
 * aborts on any IPv6 map update with a concatenated key or value (`netlink_gen_expr:
 * Assertion dreg < ctx->reg_low`), so IPv6 cannot share IPv4's frontend . client maps: each
 * group records client → endpoint address and client → endpoint port, one field each.
 */
export interface Recorder {
  rules: string[];
  lookup?: { name: string; proto: Protocol };
}

/** What every family's rules share, computed once per config. */
export interface FamilyContext {
  family: Family;
  nft: NftFamily;
  x: string;
  addr: string;
  table: string;
  /** Matches pod traffic (localMatch); undefined when nothing is told apart in this family. */
  ifLocal: string | undefined;
  frontendKey: string;
  nodePortIPs: Record<Family, string[]>;
  masq: string[];
  maglevSeed: number;
  /** --service-counters: the decision maps count what they decide, per frontend (COUNTED). */
  counters: boolean;
}

/**
 * The maps and sets whose elements count, per frontend (`ip . proto . port`), when
 * --service-counters is on: each is where one decision about a new connection is made, so a
 * lookup that matches is one decision. `service-ips` is read in the nat chains, which see only
 * the first packet of a connection; the others are in filter chains behind `ct state new`.
 */
export const COUNTED = {
  /** New connections sent on to pick an endpoint (nat). */
  connections: 'service-ips',
  /** New connections refused or dropped: no endpoint for this frontend. */
  noEndpoints: 'no-endpoint-services',
  /**
   * eTP Local frontends that are in `no-endpoint-services` too (no local endpoint): only pods
   * and the node reach an endpoint, through here; the rest are dropped.
   */
  shortcircuit: 'shortcircuit-ips',
  /** New connections dropped by loadBalancerSourceRanges (the allowed never reach the lookup). */
  sourceRangeDrops: 'firewall-ips',
} as const;

/** Tables, hooks, static chains, sets and maps, and the pick chains, recorders and Maglev tables in use. */
export function staticPart(
  rs: Ruleset,
  ctx: FamilyContext,
  used: {
    picks: Map<string, PickSpec>;
    recorders: Map<string, Recorder>;
    maglev: Map<string, MaglevTable>;
  },
): void {
  const { nft, x, addr, table, frontendKey, ifLocal } = ctx;
  // A frontend within one protocol's backends map (its rules match the protocol first).
  const backendKey = `${x} daddr . th dport`;
  const base = { family: nft, table };
  rs.tables.push({ ...base, kind: 'table', comment: 'rules for kube-nftproxy' });
  const chain = (name: string, rules: string[], hook?: Pick<Chain, 'type' | 'hook' | 'priority'>): void => {
    rs.chains.push({
      chain: { ...base, kind: 'chain', name, ...(hook ?? {}) },
      rules: rules.map((rule): Rule => ({ ...base, kind: 'rule', chain: name, rule })),
    });
  };
  const set = (name: string, type: string[], extra: Partial<NftSet> = {}): void => {
    rs.sets.push({ ...base, kind: 'set', name, type, ...extra });
  };
  const map = (name: string, spec: Omit<NftMap, 'kind' | 'family' | 'table' | 'name'>): void => {
    rs.sets.push({ ...base, kind: 'map', name, ...spec });
  };
  // --- hooks, in kube-proxy's priorities: filtering sees pre-DNAT addresses, except the
  // endpoint checks for locally generated traffic, which must see the short-circuit's DNAT.
  chain('filter-prerouting', ['ct state new jump firewall-check'], {
    type: 'filter',
    hook: 'prerouting',
    priority: -110,
  });
  chain('filter-output', ['ct state new jump firewall-check'], {
    type: 'filter',
    hook: 'output',
    priority: -110,
  });
  chain('filter-input', ['ct state new jump endpoints-check'], {
    type: 'filter',
    hook: 'input',
    priority: -110,
  });
  chain('filter-forward', ['ct state new jump endpoints-check', 'ct state new jump cluster-ips-check'], {
    type: 'filter',
    hook: 'forward',
    priority: -110,
  });
  chain('filter-prerouting-post-dnat', ['ct state new ct status dnat jump affinity-record'], {
    type: 'filter',
    hook: 'prerouting',
    priority: -90,
  });
  chain(
    'filter-output-post-dnat',
    [
      'ct state new ct status dnat jump affinity-record',
      'ct state new jump endpoints-check',
      'ct state new jump cluster-ips-check',
    ],
    {
      type: 'filter',
      hook: 'output',
      priority: -90,
    },
  );
  chain('nat-prerouting', ['jump services'], { type: 'nat', hook: 'prerouting', priority: -100 });
  chain('nat-output', ['jump services'], { type: 'nat', hook: 'output', priority: -100 });
  chain('nat-postrouting', ['jump masquerading'], { type: 'nat', hook: 'postrouting', priority: 100 });

  // --- static regular chains
  chain('firewall-check', [
    // Counted, the frontend is looked up last: only a connection the ranges refuse matches it.
    ctx.counters
      ? `${frontendKey} . ${x} saddr != @firewall-allow ${frontendKey} @firewall-ips drop`
      : `${frontendKey} @firewall-ips ${frontendKey} . ${x} saddr != @firewall-allow drop`,
  ]);
  chain('endpoints-check', [`${frontendKey} vmap @no-endpoint-services`]);
  chain('cluster-ips-check', [
    `${x} daddr @cluster-ips goto reject-chain`,
    // An empty set matches nothing: the rule stays as ranges come and go (element operations).
    `${x} daddr @${SERVICE_CIDRS} drop`,
  ]);
  // IPv6 TCP ignores the ICMPv6 a plain reject sends (the client waits for its timeout): reset it.
  chain('reject-chain', ['meta l4proto tcp reject with tcp reset', 'reject']);
  chain('services', [`${frontendKey} vmap @service-ips`]);
  chain('shortcircuit', [`${frontendKey} vmap @shortcircuit-ips`]);
  chain('mark-for-masquerade', [`meta mark set meta mark | ${MASQ_MARK}`]);
  chain('masquerading', [
    // A pod that reached itself through a Service must see the reply come from elsewhere.
    `ct status dnat ${x} saddr . ${x} daddr @hairpin masquerade fully-random`,
    `meta mark & ${MASQ_MARK} == 0 return`,
    `meta mark set meta mark ^ ${MASQ_MARK}`,
    'masquerade fully-random',
  ]);

  const verdictMap = { type: [addr, 'inet_proto', 'inet_service'], valueType: ['verdict'] };
  const counted = ctx.counters ? { counter: true } : {};
  map('service-ips', {
    ...verdictMap,
    ...counted,
    comment: 'frontends with endpoints: goto the chain that picks one',
  });
  map('no-endpoint-services', {
    ...verdictMap,
    ...counted,
    comment: 'frontends without endpoints: reject or drop',
  });
  map('shortcircuit-ips', {
    ...verdictMap,
    ...counted,
    comment: 'eTP Local frontends: pods and the node use every endpoint',
  });
  map('maglev-ports', { ...verdictMap, comment: "Maglev frontends: goto their service port's table" });
  map('cluster-maglev-ports', {
    ...verdictMap,
    comment: "eTP Local Maglev frontends: goto their service port's cluster-wide table",
  });
  // One backends map per protocol: nft 1.0.6 refuses a later rule that uses an existing map
  // whose value typeof says `th dport` ("conflicting protocols specified: ip vs. th"), and a
  // value typeof of `tcp dport` makes every rule using the map match TCP only. So each map
  // says its own protocol, and each pick chain has one DNAT rule per protocol, behind a
  // `meta l4proto` match. The key then needs no protocol field: at 50,000 Services these maps
  // hold 700,000 elements, and the field cost nft 10 % of its memory and 20 % of its load time.
  for (const p of PROTOCOLS) {
    const backendMap = {
      typeof: `${backendKey} . numgen random mod 1`,
      valueTypeof: `${x} daddr . ${p} dport`,
    };
    map(`backends-${p}`, {
      ...backendMap,
      comment: `frontend . slot: the ${p} endpoint for this traffic policy`,
    });
    map(`cluster-backends-${p}`, {
      ...backendMap,
      comment: `eTP Local frontend . slot: cluster-wide ${p} endpoints`,
    });
  }
  set('cluster-ips', [addr], { comment: 'active ClusterIPs' });
  set('firewall-ips', [addr, 'inet_proto', 'inet_service'], {
    ...counted,
    comment: 'frontends with loadBalancerSourceRanges',
  });
  set('firewall-allow', [addr, 'inet_proto', 'inet_service', addr], {
    flags: ['interval'],
    comment: 'frontend . allowed source range',
  });
  set('hairpin', [addr, addr], { comment: 'local endpoint . itself' });
  set(SERVICE_CIDRS, [addr], {
    flags: ['interval'],
    comment: 'ClusterIP ranges (ServiceCIDRs, else --service-cidr): unallocated addresses are dropped',
  });
  // Session affinity: the endpoint each client got, per frontend, recorded after DNAT (the
  // packet then carries the endpoint, conntrack the frontend) and looked up before the pick.
  // Typed per protocol for the same nft 1.0.6 reasons as the backends maps; `ct original
  // proto-dst` is typed only after a `meta l4proto` match in the same rule.
  for (const p of PROTOCOLS) {
    if (ctx.family === 'ipv4')
      map(`affinity-${p}`, {
        typeof: `${x} daddr . th dport . ${x} saddr`,
        valueTypeof: `${x} daddr . ${p} dport`,
        flags: ['dynamic', 'timeout'],
        timeout: '3h',
        comment: `frontend . client: the ${p} endpoint it had (sessionAffinity ClientIP)`,
      });
    map(`affinity-frontends-${p}`, {
      type: [addr, 'inet_service'],
      valueType: ['verdict'],
      comment: `${p} frontends with sessionAffinity: goto the recorder of their service port`,
    });
  }
  // IPv6 groups record in maps of their own (see Recorder), looked up through this one.
  if (ctx.family === 'ipv6')
    map('affinity-ports', {
      ...verdictMap,
      comment: 'sticky frontends: jump to the lookup of their service port (sessionAffinity ClientIP)',
    });
  chain(
    'affinity-record',
    PROTOCOLS.map(
      (p) => `meta l4proto ${p} ct original ${x} daddr . ct original proto-dst vmap @affinity-frontends-${p}`,
    ),
  );

  const prefix: Record<Role, string[]> = {
    clusterip: ctx.masq,
    external: ['jump mark-for-masquerade'],
    'external-local': [
      ...(ifLocal ? [`${ifLocal} goto shortcircuit`] : []),
      'fib saddr type local jump mark-for-masquerade',
      'fib saddr type local goto shortcircuit',
    ],
    shortcircuit: [],
  };
  const byName = <T>(m: Map<string, T>): Array<[string, T]> =>
    [...m.entries()].sort(([a], [b]) => compareStrings(a, b));
  for (const [name, spec] of byName(used.picks)) {
    const mapName = spec.role === 'shortcircuit' ? 'cluster-backends' : 'backends';
    const pick =
      spec.algo === 'maglev'
        ? [`${frontendKey} vmap @${spec.role === 'shortcircuit' ? 'cluster-maglev-ports' : 'maglev-ports'}`]
        : spec.size > 0
          ? PROTOCOLS.map(
              (p) =>
                `meta l4proto ${p} dnat ${x} to ${backendKey} . numgen random mod ${spec.size} map @${mapName}-${p}`,
            )
          : [];
    chain(name, [
      ...prefix[spec.role],
      // A client seen within its affinity timeout goes back to the endpoint it had.
      ...(!spec.sticky
        ? []
        : ctx.family === 'ipv6'
          ? [`${frontendKey} vmap @affinity-ports`]
          : PROTOCOLS.map(
              (p) => `meta l4proto ${p} dnat ${x} to ${x} daddr . th dport . ${x} saddr map @affinity-${p}`,
            )),
      ...pick,
    ]);
  }
  for (const [name, { rules, lookup }] of byName(used.recorders)) {
    chain(name, rules);
    if (!lookup) continue;
    const { name: own, proto: p } = lookup;
    const dynamic = { flags: ['dynamic', 'timeout'] as Array<'dynamic' | 'timeout'>, timeout: '3h' };
    map(own, {
      typeof: `${x} saddr`,
      valueTypeof: `${x} daddr`,
      ...dynamic,
      comment: `client: the address of the ${p} endpoint it had (sessionAffinity ClientIP)`,
    });
    map(`${own}-port`, {
      typeof: `${x} saddr`,
      valueTypeof: `${p} dport`,
      ...dynamic,
      comment: `client: the port of the ${p} endpoint it had (sessionAffinity ClientIP)`,
    });
    // Returns (no match) when the client is in neither map: the pick goes on.
    chain(own, [`meta l4proto ${p} dnat ${x} to ${x} saddr map @${own} : ${x} saddr map @${own}-port`]);
  }
  // One chain and one map per Maglev table, of the same name. The map's key is typed by
  // `numgen`, an integer as wide as `jhash`: `typeof jhash` as a key crashes `nft list` in 1.0.6,
  // and `type mark` does not match jhash's integer.
  const seed = `0x${ctx.maglevSeed.toString(16).padStart(8, '0')}`;
  for (const [name, { proto: p, m }] of byName(used.maglev)) {
    map(name, {
      typeof: 'numgen random mod 1',
      valueTypeof: `${x} daddr . ${p} dport`,
      comment: `Maglev slot: the ${p} endpoint of one service port's endpoint list`,
    });
    chain(name, [
      `meta l4proto ${p} dnat ${x} to jhash ${x} saddr . th sport mod ${m} seed ${seed} map @${name}`,
    ]);
  }
}
