import type { Endpoint } from './types.js';

/**
 * An endpoint with the topology hints its slice gave it. The lists below share these objects
 * (no copies): at 10,000 Services that is a third of the model's memory.
 */
export interface HintedEndpoint extends Endpoint {
  zoneHints: string[];
  nodeHints: string[];
}

export interface PolicyInput {
  internalPolicyLocal: boolean;
  externalPolicyLocal: boolean;
  externallyAccessible: boolean;
}

export interface Categorized {
  clusterEndpoints: Endpoint[];
  localEndpoints: Endpoint[];
  /** 'kubernetes.io/hostname', 'topology.kubernetes.io/zone' or '' when topology is not in use. */
  topologyMode: string;
  /** Some endpoint anywhere is ready, or serving and terminating. */
  hasEndpoints: boolean;
}

/**
 * Which hints kube-proxy obeys: same-node hints when every ready endpoint has some and one
 * names this node; else zone hints when every ready endpoint has some and one names our zone;
 * else none (all endpoints). Mirrors kube-proxy's topologyModeFromHints.
 */
export function topologyMode(
  endpoints: HintedEndpoint[],
  nodeName: string,
  zone: string | undefined,
): string {
  let allNodeHints = true;
  let forNode = false;
  let allZoneHints = true;
  let forZone = false;
  for (const ep of endpoints) {
    if (!ep.ready) continue;
    if (ep.nodeHints.length === 0) allNodeHints = false;
    else if (ep.nodeHints.includes(nodeName)) forNode = true;
    if (ep.zoneHints.length === 0) allZoneHints = false;
    else if (zone && ep.zoneHints.includes(zone)) forZone = true;
  }
  if (allNodeHints && forNode) return 'kubernetes.io/hostname';
  if (allZoneHints && forZone) return 'topology.kubernetes.io/zone';
  return '';
}

/**
 * The empty list every port without such endpoints shares (most have no local ones): an empty
 * array each is 32 bytes a port. Frozen: a list is never changed in place.
 */
const NO_ENDPOINTS: Endpoint[] = Object.freeze([]) as unknown as Endpoint[];

/**
 * kube-proxy's CategorizeEndpoints: the endpoints for cluster-wide traffic (ready ones the
 * topology allows, else every serving+terminating one) and for Local traffic policy (local
 * ready ones, else local serving+terminating ones). A policy that is not in use gets [].
 * The lists may be `endpoints` itself (cluster-wide, when that is all of them) or one shared
 * empty list: never changed in place.
 */
export function categorizeEndpoints(
  endpoints: HintedEndpoint[],
  policy: PolicyInput,
  nodeName: string,
  zone: string | undefined,
): Categorized {
  // kube-proxy's UsesClusterEndpoints: an externally accessible port needs its cluster
  // endpoints even under eTP Local (and iTP Local), for the pod and node short-circuit.
  const usesCluster = !policy.internalPolicyLocal || policy.externallyAccessible;
  const usesLocal = policy.internalPolicyLocal || (policy.externallyAccessible && policy.externalPolicyLocal);
  let clusterEndpoints: Endpoint[] = [];
  let mode = '';
  if (usesCluster) {
    mode = topologyMode(endpoints, nodeName, zone);
    const allowed = (ep: HintedEndpoint): boolean =>
      mode === 'kubernetes.io/hostname'
        ? ep.nodeHints.includes(nodeName)
        : mode === 'topology.kubernetes.io/zone'
          ? zone !== undefined && ep.zoneHints.includes(zone)
          : true;
    clusterEndpoints = endpoints.filter((ep) => ep.ready && allowed(ep));
    if (clusterEndpoints.length === 0)
      clusterEndpoints = endpoints.filter((ep) => ep.serving && ep.terminating);
    // Usually every endpoint: then the list given (the port's allEndpoints) is the list.
    if (clusterEndpoints.length === endpoints.length) clusterEndpoints = endpoints;
  }
  let localEndpoints: Endpoint[] = [];
  if (usesLocal) {
    localEndpoints = endpoints.filter((ep) => ep.local && ep.ready);
    if (localEndpoints.length === 0)
      localEndpoints = endpoints.filter((ep) => ep.local && ep.serving && ep.terminating);
  }
  const hasEndpoints =
    clusterEndpoints.length > 0 || endpoints.some((ep) => ep.ready || (ep.serving && ep.terminating));
  return {
    clusterEndpoints: clusterEndpoints.length > 0 ? clusterEndpoints : NO_ENDPOINTS,
    localEndpoints: localEndpoints.length > 0 ? localEndpoints : NO_ENDPOINTS,
    topologyMode: mode,
    hasEndpoints,
  };
}
