import type { V1EndpointSlice, V1Node, V1Service, V1ServiceCIDR } from '@kubernetes/client-node';
import { compareStrings, sortedIndex } from '../util/sorted-index.js';
import { nodePortIPs } from '../node-addresses.js';
import { FrontendOwners, lostReason, withoutLost } from './frontend-owners.js';
import { canonicalIp, ipFamily, parseCidr } from './ip.js';
import { serviceUnit, type ServiceUnit } from './service-unit.js';
import { effectiveServiceCIDRs } from './service-cidrs.js';
import type { Family, LbAlgorithm, NodeInfo, ProxyState, ServicePort, Skipped } from './types.js';

/** The objects, as the store holds them. */
export interface ModelSource {
  /** Services by `namespace/name` (an empty namespace is `default`). */
  services: ReadonlyMap<string, V1Service>;
  /** The slices labelled for a Service key, in any order. */
  slicesOf(service: string): Iterable<V1EndpointSlice>;
  /** Every Service key some slice is labelled for ('' for slices without the label). */
  sliceServices(): Iterable<string>;
  /** This node's Node object, when known. */
  node?: V1Node;
  /** Every ServiceCIDR object (none on a cluster that has no such kind). */
  serviceCIDRs?: Iterable<V1ServiceCIDR>;
}

export interface ModelConfig {
  nodeName: string;
  /** --node-ip; empty means from the Node object, else `hostIPs`. */
  nodeIPs: string[];
  /** The host's own addresses, the last fallback for node IPs. */
  hostIPs?: string[];
  lbAlgorithm: LbAlgorithm;
  /** --nodeport-addresses: which addresses NodePorts claim (frontend ownership); default primary. */
  nodePortAddresses?: 'primary' | string[];
  /** --service-cidr: the ClusterIP ranges when no ServiceCIDR object says them. */
  serviceCIDRs?: string[];
}

/**
 * How a state differs from an earlier one (`base`). This is the identity contract that makes
 * incremental sync cost one change, not the cluster; every layer's comment points here.
 *
 * - ObjectStore: its change set names every Service key whose Service or slices came, went or
 *   changed since the last take (src/watch/object-store.ts).
 * - service-unit: a Service whose objects are the same objects yields the same ServiceUnit, so
 *   the same ServicePort objects (module-level WeakMaps, src/model/service-unit.ts).
 * - StateBuilder (here): a port whose key is not in `ports` is the same object in `base` and in
 *   the new state; `ports` names every key that may differ (came, went, changed, or lost or
 *   regained a frontend), and may name a few that did not.
 * - Compiler (src/rules/compile.ts): a fragment is kept for as long as its ServicePort is the
 *   same object; its RulesetDelta names every fragment key replaced (came, went or changed)
 *   since `base`; any other fragment is the same object in both rulesets.
 * - NftApplier (src/rules/applier.ts), HeldOut, conntrack: read only what a delta names.
 *
 * A delta is only used against the base it names: a stage given a delta whose `base` is not
 * the state (or ruleset) it last saw ignores it and does the whole work. A full join or a full
 * compile returns no delta. test/model/identity-contract.test.ts holds every layer to this.
 */
export interface StateDelta {
  base: ProxyState;
  ports: ReadonlySet<string>;
}

/** What StateBuilder.update() produced: the state, and how it differs from the last one. */
export interface StateUpdate {
  state: ProxyState;
  /** Undefined after a full join: nothing is promised against the state before. */
  delta: StateDelta | undefined;
}

const ZONE_LABEL = 'topology.kubernetes.io/zone';

export function nodeInfo(node: V1Node | undefined, config: ModelConfig): NodeInfo {
  const labels = node?.metadata?.labels ?? {};
  let ips = config.nodeIPs;
  if (ips.length === 0) {
    const addresses = node?.status?.addresses ?? [];
    // kube-proxy prefers InternalIP, then ExternalIP: the first of each family.
    const byType = (t: string): string[] => addresses.filter((a) => a.type === t).map((a) => a.address);
    const candidates = [...byType('InternalIP'), ...byType('ExternalIP')];
    const chosen: string[] = [];
    for (const family of ['ipv4', 'ipv6'] as const) {
      const ip = candidates.map((a) => canonicalIp(a)).find((a) => a && ipFamily(a) === family);
      if (ip) chosen.push(ip);
    }
    ips = chosen.length > 0 ? chosen : (config.hostIPs ?? []);
  }
  const zone = labels[ZONE_LABEL];
  const podCIDRs = nodePodCIDRs(node);
  return {
    name: config.nodeName,
    ips: [...ips],
    labels: { ...labels },
    ...(zone ? { zone } : {}),
    ...(podCIDRs.length > 0 ? { podCIDRs } : {}),
  };
}

