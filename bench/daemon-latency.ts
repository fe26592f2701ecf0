/**
 * daemon-latency: the whole Daemon (client-node informers → store → runner → model → compile →
 * diff → nft) against a TestApiServer holding 10,000 Services × 10 endpoints (in a process of
 * its own: bench/api-server-child.ts), with the real nft
 * in a throwaway network namespace (`knp-<pid>-latency`, deleted at the end, on failure and on
 * Ctrl-C; a stale one is swept by the lab's Lab.sweep()).
 *
 * Measured: the initial full sync (start → first commit), then for ~10 single-EndpointSlice
 * changes the time from the write at the server to the nft commit of that change (the daemon
 * runs with --min-sync-period 0 and a 1 h --sync-period, so neither the rate limit nor a
 * periodic sync is in the figure), split into watch delivery, the sync's CPU before nft
 * (state + compile + diff + render, incremental as in the daemon) and nft itself (the
 * daemon's long-lived nft session); the partial transaction's size. Then the binary itself runs
 * as a child process against the same API server (bench/daemon-process.ts) and takes the same
 * kind of changes, for its RSS alone: in this process the bench's memory would be in it.
 */
import { spawnSync } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { buildConfig } from '../src/config.js';
import { Daemon } from '../src/daemon.js';
import { traceTableName } from '../src/trace/trace-table.js';
import { silentLogger } from '../src/log.js';
import type { Environment } from '../src/pipeline.js';
import { createNft, SESSION_MAX_OPERATIONS, type Nft } from '../src/rules/nft/exec.js';
import type { Transaction } from '../src/rules/nft/transaction.js';
import { createKubeSource } from '../src/watch/kube-source.js';
import type { Source, SourceHandler } from '../src/watch/source.js';
import { run } from '../scripts/lab/exec.js';
import type { StoredObject } from '../test/support/api-server.js';
import { RemoteApiServer, type ApiWriter } from './remote-api-server.js';
import { waitFor } from '../test/support/wait-for.js';
import { DaemonProcess } from './daemon-process.js';
import { TimedExec, type NftStats, type ProcessCost } from './nft-load.js';
import { median, round, type Bench, type BenchContext, type BenchResult } from './harness.js';

const ENDPOINTS = 10;
const TARGET = { changeMs: 50, rssMb: 200 } as const;
const NODE = 'bench-node';
const NODE_IP = '172.30.0.1';
const SERVICE_CIDR = '10.96.0.0/16';
const CLUSTER_CIDR = '100.64.0.0/10';

/** Live heap after a full GC (`node --expose-gc`), else the heap as it stands (garbage included). */
const heapMb = (): number => {
  global.gc?.();
  return round(process.memoryUsage().heapUsed / 2 ** 20);
};
const ip4 = (base: number, n: number): string =>
  `${base >>> 24}.${((base >>> 16) + (n >>> 16)) & 255}.${(n >>> 8) & 255}.${n & 255}`;
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Service i's ClusterIP: 10.96.0.0/16 from .1 on. */
const clusterIp = (i: number): string => `10.96.${((i + 1) >>> 8) & 255}.${(i + 1) & 255}`;
/** Endpoint n (of all Services): 100.64.0.0/10, n counted from 0. */
const endpointIp = (n: number): string => ip4(0x64400000, n + 1);

function service(i: number): StoredObject {
  return {
    metadata: { namespace: 'bench', name: `svc-${i}` },
    spec: {
      type: 'ClusterIP',
      clusterIP: clusterIp(i),
      ports: [{ name: 'http', port: 80, targetPort: 8080 }],
    },
  };
}

function slice(i: number, ips: string[]): StoredObject {
  return {
    metadata: {
      namespace: 'bench',
      name: `svc-${i}-a`,
      labels: { 'kubernetes.io/service-name': `svc-${i}` },
    },
    addressType: 'IPv4',
    ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
    endpoints: ips.map((ip, j) => ({
      addresses: [ip],
      conditions: { ready: true },
      nodeName: j === 0 ? NODE : `node-${j}`,
    })),
  };
}

/** One nft run as the daemon made it. */
interface NftRun {
  start: number;
  end: number;
  operations: number;
  /** The transaction text, kept only for small (partial) transactions. */
  text: string | undefined;
  /** What the nft process cost, for the large transactions (run by `nft -f` under /usr/bin/time). */
  stats?: NftStats;
}

