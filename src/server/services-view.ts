import { endpointName } from '../lb/maglev.js';
import type { ListenerInfo } from '../lb/userspace-backend.js';
import type { ProxyState } from '../model/types.js';

/** The JSON of /debug/services: every service port with its endpoints and flags, and what was skipped. */
export function describeServices(state: ProxyState | undefined, listeners?: ListenerInfo[]): unknown {
  if (!state) return { synced: false, ports: [], skipped: [] };
  const ep = (e: {
    ip: string;
    port: number;
    local: boolean;
    ready: boolean;
    serving: boolean;
    terminating: boolean;
  }) => ({
    address: endpointName(e),
    local: e.local,
    ready: e.ready,
    serving: e.serving,
    terminating: e.terminating,
  });
  // Listeners grouped by their service port's key once, not filtered again for every port.
  const byKey = new Map<string, ListenerInfo[]>();
  for (const l of listeners ?? []) {
    const group = byKey.get(l.key);
    if (group) group.push(l);
    else byKey.set(l.key, [l]);
  }
  return {
    synced: true,
    node: state.node,
    ports: state.ports.map((sp) => ({
      key: sp.key,
      service: sp.service,
      port: sp.portName,
      family: sp.family,
      protocol: sp.protocol,
      frontends: {
        clusterIP: sp.clusterIP ? `${sp.clusterIP}:${sp.port}` : null,
        externalIPs: sp.externalIPs,
        loadBalancerIPs: sp.loadBalancerIPs,
        nodePort: sp.nodePort || null,
      },
      flags: {
        externalTrafficPolicyLocal: sp.externalPolicyLocal,
        internalTrafficPolicyLocal: sp.internalPolicyLocal,
        affinitySeconds: sp.affinitySeconds,
        sourceRanges: sp.sourceRanges,
        lbAlgorithm: sp.lbAlgorithm,
      },
      clusterEndpoints: sp.clusterEndpoints.map(ep),
      localEndpoints: sp.localEndpoints.map(ep),
      allEndpoints: sp.allEndpoints.map(ep),
      ...(listeners ? { listeners: byKey.get(sp.key) ?? [] } : {}),
    })),
    skipped: state.skipped,
  };
}
