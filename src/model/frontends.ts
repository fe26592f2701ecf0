import type { Family, ServicePort } from './types.js';

export type FrontendKind = 'clusterIP' | 'externalIP' | 'loadBalancer' | 'nodePort';

/** An address and port at which a service port is reached. */
export interface Frontend {
  kind: FrontendKind;
  ip: string;
  port: number;
}

/**
 * Every frontend of a service port. NodePorts are one frontend per NodePort address of the
 * port's family (never loopback), so that every frontend is the same (ip, proto, port) key.
 */
export function frontendsOf(sp: ServicePort, nodePortIPs: Record<Family, string[]>): Frontend[] {
  const out: Frontend[] = [];
  if (sp.clusterIP) out.push({ kind: 'clusterIP', ip: sp.clusterIP, port: sp.port });
  for (const ip of sp.externalIPs) out.push({ kind: 'externalIP', ip, port: sp.port });
  for (const ip of sp.loadBalancerIPs) out.push({ kind: 'loadBalancer', ip, port: sp.port });
  if (sp.nodePort > 0)
    for (const ip of nodePortIPs[sp.family])
      if (!sp.lostNodePortIPs?.includes(ip)) out.push({ kind: 'nodePort', ip, port: sp.nodePort });
  return out;
}
