import { spawn, type ChildProcess, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ErrorCodes, ProxyError } from '../../errors.js';
import { crashError, deathSignal, type ExecResult } from './exec.js';
import { processAlive } from '../../util/process-alive.js';

export interface SessionOptions {
  /** The program and its arguments up to `nft` itself, e.g. ['nft'] or ['ip', 'netns', 'exec', 'x', 'nft']. */
  command: [string, ...string[]];
  /** Where the transaction file lives (a private directory is made in it); default os.tmpdir(). */
  dir?: string;
  /** A transaction that has not answered after this long kills the session (SIGKILL); default 30 s. */
  timeoutMs?: number;
}

/**
 * Kills a child and everything it started: children are spawned `detached`, each the leader of
 * its own process group, so that a wrapper script (the trixie nft's, scripts/nft-trixie.sh)
 * cannot leave its nft running, or holding our pipes open, after we gave up on it.
 */
export function killGroup(child: ChildProcess): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch {
    child.kill('SIGKILL');
  }
}

/** Drops the carets nft put under the previous marker, when they arrived after it was settled. */
function withoutCarets(stderr: string): string {
  return stderr.replace(/^(?:[ \t]*\^+[ \t]*(?:\n|$))+/, '');
}

/** Session directories are named after the process that made them: `kube-nftproxy-nft-<pid>-XXXXXX`. */
const DIR_PREFIX = 'kube-nftproxy-nft-';
const DIR_RE = /^kube-nftproxy-nft-(\d+)-/;
/** This process's open sessions' directories: never swept. */
const live = new Set<string>();

/**
 * Removes the session directories in `parent` that no running session owns: made by a process
 * that is gone, or by an earlier run with this very pid (a container restarted in its pod
 * keeps its /tmp emptyDir and is pid 1 again). A daemon killed with SIGKILL cannot clean up
 * after itself; its successor does.
 */
function sweepStale(parent: string): void {
  let names: string[];
  try {
    names = readdirSync(parent);
  } catch {
    return;
  }
  for (const name of names) {
    const m = DIR_RE.exec(name);
    if (!m) continue;
    const path = join(parent, name);
    const pid = Number(m[1]);
    if (live.has(path) || (pid !== process.pid && processAlive(pid))) continue;
    rmSync(path, { recursive: true, force: true });
  }
}

/**
 * A long-lived `nft -i` for the small transactions of partial syncs. Each transaction is
 * written to a private file and run by one `include` line, which nft reads and commits as one
 * atomic batch, as `nft -f` would. What it saves, per transaction, is what `nft -f -` pays
 * every time: a process start, nft's cache fetch, and the wait at exit while the kernel frees
 * deleted elements (nf_tables flushes its destroy work when the netlink socket closes): about
 * 20 ms at 10,000 Services, against 2–4 ms here (docs/nft-facts.md). The file, not stdin, carries
 * the text because nft reads interactive lines a byte at a time.
 *
 * After each include line goes a marker line, a deliberate syntax error with a serial number:
 * nft reads its lines in order and reports each error as it meets it, so everything on stderr
 * before the marker's own error is that transaction's. The marker is found wherever it appears
 * in the error nft prints about it (1.0.6 and 1.1.3 echo the line under an `Error: syntax
 * error` line and put carets under it, with different wording: docs/nft-facts.md). A
 * transaction succeeded when nft said nothing about it: nft is silent on success, and anything
 * it says is a failure, whatever words a version uses (a full sync through `nft -f`, whose
 * exit status decides, follows a failure).
 *
 * The session dies with its first surprise: nft gone or crashed (NFT_CRASHED), no marker in
 * time (NFT_TIMEOUT: killed with SIGKILL); the caller then goes back to `nft -f -`.
 */
export class NftSession {
  readonly #child: ChildProcessWithoutNullStreams;
  readonly #dir: string;
  readonly #file: string;
  readonly #timeoutMs: number;
  #stderr = '';
  #serial = 0;
  #pending: { marker: string; resolve: (r: ExecResult) => void; reject: (e: Error) => void } | undefined;
  #queue: Promise<unknown> = Promise.resolve();
  #dead: Error | undefined;
  /** Set before we kill nft ourselves: its death by SIGKILL is then no crash. */
  #killing = false;

