import assert from 'node:assert/strict';
import { StateBuilder } from '../../src/model/state-builder.js';
import { Compiler, type CompileConfig } from '../../src/rules/compile.js';
import { ObjectStore } from '../../src/watch/object-store.js';
import { MODEL_CONFIG } from '../support/arbitraries.js';
import { service, slice } from '../support/objects.js';

const CONFIG: CompileConfig = {
  table: 'kube-nftproxy',
  clusterCIDRs: ['10.244.0.0/16'],
  masqueradeAll: false,
  serviceCIDRs: ['10.96.0.0/16'],
  nodePortIPs: { ipv4: ['192.168.0.10'], ipv6: [] },
  maglevSeed: 7,
};

const SERVICES = 5;
const PORTS = [
  { name: 'http', port: 80, protocol: 'TCP' as const },
  { name: 'dns', port: 53, protocol: 'UDP' as const },
];

/** Service i, two ports, and its slice with two endpoints whose last octet starts at `first`. */
function upsertService(store: ObjectStore, i: number, first: number): void {
  store.upsert('Service', service('ns', `svc-${i}`, { clusterIP: `10.96.0.${i + 1}`, ports: PORTS }));
  store.upsert(
    'EndpointSlice',
    slice('ns', `svc-${i}-1`, `svc-${i}`, PORTS, [
      { ip: `10.244.${i}.${first}` },
      { ip: `10.244.${i}.${first + 1}` },
    ]),
  );
}

/*
 * The identity contract (StateDelta, src/model/state-builder.ts), held of every layer at once:
 * ObjectStore change set → StateBuilder → Compiler. It breaks when any of them stops keeping an
 * unchanged port's objects, or names less (or, for the compiler, more) than what changed.
 */
describe('the identity contract, ObjectStore → StateBuilder → Compiler', () => {
  for (const changedIndex of [0, 2, SERVICES - 1]) {
    it(`a change of svc-${changedIndex}'s endpoints among ${SERVICES} Services: only its ports and fragments are new, and the deltas name exactly those`, () => {
      const store = new ObjectStore();
      const builder = new StateBuilder(MODEL_CONFIG);
      const compiler = new Compiler(CONFIG);
      for (let i = 0; i < SERVICES; i++) upsertService(store, i, 10);
      store.takeChanges();
      const first = builder.update(store.modelSource(MODEL_CONFIG.nodeName));
      assert.equal(first.delta, undefined, 'a full join promises nothing');
      const compiled = compiler.compile(first.state, first.delta);
      assert.equal(compiled.delta, undefined, 'a full compile promises nothing');
      assert.equal(first.state.ports.length, SERVICES * PORTS.length);

      const service = `ns/svc-${changedIndex}`;
      upsertService(store, changedIndex, 20);
      const { services: changed } = store.takeChanges();
      assert.deepEqual([...changed], [service], 'the store names the changed Service');

      const next = builder.update(store.modelSource(MODEL_CONFIG.nodeName), changed);
      const ownKeys = next.state.ports.filter((sp) => sp.service === service).map((sp) => sp.key);
      assert.equal(ownKeys.length, PORTS.length);

      // (a) Every other port is the very object it was.
      assert.ok(next.delta, 'an update told what changed gives a delta');
      assert.equal(next.delta.base, first.state, 'against the state it last gave');
      const before = new Map(first.state.ports.map((sp) => [sp.key, sp]));
      for (const sp of next.state.ports)
        if (sp.service === service) assert.notEqual(sp, before.get(sp.key), `${sp.key} changed`);
        else assert.equal(sp, before.get(sp.key), `${sp.key} is the same object`);
      // (b) The builder's delta names exactly the changed Service's port keys.
      assert.deepEqual([...next.delta.ports].sort(), [...ownKeys].sort());

      // (c) Every other fragment is the very object it was; the compiler's delta names exactly
      // the fragments it replaced, and those are new objects.
      const recompiled = compiler.compile(next.state, next.delta);
      assert.ok(recompiled.delta, 'a compile from the last state gives a delta');
      assert.equal(recompiled.delta.base, compiled.ruleset, 'against the ruleset it last gave');
      assert.deepEqual([...recompiled.delta.fragments].sort(), [...ownKeys].sort());
      const was = new Map(compiled.ruleset.fragments.map((f) => [f.key, f]));
      for (const f of recompiled.ruleset.fragments)
        if (recompiled.delta.fragments.has(f.key)) assert.notEqual(f, was.get(f.key), `${f.key} replaced`);
        else assert.equal(f, was.get(f.key), `${f.key} is the same object`);
      assert.equal(recompiled.ruleset.fragments.length, was.size);

      // (d) Services named changed whose objects are the same objects (a resync, a relist):
      // the same units, so the same ports, and deltas that name nothing.
      const all = next.state.ports.map((sp) => sp.service);
      const again = builder.update(store.modelSource(MODEL_CONFIG.nodeName), all);
      assert.ok(again.delta);
      assert.deepEqual([...again.delta.ports], [], 'nothing differs');
      again.state.ports.forEach((sp, i) =>
        assert.equal(sp, next.state.ports[i], `${sp.key} is the same object`),
      );
      const same = compiler.compile(again.state, again.delta);
      assert.deepEqual([...(same.delta?.fragments ?? ['no delta'])], [], 'no fragment replaced');
    });
  }
});
