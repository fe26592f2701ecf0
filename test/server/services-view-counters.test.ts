import assert from 'node:assert/strict';
import type { CountersSnapshot } from '../../src/counters/counter-reader.js';
import { portCounters } from '../../src/counters/service-counters.js';
import { buildState } from '../../src/model/build-state.js';
import { describeServices } from '../../src/server/services-view.js';
import { service, slice } from '../support/objects.js';

describe('describeServices with --service-counters', () => {
  const state = buildState(
    {
      services: [
        service('ns', 'web', {
          type: 'NodePort',
          clusterIP: '10.96.0.10',
          ports: [{ port: 80, nodePort: 30080 }],
        }),
        service('ns', 'empty', { clusterIP: '10.96.0.11', ports: [{ port: 53, protocol: 'UDP' }] }),
      ],
      slices: [slice('ns', 'web-a', 'web', [{ port: 8080 }], [{ ip: '10.244.0.5', nodeName: 'n1' }])],
    },
    { nodeName: 'n1', nodeIPs: ['10.0.0.1'], lbAlgorithm: 'random' },
  );
  const el = (ip: string, proto: 'tcp' | 'udp', port: number, packets: number) => ({
    key: { ip, proto, port },
    packets,
  });
  const ports = portCounters(
    state,
    { ipv4: ['10.0.0.1'], ipv6: [] },
    {
      connections: [el('10.96.0.10', 'tcp', 80, 12), el('10.0.0.1', 'tcp', 30080, 4)],
      noEndpoints: [el('10.96.0.11', 'udp', 53, 3)],
      shortcircuit: [],
      sourceRangeDrops: [],
    },
  );
  const since = Date.UTC(2026, 11, 4, 12, 0, 0);
  const counters: CountersSnapshot = { since, ports, byKey: new Map(ports.map((p) => [p.key, p])) };

  it("gives each port its frontends' counters, sorted by frontend, and countersSince at the top", () => {
    const answer = describeServices(state, undefined, {}, counters) as {
      countersSince: string;
      ports: Array<{ service: string; counters: unknown }>;
    };
    assert.equal(answer.countersSince, '2026-12-04T12:00:00.000Z');
    const by = new Map(answer.ports.map((p) => [p.service, p.counters]));
    assert.deepEqual(by.get('ns/web'), [
      { frontend: '10.0.0.1:30080', connections: 4, noEndpoints: 0, sourceRangeDrops: 0 },
      { frontend: '10.96.0.10:80', connections: 12, noEndpoints: 0, sourceRangeDrops: 0 },
    ]);
    assert.deepEqual(by.get('ns/empty'), [
      { frontend: '10.96.0.11:53', connections: 0, noEndpoints: 3, sourceRangeDrops: 0 },
    ]);
  });

  it('has neither field without counters (off, or not read yet)', () => {
    const answer = describeServices(state) as Record<string, unknown> & {
      ports: Array<Record<string, unknown>>;
    };
    assert.equal('countersSince' in answer, false);
    assert.ok(answer.ports.every((p) => !('counters' in p)));
  });
});
