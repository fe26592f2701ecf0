import { createHash } from 'node:crypto';
import { frontendsOf, type Frontend } from '../model/frontends.js';
import { mergeCidrs } from '../model/cidr-set.js';
import { cidrContains, parseCidr } from '../model/ip.js';
import { localMatch, type LocalTraffic } from '../model/local-traffic.js';
import { nftProtocol } from '../model/protocol.js';
import { maglevEndpointTable } from '../lb/maglev.js';
import { portIndex, type StateDelta } from '../model/state-builder.js';
import { compareStrings, sortedIndex } from '../util/sorted-index.js';
import type { Endpoint, Family, LbAlgorithm, ProxyState, ServicePort, Skipped } from '../model/types.js';
import type { Chain, Element, NftFamily, NftMap, NftSet, Rule } from './nft/types.js';
import { HairpinSet } from './hairpin-set.js';
import { setId, type Fragment, type Ruleset, type StickyFrontend } from './ruleset.js';

/** What the compiler needs beyond the state: the parts of the config that shape rules. */
export interface CompileConfig {
  table: string;
  /** Pod networks: traffic to a ClusterIP from outside them is masqueraded; pods short-circuit eTP Local. */
  clusterCIDRs: string[];
  /**
   * How pod traffic is told apart (--detect-local-mode, resolved for this node), in place of
   * clusterCIDRs: what the ClusterIP masquerade rule and the eTP Local short-circuit match.
   */
  localTraffic?: LocalTraffic;
  masqueradeAll: boolean;
  /**
   * ClusterIP ranges (--service-cidr): unallocated IPs in them are dropped. A state from the
   * model carries the ranges in effect (ServiceCIDR objects, else these) and is followed
   * instead: they fill the `service-cidrs` set, so a change of them is element operations.
   */
  serviceCIDRs: string[];
  /** Local addresses that accept NodePorts, by family (resolved by the caller; never loopback). */
  nodePortIPs: Record<Family, string[]>;
  /** Cluster-wide Maglev seed: every node builds the same slot table and hashes flows alike. */
  maglevSeed?: number;
  /**
   * The most nft elements one Service may compile to (all its ports and families); a Service
   * over it is left out, in `Ruleset.skipped`. Unlimited when absent.
   */
  maxServiceElements?: number;
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
interface MaglevTable {
  proto: Protocol;
  /** Slots (a prime, see src/lb/maglev.ts). */
  m: number;
}

/**
 * An element's key or value text from its fields. A join makes one flat string; a template
 * literal makes a tree of V8 cons strings, which at 100,000 elements costs more heap than
 * arrays of fields did (measured: 43 MB against 33 for the ruleset at 10,000 Services).
 */
const fields = (...parts: Array<string | number>): string => parts.join(' . ');

/** A chain-name-safe, stable short name for a service port (its key may hold any Service name). */
const portHash = (key: string): string => createHash('sha256').update(key).digest('hex').slice(0, 12);

/**
 * ProxyState → desired nftables objects, a pure function. The layout (DESIGN.md): static
 * chains, one per (role, endpoint count), and data in maps keyed by frontend
 * (ip . proto . port) plus a slot, so that a change of endpoints is element operations.
 *
 * Packet path, for a frontend F with endpoints:
 *   nat-prerouting/nat-output → services: F vmap @service-ips → goto <role>-N
 *   <role>-N: masquerade decision, then dnat to F . numgen random mod N map @backends-<proto>
 * with Maglev, one table per service port and endpoint list, whatever its frontends:
 *   <role>-maglev: masquerade decision, then F vmap @maglev-ports → goto maglev-<port>-<list>
 *   maglev-<port>-<list>: dnat to jhash saddr . sport mod M seed S map @maglev-<port>-<list>
 * and without endpoints: filter hooks → endpoints-check: F vmap @no-endpoint-services →
 * reject (none anywhere) or drop (none for this traffic policy).
 */
export function compile(state: ProxyState, config: CompileConfig): Ruleset {
  return new Compiler(config).compile(state).ruleset;
}

/**
 * The state as `rs` programs it, for the debug views and metrics: the Services the compiler
 * left out (over --max-service-elements) move from `ports` to `skipped`. The same object when
 * none was.
 */
export function programmedState(state: ProxyState, rs: Ruleset): ProxyState {
  if (rs.skipped.length === 0) return state;
  const left = new Set(rs.skipped.map((s) => s.name));
  return {
    ...state,
    ports: state.ports.filter((sp) => !left.has(sp.service)),
    skipped: [...state.skipped, ...rs.skipped],
  };
}

/**
 * How a ruleset differs from an earlier one (`base`): every fragment whose port key is not in
 * `fragments` is the same object in both, and the shared sets (hairpin) differ at most in the
 * element keys listed in `shared`, by set id. The applier diffs just those, and only against
 * the `base` it names. The compiler's part of the identity contract: see StateDelta
 * (src/model/state-builder.ts).
 */
export interface RulesetDelta {
  base: Ruleset;
  fragments: ReadonlySet<string>;
  shared: ReadonlyMap<string, ReadonlySet<string>>;
}

/** What Compiler.compile() produced: the ruleset, and how it differs from the last one. */
export interface CompileResult {
  ruleset: Ruleset;
  /** Undefined after a full compile: nothing is promised against the ruleset before. */
  delta: RulesetDelta | undefined;
}

/** What every fragment asks of the static part and the shared sets, counted per family. */
interface Needs {
  picks: Map<string, { spec: PickSpec; n: number }>;
  recorders: Map<string, { rules: Recorder; n: number }>;
  maglev: Map<string, { table: MaglevTable; n: number }>;
  /** Local endpoint IPs that can hairpin, counted. */
  hairpin: HairpinSet;
}

/** The state compiled last, its ruleset, and what its fragments need. */
interface LastCompile {
  state: ProxyState;
  rs: Ruleset;
  needs: Record<Family, Needs>;
  /** Services over the element budget, by name. */
  skipped: Map<string, Skipped>;
  /** The service-cidrs elements, by set id. */
  ranges: ServiceRanges;
}

const FAMILIES = ['ipv4', 'ipv6'] as const;

/** The kinds of static objects a fragment asks for by name. */
type StaticKind = 'pick' | 'recorder' | 'maglev';

/**
 * Where the ports (or fragments) of `service` start in a list sorted by port key: every key of
 * a Service starts with `namespace/name:`, and names hold no colon, so they are contiguous.
 */
const serviceStart = <T>(list: readonly T[], service: string, keyOf: (item: T) => string): number =>
  sortedIndex(list, `${service}:`, keyOf);

/**
 * compile() with memory: each service port's elements (its fragment) are kept for as long as
 * the model hands over the same ServicePort object, so a sync after one change compiles one
 * port. Given the model's StateDelta from the state it compiled last, it looks at the Services
 * of the ports in the delta only, and returns with the ruleset a RulesetDelta saying what changed,
 * for the applier. The ruleset is exactly compile()'s. Identity contract: StateDelta
 * (src/model/state-builder.ts).
 */
export class Compiler {
  readonly #ctx: Record<Family, FamilyContext>;
  readonly #budget: number;
  /** --service-cidr: the ranges of a state that carries none. */
  readonly #flagRanges: readonly string[];
  #fragments = new WeakMap<ServicePort, PortFragment>();
  #last: LastCompile | undefined;

