import { createHash } from 'node:crypto';
import { frontendsOf, type Frontend } from '../model/frontends.js';
import { cidrContains, parseCidr } from '../model/ip.js';
import { maglevEndpointTable } from '../lb/maglev.js';
import { portIndex, type StateDelta } from '../model/state-builder.js';
import { compareStrings } from '../sorted-index.js';
import type { Endpoint, Family, LbAlgorithm, ProxyState, ServicePort } from '../model/types.js';
import type { Chain, Element, NftFamily, NftMap, NftSet, Rule } from './nft/types.js';
import { HairpinSet } from './hairpin-set.js';
import { fragmentIndex, setId, type Fragment, type Ruleset } from './ruleset.js';

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

/**
 * An element's key or value text from its fields. A join makes one flat string; a template
 * literal makes a tree of V8 cons strings, which at 100,000 elements costs more heap than
 * arrays of fields did (measured: 43 MB against 33 for the ruleset at 10,000 Services).
 */
const fields = (...parts: Array<string | number>): string => parts.join(' . ');

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
 * How a ruleset differs from an earlier one (`base`): every fragment whose port key is not in
 * `fragments` is the same object in both, and the shared sets (hairpin) differ at most in the
 * element keys listed in `shared`, by set id. The applier diffs just those.
 */
export interface RulesetDelta {
  base: Ruleset;
  fragments: ReadonlySet<string>;
  shared: ReadonlyMap<string, ReadonlySet<string>>;
}

/** What every fragment asks of the static part and the shared sets, counted per family. */
interface Needs {
  picks: Map<string, { spec: PickSpec; n: number }>;
  recorders: Map<string, { rules: Recorder; n: number }>;
  /** Local endpoint IPs that can hairpin, counted. */
  hairpin: HairpinSet;
}

/** The state compiled last, its ruleset, and what its fragments need. */
interface LastCompile {
  state: ProxyState;
  rs: Ruleset;
  needs: Record<Family, Needs>;
}

const FAMILIES = ['ipv4', 'ipv6'] as const;

/**
 * compile() with memory: each service port's elements (its fragment) are kept for as long as
 * the model hands over the same ServicePort object, so a sync after one change compiles one
 * port. Given the model's StateDelta from the state it compiled last, it looks at the ports
 * in the delta only, and says in `delta` what changed for the applier. The output is exactly
 * compile()'s.
 */
export class Compiler {
  readonly #ctx: Record<Family, FamilyContext>;
  #fragments = new WeakMap<ServicePort, PortFragment>();
  #last: LastCompile | undefined;
  #delta: RulesetDelta | undefined;

  constructor(config: CompileConfig) {
    this.#ctx = { ipv4: familyContext('ipv4', config), ipv6: familyContext('ipv6', config) };
  }

  /** How the last compile's ruleset differs from the one before; undefined after a full compile. */
  get delta(): RulesetDelta | undefined {
    return this.#delta;
  }

  compile(state: ProxyState, delta?: StateDelta): Ruleset {
    const last = this.#last;
    this.#last = undefined;
    this.#delta = undefined;
    // Cleared first: if compiling throws, the next compile starts from nothing.
    return delta && last && delta.base === last.state ? this.#update(state, delta, last) : this.#full(state);
  }

  #fragmentOf(sp: ServicePort): PortFragment {
    let fragment = this.#fragments.get(sp);
    if (!fragment) {
      fragment = compilePort(sp, this.#ctx[sp.family]);
      this.#fragments.set(sp, fragment);
    }
    return fragment;
  }

