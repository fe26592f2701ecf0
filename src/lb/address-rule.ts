/**
 * Which frontend addresses service-ip mode may make local (add to `lo`). A local address
 * takes the whole node's traffic for it: an externalIP that is the node's gateway or the API
 * server's address would cut the node off from them, so adding one is a decision, not a
 * side effect of whatever a Service says. The backend asks only after binding failed with
 * EADDRNOTAVAIL, so an address that is local already (a node address, an address an operator
 * put there) is bound as it is and never added or removed.
 */
import { cidrContains, parseCidr, type Cidr } from '../model/ip.js';
import type { ProxyState } from '../model/types.js';
import type { FrontendKind } from '../model/frontends.js';

export interface AddressRule {
  /** --service-cidr, parsed; empty when the flag is not set. */
  serviceCIDRs: readonly Cidr[];
  /**
   * Addresses that must never become local, with what they are: this node's gateways, and
   * every endpoint (the API server is the endpoint of default/kubernetes; pods are endpoints).
   */
  reserved: ReadonlyMap<string, string>;
}

export type AddressDecision = { add: true } | { add: false; reason: string };

/** Never bound at all: a wildcard would take the port on every address, multicast is no frontend. */
const NEVER: Cidr[] = ['0.0.0.0/32', '::/128', '224.0.0.0/4', 'ff00::/8'].map((c) => parseCidr(c)!);

/** Why `ip` may not be bound in any mode, or undefined when it may. */
export function unbindable(ip: string): string | undefined {
  return NEVER.some((c) => cidrContains(c, ip)) ? `${ip} is a wildcard or multicast address` : undefined;
}

/**
 * Whether a frontend address that is not local may be added. Only inside --service-cidr, and
 * never a reserved address. Without --service-cidr only ClusterIPs are added: the API server
 * allocates them from its service range (and validates them), while an externalIP is whatever
 * a Service's author wrote and a load-balancer IP whatever a controller wrote; those frontends
 * are skipped with a reason naming the flag, and work where their address is local already.
 */
export function decideAddress(frontend: FrontendKind, ip: string, rule: AddressRule): AddressDecision {
  const never = unbindable(ip);
  if (never) return { add: false, reason: never };
  const what = rule.reserved.get(ip);
  if (what) return { add: false, reason: `${ip} is ${what}: never made local` };
  if (frontend === 'nodePort') return { add: false, reason: `${ip} is no local address` };
  if (rule.serviceCIDRs.length === 0) {
    if (frontend === 'clusterIP') return { add: true };
    return {
      add: false,
      reason: `${ip} is not local, and only addresses inside --service-cidr are made local (not set: ClusterIPs only)`,
    };
  }
  if (rule.serviceCIDRs.some((c) => cidrContains(c, ip))) return { add: true };
  return {
    add: false,
    reason: `${ip} is not local, and only addresses inside --service-cidr (${rule.serviceCIDRs.map((c) => c.text).join(',')}) are made local`,
  };
}

/** The reserved addresses of a rule: `gateways` (from the routing table) and every endpoint in `state`. */
export function reservedAddresses(state: ProxyState, gateways: readonly string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const sp of state.ports)
    for (const ep of sp.allEndpoints) if (!out.has(ep.ip)) out.set(ep.ip, `an endpoint of ${sp.service}`);
  for (const gw of gateways) out.set(gw, 'a gateway of this node');
  return out;
}
