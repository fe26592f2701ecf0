import type { Clock, ClockTimer } from '../../src/util/clock.js';

interface Timer {
  id: number;
  due: number;
  fn: () => void;
}

/** Let pending promise callbacks run (one macrotask turn), without any real waiting. */
export function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * A clock that moves only when told. advance() fires due timers in order and lets the async
 * work they start settle between them, so a test sees exactly what a real clock would do over
 * that span, without depending on real time.
 */
export class FakeClock implements Clock {
  private current = 0;
  private nextId = 1;
  private readonly timers = new Map<number, Timer>();

  /** `epochMs` is what wallNow() reads at now() = 0. */
  constructor(private readonly epochMs = Date.UTC(2024, 0, 1, 0, 0, 0)) {}

  now(): number {
    return this.current;
  }

  wallNow(): number {
    return this.epochMs + this.current;
  }

  setTimeout(fn: () => void, ms: number): ClockTimer {
    const id = this.nextId++;
    this.timers.set(id, { id, due: this.current + Math.max(0, ms), fn });
    return id;
  }

  clearTimeout(timer: ClockTimer): void {
    this.timers.delete(timer as number);
  }

  /** Timers not yet fired nor cleared. */
  get pending(): number {
    return this.timers.size;
  }

  /** When the earliest pending timer is due, or undefined. */
  nextDue(): number | undefined {
    let due: number | undefined;
    for (const t of this.timers.values()) if (due === undefined || t.due < due) due = t.due;
    return due;
  }

  /** Move time forward by `ms`, firing every timer that falls due on the way. */
  async advance(ms: number): Promise<void> {
    const target = this.current + ms;
    await settle();
    for (;;) {
      const next = this.earliest();
      if (!next || next.due > target) break;
      this.timers.delete(next.id);
      this.current = next.due;
      next.fn();
      await settle();
    }
    this.current = target;
    await settle();
  }

  private earliest(): Timer | undefined {
    let best: Timer | undefined;
    for (const t of this.timers.values()) {
      if (!best || t.due < best.due || (t.due === best.due && t.id < best.id)) best = t;
    }
    return best;
  }
}
