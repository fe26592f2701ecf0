import { networkInterfaces } from 'node:os';
import type { ProxyConfig } from './config-types.js';
import { cidrContains, ipFamily, parseCidr } from './model/ip.js';
import type { Family, NodeInfo } from './model/types.js';

/**
 * This host's own addresses but loopback and link-local ones (the I/O half of choosing node
 * and NodePort IPs). Addresses are judged by value, not by interface: node's `internal` flag
 * marks every address on `lo`, and an extra node address living there (a VIP, a second node
 * IP) is a NodePort address to kube-proxy, which lists the addresses of every interface.
 */
export function hostAddresses(
  interfaces: ReturnType<typeof networkInterfaces> = networkInterfaces(),
): string[] {
  const out: string[] = [];
  for (const list of Object.values(interfaces)) {
    for (const a of list ?? []) {
      if (isLoopback(a.address) || (a.family === 'IPv6' && /^fe[89ab]/i.test(a.address))) continue;
      out.push(a.address);
    }
  }
  return [...new Set(out)].sort();
}

const isLoopback = (ip: string): boolean => ip.startsWith('127.') || ip === '::1';

/**
 * The addresses that accept NodePorts, by family: the node's primary IPs, or every local
 * address inside the --nodeport-addresses CIDRs. Never loopback (kube-proxy's nftables mode
 * refuses localhost NodePorts too).
 */
export function nodePortIPs(
  node: NodeInfo,
  setting: ProxyConfig['nodePortAddresses'],
  localAddresses: string[],
): Record<Family, string[]> {
  const chosen =
    setting === 'primary'
      ? node.ips
      : localAddresses.filter((ip) => setting.some((c) => cidrContains(parseCidr(c)!, ip)));
  const out: Record<Family, string[]> = { ipv4: [], ipv6: [] };
  for (const ip of [...new Set(chosen)].sort()) {
    const f = ipFamily(ip);
    if (f && !isLoopback(ip)) out[f].push(ip);
  }
  return out;
}
