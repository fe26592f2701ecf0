import assert from 'node:assert/strict';
import type { V1EndpointSlice, V1Service } from '@kubernetes/client-node';
import type { Flow } from '../../src/conntrack/flow.js';
import {
  changedUdpFamilies,
  staleFilter,
  staleFlows,
  udpTargets,
  type FlowFilter,
} from '../../src/conntrack/stale-flows.js';
import { buildState } from '../../src/model/build-state.js';
import { StateBuilder, type ModelSource } from '../../src/model/state-builder.js';
import type { ProxyState } from '../../src/model/types.js';
import { service, slice, type EndpointSpec } from '../support/objects.js';

const CONFIG = { nodeName: 'n1', nodeIPs: ['192.168.0.10', 'fd00::10'], lbAlgorithm: 'random' as const };

/**
 * A UDP DNS Service with every kind of frontend (ClusterIP 10.96.0.10:53, external IP
 * 172.16.0.5:53, LoadBalancer IP 203.0.113.7:53, NodePort 30053), its TCP twin on the same
 * ClusterIP and port, and a UDP Service without any serving endpoint.
 */
function dnsState(dns: EndpointSpec[], opts: { tcp?: EndpointSpec[] } = {}): ProxyState {
  return buildState(
    {
      services: [
        service(
          'kube-system',
          'dns',
          {
            type: 'LoadBalancer',
            clusterIP: '10.96.0.10',
            externalIPs: ['172.16.0.5'],
            ports: [
              { name: 'dns', port: 53, protocol: 'UDP', targetPort: 5353, nodePort: 30053 },
              { name: 'dns-tcp', port: 53, protocol: 'TCP', targetPort: 5353, nodePort: 30054 },
            ],
          },
          { lbIPs: ['203.0.113.7'] },
        ),
        service('ns', 'empty', { clusterIP: '10.96.0.20', ports: [{ port: 9000, protocol: 'UDP' }] }),
      ],
      slices: [
        slice('kube-system', 'dns-udp', 'dns', [{ name: 'dns', port: 5353, protocol: 'UDP' }], dns),
        slice(
          'kube-system',
          'dns-tcp',
          'dns',
          [{ name: 'dns-tcp', port: 5353, protocol: 'TCP' }],
          opts.tcp ?? dns,
        ),
        slice(
          'ns',
          'empty-1',
          'empty',
          [{ port: 9000, protocol: 'UDP' }],
          [{ ip: '10.244.9.9', ready: false, serving: false }],
        ),
      ],
    },
    CONFIG,
  );
}

const flow = (dst: string, dport: number, replySrc: string, replySport: number): Flow => ({
  origSrc: '10.244.5.5',
  origDst: dst,
  origSport: 40000,
  origDport: dport,
  replySrc,
  replySport,
});

