import assert from 'node:assert/strict';
import fc from 'fast-check';
import { buildState } from '../../src/model/build-state.js';
import { silentLogger } from '../../src/log.js';
import { StateBuilder } from '../../src/model/state-builder.js';
import { fullTransaction, NftApplier, partialTransaction, renderRuleset } from '../../src/rules/apply.js';
import { compile, Compiler, type CompileConfig } from '../../src/rules/compile.js';
import { FakeNft } from '../../src/rules/nft/fake.js';
import { ObjectStore } from '../../src/watch/object-store.js';
import { clusterArb, MODEL_CONFIG, objectsOf, syncStore, type ClusterSpec } from '../support/arbitraries.js';

const CONFIG: CompileConfig = {
  table: 'kube-nftproxy',
  clusterCIDRs: ['10.244.0.0/16', 'fd00:244::/48'],
  masqueradeAll: false,
  serviceCIDRs: ['10.96.0.0/16'],
  nodePortIPs: { ipv4: ['192.168.0.10'], ipv6: ['fd00:1::10'] },
  maglevSeed: 7,
};

const rulesOf = (spec: ClusterSpec) => compile(buildState(objectsOf(spec), MODEL_CONFIG), CONFIG);

describe('apply: partial transactions', () => {
  it('full(A) then partial(A→B) leaves exactly what full(B) leaves, for random clusters', async () => {
    await fc.assert(
      fc.asyncProperty(clusterArb, clusterArb, async (a, b) => {
        const ra = rulesOf(a);
        const rb = rulesOf(b);
        const stepwise = new FakeNft();
        await stepwise.run(fullTransaction(ra));
        await stepwise.run(partialTransaction(ra, rb));
        const direct = new FakeNft();
        await direct.run(fullTransaction(rb));
        assert.equal(stepwise.dump(), direct.dump());
      }),
      { numRuns: 150 },
    );
  });

  it('the daemon’s incremental path (builder → compiler → applier deltas) ends where full(B) does, step after step', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(clusterArb, { minLength: 2, maxLength: 5 }), async (steps) => {
        const store = new ObjectStore();
        const builder = new StateBuilder(MODEL_CONFIG);
        const compiler = new Compiler(CONFIG);
        const nft = new FakeNft();
        const applier = new NftApplier({ nft, log: silentLogger() });
        for (const [i, spec] of steps.entries()) {
          const objects = objectsOf(spec);
          syncStore(store, objects);
          const { services } = store.takeChanges();
          const state = builder.update(
            store.modelSource(MODEL_CONFIG.nodeName),
            i === 0 ? undefined : services,
          );
          const rules = compiler.compile(state, builder.delta);
          if (i > 0) assert.ok(compiler.delta, 'an incremental compile says what changed');
          await applier.sync(rules, compiler.delta ? { delta: compiler.delta } : {});
          const fresh = rulesOf(spec);
          assert.equal(renderRuleset(rules), renderRuleset(fresh), 'the same ruleset whatever the history');
          const direct = new FakeNft();
          await direct.run(fullTransaction(fresh));
          assert.equal(nft.dump(), direct.dump());
        }
      }),
      { numRuns: 100 },
    );
  });

  it('an incremental compile rewrites a recorder whose rules change under the same name (affinity timeout)', () => {
    const sticky = (affinitySeconds: number): ClusterSpec => [
      {
        type: 'NodePort',
        udp: false,
        eTPLocal: false,
        iTPLocal: false,
        externalIP: false,
        ranges: false,
        ipv6: false,
        affinity: true,
        affinitySeconds,
        maglev: false,
        endpoints: [{ host: 2, local: true, ready: true, serving: true, terminating: false }],
      },
    ];
    const store = new ObjectStore();
    const builder = new StateBuilder(MODEL_CONFIG);
    const compiler = new Compiler(CONFIG);
    syncStore(store, objectsOf(sticky(60)));
    compiler.compile(builder.update(store.modelSource(MODEL_CONFIG.nodeName)));
    store.takeChanges();
    syncStore(store, objectsOf(sticky(999)));
    const state = builder.update(store.modelSource(MODEL_CONFIG.nodeName), store.takeChanges().services);
    const rules = compiler.compile(state, builder.delta);
    assert.match(renderRuleset(rules), /timeout 999s/);
    assert.equal(renderRuleset(rules), renderRuleset(rulesOf(sticky(999))));
  });

  it('a change of one Service’s endpoints is element operations on that Service only', () => {
    const base: ClusterSpec = [0, 1, 2].map(() => ({
      type: 'ClusterIP' as const,
      udp: false,
      eTPLocal: false,
      iTPLocal: false,
      externalIP: false,
      ranges: false,
      ipv6: false,
      affinity: false,
      maglev: false,
      endpoints: [2, 3, 4].map((host) => ({
        host,
        local: true,
        ready: true,
        serving: true,
        terminating: false,
      })),
    }));
    const changed = structuredClone(base);
    changed[1]!.endpoints[2]!.host = 9;
    const tx = partialTransaction(rulesOf(base), rulesOf(changed));
    assert.equal(
      tx.toString(),
      [
        // 10.244.1.4 stays: the other two Services still use it.
        'add element ip kube-nftproxy hairpin { 10.244.1.9 . 10.244.1.9 }',
        'delete element ip kube-nftproxy backends-tcp { 10.96.0.2 . tcp . 80 . 2 }',
        'add element ip kube-nftproxy backends-tcp { 10.96.0.2 . tcp . 80 . 2 : 10.244.1.9 . 8080 }',
        '',
      ].join('\n'),
    );
  });

  it('full(A) then partial(A→B) equals full(B) for Maglev Services losing and gaining endpoints', async () => {
    const svc = (hosts: number[]): ClusterSpec[number] => ({
      type: 'NodePort',
      udp: false,
      eTPLocal: false,
      iTPLocal: false,
      externalIP: false,
      ranges: false,
      ipv6: false,
      affinity: true,
      maglev: true,
      endpoints: hosts.map((host) => ({ host, local: true, ready: true, serving: true, terminating: false })),
    });
    const steps = [[svc([2, 3, 4])], [svc([2, 4])], [svc([2, 4, 5, 6])], []];
    for (let i = 1; i < steps.length; i++) {
      const stepwise = new FakeNft();
      await stepwise.run(fullTransaction(rulesOf(steps[i - 1]!)));
      const tx = partialTransaction(rulesOf(steps[i - 1]!), rulesOf(steps[i]!));
      await stepwise.run(tx);
      const direct = new FakeNft();
      await direct.run(fullTransaction(rulesOf(steps[i]!)));
      assert.equal(stepwise.dump(), direct.dump());
      if (i === 1) {
        // Maglev moves only the removed endpoint's slots: about 1/3 of them, not all.
        const moved = tx.operations.filter((op) => op.verb === 'add' && op.object.kind === 'element').length;
        assert.ok(moved > 0 && moved < (16381 * 2) / 2, `moved ${moved} slot elements`);
      }
    }
  });

  it('after a failed transaction the next sync is a full replacement', async () => {
    const fake = new FakeNft();
    const applier = new NftApplier({ nft: fake, log: silentLogger() });
    const spec: ClusterSpec = [
      {
        type: 'ClusterIP',
        udp: false,
        eTPLocal: false,
        iTPLocal: false,
        externalIP: false,
        ranges: false,
        ipv6: false,
        affinity: false,
        maglev: false,
        endpoints: [],
      },
    ];
    assert.equal((await applier.sync(rulesOf(spec))).full, true);
    assert.equal((await applier.sync(rulesOf(spec))).operations, 0, 'nothing changed, nothing sent');
    fake.failNext();
    await assert.rejects(applier.sync(rulesOf([])));
    const next = await applier.sync(rulesOf([]));
    assert.equal(next.full, true);
    const direct = new FakeNft();
    await direct.run(fullTransaction(rulesOf([])));
    assert.equal(fake.dump(), direct.dump());
  });
});