/**
 * spec.podCIDRs (spec.podCIDR on objects that predate it), canonical: the first valid one of
 * each family, as kube-proxy takes them (the API allows one per family).
 */
function nodePodCIDRs(node: V1Node | undefined): string[] {
  const spec = node?.spec;
  const listed: unknown[] = Array.isArray(spec?.podCIDRs)
    ? spec.podCIDRs
    : spec?.podCIDR
      ? [spec.podCIDR]
      : [];
  const out: string[] = [];
  const seen = new Set<string>();
  for (const text of listed) {
    const cidr = typeof text === 'string' && text.includes('/') ? parseCidr(text) : undefined;
    if (!cidr || seen.has(cidr.family)) continue;
    seen.add(cidr.family);
    out.push(cidr.text);
  }
  return out;
}

const portKey = (sp: ServicePort): string => sp.key;

/** Where the port with `key` is, or would go, in ports sorted by key. */
export const portIndex = (ports: readonly ServicePort[], key: string): number =>
  sortedIndex(ports, key, portKey);

/**
 * Keeps the ProxyState up to date as objects change. Told which Service keys changed, it joins
 * those Services again and keeps every other Service's ports as the same objects, in place:
 * at 10,000 Services a change costs one Service, not a sort of ten thousand. Without a list
 * of changes (the first time, or when the Node's name, zone or IPs changed) it joins
 * everything. Either way the state is the one buildState() gives for the same objects.
 */
export class StateBuilder {
  readonly #config: ModelConfig;
  #units = new Map<string, ServiceUnit>();
  /** Every unit's ports, sorted by key, before frontend conflicts are settled. */
  #ports: ServicePort[] = [];
  /** Units with something skipped, so assembling `skipped` does not walk every Service. */
  #skipping = new Set<string>();
  #nodeText = '';
  #state: ProxyState | undefined;
  /** Who owns each frontend: every unit port's claims. */
  readonly #owners = new FrontendOwners();
  /** The addresses NodePorts claim, from the node and --nodeport-addresses. */
  #nodePortIPs: Record<Family, string[]> = { ipv4: [], ipv6: [] };
  /**
   * Ports that lost a frontend, by key: the port the backends get instead (a copy, never the
   * unit's object changed) and the reasons; the copy is kept while the port and its losses are.
   */
  #copies = new Map<string, { from: ServicePort; copy: ServicePort; lostText: string; skipped: Skipped[] }>();

  constructor(config: ModelConfig) {
    this.#config = config;
  }

