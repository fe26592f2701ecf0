import assert from 'node:assert/strict';
import { explainLines } from '../../src/explain/format.js';
import {
  readServicesAnswer,
  type AnswerPort,
  type ServicesAnswer,
} from '../../src/explain/services-answer.js';
import { buildState } from '../../src/model/build-state.js';
import { describeServices } from '../../src/server/services-view.js';
import { service, slice } from '../support/objects.js';

const ep = (
  address: string,
  extra: Partial<{ local: boolean; ready: boolean; serving: boolean; terminating: boolean }> = {},
) => ({
  address,
  local: false,
  ready: true,
  serving: true,
  terminating: false,
  ...extra,
});

/** A port as /debug/services prints it, with the contract's `counters`. */
function webPort(over: Partial<AnswerPort> = {}): AnswerPort {
  return {
    key: 'shop/web:http/TCP/ipv4',
    service: 'shop/web',
    port: 'http',
    family: 'ipv4',
    protocol: 'TCP',
    frontends: {
      clusterIP: '10.96.0.10:80',
      externalIPs: ['203.0.113.7'],
      loadBalancerIPs: ['198.51.100.1'],
      nodePort: 30080,
    },
    flags: {
      externalTrafficPolicyLocal: true,
      internalTrafficPolicyLocal: false,
      affinitySeconds: 10800,
      sourceRanges: ['192.0.2.0/24', '10.0.0.0/8'],
      lbAlgorithm: 'maglev',
    },
    clusterEndpoints: [ep('10.244.1.11:8080', { local: true }), ep('10.244.2.12:8080')],
    localEndpoints: [ep('10.244.1.11:8080', { local: true })],
    allEndpoints: [
      ep('10.244.1.11:8080', { local: true }),
      ep('10.244.2.12:8080'),
      ep('10.244.3.13:8080', { ready: false, serving: false }),
      ep('10.244.3.14:8080', { ready: false, serving: true, terminating: true }),
    ],
    counters: [
      { frontend: '10.0.0.1:30080', connections: 3, noEndpoints: 0, sourceRangeDrops: 0 },
      { frontend: '10.96.0.10:80', connections: 12, noEndpoints: 0, sourceRangeDrops: 0 },
      { frontend: '198.51.100.1:80', connections: 1400, noEndpoints: 2, sourceRangeDrops: 57 },
    ],
    ...over,
  };
}

function answer(
  ports: AnswerPort[],
  skipped: ServicesAnswer['skipped'] = [],
  extra: Partial<ServicesAnswer> = {},
): ServicesAnswer {
  return { synced: true, node: { name: 'node-a', ips: ['10.0.0.1'] }, ports, skipped, ...extra };
}

