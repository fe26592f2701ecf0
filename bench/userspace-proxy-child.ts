/**
 * The userspace proxy under test, in its own process (as it runs in the daemon): one TCP
 * service port in loopback mode forwarding to the backend port given as argv[2]. Prints
 * `{"port":N}` on stdout when listening.
 */
import { silentLogger } from '../src/log.js';
import { UserspaceBackend } from '../src/lb/userspace-backend.js';
import type { Endpoint, ServicePort } from '../src/model/types.js';

const backendPort = Number(process.argv[2]);
const ep: Endpoint = {
  ip: '127.0.0.1',
  port: backendPort,
  ready: true,
  serving: true,
  terminating: false,
  local: true,
};
const sp: ServicePort = {
  key: 'bench/backend:/TCP/ipv4',
  service: 'bench/backend',
  namespace: 'bench',
  name: 'backend',
  portName: '',
  family: 'ipv4',
  protocol: 'TCP',
  clusterIP: '10.96.0.1',
  port: 80,
  nodePort: 0,
  externalIPs: [],
  loadBalancerIPs: [],
  sourceRanges: [],
  externalPolicyLocal: false,
  internalPolicyLocal: false,
  affinitySeconds: 0,
  healthCheckNodePort: 0,
  lbAlgorithm: 'random',
  allEndpoints: [ep],
  clusterEndpoints: [ep],
  localEndpoints: [ep],
  hasEndpoints: true,
  externallyAccessible: false,
};

const backend = new UserspaceBackend({ log: silentLogger(), bindMode: 'loopback' });
await backend.sync({ node: { name: 'bench', ips: ['127.0.0.1'], labels: {} }, ports: [sp], skipped: [] });
process.stdout.write(`${JSON.stringify({ port: backend.listeners()[0]!.port })}\n`);
process.on('SIGTERM', () => void backend.close().then(() => process.exit(0)));
