import assert from 'node:assert/strict';
import type { V1Service } from '@kubernetes/client-node';
import fc from 'fast-check';
import { buildState } from '../../src/model/build-state.js';
import { frontendsOf } from '../../src/model/frontends.js';
import { StateBuilder, type ModelConfig, type ModelSource } from '../../src/model/state-builder.js';
import { trace } from '../../src/model/trace.js';
import type { ProxyState } from '../../src/model/types.js';
import {
  COLLISION_NODE_IP,
  collidingClusterArb,
  collidingObjectsOf,
  type CollidingService,
} from '../support/arbitraries.js';
import { service } from '../support/objects.js';

const NODE_IP = '192.168.0.10';
const CONFIG: ModelConfig = { nodeName: 'n1', nodeIPs: [NODE_IP], lbAlgorithm: 'random' };
const NODE_PORT_IPS = { ipv4: [NODE_IP], ipv6: [] };
const OLD = '2024-01-01T00:00:00Z';
const NEW = '2025-06-01T00:00:00Z';

/** Every frontend each Service answers on, as `service kind ip proto/port`, sorted. */
function served(state: ProxyState): string[] {
  const out: string[] = [];
  for (const sp of state.ports)
    for (const fe of frontendsOf(sp, NODE_PORT_IPS))
      out.push(`${sp.service} ${fe.kind} ${fe.ip} ${sp.protocol.toLowerCase()}/${fe.port}`);
  return out.sort();
}

const reasons = (state: ProxyState): string[] =>
  state.skipped.filter((s) => s.kind === 'Service').map((s) => `${s.name}: ${s.reason}`);

interface Case {
  what: string;
  services: V1Service[];
  /** Frontends that must be served, by whom (others may be too). */
  serves: string[];
  /** Frontends nobody may serve under that name. */
  notServed: string[];
  /** One reason per lost frontend, matched in order. */
  lost: RegExp[];
}

const kubeDns = service(
  'kube-system',
  'kube-dns',
  { clusterIP: '10.96.0.10', ports: [{ name: 'dns', port: 53, protocol: 'UDP' }] },
  { created: NEW },
);

