/**
 * What kube-proxy leaves on a node it no longer runs on, and how it goes: its nftables tables
 * (taken over atomically with ours, in the applier's full sync), the chains of its iptables
 * and IPVS modes (iptables-nft and iptables-legacy alike), and IPVS's `kube-ipvs0`. All of it
 * DNATs at the hook priorities ours use, so while it stays, which rule a new connection meets
 * first is an accident. Nothing else is touched: chains are removed by kube-proxy's own names
 * (kubelet's KUBE-FIREWALL, KUBE-KUBELET-CANARY, KUBE-IPTABLES-HINT stay), and only the jumps
 * into them go from the built-in chains.
 */
import { spawn } from 'node:child_process';
import type { Logger } from './log.js';
import type { Family } from './model/types.js';
import type { NftFamily, Table } from './rules/nft/types.js';

/** kube-proxy's nftables mode's tables: the only foreign tables this proxy ever deletes. */
export const KUBE_PROXY_TABLES: readonly Table[] = Object.freeze(
  (['ip', 'ip6'] as NftFamily[]).map((family): Table => ({ kind: 'table', family, table: 'kube-proxy' })),
);

/** The dummy interface IPVS mode puts every Service IP on. */
export const IPVS_INTERFACE = 'kube-ipvs0';

/**
 * kube-proxy's fixed chains, by iptables table, from its iptables and IPVS proxiers (their
 * CleanupLeftovers). Per-Service chains are found by prefix. KUBE-FIREWALL is IPVS's only in nat;
 * in filter it is kubelet's.
 */
const FIXED_CHAINS: Record<string, readonly string[]> = {
  nat: [
    'KUBE-SERVICES',
    'KUBE-NODEPORTS',
    'KUBE-POSTROUTING',
    'KUBE-MARK-MASQ',
    'KUBE-PROXY-CANARY',
    'KUBE-LOAD-BALANCER',
    'KUBE-NODE-PORT',
    'KUBE-FIREWALL',
  ],
  filter: [
    'KUBE-SERVICES',
    'KUBE-EXTERNAL-SERVICES',
    'KUBE-FORWARD',
    'KUBE-NODEPORTS',
    'KUBE-PROXY-FIREWALL',
    'KUBE-PROXY-CANARY',
    'KUBE-SOURCE-RANGES-FIREWALL',
    'KUBE-IPVS-FILTER',
    'KUBE-IPVS-OUT-FILTER',
  ],
  mangle: ['KUBE-PROXY-CANARY'],
};
/** Per-Service and per-endpoint chains of the iptables mode (nat). */
const SERVICE_CHAIN_PREFIXES = ['KUBE-SVC-', 'KUBE-SVL-', 'KUBE-EXT-', 'KUBE-FW-', 'KUBE-SEP-', 'KUBE-XLB-'];

function isKubeProxyChain(table: string, chain: string): boolean {
  if (FIXED_CHAINS[table]?.includes(chain)) return true;
  return table === 'nat' && SERVICE_CHAIN_PREFIXES.some((p) => chain.startsWith(p));
}

/**
 * The `iptables-restore --noflush` input that removes kube-proxy's chains from an
 * `iptables-save` dump: each of its chains declared (which flushes it), every rule elsewhere
 * that jumps or goes to one deleted, then the chains deleted; one transaction per table.
 * Undefined when there is nothing to remove. Pure.
 */
export function iptablesCleanupScript(save: string): string | undefined {
  const out: string[] = [];
  let table: string | undefined;
  let chains: string[] = [];
  let rules: string[] = [];
  const flushTable = (): void => {
    if (table === undefined) return;
    const ours = chains.filter((c) => isKubeProxyChain(table!, c));
    if (ours.length > 0) {
      const set = new Set(ours);
      const unlink = rules
        .filter((r) => {
          const [, chain] = r.split(' ', 3);
          const target = /\s-[jg] (\S+)/.exec(r)?.[1];
          return !set.has(chain!) && target !== undefined && set.has(target);
        })
        .map((r) => `-D${r.slice(2)}`);
      out.push(
        `*${table}`,
        ...ours.map((c) => `:${c} - [0:0]`),
        ...unlink,
        ...ours.map((c) => `-X ${c}`),
        'COMMIT',
      );
    }
    table = undefined;
    chains = [];
    rules = [];
  };
  for (const line of save.split('\n')) {
    if (line.startsWith('*')) {
      flushTable();
      table = line.slice(1).trim();
    } else if (line.startsWith(':')) chains.push(line.slice(1).split(' ')[0]!);
    else if (line.startsWith('-A ')) rules.push(line);
    else if (line.trim() === 'COMMIT') flushTable();
  }
  flushTable();
  return out.length > 0 ? `${out.join('\n')}\n` : undefined;
}

