import { spawn, spawnSync } from 'node:child_process';

/** What a finished command left behind. */
export interface ExecResult {
  stdout: string;
  stderr: string;
  /** Exit code; null when a signal ended it. */
  code: number | null;
}

export interface ExecOptions {
  /** Written to the command's stdin, which is then closed. */
  input?: string;
  /** Return a non-zero exit instead of throwing. */
  allowFail?: boolean;
  /** Kill the command after this long (it then counts as failed). Default 60 s. */
  timeoutMs?: number;
}

/** A lab command failed; `argv`, `code` and `stderr` say which and why. */
export class LabError extends Error {
  readonly argv: readonly string[];
  readonly stderr: string;
  readonly exitCode: number | null;
  constructor(message: string, argv: readonly string[], exitCode: number | null, stderr: string) {
    super(message);
    this.name = 'LabError';
    this.argv = argv;
    this.exitCode = exitCode;
    this.stderr = stderr;
  }
}

/** Runs `argv` (no shell) and collects its output. */
export function run(argv: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
  const [cmd, ...args] = argv;
  if (cmd === undefined) return Promise.reject(new Error('run: empty argv'));
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(new LabError(`${cmd}: ${err.message}`, argv, null, ''));
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      if (code !== 0 && !opts.allowFail) {
        const why = stderr.trim().split('\n').slice(0, 5).join(' | ') || `exit ${String(code)}`;
        reject(new LabError(`${argv.join(' ')}: ${why}`, argv, code, stderr));
        return;
      }
      resolve({ stdout, stderr, code });
    });
    child.stdin.on('error', () => {});
    child.stdin.end(opts.input ?? '');
  });
}

/** Synchronous twin of {@link run} for exit handlers; never throws. */
export function runSync(argv: readonly string[]): ExecResult {
  const [cmd, ...args] = argv;
  if (cmd === undefined) return { stdout: '', stderr: 'empty argv', code: 1 };
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 10_000 });
  return { stdout: r.stdout ?? '', stderr: r.stderr ?? '', code: r.status };
}
