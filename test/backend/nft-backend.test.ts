import assert from 'node:assert/strict';
import fc from 'fast-check';
import { NftBackend } from '../../src/backend/nft-backend.js';
import { silentLogger } from '../../src/log.js';
import { buildState } from '../../src/model/build-state.js';
import { StateBuilder } from '../../src/model/state-builder.js';
import { fullTransaction, renderRuleset } from '../../src/rules/diff.js';
import { compile } from '../../src/rules/compile.js';
import { FakeNft } from '../../src/rules/nft/fake.js';
import { createMetrics } from '../../src/server/metrics.js';
import { ObjectStore } from '../../src/watch/object-store.js';
import { clusterArb, MODEL_CONFIG, objectsOf, syncStore, COMPILE_CONFIG } from '../support/arbitraries.js';
import { FakeClock } from '../support/fake-clock.js';

const CONFIG = COMPILE_CONFIG;

describe('NftBackend', () => {
  it('a full sync, then an incremental one with the model’s delta, ends where a fresh full compile does', async () => {
    await fc.assert(
      fc.asyncProperty(clusterArb, clusterArb, async (a, b) => {
        const nft = new FakeNft();
        const clock = new FakeClock();
        const backend = new NftBackend({
          nft,
          log: silentLogger(),
          clock,
          table: CONFIG.table,
          compileConfig: () => CONFIG,
          metrics: createMetrics(),
          logSkipped: () => undefined,
        });
        const store = new ObjectStore();
        const builder = new StateBuilder(MODEL_CONFIG);
        const model = (changed?: Iterable<string>) =>
          builder.update(store.modelSource(MODEL_CONFIG.nodeName), changed);

        syncStore(store, objectsOf(a));
        store.takeChanges();
        const first = await backend.sync(model().state, undefined, { changedServices: [], now: clock.now() });
        assert.equal(first.full, true, 'the first sync replaces everything');

        syncStore(store, objectsOf(b));
        const { services } = store.takeChanges();
        const { state, delta } = model(services);
        const second = await backend.sync(state, delta, {
          changedServices: services,
          now: clock.now(),
        });
        assert.equal(second.full, false, 'within the full-sync period, a sync applies only what changed');

        const fresh = compile(buildState(objectsOf(b), MODEL_CONFIG), CONFIG);
        assert.equal(backend.rules(), renderRuleset(fresh), 'the same ruleset whatever the history');
        const direct = new FakeNft();
        await direct.run(fullTransaction(fresh));
        assert.equal(nft.dump(), direct.dump(), 'the same tables in nft');
        assert.deepEqual(
          second.programmed.ports.map((sp) => sp.key),
          state.ports.map((sp) => sp.key),
          'nothing held out or over budget: every port is programmed',
        );
      }),
      { numRuns: 100 },
    );
  });
});
