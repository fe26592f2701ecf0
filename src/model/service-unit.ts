import type { V1EndpointSlice, V1Service } from '@kubernetes/client-node';
import { compareStrings } from '../util/sorted-index.js';
import { mergeCidrs } from './cidr-set.js';
import { parseEndpointSlice, type SliceEndpoint, type SliceInfo } from './endpoint-slice.js';
import { ipFamily, ipOrder } from './ip.js';
import { objName } from './object-key.js';
import { parseService, type ServiceInfo } from './service.js';
import { categorizeEndpoints, type HintedEndpoint } from './topology.js';
import type { LbAlgorithm, NodeInfo, ServicePort, Skipped } from './types.js';

/** What one Service (with the slices labelled for it) contributes to the state. */
export interface ServiceUnit {
  /** Its service ports, sorted by key. */
  ports: ServicePort[];
  /** Its objects that were skipped or partly dropped, slices first. */
  skipped: Skipped[];
}

/** What the join depends on beyond the objects. */
export interface JoinConfig {
  lbAlgorithm: LbAlgorithm;
}

/*
 * Memory keyed by object identity. The store hands over the same object until it changes, so
 * a rebuild of everything joins only what changed. Invisible to callers: the same input gives
 * the same output, with or without it. Only the join is kept, against the raw objects: neither
 * the parsed slices (a second copy of every endpoint, ≈10 MB at 100,000 endpoints) nor the
 * parsed Services (≈550 bytes each, 27 MB at 50,000), for the price of parsing a changed
 * Service and its slices again (microseconds). The same unit (so the same ServicePort objects)
 * for the same objects is this layer's part of the identity contract (StateDelta,
 * state-builder.ts).
 */
interface Joined {
  /** The raw slices it was joined with, in name order. */
  slices: V1EndpointSlice[];
  node: string;
  zone: string | undefined;
  lbAlgorithm: LbAlgorithm;
  unit: ServiceUnit;
}
const joined = new WeakMap<V1Service, Joined>();

const sameList = <T>(a: readonly T[], b: readonly T[]): boolean =>
  a.length === b.length && a.every((x, i) => x === b[i]);

/**
 * One Service key: its Service (if any) joined with its slices. Slices are taken in name order:
 * kube-proxy deduplicates endpoints across slices with the first slice winning unless a later
 * copy is local. A key with slices but no Service still reports its slices' problems.
 */
export function serviceUnit(
  key: string,
  raw: V1Service | undefined,
  rawSlices: Iterable<V1EndpointSlice>,
  node: NodeInfo,
  config: JoinConfig,
): ServiceUnit {
  // One Service's slices share its namespace: `namespace/name` order is name order.
  const listed = [...rawSlices];
  // Most Services have one slice: nothing to order.
  const raws =
    listed.length < 2
      ? listed
      : listed
          .map((r) => ({ r, name: objName(r) }))
          .sort((a, b) => compareStrings(a.name, b.name))
          .map((x) => x.r);
  const done = raw && joined.get(raw);
  if (
    done &&
    done.node === node.name &&
    done.zone === node.zone &&
    done.lbAlgorithm === config.lbAlgorithm &&
    sameList(done.slices, raws)
  )
    return done.unit;

  const skipped: Skipped[] = [];
  const slices: SliceInfo[] = [];
  for (const rawSlice of raws) {
    const result = parseEndpointSlice(rawSlice);
    if (!result.ok) {
      skipped.push({
        kind: 'EndpointSlice',
        name: objName(rawSlice),
        reason: result.reason,
        ...(result.ignored ? { ignored: true } : {}),
      });
      continue;
    }
    slices.push(result.slice);
    for (const w of result.slice.warnings)
      skipped.push({
        kind: 'EndpointSlice',
        name: `${result.slice.namespace}/${result.slice.name}`,
        reason: w,
      });
  }
  if (!raw) return { ports: [], skipped };
  const parsed = parseService(raw);
  if (!parsed.ok) {
    skipped.push({
      kind: 'Service',
      name: key,
      reason: parsed.reason,
      ...(parsed.ignored ? { ignored: true } : {}),
    });
    return { ports: [], skipped };
  }
  const svc = parsed.service;
  const join = joinService(key, svc, slices, node, config);
  for (const w of svc.warnings) skipped.push({ kind: 'Service', name: key, reason: w });
  skipped.push(...join.skipped);
  const unit: ServiceUnit = { ports: join.ports, skipped };
  joined.set(raw, { slices: raws, node: node.name, zone: node.zone, lbAlgorithm: config.lbAlgorithm, unit });
  return unit;
}

