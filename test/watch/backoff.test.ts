import assert from 'node:assert/strict';
import { ErrorCodes, hasCode } from '../../src/errors.js';
import { Backoff } from '../../src/watch/backoff.js';

describe('Backoff', function () {
  it('doubles from initialMs, caps at maxMs, and starts over after reset()', function () {
    const b = new Backoff({ initialMs: 100, maxMs: 1000 });
    assert.deepEqual(
      Array.from({ length: 6 }, () => b.next()),
      [100, 200, 400, 800, 1000, 1000],
    );
    b.reset();
    assert.equal(b.next(), 100);
  });

  it('stays at maxMs however many failures pile up', function () {
    const b = new Backoff({ initialMs: 1, maxMs: 30_000 });
    for (let i = 0; i < 200; i++) b.next();
    assert.equal(b.next(), 30_000);
  });

  it('takes a random part of up to `jitter` off each delay, from the injected random source', function () {
    const draws = [0, 0.5, 0.999, 0.25, 0];
    const b = new Backoff({ initialMs: 100, maxMs: 400, jitter: 0.5 }, () => draws.shift() ?? 0);
    // Base delays 100, 200, 400, 400, 400; each shortened by jitter × draw of itself.
    assert.deepEqual(
      Array.from({ length: 5 }, () => b.next()),
      [100, 150, 200, 350, 400],
    );
  });

  it('spreads nodes that fail at the same instant, and never exceeds maxMs', function () {
    // 200 nodes, each with its own random source, all failing together: their first retries
    // must not coincide, and none waits longer than the cap or less than (1 - jitter) of it.
    let seed = 42;
    const lcg = (): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const firsts = new Set<number>();
    for (let node = 0; node < 200; node++) {
      const b = new Backoff({ initialMs: 500, maxMs: 30_000, jitter: 0.5 }, lcg);
      const first = b.next();
      firsts.add(first);
      assert.ok(first > 250 && first <= 500, `first delay ${first}`);
      for (let i = 0; i < 20; i++) b.next();
      const capped = b.next();
      assert.ok(capped > 15_000 && capped <= 30_000, `capped delay ${capped}`);
    }
    assert.ok(firsts.size > 100, `only ${firsts.size} distinct first delays among 200 nodes`);
  });

  it('rejects options that make no sense', function () {
    for (const opts of [
      { initialMs: 0, maxMs: 10 },
      { initialMs: 10, maxMs: 5 },
      { initialMs: Number.NaN, maxMs: 5 },
      { initialMs: 1, maxMs: 5, jitter: 1 },
      { initialMs: 1, maxMs: 5, jitter: -0.1 },
    ]) {
      assert.throws(
        () => new Backoff(opts),
        (err) => hasCode(err, ErrorCodes.CONFIG_INVALID),
      );
    }
  });
});
