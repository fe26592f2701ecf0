import type { V1Service } from '@kubernetes/client-node';
import { canonicalIp, ipFamily, parseCidr } from './ip.js';
import { isProtocol } from './protocol.js';
import { quote } from './quote.js';
import type { Family, LbAlgorithm, Protocol } from './types.js';

/** A Service after validation: what the model needs, nothing else. */
export interface ServiceInfo {
  namespace: string;
  name: string;
  /** ClusterIPs by family (from spec.clusterIPs, else spec.clusterIP). */
  clusterIPs: Partial<Record<Family, string>>;
  ports: Array<{ name: string; protocol: Protocol; port: number; nodePort: number }>;
  externalIPs: string[];
  loadBalancerIPs: string[];
  sourceRanges: string[];
  externallyAccessible: boolean;
  externalPolicyLocal: boolean;
  internalPolicyLocal: boolean;
  affinitySeconds: number;
  healthCheckNodePort: number;
  lbAlgorithm: LbAlgorithm | undefined;
  /** metadata.creationTimestamp in epoch ms, when present and valid. */
  created: number | undefined;
  /** Non-fatal problems (an invalid external IP, a defaulted timeout): one log line each. */
  warnings: string[];
}

export type ServiceResult =
  { ok: true; service: ServiceInfo } | { ok: false; ignored: boolean; reason: string };

export const LB_ALGORITHM_ANNOTATION = 'kube-nftproxy.io/lb-algorithm';
export const SERVICE_PROXY_NAME_LABEL = 'service.kubernetes.io/service-proxy-name';
const DEFAULT_AFFINITY_SECONDS = 10800;
const MAX_AFFINITY_SECONDS = 86400;
/** spec.trafficDistribution values the API knows; kube-proxy itself only reads the slices' hints. */
const TRAFFIC_DISTRIBUTIONS = new Set(['PreferClose', 'PreferSameZone', 'PreferSameNode']);

const fail = (reason: string): ServiceResult => ({ ok: false, ignored: false, reason });
const ignore = (reason: string): ServiceResult => ({ ok: false, ignored: true, reason });

/** A list field: absent is empty; anything but a list is `undefined` (the caller says what that costs). */
const list = (v: unknown): unknown[] | undefined =>
  v === undefined || v === null ? [] : Array.isArray(v) ? v : undefined;
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null;

function isPort(v: unknown, allowZero = false): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= (allowZero ? 0 : 1) && v <= 65535;
}

/**
 * Validate a Service as kube-proxy reads it. Fatal problems skip the Service (with the reason);
 * problems kube-proxy tolerates (an invalid external IP or source range, an out-of-range
 * affinity timeout) are dropped or defaulted and reported as warnings.
 */
