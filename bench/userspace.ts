/**
 * The userspace proxy against HAProxy on loopback, same backend, same load: bulk throughput
 * of one stream, request/response exchanges over a few kept-alive connections, and new
 * connections per second. Load generator (this process), backend and proxy are separate
 * processes; HAProxy runs one thread, as the Node proxy does, with its defaults otherwise: 16 KiB
 * buffers and no splice(2) (`option splice-*` is off unless asked for), so both proxies copy
 * every byte through user space, twice in the kernel.
 *
 * The machine is shared and the rate of either proxy swings by 2-3x between rounds, so the
 * two take turns on each measurement, round after round, first ours then HAProxy and the
 * other way round in the next round (a drift within a pair cancels over two rounds). Each
 * round gives one ratio per measurement; the report is their median and range. The CPU time
 * each proxy process spends per unit of work is the steadier second figure, and where perf
 * can count them, the instructions it retires per unit the steadiest.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { access, mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { median, round, type Bench, type BenchResult } from './harness.js';
import { perfAvailable } from './perf-counter.js';
import { bulk, connections, keepalive, type Sample, type Target } from './userspace-load.js';
import { freePort } from '../scripts/lab/free-port.js';

const HAPROXY = '/usr/sbin/haproxy';
/** Clock ticks a second in /proc/<pid>/stat (USER_HZ; 100 on every Linux architecture we run on). */
const TICKS_PER_SECOND = 100;

type Who = 'ours' | 'haproxy';
interface Proxy {
  port: number;
  pid: number;
}

interface Measurement {
  label: string;
  /** Names the figures: `ours_<key>_<rateUnit>`. */
  key: string;
  rateUnit: string;
  /** The rate's unit in the report lines. */
  shown: string;
  /** CPU is reported per this many units, named by cpuLabel. */
  cpuPer: number;
  cpuLabel: string;
  /** Instructions are reported per one unit, named so. */
  unitName: string;
  target: number;
  run(t: Target, seconds: number): Promise<Sample>;
}

const MEASUREMENTS: Measurement[] = [
  {
    label: 'bulk, one stream',
    key: 'bulk',
    rateUnit: 'MBps',
    shown: 'MB/s',
    cpuPer: 1000,
    cpuLabel: 'GB',
    unitName: 'MB',
    target: 0.9,
    run: (t, s) => bulk(t, s),
  },
  {
    label: 'keep-alive exchanges',
    key: 'keepalive',
    rateUnit: 'rps',
    shown: '/s',
    cpuPer: 100_000,
    cpuLabel: '100k exchanges',
    unitName: 'exchange',
    target: 0.9,
    run: (t, s) => keepalive(t, s, 8, 64),
  },
  {
    label: 'new connections',
    key: 'connect',
    rateUnit: 'per_s',
    shown: '/s',
    cpuPer: 10_000,
    cpuLabel: '10k connections',
    unitName: 'connection',
    target: 0.7,
    run: (t, s) => connections(t, s, 32),
  },
];

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
    const rounds = ctx.quick ? 1 : 9;
    const children: ChildProcess[] = [];
    const dir = await mkdtemp(path.join(os.tmpdir(), 'bench-userspace-'));
    try {
      const backend = await startChild(children, 'userspace-backend-child', []);
      const perf = await perfAvailable();
      if (!perf) ctx.say('  perf cannot count instructions here: CPU time only');
      const proxies: Record<Who, Target> = {
        ours: { ...(await startChild(children, 'userspace-proxy-child', [String(backend.port)])), perf },
        haproxy: { ...(await startHaproxy(children, dir, backend.port)), perf },
      };
      // Not counted: a first pass warms the JIT of ours (and of the load and the backend).
      for (const m of MEASUREMENTS)
        for (const p of Object.values(proxies)) await m.run({ ...p, perf: false }, 0.5);
      // samples[measurement][who][round]
      const samples = MEASUREMENTS.map(() => ({ ours: [] as Sample[], haproxy: [] as Sample[] }));
      for (let r = 0; r < rounds; r++) {
        const order: Who[] = r % 2 === 0 ? ['ours', 'haproxy'] : ['haproxy', 'ours'];
        const parts: string[] = [];
        for (const [i, m] of MEASUREMENTS.entries()) {
          for (const who of order) samples[i]![who].push(await m.run(proxies[who], seconds));
          const o = samples[i]!.ours[r]!;
          const h = samples[i]!.haproxy[r]!;
          parts.push(`${m.key} ${fmt(rate(o))}/${fmt(rate(h))} (${(rate(o) / rate(h)).toFixed(2)})`);
        }
        ctx.say(`  round ${r + 1}, ours/HAProxy: ${parts.join(', ')}`);
      }
      return report(samples, rounds, perf);
    } finally {
      for (const c of children) c.kill('SIGTERM');
      await rm(dir, { recursive: true, force: true });
    }
  },
};

