import type { CompileConfig } from '../../src/rules/compile.js';
import type { V1EndpointSlice, V1Service } from '@kubernetes/client-node';
import fc from 'fast-check';
import type { ObjectStore } from '../../src/watch/object-store.js';
import type { KindMap } from '../../src/watch/source.js';
import { service, slice } from './objects.js';

/** Random valid clusters for property tests: Services of every type and policy, with slices. */

const NODE = 'n1';

const endpointArb = fc.record({
  host: fc.integer({ min: 2, max: 40 }),
  local: fc.boolean(),
  ready: fc.boolean(),
  serving: fc.boolean(),
  terminating: fc.boolean(),
});

const serviceArb: fc.Arbitrary<ServiceSpec> = fc.record({
  type: fc.constantFrom<ServiceSpec['type']>('ClusterIP', 'NodePort', 'LoadBalancer'),
  udp: fc.boolean(),
  eTPLocal: fc.boolean(),
  iTPLocal: fc.boolean(),
  externalIP: fc.boolean(),
  ranges: fc.boolean(),
  endpoints: fc.array(endpointArb, { maxLength: 5 }),
  ipv6: fc.boolean(),
  affinity: fc.boolean(),
  affinitySeconds: fc.constantFrom(60, 600, 10800),
  // Maglev tables are thousands of elements per frontend: too slow for many runs; see apply.test.ts
  maglev: fc.constant(false),
});

export interface ServiceSpec {
  type: 'ClusterIP' | 'NodePort' | 'LoadBalancer';
  udp: boolean;
  eTPLocal: boolean;
  iTPLocal: boolean;
  externalIP: boolean;
  ranges: boolean;
  endpoints: Array<{ host: number; local: boolean; ready: boolean; serving: boolean; terminating: boolean }>;
  ipv6: boolean;
  affinity: boolean;
  /** Default: 60, 120 or 180 s by the Service's index. */
  affinitySeconds?: number;
  maglev: boolean;
}

export type ClusterSpec = ServiceSpec[];

export const clusterArb: fc.Arbitrary<ClusterSpec> = fc.array(serviceArb, { maxLength: 8 });

/** Objects for a generated cluster; service i gets ClusterIP 10.96.0.(i+1) and NodePort 30000+i. */
export function objectsOf(spec: ClusterSpec): { services: V1Service[]; slices: V1EndpointSlice[] } {
  const services: V1Service[] = [];
  const slices: V1EndpointSlice[] = [];
  spec.forEach((s, i) => {
    const name = `svc-${i}`;
    const protocol = s.udp ? 'UDP' : 'TCP';
    const families = s.ipv6
      ? ['10.96.0.' + (i + 1), `fd00:96::${(i + 1).toString(16)}`]
      : ['10.96.0.' + (i + 1)];
    services.push(
      service(
        'ns',
        name,
        {
          type: s.type,
          clusterIP: families[0],
          clusterIPs: families,
          ...(s.type !== 'ClusterIP' && s.eTPLocal ? { externalTrafficPolicy: 'Local' } : {}),
          ...(s.iTPLocal ? { internalTrafficPolicy: 'Local' } : {}),
          ...(s.affinity
            ? {
                sessionAffinity: 'ClientIP',
                sessionAffinityConfig: {
                  clientIP: { timeoutSeconds: s.affinitySeconds ?? 60 * (1 + (i % 3)) },
                },
              }
            : {}),
          ...(s.externalIP ? { externalIPs: [`192.0.2.${i + 1}`] } : {}),
          ...(s.type === 'LoadBalancer' && s.ranges
            ? { loadBalancerSourceRanges: ['203.0.113.0/24', ' 198.18.0.0/15 '] }
            : {}),
          ports: [{ port: 80, protocol, ...(s.type !== 'ClusterIP' ? { nodePort: 30000 + i } : {}) }],
        },
        {
          ...(s.type === 'LoadBalancer' ? { lbIPs: [`198.51.100.${i + 1}`] } : {}),
          ...(s.maglev ? { annotations: { 'kube-nftproxy.io/lb-algorithm': 'maglev' } } : {}),
        },
      ),
    );
    const eps = s.endpoints.map((e) => ({
      ip: `10.244.${e.local ? 1 : 2}.${e.host}`,
      nodeName: e.local ? NODE : 'n2',
      ready: e.ready,
      serving: e.serving,
      terminating: e.terminating,
    }));
    slices.push(slice('ns', `${name}-v4`, name, [{ port: 8080, protocol }], eps));
    if (s.ipv6)
      slices.push(
        slice(
          'ns',
          `${name}-v6`,
          name,
          [{ port: 8080, protocol }],
          eps.map((e) => ({
            ...e,
            ip: `fd00:244:${e.ip.split('.')[2]}::${Number(e.ip.split('.')[3]).toString(16)}`,
          })),
          'IPv6',
        ),
      );
  });
  return { services, slices };
}

export const MODEL_CONFIG = {
  nodeName: NODE,
  nodeIPs: ['192.168.0.10', 'fd00:1::10'],
  lbAlgorithm: 'random' as const,
};

