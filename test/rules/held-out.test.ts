import assert from 'node:assert/strict';
import fc from 'fast-check';
import { StateBuilder } from '../../src/model/state-builder.js';
import { NftApplier } from '../../src/rules/applier.js';
import { fullTransaction } from '../../src/rules/diff.js';
import { Compiler, type CompileConfig } from '../../src/rules/compile.js';
import { HeldOut } from '../../src/rules/held-out.js';
import { FakeNft } from '../../src/rules/nft/fake.js';
import { silentLogger } from '../../src/log.js';
import { ObjectStore } from '../../src/watch/object-store.js';
import { clusterArb, MODEL_CONFIG, objectsOf, syncStore } from '../support/arbitraries.js';

const CONFIG: CompileConfig = {
  table: 'kube-nftproxy',
  clusterCIDRs: ['10.244.0.0/16', 'fd00:244::/48'],
  masqueradeAll: false,
  serviceCIDRs: ['10.96.0.0/16'],
  nodePortIPs: { ipv4: ['192.168.0.10'], ipv6: ['fd00:1::10'] },
};

describe('HeldOut: the state without the Services nft refused', () => {
  it('leaves out their ports, lists them as skipped with the reason, and is the state itself when empty', () => {
    const store = new ObjectStore();
    syncStore(
      store,
      objectsOf(
        fc.sample(
          clusterArb.filter((c) => c.length >= 3),
          { numRuns: 1, seed: 3 },
        )[0]!,
      ),
    );
    const { state } = new StateBuilder(MODEL_CONFIG).update(store.modelSource(MODEL_CONFIG.nodeName));
    const held = new HeldOut();
    assert.equal(held.view(state).state, state);
    held.hold('ns/svc-1', 'Could not process rule: File exists');
    const { state: view } = held.view(state);
    assert.deepEqual(
      view.ports.map((sp) => sp.key),
      state.ports.filter((sp) => sp.service !== 'ns/svc-1').map((sp) => sp.key),
    );
    assert.deepEqual(view.skipped.at(-1), {
      kind: 'Service',
      name: 'ns/svc-1',
      reason: 'nft refused its rules: Could not process rule: File exists',
    });
    assert.deepEqual(held.release(['ns/svc-0', 'ns/svc-1']), ['ns/svc-1']);
    assert.equal(held.size, 0);
  });

  it('keeps the compiler incremental and exact while Services are held out and released, step after step', async () => {
    // Mostly the same cluster from step to step, so that holding and releasing is the change.
    const step = fc.record({
      cluster: fc.option(clusterArb, { freq: 3 }),
      hold: fc.subarray([0, 1, 2, 3, 4, 5, 6, 7]),
      release: fc.subarray([0, 1, 2, 3, 4, 5, 6, 7]),
    });
    await fc.assert(
      fc.asyncProperty(fc.array(step, { minLength: 2, maxLength: 5 }), async (steps) => {
        const store = new ObjectStore();
        const builder = new StateBuilder(MODEL_CONFIG);
        const compiler = new Compiler(CONFIG);
        const held = new HeldOut();
        const nft = new FakeNft();
        const applier = new NftApplier({ nft, log: silentLogger() });
        let cluster = steps[0]!.cluster ?? [];
        for (const [i, s] of steps.entries()) {
          cluster = s.cluster ?? cluster;
          syncStore(store, objectsOf(cluster));
          const { services } = store.takeChanges();
          held.release(s.release.map((n) => `ns/svc-${n}`));
          for (const n of s.hold) held.hold(`ns/svc-${n}`, 'refused');
          const model = builder.update(
            store.modelSource(MODEL_CONFIG.nodeName),
            i === 0 ? undefined : services,
          );
          const { state: view, delta } = held.view(model.state, model.delta);
          const compiled = compiler.compile(view, delta);
          const rules = compiled.ruleset;
          if (i > 0) assert.ok(compiled.delta, 'compiled incrementally');
          await applier.sync(rules, compiled.delta ? { delta: compiled.delta } : {});
          const direct = new FakeNft();
          await direct.run(fullTransaction(new Compiler(CONFIG).compile(view).ruleset));
          assert.equal(nft.dump(), direct.dump());
          for (const sp of view.ports) assert.ok(!held.has(sp.service));
        }
      }),
      { numRuns: 100 },
    );
  });
});
