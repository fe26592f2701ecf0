import assert from 'node:assert/strict';
import { hasCode, ErrorCodes } from '../../src/errors.js';
import { silentLogger } from '../../src/log.js';
import { BoundedFrequencyRunner } from '../../src/watch/runner.js';
import { FakeClock, settle } from '../support/fake-clock.js';

/** A sync function that records when it ran and fails or blocks on demand. */
class Work {
  readonly starts: number[] = [];
  failures = 0;
  private release: (() => void) | undefined;
  block = false;
  running = 0;
  maxConcurrent = 0;

  constructor(private readonly clock: FakeClock) {}

  readonly fn = async (): Promise<void> => {
    this.starts.push(this.clock.now());
    this.running++;
    this.maxConcurrent = Math.max(this.maxConcurrent, this.running);
    try {
      if (this.block) await new Promise<void>((resolve) => (this.release = resolve));
      if (this.failures > 0) {
        this.failures--;
        throw new Error('sync failed');
      }
    } finally {
      this.running--;
    }
  };

  finish(): void {
    this.block = false;
    this.release?.();
    this.release = undefined;
  }
}

describe('BoundedFrequencyRunner', () => {
  let clock: FakeClock;
  let work: Work;
  let runner: BoundedFrequencyRunner;

  function make(extra: { minIntervalMs?: number; maxIntervalMs?: number } = {}): void {
    runner = new BoundedFrequencyRunner({
      name: 'test',
      fn: work.fn,
      minIntervalMs: extra.minIntervalMs ?? 1000,
      maxIntervalMs: extra.maxIntervalMs ?? 30_000,
      clock,
      log: silentLogger(),
    });
  }

  beforeEach(() => {
    clock = new FakeClock();
    work = new Work(clock);
    make();
  });

  afterEach(async () => {
    await runner.stop();
  });

  it('runs once right away on start, and not before', async () => {
    runner.run();
    await clock.advance(10_000);
    assert.deepEqual(work.starts, [], 'run() before start() waits for start');
    runner.start();
    await clock.advance(0);
    assert.deepEqual(work.starts, [10_000]);
  });

  it('collapses a burst of 100 run() calls into one run, at min interval', async () => {
    runner.start();
    await clock.advance(0);
    for (let i = 0; i < 100; i++) runner.run();
    await clock.advance(999);
    assert.equal(work.starts.length, 1, 'no run before min interval');
    await clock.advance(1);
    assert.deepEqual(work.starts, [0, 1000]);
    await clock.advance(5000);
    assert.equal(work.starts.length, 2, 'nothing more without new requests');
  });

  it('runs at once when the last run was longer ago than min interval', async () => {
    runner.start();
    await clock.advance(5000);
    runner.run();
    for (let i = 0; i < 99; i++) runner.run();
    await clock.advance(0);
    assert.deepEqual(work.starts, [0, 5000]);
  });

  it('never runs more often than min interval under a steady stream of requests', async () => {
    runner.start();
    for (let t = 0; t < 10_000; t += 100) {
      runner.run();
      await clock.advance(100);
    }
    const gaps = work.starts.slice(1).map((s, i) => s - work.starts[i]!);
    assert.ok(
      gaps.every((g) => g >= 1000),
      `gaps ${gaps.join(',')}`,
    );
    // Runs at 0, 1000, ..., 10000: every min interval, no more.
    assert.equal(work.starts.length, 11);
  });

  it('runs at least every max interval without requests', async () => {
    make({ minIntervalMs: 1000, maxIntervalMs: 30_000 });
    runner.start();
    await clock.advance(95_000);
    assert.deepEqual(work.starts, [0, 30_000, 60_000, 90_000]);
  });

  it('never runs twice at once; requests during a run give exactly one more run', async () => {
    runner.start();
    work.block = true;
    await clock.advance(0);
    assert.equal(work.running, 1);
    for (let i = 0; i < 50; i++) runner.run();
    await clock.advance(10_000);
    assert.equal(work.starts.length, 1, 'no second run while the first is in progress');
    work.finish();
    await clock.advance(0);
    assert.deepEqual(work.starts, [0, 10_000], 'one run after, at once: min interval has passed');
    await clock.advance(20_000);
    assert.equal(work.starts.length, 2);
    assert.equal(work.maxConcurrent, 1);
  });

  it('retries failures with growing delays regardless of run(), and stops after a success', async () => {
    make({ minIntervalMs: 0, maxIntervalMs: 30_000 });
    work.failures = 6;
    runner.start();
    await clock.advance(0);
    // Requests during the backoff do not bring the retry forward.
    runner.run();
    runner.run();
    await clock.advance(200_000);
    const gaps = work.starts.slice(1).map((s, i) => s - work.starts[i]!);
    // Six failures: 1, 2, 4, 8, 16, 30 (capped) seconds; then success; then the periodic run.
    assert.deepEqual(gaps.slice(0, 6), [1000, 2000, 4000, 8000, 16_000, 30_000]);
    assert.deepEqual(
      gaps.slice(6),
      gaps.slice(6).map(() => 30_000),
      'back to max interval',
    );
  });

  it('resets the backoff after a success', async () => {
    make({ minIntervalMs: 0, maxIntervalMs: 30_000 });
    work.failures = 3;
    runner.start();
    await clock.advance(7000); // fails at 0, 1000, 3000; succeeds at 7000
    assert.deepEqual(work.starts, [0, 1000, 3000, 7000]);
    work.failures = 1;
    runner.run();
    await clock.advance(0);
    await clock.advance(1000);
    assert.deepEqual(work.starts, [0, 1000, 3000, 7000, 7000, 8000], 'first retry 1 s again');
  });

  it('honours a custom retry backoff and min interval as a floor for retries', async () => {
    runner = new BoundedFrequencyRunner({
      name: 'custom',
      fn: work.fn,
      minIntervalMs: 2000,
      maxIntervalMs: 60_000,
      retryBackoff: { initialMs: 500, maxMs: 4000 },
      clock,
      log: silentLogger(),
    });
    work.failures = 5;
    runner.start();
    await clock.advance(20_000);
    const gaps = work.starts.slice(1).map((s, i) => s - work.starts[i]!);
    assert.deepEqual(gaps, [2000, 2000, 2000, 4000, 4000]);
  });

  it('stop() waits for the run in progress and leaves no timers', async () => {
    runner.start();
    work.block = true;
    await clock.advance(0);
    runner.run();
    let stopped = false;
    const stopping = runner.stop().then(() => (stopped = true));
    await settle();
    assert.equal(stopped, false, 'still running');
    work.finish();
    await stopping;
    assert.equal(clock.pending, 0, 'no timers left');
    runner.run();
    runner.start();
    await clock.advance(100_000);
    assert.equal(work.starts.length, 1, 'nothing runs after stop');
    assert.equal(clock.pending, 0);
  });

  it('stop() before start leaves no timers', async () => {
    runner.run();
    await runner.stop();
    assert.equal(clock.pending, 0);
  });

  it('rejects impossible intervals with CONFIG_INVALID', () => {
    for (const [min, max] of [
      [-1, 10],
      [10, 5],
      [0, 0],
      [Number.NaN, 10],
    ] as const) {
      assert.throws(
        () =>
          new BoundedFrequencyRunner({
            name: 'bad',
            fn: async () => {},
            minIntervalMs: min,
            maxIntervalMs: max,
            log: silentLogger(),
          }),
        (err: unknown) => hasCode(err, ErrorCodes.CONFIG_INVALID),
      );
    }
  });
});
