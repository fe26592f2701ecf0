import assert from 'node:assert/strict';
import type { V1EndpointSlice, V1Service } from '@kubernetes/client-node';
import fc from 'fast-check';
import { buildState } from '../../src/model/build-state.js';
import { LAST_APPLIED_ANNOTATION, trimObject } from '../../src/watch/trim-object.js';
import { clusterArb, MODEL_CONFIG, objectsOf } from '../support/arbitraries.js';
import { service, slice } from '../support/objects.js';

/** A slice as a real API server lists it: everything the proxy never reads included. */
function fullSlice(): V1EndpointSlice {
  const s = slice(
    'prod',
    'web-abc',
    'web',
    [{ name: 'http', port: 8080 }],
    [
      { ip: '10.0.0.1', ready: true, serving: true, terminating: false, nodeName: 'n1' },
      { ip: '10.0.0.2', ready: true, serving: true, terminating: false, nodeName: 'n2' },
      { ip: '10.0.0.3', ready: false, serving: true, terminating: true, nodeName: 'n2' },
      { ip: '10.0.0.4' },
    ],
  );
  s.metadata = {
    ...s.metadata,
    uid: '6f0a0f5e-0000-4000-8000-000000000001',
    resourceVersion: '42',
    generation: 3,
    creationTimestamp: '2026-01-01T00:00:00Z' as unknown as Date,
    generateName: 'web-',
    annotations: { 'endpoints.kubernetes.io/last-change-trigger-time': '2026-01-01T00:00:01Z' },
    ownerReferences: [{ apiVersion: 'v1', kind: 'Service', name: 'web', uid: 'u', controller: true }],
    managedFields: [{ manager: 'kube-controller-manager', operation: 'Update' }],
  };
  for (const ep of s.endpoints) ep.targetRef = { kind: 'Pod', namespace: 'prod', name: 'web-0', uid: 'p' };
  return s;
}

describe('trimObject', () => {
  it('keeps of an EndpointSlice’s metadata its names, labels, annotations and resourceVersion only', () => {
    const s = trimObject(fullSlice());
    assert.deepEqual(s.metadata, {
      name: 'web-abc',
      namespace: 'prod',
      labels: { 'kubernetes.io/service-name': 'web' },
      annotations: { 'endpoints.kubernetes.io/last-change-trigger-time': '2026-01-01T00:00:01Z' },
      resourceVersion: '42',
    });
    for (const ep of s.endpoints) assert.equal(ep.targetRef, undefined);
    assert.equal(Object.getPrototypeOf(s.metadata), Object.prototype, 'still plain JSON');
  });

  it('keeps every other field of an endpoint, in its order', () => {
    const whole = fullSlice();
    const expected = whole.endpoints.map(({ targetRef: _, ...rest }) => rest);
    const s = trimObject(whole);
    assert.deepEqual(s.endpoints, expected);
    s.endpoints.forEach((ep, i) => assert.deepEqual(Object.keys(ep), Object.keys(expected[i]!)));
  });

  it('so does a slice listed without kind; a slice with few metadata fields keeps those', () => {
    const listed = fullSlice() as Partial<V1EndpointSlice>;
    delete listed.kind;
    delete listed.apiVersion;
    assert.equal(trimObject(listed).metadata?.uid, undefined);
    const bare = slice('ns', 's', 'svc', [{ port: 80 }], []);
    bare.metadata = { name: 's', uid: 'u' };
    assert.deepEqual(trimObject(bare).metadata, { name: 's' });
  });

  it('shares equal endpoint conditions between endpoints and slices, frozen, equal to what came', () => {
    const a = fullSlice();
    const b = fullSlice();
    const before = structuredClone(a.endpoints.map((ep) => ep.conditions));
    trimObject(a);
    trimObject(b);
    assert.deepEqual(
      a.endpoints.map((ep) => ep.conditions),
      before,
    );
    assert.equal(a.endpoints[0]!.conditions, a.endpoints[1]!.conditions);
    assert.equal(a.endpoints[0]!.conditions, b.endpoints[1]!.conditions);
    assert.notEqual(a.endpoints[0]!.conditions, a.endpoints[2]!.conditions);
    assert.deepEqual(a.endpoints[3]!.conditions, {});
    assert.ok(Object.isFrozen(a.endpoints[0]!.conditions));
    // The same values in another order are another object, in that order.
    const c = slice('ns', 's', 'svc', [{ port: 80 }], [{ ip: '10.0.0.9' }]);
    c.endpoints[0]!.conditions = { terminating: false, ready: true };
    trimObject(c);
    assert.deepEqual(Object.keys(c.endpoints[0]!.conditions!), ['terminating', 'ready']);
  });

  it('leaves conditions that are not booleans as they are: the model reports them', () => {
    const s = slice('ns', 's', 'svc', [{ port: 80 }], [{ ip: '10.0.0.9' }, { ip: '10.0.0.8' }]);
    const odd = { ready: 'yes' } as unknown as NonNullable<
      V1EndpointSlice['endpoints'][number]['conditions']
    >;
    const extra = { ready: true, other: true } as NonNullable<
      V1EndpointSlice['endpoints'][number]['conditions']
    >;
    s.endpoints[0]!.conditions = odd;
    s.endpoints[1]!.conditions = extra;
    trimObject(s);
    assert.equal(s.endpoints[0]!.conditions, odd);
    assert.equal(s.endpoints[1]!.conditions, extra);
    assert.ok(!Object.isFrozen(odd));
  });

  it('keeps a Service’s uid and creationTimestamp (Events, frontend ownership); drops managedFields and last-applied', () => {
    const svc: V1Service = service('prod', 'web', { clusterIP: '10.96.0.1', ports: [{ port: 80 }] });
    svc.metadata = {
      ...svc.metadata,
      uid: 'u-1',
      creationTimestamp: '2026-01-01T00:00:00Z' as unknown as Date,
      annotations: { [LAST_APPLIED_ANNOTATION]: '{}', keep: 'me' },
      managedFields: [{ manager: 'kubectl' }],
    };
    trimObject(svc);
    assert.equal(svc.metadata?.uid, 'u-1');
    assert.equal(svc.metadata?.creationTimestamp, '2026-01-01T00:00:00Z');
    assert.deepEqual(svc.metadata?.annotations, { keep: 'me' });
    assert.equal(svc.metadata?.managedFields, undefined);
  });

  it('the model of trimmed objects is the model of the objects as they came', () => {
    fc.assert(
      fc.property(clusterArb, (spec) => {
        const full = objectsOf(spec);
        for (const s of full.slices)
          s.metadata = { ...s.metadata, uid: `u-${s.metadata?.name}`, generation: 1 };
        const trimmed = structuredClone(full);
        for (const o of [...trimmed.services, ...trimmed.slices]) trimObject(o);
        assert.deepEqual(buildState(trimmed, MODEL_CONFIG), buildState(full, MODEL_CONFIG));
      }),
      { numRuns: 200 },
    );
  });
});
