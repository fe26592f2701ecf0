import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ErrorCodes, ProxyError } from '../../errors.js';
import type { ExecResult } from './exec.js';
import { processAlive } from '../../process-alive.js';

export interface SessionOptions {
  /** The program and its arguments up to `nft` itself, e.g. ['nft'] or ['ip', 'netns', 'exec', 'x', 'nft']. */
  command: [string, ...string[]];
  /** Where the transaction file lives (a private directory is made in it); default os.tmpdir(). */
  dir?: string;
  /** A transaction that has not answered after this long kills the session; default 60 s. */
  timeoutMs?: number;
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
 * After each include line goes a marker line, a deliberate syntax error: nft echoes it on
 * stderr, after anything the transaction printed there, so the output between two markers is
 * that transaction's. The session dies with its first surprise (nft gone, no marker in time);
 * the caller then goes back to `nft -f -`.
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

  constructor(opts: SessionOptions) {
    const parent = opts.dir ?? tmpdir();
    sweepStale(parent);
    this.#dir = mkdtempSync(join(parent, `${DIR_PREFIX}${process.pid}-`));
    live.add(this.#dir);
    this.#file = join(this.#dir, 'transaction.nft');
    this.#timeoutMs = opts.timeoutMs ?? 60_000;
    const [program, ...args] = opts.command;
    // nft -i keeps every line in its history and loads and writes $HOME/.nft.history: HOME is
    // the private directory, so nothing outside it is read or grows.
    this.#child = spawn(program, [...args, '-i'], {
      env: { ...process.env, LC_ALL: 'C', HOME: this.#dir },
      stdio: ['pipe', 'pipe', 'pipe'],
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
    this.#child.on('exit', (code, signal) => this.#die(new Error(`nft -i exited (${signal ?? code})`)));
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
        () => this.#die(new Error(`nft did not answer within ${this.#timeoutMs} ms`)),
        this.#timeoutMs,
      );
      timer.unref();
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

  /** Once the marker's error block (its line and the caret line under it) is in, the run is over. */
  #settle(): void {
    const p = this.#pending;
    if (!p) return;
    const at = this.#stderr.indexOf(`\n${p.marker}\n`);
    if (at < 0) return;
    const end = this.#stderr.indexOf('\n', at + p.marker.length + 2);
    if (end < 0) return;
    // The line before the marker is nft's "Error: syntax error ..." about the marker itself.
    const own = this.#stderr.slice(0, this.#stderr.lastIndexOf('\n', at - 1) + 1);
    this.#stderr = this.#stderr.slice(end + 1);
    this.#pending = undefined;
    const stderr = own
      .split('\n')
      .filter((l) => !l.startsWith('In file included from'))
      .join('\n');
    p.resolve({ stdout: '', stderr, code: /\bError:/.test(stderr) ? 1 : 0 });
  }

  #die(err: Error): void {
    if (this.#dead) return;
    this.#dead = err;
    this.#pending?.reject(err);
    this.#pending = undefined;
    this.#child.stdin.end();
    if (this.#child.exitCode === null) this.#child.kill();
    rmSync(this.#dir, { recursive: true, force: true });
    live.delete(this.#dir);
  }
}
