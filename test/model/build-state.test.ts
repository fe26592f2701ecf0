import assert from 'node:assert/strict';
import type { V1EndpointSlice } from '@kubernetes/client-node';
import { buildState } from '../../src/model/build-state.js';
import { sliceServiceKey } from '../../src/model/endpoint-slice.js';
import { objName } from '../../src/model/object-key.js';
import { StateBuilder, type ModelSource } from '../../src/model/state-builder.js';
import { parseService } from '../../src/model/service.js';
import { service, slice } from '../support/objects.js';

const CONFIG = { nodeName: 'n1', nodeIPs: ['192.168.0.10'], lbAlgorithm: 'random' as const };

describe('parseService', () => {
  const bad: Array<[string, Parameters<typeof service>[2], RegExp]> = [
    ['an invalid clusterIP', { clusterIP: '10.96.0.300', ports: [{ port: 80 }] }, /invalid clusterIP/],
    ['port 0', { clusterIP: '10.96.0.1', ports: [{ port: 0 }] }, /invalid port 0/],
    ['port 70000', { clusterIP: '10.96.0.1', ports: [{ port: 70000 }] }, /invalid port 70000/],
    [
      'an unknown protocol',
      { clusterIP: '10.96.0.1', ports: [{ port: 80, protocol: 'ICMP' as 'TCP' }] },
      /unknown protocol/,
    ],
    ['no ports', { clusterIP: '10.96.0.1', ports: [] }, /no spec.ports/],
    ['no clusterIP', { ports: [{ port: 80 }] }, /missing spec.clusterIP/],
  ];
  for (const [what, spec, reason] of bad) {
    it(`skips a Service with ${what}, saying why`, () => {
      const r = parseService(service('ns', 's', spec));
      assert.equal(r.ok, false);
      assert.match(!r.ok ? r.reason : '', reason);
    });
  }

  it('ignores headless, ExternalName and other proxies’ Services without calling them invalid', () => {
    for (const svc of [
      service('ns', 'h', { clusterIP: 'None', ports: [{ port: 80 }] }),
      service('ns', 'e', { type: 'ExternalName', externalName: 'example.org', ports: [{ port: 80 }] }),
      service(
        'ns',
        'o',
        { clusterIP: '10.96.0.1', ports: [{ port: 80 }] },
        { labels: { 'service.kubernetes.io/service-proxy-name': 'x' } },
      ),
    ]) {
      const r = parseService(svc);
      assert.ok(!r.ok && r.ignored, JSON.stringify(r));
    }
  });

  it('defaults an out-of-range affinity timeout and drops an unparseable source range, with warnings', () => {
    const r = parseService(
      service('ns', 's', {
        type: 'LoadBalancer',
        clusterIP: '10.96.0.1',
        sessionAffinity: 'ClientIP',
        sessionAffinityConfig: { clientIP: { timeoutSeconds: -5 } },
        loadBalancerSourceRanges: ['not-a-cidr', ' 10.0.0.0/8 '],
        ports: [{ port: 80, nodePort: 30080 }],
      }),
    );
    assert.ok(r.ok);
    if (!r.ok) return;
    assert.equal(r.service.affinitySeconds, 10800);
    assert.deepEqual(r.service.sourceRanges, ['10.0.0.0/8']);
    assert.equal(r.service.warnings.length, 2);
  });
});

