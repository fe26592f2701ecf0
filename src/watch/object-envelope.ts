import type { Kind } from './source.js';

/**
 * What the API server's typed decoding guarantees and files do not: the fields every layer
 * reads without looking (names, namespaces, label and annotation maps; a Node's addresses and
 * taints) have the types their declarations promise. Service and EndpointSlice specs are
 * checked field by field where they are read (src/model/service.ts, endpoint-slice.ts).
 */

/** Longest name or namespace kept: the API's own limit is 253 (DNS subdomain). */
const MAX_NAME = 253;

const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

function stringMap(v: unknown, field: string): string | undefined {
  if (v === undefined || v === null) return undefined;
  if (!isRecord(v)) return `${field} is not a map`;
  for (const [k, value] of Object.entries(v))
    if (typeof value !== 'string') return `${field}[${JSON.stringify(k.slice(0, 100))}] is not a string`;
  return undefined;
}

function name(v: unknown, field: string, required: boolean): string | undefined {
  if (v === undefined || v === null) return required ? `missing ${field}` : undefined;
  if (typeof v !== 'string') return `${field} is not a string`;
  if (required && v === '') return `missing ${field}`;
  if (v.length > MAX_NAME) return `${field} is longer than ${MAX_NAME} characters`;
  return undefined;
}

function nodeFields(o: Record<string, unknown>): string | undefined {
  const status = o.status;
  if (status !== undefined && status !== null) {
    if (!isRecord(status)) return 'status is not an object';
    const addresses = status.addresses;
    if (addresses !== undefined && addresses !== null) {
      if (!Array.isArray(addresses)) return 'status.addresses is not a list';
      for (const [i, a] of addresses.entries())
        if (!isRecord(a) || typeof a.type !== 'string' || typeof a.address !== 'string')
          return `status.addresses[${i}] is not {type, address} strings`;
    }
  }
  const spec = o.spec;
  if (spec !== undefined && spec !== null) {
    if (!isRecord(spec)) return 'spec is not an object';
    const taints = spec.taints;
    if (taints !== undefined && taints !== null) {
      if (!Array.isArray(taints)) return 'spec.taints is not a list';
      for (const [i, t] of taints.entries()) if (!isRecord(t)) return `spec.taints[${i}] is not an object`;
    }
  }
  return undefined;
}

/** Why an object read from a file cannot be used at all, or undefined when its envelope is sound. */
export function envelopeProblem(kind: Kind, o: Record<string, unknown>): string | undefined {
  const metadata = o.metadata;
  if (!isRecord(metadata)) return 'metadata is not an object';
  return (
    name(metadata.name, 'metadata.name', true) ??
    (kind === 'Node' ? undefined : name(metadata.namespace, 'metadata.namespace', false)) ??
    stringMap(metadata.labels, 'metadata.labels') ??
    stringMap(metadata.annotations, 'metadata.annotations') ??
    (kind === 'Node' ? nodeFields(o) : undefined) ??
    (o.spec !== undefined && o.spec !== null && !isRecord(o.spec) ? 'spec is not an object' : undefined)
  );
}
