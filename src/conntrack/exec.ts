/**
 * Runs the `conntrack` program (conntrack-tools), the only way to reach the kernel's
 * connection table from Node without a native addon. Measured with 1.4.7 and 100,000 UDP
 * entries (bench/conntrack-cleanup.ts): every listing and every `-D` walks the whole table
 * (about a quarter of a second each, whatever the filter, even a full tuple), while `-R` runs
 * many commands in one process. So a cleanup lists a family once, decides in
 * stale-flows.ts, and deletes with one filtered `-D` per stale (frontend, endpoint), all in
 * one `-R` batch. The batch is a file: conntrack opens `/dev/stdin` by name, which fails on
 * the socket Node gives a child as stdin.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ErrorCodes, ProxyError } from '../errors.js';
import type { Family } from '../model/types.js';
import { origDport, parseFlow, type Flow } from './flow.js';
import type { FlowFilter } from './stale-flows.js';

export interface ConntrackResult {
  /** stdout, unless it went line by line to `onLine`. */
  stdout: string;
  stderr: string;
  /** Exit status; a process killed by a signal reports -1. */
  code: number;
}

/**
 * Runs conntrack with `args` (without the program name). With `onLine`, every stdout line is
 * handed over as it arrives and none is kept: a listing of 100,000 entries never sits in
 * memory whole, and the event loop gets a turn between chunks. Rejects only when the program
 * cannot be started (the error carries Node's errno `code`, e.g. ENOENT).
 */
export interface ConntrackExec {
  (args: string[], opts?: { onLine?: (line: string) => void }): Promise<ConntrackResult>;
}

/** The connection-table operations the cleanup needs. */
export interface Conntrack {
  /**
   * Every UDP entry of `family` (`conntrack -L -p udp -f ipv4`), handed over one by one; with
   * `dports`, only those sent to one of these ports (the others are not even parsed).
   */
  listUdp(family: Family, onFlow: (flow: Flow) => void, dports?: ReadonlySet<number>): Promise<void>;
  /** Deletes the UDP entries each filter matches, in one process; resolves to how many went. */
  deleteUdp(family: Family, filters: readonly FlowFilter[]): Promise<number>;
}

export interface ConntrackOptions {
  /** Runs conntrack; defaults to spawning `path` (inside `netns` if given). */
  exec?: ConntrackExec;
  /** Run every command inside this network namespace (`ip netns exec NAME conntrack ...`). */
  netns?: string;
  /** The conntrack binary; default 'conntrack' from PATH. */
  path?: string;
  /** Where deletion batches are written (in a private folder made there); default the temp directory. */
  dir?: string;
}

/** Spawns conntrack (through `ip netns exec` when `netns` is set) with LC_ALL=C. */
export function spawnConntrack(opts: { netns?: string; path?: string } = {}): ConntrackExec {
  const program = opts.path ?? 'conntrack';
  const [cmd, ...prefix] =
    opts.netns === undefined ? [program] : ['ip', 'netns', 'exec', opts.netns, program];
  return (args, { onLine } = {}) =>
    new Promise<ConntrackResult>((resolve, reject) => {
      const child = spawn(cmd!, [...prefix, ...args], {
        env: { ...process.env, LC_ALL: 'C' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      let rest = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => {
        if (!onLine) {
          stdout += d;
          return;
        }
        const lines = (rest + d).split('\n');
        rest = lines.pop()!;
        for (const line of lines) onLine(line);
      });
      child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
      child.on('error', reject);
      child.on('close', (code) => {
        if (onLine && rest !== '') onLine(rest);
        resolve({ stdout, stderr, code: code ?? -1 });
      });
    });
}

/** conntrack's own report lines start with its name and version; the message follows. */
function message(stderr: string): string {
  const lines = stderr
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !/flow entries have been (shown|deleted)/.test(l));
  return lines.slice(0, 4).join(' | ');
}

function failure(args: string[], result: ConntrackResult): ProxyError {
  const why = message(result.stderr) || `exit status ${result.code}`;
  // `ip netns exec` reports a missing program itself.
  if (/exec of ".*" failed: No such file or directory/.test(result.stderr)) {
    return new ProxyError(
      ErrorCodes.CONNTRACK_BINARY_MISSING,
      `conntrack not found: install conntrack (${why})`,
    );
  }
  return new ProxyError(ErrorCodes.CONNTRACK_FAILED, `conntrack ${args.join(' ')} failed: ${why}`);
}

/** `-D` arguments for one filter: everything but the family and protocol. */
export function filterArgs(f: FlowFilter): string[] {
  return [
    ...(f.origDst === undefined ? [] : ['--orig-dst', f.origDst]),
    '--orig-port-dst',
    String(f.origDport),
    '--reply-src',
    f.replySrc,
    '--reply-port-src',
    String(f.replySport),
  ];
}

/** Creates the real Conntrack; nothing runs until a method is called. */
export function createConntrack(opts: ConntrackOptions = {}): Conntrack {
  const path = opts.path ?? 'conntrack';
  const exec = opts.exec ?? spawnConntrack({ ...(opts.netns ? { netns: opts.netns } : {}), path });

  async function call(args: string[], o: Parameters<ConntrackExec>[1] = {}): Promise<ConntrackResult> {
    let result: ConntrackResult;
    try {
      result = await exec(args, o);
    } catch (err) {
      if ((err as { code?: unknown }).code === 'ENOENT') {
        throw new ProxyError(
          ErrorCodes.CONNTRACK_BINARY_MISSING,
          `conntrack not found: install conntrack (${path})`,
          {
            cause: err,
          },
        );
      }
      throw new ProxyError(ErrorCodes.CONNTRACK_FAILED, `cannot run ${path}: ${String(err)}`, { cause: err });
    }
    if (result.code !== 0) throw failure(args, result);
    return result;
  }

  return {
    async listUdp(family, onFlow, dports) {
      await call(['-L', '-p', 'udp', '-f', family], {
        onLine: (line) => {
          if (dports && !dports.has(origDport(line))) return;
          const flow = parseFlow(line);
          if (flow) onFlow(flow);
        },
      });
    },
    async deleteUdp(family, filters) {
      if (filters.length === 0) return 0;
      // -R runs one command per line and goes on past a filter that matched nothing; every
      // entry it deletes is printed on stdout, one line each.
      const lines = filters.map((f) => ['-D', '-p', 'udp', '-f', family, ...filterArgs(f)].join(' '));
      const folder = await mkdtemp(join(opts.dir ?? tmpdir(), 'kube-nftproxy-conntrack-'));
      try {
        const batch = join(folder, 'delete');
        await writeFile(batch, `${lines.join('\n')}\n`, { mode: 0o600 });
        let deleted = 0;
        await call(['-R', batch], {
          onLine: (line) => {
            if (line.startsWith('udp ')) deleted++;
          },
        });
        return deleted;
      } finally {
        await rm(folder, { recursive: true, force: true });
      }
    },
  };
}