/**
 * The daemon's nft, timing each transaction. Transactions past the session's size go through
 * `timed` (the same `nft -f -` the daemon runs them with, under /usr/bin/time) for what the nft
 * process cost; small ones through `inner`, the daemon's session.
 */
function timedNft(inner: Nft, timed: { nft: Nft; exec: TimedExec }, runs: NftRun[]): Nft {
  return {
    ...inner,
    async run(tx: Transaction): Promise<void> {
      const large = tx.size > SESSION_MAX_OPERATIONS;
      const start = performance.now();
      await (large ? timed.nft : inner).run(tx);
      const end = performance.now();
      runs.push({
        start,
        end,
        operations: tx.size,
        text: tx.size < 10_000 ? tx.toString() : undefined,
        ...(large && timed.exec.last ? { stats: timed.exec.last } : {}),
      });
    },
  };
}

/** The kube source, noting when each EndpointSlice reaches the daemon's store. */
class TimedSource implements Source {
  readonly delivered = new Map<string, number>();
  constructor(readonly inner: Source) {}
  start(handler: SourceHandler): Promise<void> {
    return this.inner.start({
      upsert: (kind, obj) => {
        if (kind === 'EndpointSlice') this.delivered.set(obj.metadata?.name ?? '', performance.now());
        handler.upsert(kind, obj);
      },
      remove: (kind, ns, name) => handler.remove(kind, ns, name),
      synced: () => handler.synced(),
      problem: (what, err) => handler.problem?.(what, err),
    });
  }
  stop(): Promise<void> {
    return this.inner.stop();
  }
}

/** What the daemon benches load into the API server and change, one EndpointSlice at a time. */
export interface DaemonWorkload {
  services: number;
  nodeName: string;
  nodeIP: string;
  serviceCIDR: string;
  clusterCIDR: string;
  /** Stores every Service and EndpointSlice (the Node is stored by measureDaemon). */
  fill(server: ApiWriter): void;
  /**
   * Change c (c counts from 0; the in-process daemon takes 0..changes-1, the child process the
   * next ones): an EndpointSlice update, its name, and an IP only that change's transaction has.
   */
  change(c: number): { name: string; fresh: string; object: StoredObject };
}

export interface DaemonFigures {
  services: number;
  changes: number;
  quietS: number;
  initial: {
    totalMs: number;
    beforeNftMs: number;
    nftMs: number;
    operations: number;
    nft?: NftStats;
    /** This process (the in-process daemon, idle while nft runs) from the start to the commit. */
    process: ProcessCost;
  };
  /** Medians over the changes (ops too), and the slowest change. */
  change: { total: number; max: number; delivery: number; cpu: number; nft: number; ops: number };
  rss: { afterFull: number; afterChanges: number; afterQuiet: number; peak: number };
  /**
   * /metrics scrapes after the quiet while, until one carries the per-Service counters read
   * from the kernel (`scrapes` of them; the first answers without them when the read takes
   * longer than the daemon waits): the first one's time, the one with counters' size, and the
   * RSS once it is in.
   */
  scrape: {
    bytes: number;
    ms: number;
    scrapes: number;
    counters: boolean;
    rssAfter: number;
    peakAfter: number;
  };
  /** The binary's CPU seconds up to its first sync: its own, and its nft runs'. */
  cpu: { ownS: number; nftS: number };
  /**
   * The binary alone in its process, spawn → its first sync committed (/healthz lastUpdated),
   * with node's start-up and module loading in it: a restart, as the in-process daemon's rules
   * are still in the kernel and its first transaction replaces them.
   */
  binaryInitialMs: number;
  heap: { serverOnly: number; afterChanges: number };
}

/** Scrapes made at most for one that carries the counters (2 s apart). */
const SCRAPES_FOR_COUNTERS = 15;

/** What the scrapes after the quiet while found, for the report. */
export function scrapeText(s: DaemonFigures['scrape']): string {
  const size = `${round(s.bytes / 1e6, 2)} MB`;
  if (!s.counters) return `${s.scrapes} /metrics scrapes, none with the per-Service counters (${size})`;
  if (s.scrapes === 1)
    return `one /metrics scrape (${size}, ${s.ms} ms, the per-Service counters read from the kernel)`;
  return `/metrics scrapes until one had the per-Service counters: the first answered without them in ${s.ms} ms (the kernel read outlasts the daemon's wait), scrape ${s.scrapes} had them (${size})`;
}