/** What the property tests compile the arbitrary clusters with (both families, a fixed Maglev seed). */
export const COMPILE_CONFIG: CompileConfig = {
  table: 'kube-nftproxy',
  clusterCIDRs: ['10.244.0.0/16', 'fd00:244::/48'],
  masqueradeAll: false,
  serviceCIDRs: ['10.96.0.0/16'],
  nodePortIPs: { ipv4: ['192.168.0.10'], ipv6: ['fd00:1::10'] },
  maglevSeed: 7,
};

/**
 * Makes `store` hold exactly `objects`, as a watch would: an object whose content is unchanged
 * keeps its identity (no event), a changed one is upserted, a vanished one removed.
 */
export function syncStore(
  store: ObjectStore,
  objects: { services: V1Service[]; slices: V1EndpointSlice[] },
): void {
  const key = (o: { metadata?: { namespace?: string; name?: string } }): string =>
    `${o.metadata?.namespace || 'default'}/${o.metadata?.name}`;
  const apply = <K extends 'Service' | 'EndpointSlice'>(
    kind: K,
    held: Map<string, KindMap[K]>,
    wanted: Array<KindMap[K]>,
  ): void => {
    const keep = new Set(wanted.map(key));
    for (const [k, o] of [...held])
      if (!keep.has(k)) store.remove(kind, o.metadata?.namespace ?? '', o.metadata?.name ?? '');
    for (const o of wanted) {
      const before = held.get(key(o));
      if (!before || JSON.stringify(before) !== JSON.stringify(o)) store.upsert(kind, o);
    }
  };
  apply('Service', store.services, objects.services);
  apply('EndpointSlice', store.slices, objects.slices);
}

/**
 * Clusters built to collide: Services whose external IPs, load-balancer IPs, ports and
 * NodePorts come from small shared pools (other Services' ClusterIPs, the node IP, each
 * other's addresses), listed twice or dozens of times, with overlapping and nested source
 * ranges and creation times that tie or are missing. ClusterIPs stay unique, as the API
 * server allocates them.
 */
export const COLLISION_NODE_IP = '192.168.0.10';
const collidingServiceArb = fc.record({
  type: fc.constantFrom('ClusterIP', 'NodePort', 'LoadBalancer'),
  udp: fc.boolean(),
  port: fc.constantFrom(80, 30000, 30001),
  nodePort: fc.constantFrom(30000, 30001, 30002),
  externalIPs: fc.array(
    fc.constantFrom('10.96.0.1', '10.96.0.2', '10.96.0.3', '192.0.2.1', '192.0.2.2', COLLISION_NODE_IP),
    { maxLength: 40 },
  ),
  lbIPs: fc.array(fc.constantFrom('198.51.100.1', '198.51.100.2', '192.0.2.1', COLLISION_NODE_IP), {
    maxLength: 3,
  }),
  ranges: fc.array(
    fc.constantFrom(
      '10.0.0.0/8',
      '10.1.0.0/16',
      '10.1.2.0/24',
      '10.1.3.0/24',
      '192.0.2.0/24',
      `${COLLISION_NODE_IP}/32`,
      '198.51.100.0/25',
      '198.51.100.128/25',
      '0.0.0.0/0',
    ),
    { maxLength: 6 },
  ),
  eTPLocal: fc.boolean(),
  created: fc.constantFrom(undefined, '2024-01-01T00:00:00Z', '2024-01-01T00:00:00Z', '2025-01-01T00:00:00Z'),
  endpoints: fc.integer({ min: 0, max: 3 }),
});
export type CollidingService = typeof collidingServiceArb extends fc.Arbitrary<infer T> ? T : never;
export const collidingClusterArb = fc.array(collidingServiceArb, { minLength: 1, maxLength: 8 });

/** Objects for a colliding cluster; service i gets ClusterIP 10.96.0.(i+1). */
export function collidingObjectsOf(spec: CollidingService[]): {
  services: V1Service[];
  slices: V1EndpointSlice[];
} {
  const services: V1Service[] = [];
  const slices: V1EndpointSlice[] = [];
  spec.forEach((s, i) => {
    const name = `svc-${i}`;
    const protocol = s.udp ? 'UDP' : 'TCP';
    const external = s.type !== 'ClusterIP';
    services.push(
      service(
        'ns',
        name,
        {
          type: s.type,
          clusterIP: `10.96.0.${i + 1}`,
          externalIPs: s.externalIPs,
          ...(external && s.eTPLocal ? { externalTrafficPolicy: 'Local' } : {}),
          ...(s.type === 'LoadBalancer' ? { loadBalancerSourceRanges: s.ranges } : {}),
          ports: [{ port: s.port, protocol, ...(external ? { nodePort: s.nodePort } : {}) }],
        },
        {
          ...(s.type === 'LoadBalancer' ? { lbIPs: s.lbIPs } : {}),
          ...(s.created ? { created: s.created } : {}),
        },
      ),
    );
    const eps = Array.from({ length: s.endpoints }, (_, e) => ({
      ip: `10.244.${e % 2 ? 2 : 1}.${10 * i + e + 2}`,
      nodeName: e % 2 ? 'n2' : NODE,
    }));
    slices.push(slice('ns', `${name}-v4`, name, [{ port: 8080, protocol }], eps));
  });
  return { services, slices };
}
