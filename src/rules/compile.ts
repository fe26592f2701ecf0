import { createHash } from 'node:crypto';
import { frontendsOf, type Frontend } from '../model/frontends.js';
import { cidrContains, parseCidr } from '../model/ip.js';
import { maglevEndpointTable } from '../lb/maglev.js';
import type { Endpoint, Family, LbAlgorithm, ProxyState, ServicePort } from '../model/types.js';
import type { Chain, Element, NftFamily, NftMap, NftSet, Rule } from './nft/types.js';
import { setId, type Fragment, type Ruleset } from './ruleset.js';

/** What the compiler needs beyond the state: the parts of the config that shape rules. */
export interface CompileConfig {
  table: string;
  /** Pod networks: traffic to a ClusterIP from outside them is masqueraded; pods short-circuit eTP Local. */
  clusterCIDRs: string[];
  masqueradeAll: boolean;
  /** ClusterIP ranges: unallocated IPs in them are dropped. */
  serviceCIDRs: string[];
  /** Local addresses that accept NodePorts, by family (resolved by the caller; never loopback). */
  nodePortIPs: Record<Family, string[]>;
  /** Cluster-wide Maglev seed: every node builds the same slot table and hashes flows alike. */
  maglevSeed?: number;
}

/** The masquerade bit, kube-proxy's default (--masquerade-bit 14). */
export const MASQ_MARK = '0x00004000';

interface FamilySyntax {
  nft: NftFamily;
  /** `ip` or `ip6`: the payload keyword. */
  x: string;
  addr: string;
}
const SYNTAX: Record<Family, FamilySyntax> = {
  ipv4: { nft: 'ip', x: 'ip', addr: 'ipv4_addr' },
  ipv6: { nft: 'ip6', x: 'ip6', addr: 'ipv6_addr' },
};

/** What a pick chain is for: which masquerade and short-circuit rules precede the pick. */
type Role = 'clusterip' | 'external' | 'external-local' | 'shortcircuit';

interface PickSpec {
  role: Role;
  algo: LbAlgorithm;
  /** Endpoints (random) or Maglev slots (maglev); 0 for an eTP Local frontend with no local endpoint. */
  size: number;
  /** sessionAffinity ClientIP: look the client up before picking. */
  sticky: boolean;
}

/** `clusterip-3`, `external-maglev-16381`, `clusterip-2-sticky`: one chain per combination in use. */
export const pickChainName = (s: PickSpec): string =>
  `${s.role}-${s.algo === 'maglev' ? 'maglev-' : ''}${s.size}${s.sticky ? '-sticky' : ''}`;

const PROTOCOLS = ['tcp', 'udp', 'sctp'] as const;

/** A chain-name-safe, stable short name for a service port (its key may hold any Service name). */
const portHash = (key: string): string => createHash('sha256').update(key).digest('hex').slice(0, 12);
const proto = (sp: ServicePort): (typeof PROTOCOLS)[number] =>
  sp.protocol.toLowerCase() as (typeof PROTOCOLS)[number];

/**
 * ProxyState → desired nftables objects, a pure function. The layout (DESIGN.md): static
 * chains, one per (role, endpoint count), and data in maps keyed by frontend
 * (ip . proto . port) plus a slot, so that a change of endpoints is element operations.
 *
 * Packet path, for a frontend F with endpoints:
 *   nat-prerouting/nat-output → services: F vmap @service-ips → goto <role>-N
 *   <role>-N: masquerade decision, then dnat to F . numgen random mod N map @backends-<proto>
 * and without endpoints: filter hooks → endpoints-check: F vmap @no-endpoint-services →
 * reject (none anywhere) or drop (none for this traffic policy).
 */
export function compile(state: ProxyState, config: CompileConfig): Ruleset {
  return new Compiler(config).compile(state);
}

/**
 * compile() with memory: each service port's elements (its fragment) are kept for as long as
 * the model hands over the same ServicePort object, so a sync after one change compiles one
 * port, and the applier diffs one fragment. The output is exactly compile()'s.
 */
export class Compiler {
  readonly #config: CompileConfig;
  readonly #ctx: Record<Family, FamilyContext>;
  #fragments = new WeakMap<ServicePort, PortFragment>();

  constructor(config: CompileConfig) {
    this.#config = config;
    this.#ctx = { ipv4: familyContext('ipv4', config), ipv6: familyContext('ipv6', config) };
  }

