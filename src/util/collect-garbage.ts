import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { Clock, ClockTimer } from './clock.js';

let gc: (() => void) | undefined;

/**
 * One full V8 collection, now. A full sync leaves hundreds of MB of garbage at 50,000 Services
 * (the lists as read, in Buffers and strings, and the transaction's text), and V8 collects only
 * when it next needs room: a daemon that goes quiet after its full sync keeps all of it resident
 * (measured: heap 683 MB used of which ~120 MB garbage, plus 145 MB of dead Buffers, an hour
 * later). V8's own `gc` is exposed for the call: the flag, set at run time, takes effect for
 * contexts made after it, so the function is read from a fresh context.
 *
 * A plain collection frees the garbage but leaves the pages that held it: the objects that live
 * on (the store, the model, the ruleset) were made among the garbage, so most pages stay partly
 * used and resident (measured at 50,000 Services: 595 MB of heap for 489 MB of objects a quiet
 * minute later; V8's memory reducer, which compacts once the process is idle, had not). With
 * `compact`, when the old generation's pages have enough free space to be worth it
 * (COMPACT_ABOVE_FREE_MB), the collection also moves the live objects together and gives the
 * emptied pages back (`--compact-on-every-full-gc` for its duration, a flag V8 reads at each
 * collection). It costs about twice a plain collection and copies what it moves: made while a
 * full sync's garbage still held its pages, it peaked at 1.43 GB at 50,000 Services, against
 * 1.1 GB for the sync.
 */
export function collectGarbage(opts: { compact?: boolean } = {}): void {
  if (!gc) {
    setFlagsFromString('--expose-gc');
    gc = runInNewContext('gc') as () => void;
  }
  // Measured before: one collection, not a plain one and then a compacting one. Two in a row
  // left V8's young generation at 32 MB where one after a quiet while shrinks it to 1 MB.
  if (!opts.compact || !fragmented()) return gc();
  setFlagsFromString('--compact-on-every-full-gc');
  try {
    gc();
  } finally {
    setFlagsFromString('--no-compact-on-every-full-gc');
  }
}

/**
 * Whether the old generation's pages hold at least this much more than its objects: only then
 * is a compaction worth its copy. It moves nearly every live object, so for a moment the heap
 * needs as much again; the pages it gives back are this free space. Measured a quiet minute
 * after the full sync: 40-80 MB free at 50,000 Services (compacted: 548-574 MB instead of
 * 620-707), 11 MB at 10,000, where compacting raised the peak from 286 to 339 MB for 11.
 */
export const COMPACT_ABOVE_FREE_MB = 32;

/** Measured before the collection: what the pages hold beyond their objects, garbage included. */
function fragmented(): boolean {
  const old = getHeapSpaceStatistics().find((s) => s.space_name === 'old_space');
  return old !== undefined && old.space_size - old.space_used_size >= COMPACT_ABOVE_FREE_MB * 2 ** 20;
}

/** How long the daemon must have been without a sync before the compacting collection. */
export const QUIET_COLLECT_MS = 10_000;
/** The compacting collection waits at most this long after a full sync for a quiet while. */
export const MAX_COLLECT_WAIT_MS = 60_000;

/**
 * When the daemon collects: right after each full sync, its garbage (a plain collection); then,
 * once no sync has followed for QUIET_COLLECT_MS (at the latest MAX_COLLECT_WAIT_MS after the
 * full sync), a compacting one (see collectGarbage). Apart, so that the compaction finds the
 * garbage gone and its pages given back: it then costs no more memory than the sync did. After a
 * quiet while, because only then does a full collection give back V8's young generation too: it
 * grows to 32 MB while a full sync allocates, and V8 shrinks it only when little has been
 * allocated for some seconds (measured: a collection 6 s after the last allocation shrank it to
 * 1 MB; at 1 and 3 s it stayed). Partial syncs leave little garbage: they only move it on.
 */
export class SyncGarbage {
  readonly #clock: Clock;
  readonly #collect: (opts: { compact: boolean }) => void;
  readonly #quietMs: number;
  readonly #maxWaitMs: number;
  #now: ClockTimer | undefined;
  #quiet: ClockTimer | undefined;
  /** When the compacting collection is due at the latest (while one is pending). */
  #deadline = 0;

  constructor(opts: {
    clock: Clock;
    collect?: (opts: { compact: boolean }) => void;
    quietMs?: number;
    maxWaitMs?: number;
  }) {
    this.#clock = opts.clock;
    this.#collect = opts.collect ?? collectGarbage;
    this.#quietMs = opts.quietMs ?? QUIET_COLLECT_MS;
    this.#maxWaitMs = opts.maxWaitMs ?? MAX_COLLECT_WAIT_MS;
  }

  /**
   * A sync succeeded (`full`: it replaced everything). The collections run on timers of their
   * own, once the sync is over: the sync's duration and the next change do not wait for them.
   */
  synced(full: boolean): void {
    const now = this.#clock.now();
    if (full) {
      this.#now ??= this.#clock.setTimeout(() => {
        this.#now = undefined;
        this.#collect({ compact: false });
      }, 0);
      if (this.#quiet === undefined) this.#deadline = now + this.#maxWaitMs;
    } else if (this.#quiet === undefined) return;
    if (this.#quiet !== undefined) this.#clock.clearTimeout(this.#quiet);
    this.#quiet = this.#clock.setTimeout(
      () => {
        this.#quiet = undefined;
        this.#collect({ compact: true });
      },
      Math.max(0, Math.min(this.#quietMs, this.#deadline - now)),
    );
  }

  /** No collection after this. */
  stop(): void {
    for (const t of [this.#now, this.#quiet]) if (t !== undefined) this.#clock.clearTimeout(t);
    this.#now = undefined;
    this.#quiet = undefined;
  }
}
