/**
 * Time and timers as a seam (STYLE.md, habit 9): components that wait, back off or watch for
 * silence take a Clock, so a test can pass its own.
 */
export interface Clock {
  /** Milliseconds on a monotonic-enough scale; only differences are used. */
  now(): number;
  setTimeout(fn: () => void, ms: number): ClockTimer;
  clearTimeout(timer: ClockTimer): void;
  /**
   * Milliseconds since the Unix epoch, for timestamps shown to people (/healthz). Optional so
   * that clocks that only time things need not have it; wallTime() fills in when absent.
   */
  wallNow?(): number;
}

/** An opaque timer handle. */
export type ClockTimer = unknown;

export const systemClock: Clock = {
  now: () => performance.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (timer) => clearTimeout(timer as NodeJS.Timeout),
  wallNow: () => Date.now(),
};

/**
 * Wall-clock milliseconds from `clock`: its own wallNow() if it has one, else the real epoch
 * offset applied to its now(), so a fake clock's advances still show in the timestamps.
 */
export function wallTime(clock: Clock): () => number {
  const wallNow = clock.wallNow;
  if (wallNow) return () => wallNow.call(clock);
  const offset = Date.now() - clock.now();
  return () => offset + clock.now();
}
