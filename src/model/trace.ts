import { frontendsOf, type FrontendKind } from './frontends.js';
import { cidrContains, ipFamily, parseCidr, type Cidr } from './ip.js';
import { detects, isLocalTraffic, type LocalTraffic } from './local-traffic.js';
import { nftProtocol, type NftProtocol } from './protocol.js';
import type { Endpoint, Family, ProxyState, ServicePort } from './types.js';

/** A packet to trace: the first packet of a new flow. */
export interface Packet {
  src: string;
  dst: string;
  port: number;
  proto: NftProtocol;
  /**
   * Where it comes from; inferred when absent: a node IP is the node, pod traffic (by the
   * local-traffic detector: a pod CIDR, or `iif` a pod interface) a pod, else outside.
   */
  from?: 'outside' | 'pod' | 'node';
  /**
   * The interface it came in on, for --detect-local-mode BridgeInterface and InterfaceNamePrefix.
   * Absent: a pod's packet counts as coming in on a pod interface, any other on none. The
   * node's own packets have none, whatever is given.
   */
  iif?: string;
}

export interface TraceConfig {
  clusterCIDRs: string[];
  /** How pod traffic is told apart (CompileConfig.localTraffic); by clusterCIDRs when absent. */
  localTraffic?: LocalTraffic;
  masqueradeAll: boolean;
  serviceCIDRs: string[];
  nodePortIPs: Record<Family, string[]>;
}

export type Trace =
  | {
      verdict: 'dnat';
      service: string;
      port: string;
      frontend: FrontendKind;
      /** The endpoints the packet may reach (one of them, at random). */
      endpoints: Array<{ ip: string; port: number }>;
      /** The source is rewritten to the node's address (the endpoint sees the node, not the client). */
      masquerade: boolean;
      /** Endpoints that are the client itself: reaching one of those is masqueraded (hairpin). */
      hairpin: string[];
      why: string;
    }
  | { verdict: 'reject' | 'drop'; service?: string; port?: string; why: string }
  | { verdict: 'no-match'; why: string };

/**
 * Where a packet goes, in the model's terms: the same decisions the compiled rules make, in
 * the same order (source-range firewall, service dispatch and traffic policy, then the
 * no-endpoint and ClusterIP checks). Pure; /debug/trace serves it and kernel tests hold the
 * kernel to it.
 */
export function trace(state: ProxyState, config: TraceConfig, pkt: Packet): Trace {
  const family = ipFamily(pkt.dst);
  if (!family || ipFamily(pkt.src) !== family)
    return { verdict: 'no-match', why: 'source and destination are not IPs of one family' };
  const cidrs = (list: string[]): Cidr[] =>
    list.map((c) => parseCidr(c)).filter((c): c is Cidr => c !== undefined && c.family === family);
  const local = config.localTraffic ?? { by: 'cidr', cidrs: config.clusterCIDRs };
  const byInterface = local.by === 'interface' || local.by === 'interface-prefix';
  const nodeSource = pkt.from === 'node' || (pkt.from === undefined && state.node.ips.includes(pkt.src));
  const iif = nodeSource ? '' : pkt.iif;
  // What the rules' local-traffic match says: with interface detection and no `iif`, what `from` says.
  const podTraffic =
    byInterface && iif === undefined ? pkt.from === 'pod' : isLocalTraffic(local, family, pkt.src, iif ?? '');
  const from = pkt.from ?? (nodeSource ? 'node' : podTraffic ? 'pod' : 'outside');
  const detecting = detects(local, family);

  // Which service port owns this frontend?
  let owner: { sp: ServicePort; kind: FrontendKind } | undefined;
  for (const sp of state.ports) {
    if (sp.family !== family || nftProtocol(sp.protocol) !== pkt.proto) continue;
    for (const fe of frontendsOf(sp, config.nodePortIPs)) {
      if (fe.ip === pkt.dst && fe.port === pkt.port && !owner) owner = { sp, kind: fe.kind };
    }
  }
  if (!owner) {
    if (state.ports.some((sp) => sp.clusterIP === pkt.dst))
      return { verdict: 'reject', why: 'a ClusterIP on a port it does not define' };
    // The ranges the rules drop: the state's in effect (ServiceCIDR objects), else the flag's.
    if (cidrs(state.serviceCIDRs ?? config.serviceCIDRs).some((c) => cidrContains(c, pkt.dst)))
      return { verdict: 'drop', why: 'an unallocated IP in the service CIDR' };
    return { verdict: 'no-match', why: 'not a Service frontend' };
  }
  const { sp, kind } = owner;
  const name = { service: sp.service, port: sp.key };

  if (kind === 'loadBalancer' && sp.sourceRanges.length > 0) {
    const ranges = cidrs(sp.sourceRanges);
    const nodeAllowed = config.nodePortIPs[family].some((ip) => ranges.some((r) => cidrContains(r, ip)));
    const allowed =
      ranges.some((r) => cidrContains(r, pkt.src)) || (nodeAllowed && sp.loadBalancerIPs.includes(pkt.src));
    if (!allowed) return { verdict: 'drop', ...name, why: 'source not in loadBalancerSourceRanges' };
  }
  const noEndpoints = (): Trace =>
    sp.hasEndpoints
      ? { verdict: 'drop', ...name, why: 'no endpoints for this traffic policy (Local)' }
      : { verdict: 'reject', ...name, why: 'no endpoints' };
  const dnat = (eps: Endpoint[], masquerade: boolean, why: string): Trace => ({
    verdict: 'dnat',
    ...name,
    frontend: kind,
    endpoints: eps.map((e) => ({ ip: e.ip, port: e.port })),
    masquerade,
    hairpin: eps.filter((e) => e.local && e.ip === pkt.src).map((e) => e.ip),
    why,
  });

  if (kind === 'clusterIP') {
    const eps = sp.internalPolicyLocal ? sp.localEndpoints : sp.clusterEndpoints;
    if (eps.length === 0) return noEndpoints();
    const masq = config.masqueradeAll || (detecting && !podTraffic);
    return dnat(eps, masq, sp.internalPolicyLocal ? 'ClusterIP, internalTrafficPolicy Local' : 'ClusterIP');
  }
  if (!sp.externalPolicyLocal) {
    if (sp.clusterEndpoints.length === 0) return noEndpoints();
    return dnat(sp.clusterEndpoints, true, `${kind}, externalTrafficPolicy Cluster (masqueraded)`);
  }
  if (!sp.hasEndpoints) return noEndpoints();
  // The rules' order: pod traffic first (kept as it is), then the node's own (masqueraded).
  const shortCircuit = podTraffic || from === 'node';
  if (shortCircuit) {
    if (sp.clusterEndpoints.length > 0)
      return dnat(
        sp.clusterEndpoints,
        !podTraffic,
        `${kind}, externalTrafficPolicy Local, short-circuited from ${podTraffic ? 'a pod' : 'the node'}`,
      );
  } else if (sp.localEndpoints.length > 0) {
    return dnat(
      sp.localEndpoints,
      false,
      `${kind}, externalTrafficPolicy Local: local endpoints, source kept`,
    );
  }
  return sp.localEndpoints.length === 0
    ? noEndpoints()
    : { verdict: 'no-match', why: 'no cluster endpoints to short-circuit to' };
}