function report(samples: Array<Record<Who, Sample[]>>, rounds: number, perf: boolean): BenchResult {
  const figures: BenchResult['figures'] = { rounds };
  const lines = [
    `userspace proxy vs HAProxy (1 thread, no splice), loopback, ${rounds} rounds taking turns;`,
    `  rates are medians, ratio is the median of the rounds' ratios [lowest-highest]:`,
  ];
  for (const [i, m] of MEASUREMENTS.entries()) {
    const { ours, haproxy } = samples[i]!;
    const ratios = ours.map((o, r) => rate(o) / rate(haproxy[r]!));
    const ratio = round(median(ratios), 2);
    const cpuOurs = median(ours.map((s) => cpuSeconds(s, m.cpuPer)));
    const cpuHa = median(haproxy.map((s) => cpuSeconds(s, m.cpuPer)));
    const k = m.key;
    figures[`ours_${k}_${m.rateUnit}`] = Math.round(median(ours.map(rate)));
    figures[`haproxy_${k}_${m.rateUnit}`] = Math.round(median(haproxy.map(rate)));
    figures[`ratio_${k}`] = ratio;
    figures[`ratio_${k}_min`] = round(Math.min(...ratios), 2);
    figures[`ratio_${k}_max`] = round(Math.max(...ratios), 2);
    figures[`ours_${k}_cpu_s_per_${m.cpuLabel.replace(' ', '_')}`] = round(cpuOurs, 2);
    figures[`haproxy_${k}_cpu_s_per_${m.cpuLabel.replace(' ', '_')}`] = round(cpuHa, 2);
    const mark = ratio >= m.target ? `target ≥${m.target} met` : `below target ≥${m.target}`;
    lines.push(
      `  ${`${m.label}:`.padEnd(22)} ${fmt(median(ours.map(rate)))} vs ${fmt(median(haproxy.map(rate)))} ` +
        `${m.shown}   ratio ${ratio} [${round(Math.min(...ratios), 2)}-${round(Math.max(...ratios), 2)}] (${mark})`,
      `  ${''.padEnd(22)} CPU per ${m.cpuLabel}: ours ${cpuOurs.toFixed(2)} s, HAProxy ${cpuHa.toFixed(2)} s` +
        ` (ours/HAProxy ${(cpuOurs / cpuHa).toFixed(2)})`,
    );
    if (!perf) continue;
    const insn = (xs: Sample[], part: (s: Sample) => number): number =>
      median(xs.map((s) => part(s) / s.units));
    const user = (s: Sample): number => s.instructions?.user ?? NaN;
    const total = (s: Sample): number => (s.instructions ? s.instructions.user + s.instructions.kernel : NaN);
    const [oUser, oTotal, hUser, hTotal] = [
      insn(ours, user),
      insn(ours, total),
      insn(haproxy, user),
      insn(haproxy, total),
    ];
    figures[`ours_${k}_insn_per_${m.unitName}`] = Math.round(oTotal);
    figures[`ours_${k}_user_insn_per_${m.unitName}`] = Math.round(oUser);
    figures[`haproxy_${k}_insn_per_${m.unitName}`] = Math.round(hTotal);
    figures[`haproxy_${k}_user_insn_per_${m.unitName}`] = Math.round(hUser);
    lines.push(
      `  ${''.padEnd(22)} instructions per ${m.unitName}: ours ${kilo(oTotal)} (${kilo(oUser)} in user space), ` +
        `HAProxy ${kilo(hTotal)} (${kilo(hUser)}) (ours/HAProxy ${(oTotal / hTotal).toFixed(2)})`,
    );
  }
  return { figures, lines };
}

function rate(s: Sample): number {
  return s.units / s.seconds;
}

/** CPU seconds the proxy spent per `per` units; NaN when no unit was done. */
function cpuSeconds(s: Sample, per: number): number {
  return s.units > 0 ? (s.cpuTicks / TICKS_PER_SECOND / s.units) * per : NaN;
}

function kilo(x: number): string {
  return `${(x / 1000).toFixed(1)}k`;
}

function fmt(x: number): string {
  return x.toFixed(0);
}

/** Runs a bench child (compiled JS next to this file, or .ts under tsx) in this process's node. */
async function startChild(children: ChildProcess[], name: string, args: string[]): Promise<Proxy> {
  const self = fileURLToPath(import.meta.url);
  const ts = self.endsWith('.ts');
  const file = path.join(path.dirname(self), `${name}${ts ? '.ts' : '.js'}`);
  const child = spawn(process.execPath, [...(ts ? ['--import', 'tsx'] : []), file, ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.push(child);
  return { port: await readPort(child, name), pid: child.pid! };
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

/** HAProxy in the foreground (-db): one process, whose pid is the one that does the work. */
async function startHaproxy(children: ChildProcess[], dir: string, backendPort: number): Promise<Proxy> {
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
    if (await canConnect(port)) return { port, pid: child.pid! };
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('haproxy did not start listening');
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