/**
 * The in-process daemon against the workload (initial full sync, then `changes` changes, each
 * timed from the write at the server to its nft commit), then the binary as a child process
 * (its RSS after the full sync, after as many changes, and `quietS` seconds later).
 */
export async function measureDaemon(
  ctx: BenchContext,
  w: DaemonWorkload,
  opts: { changes: number; quietS: number },
): Promise<DaemonFigures> {
  const { services } = w;
  const { changes, quietS } = opts;
  const ns = `knp-${process.pid}-latency`;
  const log = silentLogger();

  await run(['ip', 'netns', 'add', ns]);
  // Ctrl-C: the namespace (and every rule in it) goes, then the process ends as it would have.
  const cleanup = (): void => {
    spawnSync('ip', ['netns', 'del', ns]);
    process.exit(130);
  };
  process.once('SIGINT', cleanup);
  // In a process of its own, as a real one is elsewhere (bench/api-server-child.ts).
  const server = await RemoteApiServer.start();
  let daemon: Daemon | undefined;
  let child: DaemonProcess | undefined;
  const timed = new TimedExec(ns);
  try {
    server.create('Node', {
      metadata: { name: w.nodeName },
      status: { addresses: [{ type: 'InternalIP', address: w.nodeIP }] },
    });
    w.fill(server);
    await server.flush();
    const heapServerOnly = heapMb();
    ctx.say(`daemon: ${services} Services × ${ENDPOINTS} endpoints in the API server`);

    const runs: NftRun[] = [];
    const nft = timedNft(
      createNft({ netns: ns, session: true }),
      { nft: createNft({ exec: timed.exec }), exec: timed },
      runs,
    );
    const source = new TimedSource(
      createKubeSource({ kubeConfig: server.kubeConfig(), nodeName: w.nodeName, log, watchdogMs: 0 }),
    );
    const env: Environment = { localAddresses: [w.nodeIP] };
    const flags = [
      '--hostname-override',
      w.nodeName,
      '--cluster-cidr',
      w.clusterCIDR,
      '--service-cidr',
      w.serviceCIDR,
      '--min-sync-period',
      '0s',
      '--sync-period',
      '1h',
    ];
    const config = buildConfig(
      [...flags, '--healthz-bind-address', '127.0.0.1:0', '--metrics-bind-address', '127.0.0.1:0'],
      {},
    );
    const started = performance.now();
    const usage = process.resourceUsage();
    daemon = new Daemon(config, { log, env, nft, source });
    await daemon.start();
    const d = daemon;
    await waitFor(() => d.syncs > 0, { what: 'the first sync', timeoutMs: 600_000, intervalMs: 2 });
    // The first sync's transaction: before it the daemon may have removed a live trace's
    // leftover table (kube-nftproxy-trace), a transaction of its own.
    const first = runs.find((r) => !r.text?.includes(traceTableName(config.tableName)))!;
    const used = process.resourceUsage();
    const initial = {
      totalMs: round(first.end - started),
      /** start → the nft call: list over the API + state + compile + render. */
      beforeNftMs: round(first.start - started),
      nftMs: round(first.end - first.start),
      operations: first.operations,
      ...(first.stats ? { nft: first.stats } : {}),
      process: {
        userS: round((used.userCPUTime - usage.userCPUTime) / 1e6, 2),
        sysS: round((used.systemCPUTime - usage.systemCPUTime) / 1e6, 2),
        faults: used.minorPageFault - usage.minorPageFault,
      },
    };
    ctx.say(`daemon: initial full sync ${initial.totalMs} ms (nft ${initial.nftMs} ms)`);

    const samples: Array<{ total: number; delivery: number; cpu: number; nft: number; ops: number }> = [];
    for (let c = 0; c < changes; c++) {
      await sleep(300);
      const { name, fresh, object } = w.change(c);
      const runsBefore = runs.length;
      const t0 = performance.now();
      await server.update('EndpointSlice', object);
      let done: NftRun | undefined;
      await waitFor(
        () => (done = runs.slice(runsBefore).find((r) => r.text?.includes(fresh))) !== undefined,
        { what: `the change of ${name} to be committed`, timeoutMs: 60_000, intervalMs: 2 },
      );
      const delivered = source.delivered.get(name) ?? t0;
      samples.push({
        total: done!.end - t0,
        delivery: delivered - t0,
        cpu: done!.start - delivered,
        nft: done!.end - done!.start,
        ops: done!.operations,
      });
    }
    const heapAfterChanges = heapMb();
    await daemon.stop();
    daemon = undefined;

    // The binary itself, alone in its process: the same list, then the same kind of changes.
    ctx.say('daemon: the kube-nftproxy binary as a child process, for its memory');
    child = await DaemonProcess.start({ kubeConfig: server.kubeConfig(), netns: ns, flags });
    let syncs = await child.waitForSyncs(0, 600_000);
    const afterFull = child.memory();
    const cpu = child.cpu();
    const binaryInitialMs = child.firstSyncAt! - child.spawnedAt;
    for (let c = changes; c < 2 * changes; c++) {
      await sleep(300);
      await server.update('EndpointSlice', w.change(c).object);
      syncs = await child.waitForSyncs(syncs, 60_000);
    }
    const afterChanges = child.memory();
    // V8 hands the heap it no longer needs back only once the process has gone quiet (its
    // memory reducer, typically 10-30 s later): what an operator sees on a steady cluster is
    // the RSS after a quiet while, so that is the figure held to the target.
    await sleep(quietS * 1000);
    const afterQuiet = child.memory();
    // Then scrapes, as Prometheus would make them: what reading the counters costs in memory.
    // From about 10,000 Services the read can outlast the daemon's wait, and the first scrape
    // answers without counters while the read goes on: scraped again until one has them.
    const t0 = performance.now();
    let scraped = await child.scrape();
    const scrapeMs = performance.now() - t0;
    let scrapes = 1;
    for (; !scraped.counters && scrapes < SCRAPES_FOR_COUNTERS; scrapes++) {
      await sleep(2000);
      scraped = await child.scrape();
    }
    await sleep(1000);
    const afterScrape = child.memory();
    const med = (f: (s: (typeof samples)[number]) => number): number => median(samples.map(f));
    return {
      services,
      changes: samples.length,
      quietS,
      initial,
      change: {
        total: med((s) => s.total),
        max: Math.max(...samples.map((s) => s.total)),
        delivery: med((s) => s.delivery),
        cpu: med((s) => s.cpu),
        nft: med((s) => s.nft),
        ops: med((s) => s.ops),
      },
      rss: {
        afterFull: afterFull.rssMb,
        afterChanges: afterChanges.rssMb,
        afterQuiet: afterQuiet.rssMb,
        peak: afterQuiet.peakMb,
      },
      scrape: {
        bytes: scraped.bytes,
        ms: round(scrapeMs),
        scrapes,
        counters: scraped.counters,
        rssAfter: afterScrape.rssMb,
        peakAfter: afterScrape.peakMb,
      },
      heap: { serverOnly: heapServerOnly, afterChanges: heapAfterChanges },
      cpu: { ownS: cpu.ownS, nftS: cpu.childrenS },
      binaryInitialMs,
    };
  } finally {
    await daemon?.stop();
    await child?.stop();
    await server.close();
    timed.cleanup();
    process.removeListener('SIGINT', cleanup);
    await run(['ip', 'netns', 'del', ns], { allowFail: true });
  }
}

