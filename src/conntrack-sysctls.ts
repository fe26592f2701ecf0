import { readFile, writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import type { ConntrackConfig } from './config-types.js';
import type { Logger } from './log.js';

/** kube-proxy caps the scaled nf_conntrack_max here, whatever the CPU count. */
export const CONNTRACK_MAX_LIMIT = 1_048_576;

const NETFILTER = 'proc/sys/net/netfilter';
/** Global (the initial network namespace's); the kernel refuses writes from any other. */
const HASHSIZE = 'sys/module/nf_conntrack/parameters/hashsize';

/** One value to set, by path under the root. */
export interface SysctlWant {
  path: string;
  value: number;
  /** `raise`: written only when the current value is lower (limits); `differs`: when not equal. */
  when: 'raise' | 'differs';
}

/**
 * kube-proxy's nf_conntrack_max: maxPerCore × CPUs, at least `min`, capped at 1,048,576; 0 (leave
 * it alone) when maxPerCore is 0.
 */
export function conntrackMax(config: Pick<ConntrackConfig, 'maxPerCore' | 'min'>, cpus: number): number {
  if (config.maxPerCore <= 0) return 0;
  const scaled = config.maxPerCore * cpus;
  if (scaled > CONNTRACK_MAX_LIMIT) return CONNTRACK_MAX_LIMIT;
  return Math.max(scaled, config.min);
}

/**
 * The sysctls to set, in kube-proxy's order: pure. The table size is only ever raised (the
 * hash table to a quarter of it, kube-proxy's ratio); timeouts are set when they differ. A
 * timeout under one second (0 after kube-proxy's truncation to seconds) is left alone.
 */
export function desiredSysctls(config: ConntrackConfig, cpus: number): SysctlWant[] {
  const out: SysctlWant[] = [];
  const max = conntrackMax(config, cpus);
  if (max > 0) {
    out.push({ path: `${NETFILTER}/nf_conntrack_max`, value: max, when: 'raise' });
    out.push({ path: HASHSIZE, value: Math.floor(max / 4), when: 'raise' });
  }
  const seconds = (ms: number): number => Math.floor(ms / 1000);
  const timeouts: Array<[string, number]> = [
    ['nf_conntrack_tcp_timeout_established', config.tcpEstablishedTimeoutMs],
    ['nf_conntrack_tcp_timeout_close_wait', config.tcpCloseWaitTimeoutMs],
  ];
  for (const [name, ms] of timeouts)
    if (seconds(ms) > 0) out.push({ path: `${NETFILTER}/${name}`, value: seconds(ms), when: 'differs' });
  if (config.tcpBeLiberal)
    out.push({ path: `${NETFILTER}/nf_conntrack_tcp_be_liberal`, value: 1, when: 'differs' });
  for (const [name, ms] of [
    ['nf_conntrack_udp_timeout', config.udpTimeoutMs],
    ['nf_conntrack_udp_timeout_stream', config.udpStreamTimeoutMs],
  ] as Array<[string, number]>)
    if (seconds(ms) > 0) out.push({ path: `${NETFILTER}/${name}`, value: seconds(ms), when: 'differs' });
  return out;
}

/** What happened to one sysctl. */
export interface SysctlOutcome {
  path: string;
  value: number;
  /** The value read before, when it could be read. */
  was?: number;
  result: 'unchanged' | 'written' | 'skipped';
  /** errno code of a skipped write (EROFS, EACCES, ENOENT, EOPNOTSUPP, ...). */
  code?: string;
}

/**
 * The node's online CPUs from sysfs (kube-proxy's count: the limit is host-wide, so a process
 * cpuset must not shrink it), else what Node sees.
 */
export async function onlineCpus(root = '/'): Promise<number> {
  try {
    const text = (await readFile(join(root, 'sys/devices/system/cpu/online'), 'utf8')).trim();
    let n = 0;
    for (const part of text.split(',')) {
      const m = /^(\d+)(?:-(\d+))?$/.exec(part.trim());
      if (!m) return availableParallelism();
      n += m[2] === undefined ? 1 : Number(m[2]) - Number(m[1]) + 1;
    }
    return n > 0 ? n : availableParallelism();
  } catch {
    return availableParallelism();
  }
}

const HINTS: Record<string, string> = {
  EROFS:
    'read-only filesystem: run `kube-nftproxy --init-only` in a privileged init container (docs/deploy.md)',
  EACCES:
    'permission denied: needs a privileged container (or this value is not writable in this network namespace)',
  EPERM: 'not permitted: needs a privileged container',
  ENOENT: 'not present: nf_conntrack is not loaded yet',
  EOPNOTSUPP: 'the kernel takes it only from the initial network namespace',
};

/**
 * Sets kube-proxy's conntrack sysctls under `root` (`/` on a node; a fake tree in tests). Only
 * values that differ are written, so a second run (the daemon after the --init-only container)
 * writes nothing and needs no privilege. A value that cannot be written (read-only /proc/sys or
 * /sys in an unprivileged container, a sysctl this kernel keeps per host) is logged and
 * skipped: the proxy runs on, as kube-proxy does on a read-only /sys.
 */
export async function setConntrackSysctls(
  config: ConntrackConfig,
  opts: { log: Logger; root?: string; cpus?: number },
): Promise<SysctlOutcome[]> {
  const root = opts.root ?? '/';
  const log = opts.log.child({ component: 'conntrack' });
  const cpus = opts.cpus ?? (await onlineCpus(root));
  const out: SysctlOutcome[] = [];
  for (const want of desiredSysctls(config, cpus)) {
    const file = join(root, want.path);
    const path = `/${want.path}`;
    let was: number | undefined;
    let code: string | undefined;
    try {
      const n = Number((await readFile(file, 'utf8')).trim());
      if (Number.isInteger(n)) was = n;
    } catch (err) {
      code = (err as NodeJS.ErrnoException).code ?? 'EIO';
    }
    const base = { path, value: want.value, ...(was !== undefined ? { was } : {}) };
    if (was !== undefined && (want.when === 'raise' ? was >= want.value : was === want.value)) {
      out.push({ ...base, result: 'unchanged' });
      log.debug({ sysctl: path, value: was }, 'conntrack sysctl already set');
      continue;
    }
    // A missing file is not written: that would create a plain file in a fake tree.
    if (code !== 'ENOENT') {
      try {
        await writeFile(file, String(want.value));
        out.push({ ...base, result: 'written' });
        log.info({ sysctl: path, from: was, to: want.value }, 'set conntrack sysctl');
        continue;
      } catch (err) {
        code = (err as NodeJS.ErrnoException).code ?? 'EIO';
      }
    }
    out.push({ ...base, result: 'skipped', code: code! });
    log.warn(
      { sysctl: path, current: was, wanted: want.value, code, hint: HINTS[code!] },
      'cannot set conntrack sysctl; going on',
    );
  }
  return out;
}
