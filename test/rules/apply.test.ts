import assert from 'node:assert/strict';
import type { V1EndpointSlice, V1Service } from '@kubernetes/client-node';
import fc from 'fast-check';
import { buildState } from '../../src/model/build-state.js';
import { silentLogger } from '../../src/log.js';
import { StateBuilder } from '../../src/model/state-builder.js';
import { NftApplier } from '../../src/rules/applier.js';
import { fullTransaction, partialTransaction, renderRuleset } from '../../src/rules/diff.js';
import { compile, Compiler } from '../../src/rules/compile.js';
import type { Nft } from '../../src/rules/nft/exec.js';
import { FakeNft } from '../../src/rules/nft/fake.js';
import { Transaction } from '../../src/rules/nft/transaction.js';
import type { Element } from '../../src/rules/nft/types.js';
import { ObjectStore } from '../../src/watch/object-store.js';
import {
  clusterArb,
  collidingClusterArb,
  collidingObjectsOf,
  MODEL_CONFIG,
  objectsOf,
  syncStore,
  type ClusterSpec,
  COMPILE_CONFIG,
} from '../support/arbitraries.js';
import { service, slice } from '../support/objects.js';

const CONFIG = COMPILE_CONFIG;

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

  /** Steps of clusters through store → builder → compiler → applier: each ends where full() does. */
  async function incrementalMatchesFull(
    steps: Array<{ services: V1Service[]; slices: V1EndpointSlice[] }>,
  ): Promise<void> {
    const store = new ObjectStore();
    const builder = new StateBuilder(MODEL_CONFIG);
    const compiler = new Compiler(CONFIG);
    const nft = new FakeNft();
    const applier = new NftApplier({ nft, log: silentLogger() });
    for (const [i, objects] of steps.entries()) {
      syncStore(store, objects);
      const { services } = store.takeChanges();
      const model = builder.update(store.modelSource(MODEL_CONFIG.nodeName), i === 0 ? undefined : services);
      const { ruleset: rules, delta } = compiler.compile(model.state, model.delta);
      if (i > 0) assert.ok(delta, 'an incremental compile says what changed');
      await applier.sync(rules, delta ? { delta } : {});
      const fresh = compile(buildState(objects, MODEL_CONFIG), CONFIG);
      assert.equal(renderRuleset(rules), renderRuleset(fresh), 'the same ruleset whatever the history');
      const direct = new FakeNft();
      await direct.run(fullTransaction(fresh));
      assert.equal(nft.dump(), direct.dump());
    }
  }

  it('the daemon’s incremental path (builder → compiler → applier deltas) ends where full(B) does, step after step', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(clusterArb, { minLength: 2, maxLength: 5 }), (steps) =>
        incrementalMatchesFull(steps.map(objectsOf)),
      ),
      { numRuns: 100 },
    );
  });

  it('the same for colliding clusters: contested frontends change hands incrementally as a full build decides', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(collidingClusterArb, { minLength: 2, maxLength: 5 }), (steps) =>
        incrementalMatchesFull(steps.map(collidingObjectsOf)),
      ),
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
    compiler.compile(builder.update(store.modelSource(MODEL_CONFIG.nodeName)).state);
    store.takeChanges();
    syncStore(store, objectsOf(sticky(999)));
    const { state, delta } = builder.update(
      store.modelSource(MODEL_CONFIG.nodeName),
      store.takeChanges().services,
    );
    const rules = compiler.compile(state, delta).ruleset;
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
        'delete element ip kube-nftproxy backends-tcp { 10.96.0.2 . 80 . 2 }',
        'add element ip kube-nftproxy backends-tcp { 10.96.0.2 . 80 . 2 : 10.244.1.9 . 8080 }',
        '',
      ].join('\n'),
    );
  });

  it('the incremental path ends where full(B) does for random Maglev clusters', async () => {
    // Few Services and runs: every endpoint list is a table of 251 to 16381 slots.
    const maglevArb = clusterArb.map((c) => c.slice(0, 3).map((s) => ({ ...s, maglev: true })));
    await fc.assert(
      fc.asyncProperty(fc.array(maglevArb, { minLength: 2, maxLength: 3 }), async (steps) => {
        const store = new ObjectStore();
        const builder = new StateBuilder(MODEL_CONFIG);
        const compiler = new Compiler(CONFIG);
        const nft = new FakeNft();
        const applier = new NftApplier({ nft, log: silentLogger() });
        for (const [i, spec] of steps.entries()) {
          syncStore(store, objectsOf(spec));
          const { services } = store.takeChanges();
          const model = builder.update(
            store.modelSource(MODEL_CONFIG.nodeName),
            i === 0 ? undefined : services,
          );
          const { ruleset: rules, delta } = compiler.compile(model.state, model.delta);
          await applier.sync(rules, delta ? { delta } : {});
          const direct = new FakeNft();
          await direct.run(fullTransaction(rulesOf(spec)));
          assert.equal(nft.dump(), direct.dump());
        }
      }),
      { numRuns: 6 },
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
      const elementOps = tx.operations.filter((op) => op.object.kind === 'element').length;
      if (i === 1) {
        // Maglev moves only the removed endpoint's slots: about 1/3 of them, not all, and once
        // for the table its ClusterIP and NodePort share.
        const moved = tx.operations.filter((op) => op.verb === 'add' && op.object.kind === 'element').length;
        assert.ok(moved > 0 && moved < 16381 / 2, `moved ${moved} slot elements`);
      }
      if (i === 3) {
        // The Service goes: its table's slots go with its map, not one by one.
        assert.ok(elementOps < 20, `${elementOps} element operations`);
        assert.ok(tx.operations.some((op) => op.verb === 'delete' && op.object.kind === 'map'));
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

describe('apply: session affinity across full syncs', () => {
  const VIP = '10.96.5.1';
  /** One sticky ClusterIP (600 s) over these endpoints on port 8080. */
  const sticky = (endpoints: string[]) =>
    compile(
      buildState(
        {
          services: [
            service('ns', 'web', {
              clusterIP: VIP,
              sessionAffinity: 'ClientIP',
              sessionAffinityConfig: { clientIP: { timeoutSeconds: 600 } },
              ports: [{ port: 80 }],
            }),
          ],
          slices: [
            slice(
              'ns',
              'web-1',
              'web',
              [{ port: 8080 }],
              endpoints.map((ip) => ({ ip })),
            ),
          ],
        },
        MODEL_CONFIG,
      ),
      CONFIG,
    );
  /** What the recorder chain would put in the map for a client that reached `endpoint`, 180 s ago. */
  const stuck = (client: string, endpoint: string): Element => ({
    kind: 'element',
    family: 'ip',
    table: CONFIG.table,
    set: 'affinity-tcp',
    key: `${VIP} . 80 . ${client}`,
    value: `${endpoint} . 8080`,
    timeout: '600s',
    expires: '420s',
  });
  /** client → `endpoint (timeout/expires)`, as the (fake) kernel lists affinity-tcp. */
  const affinity = async (nft: Nft): Promise<Record<string, string>> => {
    const json = await nft.listMapJson('ip', CONFIG.table, 'affinity-tcp');
    if (json === '') return {};
    const doc = JSON.parse(json) as {
      nftables: Array<{
        map?: {
          elem: Array<
            [
              { elem: { val: { concat: unknown[] }; timeout?: number; expires?: number } },
              { concat: unknown[] },
            ]
          >;
        };
      }>;
    };
    const out: Record<string, string> = {};
    for (const [k, v] of doc.nftables.find((o) => o.map)!.map!.elem)
      out[String(k.elem.val.concat[2])] = `${v.concat.join(':')} (${k.elem.timeout}/${k.elem.expires})`;
    return out;
  };

  it('a client stuck to an endpoint keeps it, with the time it had left, across invalidate() and a restart', async () => {
    const fake = new FakeNft();
    const first = new NftApplier({ nft: fake, log: silentLogger() });
    await first.sync(sticky(['10.244.0.1', '10.244.0.2']));
    // The packet path, standing in: two clients got an endpoint each.
    await fake.run(
      new Transaction().add(stuck('192.0.2.10', '10.244.0.1')).add(stuck('192.0.2.11', '10.244.0.2')),
    );
    const before = await affinity(fake);
    assert.deepEqual(before, {
      '192.0.2.10': '10.244.0.1:8080 (600/420)',
      '192.0.2.11': '10.244.0.2:8080 (600/420)',
    });

    first.invalidate();
    const resync = await first.sync(sticky(['10.244.0.1', '10.244.0.2']));
    assert.equal(resync.full, true);
    assert.match(first.lastTransaction, /^delete table ip kube-nftproxy$/m, 'a full replacement');
    assert.deepEqual(await affinity(fake), before, 'after invalidate() and a full sync');

    const restarted = new NftApplier({ nft: fake, log: silentLogger() });
    assert.equal((await restarted.sync(sticky(['10.244.0.1', '10.244.0.2']))).full, true);
    assert.deepEqual(await affinity(fake), before, 'after a restart');
  });

  it('a full sync does not bring back entries to an endpoint that is gone, nor of a frontend no longer sticky', async () => {
    const fake = new FakeNft();
    await new NftApplier({ nft: fake, log: silentLogger() }).sync(sticky(['10.244.0.1', '10.244.0.2']));
    await fake.run(
      new Transaction().add(stuck('192.0.2.10', '10.244.0.1')).add(stuck('192.0.2.11', '10.244.0.2')),
    );
    const restarted = new NftApplier({ nft: fake, log: silentLogger() });
    await restarted.sync(sticky(['10.244.0.2', '10.244.0.3']));
    assert.deepEqual(await affinity(fake), { '192.0.2.11': '10.244.0.2:8080 (600/420)' });

    const plain = compile(
      buildState(
        {
          services: [service('ns', 'web', { clusterIP: VIP, ports: [{ port: 80 }] })],
          slices: [slice('ns', 'web-1', 'web', [{ port: 8080 }], [{ ip: '10.244.0.2' }])],
        },
        MODEL_CONFIG,
      ),
      CONFIG,
    );
    restarted.invalidate();
    await restarted.sync(plain);
    assert.deepEqual(await affinity(fake), {}, 'affinity switched off: nothing kept');
  });

  it('a full sync that cannot read the affinity map still applies, without the old entries', async () => {
    const fake = new FakeNft();
    await new NftApplier({ nft: fake, log: silentLogger() }).sync(sticky(['10.244.0.1']));
    await fake.run(new Transaction().add(stuck('192.0.2.10', '10.244.0.1')));
    const blind: Nft = {
      run: (tx) => fake.run(tx),
      check: (tx) => fake.check(tx),
      list: (family, table) => fake.list(family, table),
      listMapJson: () => Promise.reject(new Error('nft: cannot list')),
      version: () => fake.version(),
    };
    const result = await new NftApplier({ nft: blind, log: silentLogger() }).sync(
      sticky(['10.244.0.1', '10.244.0.2']),
    );
    assert.equal(result.full, true);
    assert.match(fake.dump(), /10\.244\.0\.2 \. 8080/, 'the new endpoint is in');
    assert.deepEqual(await affinity(fake), {});
  });
});

describe('apply: IPv6 session affinity (a group’s own maps)', () => {
  const VIP = 'fd00:96::5';
  const sticky6 = (endpoints: string[]) =>
    compile(
      buildState(
        {
          services: [
            service('ns', 'web6', {
              ipFamilies: ['IPv6'],
              clusterIP: VIP,
              clusterIPs: [VIP],
              sessionAffinity: 'ClientIP',
              sessionAffinityConfig: { clientIP: { timeoutSeconds: 600 } },
              ports: [{ port: 80 }],
            }),
          ],
          slices: [
            slice(
              'ns',
              'web6-1',
              'web6',
              [{ port: 8080 }],
              endpoints.map((ip) => ({ ip })),
              'IPv6',
            ),
          ],
        },
        MODEL_CONFIG,
      ),
      CONFIG,
    );
  const mapName = (rs: ReturnType<typeof sticky6>): string => rs.fragments[0]!.sticky![0]!.store.map;
  /** What the recorder chain would put in the group's two maps for a client of `endpoint`. */
  const stuck = (map: string, client: string, endpoint: string): Element[] =>
    [
      [map, endpoint],
      [`${map}-port`, '8080'],
    ].map(([set, value]) => ({
      kind: 'element',
      family: 'ip6',
      table: CONFIG.table,
      set: set!,
      key: client,
      value: value!,
      timeout: '600s',
      expires: '420s',
    }));
  /** client → `address port`, as the (fake) kernel lists the group's maps. */
  const affinity = async (nft: Nft, map: string): Promise<Record<string, string>> => {
    const read = async (name: string): Promise<Array<[{ elem: { val: string } }, string | number]>> => {
      const json = await nft.listMapJson('ip6', CONFIG.table, name);
      if (json === '') return [];
      const doc = JSON.parse(json) as {
        nftables: Array<{ map?: { elem?: Array<[{ elem: { val: string } }, string | number]> } }>;
      };
      return doc.nftables.find((o) => o.map)!.map!.elem ?? [];
    };
    const out: Record<string, string> = {};
    for (const [k, v] of await read(map)) out[k.elem.val] = String(v);
    for (const [k, v] of await read(`${map}-port`)) out[k.elem.val] = `${out[k.elem.val]} ${v}`;
    return out;
  };

  it('keeps a client’s endpoint across a full sync and forgets it when the endpoint goes', async () => {
    const fake = new FakeNft();
    const applier = new NftApplier({ nft: fake, log: silentLogger() });
    const rs = sticky6(['fd00:244::1', 'fd00:244::2']);
    await applier.sync(rs);
    const map = mapName(rs);
    const tx = new Transaction();
    for (const el of [...stuck(map, 'fd00:1::10', 'fd00:244::1'), ...stuck(map, 'fd00:1::11', 'fd00:244::2')])
      tx.add(el);
    await fake.run(tx);
    const before = await affinity(fake, map);
    assert.deepEqual(before, { 'fd00:1::10': 'fd00:244::1 8080', 'fd00:1::11': 'fd00:244::2 8080' });
    applier.invalidate();
    assert.equal((await applier.sync(sticky6(['fd00:244::1', 'fd00:244::2']))).full, true);
    assert.deepEqual(await affinity(fake, map), before, 'after a full sync');
    const partial = await applier.sync(sticky6(['fd00:244::2']));
    assert.equal(partial.full, false);
    assert.deepEqual(
      await affinity(fake, map),
      { 'fd00:1::11': 'fd00:244::2 8080' },
      'the gone endpoint’s client',
    );
    // The last endpoint goes: the group's maps go with the recorder, entries and all.
    const gone = await applier.sync(sticky6([]));
    assert.equal(gone.full, false);
    assert.equal(await fake.listMapJson('ip6', CONFIG.table, map), '');
  });
});
