import { strict as assert } from 'node:assert';
import { collectGarbage } from '../src/util/collect-garbage.js';

describe('collectGarbage', () => {
  it('collects an object nothing refers to any more, without --expose-gc', async () => {
    assert.equal(typeof (globalThis as { gc?: unknown }).gc, 'undefined', 'mocha runs without --expose-gc');
    const ref = ((): WeakRef<object> => new WeakRef({ big: new Array(1000).fill(0) }))();
    // A WeakRef's target lives until the job that made it ends.
    await new Promise((resolve) => setImmediate(resolve));
    collectGarbage();
    assert.equal(ref.deref(), undefined);
  });

  it('can be called again', () => {
    collectGarbage();
    collectGarbage();
  });
});
