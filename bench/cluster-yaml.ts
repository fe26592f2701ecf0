/**
 * The realistic mix of issue #16 (60 % ClusterIP, 20 % NodePort, 15 % LoadBalancer with source
 * ranges, 5 % LoadBalancer with externalTrafficPolicy Local, every 20th with ClientIP affinity,
 * 10 endpoints each: the kinds in the proportions of bench/states.ts's mixedState) as the ordinary
 * Kubernetes objects a user would keep in one file: a Service and an EndpointSlice per Service,
 * in the block style `kubectl get -o yaml` prints, with the fields the API server fills in.
 * Written by hand, not by a YAML library, so generating 30,000 Services costs a fraction of a
 * second and owes nothing to the parser under test. Addresses are drawn in order (30,000 × 10
 * pods do not fit mixedState's pod range), and NodePorts run past 32767 (they do not fit
 * kube-proxy's default range either; nothing here checks it).
 */

import { prng } from './states.js';

/** The ranges the objects use; the CLI gets the same ones (CLUSTER_FLAGS). */
export const CLUSTER_NET = {
  nodeName: 'bench-node',
  nodeIP: '192.168.0.10',
  serviceCIDR: '10.96.0.0/12',
  clusterCIDR: '100.64.0.0/10',
} as const;

/** The n-th address of a range's hosts, 254 to a /24 (no .0, no .255). */
const host = (base: [number, number], n: number): string =>
  `${base[0]}.${base[1] + Math.floor(n / 65024)}.${Math.floor(n / 254) % 256}.${(n % 254) + 1}`;

const SERVICE_PORTS = [80, 443, 8080, 8443, 9090, 53, 3306, 5432, 6379, 9000];

interface MixService {
  namespace: string;
  name: string;
  portName: string;
  clusterIP: string;
  port: number;
  targetPort: number;
  nodePort: number;
  loadBalancerIPs: string[];
  sourceRanges: string[];
  externalPolicyLocal: boolean;
  healthCheckNodePort: number;
  affinitySeconds: number;
  endpoints: Array<{ ip: string; nodeName: string }>;
}

function mix(n: number, endpointsPerService: number): MixService[] {
  const rand = prng(2);
  let nextNodePort = 30000;
  const out: MixService[] = [];
  for (let i = 0; i < n; i++) {
    // Kinds by position in each block of 20: 12 ClusterIP, 4 NodePort, 3 LB, 1 LB eTP Local.
    const slot = i % 20;
    const kind = slot < 12 ? 'clusterIP' : slot < 16 ? 'nodePort' : slot < 19 ? 'lb' : 'lbLocal';
    const local = kind === 'lbLocal' ? Math.min(2, endpointsPerService) : 0;
    const a = Math.floor(rand() * 200);
    out.push({
      namespace: `ns-${i % 100}`,
      name: `svc-${i}`,
      portName: 'http',
      clusterIP: host([10, 96], i),
      port: SERVICE_PORTS[i % SERVICE_PORTS.length]!,
      targetPort: 8000 + (i % 1000),
      nodePort: kind === 'nodePort' ? nextNodePort++ : 0,
      loadBalancerIPs: kind === 'lb' || kind === 'lbLocal' ? [host([172, 16], i)] : [],
      sourceRanges: kind === 'lb' ? [`203.0.${a}.0/24`, `198.51.100.${(a % 16) * 16}/28`] : [],
      externalPolicyLocal: kind === 'lbLocal',
      healthCheckNodePort: kind === 'lbLocal' ? nextNodePort++ : 0,
      // One in 20, rotating through the kinds.
      affinitySeconds: slot === Math.floor(i / 20) % 20 ? 10800 : 0,
      endpoints: Array.from({ length: endpointsPerService }, (_, k) => ({
        ip: host([100, 64], i * endpointsPerService + k),
        nodeName: k < local ? CLUSTER_NET.nodeName : `node-${Math.floor(rand() * 500)}`,
      })),
    });
  }
  return out;
}

/** A deterministic fake uid from a number (the shape of one, not a random one). */
const uid = (n: number, salt: number): string => {
  const h = ((n * 2654435761) ^ salt) >>> 0;
  const hex = h.toString(16).padStart(8, '0');
  return `${hex}-${hex.slice(0, 4)}-4${hex.slice(1, 4)}-8${hex.slice(5, 8)}-${hex}${hex.slice(0, 4)}`;
};

function serviceYaml(sp: MixService, i: number): string {
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
    `    targetPort: ${sp.targetPort}`,
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

function sliceYaml(sp: MixService, i: number): string {
  const lines = ['addressType: IPv4', 'apiVersion: discovery.k8s.io/v1', 'endpoints:'];
  for (const ep of sp.endpoints)
    lines.push(
      '- addresses:',
      `  - ${ep.ip}`,
      '  conditions:',
      '    ready: true',
      '    serving: true',
      '    terminating: false',
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
    `  port: ${sp.targetPort}`,
    '  protocol: TCP',
  );
  return lines.join('\n');
}

const NODE_YAML = [
  'apiVersion: v1',
  'kind: Node',
  'metadata:',
  `  name: ${CLUSTER_NET.nodeName}`,
  'status:',
  '  addresses:',
  '  - type: InternalIP',
  `    address: ${CLUSTER_NET.nodeIP}`,
  '  - type: Hostname',
  `    address: ${CLUSTER_NET.nodeName}`,
].join('\n');

/** The documents of the stream: this node's Node object, then each Service and its slice. */
export function clusterDocs(n: number, endpointsPerService = 10): string[] {
  const docs = [NODE_YAML];
  for (const [i, sp] of mix(n, endpointsPerService).entries())
    docs.push(serviceYaml(sp, i), sliceYaml(sp, i));
  return docs;
}

/** One YAML stream of clusterDocs(). */
export const clusterYaml = (n: number, endpointsPerService = 10): string =>
  `${clusterDocs(n, endpointsPerService).join('\n---\n')}\n`;

/**
 * clusterDocs() as YAML streams of at most `maxBytes` each (in order): one stream when it fits,
 * else as few as fit (a --source file past the parse limit would be refused).
 */
export function clusterFiles(n: number, maxBytes: number, endpointsPerService = 10): string[] {
  const files: string[] = [];
  let current: string[] = [];
  let size = 0;
  for (const doc of clusterDocs(n, endpointsPerService)) {
    if (size + doc.length + 5 > maxBytes && current.length > 0) {
      files.push(`${current.join('\n---\n')}\n`);
      current = [];
      size = 0;
    }
    current.push(doc);
    size += doc.length + 5;
  }
  files.push(`${current.join('\n---\n')}\n`);
  return files;
}

/** The flags that make the CLI see these objects as the bench means them. */
export const CLUSTER_FLAGS = [
  `--hostname-override=${CLUSTER_NET.nodeName}`,
  `--node-ip=${CLUSTER_NET.nodeIP}`,
  `--cluster-cidr=${CLUSTER_NET.clusterCIDR}`,
  `--service-cidr=${CLUSTER_NET.serviceCIDR}`,
];
