/**
 * The kernel's per-frontend counters (src/rules/layout.ts, COUNTED) put back on the service
 * ports they belong to: pure, from the programmed state and what each counted map listed.
 */
import { frontendsOf, type Frontend } from '../model/frontends.js';
import { nftProtocol } from '../model/protocol.js';
import type { Family, Protocol, ProxyState, ServicePort } from '../model/types.js';
import { countedKeyId, type CountedElement } from './nft-json.js';

/** One frontend's counts, as /debug/services prints them. */
export interface FrontendCounters {
  /** The address:port the client used: `10.96.0.10:53`, `[fd00::10]:80`, `NODEIP:NODEPORT`. */
  frontend: string;
  /** New connections sent to an endpoint. */
  connections: number;
  /** New connections refused or dropped: no (usable) endpoint for this frontend. */
  noEndpoints: number;
  /** New connections dropped by loadBalancerSourceRanges. */
  sourceRangeDrops: number;
}

/** A service port's counters, with the labels /metrics gives them. */
export interface PortCounters {
  /** The service port's key. */
  key: string;
  namespace: string;
  service: string;
  /** The Service port's name, '' when unnamed. */
  port: string;
  protocol: Protocol;
  /** Sorted by frontend. */
  frontends: FrontendCounters[];
  /** The frontends (by `frontend`) that loadBalancerSourceRanges guard: the only ones that can drop. */
  guarded: ReadonlySet<string>;
}

/** What each counted map listed, both families together (the keys carry the address). */
export interface CounterReadings {
  connections: readonly CountedElement[];
  noEndpoints: readonly CountedElement[];
  shortcircuit: readonly CountedElement[];
  sourceRangeDrops: readonly CountedElement[];
}

/** How a frontend is printed: IPv6 in brackets. */
export const frontendName = (fe: Pick<Frontend, 'ip' | 'port'>): string =>
  fe.ip.includes(':') ? `[${fe.ip}]:${fe.port}` : `${fe.ip}:${fe.port}`;

/**
 * An eTP Local frontend that has endpoints, but none on this node: it is in service-ips (pods
 * and the node short-circuit to every endpoint) and in no-endpoint-services (everyone else is
 * dropped), so service-ips counts both, and shortcircuit-ips the ones sent on.
 */
export const shortCircuitOnly = (sp: ServicePort, fe: Frontend): boolean =>
  fe.kind !== 'clusterIP' && shortCircuitPort(sp);

/** A service port whose external frontends (if any are left to it) are shortCircuitOnly. */
export const shortCircuitPort = (sp: ServicePort): boolean =>
  sp.externalPolicyLocal && sp.hasEndpoints && sp.localEndpoints.length === 0;

/** Whether loadBalancerSourceRanges guard this frontend (port-elements.ts: firewall-ips). */
const guardedFrontend = (sp: ServicePort, fe: Frontend): boolean =>
  fe.kind === 'loadBalancer' && sp.sourceRanges.length > 0;

/**
 * Every service port of `state`, each frontend with its counts (0 where the kernel listed
 * nothing: an element not counted yet, or just added). `nodePortIPs`: the addresses the rules
 * were compiled with.
 */
export function portCounters(
  state: ProxyState,
  nodePortIPs: Record<Family, string[]>,
  readings: CounterReadings,
): PortCounters[] {
  return countersOf(state.ports, nodePortIPs, indexReadings(readings));
}

/** The readings by frontend key id (countedKeyId), each map's packets. */
export type ReadingsIndex = Readonly<Record<keyof CounterReadings, ReadonlyMap<string, number>>>;

export function indexReadings(readings: CounterReadings): ReadingsIndex {
  const index = (list: readonly CountedElement[]): Map<string, number> => {
    const m = new Map<string, number>();
    for (const { key, packets } of list) m.set(countedKeyId(key), packets);
    return m;
  };
  return {
    connections: index(readings.connections),
    noEndpoints: index(readings.noEndpoints),
    shortcircuit: index(readings.shortcircuit),
    sourceRangeDrops: index(readings.sourceRangeDrops),
  };
}

/** portCounters() for some of the ports, against readings indexed once (the reader goes in slices). */
export function countersOf(
  ports: readonly ServicePort[],
  nodePortIPs: Record<Family, string[]>,
  index: ReadingsIndex,
): PortCounters[] {
  const { connections, noEndpoints, shortcircuit, sourceRangeDrops: drops } = index;
  const out: PortCounters[] = [];
  for (const sp of ports) {
    const proto = nftProtocol(sp.protocol);
    const guarded = new Set<string>();
    const frontends: FrontendCounters[] = [];
    for (const fe of frontendsOf(sp, nodePortIPs)) {
      const id = countedKeyId({ ip: fe.ip, proto, port: fe.port });
      const name = frontendName(fe);
      if (guardedFrontend(sp, fe)) guarded.add(name);
      frontends.push({
        frontend: name,
        connections: (shortCircuitOnly(sp, fe) ? shortcircuit : connections).get(id) ?? 0,
        noEndpoints: noEndpoints.get(id) ?? 0,
        sourceRangeDrops: drops.get(id) ?? 0,
      });
    }
    frontends.sort((a, b) => (a.frontend < b.frontend ? -1 : a.frontend > b.frontend ? 1 : 0));
    const slash = sp.service.indexOf('/');
    out.push({
      key: sp.key,
      namespace: sp.service.slice(0, slash),
      service: sp.service.slice(slash + 1),
      port: sp.portName,
      protocol: sp.protocol,
      frontends,
      guarded,
    });
  }
  return out;
}
