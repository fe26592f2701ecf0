import type { Logger } from '../log.js';
import { isEventStatus } from '../errors.js';
import { systemClock, wallTime, type Clock, type ClockTimer } from '../util/clock.js';
import type { EventMetrics } from './event-metrics.js';
import type { EventBody, EventSeries, EventSink } from './event-sink.js';
import { refKey, type ObjectRef } from './object-ref.js';
import { REPORTING_CONTROLLER, type EventType } from './reasons.js';
import { TokenBucket } from './token-bucket.js';

/** One thing to tell: client-go's Eventf(regarding, nil, type, reason, action, note). */
export interface EventInput {
  regarding: ObjectRef;
  type: EventType;
  reason: string;
  action: string;
  note: string;
}

export interface EventRecorderOptions {
  sink: EventSink;
  /** `reportingInstance`: which proxy said it (client-go: `<controller>-<hostname>`). */
  instance: string;
  log: Logger;
  clock?: Clock;
  metrics?: EventMetrics;
  /** API requests an object may cost at once (client-go's spam filter: 25). */
  burst?: number;
  /** Then one more every this many ms (client-go's spam filter: one per 5 minutes). */
  refillMs?: number;
  /** A repeat within this long of the last occurrence joins its series (client-go: 6 minutes). */
  seriesWindowMs?: number;
  /** Requests waiting to be sent; more are dropped (client-go: 1000). */
  maxQueue?: number;
  /** Series remembered; the least recently seen goes first (client-go's LRU: 4096). */
  maxCached?: number;
}

/** One Event as sent, and its occurrences since. */
interface Series {
  key: string;
  event: EventBody;
  /** Occurrences so far (1: the Event alone, no series). */
  count: number;
  /** Occurrences the API server has been told of. */
  told: number;
  /** clock.now() and wall time of the last occurrence. */
  lastSeen: number;
  lastObservedTime: string;
  /**
   * A request for this series (its create or a patch) waits in the queue: later occurrences ride
   * along with it, since it sends the series as it stands when it goes out.
   */
  requestQueued: boolean;
}

interface Request {
  verb: 'create' | 'patch';
  series: Series;
}

/** The API server's limit on a note (events.k8s.io/v1: 1 kB). */
const NOTE_LIMIT = 1024;
/** An object name's limit (DNS subdomain); the Event's name must fit too. */
const NAME_LIMIT = 253;

/**
 * Sends events.k8s.io/v1 Events as client-go's tools/events does, without ever holding up the
 * caller: emit() decides at once and queues at most one request; one request at a time goes
 * out in the background.
 *
 * - The first occurrence of an Event (same object, type, reason, action and note) is created,
 *   named `<object>.<hex nanoseconds>`, in the object's namespace (`default` for a Node).
 * - A repeat within `seriesWindowMs` of the last one PATCHes the Event's `series` (count,
 *   lastObservedTime) instead of creating another; a series whose Event is gone (404) is
 *   created again with its count. A series quiet for `seriesWindowMs` ends: its last count is
 *   sent if it was not, and the next occurrence starts a new Event.
 * - Each object has a token bucket (`burst`, then one per `refillMs`) that every request for it
 *   costs. Over it, a first occurrence is dropped; a repeat is counted in its series and goes
 *   out with the next request for that series, or when the series ends. So a flapping Service
 *   costs the API server at most `burst` requests, then one per `refillMs`.
 * - A full queue drops the request; a refused or failed request is dropped. Both are counted
 *   (kube_nftproxy_events_dropped_total); failures are logged once per streak.
 */
