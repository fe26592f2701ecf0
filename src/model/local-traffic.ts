import { cidrContains, parseCidr } from './ip.js';
import type { Family, NodeInfo } from './types.js';

/** kube-proxy's --detect-local-mode values. */
export const DETECT_LOCAL_MODES = [
  'ClusterCIDR',
  'NodeCIDR',
  'BridgeInterface',
  'InterfaceNamePrefix',
] as const;
export type DetectLocalMode = (typeof DETECT_LOCAL_MODES)[number];

/**
 * How traffic from pods is told from other traffic, as configured (--detect-local-mode and its
 * parameter). ClusterCIDR reads --cluster-cidr and NodeCIDR the Node's spec.podCIDRs, so both
 * are resolved against those by {@link localTraffic}.
 */
export type DetectLocal =
  | { mode: 'ClusterCIDR' }
  | { mode: 'NodeCIDR' }
  | { mode: 'BridgeInterface'; bridgeInterface: string }
  | { mode: 'InterfaceNamePrefix'; interfaceNamePrefix: string };

/**
 * kube-proxy's LocalTrafficDetector, resolved for this node: pod traffic is traffic from these
 * source CIDRs (of the packet's family), or traffic that came in on this interface (`name`) or
 * on any interface whose name starts with `prefix`. `none`: nothing is told apart (kube-proxy's
 * no-op detector), so no masquerade or short-circuit rule depends on it.
 */
export type LocalTraffic =
  | { by: 'cidr'; cidrs: string[] }
  | { by: 'interface'; name: string }
  | { by: 'interface-prefix'; prefix: string }
  | { by: 'none' };

/** Linux's limit (IFNAMSIZ 16, with the terminating NUL). */
const MAX_INTERFACE_NAME = 15;

/**
 * Why `name` is not an interface name (or prefix) that can be written into nft text, or
 * undefined when it is one. Linux allows almost any byte; this takes the characters real
 * interface names use (cni0, cbr0, br-1a2b, veth, cali, lxc, eni), so that a name can never
 * close nft's quotes, add a wildcard or change the meaning of a rule.
 */
export function interfaceNameProblem(name: string): string | undefined {
  if (name.length === 0) return 'is empty';
  if (name.length > MAX_INTERFACE_NAME)
    return `is ${name.length} characters long; Linux interface names have at most ${MAX_INTERFACE_NAME}`;
  if (name === '.' || name === '..') return 'is not an interface name';
  if (!/^[A-Za-z0-9_.@+-]+$/.test(name))
    return 'may hold only letters, digits and _ . - @ + (no spaces, quotes, slashes, colons or wildcards)';
  return undefined;
}

/** The local-traffic detector for this node, as kube-proxy's getLocalDetectors builds it. */
export function localTraffic(detect: DetectLocal, clusterCIDRs: string[], node: NodeInfo): LocalTraffic {
  switch (detect.mode) {
    case 'ClusterCIDR':
      return clusterCIDRs.length > 0 ? { by: 'cidr', cidrs: [...clusterCIDRs] } : { by: 'none' };
    case 'NodeCIDR': {
      const cidrs = node.podCIDRs ?? [];
      return cidrs.length > 0 ? { by: 'cidr', cidrs: [...cidrs] } : { by: 'none' };
    }
    case 'BridgeInterface':
      return { by: 'interface', name: detect.bridgeInterface };
    case 'InterfaceNamePrefix':
      return { by: 'interface-prefix', prefix: detect.interfaceNamePrefix };
  }
}

/**
 * NodeCIDR and the Node has no spec.podCIDRs (not known yet, or not allocated yet): kube-proxy
 * waits for them before it programs anything, since without them no pod traffic is told apart
 * and every pod's connection to a ClusterIP would be masqueraded.
 */
export function awaitingPodCIDRs(detect: DetectLocal, node: NodeInfo): boolean {
  return detect.mode === 'NodeCIDR' && (node.podCIDRs ?? []).length === 0;
}

/** The detector's CIDRs of one family (empty for interface detection). */
export function localCIDRs(local: LocalTraffic, family: Family): string[] {
  if (local.by !== 'cidr') return [];
  return local.cidrs
    .map((c) => parseCidr(c))
    .filter((c) => c !== undefined && c.family === family)
    .map((c) => c!.text);
}

/** Whether the detector tells anything apart in this family (kube-proxy's IsImplemented). */
export function detects(local: LocalTraffic, family: Family): boolean {
  return local.by === 'interface' || local.by === 'interface-prefix' || localCIDRs(local, family).length > 0;
}

/**
 * The nft match for pod traffic (`negate`: for traffic that is not), in one family; undefined
 * when the detector tells nothing apart there. Interface names are validated when the config is
 * built (interfaceNamePrefix), and quoted here. `iifname` rather than kube-proxy's `iif`: it
 * loads before the bridge exists and still matches after the bridge is made again (`iif`
 * compares interface indexes, fixed when the rule is loaded), and a prefix needs it for `*`.
 */
export function localMatch(local: LocalTraffic, family: Family, negate = false): string | undefined {
  const not = negate ? '!= ' : '';
  switch (local.by) {
    case 'interface':
      return `iifname ${not}"${local.name}"`;
    case 'interface-prefix':
      return `iifname ${not}"${local.prefix}*"`;
    case 'cidr': {
      const cidrs = localCIDRs(local, family);
      if (cidrs.length === 0) return undefined;
      return `${family === 'ipv4' ? 'ip' : 'ip6'} saddr ${not}{ ${cidrs.join(', ')} }`;
    }
    case 'none':
      return undefined;
  }
}

/**
 * Whether a packet counts as pod traffic, as the rules decide: by its source address, or by the
 * interface it came in on (`iif`; '' for the node's own packets, which have none).
 */
export function isLocalTraffic(local: LocalTraffic, family: Family, src: string, iif: string): boolean {
  switch (local.by) {
    case 'interface':
      return iif === local.name;
    case 'interface-prefix':
      return iif.startsWith(local.prefix);
    case 'cidr':
      return localCIDRs(local, family).some((c) => {
        const parsed = parseCidr(c);
        return parsed !== undefined && cidrContains(parsed, src);
      });
    case 'none':
      return false;
  }
}