  constructor(opts: SessionOptions) {
    const parent = opts.dir ?? tmpdir();
    sweepStale(parent);
    this.#dir = mkdtempSync(join(parent, `${DIR_PREFIX}${process.pid}-`));
    live.add(this.#dir);
    this.#file = join(this.#dir, 'transaction.nft');
    this.#timeoutMs = opts.timeoutMs ?? 30_000;
    const [program, ...args] = opts.command;
    // nft -i keeps every line in its history and loads and writes $HOME/.nft.history: HOME is
    // the private directory, so nothing outside it is read or grows.
    this.#child = spawn(program, [...args, '-i'], {
      env: { ...process.env, LC_ALL: 'C', HOME: this.#dir },
      stdio: ['pipe', 'pipe', 'pipe'],
      detached: true,
    });
    // The session must not keep the process alive, and ends with it (nft -i exits at EOF).
    this.#child.unref();
    for (const s of [this.#child.stdin, this.#child.stdout, this.#child.stderr])
      (s as unknown as { unref?: () => void }).unref?.();
    this.#child.stdout.resume();
    this.#child.stdin.on('error', () => undefined);
    this.#child.stderr.setEncoding('utf8');
    this.#child.stderr.on('data', (text: string) => {
      this.#stderr += text;
      this.#settle();
    });
    this.#child.on('error', (err) => this.#die(err));
    this.#child.on('exit', (code, signal) => {
      const crash = this.#killing
        ? undefined
        : deathSignal({ code: code ?? -1, signal: signal ?? undefined });
      this.#die(
        crash
          ? crashError('nft -i', crash, withoutCarets(this.#stderr))
          : new ProxyError(ErrorCodes.NFT_REJECTED, `nft -i exited (${signal ?? code})`),
      );
    });
  }

  /** nft's process id (through `ip netns exec`, the same process: ip execs nft). */
  get pid(): number | undefined {
    return this.#child.pid;
  }

  /** Where transactions are written (removed when the session ends). */
  get dir(): string {
    return this.#dir;
  }

  /** Transactions run so far. */
  get runs(): number {
    return this.#serial;
  }

  /** False once the session has died; it then refuses every run. */
  get alive(): boolean {
    return this.#dead === undefined;
  }

  /** Why the session died, once it has. */
  get death(): Error | undefined {
    return this.#dead;
  }

  /** Runs one transaction; resolves with nft's stderr and 0, or 1 when it reported an error. */
  run(text: string): Promise<ExecResult> {
    const next = this.#queue.then(() => this.#runNow(text));
    this.#queue = next.catch(() => undefined);
    return next;
  }

  /** Ends nft and removes the directory. */
  close(): void {
    this.#die(new ProxyError(ErrorCodes.NFT_REJECTED, 'nft session closed'));
  }

  #runNow(text: string): Promise<ExecResult> {
    if (this.#dead) return Promise.reject(this.#dead);
    writeFileSync(this.#file, text);
    const marker = `kube-nftproxy-end-of-transaction-${++this.#serial}`;
    return new Promise<ExecResult>((resolve, reject) => {
      const timer = setTimeout(
        () =>
          this.#die(
            new ProxyError(
              ErrorCodes.NFT_TIMEOUT,
              `nft -i did not answer within ${this.#timeoutMs} ms and was killed; whether it ` +
                'committed is unknown, so the next sync replaces the whole ruleset',
            ),
          ),
        this.#timeoutMs,
      );
      // The timer stays referenced while nft has a transaction: a process with nothing else to
      // wait on yet (the daemon removing a trace table before its servers listen, with
      // --source) must wait for nft's answer, not exit with the transaction in flight.
      this.#pending = {
        marker,
        resolve: (r) => {
          clearTimeout(timer);
          resolve(r);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      this.#child.stdin.write(`include "${this.#file}"\n${marker}\n`);
    });
  }

  /**
   * Once the line that holds the marker is complete, the run is over: what came before the
   * marker's error block is the transaction's. That block is the marker's line and the
   * `Error:` line above it, if nft printed one (its wording changes between versions; its
   * location, when it has one, is never our transaction file). Carets nft puts under the
   * marker may come after; they are dropped where the next run's output starts.
   */
  #settle(): void {
    const p = this.#pending;
    if (!p) return;
    // Not a longer serial that starts with this one's digits.
    const at = this.#stderr.search(new RegExp(`${p.marker}(?![0-9])`));
    if (at < 0) return;
    const end = this.#stderr.indexOf('\n', at + p.marker.length);
    if (end < 0) return;
    let start = this.#stderr.lastIndexOf('\n', at - 1) + 1;
    const above = this.#stderr.lastIndexOf('\n', start - 2) + 1;
    const aboveLine = start > 0 ? this.#stderr.slice(above, start - 1) : '';
    if (aboveLine.includes('Error') && !aboveLine.includes(this.#file)) start = above;
    const own = withoutCarets(this.#stderr.slice(0, start));
    this.#stderr = this.#stderr.slice(end + 1);
    this.#pending = undefined;
    const stderr = own
      .split('\n')
      .filter((l) => !l.startsWith('In file included from'))
      .join('\n');
    p.resolve({ stdout: '', stderr, code: stderr.trim() === '' ? 0 : 1 });
  }

  #die(err: Error): void {
    if (this.#dead) return;
    this.#dead = err;
    this.#pending?.reject(err);
    this.#pending = undefined;
    this.#child.stdin.end();
    this.#killing = true;
    killGroup(this.#child);
    rmSync(this.#dir, { recursive: true, force: true });
    live.delete(this.#dir);
  }
}