export class EventRecorder {
  readonly #sink: EventSink;
  readonly #instance: string;
  readonly #log: Logger;
  readonly #clock: Clock;
  readonly #wallNow: () => number;
  readonly #metrics: EventMetrics | undefined;
  readonly #burst: number;
  readonly #refillMs: number;
  readonly #windowMs: number;
  readonly #maxQueue: number;
  readonly #maxCached: number;
  /** Series by key, least recently seen first. */
  readonly #series = new Map<string, Series>();
  readonly #buckets = new Map<string, TokenBucket>();
  readonly #queue: Request[] = [];
  #draining: Promise<void> | undefined;
  #sweepTimer: ClockTimer | undefined;
  #stopped = false;
  /** A request failed and no request has succeeded since (the streak's first was logged). */
  #failing = false;
  /** Told apart Events named in the same millisecond. */
  #sequence = 0;

  constructor(opts: EventRecorderOptions) {
    this.#sink = opts.sink;
    this.#instance = opts.instance.slice(0, 128);
    this.#log = opts.log.child({ component: 'events' });
    this.#clock = opts.clock ?? systemClock;
    this.#wallNow = wallTime(this.#clock);
    this.#metrics = opts.metrics;
    this.#burst = opts.burst ?? 25;
    this.#refillMs = opts.refillMs ?? 300_000;
    this.#windowMs = opts.seriesWindowMs ?? 360_000;
    this.#maxQueue = opts.maxQueue ?? 1000;
    this.#maxCached = opts.maxCached ?? 4096;
  }

