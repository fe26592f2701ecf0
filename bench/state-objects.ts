/**
 * A bench ProxyState (bench/states.ts) as the API objects that make it: one Service and one
 * EndpointSlice per service port, so the daemon benches load the very Services the nft benches
 * compile (ClusterIP, or the realistic mix with NodePorts, LoadBalancers with source ranges,
 * eTP Local and session affinity). The daemon builds its own state from them.
 */
import type { Endpoint, ServicePort } from '../src/model/types.js';
import type { StoredObject } from '../test/support/api-server.js';

function service(sp: ServicePort): StoredObject {
  const type = sp.loadBalancerIPs.length ? 'LoadBalancer' : sp.nodePort ? 'NodePort' : 'ClusterIP';
  const spec: Record<string, unknown> = {
    type,
    clusterIP: sp.clusterIP,
    clusterIPs: [sp.clusterIP],
    ports: [
      {
        name: sp.portName,
        protocol: sp.protocol,
        port: sp.port,
        targetPort: sp.allEndpoints[0]?.port ?? sp.port,
        ...(sp.nodePort ? { nodePort: sp.nodePort } : {}),
      },
    ],
  };
  if (sp.affinitySeconds) {
    spec.sessionAffinity = 'ClientIP';
    spec.sessionAffinityConfig = { clientIP: { timeoutSeconds: sp.affinitySeconds } };
  }
  if (type === 'LoadBalancer') {
    spec.allocateLoadBalancerNodePorts = false;
    if (sp.sourceRanges.length) spec.loadBalancerSourceRanges = sp.sourceRanges;
    if (sp.externalPolicyLocal) {
      spec.externalTrafficPolicy = 'Local';
      spec.healthCheckNodePort = sp.healthCheckNodePort;
    }
  }
  return {
    metadata: { namespace: sp.namespace, name: sp.name },
    spec,
    ...(type === 'LoadBalancer'
      ? { status: { loadBalancer: { ingress: sp.loadBalancerIPs.map((ip) => ({ ip })) } } }
      : {}),
  };
}

/** The Service's one EndpointSlice, with `endpoints` (its own by default). */
export function sliceOf(sp: ServicePort, endpoints: readonly Endpoint[] = sp.allEndpoints): StoredObject {
  return {
    metadata: {
      namespace: sp.namespace,
      name: `${sp.name}-a`,
      labels: { 'kubernetes.io/service-name': sp.name },
    },
    addressType: 'IPv4',
    ports: [{ name: sp.portName, port: sp.allEndpoints[0]?.port ?? sp.port, protocol: sp.protocol }],
    endpoints: endpoints.map((ep) => ({
      addresses: [ep.ip],
      conditions: { ready: ep.ready, serving: ep.serving, terminating: ep.terminating },
      nodeName: ep.nodeName,
    })),
  };
}

/** Every Service and EndpointSlice of `ports`, in the ports' order. */
export function objectsOf(ports: readonly ServicePort[]): {
  services: StoredObject[];
  slices: StoredObject[];
} {
  return { services: ports.map(service), slices: ports.map((sp) => sliceOf(sp)) };
}