  /**
   * The state for `source`, joining again only the Services in `changed` (all when omitted),
   * and how it differs from the last one (see StateDelta for what that promises).
   */
  update(source: ModelSource, changed?: Iterable<string>): StateUpdate {
    const node = nodeInfo(source.node, this.#config);
    const nodeText = JSON.stringify(node);
    const base = this.#state;
    const incremental = changed !== undefined && base !== undefined && nodeText === this.#nodeText;
    this.#nodeText = nodeText;
    const touched = new Set<string>();
    /** Port keys whose ownership may have moved: their copies are looked at again. */
    const contested = new Set<string>();
    if (incremental) {
      for (const key of changed) this.#rejoin(key, source, node, touched, contested);
    } else {
      this.#units.clear();
      this.#skipping.clear();
      this.#owners.clear();
      this.#nodePortIPs = nodePortIPs(
        node,
        this.#config.nodePortAddresses ?? 'primary',
        this.#config.hostIPs ?? [],
      );
      const keys = new Set([...source.services.keys(), ...source.sliceServices()]);
      const ports: ServicePort[] = [];
      for (const key of keys) {
        const unit = this.#unit(key, source, node);
        for (const sp of unit.ports) ports.push(sp);
      }
      this.#ports = ports.sort((a, b) => compareStrings(a.key, b.key));
      for (const sp of this.#ports) this.#owners.add(sp, this.#nodePortIPs);
      for (const sp of this.#ports) contested.add(sp.key);
      // Copies of ports that are gone go too; those still the same are kept (same objects).
      for (const key of this.#copies.keys()) contested.add(key);
    }

    // A port that loses or regains a frontend changes without its Service changing.
    for (const key of contested) if (this.#settle(key)) touched.add(key);
    const ports = this.#ports.slice();
    for (const [key, { copy }] of this.#copies) ports[portIndex(ports, key)] = copy;

    const skipped: Skipped[] = [];
    for (const key of [...this.#skipping].sort(compareStrings))
      skipped.push(...this.#units.get(key)!.skipped);
    for (const key of [...this.#copies.keys()].sort(compareStrings))
      skipped.push(...this.#copies.get(key)!.skipped);

    // A handful of objects, read whole every time: their change marks no Service.
    const objects = [...(source.serviceCIDRs ?? [])];
    const flag = this.#config.serviceCIDRs;
    const state: ProxyState = { node, ports, skipped, nodePortIPs: this.#nodePortIPs };
    // Without objects or a flag in the model's config the state says nothing: the compiler's.
    if (objects.length > 0 || flag) {
      const ranges = effectiveServiceCIDRs(objects, flag ?? []);
      skipped.push(...ranges.skipped);
      // The same array while unchanged: the compiler sees that at a glance.
      const same = base?.serviceCIDRs?.join() === ranges.cidrs.join();
      state.serviceCIDRs = same ? base!.serviceCIDRs! : ranges.cidrs;
    }
    this.#state = state;
    return { state, delta: incremental ? { base: base!, ports: touched } : undefined };
  }

  /**
   * Settles the port with `key` against the current claims: a copy without the frontends it
   * lost, or the unit's own port. True when what the backends get for it changed.
   */
  #settle(key: string): boolean {
    const i = portIndex(this.#ports, key);
    const sp = this.#ports[i]?.key === key ? this.#ports[i] : undefined;
    const last = this.#copies.get(key);
    const lost = sp ? this.#owners.lost(key) : [];
    if (!sp || lost.length === 0) {
      this.#copies.delete(key);
      return last !== undefined;
    }
    const lostText = JSON.stringify(lost);
    if (last && last.from === sp && last.lostText === lostText) return false;
    const skipped = lost.map((l): Skipped => ({
      kind: 'Service',
      name: sp.service,
      reason: lostReason(sp, l),
      contested: true,
    }));
    this.#copies.set(key, { from: sp, copy: withoutLost(sp, lost), lostText, skipped });
    return true;
  }

  /** Joins one Service key again, moving its ports in the sorted list; notes the keys touched. */
  #rejoin(
    key: string,
    source: ModelSource,
    node: NodeInfo,
    touched: Set<string>,
    contested: Set<string>,
  ): void {
    const before = this.#units.get(key);
    const after = this.#unit(key, source, node);
    if (before && before.ports === after.ports) return;
    const note = (k: string): void => {
      contested.add(k);
    };
    for (const sp of before?.ports ?? []) {
      const i = portIndex(this.#ports, sp.key);
      if (this.#ports[i]?.key === sp.key) this.#ports.splice(i, 1);
      this.#owners.remove(sp.key, note);
      touched.add(sp.key);
      contested.add(sp.key);
    }
    for (const sp of after.ports) {
      this.#ports.splice(portIndex(this.#ports, sp.key), 0, sp);
      this.#owners.add(sp, this.#nodePortIPs, note);
      touched.add(sp.key);
      contested.add(sp.key);
    }
  }

  #unit(key: string, source: ModelSource, node: NodeInfo): ServiceUnit {
    const unit = serviceUnit(key, source.services.get(key), source.slicesOf(key), node, this.#config);
    if (unit.ports.length > 0 || unit.skipped.length > 0) this.#units.set(key, unit);
    else this.#units.delete(key);
    if (unit.skipped.length > 0) this.#skipping.add(key);
    else this.#skipping.delete(key);
    return unit;
  }
}
