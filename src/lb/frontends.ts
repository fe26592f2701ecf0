/**
 * Which sockets the userspace proxy opens for a ProxyState: a pure function, so the
 * reconcile in userspace-backend.ts only compares lists and the choice is tested on its own.
 */
import type { Endpoint, ProxyState, ServicePort } from '../model/types.js';
import type { PickerSpec } from './pickers.js';

export type BindMode = 'loopback' | 'service-ip';
export type FrontendKind = 'clusterIP' | 'externalIP' | 'loadBalancerIP' | 'nodePort';

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
  /** loadBalancerSourceRanges, for loadBalancerIP frontends only; empty: any client. */
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
 * development, no privileges). Service-ip mode: the ClusterIP, external IPs and
 * load-balancer IPs on the service port, and the NodePort on each node IP of the family,
 * as kube-proxy serves them. Traffic policy Local picks localEndpoints, as in the rules.
 */
export function planFrontends(state: ProxyState, mode: BindMode, seed: number): FrontendPlan {
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
    const add = (
      frontend: FrontendKind,
      address: string,
      port: number,
      endpoints: Endpoint[],
      extra: { sourceRanges?: string[]; local?: boolean } = {},
    ): void => {
      frontends.push({
        id: `${sp.key}|${frontend}|${address}:${port}`,
        key: sp.key,
        frontend,
        address,
        port,
        protocol,
        endpoints,
        picker,
        sourceRanges: extra.sourceRanges ?? [],
        localAddress: extra.local ? address : undefined,
      });
    };
    if (mode === 'loopback') {
      add('clusterIP', sp.family === 'ipv6' ? '::1' : '127.0.0.1', 0, internal);
      continue;
    }
    if (sp.clusterIP) add('clusterIP', sp.clusterIP, sp.port, internal, { local: true });
    for (const ip of sp.externalIPs) add('externalIP', ip, sp.port, external, { local: true });
    for (const ip of sp.loadBalancerIPs)
      add('loadBalancerIP', ip, sp.port, external, { local: true, sourceRanges: sp.sourceRanges });
    if (sp.nodePort > 0) for (const ip of nodeIPs(state, sp)) add('nodePort', ip, sp.nodePort, external);
  }
  return { frontends, unsupported };
}

function nodeIPs(state: ProxyState, sp: ServicePort): string[] {
  const v6 = sp.family === 'ipv6';
  return state.node.ips.filter((ip) => ip.includes(':') === v6);
}