export function parseService(svc: V1Service): ServiceResult {
  const name = svc.metadata?.name;
  if (!name || typeof name !== 'string') return fail('missing metadata.name');
  const spec = svc.spec;
  if (!spec) return fail('missing spec');
  if (typeof spec !== 'object' || Array.isArray(spec)) return fail('spec is not an object');
  if (svc.metadata?.labels?.[SERVICE_PROXY_NAME_LABEL] !== undefined)
    return ignore(`left to the proxy named by ${SERVICE_PROXY_NAME_LABEL}`);
  const type = spec.type ?? 'ClusterIP';
  if (type === 'ExternalName') return ignore('ExternalName Service');
  if (!['ClusterIP', 'NodePort', 'LoadBalancer'].includes(type))
    return fail(`unknown spec.type ${quote(type)}`);
  const listed = list(spec.clusterIPs);
  if (!listed) return fail('spec.clusterIPs is not a list');
  const rawIPs: unknown[] = listed.length ? listed : spec.clusterIP ? [spec.clusterIP] : [];
  if (rawIPs.length === 0) return fail('missing spec.clusterIP');
  if (rawIPs[0] === 'None') return ignore('headless Service');
  const clusterIPs: Partial<Record<Family, string>> = {};
  for (const raw of rawIPs) {
    const ip = typeof raw === 'string' ? canonicalIp(raw) : undefined;
    const family = ip ? ipFamily(ip) : undefined;
    if (!ip || !family) return fail(`invalid clusterIP ${quote(raw)}`);
    if (clusterIPs[family]) return fail(`two clusterIPs of family ${family}`);
    clusterIPs[family] = ip;
  }

  if (!Array.isArray(spec.ports) || spec.ports.length === 0) return fail('no spec.ports');
  const ports: ServiceInfo['ports'] = [];
  const seen = new Set<string>();
  const usesNodePorts = type === 'NodePort' || type === 'LoadBalancer';
  for (const [i, p] of spec.ports.entries()) {
    if (typeof p !== 'object' || p === null) return fail(`spec.ports[${i}] is not an object`);
    const protocol = p.protocol ?? 'TCP';
    if (!isProtocol(protocol)) return fail(`spec.ports[${i}]: unknown protocol ${quote(protocol)}`);
    if (!isPort(p.port)) return fail(`spec.ports[${i}]: invalid port ${quote(p.port)}`);
    if (p.nodePort !== undefined && p.nodePort !== null && !isPort(p.nodePort, true))
      return fail(`spec.ports[${i}]: invalid nodePort ${quote(p.nodePort)}`);
    const portName = p.name ?? '';
    if (typeof portName !== 'string')
      return fail(`spec.ports[${i}]: name ${quote(portName)} is not a string`);
    if (seen.has(portName)) return fail(`spec.ports[${i}]: duplicate port name ${quote(portName)}`);
    seen.add(portName);
    ports.push({
      name: portName,
      protocol,
      port: p.port,
      nodePort: usesNodePorts ? (p.nodePort ?? 0) : 0,
    });
  }

  const warnings: string[] = [];
  /** A list of the Service's whose elements each cost only themselves; not a list: ignored whole. */
  const each = (v: unknown, field: string): unknown[] => {
    const items = list(v);
    if (!items) warnings.push(`ignoring ${field}: not a list`);
    return items ?? [];
  };
  // typeof checks, not String(raw): String() throws on an object with a `toString` key.
  const ipOf = (raw: unknown): string | undefined =>
    typeof raw === 'string' ? canonicalIp(raw.trim()) : undefined;
  const externalIPs: string[] = [];
  for (const raw of each(spec.externalIPs, 'spec.externalIPs')) {
    const ip = ipOf(raw);
    if (ip) externalIPs.push(ip);
    else warnings.push(`ignoring invalid externalIP ${quote(raw)}`);
  }
  const loadBalancerIPs: string[] = [];
  if (type === 'LoadBalancer') {
    for (const ingress of each(svc.status?.loadBalancer?.ingress, 'status.loadBalancer.ingress')) {
      // ipMode Proxy: the load balancer proxies to the node itself, kube-proxy must not short-circuit.
      if (!isObject(ingress) || !ingress.ip || ingress.ipMode === 'Proxy') continue;
      const ip = ipOf(ingress.ip);
      if (ip) loadBalancerIPs.push(ip);
      else warnings.push(`ignoring invalid load balancer ingress IP ${quote(ingress.ip)}`);
    }
  }
  const sourceRanges: string[] = [];
  if (type === 'LoadBalancer') {
    for (const raw of each(spec.loadBalancerSourceRanges, 'spec.loadBalancerSourceRanges')) {
      const cidr = typeof raw === 'string' ? parseCidr(raw) : undefined;
      if (cidr) sourceRanges.push(cidr.text);
      else warnings.push(`ignoring invalid loadBalancerSourceRange ${quote(raw)}`);
    }
  }

  let affinitySeconds = 0;
  if (spec.sessionAffinity === 'ClientIP') {
    const t = spec.sessionAffinityConfig?.clientIP?.timeoutSeconds;
    if (t === undefined || t === null) affinitySeconds = DEFAULT_AFFINITY_SECONDS;
    else if (Number.isInteger(t) && t > 0 && t <= MAX_AFFINITY_SECONDS) affinitySeconds = t;
    else {
      affinitySeconds = DEFAULT_AFFINITY_SECONDS;
      warnings.push(
        `sessionAffinity timeoutSeconds ${quote(t)} out of range 1..${MAX_AFFINITY_SECONDS}: using ${DEFAULT_AFFINITY_SECONDS}`,
      );
    }
  } else if (spec.sessionAffinity !== undefined && spec.sessionAffinity !== 'None') {
    warnings.push(`unknown sessionAffinity ${quote(spec.sessionAffinity)}: using None`);
  }

  // The EndpointSlice controller turns trafficDistribution into hints and kube-proxy obeys the
  // hints, never the field: an unknown value changes nothing, but it is worth one line.
  const distribution = spec.trafficDistribution;
  if (distribution !== undefined && distribution !== null && !TRAFFIC_DISTRIBUTIONS.has(distribution))
    warnings.push(
      `unknown trafficDistribution ${quote(distribution)}: ignored, the EndpointSlice hints decide`,
    );

  const externallyAccessible =
    usesNodePorts && ports.some((p) => p.nodePort > 0)
      ? true
      : externalIPs.length > 0 || loadBalancerIPs.length > 0;
  const annotation = svc.metadata?.annotations?.[LB_ALGORITHM_ANNOTATION];
  let lbAlgorithm: LbAlgorithm | undefined;
  if (annotation === 'random' || annotation === 'maglev') lbAlgorithm = annotation;
  else if (annotation !== undefined)
    warnings.push(`unknown ${LB_ALGORITHM_ANNOTATION} ${quote(annotation)}: using the default`);

  // A string from JSON and YAML; a Date where client-node's model classes made one.
  const stamp: unknown = svc.metadata?.creationTimestamp;
  const ms = stamp instanceof Date ? stamp.getTime() : typeof stamp === 'string' ? Date.parse(stamp) : NaN;

  return {
    ok: true,
    service: {
      namespace: svc.metadata?.namespace || 'default',
      name,
      clusterIPs,
      ports,
      externalIPs,
      loadBalancerIPs,
      sourceRanges,
      externallyAccessible,
      externalPolicyLocal: externallyAccessible && spec.externalTrafficPolicy === 'Local',
      internalPolicyLocal: spec.internalTrafficPolicy === 'Local',
      affinitySeconds,
      healthCheckNodePort:
        type === 'LoadBalancer' && spec.externalTrafficPolicy === 'Local' && isPort(spec.healthCheckNodePort)
          ? spec.healthCheckNodePort
          : 0,
      lbAlgorithm,
      created: Number.isFinite(ms) ? ms : undefined,
      warnings,
    },
  };
}
