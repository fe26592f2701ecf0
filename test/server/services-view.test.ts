import assert from 'node:assert/strict';
import type { ListenerInfo } from '../../src/lb/userspace-backend.js';
import { buildState } from '../../src/model/build-state.js';
import { describeServices } from '../../src/server/services-view.js';
import { service, slice } from '../support/objects.js';

/** /debug/services is an operator contract: the names it prints stay as they were. */
describe('describeServices printed names', function () {
  it("prints a load balancer's listener as loadBalancerIP, beside the port's loadBalancerIPs", function () {
    const state = buildState(
      {
        services: [
          service(
            'ns',
            'web',
            { type: 'LoadBalancer', clusterIP: '10.96.0.10', ports: [{ port: 80 }] },
            {
              lbIPs: ['198.51.100.1'],
            },
          ),
        ],
        slices: [slice('ns', 'web-a', 'web', [{ port: 8080 }], [{ ip: '10.244.0.5', nodeName: 'n1' }])],
      },
      { nodeName: 'n1', nodeIPs: ['10.0.0.1'], lbAlgorithm: 'random' },
    );
    const sp = state.ports[0]!;
    const listener = (frontend: ListenerInfo['frontend'], address: string): ListenerInfo => ({
      key: sp.key,
      frontend,
      address,
      port: 80,
      protocol: 'TCP',
      active: 0,
      refused: 0,
      evicted: 0,
      affinityEvicted: 0,
    });
    const answer = describeServices(state, [
      listener('clusterIP', '10.96.0.10'),
      listener('loadBalancer', '198.51.100.1'),
    ]) as {
      ports: Array<{ frontends: { loadBalancerIPs: string[] }; listeners: Array<{ frontend: string }> }>;
    };
    const port = answer.ports[0]!;
    assert.deepEqual(port.frontends.loadBalancerIPs, ['198.51.100.1']);
    assert.deepEqual(
      port.listeners.map((l) => l.frontend),
      ['clusterIP', 'loadBalancerIP'],
    );
  });
});
