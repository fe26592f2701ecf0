import { systemClock, type Clock, type ClockTimer } from '../util/clock.js';
import { ErrorCodes, ProxyError } from '../errors.js';
import type { Logger } from '../log.js';
import { Backoff } from './backoff.js';

export interface BoundedFrequencyRunnerOptions {
  /** Names the runner in logs and errors. */
  name: string;
  /** The work: one sync. A rejection schedules a retry with backoff. */
  fn: () => Promise<void>;
  /** Runs start at least this far apart (kube-proxy's --min-sync-period). */
  minIntervalMs: number;
  /** A run starts at most this long after the previous one ended (--sync-period). */
  maxIntervalMs: number;
  /** Retry delays after a failed run; default 1 s doubling up to maxIntervalMs. */
  retryBackoff?: { initialMs: number; maxMs: number };
  clock?: Clock;
  log: Logger;
}

/**
 * Runs `fn` like kube-proxy's async.BoundedFrequencyRunner: never two at once, never more
 * often than minIntervalMs, at least every maxIntervalMs. run() requests collapse: any number
 * of them before the next run give one run, and requests during a run give exactly one more.
 *
 * After a failure the retry schedule governs: the next run waits for the backoff delay even if
 * run() is called meanwhile (a broken nft is not hammered on every change), and it happens
 * even if nobody calls run(). A success resets the backoff.
 */
export class BoundedFrequencyRunner {
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly backoff: Backoff;
  private started = false;
  private stopped = false;
  /** A run() arrived that no run has served yet. */
  private pending = false;
  private running: Promise<void> | undefined;
  private lastStart: number | undefined;
  private lastEnd: number | undefined;
  /** Set after a failure: the earliest time of the retry. */
  private retryAt: number | undefined;
  private timer: ClockTimer | undefined;
  private timerDue: number | undefined;

  constructor(private readonly opts: BoundedFrequencyRunnerOptions) {
    const { name, minIntervalMs, maxIntervalMs } = opts;
    if (!(minIntervalMs >= 0) || !(maxIntervalMs > 0) || maxIntervalMs < minIntervalMs) {
      throw new ProxyError(
        ErrorCodes.CONFIG_INVALID,
        `runner ${name}: needs 0 <= minIntervalMs <= maxIntervalMs and maxIntervalMs > 0 ` +
          `(got minIntervalMs=${minIntervalMs}, maxIntervalMs=${maxIntervalMs})`,
      );
    }
    this.clock = opts.clock ?? systemClock;
    this.log = opts.log.child({ runner: name });
    this.backoff = new Backoff(
      opts.retryBackoff ?? { initialMs: Math.min(1000, maxIntervalMs), maxMs: maxIntervalMs },
    );
  }

  /** Ask for a run soon. Cheap; call it on every change. */
  run(): void {
    if (this.stopped) return;
    this.pending = true;
    this.schedule();
  }

  /** The first run right away (on the next timer tick), then at least every maxIntervalMs. */
  start(): void {
    if (this.started || this.stopped) return;
    this.started = true;
    this.pending = true;
    this.schedule();
  }

  /** No more runs: clears the timer and waits for a run in progress to finish. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.clearTimer();
    await this.running;
  }

  /** Points the single timer at the next run's time, if that changed. */
  private schedule(): void {
    if (!this.started || this.stopped || this.running) return;
    const now = this.clock.now();
    const floor = this.lastStart === undefined ? now : this.lastStart + this.opts.minIntervalMs;
    let due: number;
    if (this.retryAt !== undefined) {
      due = Math.max(this.retryAt, floor);
    } else {
      // lastEnd is set whenever lastStart is, so the periodic run is always defined after the first.
      due = this.lastEnd === undefined ? now : this.lastEnd + this.opts.maxIntervalMs;
      if (this.pending) due = Math.min(due, Math.max(floor, now));
    }
    if (this.timer !== undefined && this.timerDue === due) return;
    this.clearTimer();
    this.timerDue = due;
    this.timer = this.clock.setTimeout(() => this.tick(), Math.max(0, due - now));
  }

  private tick(): void {
    this.timer = undefined;
    this.timerDue = undefined;
    if (this.stopped || this.running) return;
    this.running = this.runOnce().finally(() => {
      this.running = undefined;
      this.schedule();
    });
  }

  private async runOnce(): Promise<void> {
    this.pending = false;
    this.lastStart = this.clock.now();
    try {
      await this.opts.fn();
      this.backoff.reset();
      this.retryAt = undefined;
    } catch (err) {
      const delayMs = this.backoff.next();
      this.retryAt = this.clock.now() + delayMs;
      this.log.warn({ err, retryInMs: delayMs }, 'run failed; retrying');
    } finally {
      this.lastEnd = this.clock.now();
    }
  }

  private clearTimer(): void {
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    this.timerDue = undefined;
  }
}
