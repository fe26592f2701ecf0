/**
 * Runs the real `nft` binary, after knftables' exec.go and error.go: transactions go to
 * `nft -f -` on stdin, and nft's stderr is mapped to error codes from src/errors.ts. An nft
 * that dies by a signal is NFT_CRASHED, one that does not finish in time is killed and is
 * NFT_TIMEOUT: neither says anything about the transaction, and neither may hang the daemon.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { constants } from 'node:os';
import { ErrorCodes, hasCode, isNoSuchObject, ProxyError, type ErrorCode } from '../../errors.js';
import { killGroup, NftSession } from './session.js';
import type { Transaction } from './transaction.js';
import type { NftFamily } from './types.js';

/** What one nft invocation produced. */
export interface ExecResult {
  stdout: string;
  stderr: string;
  /** Exit status; a process killed by a signal reports -1. */
  code: number;
  /** The signal that killed it, if one did. */
  signal?: NodeJS.Signals;
  /** It did not finish within its time and was killed (SIGKILL). */
  timedOut?: boolean;
}

/**
 * Runs nft with `args` (without the program name), feeding `stdin` if given. Rejects only
 * when the program cannot be started (the error carries Node's errno `code`, e.g. ENOENT).
 */
export interface Exec {
  (args: string[], stdin?: string): Promise<ExecResult>;
}

/** The nft operations the rest of the proxy needs; the Fake implements the same interface. */
export interface Nft {
  /** Applies the transaction atomically (`nft -f -`); rejects with `tx.err` without running if set. */
  run(tx: Transaction): Promise<void>;
  /** Parses and validates the transaction in the kernel without committing it (`nft -c -f -`). */
  check(tx: Transaction): Promise<void>;
  /** `nft list table family table`; '' when the table does not exist. */
  list(family: NftFamily, table: string): Promise<string>;
  /**
   * `nft -j list map family table map`: the JSON text, '' when it does not exist. For maps the
   * kernel fills itself (session affinity), whose elements we never sent, and for the counters
   * on elements (src/counters/). `kind` 'set' lists a set instead; `numericProtocol` prints
   * `inet_proto` fields as numbers (nft -p: measured 30–45 % faster for 14,000 elements).
   */
  listMapJson(family: NftFamily, table: string, map: string, opts?: ListOptions): Promise<string>;
  /** nft's version, e.g. '1.0.6' (read once, then cached). */
  version(): Promise<string>;
  /**
   * Every table in the ruleset, ours and others', named as nft lists them (`inet filter`),
   * read without reading their sets: what is left to ask when listing them crashes nft.
   */
  tables?(): Promise<string[]>;
  /** Ends a long-lived nft session, if one is open (see NftOptions.session). */
  close?(): void;
  /**
   * Starts a long-running nft with `args` (`monitor trace`) where every other command runs (the
   * same binary, the same namespace), in a process group of its own; the caller reads its
   * output and kills it (killGroup). Absent where nothing real runs (an injected exec, the Fake).
   */
  spawn?(args: string[]): ChildProcessWithoutNullStreams;
}

/** How listMapJson lists. */
export interface ListOptions {
  kind?: 'map' | 'set';
  numericProtocol?: boolean;
}

export interface NftOptions {
  /** Runs nft; defaults to spawning `nftPath` (inside `netns` if given). */
  exec?: Exec;
  /** Run every nft command inside this network namespace (`ip netns exec NAME nft ...`). */
  netns?: string;
  /** The nft binary; default 'nft' from PATH. */
  nftPath?: string;
  /**
   * Run small transactions (up to SESSION_MAX_OPERATIONS) through one long-lived `nft -i`
   * (NftSession), the daemon's partial syncs; `dir` is where it writes them (default the
   * temp directory). Larger ones, and checks, use `nft -f -`.
   */
  session?: boolean | { dir?: string };
  /** `nft -f` and listings that take longer are killed (SIGKILL); default NFT_TIMEOUT_MS. */
  timeoutMs?: number;
  /** A session transaction that takes longer kills the session; default SESSION_TIMEOUT_MS. */
  sessionTimeoutMs?: number;
}

/**
 * How long one `nft -f` (or listing) may take. A full load of 10,000 Services takes 1.5–5 s on
 * a loaded 2-core machine (README); an nft still running after this long is stuck, and the
 * daemon must go on (the next sync is a full one).
 */
