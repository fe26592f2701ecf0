import { networkInterfaces } from 'node:os';
import type { ProxyConfig } from './config-types.js';
import { cidrContains, ipFamily, parseCidr } from './model/ip.js';
import type { Family, NodeInfo } from './model/types.js';

/** This host's own non-loopback addresses (the I/O half of choosing node and NodePort IPs). */
export function hostAddresses(): string[] {
  const out: string[] = [];
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) {
      if (a.internal || (a.family === 'IPv6' && a.address.startsWith('fe80:'))) continue;
      out.push(a.address);
    }
  }
  return out.sort();
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
