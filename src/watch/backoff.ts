import { ProxyError, ErrorCodes } from '../errors.js';

export interface BackoffOptions {
  /** The first delay. */
  initialMs: number;
  /** The delay never grows past this. */
  maxMs: number;
}

/**
 * Exponential backoff: initialMs, 2×, 4×, … capped at maxMs, until reset(). No jitter: a node
 * daemon restarts one watch per kind, so there is no herd on one API server to spread out.
 */
export class Backoff {
  private failures = 0;

  constructor(private readonly opts: BackoffOptions) {
    if (!(opts.initialMs > 0) || !(opts.maxMs >= opts.initialMs)) {
      throw new ProxyError(
        ErrorCodes.CONFIG_INVALID,
        `backoff needs 0 < initialMs <= maxMs (got initialMs=${opts.initialMs}, maxMs=${opts.maxMs})`,
      );
    }
  }

  /** The delay before the next attempt; each call doubles the following one. */
  next(): number {
    const delay = Math.min(this.opts.maxMs, this.opts.initialMs * 2 ** Math.min(this.failures, 30));
    this.failures++;
    return delay;
  }

  /** Things work again: the next failure starts from initialMs. */
  reset(): void {
    this.failures = 0;
  }
}