  constructor(config: CompileConfig) {
    this.#ctx = { ipv4: familyContext('ipv4', config), ipv6: familyContext('ipv6', config) };
    this.#budget = config.maxServiceElements ?? Infinity;
    this.#flagRanges = config.serviceCIDRs;
  }

  /**
   * The ruleset for `state`; incremental when `delta` is from the state compiled last, and then
   * with a RulesetDelta from the ruleset compiled last.
   */
  compile(state: ProxyState, delta?: StateDelta): CompileResult {
    const last = this.#last;
    // Cleared first: if compiling throws, the next compile starts from nothing.
    this.#last = undefined;
    return delta && last && delta.base === last.state
      ? this.#update(state, delta, last)
      : { ruleset: this.#full(state), delta: undefined };
  }

  #fragmentOf(sp: ServicePort): PortFragment {
    let fragment = this.#fragments.get(sp);
    if (!fragment) {
      fragment = compilePort(sp, this.#ctx[sp.family], this.#budget);
      this.#fragments.set(sp, fragment);
    }
    return fragment;
  }

  /**
   * One Service's fragments (its ports, sorted by key), or none and the reason when together
   * they are over the element budget: one Service cannot take a node's memory with it.
   */
  #serviceFragments(ports: readonly ServicePort[]): { fragments: PortFragment[]; skip?: Skipped } {
    const fragments = ports.map((sp) => this.#fragmentOf(sp));
    let size = 0;
    for (const f of fragments) size += f.size;
    if (size <= this.#budget) return { fragments };
    // Rounded, so that a Service whose endpoints churn is not logged again at every change.
    const about = Number(size.toPrecision(2));
    const reason = `needs about ${about} nft elements, more than --max-service-elements ${this.#budget}`;
    return { fragments: [], skip: { kind: 'Service', name: ports[0]!.service, reason } };
  }

  #full(state: ProxyState): Ruleset {
    const needs: Record<Family, Needs> = {
      ipv4: emptyNeeds(this.#ctx.ipv4),
      ipv6: emptyNeeds(this.#ctx.ipv6),
    };
    const fragments: Fragment[] = [];
    const skipped = new Map<string, Skipped>();
    const { ports } = state;
    for (let i = 0; i < ports.length;) {
      const service = ports[i]!.service;
      let end = i + 1;
      while (end < ports.length && ports[end]!.service === service) end++;
      const group = this.#serviceFragments(ports.slice(i, end));
      i = end;
      if (group.skip) skipped.set(service, group.skip);
      for (const fragment of group.fragments) {
        fragments.push(fragment);
        count(needs[fragment.family], fragment, 1);
      }
    }
    const ranges = this.#rangesOf(state);
    const rs = this.#assemble(fragments, needs, skipped, ranges);
    this.#last = { state, rs, needs, skipped, ranges };
    return rs;
  }

  /**
   * Only the Services of the ports in the delta: their fragments swapped, the counts of what
   * they need moved. A whole Service, because the element budget is per Service.
   */
  #update(state: ProxyState, delta: StateDelta, last: LastCompile): CompileResult {
    const { needs } = last;
    const skipped = new Map(last.skipped);
    const changed = new Set<string>();
    // What the static part is made of, for the objects the changed ports name: as it was
    // before the first of them was counted, then compared with what it is once all are.
    const before = new Map<string, string | undefined>();
    // Only the first look counts: a later port naming the same chain sees the counts already
    // moved (two new Services needing the first external-1 chain left it out).
    const look = (id: string, now: () => string | undefined): void => {
      if (!before.has(id)) before.set(id, now());
    };
    const note = (f: PortFragment): void => {
      const named = { pick: f.picks, recorder: f.recorders, maglev: f.maglev };
      for (const what of ['pick', 'recorder', 'maglev'] as const)
        for (const [name] of named[what])
          look(`${f.family} ${what} ${name}`, () => staticOf(needs[f.family], what, name));
    };
    // Hairpin element keys that came or went, by set id.
    const shared = new Map<string, Set<string>>();
    const onShared = (id: string, key: string): void => {
      shared.set(id, (shared.get(id) ?? new Set<string>()).add(key));
    };
    const onHairpin = (family: Family, key: string): void => onShared(hairpinId(this.#ctx[family]), key);
    const services = new Set<string>();
    for (const key of delta.ports) {
      const find = (ports: readonly ServicePort[]): ServicePort | undefined => {
        const sp = ports[portIndex(ports, key)];
        return sp?.key === key ? sp : undefined;
      };
      const sp = find(state.ports) ?? find(last.state.ports);
      if (sp) services.add(sp.service);
    }
    // The last fragments, copied (an array copy is cheap), with the changed Services' spliced.
    const fragments = last.rs.fragments.slice() as PortFragment[];
    for (const service of [...services].sort(compareStrings)) {
      let end = serviceStart(state.ports, service, (sp) => sp.key);
      const from = end;
      while (end < state.ports.length && state.ports[end]!.service === service) end++;
      const group = this.#serviceFragments(state.ports.slice(from, end));
      if (group.skip) skipped.set(service, group.skip);
      else skipped.delete(service);
      const at = serviceStart(fragments, service, (f) => f.key);
      let until = at;
      while (until < fragments.length && fragments[until]!.service === service) until++;
      // The fragments that went and came: a port of the Service may be the same object still.
      const was = fragments.slice(at, until);
      const went = was.filter((f) => !group.fragments.includes(f));
      const came = group.fragments.filter((f) => !was.includes(f));
      if (went.length === 0 && came.length === 0) continue;
      for (const f of [...went, ...came]) {
        changed.add(f.key);
        note(f);
      }
      for (const f of went) count(needs[f.family], f, -1, onHairpin);
      for (const f of came) count(needs[f.family], f, 1, onHairpin);
      fragments.splice(at, until - at, ...group.fragments);
    }
    // A pick chain's name says all of it; a recorder's rules can change under the same name
    // (another timeout, another frontend), a Maglev chain's with its size. Either way the
    // static part is rebuilt.
    const staticChanged = [...before].some(([id, was]) => {
      const [family, what, name] = id.split(' ') as [Family, StaticKind, string];
      return staticOf(needs[family], what, name) !== was;
    });

    // The service CIDRs fill a set: a change of them is element operations, never a chain.
    const ranges = this.#rangesOf(state);
    if (ranges !== last.ranges)
      for (const [id, els] of ranges) {
        const was = new Set(last.ranges.get(id)?.map((el) => el.key));
        const now = new Set(els.map((el) => el.key));
        for (const key of was) if (!now.has(key)) onShared(id, key);
        for (const key of now) if (!was.has(key)) onShared(id, key);
      }
    const rs: Ruleset = staticChanged
      ? this.#assemble(fragments, needs, skipped, ranges)
      : {
          ...last.rs,
          elements: this.#sharedElements(needs, ranges),
          fragments,
          skipped: skippedList(skipped),
        };
    this.#last = { state, rs, needs, skipped, ranges };
    return { ruleset: rs, delta: { base: last.rs, fragments: changed, shared } };
  }

  /** The static part for what the fragments need, the shared sets, and the fragments. */
  #assemble(
    fragments: Fragment[],
    needs: Record<Family, Needs>,
    skipped: Map<string, Skipped>,
    ranges: ServiceRanges,
  ): Ruleset {
    const rs: Ruleset = {
      tables: [],
      chains: [],
      sets: [],
      elements: new Map(),
      fragments,
      skipped: skippedList(skipped),
    };
    for (const family of FAMILIES) {
      const ctx = this.#ctx[family];
      const { picks, recorders, maglev } = needs[family];
      staticPart(rs, ctx, {
        picks: new Map([...picks].map(([name, { spec }]) => [name, spec])),
        recorders: new Map([...recorders].map(([name, { rules }]) => [name, rules])),
        maglev: new Map([...maglev].map(([name, { table }]) => [name, table])),
      });
    }
    rs.elements = this.#sharedElements(needs, ranges);
    return rs;
  }

  /** The shared sets (hairpin, service-cidrs), by set id. */
  #sharedElements(needs: Record<Family, Needs>, ranges: ServiceRanges): Map<string, readonly Element[]> {
    return new Map([
      ...FAMILIES.map((f): [string, readonly Element[]] => [
        hairpinId(this.#ctx[f]),
        needs[f].hairpin.elements(),
      ]),
      ...ranges,
    ]);
  }

  #ranges: { list: readonly string[]; ranges: ServiceRanges } | undefined;

  /**
   * The service-cidrs elements for `state`: its ranges in effect, or the flag's. The same
   * object while the list is (the model hands over the same array while nothing changed).
   */
  #rangesOf(state: ProxyState): ServiceRanges {
    const list = state.serviceCIDRs ?? this.#flagRanges;
    if (this.#ranges?.list === list) return this.#ranges.ranges;
    // Merged here too: an interval set refuses overlaps, whoever made the list.
    const cidrs = mergeCidrs(list).flatMap((c) => parseCidr(c) ?? []);
    const ranges: ServiceRanges = new Map(
      FAMILIES.map((family): [string, readonly Element[]] => {
        const { nft, table } = this.#ctx[family];
        const keys = cidrs
          .filter((c) => c.family === family)
          .map((c) => c.text)
          .sort(compareStrings);
        const els = keys.map((key): Element => ({
          kind: 'element',
          family: nft,
          table,
          set: SERVICE_CIDRS,
          key,
        }));
        return [setId(nft, table, SERVICE_CIDRS), els];
      }),
    );
    this.#ranges = { list, ranges };
    return ranges;
  }
}

/** The set of ClusterIP ranges whose unallocated addresses are dropped. */
const SERVICE_CIDRS = 'service-cidrs';

/** The service-cidrs elements of both families, by set id, each list sorted by key. */
type ServiceRanges = ReadonlyMap<string, readonly Element[]>;

const skippedList = (skipped: Map<string, Skipped>): Skipped[] =>
  [...skipped.keys()].sort(compareStrings).map((name) => skipped.get(name)!);

const emptyNeeds = (ctx: FamilyContext): Needs => ({
  picks: new Map(),
  recorders: new Map(),
  maglev: new Map(),
  hairpin: new HairpinSet(ctx.nft, ctx.table),
});

/** Counts one more (+1) or one less (−1) of each named object in `list`. */
function countNamed<T, K extends string>(
  counts: Map<string, { n: number } & Record<K, T>>,
  list: ReadonlyArray<readonly [string, T]>,
  field: K,
  by: 1 | -1,
): void {
  for (const [name, value] of list) {
    const n = (counts.get(name)?.n ?? 0) + by;
    if (n > 0) counts.set(name, { n, [field]: value } as { n: number } & Record<K, T>);
    else counts.delete(name);
  }
}

/** Adds (by +1) or removes (by −1) what one fragment needs; `onHairpin` hears of elements that come or go. */
function count(
  needs: Needs,
  fragment: PortFragment,
  by: 1 | -1,
  onHairpin?: (family: Family, key: string) => void,
): void {
  countNamed(needs.picks, fragment.picks, 'spec', by);
  countNamed(needs.recorders, fragment.recorders, 'rules', by);
  countNamed(needs.maglev, fragment.maglev, 'table', by);
  for (const ip of fragment.hairpin) {
    const key = needs.hairpin.count(ip, by);
    if (key !== undefined) onHairpin?.(fragment.family, key);
  }
}

/** A static object's contribution to the static part, or undefined when unused. */
function staticOf(needs: Needs, what: StaticKind, name: string): string | undefined {
  if (what === 'pick') return needs.picks.has(name) ? name : undefined;
  if (what === 'maglev') {
    const table = needs.maglev.get(name)?.table;
    return table && `${table.proto} ${table.m}`;
  }
  const recorder = needs.recorders.get(name)?.rules;
  return recorder && JSON.stringify(recorder);
}

const hairpinId = (ctx: FamilyContext): string => setId(ctx.nft, ctx.table, 'hairpin');

/** Shared by every port without recorders or Maglev tables (most of them). */
const NONE: ReadonlyArray<readonly [string, never]> = Object.freeze([]);

/**
 * A sticky frontend group's recorder: its chain's rules (the updates after a DNAT) and, for
 * IPv6, the group's own maps and lookup chain (`lookup`, the name of all three). nft 1.0.6
 * aborts on any IPv6 map update with a concatenated key or value (`netlink_gen_expr:
 * Assertion dreg < ctx->reg_low`), so IPv6 cannot share IPv4's frontend . client maps: each
 * group records client → endpoint address and client → endpoint port, one field each.
 */
interface Recorder {
  rules: string[];
  lookup?: { name: string; proto: Protocol };
}

/** A port's elements and what they need of the static part. */
interface PortFragment extends Fragment {
  readonly service: string;
  readonly family: Family;
  readonly elements: Element[];
  /**
   * How many elements the port compiles to. Over the element budget, counting goes on but
   * `elements` stops growing: such a port is never used (its Service is left out).
   */
  readonly size: number;
  /** As [name, what] pairs: a Map per port cost ≈150 bytes each at 10,000 ports. */
  readonly picks: ReadonlyArray<readonly [string, PickSpec]>;
  readonly recorders: ReadonlyArray<readonly [string, Recorder]>;
  readonly maglev: ReadonlyArray<readonly [string, MaglevTable]>;
  readonly hairpin: string[];
}

/** What every family's rules share, computed once per config. */
interface FamilyContext {
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
}

function familyContext(family: Family, config: CompileConfig): FamilyContext {
  const { nft, x, addr } = SYNTAX[family];
  const local = config.localTraffic ?? { by: 'cidr', cidrs: config.clusterCIDRs };
  const ifNotLocal = localMatch(local, family, true);
  return {
    family,
    nft,
    x,
    addr,
    table: config.table,
    ifLocal: localMatch(local, family),
    frontendKey: `${x} daddr . meta l4proto . th dport`,
    nodePortIPs: config.nodePortIPs,
    // kube-proxy's: traffic to a ClusterIP that is not pod traffic is masqueraded.
    masq: config.masqueradeAll
      ? ['jump mark-for-masquerade']
      : ifNotLocal
        ? [`${ifNotLocal} jump mark-for-masquerade`]
        : [],
    maglevSeed: config.maglevSeed ?? 0,
  };
}

/**
 * One service port's elements, and the pick chains, recorders and Maglev tables they jump to.
 * Pure. Past `budget` elements it only counts.
 */
function compilePort(sp: ServicePort, ctx: FamilyContext, budget: number): PortFragment {
  const { nft: family, table } = ctx;
  const p = nftProtocol(sp.protocol);
  const elements: Element[] = [];
  let size = 0;
  const picks = new Map<string, PickSpec>();
  const recorders = new Map<string, Recorder>();
  const maglev = new Map<string, MaglevTable>();
  // Plain literals: building 100,000 elements with spreads costs seconds.
  const element = (set: string, key: string, value?: string): void => {
    if (++size > budget) return;
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
  const groupName = (group: number): string =>
    `affinity-${portHash(sp.key)}-${group === 0 ? 'cluster' : 'local'}`;
  /** Frontend `ip . port` → the endpoints (`ip . port`) it picks from, for the sticky ones. */
  const picksFrom = new Map<string, Set<string>>();
  const noEndpoints = (fe: Frontend): void =>
    element('no-endpoint-services', frontendKey(fe), sp.hasEndpoints ? 'drop' : 'goto reject-chain');
  /** Writes the Maglev table of `eps` once (however many frontends use it); returns its name. */
  const maglevTable = (eps: Endpoint[]): string => {
    const name = `maglev-${portHash(sp.key)}-${eps === sp.localEndpoints ? 'local' : 'cluster'}`;
    if (maglev.has(name)) return name;
    const { m, slots } = maglevEndpointTable(eps, ctx.maglevSeed);
    maglev.set(name, { proto: p, m });
    if (size + m > budget) size += m;
    else
      for (let slot = 0; slot < m; slot++)
        element(name, String(slot), fields(slots[slot]!.ip, slots[slot]!.port));
    return name;
  };
  const route = (
    mapName: 'service-ips' | 'shortcircuit-ips',
    role: Role,
    fe: Frontend,
    eps: Endpoint[],
  ): void => {
    const algo: LbAlgorithm = sp.lbAlgorithm === 'maglev' && eps.length > 0 ? 'maglev' : 'random';
    const sticky = sp.affinitySeconds > 0 && eps.length > 0;
    const spec: PickSpec = { role, algo, size: algo === 'maglev' ? 0 : eps.length, sticky };
    const name = pickChainName(spec);
    picks.set(name, spec);
    element(mapName, frontendKey(fe), `goto ${name}`);
    const port = String(fe.port);
    if (algo === 'maglev') {
      const ports = role === 'shortcircuit' ? 'cluster-maglev-ports' : 'maglev-ports';
      element(ports, frontendKey(fe), `goto ${maglevTable(eps)}`);
    } else if (size + eps.length > budget) {
      size += eps.length;
    } else {
      const backends = `${role === 'shortcircuit' ? 'cluster-backends' : 'backends'}-${p}`;
      for (let slot = 0; slot < eps.length; slot++) {
        const ep = eps[slot]!;
        element(backends, fields(fe.ip, p, port, slot), fields(ep.ip, ep.port));
      }
    }
    if (!sticky) return;
    const id = fields(fe.ip, port);
    const from = picksFrom.get(id) ?? new Set<string>();
    for (const ep of eps) from.add(fields(ep.ip, ep.port));
    picksFrom.set(id, from);
    // Frontends that pick from the same list share stickiness, as kube-proxy keys affinity by
    // endpoint: a client seen on the ClusterIP keeps its endpoint on the NodePort. An eTP Local
    // frontend routes twice (local, short-circuit): it records with its local group only.
    if (!stickyGroups.some((g) => g.frontends.has(id))) {
      const group = role === 'external-local' || (role === 'clusterip' && sp.internalPolicyLocal) ? 1 : 0;
      stickyGroups[group]!.frontends.set(id, fe);
      // IPv6: the sticky pick chains jump to the group's own lookup (see Recorder).
      if (ctx.family === 'ipv6') element('affinity-ports', frontendKey(fe), `jump ${groupName(group)}`);
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
  const sticky: StickyFrontend[] = [];
  const { x } = ctx;
  stickyGroups.forEach(({ frontends }, group) => {
    if (frontends.size === 0) return;
    const name = `affinity-record-${portHash(sp.key)}-${group === 0 ? 'cluster' : 'local'}`;
    const rules: string[] = [];
    const timeout = `timeout ${sp.affinitySeconds}s`;
    const lookup = groupName(group);
    const groupEndpoints = new Set<string>();
    for (const [id, fe] of frontends) {
      if (ctx.family === 'ipv4') {
        rules.push(
          `meta l4proto ${p} update @affinity-${p} { ${fe.ip} . ${fe.port} . ${x} saddr ${timeout} : ${x} daddr . th dport }`,
        );
        const endpoints = [...picksFrom.get(id)!].sort(compareStrings);
        sticky.push({ family, table, proto: p, store: { map: `affinity-${p}`, frontend: id }, endpoints });
      } else {
        for (const ep of picksFrom.get(id)!) groupEndpoints.add(ep);
      }
      element(`affinity-frontends-${p}`, id, `goto ${name}`);
    }
    if (ctx.family === 'ipv6') {
      const portMap = `${lookup}-port`;
      rules.push(
        `meta l4proto ${p} update @${lookup} { ${x} saddr ${timeout} : ${x} daddr } update @${portMap} { ${x} saddr ${timeout} : th dport }`,
      );
      const endpoints = [...groupEndpoints].sort(compareStrings);
      sticky.push({ family, table, proto: p, store: { map: lookup, portMap }, endpoints });
    }
    recorders.set(name, ctx.family === 'ipv6' ? { rules, lookup: { name: lookup, proto: p } } : { rules });
  });
  const hairpin: string[] = [];
  for (const ep of sp.clusterEndpoints) if (ep.local) hairpin.push(ep.ip);
  for (const ep of sp.localEndpoints) if (ep.local) hairpin.push(ep.ip);
  return {
    key: sp.key,
    service: sp.service,
    family: sp.family,
    elements,
    size,
    picks: [...picks],
    recorders: recorders.size > 0 ? [...recorders] : NONE,
    maglev: maglev.size > 0 ? [...maglev] : NONE,
    hairpin,
    ...(sticky.length > 0 ? { sticky } : {}),
  };
}

/** Tables, hooks, static chains, sets and maps, and the pick chains, recorders and Maglev tables in use. */
function staticPart(
  rs: Ruleset,
  ctx: FamilyContext,
  used: {
    picks: Map<string, PickSpec>;
    recorders: Map<string, Recorder>;
    maglev: Map<string, MaglevTable>;
  },
): void {
  const { nft, x, addr, table, frontendKey, ifLocal } = ctx;
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
  map('service-ips', { ...verdictMap, comment: 'frontends with endpoints: goto the chain that picks one' });
  map('no-endpoint-services', { ...verdictMap, comment: 'frontends without endpoints: reject or drop' });
  map('shortcircuit-ips', {
    ...verdictMap,
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
              (p) => `dnat ${x} to ${frontendKey} . numgen random mod ${spec.size} map @${mapName}-${p}`,
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