describe('explainLines (kube-nftproxy explain)', () => {
  it('prints frontends, flags, both endpoint choices, the rest, counters and skipped entries', () => {
    const lines = explainLines(
      'shop/web',
      answer(
        [webPort()],
        [
          {
            kind: 'Service',
            name: 'shop/web',
            reason:
              "externalIP 203.0.113.9 tcp/80 is shop/old's externalIP (the older Service keeps it): left out",
            contested: true,
          },
        ],
        { countersSince: '2026-12-04T19:00:00.000Z' },
      ),
    );
    assert.deepEqual(lines, [
      'Service shop/web on node node-a',
      '',
      'Port http 80/TCP (IPv4)',
      '  Frontends:',
      '    clusterIP       10.96.0.10:80',
      '    externalIP      203.0.113.7:80',
      '    loadBalancerIP  198.51.100.1:80',
      "    nodePort        30080 on this node's NodePort addresses",
      '  Flags: internalTrafficPolicy Cluster, externalTrafficPolicy Local, sessionAffinity ClientIP 10800s, loadBalancerSourceRanges 192.0.2.0/24 10.0.0.0/8, lbAlgorithm maglev',
      '  Cluster traffic: 2 endpoints',
      '    10.244.1.11:8080  ready, on this node',
      '    10.244.2.12:8080  ready',
      '  Local traffic (externalTrafficPolicy Local): 1 endpoint',
      '    10.244.1.11:8080  ready, on this node',
      '  Not chosen: 2 endpoints',
      '    10.244.3.13:8080  not ready',
      '    10.244.3.14:8080  serving, terminating',
      '  New connections since 2026-12-04T19:00:00.000Z (kernel counters):',
      '    frontend         connections  no endpoints  source-range drops',
      '    10.0.0.1:30080             3             0                   0',
      '    10.96.0.10:80             12             0                   0',
      '    198.51.100.1:80         1400             2                  57',
      '',
      'Skipped:',
      "  Service shop/web [frontend owned elsewhere]: externalIP 203.0.113.9 tcp/80 is shop/old's externalIP (the older Service keeps it): left out",
    ]);
  });

  it('says when no policy is Local, no endpoint is chosen, nothing is skipped, and counters are empty', () => {
    const port = webPort({
      frontends: { clusterIP: '10.96.0.11:53', externalIPs: [], loadBalancerIPs: [], nodePort: null },
      port: '',
      protocol: 'UDP',
      flags: {
        externalTrafficPolicyLocal: false,
        internalTrafficPolicyLocal: false,
        affinitySeconds: 0,
        sourceRanges: [],
        lbAlgorithm: 'random',
      },
      clusterEndpoints: [],
      localEndpoints: [],
      allEndpoints: [],
      counters: [],
    });
    assert.deepEqual(explainLines('shop/web', answer([port])), [
      'Service shop/web on node node-a',
      '',
      'Port (unnamed) 53/UDP (IPv4)',
      '  Frontends:',
      '    clusterIP  10.96.0.11:53',
      '  Flags: internalTrafficPolicy Cluster, externalTrafficPolicy Cluster, sessionAffinity None, loadBalancerSourceRanges any, lbAlgorithm random',
      '  Cluster traffic: no endpoint',
      '  Local traffic: not used (both traffic policies are Cluster)',
      '  New connections (kernel counters):',
      '    none counted yet',
      '',
      'Skipped: nothing',
    ]);
  });

  it('leaves the counters out when the daemon has none (--service-counters=false)', () => {
    const { counters: _, ...port } = webPort();
    const lines = explainLines('shop/web', answer([port]));
    assert.ok(!lines.some((l) => /counters|connections/.test(l)), lines.join('\n'));
  });

  it('brackets IPv6 frontends; a port that lost its ClusterIP takes its number from the counters', () => {
    const v6 = webPort({
      key: 'shop/web:http/TCP/ipv6',
      family: 'ipv6',
      frontends: {
        clusterIP: 'fd00::10:80',
        externalIPs: ['2001:db8::7'],
        loadBalancerIPs: [],
        nodePort: null,
      },
      counters: [{ frontend: '[2001:db8::7]:80', connections: 1, noEndpoints: 0, sourceRangeDrops: 0 }],
    });
    const lost = webPort({
      frontends: { clusterIP: null, externalIPs: ['203.0.113.7'], loadBalancerIPs: [], nodePort: null },
      counters: [{ frontend: '203.0.113.7:8443', connections: 0, noEndpoints: 0, sourceRangeDrops: 0 }],
    });
    const lines = explainLines('shop/web', answer([lost, v6]));
    assert.ok(lines.includes('Port http 8443/TCP (IPv4)'), lines.join('\n'));
    assert.ok(lines.includes('    externalIP  203.0.113.7:8443'), lines.join('\n'));
    assert.ok(lines.includes('Port http 80/TCP (IPv6)'), lines.join('\n'));
    assert.ok(lines.includes('    clusterIP   [fd00::10]:80'), lines.join('\n'));
    assert.ok(lines.includes('    externalIP  [2001:db8::7]:80'), lines.join('\n'));
  });

  it('explains a Service skipped whole, with its reason, and a cut answer', () => {
    const lines = explainLines(
      'shop/web',
      answer(
        [],
        [{ kind: 'Service', name: 'shop/web', reason: 'spec.clusterIP "None": headless', ignored: true }],
        { truncated: { ports: { shown: 0, total: 1 } } },
      ),
    );
    assert.deepEqual(lines, [
      'Service shop/web on node node-a',
      '  (the daemon cut its answer short: some entries are missing below)',
      '',
      'No port of it is programmed on this node.',
      '',
      'Skipped:',
      '  Service shop/web [ignored by design]: spec.clusterIP "None": headless',
    ]);
  });

  it('prints the userspace listeners', () => {
    const port = webPort({
      listeners: [
        { frontend: 'clusterIP', address: '127.0.0.1', port: 41234, protocol: 'TCP', active: 2, refused: 0 },
      ],
    });
    const lines = explainLines('shop/web', answer([port]));
    const at = lines.indexOf('  Userspace listeners:');
    assert.ok(at > 0, lines.join('\n'));
    assert.equal(lines[at + 1], '    clusterIP  127.0.0.1:41234/TCP  active 2  refused 0');
  });

  it("reads the daemon's own /debug/services JSON (describeServices over a built state)", () => {
    const state = buildState(
      {
        services: [
          service('shop', 'web', {
            type: 'NodePort',
            clusterIP: '10.96.0.10',
            externalTrafficPolicy: 'Local',
            ports: [{ name: 'http', port: 80, targetPort: 8080, nodePort: 30080 }],
          }),
        ],
        slices: [
          slice(
            'shop',
            'web-a',
            'web',
            [{ name: 'http', port: 8080 }],
            [
              { ip: '10.244.1.11', nodeName: 'node-a' },
              { ip: '10.244.2.12', nodeName: 'node-b' },
            ],
          ),
        ],
      },
      { nodeName: 'node-a', nodeIPs: ['10.0.0.1'], lbAlgorithm: 'random' },
    );
    // Through JSON, as the daemon sends it.
    const read = readServicesAnswer(
      JSON.parse(JSON.stringify(describeServices(state, undefined, { service: 'shop/web' }))),
    );
    assert.ok(!('problem' in read), JSON.stringify(read));
    const lines = explainLines('shop/web', read);
    assert.ok(lines.includes('Port http 80/TCP (IPv4)'), lines.join('\n'));
    assert.ok(lines.includes('    nodePort   10.0.0.1:30080'), lines.join('\n'));
    const local = lines.indexOf('  Local traffic (externalTrafficPolicy Local): 1 endpoint');
    assert.ok(local > 0, lines.join('\n'));
    assert.equal(lines[local + 1], '    10.244.1.11:8080  ready, on this node');
  });
});

describe('readServicesAnswer', () => {
  it('takes an answer and refuses what is not one', () => {
    assert.ok(!('problem' in readServicesAnswer({ synced: false, ports: [], skipped: [] })));
    for (const bad of [
      null,
      [],
      'x',
      { ports: [], skipped: [] },
      { synced: true, ports: {}, skipped: [] },
      { synced: true, ports: [{ key: 'a' }], skipped: [] },
    ])
      assert.ok('problem' in readServicesAnswer(bad), JSON.stringify(bad));
  });
});
