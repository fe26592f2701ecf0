/**
 * Instructions a process retires, counted by `perf stat` attached to it, in user space and in
 * the kernel apart. Unlike CPU time, an instruction count does not grow when neighbours take
 * the cores, the caches or the memory bandwidth, so on a shared machine it is the figure that
 * repeats. perf starts disabled and counts only between `enable` and `disable`, sent over its
 * control descriptors, so its own start-up is not counted and the window is the caller's.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import type { Readable, Writable } from 'node:stream';
import { promisify } from 'node:util';

const EVENTS = 'instructions:u,instructions:k';

export interface Instructions {
  user: number;
  kernel: number;
}

/** Whether perf can count instructions here (a VM may hide the counters; a user may lack rights). */
export async function perfAvailable(): Promise<boolean> {
  try {
    const { stderr } = await promisify(execFile)('perf', ['stat', '-x,', '-e', EVENTS, 'true']);
    return parse(stderr) !== undefined;
  } catch {
    return false;
  }
}

export class PerfCounter {
  private err = '';
  private readonly child: ChildProcess;
  private readonly ctl: Writable;
  private readonly ack: Readable;
  /** perf has exited and its report on stderr is complete. */
  private readonly done: Promise<void>;

  /** Starts perf on `pid`, counting nothing until `enable`. */
  constructor(pid: number) {
    // perf reads commands on its fd 3 and answers `ack` on its fd 4.
    this.child = spawn(
      'perf',
      ['stat', '-x,', '-D', '-1', '--control', 'fd:3,4', '-e', EVENTS, '-p', String(pid)],
      { stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'] },
    );
    this.ctl = this.child.stdio[3] as Writable;
    this.ack = this.child.stdio[4] as Readable;
    this.ctl.on('error', () => {}); // perf gone: `done` reports it
    const stderr = this.child.stderr!;
    stderr.on('data', (d: Buffer) => (this.err += d.toString()));
    this.done = Promise.all([once(this.child, 'exit'), once(stderr, 'end')]).then(() => {});
  }

  enable(): Promise<void> {
    return this.command('enable');
  }

  disable(): Promise<void> {
    return this.command('disable');
  }

  /** Ends perf and returns what it counted while enabled; undefined when it printed no counts. */
  async stop(): Promise<Instructions | undefined> {
    this.child.kill('SIGINT');
    await this.done;
    this.ctl.destroy();
    this.ack.destroy();
    return parse(this.err);
  }

  /** perf answers once the command is applied, so counting starts or stops before this resolves. */
  private command(what: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const gone = (): void => reject(new Error(`perf exited before '${what}': ${this.err.trim()}`));
      void this.done.then(gone);
      this.ack.once('data', () => resolve());
      this.ctl.write(`${what}\n`);
    });
  }
}
/** The two counts from `perf stat -x,` output (value first, event name third). */
function parse(stderr: string): Instructions | undefined {
  const count = (event: string): number => {
    const line = stderr.split('\n').find((l) => l.split(',')[2] === event);
    return line ? Number(line.split(',')[0]) : NaN;
  };
  const user = count('instructions:u');
  const kernel = count('instructions:k');
  return Number.isFinite(user) && Number.isFinite(kernel) ? { user, kernel } : undefined;
}
