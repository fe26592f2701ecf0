import type { V1EndpointSlice } from '@kubernetes/client-node';
import { canonicalIp, ipFamily } from './ip.js';
import { objectKey } from './object-key.js';
import { quote } from './quote.js';
import type { Family, Protocol } from './types.js';

export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';

/** The Service key a slice is labelled for, `namespace/name`; '' without the label. */
export function sliceServiceKey(slice: V1EndpointSlice): string {
  const svc: unknown = slice.metadata?.labels?.[SERVICE_NAME_LABEL];
  return svc && typeof svc === 'string' ? objectKey(slice.metadata?.namespace, svc) : '';
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
/** Hint names; entries without a string name are dropped (as the API would refuse them). */
const names = (list: unknown): string[] => {
  if (!Array.isArray(list) || list.length === 0) return NONE;
  const out: string[] = [];
  for (const x of list as unknown[]) {
    const name = (x as { name?: unknown } | null)?.name;
    if (typeof name === 'string' && name) out.push(name);
  }
  return out.length ? out : NONE;
};

/** The API's limits on one EndpointSlice: a file is not validated by it, so the model does. */
export const MAX_SLICE_ENDPOINTS = 1000;
export const MAX_SLICE_PORTS = 100;

const isBool = (v: unknown): v is boolean | undefined | null =>
  v === undefined || v === null || typeof v === 'boolean';
const isText = (v: unknown): v is string | undefined | null =>
  v === undefined || v === null || typeof v === 'string';

export type SliceResult = { ok: true; slice: SliceInfo } | { ok: false; ignored: boolean; reason: string };

/**
 * Validate an EndpointSlice as kube-proxy reads it: the first address of each endpoint, the
 * conditions with their API defaults (ready unset means ready; serving unset follows ready),
 * ports by name. Bad endpoints and ports are dropped with a warning; the rest of the slice stays.
 */
export function parseEndpointSlice(slice: V1EndpointSlice): SliceResult {
  const fail = (reason: string): SliceResult => ({ ok: false, ignored: false, reason });
  const name = slice.metadata?.name;
  if (!name || typeof name !== 'string') return fail('missing metadata.name');
  const namespace = slice.metadata?.namespace || 'default';
  const serviceName: unknown = slice.metadata?.labels?.[SERVICE_NAME_LABEL];
  if (!serviceName || typeof serviceName !== 'string') return fail(`missing label ${SERVICE_NAME_LABEL}`);
  const addressType = slice.addressType;
  if (addressType === 'FQDN') return { ok: false, ignored: true, reason: 'FQDN EndpointSlice' };
  if (addressType !== 'IPv4' && addressType !== 'IPv6')
    return fail(`unknown addressType ${quote(addressType)}`);
  const rawPorts: unknown = slice.ports ?? [];
  const rawEndpoints: unknown = slice.endpoints ?? [];
  if (!Array.isArray(rawPorts)) return fail('ports is not a list');
  if (!Array.isArray(rawEndpoints)) return fail('endpoints is not a list');
  if (rawPorts.length > MAX_SLICE_PORTS)
    return fail(`${rawPorts.length} ports: more than the API's limit of ${MAX_SLICE_PORTS}`);
  if (rawEndpoints.length > MAX_SLICE_ENDPOINTS)
    return fail(`${rawEndpoints.length} endpoints: more than the API's limit of ${MAX_SLICE_ENDPOINTS}`);
  const family: Family = addressType === 'IPv4' ? 'ipv4' : 'ipv6';
  const warnings: string[] = [];

  const ports: SliceInfo['ports'] = [];
  for (const [i, p] of (rawPorts as NonNullable<V1EndpointSlice['ports']>).entries()) {
    if (typeof p !== 'object' || p === null) {
      warnings.push(`ports[${i}] is not an object`);
      continue;
    }
    const protocol = p.protocol ?? 'TCP';
    if (protocol !== 'TCP' && protocol !== 'UDP' && protocol !== 'SCTP') {
      warnings.push(`ports[${i}]: unknown protocol ${quote(protocol)}`);
      continue;
    }
    if (typeof p.port !== 'number' || !Number.isInteger(p.port) || p.port < 1 || p.port > 65535) {
      warnings.push(`ports[${i}]: invalid port ${quote(p.port)}`);
      continue;
    }
    if (!isText(p.name)) {
      warnings.push(`ports[${i}]: name ${quote(p.name)} is not a string`);
      continue;
    }
    ports.push({ name: p.name ?? '', protocol, port: p.port });
  }

  const endpoints: SliceEndpoint[] = [];
  for (const [i, ep] of (rawEndpoints as V1EndpointSlice['endpoints']).entries()) {
    const addresses: unknown = ep?.addresses;
    const raw: unknown = Array.isArray(addresses) ? addresses[0] : undefined;
    // One family test per address (canonicalIp would make a second): IPv4 text is canonical.
    const rawFamily = typeof raw === 'string' ? ipFamily(raw) : undefined;
    const ip =
      rawFamily === 'ipv4' ? (raw as string) : rawFamily === 'ipv6' ? canonicalIp(raw as string) : undefined;
    if (!ip || rawFamily !== family) {
      warnings.push(`endpoints[${i}]: invalid ${addressType} address ${quote(raw)}`);
      continue;
    }
    // A condition that is not a boolean ("false" is truthy) or a name that is not a string
    // would be guessed at: the endpoint is dropped instead.
    const c = ep.conditions ?? {};
    const odd = !isBool(c.ready)
      ? 'ready'
      : !isBool(c.serving)
        ? 'serving'
        : !isBool(c.terminating)
          ? 'terminating'
          : undefined;
    if (odd) {
      warnings.push(`endpoints[${i}]: conditions.${odd} ${quote(c[odd])} is not a boolean`);
      continue;
    }
    const text = !isText(ep.nodeName) ? 'nodeName' : !isText(ep.zone) ? 'zone' : undefined;
    if (text) {
      warnings.push(`endpoints[${i}]: ${text} ${quote(ep[text])} is not a string`);
      continue;
    }
    const ready = ep.conditions?.ready ?? true;
    const endpoint = {
      ip,
      ready,
      serving: ep.conditions?.serving ?? ready,
      terminating: ep.conditions?.terminating ?? false,
    } as SliceEndpoint;
    // Assigned in the order the spreads made: the properties keep their order.
    if (ep.nodeName) endpoint.nodeName = ep.nodeName;
    if (ep.zone) endpoint.zone = ep.zone;
    endpoint.zoneHints = names(ep.hints?.forZones);
    endpoint.nodeHints = names((ep.hints as { forNodes?: unknown } | undefined)?.forNodes);
    endpoints.push(endpoint);
  }
  return {
    ok: true,
    slice: { namespace, name, service: `${namespace}/${serviceName}`, family, ports, endpoints, warnings },
  };
}
