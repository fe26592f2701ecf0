/**
 * Deterministic ProxyStates for benchmarks: a seeded PRNG (mulberry32), never Math.random,
 * so two runs (and two layouts in one run) see exactly the same Services and endpoints.
 * States are built directly as ProxyState (no Service/EndpointSlice objects): the benches
 * measure the compiler and nft, not the model.
 */
import type { Endpoint, NodeInfo, ProxyState, ServicePort } from '../src/model/types.js';
import type { CompileConfig } from '../src/rules/compile.js';

/** mulberry32: a tiny, good-enough 32-bit PRNG; returns floats in [0, 1). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const ipOf = (n: number): string => `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
const ipNum = (ip: string): number => ip.split('.').reduce((acc, o) => acc * 256 + Number(o), 0);

/** Draws distinct addresses from base/prefix, skipping the network's .0 and .255 octets. */
class Pool {
  readonly #used = new Set<number>();
  readonly #base: number;
  readonly #size: number;
  constructor(
    cidr: string,
    readonly rand: () => number,
  ) {
    const [ip, len] = cidr.split('/') as [string, string];
    this.#base = ipNum(ip);
    this.#size = 2 ** (32 - Number(len));
  }
  next(): string {
    // Drawing at random slows down as the pool fills, and never ends once it is full.
    if (this.#used.size >= this.#size / 2) throw new Error(`address pool ${ipOf(this.#base)} is half used`);
    for (;;) {
      const n = this.#base + Math.floor(this.rand() * this.#size);
      const last = n & 255;
      if (last === 0 || last === 255 || this.#used.has(n)) continue;
      this.#used.add(n);
      return ipOf(n);
    }
  }
}

/** The ranges the states use; the bench passes the same ones to the compilers. */
export const BENCH_NET = {
  nodeName: 'bench-node',
  nodeIP: '192.168.0.10',
  /** ClusterIPs: 10.96.0.0 – 10.127.255.255. */
  serviceCIDR: '10.96.0.0/11',
  /** Pod IPs: 10.240.0.0 – 10.255.255.255, room for 50,000 Services × 10 endpoints. */
  clusterCIDR: '10.240.0.0/12',
  /** LoadBalancer ingress IPs. */
  lbCIDR: '172.16.0.0/12',
} as const;

/** How the benches compile these states: BENCH_NET's ranges, our table, no masquerade-all. */
export const BENCH_COMPILE_CONFIG: CompileConfig = {
  table: 'kube-nftproxy',
  clusterCIDRs: [BENCH_NET.clusterCIDR],
  masqueradeAll: false,
  serviceCIDRs: [BENCH_NET.serviceCIDR],
  nodePortIPs: { ipv4: [BENCH_NET.nodeIP], ipv6: [] },
};

const node: NodeInfo = { name: BENCH_NET.nodeName, ips: [BENCH_NET.nodeIP], labels: {} };
const SERVICE_PORTS = [80, 443, 8080, 8443, 9090, 53, 3306, 5432, 6379, 9000];

interface Draw {
  rand: () => number;
  vips: Pool;
  pods: Pool;
}

function endpoint(d: Draw, port: number, local: boolean): Endpoint {
  return {
    ip: d.pods.next(),
    port,
    nodeName: local ? BENCH_NET.nodeName : `node-${Math.floor(d.rand() * 500)}`,
    ready: true,
    serving: true,
    terminating: false,
    local,
  };
}

const byAddress = (a: Endpoint, b: Endpoint): number => ipNum(a.ip) - ipNum(b.ip) || a.port - b.port;

function servicePort(d: Draw, i: number, eps: number, localCount = 0): ServicePort {
  const namespace = `ns-${i % 100}`;
  const name = `svc-${i}`;
  const port = SERVICE_PORTS[i % SERVICE_PORTS.length]!;
  const targetPort = 8000 + (i % 1000);
  const all = Array.from({ length: eps }, (_, k) => endpoint(d, targetPort, k < localCount)).sort(byAddress);
  return {
    key: `${namespace}/${name}:http/TCP/ipv4`,
    service: `${namespace}/${name}`,
    namespace,
    name,
    portName: 'http',
    family: 'ipv4',
    protocol: 'TCP',
    clusterIP: d.vips.next(),
    port,
    nodePort: 0,
    externalIPs: [],
    loadBalancerIPs: [],
    sourceRanges: [],
    externalPolicyLocal: false,
    internalPolicyLocal: false,
    affinitySeconds: 0,
    healthCheckNodePort: 0,
    lbAlgorithm: 'random',
    allEndpoints: all,
    clusterEndpoints: all,
    localEndpoints: [],
    hasEndpoints: eps > 0,
    externallyAccessible: false,
  };
}

const sortPorts = (ports: ServicePort[]): ServicePort[] =>
  ports.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));

