/**
 * In service-ip mode the userspace proxy binds the Service's own IPs, so they must be local
 * addresses of this node. They live on `lo` (this kernel has no dummy module, DESIGN.md) as
 * host routes: /32 or /128, so no other address in their subnet becomes local. Which
 * addresses may be added at all is address-rule.ts's decision.
 */
import { execFile } from 'node:child_process';
import net from 'node:net';

/** The seam: tests and loopback mode pass their own. */
export interface LocalAddresses {
  add(ip: string): Promise<void>;
  remove(ip: string): Promise<void>;
  /** This node's gateways (every table, both families): addresses never made local. */
  gateways(): Promise<string[]>;
}

/** Does nothing: loopback mode, and tests. */
export const noLocalAddresses: LocalAddresses = {
  add: async () => {},
  remove: async () => {},
  gateways: async () => [],
};

interface RouteJson {
  gateway?: string;
  nexthops?: Array<{ gateway?: string }>;
}

/** `ip addr add|del IP/32 dev lo`; an address that is already there (or gone) is fine. */
export function ipLocalAddresses(opts: { device?: string; ipCommand?: string } = {}): LocalAddresses {
  const dev = opts.device ?? 'lo';
  const cmd = opts.ipCommand ?? 'ip';
  const run = (verb: 'add' | 'del', ip: string): Promise<void> =>
    new Promise((resolve, reject) => {
      const prefix = net.isIPv6(ip) ? 128 : 32;
      execFile(cmd, ['addr', verb, `${ip}/${prefix}`, 'dev', dev], (err, _stdout, stderr) => {
        if (!err) return resolve();
        const text = String(stderr);
        if (verb === 'add' && /File exists/.test(text)) return resolve();
        if (verb === 'del' && /Cannot assign requested address|not found/i.test(text)) return resolve();
        reject(new Error(`ip addr ${verb} ${ip}/${prefix} dev ${dev}: ${text.trim() || err.message}`));
      });
    });
  const routes = (family: '-4' | '-6'): Promise<RouteJson[]> =>
    new Promise((resolve, reject) => {
      execFile(cmd, ['-j', family, 'route', 'show', 'table', 'all'], (err, stdout, stderr) => {
        if (err) return reject(new Error(`ip route show: ${String(stderr).trim() || err.message}`));
        try {
          resolve(JSON.parse(String(stdout) || '[]') as RouteJson[]);
        } catch (parseErr) {
          reject(parseErr instanceof Error ? parseErr : new Error(String(parseErr)));
        }
      });
    });
  return {
    add: (ip) => run('add', ip),
    remove: (ip) => run('del', ip),
    gateways: async () => {
      const all = [...(await routes('-4')), ...(await routes('-6'))];
      const out = new Set<string>();
      for (const r of all) {
        if (r.gateway) out.add(r.gateway);
        for (const hop of r.nexthops ?? []) if (hop.gateway) out.add(hop.gateway);
      }
      return [...out].sort();
    },
  };
}
