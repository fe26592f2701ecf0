/**
 * conntrack-cleanup: what deleting the stale UDP entries of one change costs when the table
 * holds 100,000 unrelated UDP entries (made with `conntrack -I` in a throwaway namespace
 * `knp-bench-<pid>-ct`, deleted at the end, on failure and on Ctrl-C), against the same
 * cleanup with only the Service's own entries in the table (same run). It also measures the
 * ways not taken: a filtered listing per frontend, and one `-D` per stale entry by its full
 * tuple; and how long the event loop stalls while a cleanup runs (the next sync must not
 * wait for it).
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { createConntrack, type Conntrack, type ConntrackExec } from '../src/conntrack/exec.js';
import { StaleFlows, targetPorts, udpTargets } from '../src/conntrack/stale-flows.js';
import { buildState } from '../src/model/build-state.js';
import type { ProxyState } from '../src/model/types.js';
import { processAlive } from '../src/util/process-alive.js';
import {
  median,
  ms,
  round,
  type Bench,
  type BenchContext,
  type BenchResult,
  missingRootOrTools,
  IP,
  CONNTRACK,
} from './harness.js';

const VIP = '10.96.0.10';
const NODE_IP = '192.168.0.10';
const NODE_PORT = 30053;
const GONE = '10.244.1.5';
const SERVING = '10.244.1.6';
/** Stale flows per frontend (ClusterIP, NodePort), and live ones on the serving endpoint. */
const STALE_PER_FRONTEND = 50;
const LIVE = 50;
const RUNS = 3;
const TIME = '/usr/bin/time';

/**
 * A ConntrackExec inside `ns` that also adds up the CPU seconds (user + system) of every
 * conntrack it runs, from /usr/bin/time: on a shared machine wall times swing with the load,
 * CPU time much less.
 */
class TimedConntrack {
  cpuS = 0;
  readonly #dir = mkdtempSync(join(tmpdir(), 'knp-bench-ct-time-'));
  readonly #useTime = existsSync(TIME);
  constructor(readonly ns: string) {}

