import { portIndex, type StateDelta } from '../model/state-builder.js';
import type { Family, ProxyState, ServicePort } from '../model/types.js';
import { compareStrings } from '../util/sorted-index.js';
import type { Flow } from './flow.js';

/**
 * Which UDP conntrack entries are stale, after kube-proxy's CleanStaleEntries: a UDP client
 * that keeps its source port (a DNS resolver, a game or VoIP client) refreshes its entry with
 * every datagram, so its DNAT target never changes, even after that endpoint is gone. An entry
 * is stale when it was sent to a frontend of a UDP service port (ClusterIP, external IP or
 * LoadBalancer IP with its port; a NodePort by port alone, on any address) and its reply comes
 * from somewhere that is not one of that port's serving endpoints (ip and port). Serving and
 * terminating endpoints count; traffic policies and topology do not: a change of Service must
 * not move a flow that TCP would keep. Ports without any serving endpoint are left alone, as
 * upstream does (there is nowhere better to send the flow). TCP is never touched: an
 * established TCP connection to a removed endpoint finishes on its own. SCTP neither, as
 * upstream. An entry whose reply source is the frontend itself was never DNATed (the client
 * sent before the Service had endpoints): it is stale too once the port has one.
 *
 * Everything here is pure; src/conntrack/exec.ts runs conntrack, reconciler.ts ties them.
 */

/** The UDP frontends of one family and the endpoints (`ip port`) each may send to. */
export interface UdpTargets {
  family: Family;
  /** `ip port` of a ClusterIP, external IP or LoadBalancer IP → its serving endpoints. */
  frontends: Map<string, ReadonlySet<string>>;
  /** NodePort → its serving endpoints (matched on the port alone, whatever the address). */
  nodePorts: Map<number, ReadonlySet<string>>;
}

/** `ip port`: one key for frontends and endpoints alike (IPv6 needs no brackets here). */
const hostPort = (ip: string, port: number): string => `${ip} ${port}`;

function servingOf(sp: ServicePort): Set<string> {
  const out = new Set<string>();
  for (const ep of sp.allEndpoints) if (ep.serving) out.add(hostPort(ep.ip, ep.port));
  return out;
}

/** The ports whose stale flows are cleaned: UDP, with at least one serving endpoint. */
const cleaned = (sp: ServicePort | undefined): sp is ServicePort =>
  sp !== undefined && sp.protocol === 'UDP' && sp.allEndpoints.some((ep) => ep.serving);

/** Every UDP frontend of `family` in `state` with its serving endpoints. */
export function udpTargets(state: ProxyState, family: Family): UdpTargets {
  const frontends = new Map<string, ReadonlySet<string>>();
  const nodePorts = new Map<number, ReadonlySet<string>>();
  for (const sp of state.ports) {
    if (sp.family !== family || !cleaned(sp)) continue;
    const serving = servingOf(sp);
    if (sp.clusterIP) frontends.set(hostPort(sp.clusterIP, sp.port), serving);
    for (const ip of sp.externalIPs) frontends.set(hostPort(ip, sp.port), serving);
    for (const ip of sp.loadBalancerIPs) frontends.set(hostPort(ip, sp.port), serving);
    if (sp.nodePort > 0) nodePorts.set(sp.nodePort, serving);
  }
  return { family, frontends, nodePorts };
}

/** Every destination port a flow must have to be judged at all: a listing's cheap first look. */
export function targetPorts(targets: UdpTargets): Set<number> {
  const out = new Set<number>(targets.nodePorts.keys());
  for (const key of targets.frontends.keys()) out.add(Number(key.slice(key.lastIndexOf(' ') + 1)));
  return out;
}

/** A frontend's or NodePort's stale flows go by these: one `conntrack -D` each. */
export interface FlowFilter {
  /** The frontend address; absent for a NodePort (matched on the port alone). */
  origDst?: string;
  origDport: number;
  /** The endpoint (or address) that answers the stale flows. */
  replySrc: string;
  replySport: number;
}

/**
 * The filter that removes `flow` when it is stale under `targets`, else undefined. A flow to a
 * known frontend is judged by that frontend alone; only the others are judged by a NodePort of
 * their destination port (upstream checks both, so a ClusterIP port that happens to equal
 * another Service's NodePort would lose its live flows at every cleanup).
 */
export function staleFilter(flow: Flow, targets: UdpTargets): FlowFilter | undefined {
  const reply = hostPort(flow.replySrc, flow.replySport);
  const { origDst, origDport, replySrc, replySport } = flow;
  const viaFrontend = targets.frontends.get(hostPort(origDst, origDport));
  if (viaFrontend) return viaFrontend.has(reply) ? undefined : { origDst, origDport, replySrc, replySport };
  const viaNodePort = targets.nodePorts.get(origDport);
  if (viaNodePort) return viaNodePort.has(reply) ? undefined : { origDport, replySrc, replySport };
  return undefined;
}

const filterKey = (f: FlowFilter): string =>
  `${f.origDst ?? '*'} ${f.origDport} ${f.replySrc} ${f.replySport}`;

/**
 * Collects the filters that delete the stale flows of a listing: one per frontend (or NodePort)
 * and stale reply address, however many flows share it, sorted so the same listing always gives
 * the same commands.
 */
export class StaleFlows {
  readonly #filters = new Map<string, FlowFilter>();
  /** Stale entries seen (one filter may cover several). */
  flows = 0;

  constructor(readonly targets: UdpTargets) {}

  add(flow: Flow): void {
    const filter = staleFilter(flow, this.targets);
    if (!filter) return;
    this.flows++;
    this.#filters.set(filterKey(filter), filter);
  }

  get filters(): FlowFilter[] {
    return [...this.#filters.keys()].sort(compareStrings).map((k) => this.#filters.get(k)!);
  }
}

/** The stale-flow filters of a whole listing (tests and the bench; the daemon streams). */
export function staleFlows(flows: Iterable<Flow>, targets: UdpTargets): FlowFilter[] {
  const stale = new StaleFlows(targets);
  for (const flow of flows) stale.add(flow);
  return stale.filters;
}

/** What a UDP port's stale flows are judged by: its frontends and serving endpoints, as text. */
function targetText(sp: ServicePort | undefined): string {
  if (!cleaned(sp)) return '';
  const frontends = [sp.clusterIP ?? '', ...sp.externalIPs, ...sp.loadBalancerIPs].join(',');
  return `${frontends} ${sp.port} ${sp.nodePort} ${[...servingOf(sp)].sort(compareStrings).join(',')}`;
}

function portOf(state: ProxyState, key: string): ServicePort | undefined {
  const sp = state.ports[portIndex(state.ports, key)];
  return sp?.key === key ? sp : undefined;
}

/**
 * The families in which a sync changed what some UDP port's flows are judged by (its frontends
 * or serving endpoints), so that a cleanup is due. Only ports that still have a serving
 * endpoint count: a port that lost its last one leaves its flows alone. Without a delta (the
 * first sync, a new node identity) every family with such a port does.
 */
export function changedUdpFamilies(state: ProxyState, delta: StateDelta | undefined): Family[] {
  const out = new Set<Family>();
  if (!delta) {
    for (const sp of state.ports) if (cleaned(sp)) out.add(sp.family);
  } else {
    for (const key of delta.ports) {
      const after = portOf(state, key);
      if (!cleaned(after) || out.has(after.family)) continue;
      if (targetText(portOf(delta.base, key)) !== targetText(after)) out.add(after.family);
    }
  }
  return [...out].sort(compareStrings);
}
