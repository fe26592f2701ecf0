import { ProxyError, ErrorCodes } from '../errors.js';

export interface BackoffOptions {
  /** The first delay. */
  initialMs: number;
  /** The delay never grows past this. */
  maxMs: number;
  /**
   * Up to this fraction of each delay is taken off at random (0 ≤ jitter < 1; default 0, none).
   * An API server restart drops the watches of every node at the same instant; without jitter
   * a DaemonSet of hundreds of nodes would then relist in lockstep, on every retry.
   */
  jitter?: number;
}

/**
 * Exponential backoff: initialMs, 2×, 4×, … capped at maxMs, until reset(); each delay then
 * shortened by a random part of up to `jitter` of it, so maxMs stays a true maximum.
 */
export class Backoff {
  private failures = 0;
  private readonly jitter: number;

  /** `random` returns a number in [0, 1), as Math.random does; tests pass their own. */
  constructor(
    private readonly opts: BackoffOptions,
    private readonly random: () => number = Math.random,
  ) {
    if (!(opts.initialMs > 0) || !(opts.maxMs >= opts.initialMs)) {
      throw new ProxyError(
        ErrorCodes.CONFIG_INVALID,
        `backoff needs 0 < initialMs <= maxMs (got initialMs=${opts.initialMs}, maxMs=${opts.maxMs})`,
      );
    }
    this.jitter = opts.jitter ?? 0;
    if (!(this.jitter >= 0 && this.jitter < 1)) {
      throw new ProxyError(
        ErrorCodes.CONFIG_INVALID,
        `backoff jitter must be in [0, 1) (got ${opts.jitter})`,
      );
    }
  }

  /** The delay before the next attempt; each call doubles the following one. */
  next(): number {
    const delay = Math.min(this.opts.maxMs, this.opts.initialMs * 2 ** Math.min(this.failures, 30));
    this.failures++;
    if (this.jitter === 0) return delay;
    // Clamped: a random source that strays outside [0, 1) must not make a delay negative or longer.
    const r = Math.min(Math.max(this.random(), 0), 1);
    return Math.round(delay * (1 - this.jitter * r));
  }

  /** Things work again: the next failure starts from initialMs. */
  reset(): void {
    this.failures = 0;
  }
}
