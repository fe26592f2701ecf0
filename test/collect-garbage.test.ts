import { strict as assert } from 'node:assert';
import { getHeapSpaceStatistics } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { collectGarbage, SyncGarbage } from '../src/util/collect-garbage.js';
import { FakeClock } from './support/fake-clock.js';

/** The old generation's pages, in MB: what stays resident of the heap. */
const oldSpaceMb = (): number =>
  getHeapSpaceStatistics().find((s) => s.space_name === 'old_space')!.space_size / 2 ** 20;

describe('collectGarbage', () => {
  it('collects an object nothing refers to any more, without --expose-gc', async () => {
    assert.equal(typeof (globalThis as { gc?: unknown }).gc, 'undefined', 'mocha runs without --expose-gc');
    const ref = ((): WeakRef<object> => new WeakRef({ big: new Array(1000).fill(0) }))();
    // A WeakRef's target lives until the job that made it ends.
    await new Promise((resolve) => setImmediate(resolve));
    collectGarbage();
    assert.equal(ref.deref(), undefined);
  });

  it('compacting, gives back the pages that garbage left partly used: the live objects are moved together', () => {
    collectGarbage();
    // After collectGarbage(), V8's own gc is exposed: a plain full collection, for comparison.
    const plainGc = runInNewContext('gc') as () => void;
    // 1,200,000 small objects through the old generation, two of every three then garbage: every
    // page keeps a third of what it held.
    const kept = ((): Array<{ n: number; s: string }> => {
      const all: Array<{ n: number; s: string }> = [];
      for (let i = 0; i < 1_200_000; i++) all.push({ n: i, s: `object ${i}` });
      plainGc();
      return all.filter((_, i) => i % 3 === 0);
    })();
    collectGarbage();
    const fragmented = oldSpaceMb();
    collectGarbage({ compact: true });
    const compacted = oldSpaceMb();
    assert.equal(kept.length, 400_000);
    assert.ok(
      compacted < fragmented - 50,
      `old space ${Math.round(fragmented)} MB after a plain collection, ${Math.round(compacted)} MB after a compacting one`,
    );
  });

  it('can be called again', () => {
    collectGarbage();
    collectGarbage();
  });
});

describe('SyncGarbage', () => {
  const setup = (): { clock: FakeClock; at: string[]; garbage: SyncGarbage } => {
    const clock = new FakeClock();
    const at: string[] = [];
    const garbage = new SyncGarbage({
      clock,
      collect: ({ compact }) => at.push(`${compact ? 'compact' : 'plain'}@${clock.now()}`),
      quietMs: 10_000,
      maxWaitMs: 60_000,
    });
    return { clock, at, garbage };
  };

  it('collects once a full sync is over, and compacts once no sync has followed for the quiet while', async () => {
    const { clock, at, garbage } = setup();
    garbage.synced(true);
    assert.deepEqual(at, [], 'not inside the sync');
    await clock.advance(0);
    assert.deepEqual(at, ['plain@0']);
    // Changes: each moves the compaction on.
    await clock.advance(3_000);
    garbage.synced(false);
    await clock.advance(9_000);
    garbage.synced(false);
    assert.deepEqual(at, ['plain@0']);
    await clock.advance(10_000);
    assert.deepEqual(at, ['plain@0', 'compact@22000']);
    // Nothing more until the next full sync: a partial sync leaves little.
    garbage.synced(false);
    await clock.advance(120_000);
    assert.deepEqual(at, ['plain@0', 'compact@22000']);
    assert.equal(clock.pending, 0);
  });

  it('compacts at the latest a minute after the full sync, however busy', async () => {
    const { clock, at, garbage } = setup();
    garbage.synced(true);
    for (let t = 0; t < 90_000; t += 5_000) {
      await clock.advance(5_000);
      garbage.synced(false);
    }
    assert.deepEqual(at, ['plain@0', 'compact@60000']);
  });

  it('collects nothing for partial syncs alone, and nothing once stopped', async () => {
    const { clock, at, garbage } = setup();
    garbage.synced(false);
    await clock.advance(60_000);
    assert.deepEqual(at, []);
    garbage.synced(true);
    garbage.stop();
    await clock.advance(60_000);
    assert.deepEqual(at, []);
    assert.equal(clock.pending, 0);
  });
});
