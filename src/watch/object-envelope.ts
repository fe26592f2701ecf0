import { isClusterScoped, type Kind } from './source.js';

/**
 * What the API server's typed decoding guarantees and files do not: the fields every layer
 * reads without looking (names, namespaces, label and annotation maps; a Node's addresses and
 * taints) have the types their declarations promise. Service and EndpointSlice specs are
 * checked field by field where they are read (src/model/service.ts, endpoint-slice.ts).
 */

/**
 * Names as the API server admits them: a DNS subdomain (253 characters) for names, a DNS label
 * (63) for namespaces. Beyond saying what the API would, this keeps `/` out of both: a key is
 * `namespace/name`, and `a` + `b/c` must not meet `a/b` + `c`.
 */
const NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
const NAMESPACE = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

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
  if (v === undefined || v === null || v === '') return required ? `missing ${field}` : undefined;
  if (typeof v !== 'string') return `${field} is not a string`;
  const [re, what] = field === 'metadata.namespace' ? [NAMESPACE, 'DNS label'] : [NAME, 'DNS subdomain'];
  if (!re.test(v)) return `${field} ${JSON.stringify(v.slice(0, 100))} is not a ${what}`;
  return undefined;
}

/** RFC 3339, as the API writes it (the model orders frontend claims by it). */
function timestamp(v: unknown): string | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string' || Number.isNaN(Date.parse(v))) return 'metadata.creationTimestamp is not a time';
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
    (isClusterScoped(kind) ? undefined : name(metadata.namespace, 'metadata.namespace', false)) ??
    timestamp(metadata.creationTimestamp) ??
    stringMap(metadata.labels, 'metadata.labels') ??
    stringMap(metadata.annotations, 'metadata.annotations') ??
    (kind === 'Node' ? nodeFields(o) : undefined) ??
    (o.spec !== undefined && o.spec !== null && !isRecord(o.spec) ? 'spec is not an object' : undefined)
  );
}