/** This bench's own workload: `services` ClusterIP Services in one namespace. */
function clusterIpWorkload(services: number): DaemonWorkload {
  return {
    services,
    nodeName: NODE,
    nodeIP: NODE_IP,
    serviceCIDR: SERVICE_CIDR,
    clusterCIDR: CLUSTER_CIDR,
    fill(server) {
      for (let i = 0; i < services; i++) {
        server.create('Service', service(i));
        server.create(
          'EndpointSlice',
          slice(
            i,
            Array.from({ length: ENDPOINTS }, (_, j) => endpointIp(i * ENDPOINTS + j)),
          ),
        );
      }
    },
    // Endpoint 0 of a Service is replaced by a fresh IP: change c gets the c-th such IP.
    change(c) {
      const i = (c * 997 + 13) % services;
      const fresh = endpointIp(services * ENDPOINTS + c);
      const ips = Array.from({ length: ENDPOINTS }, (_, j) =>
        j === 0 ? fresh : endpointIp(i * ENDPOINTS + j),
      );
      return { name: `svc-${i}-a`, fresh, object: slice(i, ips) };
    },
  };
}

async function measure(ctx: BenchContext): Promise<BenchResult> {
  const f = await measureDaemon(ctx, clusterIpWorkload(ctx.quick ? 1_000 : 10_000), {
    changes: ctx.quick ? 5 : 10,
    quietS: ctx.quick ? 20 : 60,
  });
  const { initial, change: m, rss: mem, heap } = f;
  const n = f.services;
  const rss = mem.afterQuiet;
  const figures: BenchResult['figures'] = {
    [`initial_sync_ms@${n}`]: initial.totalMs,
    [`initial_before_nft_ms@${n}`]: initial.beforeNftMs,
    [`initial_nft_ms@${n}`]: initial.nftMs,
    [`initial_operations@${n}`]: initial.operations,
    [`binary_initial_sync_ms@${n}`]: f.binaryInitialMs,
    [`change_to_commit_ms_median@${n}`]: round(m.total),
    [`change_to_commit_ms_max@${n}`]: round(m.max),
    [`change_delivery_ms_median@${n}`]: round(m.delivery),
    [`change_sync_cpu_ms_median@${n}`]: round(m.cpu),
    [`change_nft_ms_median@${n}`]: round(m.nft),
    [`change_operations@${n}`]: m.ops,
    [`daemon_rss_mb_after_full_sync@${n}`]: mem.afterFull,
    [`daemon_rss_mb_after_changes@${n}`]: mem.afterChanges,
    [`daemon_rss_mb_after_quiet@${n}`]: rss,
    [`daemon_rss_mb_peak@${n}`]: mem.peak,
    [`daemon_scrape_ms@${n}`]: f.scrape.ms,
    [`daemon_scrapes_for_counters@${n}`]: f.scrape.counters ? f.scrape.scrapes : null,
    [`daemon_rss_mb_after_scrape@${n}`]: f.scrape.rssAfter,
    [`daemon_rss_mb_peak_after_scrape@${n}`]: f.scrape.peakAfter,
    [`heap_mb_api_server_only@${n}`]: heap.serverOnly,
    [`heap_mb_after_changes@${n}`]: heap.afterChanges,
    heap_after_gc: global.gc ? 'yes' : 'no (run node --expose-gc)',
  };
  const lines = [
    `daemon latency, ${n} Services × ${ENDPOINTS} endpoints, real nft in a namespace, the test API server in its own process:`,
    `  initial full sync (start → commit): ${initial.totalMs} ms = ${initial.beforeNftMs} ms list+state+compile+render, ${initial.nftMs} ms nft (${initial.operations} operations)`,
    `    the binary in its own process, over the rules the in-process daemon left (a restart), spawn → first sync committed: ${f.binaryInitialMs} ms`,
    `  one EndpointSlice change → nft commit, median of ${f.changes}: ${round(m.total)} ms ` +
      `(target ≤ ${TARGET.changeMs} ms: ${m.total <= TARGET.changeMs ? 'met' : 'MISSED'}); ` +
      `max ${round(m.max)} ms`,
    `    watch delivery ${round(m.delivery)} ms · sync CPU before nft ${round(m.cpu)} ms · nft ${round(m.nft)} ms · ${m.ops} operations`,
    `  the binary as its own process (VmRSS): ${mem.afterFull} MB after the full sync, ${mem.afterChanges} MB after ${f.changes} changes, ` +
      `${rss} MB ${f.quietS} s later (target ≤ ${TARGET.rssMb} MB: ${rss <= TARGET.rssMb ? 'met' : 'MISSED'}); peak ${mem.peak} MB`,
    `  then ${scrapeText(f.scrape)}: ${f.scrape.rssAfter} MB after it; peak ${f.scrape.peakAfter} MB`,
    `  in-process daemon's live heap${global.gc ? ' after a full GC' : ' (garbage included; node --expose-gc for live objects)'}: ` +
      `${round(heap.afterChanges - heap.serverOnly)} MB (${heap.serverOnly} MB before it started: the bench's workload)`,
  ];
  return { figures, lines };
}

export const bench: Bench = {
  name: 'daemon-latency',
  async unavailable() {
    if (typeof process.getuid !== 'function' || process.getuid() !== 0)
      return 'needs root (a network namespace and nft in it)';
    const nft = await run(['nft', '--version'], { allowFail: true }).catch(() => undefined);
    if (!nft || nft.code !== 0) return 'needs nft (apt-get install nftables)';
    const ip = await run(['ip', '-V'], { allowFail: true }).catch(() => undefined);
    if (!ip || ip.code !== 0) return 'needs ip (apt-get install iproute2)';
    return undefined;
  },
  run: measure,
};