export const NFT_TIMEOUT_MS = 120_000;

/** How long one session transaction (at most SESSION_MAX_OPERATIONS operations, 2–8 ms) may take. */
export const SESSION_TIMEOUT_MS = 30_000;

/**
 * Above this many operations a transaction goes to `nft -f -`: nft's interactive mode keeps
 * netlink buffers sized for small batches (8,000 elements in one batch failed with ENOBUFS).
 */
export const SESSION_MAX_OPERATIONS = 1_000;

/**
 * A session is replaced after this many transactions: nft -i keeps each line it read in its
 * history (two short lines per transaction), which would otherwise grow for as long as it runs.
 */
export const SESSION_MAX_RUNS = 10_000;

/** The command line up to and including nft: `ip netns exec NAME nft` inside a namespace. */
function nftCommand(opts: { netns?: string; nftPath?: string }): [string, ...string[]] {
  const nft = opts.nftPath ?? 'nft';
  return opts.netns === undefined ? [nft] : ['ip', 'netns', 'exec', opts.netns, nft];
}

/**
 * Spawns nft (through `ip netns exec` when `netns` is set) with LC_ALL=C so messages are
 * stable. After `timeoutMs` (default NFT_TIMEOUT_MS) it is killed with SIGKILL and the result
 * says `timedOut`.
 */
export function spawnExec(opts: { netns?: string; nftPath?: string; timeoutMs?: number } = {}): Exec {
  const [program, ...prefix] = nftCommand(opts);
  const timeoutMs = opts.timeoutMs ?? NFT_TIMEOUT_MS;
  return (args, stdin) =>
    new Promise<ExecResult>((resolve, reject) => {
      const child = spawn(program, [...prefix, ...args], {
        env: { ...process.env, LC_ALL: 'C' },
        stdio: ['pipe', 'pipe', 'pipe'],
        detached: true,
      });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        killGroup(child);
      }, timeoutMs);
      child.stdout.on('data', (b: Buffer) => out.push(b));
      child.stderr.on('data', (b: Buffer) => err.push(b));
      // nft may exit before reading all of stdin (a parse error on line 1); its exit status says why.
      child.stdin.on('error', () => undefined);
      child.on('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        resolve({
          stdout: Buffer.concat(out).toString('utf8'),
          stderr: Buffer.concat(err).toString('utf8'),
          code: code ?? -1,
          ...(signal ? { signal } : {}),
          ...(timedOut ? { timedOut } : {}),
        });
      });
      child.stdin.end(stdin ?? '');
    });
}

/** Signals that mean a bug in nft, not a kill from outside. */
const CRASH_SIGNALS = new Set(['SIGSEGV', 'SIGABRT', 'SIGBUS', 'SIGILL', 'SIGFPE', 'SIGTRAP']);

/**
 * The signal that ended nft, if one did: reported as such by Node, or as exit status 128+n by
 * a shell in between that did not exec (nft itself exits with 0 to 3).
 */
export function deathSignal(result: Pick<ExecResult, 'code' | 'signal'>): NodeJS.Signals | undefined {
  if (result.signal) return result.signal;
  if (result.code <= 128 || result.code > 128 + 64) return undefined;
  const n = result.code - 128;
  return (Object.keys(constants.signals) as NodeJS.Signals[]).find((k) => constants.signals[k] === n);
}

/** nft died by a signal (NFT_CRASHED); `signal` says which. */
export class NftCrashError extends ProxyError {
  readonly signal: NodeJS.Signals;
  constructor(signal: NodeJS.Signals, message: string) {
    super(ErrorCodes.NFT_CRASHED, message);
    this.signal = signal;
  }
}

/**
 * The error for an nft that died by `signal` running `what`: it says what to do, as the one
 * crash seen in the field has one cause (docs/nft-facts.md).
 */
export function crashError(what: string, signal: NodeJS.Signals, detail = ''): NftCrashError {
  const how = CRASH_SIGNALS.has(signal) ? `crashed (${signal})` : `was killed by ${signal}`;
  const advice = CRASH_SIGNALS.has(signal)
    ? '; nft before 1.1 crashes reading a table that a newer nft wrote (a host firewall with ' +
      'interval or dynamic sets): run kube-nftproxy with nft >= 1.1 (its image ships 1.1.3)'
    : '';
  const tail = detail.trim() === '' ? '' : ` (${firstLines(detail)})`;
  return new NftCrashError(signal, `${what} ${how}${advice}${tail}`);
}

