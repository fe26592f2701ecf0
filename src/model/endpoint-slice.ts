import type { V1EndpointSlice } from '@kubernetes/client-node';
import { canonicalIp, ipFamily } from './ip.js';
import { objectKey } from './object-key.js';
import type { Family, Protocol } from './types.js';

export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';

/** The Service key a slice is labelled for, `namespace/name`; '' without the label. */
export function sliceServiceKey(slice: V1EndpointSlice): string {
  const svc = slice.metadata?.labels?.[SERVICE_NAME_LABEL];
  return svc ? objectKey(slice.metadata?.namespace, svc) : '';
}

export interface SliceEndpoint {
  ip: string;
  ready: boolean;
  serving: boolean;
  terminating: boolean;
  nodeName?: string;
  zone?: string;
  zoneHints: string[];
  nodeHints: string[];
}

/** An EndpointSlice after validation. */
export interface SliceInfo {
  namespace: string;
  name: string;
  /** The Service it belongs to, `namespace/name`. */
  service: string;
  family: Family;
  ports: Array<{ name: string; protocol: Protocol; port: number }>;
  endpoints: SliceEndpoint[];
  /** Endpoints or ports that were dropped, one line each. */
  warnings: string[];
}

/** Shared by every endpoint without hints: two empty arrays per endpoint add up at 100,000. */
const NONE: string[] = Object.freeze([]) as unknown as string[];
const names = (list: Array<{ name: string }> | undefined): string[] =>
  list?.length ? list.map((x) => x.name).filter(Boolean) : NONE;

export type SliceResult = { ok: true; slice: SliceInfo } | { ok: false; ignored: boolean; reason: string };

/**
 * Validate an EndpointSlice as kube-proxy reads it: the first address of each endpoint, the
 * conditions with their API defaults (ready unset means ready; serving unset follows ready),
 * ports by name. Bad endpoints and ports are dropped with a warning; the rest of the slice stays.
 */
export function parseEndpointSlice(slice: V1EndpointSlice): SliceResult {
  const name = slice.metadata?.name;
  if (!name) return { ok: false, ignored: false, reason: 'missing metadata.name' };
  const namespace = slice.metadata?.namespace || 'default';
  const serviceName = slice.metadata?.labels?.[SERVICE_NAME_LABEL];
  if (!serviceName) return { ok: false, ignored: false, reason: `missing label ${SERVICE_NAME_LABEL}` };
  const addressType = slice.addressType;
  if (addressType === 'FQDN') return { ok: false, ignored: true, reason: 'FQDN EndpointSlice' };
  if (addressType !== 'IPv4' && addressType !== 'IPv6')
    return { ok: false, ignored: false, reason: `unknown addressType ${JSON.stringify(addressType)}` };
  const family: Family = addressType === 'IPv4' ? 'ipv4' : 'ipv6';
  const warnings: string[] = [];

  const ports: SliceInfo['ports'] = [];
  for (const [i, p] of (slice.ports ?? []).entries()) {
    const protocol = p.protocol ?? 'TCP';
    if (protocol !== 'TCP' && protocol !== 'UDP' && protocol !== 'SCTP') {
      warnings.push(`ports[${i}]: unknown protocol ${JSON.stringify(protocol)}`);
      continue;
    }
    if (typeof p.port !== 'number' || !Number.isInteger(p.port) || p.port < 1 || p.port > 65535) {
      warnings.push(`ports[${i}]: invalid port ${JSON.stringify(p.port)}`);
      continue;
    }
    ports.push({ name: p.name ?? '', protocol, port: p.port });
  }

  const endpoints: SliceEndpoint[] = [];
  for (const [i, ep] of (Array.isArray(slice.endpoints) ? slice.endpoints : []).entries()) {
    const raw = ep?.addresses?.[0];
    const ip = typeof raw === 'string' ? canonicalIp(raw) : undefined;
    if (!ip || ipFamily(ip) !== family) {
      warnings.push(`endpoints[${i}]: invalid ${addressType} address ${JSON.stringify(raw)}`);
      continue;
    }
    const ready = ep.conditions?.ready ?? true;
    endpoints.push({
      ip,
      ready,
      serving: ep.conditions?.serving ?? ready,
      terminating: ep.conditions?.terminating ?? false,
      ...(ep.nodeName ? { nodeName: ep.nodeName } : {}),
      ...(ep.zone ? { zone: ep.zone } : {}),
      zoneHints: names(ep.hints?.forZones),
      nodeHints: names((ep.hints as { forNodes?: Array<{ name: string }> } | undefined)?.forNodes),
    });
  }
  return {
    ok: true,
    slice: { namespace, name, service: `${namespace}/${serviceName}`, family, ports, endpoints, warnings },
  };
}
