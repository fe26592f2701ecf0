/**
 * Which sockets the userspace proxy opens for a ProxyState: a pure function, so the
 * reconcile in userspace-backend.ts only compares lists and the choice is tested on its own.
 */
import { frontendsOf, type FrontendKind } from '../model/frontends.js';
import { ipFamily } from '../model/ip.js';
import type { Endpoint, Family, ProxyState } from '../model/types.js';
import type { PickerSpec } from './pickers.js';

export type BindMode = 'loopback' | 'service-ip';

export interface FrontendSpec {
  /** Unique per socket: `key|frontend|address:port`. */
  id: string;
  /** The ServicePort key. */
  key: string;
  frontend: FrontendKind;
  address: string;
  /** 0 in loopback mode: the kernel picks. */
  port: number;
  protocol: 'TCP' | 'UDP';
  endpoints: Endpoint[];
  picker: PickerSpec;
  /** loadBalancerSourceRanges, for loadBalancer frontends only; empty: any client. */
  sourceRanges: string[];
  /** An address that has to be made local before binding (service-ip mode; not node IPs). */
  localAddress: string | undefined;
}

export interface FrontendPlan {
  frontends: FrontendSpec[];
  /** Service ports the userspace proxy cannot serve, with the reason. */
  unsupported: Array<{ key: string; reason: string }>;
}

/**
 * Loopback mode: one socket per service port on 127.0.0.1 or ::1, port 0 (tests,
 * development, no privileges). Service-ip mode: every frontend the nftables rules serve
 * (frontendsOf: the ClusterIP, external IPs, load-balancer IPs, and the NodePort on each
 * NodePort address), with the endpoints of its traffic policy, as in the rules.
 * `nodePortIPs` is what --nodeport-addresses chose; by default the node's IPs.
 */
export function planFrontends(
  state: ProxyState,
  mode: BindMode,
  seed: number,
  nodePortIPs: Record<Family, string[]> = nodeIPsByFamily(state),
): FrontendPlan {
  const frontends: FrontendSpec[] = [];
  const unsupported: FrontendPlan['unsupported'] = [];
  for (const sp of state.ports) {
    if (sp.protocol !== 'TCP' && sp.protocol !== 'UDP') {
      unsupported.push({ key: sp.key, reason: `${sp.protocol} is not supported by the userspace proxy` });
      continue;
    }
    const protocol = sp.protocol;
    const picker: PickerSpec = { algorithm: sp.lbAlgorithm, affinitySeconds: sp.affinitySeconds, seed };
    const internal = sp.internalPolicyLocal ? sp.localEndpoints : sp.clusterEndpoints;
    const external = sp.externalPolicyLocal ? sp.localEndpoints : sp.clusterEndpoints;
    const add = (frontend: FrontendKind, address: string, port: number, endpoints: Endpoint[]): void => {
      frontends.push({
        id: `${sp.key}|${frontend}|${address}:${port}`,
        key: sp.key,
        frontend,
        address,
        port,
        protocol,
        endpoints,
        picker,
        sourceRanges: frontend === 'loadBalancer' ? sp.sourceRanges : [],
        // Service IPs must be made local before binding; node IPs already are.
        localAddress: frontend === 'nodePort' || mode === 'loopback' ? undefined : address,
      });
    };
    if (mode === 'loopback') {
      add('clusterIP', sp.family === 'ipv6' ? '::1' : '127.0.0.1', 0, internal);
      continue;
    }
    for (const fe of frontendsOf(sp, nodePortIPs))
      add(fe.kind, fe.ip, fe.port, fe.kind === 'clusterIP' ? internal : external);
  }
  return { frontends, unsupported };
}

function nodeIPsByFamily(state: ProxyState): Record<Family, string[]> {
  const out: Record<Family, string[]> = { ipv4: [], ipv6: [] };
  for (const ip of state.node.ips) {
    const f = ipFamily(ip);
    if (f) out[f].push(ip);
  }
  return out;
}
