/**
 * The userspace proxy against HAProxy on loopback, same backend, same load: bulk throughput
 * of one stream, request/response exchanges over a few kept-alive connections, and new
 * connections per second. Load generator (this process), backend and proxy are separate
 * processes; HAProxy runs one thread, as the Node proxy does. The two proxies take turns,
 * round by round, and the best round of each counts: the machine is shared, and the best
 * round is the one least disturbed by others.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { access, mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Bench, BenchContext, BenchResult } from './harness.js';

const HAPROXY = '/usr/sbin/haproxy';
const TARGETS = { bulk: 0.9, keepalive: 0.9, connect: 0.7 };

interface Figures {
  bulkMBps: number;
  keepaliveRps: number;
  connectPerSec: number;
}

export const bench: Bench = {
  name: 'userspace',
  async unavailable() {
    try {
      await access(HAPROXY);
      return undefined;
    } catch {
      return `${HAPROXY} is not installed (Debian package haproxy)`;
    }
  },
  async run(ctx) {
    const seconds = ctx.quick ? 1 : 1.5;
    const rounds = ctx.quick ? 1 : 3;
    const children: ChildProcess[] = [];
    const dir = await mkdtemp(path.join(os.tmpdir(), 'bench-userspace-'));
    try {
      const backend = await startChild(children, 'userspace-backend-child', []);
      const ours = await startChild(children, 'userspace-proxy-child', [String(backend)]);
      const haproxy = await startHaproxy(children, dir, backend);
      const best: Record<'ours' | 'haproxy', Figures> = {
        ours: { bulkMBps: 0, keepaliveRps: 0, connectPerSec: 0 },
        haproxy: { bulkMBps: 0, keepaliveRps: 0, connectPerSec: 0 },
      };
      for (let r = 0; r < rounds; r++) {
        for (const [who, port] of [
          ['haproxy', haproxy],
          ['ours', ours],
        ] as const) {
          const f = await measure(port, seconds, ctx);
          ctx.say(
            `  round ${r + 1} ${who}: ${f.bulkMBps.toFixed(0)} MB/s, ${f.keepaliveRps.toFixed(0)} req/s, ${f.connectPerSec.toFixed(0)} conn/s`,
          );
          const b = best[who];
          b.bulkMBps = Math.max(b.bulkMBps, f.bulkMBps);
          b.keepaliveRps = Math.max(b.keepaliveRps, f.keepaliveRps);
          b.connectPerSec = Math.max(b.connectPerSec, f.connectPerSec);
        }
      }
      return report(best.ours, best.haproxy);
    } finally {
      for (const c of children) c.kill('SIGTERM');
      await rm(dir, { recursive: true, force: true });
    }
  },
};

function report(ours: Figures, ha: Figures): BenchResult {
  const ratio = (a: number, b: number): number => (b > 0 ? Math.round((a / b) * 100) / 100 : 0);
  const r = {
    bulk: ratio(ours.bulkMBps, ha.bulkMBps),
    keepalive: ratio(ours.keepaliveRps, ha.keepaliveRps),
    connect: ratio(ours.connectPerSec, ha.connectPerSec),
  };
  const mark = (x: number, t: number): string => (x >= t ? `target ≥${t} met` : `below target ≥${t}`);
  const round = (x: number): number => Math.round(x);
  return {
    figures: {
      ours_bulk_MBps: round(ours.bulkMBps),
      haproxy_bulk_MBps: round(ha.bulkMBps),
      ratio_bulk: r.bulk,
      ours_keepalive_rps: round(ours.keepaliveRps),
      haproxy_keepalive_rps: round(ha.keepaliveRps),
      ratio_keepalive: r.keepalive,
      ours_connect_per_s: round(ours.connectPerSec),
      haproxy_connect_per_s: round(ha.connectPerSec),
      ratio_connect: r.connect,
    },
    lines: [
      `userspace proxy vs HAProxy (1 thread), loopback, best of rounds:`,
      `  bulk, one stream:      ${round(ours.bulkMBps)} MB/s vs ${round(ha.bulkMBps)} MB/s   ratio ${r.bulk} (${mark(r.bulk, TARGETS.bulk)})`,
      `  keep-alive exchanges:  ${round(ours.keepaliveRps)} /s vs ${round(ha.keepaliveRps)} /s   ratio ${r.keepalive} (${mark(r.keepalive, TARGETS.keepalive)})`,
      `  new connections:       ${round(ours.connectPerSec)} /s vs ${round(ha.connectPerSec)} /s   ratio ${r.connect} (${mark(r.connect, TARGETS.connect)})`,
    ],
  };
}

async function measure(port: number, seconds: number, _ctx: BenchContext): Promise<Figures> {
  return {
    bulkMBps: await bulk(port, seconds),
    keepaliveRps: await keepalive(port, seconds, 8, 64),
    connectPerSec: await connections(port, seconds, 32),
  };
}

/** One stream from the backend through the proxy; counted with a reused read buffer. */
function bulk(port: number, seconds: number): Promise<number> {
  return new Promise((resolve, reject) => {
    let bytes = 0;
    let start = 0n;
    const c = net.connect({
      port,
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
      setTimeout(() => {
        bytes = 0;
        start = process.hrtime.bigint();
        setTimeout(() => {
          const s = Number(process.hrtime.bigint() - start) / 1e9;
          c.destroy();
          resolve(bytes / 1e6 / s);
        }, seconds * 1000);
      }, 500);
    });
  });
}

