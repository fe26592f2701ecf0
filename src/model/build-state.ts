import type { V1EndpointSlice, V1Node, V1Service } from '@kubernetes/client-node';
import { parseEndpointSlice, type SliceInfo } from './endpoint-slice.js';
import { canonicalIp, compareIps, ipFamily } from './ip.js';
import { parseService, type ServiceInfo } from './service.js';
import { categorizeEndpoints, type HintedEndpoint } from './topology.js';
import type { Family, LbAlgorithm, NodeInfo, ProxyState, ServicePort, Skipped } from './types.js';

export interface ModelInput {
  services: V1Service[];
  slices: V1EndpointSlice[];
  /** This node's Node object, when known. */
  node?: V1Node;
}

export interface ModelConfig {
  nodeName: string;
  /** --node-ip; empty means from the Node object, else `hostIPs`. */
  nodeIPs: string[];
  /** The host's own addresses, the last fallback for node IPs. */
  hostIPs?: string[];
  lbAlgorithm: LbAlgorithm;
}

const ZONE_LABEL = 'topology.kubernetes.io/zone';

function nodeInfo(input: ModelInput, config: ModelConfig): NodeInfo {
  const labels = input.node?.metadata?.labels ?? {};
  let ips = config.nodeIPs;
  if (ips.length === 0) {
    const addresses = input.node?.status?.addresses ?? [];
    // kube-proxy prefers InternalIP, then ExternalIP: the first of each family.
    const byType = (t: string): string[] => addresses.filter((a) => a.type === t).map((a) => a.address);
    const candidates = [...byType('InternalIP'), ...byType('ExternalIP')];
    const chosen: string[] = [];
    for (const family of ['ipv4', 'ipv6'] as const) {
      const ip = candidates.map((a) => canonicalIp(a)).find((a) => a && ipFamily(a) === family);
      if (ip) chosen.push(ip);
    }
    ips = chosen.length > 0 ? chosen : (config.hostIPs ?? []);
  }
  const zone = labels[ZONE_LABEL];
  return { name: config.nodeName, ips: [...ips], labels: { ...labels }, ...(zone ? { zone } : {}) };
}

/*
 * Memory keyed by object identity. The store hands over the same object until it changes, so
 * a sync after one change parses and joins one Service again, not ten thousand. Invisible to
 * callers: the same input gives the same output, with or without it.
 */
const parsedServices = new WeakMap<V1Service, ReturnType<typeof parseService>>();
const parsedSlices = new WeakMap<V1EndpointSlice, ReturnType<typeof parseEndpointSlice>>();
interface JoinedService {
  slices: SliceInfo[];
  node: string;
  zone: string | undefined;
  lbAlgorithm: LbAlgorithm;
  ports: ServicePort[];
  skipped: Skipped[];
}
const joined = new WeakMap<V1Service, JoinedService>();

const sameSlices = (a: SliceInfo[], b: SliceInfo[]): boolean =>
  a.length === b.length && a.every((s, i) => s === b[i]);

const objName = (o: { metadata?: { namespace?: string; name?: string } }): string =>
  `${o.metadata?.namespace || 'default'}/${o.metadata?.name ?? '<unnamed>'}`;

/**
 * The pure heart of the proxy: Services, EndpointSlices and this node's Node, validated and
 * joined into one ProxyState. Invalid objects are skipped with their reason; nothing else is
 * lost. Deterministic: the same input in any order gives the same state.
 */
export function buildState(input: ModelInput, config: ModelConfig): ProxyState {
  const node = nodeInfo(input, config);
  const skipped: Skipped[] = [];

  // Slices by service, sorted by slice name: kube-proxy deduplicates endpoints across slices
  // with the first slice winning unless a later copy is local.
  const slicesByService = new Map<string, SliceInfo[]>();
  for (const raw of input.slices) {
    let result = parsedSlices.get(raw);
    if (!result) {
      result = parseEndpointSlice(raw);
      parsedSlices.set(raw, result);
    }
    if (!result.ok) {
      skipped.push({
        kind: 'EndpointSlice',
        name: objName(raw),
        reason: result.reason,
        ...(result.ignored ? { ignored: true } : {}),
      });
      continue;
    }
    const { slice } = result;
    for (const w of slice.warnings)
      skipped.push({ kind: 'EndpointSlice', name: `${slice.namespace}/${slice.name}`, reason: w });
    const list = slicesByService.get(slice.service) ?? [];
    list.push(slice);
    slicesByService.set(slice.service, list);
  }
  for (const list of slicesByService.values())
    if (list.length > 1) list.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));

  const ports: ServicePort[] = [];
  const seenServices = new Set<string>();
  // Names computed once, not in every comparison: at 10,000 Services the sort dominated a sync.
  const sortedServices = input.services
    .map((raw) => ({ raw, name: objName(raw) }))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const { raw, name: key } of sortedServices) {
    let result = parsedServices.get(raw);
    if (!result) {
      result = parseService(raw);
      parsedServices.set(raw, result);
    }
    if (!result.ok) {
      skipped.push({
        kind: 'Service',
        name: key,
        reason: result.reason,
        ...(result.ignored ? { ignored: true } : {}),
      });
      continue;
    }
    if (seenServices.has(key)) {
      skipped.push({ kind: 'Service', name: key, reason: 'duplicate Service object' });
      continue;
    }
    seenServices.add(key);
    const svc = result.service;
    const slices = slicesByService.get(key) ?? [];
    let done = joined.get(raw);
    if (
      !done ||
      done.node !== node.name ||
      done.zone !== node.zone ||
      done.lbAlgorithm !== config.lbAlgorithm ||
      !sameSlices(done.slices, slices)
    ) {
      done = {
        slices,
        node: node.name,
        zone: node.zone,
        lbAlgorithm: config.lbAlgorithm,
        ...joinService(key, svc, slices, node, config),
      };
      joined.set(raw, done);
    }
    for (const w of svc.warnings) skipped.push({ kind: 'Service', name: key, reason: w });
    skipped.push(...done.skipped);
    ports.push(...done.ports);
  }
  ports.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  return { node, ports: dropConflictingFrontends(ports, skipped), skipped };
}