describe('stale UDP flows', () => {
  // Endpoint a serves; b is terminating but still serving; c is neither.
  const state = dnsState([
    { ip: '10.244.1.1' },
    { ip: '10.244.1.2', ready: false, serving: true, terminating: true },
    { ip: '10.244.1.3', ready: false, serving: false, terminating: true },
  ]);
  const targets = udpTargets(state, 'ipv4');

  const table: Array<[string, Flow, FlowFilter | undefined]> = [
    ['a ClusterIP flow on a serving endpoint is kept', flow('10.96.0.10', 53, '10.244.1.1', 5353), undefined],
    [
      'a ClusterIP flow on a serving, terminating endpoint is kept',
      flow('10.96.0.10', 53, '10.244.1.2', 5353),
      undefined,
    ],
    [
      'a ClusterIP flow on an endpoint that no longer serves is stale',
      flow('10.96.0.10', 53, '10.244.1.3', 5353),
      { origDst: '10.96.0.10', origDport: 53, replySrc: '10.244.1.3', replySport: 5353 },
    ],
    [
      'a ClusterIP flow on a deleted endpoint is stale',
      flow('10.96.0.10', 53, '10.244.1.99', 5353),
      { origDst: '10.96.0.10', origDport: 53, replySrc: '10.244.1.99', replySport: 5353 },
    ],
    [
      'a flow on a serving endpoint address but another port is stale (ip and port count)',
      flow('10.96.0.10', 53, '10.244.1.1', 53),
      { origDst: '10.96.0.10', origDport: 53, replySrc: '10.244.1.1', replySport: 53 },
    ],
    [
      'a flow that was never DNATed (sent while the port had no endpoints) is stale',
      flow('10.96.0.10', 53, '10.96.0.10', 53),
      { origDst: '10.96.0.10', origDport: 53, replySrc: '10.96.0.10', replySport: 53 },
    ],
    [
      'an external IP flow on a deleted endpoint is stale',
      flow('172.16.0.5', 53, '10.244.1.99', 5353),
      { origDst: '172.16.0.5', origDport: 53, replySrc: '10.244.1.99', replySport: 5353 },
    ],
    [
      'an external IP flow on a serving endpoint is kept',
      flow('172.16.0.5', 53, '10.244.1.1', 5353),
      undefined,
    ],
    [
      'a LoadBalancer IP flow on a deleted endpoint is stale',
      flow('203.0.113.7', 53, '10.244.1.99', 5353),
      { origDst: '203.0.113.7', origDport: 53, replySrc: '10.244.1.99', replySport: 5353 },
    ],
    [
      'a NodePort flow on a deleted endpoint is stale, whatever address it was sent to',
      flow('192.168.0.99', 30053, '10.244.1.99', 5353),
      { origDport: 30053, replySrc: '10.244.1.99', replySport: 5353 },
    ],
    [
      'a NodePort flow on a serving endpoint is kept',
      flow('192.168.0.10', 30053, '10.244.1.2', 5353),
      undefined,
    ],
    [
      'a flow to another port of the ClusterIP is not ours',
      flow('10.96.0.10', 54, '10.244.1.99', 5353),
      undefined,
    ],
    ['a flow to an unrelated address is not ours', flow('10.1.2.3', 53, '10.1.2.3', 53), undefined],
    [
      'a port without any serving endpoint leaves its flows alone',
      flow('10.96.0.20', 9000, '10.244.1.99', 9000),
      undefined,
    ],
  ];
  for (const [what, f, want] of table) {
    it(what, () => assert.deepEqual(staleFilter(f, targets), want));
  }

  it('never judges TCP: a TCP port contributes no frontend, its NodePort neither', () => {
    // The TCP twin's NodePort 30054: no UDP port has it.
    assert.equal(staleFilter(flow('192.168.0.10', 30054, '10.244.1.99', 5353), targets), undefined);
    const tcpOnly = dnsState([], { tcp: [{ ip: '10.244.1.1' }] });
    const t = udpTargets(tcpOnly, 'ipv4');
    assert.equal(t.frontends.size + t.nodePorts.size, 0);
  });

  it('keeps the families apart', () => {
    const v6 = udpTargets(state, 'ipv6');
    assert.equal(v6.frontends.size + v6.nodePorts.size, 0);
  });

  it('gathers a listing into one filter per frontend and stale reply, sorted', () => {
    const filters = staleFlows(
      [
        flow('10.96.0.10', 53, '10.244.1.99', 5353),
        { ...flow('10.96.0.10', 53, '10.244.1.99', 5353), origSrc: '10.244.6.6' },
        flow('10.96.0.10', 53, '10.244.1.1', 5353),
        flow('192.168.0.10', 30053, '10.244.1.3', 5353),
        flow('10.96.0.10', 53, '10.244.1.3', 5353),
      ],
      targets,
    );
    assert.deepEqual(filters, [
      { origDport: 30053, replySrc: '10.244.1.3', replySport: 5353 },
      { origDst: '10.96.0.10', origDport: 53, replySrc: '10.244.1.3', replySport: 5353 },
      { origDst: '10.96.0.10', origDport: 53, replySrc: '10.244.1.99', replySport: 5353 },
    ]);
  });

  it('judges a flow to a ClusterIP by that frontend, not by a NodePort with the same number', () => {
    const s = buildState(
      {
        services: [
          service('ns', 'a', { clusterIP: '10.96.0.1', ports: [{ port: 30053, protocol: 'UDP' }] }),
          service('ns', 'b', {
            type: 'NodePort',
            clusterIP: '10.96.0.2',
            ports: [{ port: 53, protocol: 'UDP', nodePort: 30053 }],
          }),
        ],
        slices: [
          slice('ns', 'a-1', 'a', [{ port: 30053, protocol: 'UDP' }], [{ ip: '10.244.1.1' }]),
          slice('ns', 'b-1', 'b', [{ port: 53, protocol: 'UDP' }], [{ ip: '10.244.1.2' }]),
        ],
      },
      CONFIG,
    );
    const t = udpTargets(s, 'ipv4');
    assert.equal(staleFilter(flow('10.96.0.1', 30053, '10.244.1.1', 30053), t), undefined);
    assert.deepEqual(staleFilter(flow('192.168.0.10', 30053, '10.244.1.1', 30053), t), {
      origDport: 30053,
      replySrc: '10.244.1.1',
      replySport: 30053,
    });
  });
});

