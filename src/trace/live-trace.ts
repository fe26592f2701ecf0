import { ErrorCodes, ProxyError } from '../errors.js';
import type { Logger } from '../log.js';
import { canonicalIp, ipFamily } from '../model/ip.js';
import type { Packet, Trace } from '../model/trace.js';
import type { Nft } from '../rules/nft/exec.js';
import { disagreements } from './compare.js';
import { KernelPathBuilder, type KernelPath, type TracedTuple } from './kernel-path.js';
import { parseTraceLine } from './monitor-line.js';
import { TraceMonitor, type MonitorDeps } from './trace-monitor.js';
import { armTuple, createTraceTable, destroyTraceTables, traceTableChains } from './trace-table.js';

/** A live trace's time limit when none is asked for, and the most one may ask for (seconds). */
export const LIVE_TRACE_DEFAULT_SECONDS = 10;
export const LIVE_TRACE_MAX_SECONDS = 60;

/** How long `nft monitor trace` may take to listen: it reads the whole ruleset first. */
const LISTEN_LIMIT_MS = 30_000;

/** Why the wait for the packet ended. */
type Ending = { by: 'complete' } | { by: 'limit' } | { by: 'stopped' } | { by: 'monitor'; detail: string };

/** GET /debug/trace/live: whether a live trace is running, and for which packet. */
export type LiveTraceStatus =
  | { state: 'idle' }
  /** `armed`: packets of this tuple are traced from now until `until`; make the connection. */
  | { state: 'arming' | 'armed'; packet: TracedTuple; until?: string };

/** The answer of GET /debug/trace?live=1. */
export interface LiveTraceAnswer {
  /** The traced tuple (addresses as nft prints them). */
  packet: TracedTuple;
  /** The model's answer (the same as /debug/trace without live=1), made when the trace ended. */
  model: Trace;
  /** The kernel's path of the first such packet; null when none came within the limit. */
  kernel: Omit<KernelPath, 'first' | 'last'> | null;
  /** Whether model and kernel agree; null without a kernel path. */
  agree: boolean | null;
  disagreements: string[];
  /** Why there is no kernel path, or why it is incomplete. */
  why?: string;
}

export interface LiveTracerOptions {
  nft: Nft;
  /** Our table's name; the trace table is `<table>-trace` (trace-table.ts). */
  table: string;
  log: Logger;
  /** How `nft monitor trace` runs; default nft.spawn and /proc. */
  monitor?: MonitorDeps;
}

/**
 * Live kernel traces, one at a time: arms the trace table for one tuple (in the kernel, with
 * the time limit as the element's timeout), reads `nft monitor trace` until the first such
 * packet has passed or been dropped, or the limit, and always removes the table again.
 */
export class LiveTracer {
  readonly #opts: LiveTracerOptions;
  readonly #log: Logger;
  #status: LiveTraceStatus = { state: 'idle' };
  /** Ends the running trace early (close()). */
  #abort: (() => void) | undefined;
  /** close() was called: the daemon is stopping. */
  #closed = false;
  #running: Promise<unknown> | undefined;

  constructor(opts: LiveTracerOptions) {
    this.#opts = opts;
    this.#log = opts.log.child({ component: 'live-trace' });
  }

  status(): LiveTraceStatus {
    return this.#status;
  }

  /** Removes trace tables a crash left behind (run at start, before any trace). */
  async clearLeftovers(): Promise<void> {
    await this.#opts.nft.run(destroyTraceTables(this.#opts.table));
  }

