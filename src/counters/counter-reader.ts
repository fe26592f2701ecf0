/**
 * Reads the per-frontend counters from the kernel for /metrics and /debug/services. Each
 * counted map is listed by an nft process of its own (`nft -j list map`, never the sync's
 * long-lived session), so a scrape never waits for a sync nor a sync for a scrape. At most one
 * read is in flight; a read younger than `maxAgeMs` for the same programmed state is reused;
 * a caller waits at most `timeoutMs` and then gets the last good read (the slow one finishes
 * in the background and still counts as in flight).
 */
import { setImmediate as nextTurn } from 'node:timers/promises';
import type { Logger } from '../log.js';
import type { Family, ProxyState } from '../model/types.js';
import type { Nft } from '../rules/nft/exec.js';
import type { NftFamily } from '../rules/nft/types.js';
import { COUNTED, SYNTAX } from '../rules/layout.js';
import type { Clock } from '../util/clock.js';
import { countedElements, type CountedElement } from './nft-json.js';
import {
  countersOf,
  indexReadings,
  shortCircuitPort,
  type CounterReadings,
  type PortCounters,
} from './service-counters.js';

/** What the counters are read against: the programmed state and how it was compiled. */
export interface CountedRules {
  /** The state the applied rules were compiled from. */
  state: ProxyState;
  /** The NodePort addresses those rules were compiled with. */
  nodePortIPs: Record<Family, string[]>;
  /** Wall-clock milliseconds of the last full sync: the kernel's counters start there. */
  since: number;
}

/** One read of every counter. */
export interface CountersSnapshot {
  /** Wall-clock milliseconds of the full sync the counters count from. */
  since: number;
  ports: PortCounters[];
  /** The same ports by service port key. */
  byKey: ReadonlyMap<string, PortCounters>;
}

export interface CounterReaderOptions {
  nft: Pick<Nft, 'listMapJson'>;
  table: string;
  /** What is programmed now; undefined before the first sync (nothing is read then). */
  rules: () => CountedRules | undefined;
  log: Logger;
  clock: Clock;
  /** Reuse a read this young (default COUNTERS_MAX_AGE_MS). */
  maxAgeMs?: number;
  /** Wait this long for a read (default COUNTERS_TIMEOUT_MS). */
  timeoutMs?: number;
}

/** Scrapes and /debug/services within this long share one read of the kernel. */
export const COUNTERS_MAX_AGE_MS = 2_000;
/**
 * A caller waits this long for a read, then answers with the last one (the read goes on, and
 * the next caller gets it). A read of 10,000 Services' counters takes 0.4–1 s on a loaded
 * 2-core machine (bench/service-counters.ts): a scrape then answers with the read its
 * predecessor started, so that it stays within a second.
 */
export const COUNTERS_TIMEOUT_MS = 500;

const FAMILIES = ['ipv4', 'ipv6'] as const;
/** Service ports mapped per event-loop turn. */
const SLICE = 2_000;

export class CounterReader {
  readonly #opts: CounterReaderOptions;
  readonly #log: Logger;
  #last: { snapshot: CountersSnapshot; at: number; state: ProxyState } | undefined;
  #inflight: Promise<CountersSnapshot | undefined> | undefined;

  constructor(opts: CounterReaderOptions) {
    this.#opts = opts;
    this.#log = opts.log.child({ component: 'counters' });
  }

  /** The counters now (or as read within maxAgeMs); undefined before the first sync or read. */
  async read(): Promise<CountersSnapshot | undefined> {
    const rules = this.#opts.rules();
    if (!rules) return undefined;
    const { clock } = this.#opts;
    const last = this.#last;
    const fresh =
      last &&
      last.state === rules.state &&
      last.snapshot.since === rules.since &&
      clock.now() - last.at < (this.#opts.maxAgeMs ?? COUNTERS_MAX_AGE_MS);
    if (fresh) return last.snapshot;
    this.#inflight ??= this.#readAll(rules).finally(() => {
      this.#inflight = undefined;
    });
    let timer: unknown;
    const timeout = new Promise<'timeout'>((resolve) => {
      timer = clock.setTimeout(() => resolve('timeout'), this.#opts.timeoutMs ?? COUNTERS_TIMEOUT_MS);
    });
    try {
      const got = await Promise.race([this.#inflight, timeout]);
      if (got !== 'timeout') return got;
      this.#log.warn(
        { ms: this.#opts.timeoutMs ?? COUNTERS_TIMEOUT_MS },
        'counters: read is slow, answering with the last one',
      );
      return this.#last?.snapshot;
    } finally {
      clock.clearTimeout(timer);
    }
  }

  /** Lists every counted map the state uses, one nft process after another. */
  async #readAll(rules: CountedRules): Promise<CountersSnapshot | undefined> {
    const { state, nodePortIPs, since } = rules;
    const started = this.#opts.clock.now();
    const readings: { [K in keyof CounterReadings]: CountedElement[] } = {
      connections: [],
      noEndpoints: [],
      shortcircuit: [],
      sourceRangeDrops: [],
    };
    try {
      for (const family of FAMILIES) {
        const ports = state.ports.filter((sp) => sp.family === family);
        if (ports.length === 0) continue;
        const needs = {
          connections: true,
          noEndpoints: true,
          // Per port, not per frontend: a port whose external frontends all went to other
          // Services costs one listing that nothing reads, not a walk of every frontend.
          shortcircuit: ports.some(shortCircuitPort),
          sourceRangeDrops: ports.some((sp) => sp.sourceRanges.length > 0 && sp.loadBalancerIPs.length > 0),
        };
        const nft: NftFamily = SYNTAX[family].nft;
        for (const what of Object.keys(COUNTED) as Array<keyof typeof COUNTED>) {
          if (!needs[what]) continue;
          const kind = what === 'sourceRangeDrops' ? 'set' : 'map';
          const text = await this.#opts.nft.listMapJson(nft, this.#opts.table, COUNTED[what], {
            kind,
            numericProtocol: true,
          });
          for (const el of countedElements(text)) readings[what].push(el);
          // The event loop is shared with the syncs: one map's work at a time.
          await nextTurn();
        }
      }
    } catch (err) {
      // The last good read stays; the next scrape tries again.
      this.#log.warn({ err }, 'counters: cannot read them from the kernel');
      return this.#last?.snapshot;
    }
    // In slices, each its own event-loop turn: 10,000 ports at once stall a sync for 30–120 ms.
    const index = indexReadings(readings);
    const ports: PortCounters[] = [];
    for (let i = 0; i < state.ports.length; i += SLICE) {
      for (const p of countersOf(state.ports.slice(i, i + SLICE), nodePortIPs, index)) ports.push(p);
      await nextTurn();
    }
    const byKey = new Map<string, PortCounters>();
    for (const p of ports) byKey.set(p.key, p);
    const snapshot: CountersSnapshot = { since, ports, byKey };
    const at = this.#opts.clock.now();
    this.#last = { snapshot, at, state };
    this.#log.debug({ ms: Math.round(at - started), ports: ports.length }, 'counters read');
    return snapshot;
  }
}
