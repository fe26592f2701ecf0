import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { Clock, ClockTimer } from './clock.js';

let gc: (() => void) | undefined;

/**
 * One full V8 collection, now, that also compacts the heap. A full sync leaves hundreds of MB of
 * garbage at 50,000 Services (the lists as read, in Buffers and strings, and the transaction's
 * text), and V8 collects only when it next needs room: a daemon that goes quiet after its full
 * sync keeps all of it resident (measured: heap 683 MB used of which ~120 MB garbage, plus 145 MB
 * of dead Buffers, an hour later). V8's own `gc` is exposed for the call: the flag, set at run
 * time, takes effect for contexts made after it, so the function is read from a fresh context.
 *
 * A plain full collection frees the garbage but leaves the pages that held it: the objects that
 * live on (the store, the model, the ruleset) were made among the garbage, so most pages stay
 * partly used and resident (measured at 50,000 Services: 595 MB of heap for 489 MB of objects,
 * and V8's memory reducer, which would compact them once the process is idle, had not within a
 * quiet minute). So this one collection moves the live objects together and gives the emptied
 * pages back: `--compact-on-every-full-gc` for its duration (a flag V8 reads at each collection).
 * It costs about twice a plain collection, once per full sync (and once after it: SyncGarbage).
 */
export function collectGarbage(): void {
  if (!gc) {
    setFlagsFromString('--expose-gc');
    gc = runInNewContext('gc') as () => void;
  }
  // First the garbage goes (pages left empty are given back), then the compaction moves only
  // what lives on the pages left partly used. Compacting at once would copy every live object
  // while the garbage still holds its pages: measured at 50,000 Services, a peak of 1.43 GB
  // against 1.1 GB for the full sync itself.
  gc();
  setFlagsFromString('--compact-on-every-full-gc');
  try {
    gc();
  } finally {
    setFlagsFromString('--no-compact-on-every-full-gc');
  }
}

/** How long the daemon must have been without a sync before the second collection. */
export const QUIET_COLLECT_MS = 10_000;

/**
 * When the daemon collects: right after each full sync (its garbage), and once more when no sync
 * has followed for QUIET_COLLECT_MS. Only a collection made after a quiet while gives back V8's
 * young generation: it grows to 32 MB while a full sync allocates, and V8 shrinks it in a full
 * collection only when little has been allocated for some seconds (measured: a collection 6 s
 * after the last allocation shrank it to 1 MB, at 1 and 3 s it stayed). Its own memory reducer
 * would, but not always within a quiet minute. The second collection also compacts what the
 * syncs after the full one left. Each sync before it moves it on; a steady stream of changes
 * leaves it waiting, which costs nothing.
 */
export class SyncGarbage {
  readonly #clock: Clock;
  readonly #collect: () => void;
  readonly #quietMs: number;
  #now: ClockTimer | undefined;
  #quiet: ClockTimer | undefined;

  constructor(opts: { clock: Clock; collect?: () => void; quietMs?: number }) {
    this.#clock = opts.clock;
    this.#collect = opts.collect ?? collectGarbage;
    this.#quietMs = opts.quietMs ?? QUIET_COLLECT_MS;
  }

  /**
   * A sync succeeded (`full`: it replaced everything). The collection runs on a timer of its own,
   * once the sync is over: the sync's duration and the next change do not wait for it.
   */
  synced(full: boolean): void {
    if (full && this.#now === undefined)
      this.#now = this.#clock.setTimeout(() => {
        this.#now = undefined;
        this.#collect();
      }, 0);
    if (!full && this.#quiet === undefined) return;
    if (this.#quiet !== undefined) this.#clock.clearTimeout(this.#quiet);
    this.#quiet = this.#clock.setTimeout(() => {
      this.#quiet = undefined;
      this.#collect();
    }, this.#quietMs);
  }

  /** No collection after this. */
  stop(): void {
    for (const t of [this.#now, this.#quiet]) if (t !== undefined) this.#clock.clearTimeout(t);
    this.#now = undefined;
    this.#quiet = undefined;
  }
}
