import assert from 'node:assert/strict';
import { TokenBucket } from '../../src/events/token-bucket.js';

describe('TokenBucket', () => {
  it('gives `burst` tokens at once, then one per refill period, never more than `burst`', () => {
    const bucket = new TokenBucket(3, 1000, 0);
    assert.deepEqual(
      [1, 2, 3, 4].map(() => bucket.take(0)),
      [true, true, true, false],
    );
    assert.equal(bucket.take(999), false, 'not a whole token yet');
    assert.equal(bucket.take(1000), true, 'one token a period');
    assert.equal(bucket.take(1000), false);
    assert.equal(bucket.full(1000), false);
    // A long quiet spell refills to the burst and no further.
    assert.equal(bucket.full(1_000_000), true);
    assert.deepEqual(
      [1, 2, 3, 4].map(() => bucket.take(1_000_000)),
      [true, true, true, false],
    );
  });

  it('refills nothing when the clock steps back', () => {
    const bucket = new TokenBucket(1, 1000, 5000);
    assert.equal(bucket.take(5000), true);
    assert.equal(bucket.take(100), false);
    assert.equal(bucket.take(1099), false, 'measured from where the clock went back to');
    assert.equal(bucket.take(1100), true);
  });
});