describe('which syncs call for a cleanup', () => {
  /** A StateBuilder over a mutable object set, as the daemon keeps one. */
  function builder() {
    const services = new Map<string, V1Service>();
    const slices = new Map<string, V1EndpointSlice[]>();
    const b = new StateBuilder(CONFIG);
    const source: ModelSource = {
      services,
      slicesOf: (key) => slices.get(key) ?? [],
      sliceServices: () => slices.keys(),
    };
    return {
      set(svc: V1Service, sl: V1EndpointSlice[]) {
        services.set(`${svc.metadata!.namespace}/${svc.metadata!.name}`, svc);
        slices.set(`${svc.metadata!.namespace}/${svc.metadata!.name}`, sl);
      },
      update(changed?: string[]) {
        const { state, delta } = b.update(source, changed);
        return changedUdpFamilies(state, delta);
      },
    };
  }
  const dns = service('ns', 'dns', { clusterIP: '10.96.0.10', ports: [{ port: 53, protocol: 'UDP' }] });
  const web = service('ns', 'web', { clusterIP: '10.96.0.80', ports: [{ port: 80 }] });
  const dnsSlice = (eps: EndpointSpec[]) => [
    slice('ns', 'dns-1', 'dns', [{ port: 53, protocol: 'UDP' }], eps),
  ];
  const webSlice = (eps: EndpointSpec[]) => [slice('ns', 'web-1', 'web', [{ port: 80 }], eps)];

  it('the first sync, when some UDP port serves', () => {
    const b = builder();
    b.set(dns, dnsSlice([{ ip: '10.244.1.1' }]));
    assert.deepEqual(b.update(), ['ipv4']);
  });

  it('an endpoint leaving a UDP port, or the port gaining its first one; not a TCP change', () => {
    const b = builder();
    b.set(dns, dnsSlice([{ ip: '10.244.1.1' }, { ip: '10.244.1.2' }]));
    b.set(web, webSlice([{ ip: '10.244.1.1' }]));
    b.update();
    b.set(web, webSlice([{ ip: '10.244.1.3' }]));
    assert.deepEqual(b.update(['ns/web']), [], 'TCP never');
    b.set(dns, dnsSlice([{ ip: '10.244.1.2' }]));
    assert.deepEqual(b.update(['ns/dns']), ['ipv4'], 'an endpoint went');
    b.set(dns, dnsSlice([{ ip: '10.244.1.2', ready: false }]));
    assert.deepEqual(b.update(['ns/dns']), [], 'the last serving endpoint went: nothing to clean');
    b.set(dns, dnsSlice([{ ip: '10.244.1.2', ready: true }]));
    assert.deepEqual(b.update(['ns/dns']), ['ipv4'], 'unready to ready');
  });

  it('not a change that keeps the serving set (ready to serving and terminating)', () => {
    const b = builder();
    b.set(dns, dnsSlice([{ ip: '10.244.1.1' }]));
    b.update();
    b.set(dns, dnsSlice([{ ip: '10.244.1.1', ready: false, serving: true, terminating: true }]));
    assert.deepEqual(b.update(['ns/dns']), []);
  });
});
