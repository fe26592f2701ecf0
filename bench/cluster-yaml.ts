/**
 * The realistic mix of bench/states.ts (60 % ClusterIP, 20 % NodePort, 15 % LoadBalancer with
 * source ranges, 5 % LoadBalancer with externalTrafficPolicy Local, 10 endpoints each) as the
 * ordinary Kubernetes objects a user would keep in one file: a Service and an EndpointSlice
 * per Service, in the block style `kubectl get -o yaml` prints, with the fields the API server
 * fills in (uid, resourceVersion, targetRef, zone). Written by hand, not by a YAML library, so
 * generating 30,000 Services costs well under a second and owes nothing to the parser under test.
 */
import type { ServicePort } from '../src/model/types.js';
import { BENCH_NET, mixedState } from './states.js';

/** A deterministic fake uid from a number (the shape of one, not a random one). */
const uid = (n: number, salt: number): string => {
  const h = ((n * 2654435761) ^ salt) >>> 0;
  const hex = h.toString(16).padStart(8, '0');
  return `${hex}-${hex.slice(0, 4)}-4${hex.slice(1, 4)}-8${hex.slice(5, 8)}-${hex}${hex.slice(0, 4)}`;
};

function serviceYaml(sp: ServicePort, i: number): string {
  const type = sp.loadBalancerIPs.length > 0 ? 'LoadBalancer' : sp.nodePort > 0 ? 'NodePort' : 'ClusterIP';
  const lines = [
    'apiVersion: v1',
    'kind: Service',
    'metadata:',
    `  creationTimestamp: "2026-01-${String(1 + (i % 28)).padStart(2, '0')}T10:${String(i % 60).padStart(2, '0')}:00Z"`,
    '  labels:',
    `    app.kubernetes.io/name: ${sp.name}`,
    '    app.kubernetes.io/managed-by: Helm',
    `  name: ${sp.name}`,
    `  namespace: ${sp.namespace}`,
    `  resourceVersion: "${100000 + i}"`,
    `  uid: ${uid(i, 1)}`,
    'spec:',
  ];
  if (type === 'LoadBalancer') lines.push('  allocateLoadBalancerNodePorts: false');
  lines.push(`  clusterIP: ${sp.clusterIP}`, '  clusterIPs:', `  - ${sp.clusterIP}`);
  if (sp.externalPolicyLocal) lines.push('  externalTrafficPolicy: Local');
  else if (type !== 'ClusterIP') lines.push('  externalTrafficPolicy: Cluster');
  if (sp.healthCheckNodePort) lines.push(`  healthCheckNodePort: ${sp.healthCheckNodePort}`);
  lines.push(
    '  internalTrafficPolicy: Cluster',
    '  ipFamilies:',
    '  - IPv4',
    '  ipFamilyPolicy: SingleStack',
  );
  if (sp.sourceRanges.length > 0) {
    lines.push('  loadBalancerSourceRanges:');
    for (const r of sp.sourceRanges) lines.push(`  - ${r}`);
  }
  lines.push('  ports:', `  - name: ${sp.portName}`);
  if (sp.nodePort) lines.push(`    nodePort: ${sp.nodePort}`);
  lines.push(
    `    port: ${sp.port}`,
    '    protocol: TCP',
    `    targetPort: ${sp.allEndpoints[0]?.port ?? sp.port}`,
    '  selector:',
    `    app.kubernetes.io/name: ${sp.name}`,
  );
  if (sp.affinitySeconds > 0)
    lines.push(
      '  sessionAffinity: ClientIP',
      '  sessionAffinityConfig:',
      '    clientIP:',
      `      timeoutSeconds: ${sp.affinitySeconds}`,
    );
  else lines.push('  sessionAffinity: None');
  lines.push(`  type: ${type}`, 'status:', '  loadBalancer:');
  if (sp.loadBalancerIPs.length > 0) {
    lines.push('    ingress:');
    for (const ip of sp.loadBalancerIPs) lines.push(`    - ip: ${ip}`, '      ipMode: VIP');
  } else lines[lines.length - 1] += ' {}';
  return lines.join('\n');
}

function sliceYaml(sp: ServicePort, i: number): string {
  const lines = ['addressType: IPv4', 'apiVersion: discovery.k8s.io/v1', 'endpoints:'];
  for (const ep of sp.allEndpoints)
    lines.push(
      '- addresses:',
      `  - ${ep.ip}`,
      '  conditions:',
      `    ready: ${ep.ready}`,
      `    serving: ${ep.serving}`,
      `    terminating: ${ep.terminating}`,
      `  nodeName: ${ep.nodeName}`,
    );
  lines.push(
    'kind: EndpointSlice',
    'metadata:',
    '  labels:',
    `    kubernetes.io/service-name: ${sp.name}`,
    `  name: ${sp.name}-${uid(i, 5).slice(0, 5)}`,
    `  namespace: ${sp.namespace}`,
    'ports:',
    `- name: ${sp.portName}`,
    `  port: ${sp.allEndpoints[0]?.port ?? sp.port}`,
    '  protocol: TCP',
  );
  return lines.join('\n');
}

const NODE_YAML = [
  'apiVersion: v1',
  'kind: Node',
  'metadata:',
  `  name: ${BENCH_NET.nodeName}`,
  'status:',
  '  addresses:',
  '  - type: InternalIP',
  `    address: ${BENCH_NET.nodeIP}`,
  '  - type: Hostname',
  `    address: ${BENCH_NET.nodeName}`,
].join('\n');

/** One YAML stream: this node's Node object, then `n` Services of the mix with their slices. */
export function clusterYaml(n: number, endpointsPerService = 10): string {
  const docs = [NODE_YAML];
  for (const [i, sp] of mixedState(n, endpointsPerService).ports.entries())
    docs.push(serviceYaml(sp, i), sliceYaml(sp, i));
  return `${docs.join('\n---\n')}\n`;
}

/** The flags that make the CLI see the state mixedState() describes. */
export const CLUSTER_FLAGS = [
  `--hostname-override=${BENCH_NET.nodeName}`,
  `--node-ip=${BENCH_NET.nodeIP}`,
  `--cluster-cidr=${BENCH_NET.clusterCIDR}`,
  `--service-cidr=${BENCH_NET.serviceCIDR}`,
];