  compile(state: ProxyState): Ruleset {
    const rs: Ruleset = { tables: [], chains: [], sets: [], elements: new Map(), fragments: new Map() };
    const picks: Record<Family, Map<string, PickSpec>> = { ipv4: new Map(), ipv6: new Map() };
    const recorders: Record<Family, Map<string, Recorder>> = { ipv4: new Map(), ipv6: new Map() };
    const hairpin: Record<Family, Set<string>> = { ipv4: new Set(), ipv6: new Set() };
    for (const sp of state.ports) {
      let fragment = this.#fragments.get(sp);
      if (!fragment) {
        fragment = compilePort(sp, this.#ctx[sp.family], this.#config);
        this.#fragments.set(sp, fragment);
      }
      rs.fragments.set(sp.key, fragment);
      for (const [name, spec] of fragment.picks) picks[sp.family].set(name, spec);
      for (const [name, r] of fragment.recorders) recorders[sp.family].set(name, r);
      for (const ip of fragment.hairpin) hairpin[sp.family].add(ip);
    }
    for (const family of ['ipv4', 'ipv6'] as const) {
      staticPart(rs, this.#ctx[family], picks[family], recorders[family]);
      // Shared by every Service that has the endpoint: one element, kept apart from fragments.
      const ctx = this.#ctx[family];
      const m = new Map<string, Element>();
      for (const ip of [...hairpin[family]].sort())
        m.set(`${ip} . ${ip}`, {
          kind: 'element',
          family: ctx.nft,
          table: ctx.table,
          set: 'hairpin',
          key: [ip, ip],
        });
      rs.elements.set(setId(ctx.nft, ctx.table, 'hairpin'), m);
    }
    return rs;
  }
}

/** A recorder chain's rules: the updates of the affinity map after a DNAT. */
type Recorder = string[];

/** A port's elements and what they need of the static part. */
interface PortFragment extends Fragment {
  readonly elements: Element[];
  readonly picks: Map<string, PickSpec>;
  readonly recorders: Map<string, Recorder>;
  readonly hairpin: string[];
}

/** What every family's rules share, computed once per config. */
interface FamilyContext {
  family: Family;
  nft: NftFamily;
  x: string;
  addr: string;
  table: string;
  podCIDRs: string[];
  serviceCIDRs: string[];
  frontendKey: string;
  nodePortIPs: Record<Family, string[]>;
  masq: string[];
  maglevSeed: number;
}

const anon = (list: string[]): string => `{ ${list.join(', ')} }`;

function familyContext(family: Family, config: CompileConfig): FamilyContext {
  const { nft, x, addr } = SYNTAX[family];
  const cidrs = (list: string[]): string[] =>
    list
      .map((c) => parseCidr(c))
      .filter((c) => c !== undefined && c.family === family)
      .map((c) => c!.text);
  const podCIDRs = cidrs(config.clusterCIDRs);
  return {
    family,
    nft,
    x,
    addr,
    table: config.table,
    podCIDRs,
    serviceCIDRs: cidrs(config.serviceCIDRs),
    frontendKey: `${x} daddr . meta l4proto . th dport`,
    nodePortIPs: config.nodePortIPs,
    masq: config.masqueradeAll
      ? ['jump mark-for-masquerade']
      : podCIDRs.length
        ? [`${x} saddr != ${anon(podCIDRs)} jump mark-for-masquerade`]
        : [],
    maglevSeed: config.maglevSeed ?? 0,
  };
}

/** One service port's elements, and the pick chains and recorders they jump to. Pure. */
function compilePort(sp: ServicePort, ctx: FamilyContext, config: CompileConfig): PortFragment {
  const { nft: family, table } = ctx;
  const p = proto(sp);
  const elements: Element[] = [];
  const picks = new Map<string, PickSpec>();
  const recorders = new Map<string, Recorder>();
  // Plain literals: building 100,000 elements with spreads costs seconds.
  const element = (set: string, key: string[], value?: string[]): void => {
    elements.push(
      value
        ? { kind: 'element', family, table, set, key, value }
        : { kind: 'element', family, table, set, key },
    );
  };
  const frontendKey = (fe: Frontend): string[] => [fe.ip, p, String(fe.port)];
  const stickyGroups = [
    { frontends: new Map<string, Frontend>() },
    { frontends: new Map<string, Frontend>() },
  ];
  const noEndpoints = (fe: Frontend): void =>
    element('no-endpoint-services', frontendKey(fe), [sp.hasEndpoints ? 'drop' : 'goto reject-chain']);
  const route = (
    mapName: 'service-ips' | 'shortcircuit-ips',
    role: Role,
    fe: Frontend,
    eps: Endpoint[],
  ): void => {
    let algo: LbAlgorithm = 'random';
    let slots = eps;
    if (sp.lbAlgorithm === 'maglev' && eps.length > 0) {
      algo = 'maglev';
      slots = maglevEndpointTable(eps, ctx.maglevSeed).slots;
    }
    const size = slots.length;
    // nft 1.0.6 aborts on any IPv6 map update with data (`netlink_gen_expr: Assertion dreg <
    // ctx->reg_low`), so IPv6 ports cannot record affinity: the model warns about them.
    const sticky = sp.affinitySeconds > 0 && size > 0 && ctx.family === 'ipv4';
    const spec: PickSpec = { role, algo, size, sticky };
    const name = pickChainName(spec);
    picks.set(name, spec);
    element(mapName, frontendKey(fe), [`goto ${name}`]);
    const backends = `${role === 'shortcircuit' ? 'cluster-backends' : 'backends'}-${p}`;
    const port = String(fe.port);
    for (let slot = 0; slot < slots.length; slot++) {
      const ep = slots[slot]!;
      element(backends, [fe.ip, p, port, String(slot)], [ep.ip, String(ep.port)]);
    }
    // Frontends that pick from the same list share stickiness, as kube-proxy keys affinity by
    // endpoint: a client seen on the ClusterIP keeps its endpoint on the NodePort. An eTP Local
    // frontend routes twice (local, short-circuit): it records with its local group only.
    if (sticky && !stickyGroups.some((g) => g.frontends.has(`${fe.ip} ${port}`))) {
      const group = role === 'external-local' || (role === 'clusterip' && sp.internalPolicyLocal) ? 1 : 0;
      stickyGroups[group]!.frontends.set(`${fe.ip} ${port}`, fe);
    }
  };

  for (const fe of frontendsOf(sp, ctx.nodePortIPs)) {
    if (fe.kind === 'clusterIP') {
      element('cluster-ips', [fe.ip]);
      const eps = sp.internalPolicyLocal ? sp.localEndpoints : sp.clusterEndpoints;
      if (eps.length === 0) noEndpoints(fe);
      else route('service-ips', 'clusterip', fe, eps);
      continue;
    }
    if (fe.kind === 'loadBalancer' && sp.sourceRanges.length > 0) {
      element('firewall-ips', frontendKey(fe));
      for (const range of sp.sourceRanges) element('firewall-allow', [...frontendKey(fe), range]);
    }
    if (!sp.externalPolicyLocal) {
      if (sp.clusterEndpoints.length === 0) noEndpoints(fe);
      else route('service-ips', 'external', fe, sp.clusterEndpoints);
      continue;
    }
    // externalTrafficPolicy Local: outside clients keep their address and reach only local
    // endpoints; pods and the node itself short-circuit to every endpoint.
    if (!sp.hasEndpoints) {
      noEndpoints(fe);
      continue;
    }
    route('service-ips', 'external-local', fe, sp.localEndpoints);
    if (sp.localEndpoints.length === 0) noEndpoints(fe);
    if (sp.clusterEndpoints.length > 0) route('shortcircuit-ips', 'shortcircuit', fe, sp.clusterEndpoints);
  }
  // Source ranges that admit the node's own address also admit the LB IPs themselves: a node
  // reaching a VIP that is local loops back with the VIP as source (kube-proxy does the same).
  if (sp.sourceRanges.length > 0 && sp.loadBalancerIPs.length > 0) {
    const ranges = sp.sourceRanges.map((c) => parseCidr(c)!);
    if (config.nodePortIPs[sp.family].some((ip) => ranges.some((r) => cidrContains(r, ip))))
      for (const lb of sp.loadBalancerIPs)
        for (const src of sp.loadBalancerIPs) element('firewall-allow', [lb, p, String(sp.port), src]);
  }
  stickyGroups.forEach(({ frontends }, group) => {
    if (frontends.size === 0) return;
    const name = `affinity-record-${portHash(sp.key)}-${group === 0 ? 'cluster' : 'local'}`;
    const rules: string[] = [];
    for (const fe of frontends.values()) {
      rules.push(
        `meta l4proto ${p} update @affinity-${p} { ${fe.ip} . ${fe.port} . ${ctx.x} saddr timeout ${sp.affinitySeconds}s : ${ctx.x} daddr . th dport }`,
      );
      element(`affinity-frontends-${p}`, [fe.ip, String(fe.port)], [`goto ${name}`]);
    }
    recorders.set(name, rules);
  });
  const hairpin: string[] = [];
  for (const ep of sp.clusterEndpoints) if (ep.local) hairpin.push(ep.ip);
  for (const ep of sp.localEndpoints) if (ep.local) hairpin.push(ep.ip);
  return { elements, picks, recorders, hairpin };
}

/** Tables, hooks, static chains, sets and maps, and the pick chains and recorders in use. */
function staticPart(
  rs: Ruleset,
  ctx: FamilyContext,
  picks: Map<string, PickSpec>,
  recorders: Map<string, Recorder>,
): void {
  const { nft, x, addr, table, frontendKey, podCIDRs, serviceCIDRs } = ctx;
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
    `${frontendKey} @firewall-ips ${frontendKey} . ${x} saddr != @firewall-allow drop`,
  ]);
  chain('endpoints-check', [`${frontendKey} vmap @no-endpoint-services`]);
  chain('cluster-ips-check', [
    `${x} daddr @cluster-ips goto reject-chain`,
    ...(serviceCIDRs.length ? [`${x} daddr ${anon(serviceCIDRs)} drop`] : []),
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
  map('service-ips', { ...verdictMap, comment: 'frontends with endpoints: goto the chain that picks one' });
  map('no-endpoint-services', { ...verdictMap, comment: 'frontends without endpoints: reject or drop' });
  map('shortcircuit-ips', {
    ...verdictMap,
    comment: 'eTP Local frontends: pods and the node use every endpoint',
  });
  // One backends map per protocol: nft 1.0.6 refuses a later rule that uses an existing map
  // whose value typeof says `th dport` ("conflicting protocols specified: ip vs. th"), and a
  // value typeof of `tcp dport` makes every rule using the map match TCP only. So each map
  // says its own protocol, and each pick chain has one DNAT rule per protocol.
  for (const p of PROTOCOLS) {
    const backendMap = {
      typeof: `${frontendKey} . numgen random mod 1`,
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
    comment: 'frontends with loadBalancerSourceRanges',
  });
  set('firewall-allow', [addr, 'inet_proto', 'inet_service', addr], {
    flags: ['interval'],
    comment: 'frontend . allowed source range',
  });
  set('hairpin', [addr, addr], { comment: 'local endpoint . itself' });
  // Session affinity: the endpoint each client got, per frontend, recorded after DNAT (the
  // packet then carries the endpoint, conntrack the frontend) and looked up before the pick.
  // Typed per protocol for the same nft 1.0.6 reasons as the backends maps; `ct original
  // proto-dst` is typed only after a `meta l4proto` match in the same rule.
  for (const p of PROTOCOLS) {
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
      ...(podCIDRs.length ? [`${x} saddr ${anon(podCIDRs)} goto shortcircuit`] : []),
      'fib saddr type local jump mark-for-masquerade',
      'fib saddr type local goto shortcircuit',
    ],
    shortcircuit: [],
  };
  for (const [name, spec] of [...picks.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const mapName = spec.role === 'shortcircuit' ? 'cluster-backends' : 'backends';
    const slot =
      spec.algo === 'maglev'
        ? `jhash ${x} saddr . th sport mod ${spec.size} seed 0x${ctx.maglevSeed.toString(16).padStart(8, '0')}`
        : `numgen random mod ${spec.size}`;
    chain(name, [
      ...prefix[spec.role],
      // A client seen within its affinity timeout goes back to the endpoint it had.
      ...(spec.sticky
        ? PROTOCOLS.map(
            (p) => `meta l4proto ${p} dnat ${x} to ${x} daddr . th dport . ${x} saddr map @affinity-${p}`,
          )
        : []),
      ...(spec.size > 0
        ? PROTOCOLS.map((p) => `dnat ${x} to ${frontendKey} . ${slot} map @${mapName}-${p}`)
        : []),
    ]);
  }
  for (const [name, rules] of [...recorders.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
    chain(name, rules);
}