/** How many stderr lines an error message keeps: two errors with their source line and carets. */
const MAX_STDERR_LINES = 6;

/** Maps nft's stderr to an error code; the first error line decides (nft prints one per failure). */
export function classifyStderr(stderr: string): ErrorCode {
  // `ip netns exec` reports a missing nft itself, before nft could say anything.
  if (/exec of ".*" failed: No such file or directory/.test(stderr)) return ErrorCodes.NFT_BINARY_MISSING;
  if (/Operation not permitted|you must be root/.test(stderr)) return ErrorCodes.NFT_PERMISSION;
  const first = stderr.split('\n').find((l) => l.includes('Error:')) ?? stderr;
  if (first.includes('No such file or directory')) return ErrorCodes.NFT_NO_SUCH_OBJECT;
  if (first.includes('File exists')) return ErrorCodes.NFT_EXISTS;
  // ENFILE: the kernel's answer to an element past a set's size.
  if (first.includes('Too many open files in system')) return ErrorCodes.NFT_SET_FULL;
  return ErrorCodes.NFT_REJECTED;
}

function firstLines(stderr: string): string {
  const lines = stderr.split('\n').filter((l) => l.trim() !== '');
  let detail = lines.slice(0, MAX_STDERR_LINES).join('\n');
  if (lines.length > MAX_STDERR_LINES) detail += `\n(${lines.length - MAX_STDERR_LINES} more lines)`;
  return detail;
}

/**
 * Builds the error for a failed nft command: NFT_TIMEOUT or NFT_CRASHED when nft did not end
 * by itself, else the code from stderr, with the first few lines as message.
 */
export function nftError(args: string[], result: ExecResult): ProxyError {
  const command = `nft ${args.join(' ')}`;
  if (result.timedOut) {
    return new ProxyError(
      ErrorCodes.NFT_TIMEOUT,
      `${command} did not finish in time and was killed; whether it committed is unknown, ` +
        'so the next sync replaces the whole ruleset',
    );
  }
  const signal = deathSignal(result);
  if (signal !== undefined) return crashError(command, signal, result.stderr);
  const code = classifyStderr(result.stderr);
  let detail = firstLines(result.stderr);
  if (detail === '') detail = `exit status ${result.code}`;
  let message = `${command} failed: ${detail}`;
  if (code === ErrorCodes.NFT_PERMISSION) message = `nft needs CAP_NET_ADMIN: run as root (${detail})`;
  if (code === ErrorCodes.NFT_BINARY_MISSING)
    message = `nft not found: install the nftables package (${detail})`;
  return new ProxyError(code, message);
}

function spawnFailure(err: unknown, nftPath: string): ProxyError {
  if ((err as { code?: unknown }).code === 'ENOENT') {
    return new ProxyError(
      ErrorCodes.NFT_BINARY_MISSING,
      `nft not found: install the nftables package (${nftPath})`,
      {
        cause: err,
      },
    );
  }
  return new ProxyError(ErrorCodes.NFT_REJECTED, `cannot run ${nftPath}: ${String(err)}`, { cause: err });
}

/** Reads `1.0.6` out of `nftables v1.0.6 (Lester Gooch #5)`. */
export function parseVersion(text: string): string | undefined {
  return /\bv?(\d+\.\d+(?:\.\d+)?)\b/.exec(text)?.[1];
}