/** `conns` connections, each sending `size` bytes and waiting for the echo, over and over. */
function keepalive(port: number, seconds: number, conns: number, size: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = Buffer.alloc(size, 0x71);
    let exchanges = 0;
    let counting = false;
    let stop = false;
    const sockets: net.Socket[] = [];
    for (let i = 0; i < conns; i++) {
      let got = 0;
      const c = net.connect({ port, host: '127.0.0.1', noDelay: true });
      sockets.push(c);
      c.on('error', reject);
      c.on('connect', () => {
        c.write(Buffer.concat([Buffer.from('E'), req]));
      });
      c.on('data', (d: Buffer) => {
        got += d.length;
        if (got < size) return;
        got -= size;
        if (counting) exchanges++;
        if (!stop) c.write(req);
      });
    }
    setTimeout(() => {
      counting = true;
      const start = process.hrtime.bigint();
      setTimeout(() => {
        stop = true;
        const s = Number(process.hrtime.bigint() - start) / 1e9;
        for (const c of sockets) c.destroy();
        resolve(exchanges / s);
      }, seconds * 1000);
    }, 300);
  });
}

/** `concurrency` loops of connect, one 32-byte exchange, close. */
function connections(port: number, seconds: number, concurrency: number): Promise<number> {
  return new Promise((resolve) => {
    const msg = Buffer.alloc(32, 0x45); // starts with 'E': echo mode
    let done = 0;
    let counting = false;
    let stop = false;
    let running = 0;
    let start = 0n;
    let finish = (): void => {};
    const one = (): void => {
      running++;
      let got = 0;
      const c = net.connect({ port, host: '127.0.0.1', noDelay: true });
      c.on('connect', () => c.write(msg));
      c.on('data', (d: Buffer) => {
        got += d.length;
        if (got >= msg.length - 1) {
          if (counting) done++;
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
    setTimeout(() => {
      counting = true;
      start = process.hrtime.bigint();
      setTimeout(() => {
        stop = true;
        const s = Number(process.hrtime.bigint() - start) / 1e9;
        const rate = done / s;
        // A failed exchange is not counted: a proxy that fails connections only loses rate.
        finish = () => resolve(rate);
        if (running === 0) finish();
      }, seconds * 1000);
    }, 300);
  });
}

/** Runs a bench child (compiled JS next to this file, or .ts under tsx); resolves its port. */
function startChild(children: ChildProcess[], name: string, args: string[]): Promise<number> {
  const self = fileURLToPath(import.meta.url);
  const ts = self.endsWith('.ts');
  const file = path.join(path.dirname(self), `${name}${ts ? '.ts' : '.js'}`);
  const child = spawn(process.execPath, [...(ts ? ['--import', 'tsx'] : []), file, ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.push(child);
  return readPort(child, name);
}

function readPort(child: ChildProcess, name: string): Promise<number> {
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const line = out.split('\n')[0];
      if (out.includes('\n') && line) resolve((JSON.parse(line) as { port: number }).port);
    });
    child.on('exit', (code) => reject(new Error(`${name} exited with ${code} before listening`)));
  });
}

async function startHaproxy(children: ChildProcess[], dir: string, backendPort: number): Promise<number> {
  const port = await freePort();
  const cfg = path.join(dir, 'haproxy.cfg');
  await writeFile(
    cfg,
    [
      'global',
      '  nbthread 1',
      '  maxconn 8000',
      'defaults',
      '  mode tcp',
      '  timeout connect 5s',
      '  timeout client 60s',
      '  timeout server 60s',
      'frontend fe',
      `  bind 127.0.0.1:${port}`,
      '  default_backend be',
      'backend be',
      `  server s1 127.0.0.1:${backendPort}`,
      '',
    ].join('\n'),
  );
  const child = spawn(HAPROXY, ['-db', '-f', cfg], { stdio: ['ignore', 'ignore', 'inherit'] });
  children.push(child);
  for (let i = 0; i < 100; i++) {
    if (await canConnect(port)) return port;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('haproxy did not start listening');
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.connect(port, '127.0.0.1');
    c.on('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.on('error', () => resolve(false));
  });
}
