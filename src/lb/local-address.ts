/**
 * In service-ip mode the userspace proxy binds the Service's own IPs, so they must be local
 * addresses of this node. They live on `lo` (this kernel has no dummy module, DESIGN.md) as
 * host routes: /32 or /128, so no other address in their subnet becomes local.
 */
import { execFile } from 'node:child_process';
import net from 'node:net';

/** The seam: tests and loopback mode pass their own. */
export interface LocalAddresses {
  add(ip: string): Promise<void>;
  remove(ip: string): Promise<void>;
}

/** Does nothing: loopback mode, and tests. */
export const noLocalAddresses: LocalAddresses = {
  add: async () => {},
  remove: async () => {},
};

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
  return { add: (ip) => run('add', ip), remove: (ip) => run('del', ip) };
}