  #full(state: ProxyState): Ruleset {
    const needs: Record<Family, Needs> = {
      ipv4: emptyNeeds(this.#ctx.ipv4),
      ipv6: emptyNeeds(this.#ctx.ipv6),
    };
    const fragments: Fragment[] = [];
    for (const sp of state.ports) {
      const fragment = this.#fragmentOf(sp);
      fragments.push(fragment);
      count(needs[sp.family], fragment, 1);
    }
    const rs = this.#assemble(fragments, needs);
    this.#last = { state, rs, needs };
    return rs;
  }

  /** Only the ports in the delta: their fragments swapped, the counts of what they need moved. */
  #update(state: ProxyState, delta: StateDelta, last: LastCompile): Ruleset {
    const { needs } = last;
    const changed = new Set<string>();
    // What the static part is made of, for the chains and recorders the changed ports name:
    // as it was, then compared with what it is once they are counted.
    const before = new Map<string, string | undefined>();
    // Only the first look counts: a later port naming the same chain sees the counts already
    // moved (two new Services needing the first external-1 chain left it out).
    const look = (id: string, now: () => string | undefined): void => {
      if (!before.has(id)) before.set(id, now());
    };
    const note = (f: PortFragment): void => {
      for (const [name] of f.picks)
        look(`${f.family} pick ${name}`, () => staticOf(needs[f.family], 'pick', name));
      for (const [name] of f.recorders)
        look(`${f.family} recorder ${name}`, () => staticOf(needs[f.family], 'recorder', name));
    };
    // Hairpin element keys that came or went, by set id.
    const shared = new Map<string, Set<string>>();
    const onHairpin = (family: Family, key: string): void => {
      const id = hairpinId(this.#ctx[family]);
      shared.set(id, (shared.get(id) ?? new Set<string>()).add(key));
    };
    // The last fragments, copied (an array copy is cheap), with the delta's keys spliced.
    const fragments = last.rs.fragments.slice();
    for (const key of [...delta.ports].sort()) {
      const i = portIndex(state.ports, key);
      const sp = state.ports[i]?.key === key ? state.ports[i] : undefined;
      const at = fragmentIndex(fragments, key);
      const old = fragments[at]?.key === key ? (fragments[at] as PortFragment) : undefined;
      const fragment = sp ? this.#fragmentOf(sp) : undefined;
      if (old === fragment) continue;
      changed.add(key);
      if (old) note(old);
      if (fragment) note(fragment);
      if (old) count(needs[old.family], old, -1, onHairpin);
      if (fragment) count(needs[fragment.family], fragment, 1, onHairpin);
      if (old && fragment) fragments[at] = fragment;
      else if (old) fragments.splice(at, 1);
      else fragments.splice(at, 0, fragment!);
    }
    // A pick chain's name says all of it; a recorder's rules can change under the same name
    // (another timeout, another frontend). Either way the static part is rebuilt.
    const staticChanged = [...before].some(([id, was]) => {
      const [family, what, name] = id.split(' ') as [Family, 'pick' | 'recorder', string];
      return staticOf(needs[family], what, name) !== was;
    });

    const rs: Ruleset = staticChanged
      ? this.#assemble(fragments, needs)
      : { ...last.rs, elements: this.#sharedElements(needs), fragments };
    this.#last = { state, rs, needs };
    this.#delta = { base: last.rs, fragments: changed, shared };
    return rs;
  }

  /** The static part for what the fragments need, the shared sets, and the fragments. */
  #assemble(fragments: Fragment[], needs: Record<Family, Needs>): Ruleset {
    const rs: Ruleset = { tables: [], chains: [], sets: [], elements: new Map(), fragments };
    for (const family of FAMILIES) {
      const ctx = this.#ctx[family];
      const picks = new Map([...needs[family].picks].map(([name, { spec }]) => [name, spec]));
      const recorders = new Map([...needs[family].recorders].map(([name, { rules }]) => [name, rules]));
      staticPart(rs, ctx, picks, recorders);
    }
    rs.elements = this.#sharedElements(needs);
    return rs;
  }

  /** The sets shared by service ports, by set id. */
  #sharedElements(needs: Record<Family, Needs>): Map<string, readonly Element[]> {
    return new Map(FAMILIES.map((f) => [hairpinId(this.#ctx[f]), needs[f].hairpin.elements()]));
  }
}

const emptyNeeds = (ctx: FamilyContext): Needs => ({
  picks: new Map(),
  recorders: new Map(),
  hairpin: new HairpinSet(ctx.nft, ctx.table),
});

/** Adds (by +1) or removes (by −1) what one fragment needs; `onHairpin` hears of elements that come or go. */
function count(
  needs: Needs,
  fragment: PortFragment,
  by: 1 | -1,
  onHairpin?: (family: Family, key: string) => void,
): void {
  for (const [name, spec] of fragment.picks) {
    const n = (needs.picks.get(name)?.n ?? 0) + by;
    if (n > 0) needs.picks.set(name, { spec, n });
    else needs.picks.delete(name);
  }
  for (const [name, rules] of fragment.recorders) {
    const n = (needs.recorders.get(name)?.n ?? 0) + by;
    if (n > 0) needs.recorders.set(name, { rules, n });
    else needs.recorders.delete(name);
  }
  for (const ip of fragment.hairpin) {
    const key = needs.hairpin.count(ip, by);
    if (key !== undefined) onHairpin?.(fragment.family, key);
  }
}

/** A pick chain's or recorder's contribution to the static part, or undefined when unused. */
function staticOf(needs: Needs, what: 'pick' | 'recorder', name: string): string | undefined {
  if (what === 'pick') return needs.picks.has(name) ? name : undefined;
  return needs.recorders.get(name)?.rules.join('\n');
}

const hairpinId = (ctx: FamilyContext): string => setId(ctx.nft, ctx.table, 'hairpin');

/** Shared by every port without recorders (most of them). */
const NONE: ReadonlyArray<readonly [string, Recorder]> = Object.freeze([]);

/** A recorder chain's rules: the updates of the affinity map after a DNAT. */
type Recorder = string[];

/** A port's elements and what they need of the static part. */
interface PortFragment extends Fragment {
  readonly family: Family;
  readonly elements: Element[];
  /** As [name, what] pairs: a Map per port cost ≈150 bytes each at 10,000 ports. */
  readonly picks: ReadonlyArray<readonly [string, PickSpec]>;
  readonly recorders: ReadonlyArray<readonly [string, Recorder]>;
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
function compilePort(sp: ServicePort, ctx: FamilyContext): PortFragment {
  const { nft: family, table } = ctx;
  const p = proto(sp);
  const elements: Element[] = [];
  const picks = new Map<string, PickSpec>();
  const recorders = new Map<string, Recorder>();
  // Plain literals: building 100,000 elements with spreads costs seconds.
  const element = (set: string, key: string, value?: string): void => {
    elements.push(
      value
        ? { kind: 'element', family, table, set, key, value }
        : { kind: 'element', family, table, set, key },
    );
  };
  const frontendKey = (fe: Frontend): string => fields(fe.ip, p, fe.port);
  const stickyGroups = [
    { frontends: new Map<string, Frontend>() },
    { frontends: new Map<string, Frontend>() },
  ];
  const noEndpoints = (fe: Frontend): void =>
    element('no-endpoint-services', frontendKey(fe), sp.hasEndpoints ? 'drop' : 'goto reject-chain');
  const maglevSlots = new Map<Endpoint[], Endpoint[]>();
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
      // One table per endpoint list: the ClusterIP, NodePorts and LB IPs share it (M up to 65,521).
      slots = maglevSlots.get(eps) ?? maglevEndpointTable(eps, ctx.maglevSeed).slots;
      maglevSlots.set(eps, slots);
    }
    const size = slots.length;
    // nft 1.0.6 aborts on any IPv6 map update with data (`netlink_gen_expr: Assertion dreg <
    // ctx->reg_low`), so IPv6 ports cannot record affinity: the model warns about them.
    const sticky = sp.affinitySeconds > 0 && size > 0 && ctx.family === 'ipv4';
    const spec: PickSpec = { role, algo, size, sticky };
    const name = pickChainName(spec);
    picks.set(name, spec);
    element(mapName, frontendKey(fe), `goto ${name}`);
    const backends = `${role === 'shortcircuit' ? 'cluster-backends' : 'backends'}-${p}`;
    const port = String(fe.port);
    for (let slot = 0; slot < slots.length; slot++) {
      const ep = slots[slot]!;
      element(backends, fields(fe.ip, p, port, slot), fields(ep.ip, ep.port));
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
      element('cluster-ips', fe.ip);
      const eps = sp.internalPolicyLocal ? sp.localEndpoints : sp.clusterEndpoints;
      if (eps.length === 0) noEndpoints(fe);
      else route('service-ips', 'clusterip', fe, eps);
      continue;
    }
    if (fe.kind === 'loadBalancer' && sp.sourceRanges.length > 0) {
      element('firewall-ips', frontendKey(fe));
      for (const range of sp.sourceRanges) element('firewall-allow', fields(fe.ip, p, fe.port, range));
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
  // An LB IP already inside a range needs no element of its own, and the interval set refuses
  // one that overlaps a range (the model has merged the ranges themselves).
  if (sp.sourceRanges.length > 0 && sp.loadBalancerIPs.length > 0) {
    const ranges = sp.sourceRanges.map((c) => parseCidr(c)!);
    const inRange = (ip: string): boolean => ranges.some((r) => cidrContains(r, ip));
    if (ctx.nodePortIPs[sp.family].some(inRange))
      for (const lb of sp.loadBalancerIPs)
        for (const src of sp.loadBalancerIPs)
          if (!inRange(src)) element('firewall-allow', fields(lb, p, sp.port, src));
  }
  stickyGroups.forEach(({ frontends }, group) => {
    if (frontends.size === 0) return;
    const name = `affinity-record-${portHash(sp.key)}-${group === 0 ? 'cluster' : 'local'}`;
    const rules: string[] = [];
    for (const fe of frontends.values()) {
      rules.push(
        `meta l4proto ${p} update @affinity-${p} { ${fe.ip} . ${fe.port} . ${ctx.x} saddr timeout ${sp.affinitySeconds}s : ${ctx.x} daddr . th dport }`,
      );
      element(`affinity-frontends-${p}`, fields(fe.ip, fe.port), `goto ${name}`);
    }
    recorders.set(name, rules);
  });
  const hairpin: string[] = [];
  for (const ep of sp.clusterEndpoints) if (ep.local) hairpin.push(ep.ip);
  for (const ep of sp.localEndpoints) if (ep.local) hairpin.push(ep.ip);
  return {
    key: sp.key,
    family: sp.family,
    elements,
    picks: [...picks],
    recorders: recorders.size > 0 ? [...recorders] : NONE,
    hairpin,
  };
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
  for (const [name, spec] of [...picks.entries()].sort(([a], [b]) => compareStrings(a, b))) {
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
  for (const [name, rules] of [...recorders.entries()].sort(([a], [b]) => compareStrings(a, b)))
    chain(name, rules);
}
