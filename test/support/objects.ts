import type { V1EndpointSlice, V1Node, V1Service } from '@kubernetes/client-node';
import { stringify } from 'yaml';

/** Builders of ordinary Kubernetes objects for tests: plain data, as a user would write them. */

export interface PortSpec {
  name?: string;
  port: number;
  protocol?: 'TCP' | 'UDP' | 'SCTP';
  targetPort?: number | string;
  nodePort?: number;
}

export function service(
  ns: string,
  name: string,
  spec: Partial<V1Service['spec']> & { ports: PortSpec[] },
  extra: {
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    lbIPs?: string[];
    /** metadata.creationTimestamp (RFC 3339): the older Service owns a contested frontend. */
    created?: string;
  } = {},
): V1Service {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: {
      name,
      namespace: ns,
      ...(extra.created ? { creationTimestamp: extra.created as unknown as Date } : {}),
      ...(extra.labels ? { labels: extra.labels } : {}),
      ...(extra.annotations ? { annotations: extra.annotations } : {}),
    },
    spec: { type: 'ClusterIP', ...spec } as V1Service['spec'],
    ...(extra.lbIPs ? { status: { loadBalancer: { ingress: extra.lbIPs.map((ip) => ({ ip })) } } } : {}),
  };
}

export interface EndpointSpec {
  ip: string;
  ready?: boolean;
  serving?: boolean;
  terminating?: boolean;
  nodeName?: string;
  zone?: string;
  zoneHints?: string[];
  nodeHints?: string[];
}

export function slice(
  ns: string,
  name: string,
  serviceName: string,
  ports: Array<{ name?: string; port: number; protocol?: 'TCP' | 'UDP' | 'SCTP' }>,
  endpoints: EndpointSpec[],
  addressType: 'IPv4' | 'IPv6' = 'IPv4',
): V1EndpointSlice {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name, namespace: ns, labels: { 'kubernetes.io/service-name': serviceName } },
    addressType,
    ports: ports.map((p) => ({ name: p.name ?? '', port: p.port, protocol: p.protocol ?? 'TCP' })),
    endpoints: endpoints.map((e) => ({
      addresses: [e.ip],
      conditions: {
        ...(e.ready !== undefined ? { ready: e.ready } : {}),
        ...(e.serving !== undefined ? { serving: e.serving } : {}),
        ...(e.terminating !== undefined ? { terminating: e.terminating } : {}),
      },
      ...(e.nodeName ? { nodeName: e.nodeName } : {}),
      ...(e.zone ? { zone: e.zone } : {}),
      ...(e.zoneHints || e.nodeHints
        ? {
            hints: {
              ...(e.zoneHints ? { forZones: e.zoneHints.map((z) => ({ name: z })) } : {}),
              ...(e.nodeHints ? { forNodes: e.nodeHints.map((n) => ({ name: n })) } : {}),
            },
          }
        : {}),
    })),
  } as V1EndpointSlice;
}

export function node(name: string, ips: string[], labels: Record<string, string> = {}): V1Node {
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name, labels },
    status: { addresses: ips.map((address) => ({ type: 'InternalIP', address })) },
  };
}

/** Several objects as one multi-document YAML file. */
export function yamlDocs(objects: object[]): string {
  return objects.map((o) => stringify(o)).join('---\n');
}