/**
 * A slice's endpoint on one port, as the state holds it (every port's endpoint lists share
 * these objects). One literal per combination of the optional fields, each with all of its
 * properties: an object made from a literal gets room for exactly those, and a property
 * assigned afterwards goes to an out-of-object property array (≈ 40 more bytes per endpoint,
 * 26 MB at 50,000 Services × 10). The properties are in the same order in every variant.
 */
function hintedEndpoint(ep: SliceEndpoint, port: number, local: boolean): HintedEndpoint {
  const { ip, ready, serving, terminating, zoneHints, nodeHints, nodeName, zone } = ep;
  if (nodeName) {
    return zone
      ? { ip, port, ready, serving, terminating, local, zoneHints, nodeHints, nodeName, zone }
      : { ip, port, ready, serving, terminating, local, zoneHints, nodeHints, nodeName };
  }
  return zone
    ? { ip, port, ready, serving, terminating, local, zoneHints, nodeHints, zone }
    : { ip, port, ready, serving, terminating, local, zoneHints, nodeHints };
}

/** One Service with its slices: its service ports per family, endpoints categorized. Pure. */
function joinService(
  key: string,
  svc: ServiceInfo,
  slices: SliceInfo[],
  node: NodeInfo,
  config: JoinConfig,
): ServiceUnit {
  const out: ServiceUnit = { ports: [], skipped: [] };
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
    // The Service's addresses of this family, shared by its ports.
    const mine = (ip: string): boolean => ipFamily(ip) === family;
    // An address listed twice is one frontend; overlapping ranges are one interval set entry.
    const externalIPs = [...new Set(svc.externalIPs.filter(mine))];
    const loadBalancerIPs = [...new Set(svc.loadBalancerIPs.filter(mine))];
    const sourceRanges = mergeCidrs(svc.sourceRanges.filter((c) => mine(c.slice(0, c.indexOf('/')))));
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
          endpoints.set(id, hintedEndpoint(ep, sp.port, local));
        }
      }
      // Each address turned into its order once: a comparator parsing both addresses per call
      // cost 20 ms for 1,000 endpoints.
      const all = [...endpoints.values()]
        .map((ep) => ({ ep, order: ipOrder(ep.ip) }))
        .sort((a, b) => (a.order < b.order ? -1 : a.order > b.order ? 1 : a.ep.port - b.ep.port))
        .map((x) => x.ep);
      const { clusterEndpoints, localEndpoints, hasEndpoints } = categorizeEndpoints(
        all,
        svc,
        node.name,
        node.zone,
      );
      out.ports.push({
        // One flat string (a join), held as long as the port: a template would be a chain of cons strings.
        key: [key, ':', port.name, '/', port.protocol, '/', family].join(''),
        service: key,
        namespace: svc.namespace,
        name: svc.name,
        portName: port.name,
        family,
        protocol: port.protocol,
        clusterIP,
        port: port.port,
        nodePort: port.nodePort,
        externalIPs,
        loadBalancerIPs,
        sourceRanges,
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
        ...(svc.created !== undefined ? { created: svc.created } : {}),
      });
    }
  }
  out.ports.sort((a, b) => compareStrings(a.key, b.key));
  return out;
}