  /**
   * Traces the next packet of `packet`'s tuple for at most `seconds`. Rejects with
   * LIVE_TRACE_BUSY while another trace runs, LIVE_TRACE_UNAVAILABLE when nft cannot be
   * monitored here, LIVE_TRACE_FAILED when the monitor does not start.
   */
  async trace(packet: Packet, seconds: number, model: () => Trace): Promise<LiveTraceAnswer> {
    if (this.#closed) throw new ProxyError(ErrorCodes.LIVE_TRACE_UNAVAILABLE, 'the daemon is stopping');
    if (this.#status.state !== 'idle')
      throw new ProxyError(
        ErrorCodes.LIVE_TRACE_BUSY,
        'a live trace is running already (one at a time): retry once it has answered; GET /debug/trace/live shows it',
      );
    const monitorDeps =
      this.#opts.monitor ?? (this.#opts.nft.spawn ? { spawn: this.#opts.nft.spawn } : undefined);
    if (!monitorDeps)
      throw new ProxyError(ErrorCodes.LIVE_TRACE_UNAVAILABLE, 'live traces need the real nft binary');
    const family = ipFamily(packet.dst);
    const saddr = canonicalIp(packet.src);
    const daddr = canonicalIp(packet.dst);
    if (!family || saddr === undefined || daddr === undefined || ipFamily(packet.src) !== family)
      throw new ProxyError(ErrorCodes.CONFIG_INVALID, 'src and dst must be IPs of one family');
    const tuple: TracedTuple = { saddr, daddr, proto: packet.proto, dport: packet.port };
    this.#status = { state: 'arming', packet: tuple };
    const run = this.#trace(family, tuple, seconds, model);
    this.#running = run.catch(() => undefined);
    try {
      return await run;
    } finally {
      this.#status = { state: 'idle' };
      this.#abort = undefined;
      this.#running = undefined;
    }
  }

  async #trace(
    family: 'ipv4' | 'ipv6',
    tuple: TracedTuple,
    seconds: number,
    model: () => Trace,
  ): Promise<LiveTraceAnswer> {
    const { nft, table } = this.#opts;
    const builder = new KernelPathBuilder(traceTableChains(table, family), tuple);
    let monitor: TraceMonitor | undefined;
    let timer: NodeJS.Timeout | undefined;
    // The first ending wins: nft exiting because it was killed after the limit is not news.
    let ending: Ending | undefined;
    let end!: (e: Ending) => void;
    const done = new Promise<void>((resolve) => {
      end = (e) => {
        ending ??= e;
        resolve();
      };
    });
    this.#abort = () => end({ by: 'stopped' });
    try {
      await nft.run(createTraceTable(table, family));
      monitor = new TraceMonitor(this.#opts.monitor ?? { spawn: nft.spawn! }, (text) => {
        const line = parseTraceLine(text);
        if (line && builder.add(line)) end({ by: 'complete' });
      });
      void monitor.exited.then(({ code, signal, stderr }) =>
        end({ by: 'monitor', detail: `${signal ?? `status ${code}`}: ${stderr.trim() || 'no message'}` }),
      );
      await monitor.listening(LISTEN_LIMIT_MS);
      if (ending === undefined) {
        // The kernel stops marking at the limit on its own, whatever becomes of this process.
        await nft.run(armTuple(table, family, tuple, seconds));
        const until = new Date(Date.now() + seconds * 1000).toISOString();
        this.#status = { state: 'armed', packet: tuple, until };
        this.#log.info({ packet: tuple, seconds }, 'live trace armed');
        timer = setTimeout(() => end({ by: 'limit' }), seconds * 1000);
        await done;
      }
    } finally {
      clearTimeout(timer);
      await monitor?.stop();
      try {
        await nft.run(destroyTraceTables(table));
      } catch (err) {
        this.#log.warn({ err }, 'cannot remove the trace table; the next start removes it');
      }
    }
    return this.#answer(tuple, builder.path(), model(), ending ?? { by: 'stopped' }, seconds);
  }

  #answer(
    tuple: TracedTuple,
    path: KernelPath,
    modelTrace: Trace,
    ending: Ending,
    seconds: number,
  ): LiveTraceAnswer {
    const { first: _first, last: _last, ...kernel } = path;
    const why =
      ending.by === 'stopped'
        ? 'the daemon stopped'
        : ending.by === 'monitor'
          ? `nft monitor trace ended (${ending.detail})`
          : `the limit of ${seconds} s passed`;
    if (path.first === undefined) {
      return {
        packet: tuple,
        model: modelTrace,
        kernel: null,
        agree: null,
        disagreements: [],
        why: `no packet of this tuple: ${why}`,
      };
    }
    const found = disagreements(modelTrace, path);
    this.#log.info(
      { packet: tuple, verdict: path.verdict, dnat: path.dnat, agree: found.length === 0 },
      'live trace done',
    );
    return {
      packet: tuple,
      model: modelTrace,
      kernel,
      agree: found.length === 0,
      disagreements: found,
      ...(path.complete ? {} : { why: `the packet's trace did not reach its end: ${why}` }),
    };
  }

  /** Ends a running trace (its table is removed) and waits for it; no trace starts after. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#abort?.();
    await this.#running;
  }
}
