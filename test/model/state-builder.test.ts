import assert from 'node:assert/strict';
import fc from 'fast-check';
import { buildState } from '../../src/model/build-state.js';
import { StateBuilder, type StateUpdate } from '../../src/model/state-builder.js';
import type { ProxyState } from '../../src/model/types.js';
import { ObjectStore } from '../../src/watch/object-store.js';
import { clusterArb, MODEL_CONFIG, objectsOf, syncStore } from '../support/arbitraries.js';
import { node, service, slice } from '../support/objects.js';

const json = (state: ProxyState): unknown => JSON.parse(JSON.stringify(state));

/** Every port outside the delta is the very object the base state had under that key. */
function assertDeltaHolds({ state, delta }: StateUpdate): void {
  assert.ok(delta, 'an update with a list of changes gives a delta');
  const before = new Map(delta.base.ports.map((sp) => [sp.key, sp]));
  for (const sp of state.ports) if (!delta.ports.has(sp.key)) assert.equal(sp, before.get(sp.key), sp.key);
  for (const key of before.keys())
    if (!delta.ports.has(key))
      assert.ok(
        state.ports.some((sp) => sp.key === key),
        `${key} vanished unnoted`,
      );
}

describe('StateBuilder', () => {
  it('joining only what changed gives buildState’s state, step after step, for random clusters', () => {
    fc.assert(
      fc.property(fc.array(clusterArb, { minLength: 2, maxLength: 5 }), (steps) => {
        const store = new ObjectStore();
        const builder = new StateBuilder(MODEL_CONFIG);
        steps.forEach((spec, i) => {
          const objects = objectsOf(spec);
          syncStore(store, objects);
          const { services } = store.takeChanges();
          const update = builder.update(
            store.modelSource(MODEL_CONFIG.nodeName),
            i === 0 ? undefined : services,
          );
          assert.deepEqual(json(update.state), json(buildState(objects, MODEL_CONFIG)));
          if (i > 0) assertDeltaHolds(update);
        });
      }),
      { numRuns: 150 },
    );
  });

  it('rejoins both Services when an endpoint’s slice is relabelled from one to the other', () => {
    const store = new ObjectStore();
    const builder = new StateBuilder(MODEL_CONFIG);
    store.upsert('Service', service('ns', 'a', { clusterIP: '10.96.0.1', ports: [{ port: 80 }] }));
    store.upsert('Service', service('ns', 'b', { clusterIP: '10.96.0.2', ports: [{ port: 80 }] }));
    store.upsert('EndpointSlice', slice('ns', 'x', 'a', [{ port: 8080 }], [{ ip: '10.244.0.5' }]));
    builder.update(store.modelSource('n1'));
    store.takeChanges();
    store.upsert('EndpointSlice', slice('ns', 'x', 'b', [{ port: 8080 }], [{ ip: '10.244.0.5' }]));
    const { state, delta } = builder.update(store.modelSource('n1'), store.takeChanges().services);
    assert.deepEqual(
      state.ports.map((sp) => [sp.key, sp.clusterEndpoints.map((e) => e.ip)]),
      [
        ['ns/a:/TCP/ipv4', []],
        ['ns/b:/TCP/ipv4', ['10.244.0.5']],
      ],
    );
    assert.deepEqual([...delta!.ports].sort(), ['ns/a:/TCP/ipv4', 'ns/b:/TCP/ipv4']);
  });

  it('hands a contested frontend to the next Service when its owner goes, and says that port changed', () => {
    const store = new ObjectStore();
    const builder = new StateBuilder(MODEL_CONFIG);
    const withIP = (name: string, ip: string) =>
      service('ns', name, { clusterIP: ip, externalIPs: ['192.0.2.1'], ports: [{ port: 80 }] });
    store.upsert('Service', withIP('x', '10.96.0.7'));
    store.upsert('Service', withIP('y', '10.96.0.8'));
    const first = builder.update(store.modelSource('n1')).state;
    assert.deepEqual(
      first.ports.map((sp) => sp.externalIPs),
      [['192.0.2.1'], []],
    );
    store.takeChanges();
    store.remove('Service', 'ns', 'x');
    const update = builder.update(store.modelSource('n1'), store.takeChanges().services);
    const second = update.state;
    assert.deepEqual(
      second.ports.map((sp) => [sp.key, sp.externalIPs]),
      [['ns/y:/TCP/ipv4', ['192.0.2.1']]],
    );
    assert.ok(update.delta!.ports.has('ns/y:/TCP/ipv4'), 'y changed though its objects did not');
    assertDeltaHolds(update);
  });

  it('joins everything again when the Node’s zone changes, as topology depends on it', () => {
    const store = new ObjectStore();
    const builder = new StateBuilder({ ...MODEL_CONFIG, nodeIPs: [] });
    store.upsert('Node', node('n1', ['192.168.0.10'], { 'topology.kubernetes.io/zone': 'z1' }));
    store.upsert('Service', service('ns', 'a', { clusterIP: '10.96.0.1', ports: [{ port: 80 }] }));
    const first = builder.update(store.modelSource('n1')).state;
    store.upsert('Node', node('n1', ['192.168.0.10'], { 'topology.kubernetes.io/zone': 'z2' }));
    const { state: second, delta } = builder.update(store.modelSource('n1'), store.takeChanges().services);
    assert.equal(delta, undefined, 'a full join has no delta');
    assert.equal(second.node.zone, 'z2');
    assert.notEqual(second.ports[0], first.ports[0]);
  });
});