describe('buildState', () => {
  const objects = () => ({
    services: [
      service('ns', 'a', {
        clusterIP: '10.96.0.1',
        clusterIPs: ['10.96.0.1', 'fd00::1'],
        ports: [{ name: 'p', port: 80 }],
      }),
      service('ns', 'b', { clusterIP: '10.96.0.2', ports: [{ port: 53, protocol: 'UDP' }] }),
    ],
    slices: [
      slice('ns', 'a-2', 'a', [{ name: 'p', port: 8080 }], [{ ip: '10.244.0.3', nodeName: 'n1' }]),
      slice(
        'ns',
        'a-1',
        'a',
        [{ name: 'p', port: 8080 }],
        [{ ip: '10.244.0.2' }, { ip: '10.244.0.3', nodeName: 'n2' }],
      ),
      slice('ns', 'a-6', 'a', [{ name: 'p', port: 8080 }], [{ ip: 'fd00:244::2' }], 'IPv6'),
      slice('ns', 'b-1', 'b', [{ port: 5353, protocol: 'UDP' }], [{ ip: 'garbage' }, { ip: '10.244.0.9' }]),
    ],
  });

  it('joins slices to ports per family, deduplicating endpoints (a local copy wins)', () => {
    const state = buildState(objects(), CONFIG);
    assert.deepEqual(
      state.ports.map((p) => p.key),
      ['ns/a:p/TCP/ipv4', 'ns/a:p/TCP/ipv6', 'ns/b:/UDP/ipv4'],
    );
    const a4 = state.ports[0]!;
    assert.deepEqual(
      a4.clusterEndpoints.map((e) => [e.ip, e.port, e.local]),
      [
        ['10.244.0.2', 8080, false],
        ['10.244.0.3', 8080, true],
      ],
    );
    assert.deepEqual(
      state.ports[1]!.clusterEndpoints.map((e) => e.ip),
      ['fd00:244::2'],
    );
    assert.deepEqual(
      state.ports[2]!.clusterEndpoints.map((e) => e.ip),
      ['10.244.0.9'],
    );
    assert.deepEqual(
      state.skipped.map((s) => [s.name, s.reason]),
      [['ns/b-1', 'endpoints[0]: invalid IPv4 address "garbage"']],
    );
  });

  it('makes every endpoint with its fields in one order, the optional ones only when set', () => {
    const s = slice(
      'ns',
      'a-1',
      'a',
      [{ name: 'p', port: 8080 }],
      [
        { ip: '10.244.0.1' },
        { ip: '10.244.0.2', nodeName: 'n1' },
        { ip: '10.244.0.3', zone: 'z' },
        { ip: '10.244.0.4', nodeName: 'n2', zone: 'z', zoneHints: ['z'] },
      ],
    );
    const state = buildState({ services: [objects().services[0]!], slices: [s] }, CONFIG);
    const base = ['ip', 'port', 'ready', 'serving', 'terminating', 'local', 'zoneHints', 'nodeHints'];
    assert.deepEqual(
      state.ports[0]!.allEndpoints.map((e) => Object.keys(e)),
      [base, [...base, 'nodeName'], [...base, 'zone'], [...base, 'nodeName', 'zone']],
    );
    assert.deepEqual(state.ports[0]!.allEndpoints[3]!.zoneHints, ['z']);
  });

  it('gives the same state for the same objects in any order', () => {
    const o = objects();
    const a = buildState(o, CONFIG);
    const b = buildState({ services: [...o.services].reverse(), slices: [...o.slices].reverse() }, CONFIG);
    assert.deepEqual(JSON.parse(JSON.stringify(b)), JSON.parse(JSON.stringify(a)));
  });

  // Identity is the StateBuilder's promise (the compiler keys its fragments on it), not
  // buildState's: buildState is pure, and two calls compare by content.
  it('a StateBuilder keeps a Service’s ports as the same objects until its objects change', () => {
    const sourceOf = (o: ReturnType<typeof objects>): ModelSource => {
      const services = new Map(o.services.map((svc) => [objName(svc), svc]));
      const slices = new Map<string, V1EndpointSlice[]>();
      for (const sl of o.slices)
        slices.set(sliceServiceKey(sl), [...(slices.get(sliceServiceKey(sl)) ?? []), sl]);
      return { services, slicesOf: (key) => slices.get(key) ?? [], sliceServices: () => slices.keys() };
    };
    const o = objects();
    const builder = new StateBuilder(CONFIG);
    const first = builder.update(sourceOf(o)).state;
    const again = builder.update(sourceOf(o), []).state;
    assert.equal(again.ports[0], first.ports[0], 'nothing changed: the same ServicePort object');
    const changed = {
      ...o,
      slices: o.slices.map((s) =>
        s.metadata?.name === 'b-1'
          ? slice('ns', 'b-1', 'b', [{ port: 5353, protocol: 'UDP' }], [{ ip: '10.244.0.10' }])
          : s,
      ),
    };
    const third = builder.update(sourceOf(changed), ['ns/b']).state;
    assert.equal(third.ports[0], first.ports[0], 'Service a is untouched');
    assert.notEqual(third.ports[2], first.ports[2]);
    assert.deepEqual(
      third.ports[2]!.clusterEndpoints.map((e) => e.ip),
      ['10.244.0.10'],
    );
    assert.deepEqual(third, buildState(changed, CONFIG), 'the same state buildState gives');
    const otherNode = buildState(o, { ...CONFIG, nodeName: 'n2' });
    assert.deepEqual(
      otherNode.ports[0]!.clusterEndpoints.filter((e) => e.local).map((e) => e.ip),
      ['10.244.0.3'],
      'another node: locality changes',
    );
  });

  it('gives a frontend claimed by two Services of one age to the first by name and says so', () => {
    const state = buildState(
      {
        services: [
          service('ns', 'x', { clusterIP: '10.96.0.7', externalIPs: ['192.0.2.1'], ports: [{ port: 80 }] }),
          service('ns', 'y', { clusterIP: '10.96.0.8', externalIPs: ['192.0.2.1'], ports: [{ port: 80 }] }),
        ],
        slices: [],
      },
      CONFIG,
    );
    assert.deepEqual(
      state.ports.map((p) => p.externalIPs),
      [['192.0.2.1'], []],
    );
    assert.match(
      state.skipped.map((s) => s.reason).join(),
      /externalIP 192.0.2.1 tcp\/80 is ns\/x's externalIP/,
    );
  });
});
