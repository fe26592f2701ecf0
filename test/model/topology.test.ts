import assert from 'node:assert/strict';
import { categorizeEndpoints, type HintedEndpoint } from '../../src/model/topology.js';

/** kube-proxy's CategorizeEndpoints, table-driven (pkg/proxy/topology_test.go's shape). */

const ep = (ip: string, o: Partial<Omit<HintedEndpoint, 'ip'>> = {}): HintedEndpoint => ({
  ip,
  port: 80,
  ready: true,
  serving: true,
  terminating: false,
  local: false,
  zoneHints: [],
  nodeHints: [],
  ...o,
});

const cluster = { internalPolicyLocal: false, externalPolicyLocal: false, externallyAccessible: false };
const ips = (list: { ip: string }[]): string[] => list.map((e) => e.ip);

const cases: Array<{
  name: string;
  endpoints: HintedEndpoint[];
  policy?: Partial<typeof cluster>;
  zone?: string;
  cluster: string[];
  local: string[];
  hasEndpoints: boolean;
}> = [
  {
    name: 'ready endpoints only, for cluster traffic',
    endpoints: [ep('10.0.0.1'), ep('10.0.0.2', { ready: false, serving: false })],
    cluster: ['10.0.0.1'],
    local: [],
    hasEndpoints: true,
  },
  {
    name: 'no ready endpoint: serving and terminating ones, never non-serving',
    endpoints: [
      ep('10.0.0.1', { ready: false, serving: true, terminating: true }),
      ep('10.0.0.2', { ready: false, serving: false, terminating: true }),
    ],
    cluster: ['10.0.0.1'],
    local: [],
    hasEndpoints: true,
  },
  {
    name: 'nothing usable: no endpoints anywhere',
    endpoints: [ep('10.0.0.1', { ready: false, serving: false, terminating: true })],
    cluster: [],
    local: [],
    hasEndpoints: false,
  },
  {
    name: 'internalTrafficPolicy Local: local ready only, cluster list unused',
    endpoints: [ep('10.0.0.1', { local: true }), ep('10.0.0.2')],
    policy: { internalPolicyLocal: true },
    cluster: [],
    local: ['10.0.0.1'],
    hasEndpoints: true,
  },
  {
    name: 'iTP Local with no local endpoint: still has endpoints elsewhere (drop, not reject)',
    endpoints: [ep('10.0.0.2')],
    policy: { internalPolicyLocal: true },
    cluster: [],
    local: [],
    hasEndpoints: true,
  },
  {
    name: 'eTP Local: local terminating fallback decided apart from cluster',
    endpoints: [
      ep('10.0.0.1', { local: true, ready: false, serving: true, terminating: true }),
      ep('10.0.0.2'),
    ],
    policy: { externallyAccessible: true, externalPolicyLocal: true },
    cluster: ['10.0.0.2'],
    local: ['10.0.0.1'],
    hasEndpoints: true,
  },
  {
    name: 'iTP Local and eTP Local: cluster endpoints still chosen, for the short-circuit',
    endpoints: [ep('10.0.0.1', { local: true }), ep('10.0.0.2')],
    policy: { internalPolicyLocal: true, externalPolicyLocal: true, externallyAccessible: true },
    cluster: ['10.0.0.1', '10.0.0.2'],
    local: ['10.0.0.1'],
    hasEndpoints: true,
  },
  {
    name: 'zone hints for our zone are obeyed',
    endpoints: [ep('10.0.0.1', { zoneHints: ['a'] }), ep('10.0.0.2', { zoneHints: ['b'] })],
    zone: 'a',
    cluster: ['10.0.0.1'],
    local: [],
    hasEndpoints: true,
  },
  {
    name: 'a ready endpoint without hints: hints ignored, all endpoints',
    endpoints: [ep('10.0.0.1', { zoneHints: ['a'] }), ep('10.0.0.2')],
    zone: 'a',
    cluster: ['10.0.0.1', '10.0.0.2'],
    local: [],
    hasEndpoints: true,
  },
  {
    name: 'no hint names our zone: all endpoints',
    endpoints: [ep('10.0.0.1', { zoneHints: ['b'] }), ep('10.0.0.2', { zoneHints: ['c'] })],
    zone: 'a',
    cluster: ['10.0.0.1', '10.0.0.2'],
    local: [],
    hasEndpoints: true,
  },
  {
    name: 'node without a zone label: zone hints ignored',
    endpoints: [ep('10.0.0.1', { zoneHints: ['a'] }), ep('10.0.0.2', { zoneHints: ['b'] })],
    cluster: ['10.0.0.1', '10.0.0.2'],
    local: [],
    hasEndpoints: true,
  },
  {
    name: 'node hints naming this node win over zone hints',
    endpoints: [
      ep('10.0.0.1', { zoneHints: ['a'], nodeHints: ['n1'] }),
      ep('10.0.0.2', { zoneHints: ['a'], nodeHints: ['n2'] }),
    ],
    zone: 'a',
    cluster: ['10.0.0.1'],
    local: [],
    hasEndpoints: true,
  },
];

describe('categorizeEndpoints', () => {
  for (const c of cases) {
    it(c.name, () => {
      const r = categorizeEndpoints(c.endpoints, { ...cluster, ...c.policy }, 'n1', c.zone);
      assert.deepEqual(ips(r.clusterEndpoints), c.cluster);
      assert.deepEqual(ips(r.localEndpoints), c.local);
      assert.equal(r.hasEndpoints, c.hasEndpoints);
    });
  }

  // Memory: at 50,000 Services every port held its own copy of the same list, and empty lists.
  it('gives the list itself when every endpoint is for cluster-wide traffic, and one frozen empty list', () => {
    const all = [ep('10.0.0.1', { local: true }), ep('10.0.0.2')];
    const r = categorizeEndpoints(all, cluster, 'n1', undefined);
    assert.equal(r.clusterEndpoints, all);
    assert.equal(r.localEndpoints.length, 0);
    assert.ok(Object.isFrozen(r.localEndpoints));
    const none = categorizeEndpoints(
      [ep('10.0.0.3', { ready: false, serving: false })],
      cluster,
      'n1',
      undefined,
    );
    assert.equal(none.clusterEndpoints, r.localEndpoints);
    const some = categorizeEndpoints([...all, ep('10.0.0.4', { ready: false })], cluster, 'n1', undefined);
    assert.deepEqual(ips(some.clusterEndpoints), ['10.0.0.1', '10.0.0.2']);
  });
});
