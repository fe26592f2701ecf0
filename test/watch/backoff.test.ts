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

  it('rejects options that make no sense', function () {
    for (const opts of [
      { initialMs: 0, maxMs: 10 },
      { initialMs: 10, maxMs: 5 },
      { initialMs: Number.NaN, maxMs: 5 },
    ]) {
      assert.throws(
        () => new Backoff(opts),
        (err) => hasCode(err, ErrorCodes.CONFIG_INVALID),
      );
    }
  });
});