/** Creates the real Nft. Nothing runs until a method is called; see probeNft for the start-up check. */
export function createNft(opts: NftOptions = {}): Nft {
  const nftPath = opts.nftPath ?? 'nft';
  const exec = opts.exec ?? spawnExec({ netns: opts.netns, nftPath, timeoutMs: opts.timeoutMs });
  let version: Promise<string> | undefined;

  async function call(args: string[], stdin?: string): Promise<ExecResult> {
    try {
      return await exec(args, stdin);
    } catch (err) {
      throw spawnFailure(err, nftPath);
    }
  }

  let session: NftSession | undefined;
  const sessionDir = typeof opts.session === 'object' ? opts.session.dir : undefined;
  let sessions = opts.session !== undefined && opts.session !== false && opts.exec === undefined;

  /** The open session, a new one if the last died, or undefined when sessions cannot work here. */
  function openSession(): NftSession | undefined {
    if (!sessions) return undefined;
    if (session?.alive && session.runs < SESSION_MAX_RUNS) return session;
    // A session that never answered may be an nft whose interactive output we do not
    // recognise: every later one would wait as long. nft -f, whose exit status decides, stays.
    if (hasCode(session?.death, ErrorCodes.NFT_TIMEOUT)) {
      sessions = false;
      return undefined;
    }
    session?.close();
    try {
      session = new NftSession({
        command: nftCommand({ ...opts, nftPath }),
        timeoutMs: opts.sessionTimeoutMs ?? SESSION_TIMEOUT_MS,
        ...(sessionDir ? { dir: sessionDir } : {}),
      });
      return session;
    } catch {
      // No writable directory for the transaction file: every transaction uses nft -f -.
      sessions = false;
      return undefined;
    }
  }

  async function apply(args: string[], tx: Transaction): Promise<void> {
    if (tx.err !== undefined) throw tx.err;
    if (tx.size === 0) return;
    const s = args[0] === '-f' && tx.size <= SESSION_MAX_OPERATIONS ? openSession() : undefined;
    let result: ExecResult;
    try {
      result = s ? await s.run(tx.toString()) : await call(args, tx.toString());
    } catch (err) {
      if (!s) throw err;
      // The session died under this transaction: whether nft committed it is unknown, so the
      // caller must treat the kernel as unknown (the applier then replaces everything). Its
      // crash or timeout keeps its code; anything else is a refusal.
      if (err instanceof ProxyError) throw err;
      throw new ProxyError(ErrorCodes.NFT_REJECTED, `nft session failed: ${(err as Error).message}`, {
        cause: err,
      });
    }
    if (result.code !== 0) throw nftError(args, result);
  }

  /** A listing's stdout, or '' when what it lists does not exist. */
  async function listOrEmpty(args: string[]): Promise<string> {
    const result = await call(args);
    if (result.code === 0) return result.stdout;
    const err = nftError(args, result);
    if (isNoSuchObject(err)) return '';
    throw err;
  }

  const [program, ...prefix] = nftCommand({ ...opts, nftPath });
  const spawnNft =
    opts.exec === undefined
      ? (args: string[]): ChildProcessWithoutNullStreams =>
          spawn(program, [...prefix, ...args], {
            env: { ...process.env, LC_ALL: 'C' },
            stdio: ['pipe', 'pipe', 'pipe'],
            detached: true,
          })
      : undefined;

  return {
    ...(spawnNft ? { spawn: spawnNft } : {}),
    close: () => session?.close(),
    run: (tx) => apply(['-f', '-'], tx),
    check: (tx) => apply(['-c', '-f', '-'], tx),
    list: (family, table) => listOrEmpty(['list', 'table', family, table]),
    listMapJson: (family, table, map, { kind = 'map', numericProtocol = false } = {}) =>
      listOrEmpty(['-j', ...(numericProtocol ? ['-p'] : []), 'list', kind, family, table, map]),
    async tables() {
      // `list tables` reads every set too, and crashes where `list ruleset` does; `list
      // flowtables` reads no set and prints each table's header (nft 1.0.6 and 1.1.3, measured).
      const args = ['list', 'flowtables'];
      const result = await call(args);
      if (result.code !== 0 || result.timedOut) throw nftError(args, result);
      return [...result.stdout.matchAll(/^table (\S+ \S+) \{/gm)].map((m) => m[1]!);
    },
    version() {
      version ??= (async () => {
        const args = ['--version'];
        const result = await call(args);
        if (result.code !== 0) throw nftError(args, result);
        const parsed = parseVersion(result.stdout);
        if (parsed === undefined) {
          throw new ProxyError(
            ErrorCodes.NFT_VERSION,
            `cannot read nft's version from ${JSON.stringify(result.stdout)}`,
          );
        }
        return parsed;
      })();
      // A failed read (nft missing) is retried next time rather than cached forever.
      version.catch(() => {
        version = undefined;
      });
      return version;
    },
  };
}