/** One Service with its slices: its service ports per family, endpoints categorized. Pure. */
function joinService(
  key: string,
  svc: ServiceInfo,
  slices: SliceInfo[],
  node: NodeInfo,
  config: ModelConfig,
): { ports: ServicePort[]; skipped: Skipped[] } {
  const out: { ports: ServicePort[]; skipped: Skipped[] } = { ports: [], skipped: [] };
  for (const slice of slices) {
    if (!svc.clusterIPs[slice.family])
      out.skipped.push({
        kind: 'EndpointSlice',
        name: `${slice.namespace}/${slice.name}`,
        reason: `${slice.family} endpoints for a Service with no ${slice.family} clusterIP`,
      });
  }
  for (const family of ['ipv4', 'ipv6'] as const) {
    const clusterIP = svc.clusterIPs[family];
    if (!clusterIP) continue;
    if (family === 'ipv6' && svc.affinitySeconds > 0)
      out.skipped.push({
        kind: 'Service',
        name: key,
        reason:
          'sessionAffinity is not applied to IPv6: nft 1.0.6 cannot record IPv6 affinity (IPv4 ports are sticky)',
      });
    for (const port of svc.ports) {
      const endpoints = new Map<string, HintedEndpoint>();
      for (const slice of slices) {
        if (slice.family !== family) continue;
        const sp = slice.ports.find((p) => p.name === port.name && p.protocol === port.protocol);
        if (!sp) continue;
        for (const ep of slice.endpoints) {
          const local = ep.nodeName !== undefined && ep.nodeName === node.name;
          const id = `${ep.ip}|${sp.port}`;
          if (endpoints.has(id) && !local) continue;
          endpoints.set(id, {
            ip: ep.ip,
            port: sp.port,
            ready: ep.ready,
            serving: ep.serving,
            terminating: ep.terminating,
            local,
            zoneHints: ep.zoneHints,
            nodeHints: ep.nodeHints,
            ...(ep.nodeName ? { nodeName: ep.nodeName } : {}),
            ...(ep.zone ? { zone: ep.zone } : {}),
          });
        }
      }
      const all = [...endpoints.values()].sort((a, b) => compareIps(a.ip, b.ip) || a.port - b.port);
      const { clusterEndpoints, localEndpoints, hasEndpoints } = categorizeEndpoints(
        all,
        svc,
        node.name,
        node.zone,
      );
      const pick = (f: Family) => (ip: string) => ipFamily(ip) === f;
      out.ports.push({
        key: `${key}:${port.name}/${port.protocol}/${family}`,
        service: key,
        namespace: svc.namespace,
        name: svc.name,
        portName: port.name,
        family,
        protocol: port.protocol,
        clusterIP,
        port: port.port,
        nodePort: port.nodePort,
        externalIPs: svc.externalIPs.filter(pick(family)),
        loadBalancerIPs: svc.loadBalancerIPs.filter(pick(family)),
        sourceRanges: svc.sourceRanges.filter((c) => ipFamily(c.slice(0, c.indexOf('/'))) === family),
        externalPolicyLocal: svc.externalPolicyLocal,
        internalPolicyLocal: svc.internalPolicyLocal,
        affinitySeconds: svc.affinitySeconds,
        healthCheckNodePort: svc.healthCheckNodePort,
        lbAlgorithm: svc.lbAlgorithm ?? config.lbAlgorithm,
        allEndpoints: all,
        clusterEndpoints,
        localEndpoints,
        hasEndpoints,
        externallyAccessible: svc.externallyAccessible,
      });
    }
  }
  return out;
}

/**
 * Two Services cannot own one frontend (an external IP, LB IP or NodePort on the same
 * protocol and port): the first by key keeps it, the other loses just that frontend.
 */
function dropConflictingFrontends(ports: ServicePort[], skipped: Skipped[]): ServicePort[] {
  const owner = new Map<string, string>();
  const claim = (frontend: string, sp: ServicePort): boolean => {
    const prev = owner.get(frontend);
    if (prev === undefined) {
      owner.set(frontend, sp.service);
      return true;
    }
    if (prev === sp.service) return true;
    skipped.push({ kind: 'Service', name: sp.service, reason: `${frontend} is already used by ${prev}` });
    return false;
  };
  // Ports are shared with the memory above: one that loses a frontend is copied, never changed.
  return ports.map((sp) => {
    if (sp.externalIPs.length === 0 && sp.loadBalancerIPs.length === 0 && sp.nodePort === 0) return sp;
    const proto = sp.protocol.toLowerCase();
    const externalIPs = sp.externalIPs.filter((ip) => claim(`${ip} ${proto}/${sp.port}`, sp));
    const loadBalancerIPs = sp.loadBalancerIPs.filter((ip) => claim(`${ip} ${proto}/${sp.port}`, sp));
    const nodePort =
      sp.nodePort && claim(`nodePort ${sp.family} ${proto}/${sp.nodePort}`, sp) ? sp.nodePort : 0;
    if (
      externalIPs.length === sp.externalIPs.length &&
      loadBalancerIPs.length === sp.loadBalancerIPs.length &&
      nodePort === sp.nodePort
    )
      return sp;
    return { ...sp, externalIPs, loadBalancerIPs, nodePort };
  });
}
