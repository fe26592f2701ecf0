/**
 * The load of the userspace bench: one bulk stream, request/response exchanges over kept-alive
 * connections, and connect-exchange-close loops, each through a proxy on a loopback port. Each
 * counts its units over a window after a warm-up and reads the proxy process's CPU time over
 * the same window, so a figure per unit of work comes with the rate: on a shared machine the
 * rate swings with the neighbours, the CPU a proxy spends per unit less, and the instructions
 * it retires per unit (where perf can count them) hardly at all.
 */
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { PerfCounter, type Instructions } from './perf-counter.js';

/** Units done in a window (MB, exchanges, connections) and the proxy's CPU ticks in it. */
export interface Sample {
  units: number;
  seconds: number;
  /** utime + stime of the proxy process, in clock ticks (USER_HZ, 100 a second on Linux). */
  cpuTicks: number;
  /** Retired by the proxy process in the window; undefined without perf. */
  instructions: Instructions | undefined;
}

/** Which process is measured, and whether to count its instructions with perf. */
export interface Target {
  port: number;
  pid: number;
  perf: boolean;
}

/** Counts one window of a load on a proxy; perf, when asked for, attaches during the warm-up. */
class Window {
  private start = 0n;
  private ticks = 0;
  private readonly perf: PerfCounter | undefined;
  constructor(private readonly target: Target) {
    this.perf = target.perf ? new PerfCounter(target.pid) : undefined;
  }

  /** Waits out the warm-up, then counts for `seconds`; `units` reads the work done so far. */
  async run(warmupMs: number, seconds: number, units: () => number): Promise<Sample> {
    await sleep(warmupMs);
    await this.perf?.enable();
    const before = units();
    this.ticks = cpuTicks(this.target.pid);
    this.start = process.hrtime.bigint();
    await sleep(seconds * 1000);
    await this.perf?.disable();
    const elapsed = Number(process.hrtime.bigint() - this.start) / 1e9;
    const sample = {
      units: units() - before,
      seconds: elapsed,
      cpuTicks: cpuTicks(this.target.pid) - this.ticks,
    };
    return { ...sample, instructions: await this.perf?.stop() };
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** utime + stime from /proc/<pid>/stat; the command name may hold spaces, so fields count from its ')'. */
function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]);
}

/** One stream from the backend through the proxy, in MB; counted with a reused read buffer. */
export function bulk(t: Target, seconds: number): Promise<Sample> {
  return new Promise((resolve, reject) => {
    const w = new Window(t);
    let bytes = 0;
    const c = net.connect({
      port: t.port,
      host: '127.0.0.1',
      onread: {
        buffer: Buffer.alloc(1 << 20),
        callback: (n: number) => {
          bytes += n;
          return true;
        },
      },
    });
    c.on('error', reject);
    c.on('connect', () => {
      c.write('B');
      // The first half second fills buffers and warms the JIT; it is not counted.
      w.run(500, seconds, () => bytes / 1e6).then((sample) => {
        c.destroy();
        resolve(sample);
      }, reject);
    });
  });
}

/** `conns` connections, each sending `size` bytes and waiting for the echo, over and over. */
export function keepalive(t: Target, seconds: number, conns: number, size: number): Promise<Sample> {
  return new Promise((resolve, reject) => {
    const w = new Window(t);
    const req = Buffer.alloc(size, 0x71);
    let exchanges = 0;
    let stop = false;
    const sockets: net.Socket[] = [];
    for (let i = 0; i < conns; i++) {
      let got = 0;
      const c = net.connect({ port: t.port, host: '127.0.0.1', noDelay: true });
      sockets.push(c);
      c.on('error', reject);
      c.on('connect', () => {
        c.write(Buffer.concat([Buffer.from('E'), req]));
      });
      c.on('data', (d: Buffer) => {
        got += d.length;
        if (got < size) return;
        got -= size;
        exchanges++;
        if (!stop) c.write(req);
      });
    }
    w.run(300, seconds, () => exchanges).then((sample) => {
      stop = true;
      for (const c of sockets) c.destroy();
      resolve(sample);
    }, reject);
  });
}

/** `concurrency` loops of connect, one 32-byte exchange, close; a failed exchange is not counted. */
export function connections(t: Target, seconds: number, concurrency: number): Promise<Sample> {
  return new Promise((resolve, reject) => {
    const w = new Window(t);
    const msg = Buffer.alloc(32, 0x45); // starts with 'E': echo mode
    let done = 0;
    let stop = false;
    let running = 0;
    let finish = (): void => {};
    const one = (): void => {
      running++;
      let got = 0;
      const c = net.connect({ port: t.port, host: '127.0.0.1', noDelay: true });
      c.on('connect', () => c.write(msg));
      c.on('data', (d: Buffer) => {
        got += d.length;
        if (got >= msg.length - 1) {
          done++;
          c.destroy();
        }
      });
      c.on('error', () => {});
      c.on('close', () => {
        running--;
        if (!stop) one();
        else if (running === 0) finish();
      });
    };
    for (let i = 0; i < concurrency; i++) one();
    w.run(300, seconds, () => done).then((sample) => {
      stop = true;
      // The loops still running finish before the next measurement starts.
      finish = () => resolve(sample);
      if (running === 0) finish();
    }, reject);
  });
}