const CASES: Case[] = [
  {
    what: "a tenant's externalIP on kube-dns's ClusterIP: the ClusterIP keeps its Service, even against an older tenant",
    services: [
      kubeDns,
      service(
        'tenant',
        'grab',
        { clusterIP: '10.96.0.50', externalIPs: ['10.96.0.10'], ports: [{ port: 53, protocol: 'UDP' }] },
        { created: OLD },
      ),
    ],
    serves: ['kube-system/kube-dns clusterIP 10.96.0.10 udp/53', 'tenant/grab clusterIP 10.96.0.50 udp/53'],
    notServed: ['tenant/grab externalIP 10.96.0.10 udp/53'],
    lost: [
      /^tenant\/grab: externalIP 10\.96\.0\.10 udp\/53 is kube-system\/kube-dns's clusterIP \(a ClusterIP always keeps its Service\)/,
    ],
  },
  {
    what: 'an externalIP equal to its own ClusterIP',
    services: [
      service('ns', 'self', { clusterIP: '10.96.0.7', externalIPs: ['10.96.0.7'], ports: [{ port: 80 }] }),
    ],
    serves: ['ns/self clusterIP 10.96.0.7 tcp/80'],
    notServed: ['ns/self externalIP 10.96.0.7 tcp/80'],
    lost: [/^ns\/self: externalIP 10\.96\.0\.7 tcp\/80 is also this Service's clusterIP/],
  },
  {
    what: "a NodePort and an older Service's externalIP on the node IP, same port: the older keeps it",
    services: [
      service(
        'ns',
        'np',
        { type: 'NodePort', clusterIP: '10.96.0.20', ports: [{ port: 80, nodePort: 30080 }] },
        { created: NEW },
      ),
      service(
        'ns',
        'ext',
        { clusterIP: '10.96.0.21', externalIPs: [NODE_IP], ports: [{ port: 30080 }] },
        { created: OLD },
      ),
    ],
    serves: [`ns/ext externalIP ${NODE_IP} tcp/30080`, 'ns/np clusterIP 10.96.0.20 tcp/80'],
    notServed: [`ns/np nodePort ${NODE_IP} tcp/30080`],
    lost: [
      /^ns\/np: nodePort 192\.168\.0\.10 tcp\/30080 is ns\/ext's externalIP \(the older Service keeps it\)/,
    ],
  },
  {
    what: 'the same, the NodePort Service older',
    services: [
      service(
        'ns',
        'np',
        { type: 'NodePort', clusterIP: '10.96.0.20', ports: [{ port: 80, nodePort: 30080 }] },
        { created: OLD },
      ),
      service(
        'ns',
        'ext',
        { clusterIP: '10.96.0.21', externalIPs: [NODE_IP], ports: [{ port: 30080 }] },
        { created: NEW },
      ),
    ],
    serves: [`ns/np nodePort ${NODE_IP} tcp/30080`, 'ns/ext clusterIP 10.96.0.21 tcp/30080'],
    notServed: [`ns/ext externalIP ${NODE_IP} tcp/30080`],
    lost: [/^ns\/ext: externalIP 192\.168\.0\.10 tcp\/30080 is ns\/np's nodePort/],
  },
  {
    what: 'one load-balancer IP for two Services: age decides, not the name',
    services: [
      service(
        'a',
        'young',
        { type: 'LoadBalancer', clusterIP: '10.96.0.30', ports: [{ port: 443, nodePort: 30443 }] },
        { created: NEW, lbIPs: ['203.0.113.5'] },
      ),
      service(
        'z',
        'old',
        { type: 'LoadBalancer', clusterIP: '10.96.0.31', ports: [{ port: 443, nodePort: 30444 }] },
        { created: OLD, lbIPs: ['203.0.113.5'] },
      ),
    ],
    serves: ['z/old loadBalancer 203.0.113.5 tcp/443', `a/young nodePort ${NODE_IP} tcp/30443`],
    notServed: ['a/young loadBalancer 203.0.113.5 tcp/443'],
    lost: [/^a\/young: loadBalancer 203\.0\.113\.5 tcp\/443 is z\/old's loadBalancer/],
  },
  {
    what: 'a Service without creationTimestamp counts as the newest',
    services: [
      service('a', 'nostamp', {
        clusterIP: '10.96.0.40',
        externalIPs: ['198.51.100.1'],
        ports: [{ port: 80 }],
      }),
      service(
        'b',
        'stamped',
        { clusterIP: '10.96.0.41', externalIPs: ['198.51.100.1'], ports: [{ port: 80 }] },
        { created: NEW },
      ),
    ],
    serves: ['b/stamped externalIP 198.51.100.1 tcp/80'],
    notServed: ['a/nostamp externalIP 198.51.100.1 tcp/80'],
    lost: [/^a\/nostamp: externalIP 198\.51\.100\.1 tcp\/80 is b\/stamped's externalIP/],
  },
  {
    what: 'one Service listing an address as load-balancer IP and external IP: the load balancer keeps it (and its source ranges)',
    services: [
      service(
        'ns',
        'both',
        {
          type: 'LoadBalancer',
          clusterIP: '10.96.0.60',
          externalIPs: ['203.0.113.9'],
          loadBalancerSourceRanges: ['198.51.100.0/24'],
          ports: [{ port: 80, nodePort: 30060 }],
        },
        { lbIPs: ['203.0.113.9'] },
      ),
    ],
    serves: ['ns/both loadBalancer 203.0.113.9 tcp/80'],
    notServed: ['ns/both externalIP 203.0.113.9 tcp/80'],
    lost: [/^ns\/both: externalIP 203\.0\.113\.9 tcp\/80 is also this Service's loadBalancer/],
  },
  {
    what: 'an address listed twice is one frontend, not a contest',
    services: [
      service('ns', 'twice', {
        clusterIP: '10.96.0.70',
        externalIPs: ['198.51.100.7', '198.51.100.7'],
        ports: [{ port: 80 }],
      }),
    ],
    serves: ['ns/twice externalIP 198.51.100.7 tcp/80'],
    notServed: [],
    lost: [],
  },
  {
    what: 'the same address on another protocol or port is no contest',
    services: [
      kubeDns,
      service('tenant', 'tcp53', {
        clusterIP: '10.96.0.80',
        externalIPs: ['10.96.0.10'],
        ports: [{ port: 53 }],
      }),
    ],
    serves: ['tenant/tcp53 externalIP 10.96.0.10 tcp/53', 'kube-system/kube-dns clusterIP 10.96.0.10 udp/53'],
    notServed: [],
    lost: [],
  },
];

describe('frontend ownership', () => {
  for (const c of CASES) {
    it(c.what, () => {
      const forward = buildState({ services: c.services, slices: [] }, CONFIG);
      const backward = buildState({ services: [...c.services].reverse(), slices: [] }, CONFIG);
      const got = served(forward);
      assert.deepEqual(served(backward), got, 'the order the objects come in decides nothing');
      for (const s of c.serves) assert.ok(got.includes(s), `${s} is served: ${got.join('; ')}`);
      for (const s of c.notServed) assert.ok(!got.includes(s), `${s} is not served`);
      // No frontend is served twice.
      const keys = got.map((s) => s.split(' ').slice(2).join(' '));
      assert.equal(new Set(keys).size, keys.length, `one owner per frontend: ${got.join('; ')}`);
      const lost = reasons(forward);
      assert.equal(lost.length, c.lost.length, lost.join('\n'));
      c.lost.forEach((re, i) => assert.match(lost[i]!, re));
    });
  }

  it("trace() sends a contested frontend's packets to its owner", () => {
    const state = buildState({ services: CASES[0]!.services, slices: [] }, CONFIG);
    const t = trace(
      state,
      { clusterCIDRs: [], masqueradeAll: false, serviceCIDRs: [], nodePortIPs: NODE_PORT_IPS },
      { src: '10.244.0.5', dst: '10.96.0.10', port: 53, proto: 'udp' },
    );
    assert.equal(t.verdict === 'reject' ? t.service : undefined, 'kube-system/kube-dns');
  });

  it('hands a frontend over when its owner goes, and back when an older claim returns (incremental)', () => {
    const older = service(
      'ns',
      'ext',
      { clusterIP: '10.96.0.21', externalIPs: [NODE_IP], ports: [{ port: 30080 }] },
      { created: OLD },
    );
    const np = service(
      'ns',
      'np',
      { type: 'NodePort', clusterIP: '10.96.0.20', ports: [{ port: 80, nodePort: 30080 }] },
      { created: NEW },
    );
    const services = new Map<string, V1Service>([
      ['ns/ext', older],
      ['ns/np', np],
    ]);
    const source: ModelSource = { services, slicesOf: () => [], sliceServices: () => [] };
    const builder = new StateBuilder(CONFIG);
    const first = builder.update(source).state;
    assert.ok(!served(first).includes(`ns/np nodePort ${NODE_IP} tcp/30080`));

    services.delete('ns/ext');
    const { state: second, delta: secondDelta } = builder.update(source, ['ns/ext']);
    assert.ok(served(second).includes(`ns/np nodePort ${NODE_IP} tcp/30080`), 'the NodePort is served again');
    assert.ok(secondDelta!.ports.has('ns/np:/TCP/ipv4'), 'the delta names the port that regained it');
    assert.deepEqual(reasons(second), []);
    assert.deepEqual(served(second), served(buildState({ services: [np], slices: [] }, CONFIG)));

    services.set('ns/ext', older);
    const { state: third, delta: thirdDelta } = builder.update(source, ['ns/ext']);
    assert.deepEqual(served(third), served(first), 'the older claim wins again');
    assert.ok(thirdDelta!.ports.has('ns/np:/TCP/ipv4'));

    const same = builder.update(source, []).state;
    assert.equal(
      same.ports.find((p) => p.service === 'ns/np'),
      third.ports.find((p) => p.service === 'ns/np'),
    );
  });

  it('whatever collides: one owner per frontend, no claimed frontend unserved, the owner outranks every other claimant (property)', () => {
    assert.equal(NODE_IP, COLLISION_NODE_IP);
    /** `ip proto/port` → every [service index, kind] that claims it, from the spec alone. */
    const claimsOf = (spec: CollidingService[]): Map<string, Array<[number, string]>> => {
      const out = new Map<string, Array<[number, string]>>();
      const claim = (fe: string, i: number, kind: string): void => {
        out.set(fe, [...(out.get(fe) ?? []), [i, kind]]);
      };
      spec.forEach((s, i) => {
        const p = s.udp ? 'udp' : 'tcp';
        claim(`10.96.0.${i + 1} ${p}/${s.port}`, i, 'clusterIP');
        for (const ip of s.externalIPs) claim(`${ip} ${p}/${s.port}`, i, 'externalIP');
        if (s.type === 'LoadBalancer')
          for (const ip of s.lbIPs) claim(`${ip} ${p}/${s.port}`, i, 'loadBalancer');
        if (s.type !== 'ClusterIP') claim(`${NODE_IP} ${p}/${s.nodePort}`, i, 'nodePort');
      });
      return out;
    };
    const rank = (spec: CollidingService[], i: number, kind: string): [number, number, string] => [
      kind === 'clusterIP' ? 0 : 1,
      spec[i]!.created ? Date.parse(spec[i]!.created!) : Infinity,
      `svc-${i}`,
    ];
    const before = (a: [number, number, string], b: [number, number, string]): boolean =>
      a[0] !== b[0] ? a[0] < b[0] : a[1] !== b[1] ? a[1] < b[1] : a[2] <= b[2];

    fc.assert(
      fc.property(collidingClusterArb, (spec) => {
        const objects = collidingObjectsOf(spec);
        const state = buildState(objects, CONFIG);
        const reversed = buildState(
          { services: [...objects.services].reverse(), slices: [...objects.slices].reverse() },
          CONFIG,
        );
        const got = served(state);
        assert.deepEqual(served(reversed), got);
        const owner = new Map<string, [number, string]>();
        for (const line of got) {
          const [svc, kind, ip, pp] = line.split(' ') as [string, string, string, string];
          const fe = `${ip} ${pp}`;
          assert.ok(!owner.has(fe), `${fe} served twice: ${got.join('; ')}`);
          owner.set(fe, [Number(svc.slice('ns/svc-'.length)), kind]);
        }
        for (const [fe, claimants] of claimsOf(spec)) {
          const o = owner.get(fe);
          assert.ok(o, `${fe} is claimed and served by nobody`);
          for (const [i, kind] of claimants)
            if (i !== o[0])
              assert.ok(
                before(rank(spec, o[0], o[1]), rank(spec, i, kind)),
                `${fe}: svc-${o[0]} (${o[1]}) owns it over svc-${i} (${kind})`,
              );
        }
      }),
      { numRuns: 300 },
    );
  });
});
