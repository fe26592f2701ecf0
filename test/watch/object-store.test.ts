import assert from 'node:assert/strict';
import { ObjectStore } from '../../src/watch/object-store.js';
import { node, service, slice } from '../support/objects.js';

const web = service('default', 'web', { clusterIP: '10.96.0.10', ports: [{ port: 80 }] });
const api = service('default', 'api', { clusterIP: '10.96.0.11', ports: [{ port: 80 }] });
const ports = [{ port: 8080 }];
const webSlice = slice('default', 'web-a', 'web', ports, [{ ip: '10.0.0.1' }]);
/** The same slice, relabelled for another Service: its endpoints move from web to api. */
const movedSlice = slice('default', 'web-a', 'api', ports, [{ ip: '10.0.0.1' }]);

describe('ObjectStore change counts (kube-proxy’s service and endpoint change metrics)', () => {
  const cases: Array<{
    name: string;
    steps: (store: ObjectStore) => void;
    services: string[];
    pending: { services: number; endpoints: number };
    events: { services: number; endpoints: number };
  }> = [
    {
      name: 'a Service alone is a service change',
      steps: (s) => s.upsert('Service', web),
      services: ['default/web'],
      pending: { services: 1, endpoints: 0 },
      events: { services: 1, endpoints: 0 },
    },
    {
      name: 'a slice alone is an endpoints change of its Service',
      steps: (s) => s.upsert('EndpointSlice', webSlice),
      services: ['default/web'],
      pending: { services: 0, endpoints: 1 },
      events: { services: 0, endpoints: 1 },
    },
    {
      name: 'three updates of one slice: three events, one Service pending',
      steps: (s) => {
        for (let i = 0; i < 3; i++) s.upsert('EndpointSlice', webSlice);
      },
      services: ['default/web'],
      pending: { services: 0, endpoints: 1 },
      events: { services: 0, endpoints: 3 },
    },
    {
      name: 'a slice relabelled for another Service changes the endpoints of both',
      steps: (s) => {
        s.upsert('EndpointSlice', webSlice);
        s.upsert('EndpointSlice', movedSlice);
      },
      services: ['default/api', 'default/web'],
      pending: { services: 0, endpoints: 2 },
      events: { services: 0, endpoints: 2 },
    },
    {
      name: 'Services and slices together, removes included; a Node is neither',
      steps: (s) => {
        s.upsert('Service', web);
        s.upsert('Service', api);
        s.upsert('EndpointSlice', webSlice);
        s.remove('EndpointSlice', 'default', 'web-a');
        s.remove('Service', 'default', 'api');
        s.upsert('Node', node('n1', ['192.168.0.1']));
      },
      services: ['default/api', 'default/web'],
      pending: { services: 2, endpoints: 1 },
      events: { services: 3, endpoints: 2 },
    },
    {
      name: 'removing what was never there changes nothing',
      steps: (s) => {
        s.remove('EndpointSlice', 'default', 'nope');
        s.remove('Service', 'default', 'nope');
      },
      services: [],
      pending: { services: 0, endpoints: 0 },
      events: { services: 0, endpoints: 0 },
    },
  ];

  for (const c of cases) {
    it(c.name, () => {
      const store = new ObjectStore();
      c.steps(store);
      assert.deepEqual(store.pending, c.pending);
      const taken = store.takeChanges();
      assert.deepEqual([...taken.services].sort(), c.services);
      assert.deepEqual(taken.events, c.events);
      // Taken: nothing waits any more.
      assert.deepEqual(store.pending, { services: 0, endpoints: 0 });
      assert.deepEqual(store.takeChanges().events, { services: 0, endpoints: 0 });
    });
  }
});
