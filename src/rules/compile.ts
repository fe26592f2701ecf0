import { mergeCidrs } from '../model/cidr-set.js';
import { parseCidr } from '../model/ip.js';
import { localMatch, type LocalTraffic } from '../model/local-traffic.js';
import { portIndex, type StateDelta } from '../model/state-builder.js';
import { compareStrings, sortedIndex } from '../util/sorted-index.js';
import type { Family, ProxyState, ServicePort, Skipped } from '../model/types.js';
import type { Element } from './nft/types.js';
import { HairpinSet } from './hairpin-set.js';
import { setId, type Fragment, type Ruleset } from './ruleset.js';
import {
  SERVICE_CIDRS,
  staticPart,
  SYNTAX,
  type FamilyContext,
  type MaglevTable,
  type PickSpec,
  type Recorder,
} from './layout.js';
import { compilePort, type PortFragment } from './port-elements.js';

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
  /**
   * --service-counters: the maps where a new connection's fate is decided count it per
   * frontend (layout.ts, COUNTED). Off when absent.
   */
  serviceCounters?: boolean;
}

/**
 * ProxyState → desired nftables objects, a pure function. The layout (DESIGN.md): static
 * chains, one per (role, endpoint count), and data in maps keyed by frontend (ip . proto . port;
 * in the per-protocol backends maps ip . port, plus a slot), so that a change of endpoints is
 * element operations.
 *
 * Packet path, for a frontend F with endpoints:
 *   nat-prerouting/nat-output → services: F vmap @service-ips → goto <role>-N
 *   <role>-N: masquerade decision, then, per protocol, dnat to ip . port . numgen random mod N
 *   map @backends-<proto> (the frontend without its protocol, which the map is of)
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
    return { fragments: [], skip: { kind: 'Service', name: ports[0]!.service, reason, overBudget: true } };
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
    counters: config.serviceCounters === true,
  };
}
