/**
 * A token bucket on an injected clock: `burst` tokens at first, one more every `refillMs`, never
 * more than `burst`. client-go's Event spam filter (tools/record) is the model: per object, 25 at
 * once, then one every five minutes, so a flapping object cannot flood the API server while a
 * one-off problem is always told at once.
 */
export class TokenBucket {
  #tokens: number;
  #last: number;

  constructor(
    readonly burst: number,
    readonly refillMs: number,
    now: number,
  ) {
    this.#tokens = burst;
    this.#last = now;
  }

  /** Takes one token if there is one; false when the bucket is empty (the caller drops or waits). */
  take(now: number): boolean {
    this.#refill(now);
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }

  /** Whether the bucket has refilled to its burst by `now`: it then remembers nothing worth keeping. */
  full(now: number): boolean {
    this.#refill(now);
    return this.#tokens >= this.burst;
  }

  #refill(now: number): void {
    // A clock that steps back refills nothing (and moves the mark back with it).
    const elapsed = Math.max(0, now - this.#last);
    this.#tokens = Math.min(this.burst, this.#tokens + elapsed / this.refillMs);
    this.#last = now;
  }
}