  readonly exec: ConntrackExec = (args, { onLine } = {}) =>
    new Promise((resolve, reject) => {
      const stats = join(this.#dir, 'time');
      rmSync(stats, { force: true });
      const wrap = this.#useTime ? [TIME, '-f', '%U %S', '-o', stats] : [];
      const child = spawn('ip', ['netns', 'exec', this.ns, ...wrap, 'conntrack', ...args], {
        env: { ...process.env, LC_ALL: 'C' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      let rest = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => {
        if (!onLine) return void (stdout += d);
        const lines = (rest + d).split('\n');
        rest = lines.pop()!;
        for (const line of lines) onLine(line);
      });
      child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
      child.on('error', reject);
      child.on('close', (code) => {
        if (onLine && rest !== '') onLine(rest);
        if (this.#useTime && existsSync(stats)) {
          const [u, sys] = readFileSync(stats, 'utf8').trim().split('\n').pop()!.split(' ').map(Number);
          this.cpuS += (u ?? 0) + (sys ?? 0);
        }
        resolve({ stdout, stderr, code: code ?? -1 });
      });
    });

  cleanup(): void {
    rmSync(this.#dir, { recursive: true, force: true });
  }
}

function run(program: string, args: string[]): { code: number; out: string } {
  const r = spawnSync(program, args, { encoding: 'utf8', timeout: 120_000 });
  return { code: r.error ? -1 : (r.status ?? -1), out: `${r.stdout ?? ''}${r.stderr ?? ''}` };
}

/** The Service after one change: its UDP port on a ClusterIP and a NodePort, served by SERVING alone. */
function changedState(): ProxyState {
  return buildState(
    {
      services: [
        {
          apiVersion: 'v1',
          kind: 'Service',
          metadata: { namespace: 'kube-system', name: 'dns' },
          spec: {
            type: 'NodePort',
            clusterIP: VIP,
            ports: [{ name: 'dns', port: 53, protocol: 'UDP', targetPort: 53, nodePort: NODE_PORT }],
          },
        },
      ],
      slices: [
        {
          apiVersion: 'discovery.k8s.io/v1',
          kind: 'EndpointSlice',
          metadata: {
            namespace: 'kube-system',
            name: 'dns-1',
            labels: { 'kubernetes.io/service-name': 'dns' },
          },
          addressType: 'IPv4',
          ports: [{ name: 'dns', port: 53, protocol: 'UDP' }],
          endpoints: [{ addresses: [SERVING], conditions: { ready: true } }],
        },
      ],
    },
    { nodeName: 'bench', nodeIPs: [NODE_IP], lbAlgorithm: 'random' },
  );
}

/** `conntrack -I` lines: the Service's stale and live flows (DNATed, as the kernel would keep them). */
function serviceFlows(): string[] {
  const out: string[] = [];
  const flow = (src: string, dst: string, dport: number, ep: string, replyDport: number): string =>
    `-I -p udp -s ${src} -d ${dst} --sport 5000 --dport ${dport} --reply-src ${ep} ` +
    `--reply-dst ${src} --reply-port-src 53 --reply-port-dst ${replyDport} -t 3600`;
  for (let i = 0; i < STALE_PER_FRONTEND; i++) {
    out.push(flow(`10.20.0.${i + 1}`, VIP, 53, GONE, 5000));
    // NodePort flows are masqueraded: the reply goes back to the node, one port per flow.
    out.push(
      flow(`10.21.0.${i + 1}`, NODE_IP, NODE_PORT, GONE, 61_000 + i).replace(
        `--reply-dst 10.21.0.${i + 1}`,
        `--reply-dst ${NODE_IP}`,
      ),
    );
  }
  for (let i = 0; i < LIVE; i++) out.push(flow(`10.22.0.${i + 1}`, VIP, 53, SERVING, 5000));
  return out;
}

/** `n` UDP entries that no Service knows. */
function unrelatedFlows(n: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const a = `10.${100 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`;
    const b = `192.168.${(i >> 8) & 255}.${i & 255}`;
    out.push(`-I -p udp -s ${a} -d ${b} --sport ${1024 + (i % 60_000)} --dport ${1 + (i % 5000)} -t 3600`);
  }
  return out;
}

class Namespace {
  readonly #dir = mkdtempSync(join(tmpdir(), 'knp-bench-ct-'));
  constructor(readonly name: string) {}

  static sweepStale(): void {
    for (const line of run('ip', ['netns', 'list']).out.split('\n')) {
      const m = /^knp-bench-(\d+)-ct\b/.exec(line);
      if (!m || Number(m[1]) === process.pid || processAlive(Number(m[1]))) continue;
      run('ip', ['netns', 'del', line.split(' ')[0]!]);
    }
  }

  create(): void {
    const r = run('ip', ['netns', 'add', this.name]);
    if (r.code !== 0) throw new Error(`ip netns add ${this.name} failed: ${r.out}`);
  }

  /** Loads `conntrack -I` lines, 10,000 per batch (a batch stops at its first refused line). */
  insert(lines: string[]): void {
    for (let i = 0; i < lines.length; i += 10_000) {
      const file = join(this.#dir, 'batch');
      writeFileSync(file, `${lines.slice(i, i + 10_000).join('\n')}\n`);
      const r = run('ip', ['netns', 'exec', this.name, 'conntrack', '-R', file]);
      if (r.code !== 0) throw new Error(`conntrack -R in ${this.name} failed: ${r.out}`);
    }
  }

  count(): number {
    const r = run('ip', ['netns', 'exec', this.name, 'conntrack', '-C']);
    return Number(r.out.trim());
  }

  flush(): void {
    run('ip', ['netns', 'exec', this.name, 'conntrack', '-F']);
  }

  del(): void {
    rmSync(this.#dir, { recursive: true, force: true });
    if (
      run('ip', ['netns', 'list'])
        .out.split('\n')
        .some((l) => l.split(' ')[0] === this.name)
    )
      run('ip', ['netns', 'del', this.name]);
  }
}

interface Cleanup {
  /** CPU seconds of the conntrack processes, and of this process (parsing, deciding). */
  conntrackCpuMs: number;
  nodeCpuMs: number;
  listMs: number;
  deleteMs: number;
  totalMs: number;
  deleted: number;
  filters: number;
  /** The longest the event loop waited during the cleanup. */
  maxStallMs: number;
}

/** One cleanup as the reconciler runs it: list the family, decide, delete in one batch. */
async function cleanup(ct: Conntrack, timer: TimedConntrack, state: ProxyState): Promise<Cleanup> {
  const stall = monitorEventLoopDelay({ resolution: 5 });
  stall.enable();
  const cpuBefore = timer.cpuS;
  const nodeBefore = process.cpuUsage();
  const start = process.hrtime.bigint();
  const stale = new StaleFlows(udpTargets(state, 'ipv4'));
  await ct.listUdp('ipv4', (flow) => stale.add(flow), targetPorts(stale.targets));
  const listMs = ms(start);
  const filters = stale.filters;
  const del = process.hrtime.bigint();
  const deleted = await ct.deleteUdp('ipv4', filters);
  const deleteMs = ms(del);
  const totalMs = ms(start);
  stall.disable();
  const node = process.cpuUsage(nodeBefore);
  return {
    conntrackCpuMs: (timer.cpuS - cpuBefore) * 1000,
    nodeCpuMs: (node.user + node.system) / 1000,
    listMs,
    deleteMs,
    totalMs,
    deleted,
    filters: filters.length,
    maxStallMs: stall.max / 1e6,
  };
}

/** Median of RUNS cleanups, the Service's flows put back before each. */
async function measure(
  ctx: BenchContext,
  ns: Namespace,
  timer: TimedConntrack,
  state: ProxyState,
  label: string,
) {
  const ct = createConntrack({ exec: timer.exec });
  const runs: Cleanup[] = [];
  for (let i = 0; i < RUNS; i++) {
    run('ip', ['netns', 'exec', ns.name, 'conntrack', '-D', '-p', 'udp', '--reply-src', GONE]);
    run('ip', ['netns', 'exec', ns.name, 'conntrack', '-D', '-p', 'udp', '--reply-src', SERVING]);
    ns.insert(serviceFlows());
    const c = await cleanup(ct, timer, state);
    if (c.deleted !== 2 * STALE_PER_FRONTEND)
      throw new Error(`${label}: deleted ${c.deleted} entries, expected ${2 * STALE_PER_FRONTEND}`);
    ctx.say(
      `  ${label} run ${i + 1}: ${round(c.totalMs)} ms, conntrack CPU ${round(c.conntrackCpuMs)} ms, node CPU ${round(c.nodeCpuMs)} ms (${c.deleted} deleted)`,
    );
    runs.push(c);
  }
  const m = (pick: (c: Cleanup) => number): number => round(median(runs.map(pick)), 1);
  return {
    listMs: m((c) => c.listMs),
    deleteMs: m((c) => c.deleteMs),
    totalMs: m((c) => c.totalMs),
    conntrackCpuMs: m((c) => c.conntrackCpuMs),
    nodeCpuMs: m((c) => c.nodeCpuMs),
    maxStallMs: round(Math.max(...runs.map((c) => c.maxStallMs)), 1),
    filters: runs[0]!.filters,
  };
}

/** Wall and conntrack CPU milliseconds of one `conntrack args` in the namespace. */
async function timedOnce(timer: TimedConntrack, args: string[]): Promise<{ wall: number; cpu: number }> {
  const before = timer.cpuS;
  const start = process.hrtime.bigint();
  await timer.exec(args, { onLine: () => undefined });
  return { wall: ms(start), cpu: (timer.cpuS - before) * 1000 };
}

/** The median wall and conntrack CPU milliseconds of `conntrack args` in the namespace. */
async function timed(timer: TimedConntrack, args: string[]): Promise<{ wall: number; cpu: number }> {
  const wall: number[] = [];
  const cpu: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const before = timer.cpuS;
    const start = process.hrtime.bigint();
    await timer.exec(args, { onLine: () => undefined });
    wall.push(ms(start));
    cpu.push((timer.cpuS - before) * 1000);
  }
  return { wall: round(median(wall), 1), cpu: round(median(cpu), 1) };
}

export const bench: Bench = {
  name: 'conntrack-cleanup',

  async unavailable() {
    return missingRootOrTools('network namespaces and the conntrack table need CAP_NET_ADMIN', [
      CONNTRACK,
      IP,
    ]);
  },

  async run(ctx): Promise<BenchResult> {
    const figures: BenchResult['figures'] = {};
    const lines: string[] = [];
    const unrelated = ctx.quick ? 10_000 : 100_000;
    const ns = new Namespace(`knp-bench-${process.pid}-ct`);
    const onSignal = (signal: NodeJS.Signals): void => {
      ns.del();
      process.exit(signal === 'SIGINT' ? 130 : 143);
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    Namespace.sweepStale();
    ns.create();
    const timer = new TimedConntrack(ns.name);
    try {
      const state = changedState();
      figures.conntrack_version = run('conntrack', ['--version']).out.trim();

      ctx.say(`reference: only the Service's ${2 * STALE_PER_FRONTEND + LIVE} entries`);
      const small = await measure(ctx, ns, timer, state, 'reference');

      ctx.say(`loading ${unrelated} unrelated UDP entries`);
      const loadStart = process.hrtime.bigint();
      ns.insert(unrelatedFlows(unrelated));
      const loadMs = ms(loadStart);
      const big = await measure(ctx, ns, timer, state, `${unrelated} unrelated`);
      const entries = ns.count();

      // The ways not taken, on the same table.
      ctx.say('the ways not taken');
      const listing = ['-L', '-p', 'udp', '-f', 'ipv4'];
      const raw = await timed(timer, listing);
      const perFrontend = await timed(timer, [...listing, '--orig-dst', VIP, '--dport', '53']);
      const perNodePort = await timed(timer, [...listing, '--dport', String(NODE_PORT)]);
      // One -D by the full tuple of an entry that exists (put back each time).
      const tuple = ['-D', '-p', 'udp', '-s', '10.30.0.1', '-d', VIP, '--sport', '7000', '--dport', '53'];
      const tupleWall: number[] = [];
      const tupleCpu: number[] = [];
      for (let i = 0; i < RUNS; i++) {
        ns.insert([`-I -p udp -s 10.30.0.1 -d ${VIP} --sport 7000 --dport 53 -t 3600`]);
        const one = await timedOnce(timer, tuple);
        tupleWall.push(one.wall);
        tupleCpu.push(one.cpu);
      }
      const tupleDelete = { wall: round(median(tupleWall), 1), cpu: round(median(tupleCpu), 1) };
      const staleEntries = 2 * STALE_PER_FRONTEND;

      const f = (name: string, value: number | string): void => {
        figures[name] = value;
      };
      const at = `@${unrelated}`;
      f('table_entries', entries);
      f('load_unrelated_ms', round(loadMs));
      f('reference_cleanup_ms', small.totalMs);
      f('reference_cleanup_conntrack_cpu_ms', small.conntrackCpuMs);
      f(`cleanup_ms${at}`, big.totalMs);
      f(`cleanup_conntrack_cpu_ms${at}`, big.conntrackCpuMs);
      f(`cleanup_node_cpu_ms${at}`, big.nodeCpuMs);
      f(`cleanup_list_and_decide_ms${at}`, big.listMs);
      f(`cleanup_delete_ms${at}`, big.deleteMs);
      f(`cleanup_delete_filters${at}`, big.filters);
      f(`cleanup_max_event_loop_stall_ms${at}`, big.maxStallMs);
      f(
        `ratio_cleanup_cpu_vs_reference${at}`,
        round((big.conntrackCpuMs + big.nodeCpuMs) / Math.max(1, small.conntrackCpuMs + small.nodeCpuMs), 1),
      );
      f(`raw_listing_ms${at}`, raw.wall);
      f(`raw_listing_cpu_ms${at}`, raw.cpu);
      f(`per_frontend_listing_ms${at}`, perFrontend.wall);
      f(`per_frontend_listing_cpu_ms${at}`, perFrontend.cpu);
      f(`per_nodeport_listing_ms${at}`, perNodePort.wall);
      f(`per_nodeport_listing_cpu_ms${at}`, perNodePort.cpu);
      f(`delete_one_full_tuple_ms${at}`, tupleDelete.wall);
      f(`delete_one_full_tuple_cpu_ms${at}`, tupleDelete.cpu);

      const cpu = (c: { conntrackCpuMs: number; nodeCpuMs: number }): string =>
        `CPU ${c.conntrackCpuMs} ms conntrack + ${c.nodeCpuMs} ms node`;
      lines.push(
        `conntrack-cleanup: ${figures.conntrack_version}; one change (1 of 2 endpoints gone) on a UDP Service with a ClusterIP and a NodePort; ${staleEntries} stale + ${LIVE} live entries; median of ${RUNS}; wall times swing with the machine's load, CPU times less`,
        `  reference (the table holds only those ${staleEntries + LIVE}): cleanup ${small.totalMs} ms wall (list+decide ${small.listMs}, delete ${small.deleteMs}), ${cpu(small)}`,
        `  with ${unrelated} unrelated UDP entries (${entries} in the table, loaded in ${round(loadMs / 1000, 1)} s): cleanup ${big.totalMs} ms wall = list+decide ${big.listMs} + delete ${big.deleteMs} (${big.filters} filtered -D in one -R batch, ${staleEntries} deleted), ${cpu(big)}; ${figures[`ratio_cleanup_cpu_vs_reference${at}`]}× the reference's CPU`,
        `  event loop: longest stall during a cleanup ${big.maxStallMs} ms (the listing is read line by line, in the background: the daemon's syncs go on meanwhile)`,
        `  not taken: a filtered listing per frontend ${perFrontend.wall} ms wall / ${perFrontend.cpu} ms CPU (ClusterIP), ${perNodePort.wall} / ${perNodePort.cpu} (NodePort), against ${raw.wall} / ${raw.cpu} for the whole listing: every listing walks the whole table, so one per family serves every frontend`,
        `  not taken: one -D by full tuple ${tupleDelete.wall} ms wall / ${tupleDelete.cpu} ms CPU, also a whole-table walk: one per stale entry would cost ${round((tupleDelete.wall * staleEntries) / 1000, 1)} s for these ${staleEntries}, against ${big.deleteMs} ms for ${big.filters} filters`,
      );
      return { figures, lines };
    } finally {
      ns.del();
      timer.cleanup();
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
  },
};