/** Runs a program; resolves with its exit code and output, or undefined when it is not installed. */
export interface RunProgram {
  (
    program: string,
    args: string[],
    stdin?: string,
  ): Promise<{ code: number; stdout: string; stderr: string } | undefined>;
}

/** Spawns `program` (inside `netns` when given: `ip netns exec`), LC_ALL=C. */
export function spawnProgram(opts: { netns?: string } = {}): RunProgram {
  return (program, args, stdin) =>
    new Promise((resolve, reject) => {
      const argv =
        opts.netns === undefined ? [program, ...args] : ['ip', 'netns', 'exec', opts.netns, program, ...args];
      const child = spawn(argv[0]!, argv.slice(1), {
        env: { ...process.env, LC_ALL: 'C' },
        stdio: ['pipe', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
      child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
      child.on('error', (err: NodeJS.ErrnoException) =>
        err.code === 'ENOENT' ? resolve(undefined) : reject(err),
      );
      child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
      child.stdin.on('error', () => undefined);
      child.stdin.end(stdin ?? '');
    });
}

/** The iptables front ends whose leftovers are removed: both families, nft and legacy back ends. */
const IPTABLES_VARIANTS = ['iptables-nft', 'ip6tables-nft', 'iptables-legacy', 'ip6tables-legacy'] as const;

/** What one cleanup did, per place. */
export interface LeftoversReport {
  /** `iptables-nft` etc.: the chains removed, for each variant that had any. */
  iptables: Record<string, number>;
  /** kube-ipvs0 was there and is gone. */
  ipvsInterface: boolean;
  /** Problems met (a tool that failed); the rest went on. */
  errors: string[];
}

/**
 * The families whose leftovers could not all be removed, from a report's errors: `ip6tables-*`
 * is IPv6, `iptables-*` IPv4, and kube-ipvs0 held both families' Service IPs.
 */
export function leftoverFailureFamilies(report: LeftoversReport): Family[] {
  const families = new Set<Family>();
  for (const e of report.errors) {
    if (e.startsWith('ip6tables')) families.add('ipv6');
    else if (e.startsWith('iptables')) families.add('ipv4');
    else families.add('ipv4').add('ipv6');
  }
  return (['ipv4', 'ipv6'] as const).filter((f) => families.has(f));
}

/**
 * Removes kube-proxy's iptables/IPVS leftovers: for each iptables variant that is installed,
 * its chains and the jumps into them; then kube-ipvs0. A missing tool is skipped; a failing one
 * is reported and the others still run. The nftables tables are not here: the applier's full
 * sync destroys them in the transaction that installs ours.
 */
export async function cleanupLeftovers(run: RunProgram, log?: Logger): Promise<LeftoversReport> {
  const report: LeftoversReport = { iptables: {}, ipvsInterface: false, errors: [] };
  for (const variant of IPTABLES_VARIANTS) {
    const saved = await run(`${variant}-save`, []);
    if (saved === undefined) continue;
    if (saved.code !== 0) {
      // legacy without its kernel module, or no permission: nothing of ours can be there either
      log?.debug({ variant, stderr: saved.stderr.trim() }, 'iptables leftovers not readable');
      continue;
    }
    const script = iptablesCleanupScript(saved.stdout);
    if (script === undefined) continue;
    const restored = await run(`${variant}-restore`, ['--noflush'], script);
    const removed = script.split('\n').filter((l) => l.startsWith('-X ')).length;
    if (restored === undefined || restored.code !== 0) {
      report.errors.push(`${variant}-restore: ${restored?.stderr.trim().split('\n')[0] ?? 'not installed'}`);
      continue;
    }
    report.iptables[variant] = removed;
  }
  const link = await run('ip', ['link', 'show', IPVS_INTERFACE]);
  if (link?.code === 0) {
    const del = await run('ip', ['link', 'del', IPVS_INTERFACE]);
    if (del?.code === 0) report.ipvsInterface = true;
    else report.errors.push(`ip link del ${IPVS_INTERFACE}: ${del?.stderr.trim() ?? 'ip not installed'}`);
  }
  return report;
}