function draw(seed: number): Draw {
  const rand = prng(seed);
  return { rand, vips: new Pool(BENCH_NET.serviceCIDR, rand), pods: new Pool(BENCH_NET.clusterCIDR, rand) };
}

/** `n` ClusterIP Services, one TCP port each, `endpointsPerService` remote ready endpoints each. */
export function clusterIpState(n: number, endpointsPerService: number, seed = 1): ProxyState {
  const d = draw(seed);
  const ports = Array.from({ length: n }, (_, i) => servicePort(d, i, endpointsPerService));
  return { node, ports: sortPorts(ports), skipped: [] };
}

/**
 * Issue 3's realistic mix of `n` Services: 60 % ClusterIP, 20 % NodePort, 15 % LoadBalancer
 * with two source ranges, 5 % LoadBalancer with externalTrafficPolicy Local (two of the
 * endpoints on this node), and every 20th Service (5 %) with ClientIP affinity (10800 s).
 * LoadBalancers get no NodePort (allocateLoadBalancerNodePorts: false): 30000–32767 holds
 * only 2,768 ports, enough for the NodePort Services and the eTP Local health checks at 10,000.
 */
export function mixedState(n: number, endpointsPerService: number, seed = 2): ProxyState {
  const d = draw(seed);
  const lbs = new Pool(BENCH_NET.lbCIDR, d.rand);
  let nextNodePort = 30000;
  const ports: ServicePort[] = [];
  for (let i = 0; i < n; i++) {
    // Kinds by position in each block of 20: 12 ClusterIP, 4 NodePort, 3 LB, 1 LB eTP Local.
    const slot = i % 20;
    const kind = slot < 12 ? 'clusterIP' : slot < 16 ? 'nodePort' : slot < 19 ? 'lb' : 'lbLocal';
    const local = kind === 'lbLocal' ? Math.min(2, endpointsPerService) : 0;
    const sp = servicePort(d, i, endpointsPerService, local);
    // One in 20, rotating through the kinds.
    if (slot === Math.floor(i / 20) % 20) sp.affinitySeconds = 10800;
    if (kind === 'nodePort') sp.nodePort = nextNodePort++;
    if (kind === 'lb' || kind === 'lbLocal') {
      sp.loadBalancerIPs = [lbs.next()];
      if (kind === 'lb') {
        const a = Math.floor(d.rand() * 200);
        sp.sourceRanges = [`203.0.${a}.0/24`, `198.51.100.${(a % 16) * 16}/28`];
      } else {
        sp.externalPolicyLocal = true;
        sp.healthCheckNodePort = nextNodePort++;
        sp.localEndpoints = sp.clusterEndpoints.filter((ep) => ep.local);
      }
    }
    sp.externallyAccessible = kind !== 'clusterIP';
    ports.push(sp);
  }
  return { node, ports: sortPorts(ports), skipped: [] };
}

/**
 * The same state with one endpoint of the service port at `index` replaced by a fresh pod IP
 * (a pod rescheduled): the smallest realistic change. Other ports are shared, not copied.
 */
export function replaceOneEndpoint(state: ProxyState, index: number, seed: number): ProxyState {
  const old = state.ports[index];
  if (!old || old.clusterEndpoints.length === 0) throw new Error(`service port ${index} has no endpoints`);
  const inUse = new Set(state.ports.flatMap((sp) => sp.allEndpoints.map((ep) => ep.ip)));
  const pods = new Pool(BENCH_NET.clusterCIDR, prng(seed));
  let ip = pods.next();
  while (inUse.has(ip)) ip = pods.next();
  const victim = old.clusterEndpoints[0]!;
  const fresh: Endpoint = { ...victim, ip };
  const all = old.allEndpoints.map((ep) => (ep === victim ? fresh : ep)).sort(byAddress);
  const sp: ServicePort = {
    ...old,
    allEndpoints: all,
    clusterEndpoints: old.clusterEndpoints.map((ep) => (ep === victim ? fresh : ep)).sort(byAddress),
    localEndpoints: old.localEndpoints.map((ep) => (ep === victim ? fresh : ep)).sort(byAddress),
  };
  const ports = state.ports.slice();
  ports[index] = sp;
  return { ...state, ports };
}