  /** Record one occurrence; never throws, never waits. */
  emit(input: EventInput): void {
    if (this.#stopped) return;
    const now = this.#clock.now();
    const note = truncateBytes(input.note, NOTE_LIMIT);
    const objectKey = refKey(input.regarding);
    const key = JSON.stringify([objectKey, input.type, input.reason, input.action, note]);
    let series = this.#series.get(key);
    if (series && now - series.lastSeen >= this.#windowMs) {
      this.#finish(series);
      series = undefined;
    }
    const wall = microTime(this.#wallNow());
    if (series) {
      series.count++;
      series.lastSeen = now;
      series.lastObservedTime = wall;
      // Most recently seen last: the eviction order.
      this.#series.delete(key);
      this.#series.set(key, series);
      if (series.requestQueued) return;
      if (!this.#take(objectKey, now)) return this.#metrics?.dropped('rate-limited');
      this.#enqueue({ verb: 'patch', series });
      return;
    }
    if (!this.#take(objectKey, now)) return this.#metrics?.dropped('rate-limited');
    series = {
      key,
      event: this.#makeEvent(input, note, wall),
      count: 1,
      told: 0,
      lastSeen: now,
      lastObservedTime: wall,
      requestQueued: false,
    };
    if (!this.#enqueue({ verb: 'create', series })) return;
    this.#series.set(key, series);
    if (this.#series.size > this.#maxCached) {
      const oldest = this.#series.values().next().value as Series;
      this.#finish(oldest);
    }
    this.#scheduleSweep();
  }

  /** Resolves once every queued request has been sent or dropped (tests). */
  async flush(): Promise<void> {
    while (this.#draining) await this.#draining;
  }

  /** Sends nothing more: queued requests are dropped; one in flight finishes on its own. */
  stop(): void {
    this.#stopped = true;
    this.#queue.length = 0;
    if (this.#sweepTimer !== undefined) this.#clock.clearTimeout(this.#sweepTimer);
    this.#sweepTimer = undefined;
  }

  #take(objectKey: string, now: number): boolean {
    let bucket = this.#buckets.get(objectKey);
    if (!bucket) {
      bucket = new TokenBucket(this.#burst, this.#refillMs, now);
      this.#buckets.set(objectKey, bucket);
    }
    return bucket.take(now);
  }

  #makeEvent(input: EventInput, note: string, eventTime: string): EventBody {
    const { regarding } = input;
    // client-go's name: the object's, then the time in hex nanoseconds. Milliseconds are all the
    // clock has: the sequence fills the rest, so two Events of one millisecond do not collide.
    const nanos = BigInt(Math.floor(this.#wallNow())) * 1_000_000n + BigInt(this.#sequence++ % 1_000_000);
    const suffix = `.${nanos.toString(16)}`;
    return {
      apiVersion: 'events.k8s.io/v1',
      kind: 'Event',
      metadata: {
        name: regarding.name.slice(0, NAME_LIMIT - suffix.length) + suffix,
        namespace: regarding.namespace || 'default',
      },
      eventTime,
      type: input.type,
      reason: input.reason,
      action: input.action,
      note,
      regarding,
      reportingController: REPORTING_CONTROLLER,
      reportingInstance: this.#instance,
    };
  }

  /** Ends a series: forgotten, its last count sent if the API server has not seen it. */
  #finish(series: Series): void {
    this.#series.delete(series.key);
    // Not costed to the bucket: at most one per series, and every series began with a token.
    if (series.count > 1 && series.count > series.told && !series.requestQueued)
      this.#enqueue({ verb: 'patch', series });
  }

  /** Queues a request; false (counted) when the queue is full. */
  #enqueue(request: Request): boolean {
    if (this.#queue.length >= this.#maxQueue) {
      this.#metrics?.dropped('queue-full');
      return false;
    }
    request.series.requestQueued = true;
    this.#queue.push(request);
    this.#draining ??= this.#drain();
    return true;
  }

  async #drain(): Promise<void> {
    try {
      for (let request = this.#queue.shift(); request; request = this.#queue.shift()) {
        await this.#send(request);
      }
    } finally {
      // In the same turn as the last shift: a request queued after it starts a new drain.
      this.#draining = undefined;
    }
  }

  async #send({ verb, series }: Request): Promise<void> {
    // What the API server is told is the series as it stands when the request goes out.
    series.requestQueued = false;
    const count = series.count;
    const seriesNow: EventSeries | undefined =
      count > 1 ? { count, lastObservedTime: series.lastObservedTime } : undefined;
    const { namespace, name } = series.event.metadata;
    try {
      if (verb === 'patch' && seriesNow) {
        try {
          await this.#sink.patchSeries(namespace, name, seriesNow);
        } catch (err) {
          // The Event is gone (expired, deleted, or its create was dropped): create it with its count.
          if (!isEventStatus(err, 404)) throw err;
          await this.#sink.create({ ...series.event, series: seriesNow });
        }
      } else {
        await this.#sink.create(seriesNow ? { ...series.event, series: seriesNow } : series.event);
      }
      series.told = Math.max(series.told, count);
      this.#metrics?.sent(verb);
      if (this.#failing) this.#log.info('Events are sent again');
      this.#failing = false;
    } catch (err) {
      this.#metrics?.dropped('failed');
      if (!this.#failing)
        this.#log.warn(
          { err, event: `${namespace}/${name}`, reason: series.event.reason },
          'an Event could not be sent; dropping it, and logging no more such failures until one is sent',
        );
      this.#failing = true;
    }
  }

  /** Ends quiet series and forgets refilled buckets, every window, while there is any. */
  #scheduleSweep(): void {
    if (this.#sweepTimer !== undefined || this.#stopped) return;
    this.#sweepTimer = this.#clock.setTimeout(() => {
      this.#sweepTimer = undefined;
      const now = this.#clock.now();
      for (const series of [...this.#series.values()])
        if (now - series.lastSeen >= this.#windowMs) this.#finish(series);
      for (const [key, bucket] of this.#buckets) if (bucket.full(now)) this.#buckets.delete(key);
      if (this.#series.size > 0 || this.#buckets.size > 0) this.#scheduleSweep();
    }, this.#windowMs);
  }
}

/** RFC 3339 with microseconds, as the API server's MicroTime parses it (it needs six digits). */
export function microTime(epochMs: number): string {
  return new Date(epochMs).toISOString().replace(/Z$/, '000Z');
}

/** `text` cut to at most `limit` UTF-8 bytes, on a character boundary. */
function truncateBytes(text: string, limit: number): string {
  if (Buffer.byteLength(text) <= limit) return text;
  let out = '';
  let bytes = 0;
  for (const ch of text) {
    const n = Buffer.byteLength(ch);
    if (bytes + n > limit) break;
    out += ch;
    bytes += n;
  }
  return out;
}
