/** kubectl's copy of the whole object as last applied: as large as the object itself. */
export const LAST_APPLIED_ANNOTATION = 'kubectl.kubernetes.io/last-applied-configuration';

interface Trimmable {
  kind?: unknown;
  metadata?: Record<string, unknown> & {
    managedFields?: unknown;
    annotations?: Record<string, string>;
  };
  /** EndpointSlice: each endpoint's Pod reference is never read. */
  endpoints?: Array<{ targetRef?: unknown; conditions?: unknown }>;
  /** Node: the images it holds (often dozens, with every tag and digest). */
  status?: { images?: unknown };
}

/**
 * An EndpointSlice's metadata as anything reads it: names, the labels (the Service's name),
 * the annotations (the change's trigger time) and the resourceVersion (the informer's
 * deduplication). Not its uid, creationTimestamp, generation, ownerReferences (the Service,
 * again) or managedFields: ≈ 110 bytes per slice in the bench, far more in a real cluster.
 */
const SLICE_METADATA = ['name', 'namespace', 'labels', 'annotations', 'resourceVersion'] as const;

/**
 * Endpoint conditions as the API sends them, one object per combination, shared by every
 * endpoint that has it: 100,000 endpoints held 100,000 copies of a few objects (48 bytes each).
 * Frozen: nothing may change one endpoint's conditions through another's.
 */
const CONDITIONS = new Map<number, object>();
const CONDITION_NAMES = ['ready', 'serving', 'terminating'] as const;

/**
 * The shared object equal to `c` (the same keys, in the same order, with the same values),
 * or `c` itself when it is anything but booleans under those names (the model reports those).
 * The combination is a number (each key's name and value, in order, a base-7 digit): a string
 * built per endpoint cost 230 ms at 500,000 endpoints.
 */
function sharedConditions(c: unknown): unknown {
  if (typeof c !== 'object' || c === null || Object.getPrototypeOf(c) !== Object.prototype) return c;
  const conditions = c as Record<string, unknown>;
  let id = 0;
  for (const k in conditions) {
    const name = (CONDITION_NAMES as readonly string[]).indexOf(k);
    const v = conditions[k];
    if (name < 0 || typeof v !== 'boolean') return c;
    id = id * 7 + 1 + name * 2 + (v ? 1 : 0);
  }
  let shared = CONDITIONS.get(id);
  if (!shared) CONDITIONS.set(id, (shared = Object.freeze({ ...conditions })));
  return shared;
}

/**
 * An EndpointSlice's metadata with only what is read (SLICE_METADATA), as a new object: deleting
 * fields from the middle of a parsed object would turn it into a slower and larger dictionary.
 * The usual shapes as literals, which hold their fields in the object itself.
 */
function sliceMetadata(metadata: Record<string, unknown>): Record<string, unknown> {
  const { name, namespace, labels, annotations, resourceVersion } = metadata;
  if (name !== undefined && namespace !== undefined && labels !== undefined && resourceVersion !== undefined)
    return annotations === undefined
      ? { name, namespace, labels, resourceVersion }
      : { name, namespace, labels, annotations, resourceVersion };
  const out: Record<string, unknown> = {};
  for (const key of SLICE_METADATA) if (metadata[key] !== undefined) out[key] = metadata[key];
  return out;
}

/** An EndpointSlice (list items come without `kind`): the only kind with `endpoints`. */
const isSlice = (o: Trimmable): boolean =>
  Array.isArray(o.endpoints) && (o.kind === undefined || o.kind === 'EndpointSlice');

/**
 * Drops what the proxy never reads from an object as it arrives, before the informer caches
 * it, so that it is not held for as long as the object lives: metadata.managedFields, which in
 * a real cluster is often the largest part of a Service or an EndpointSlice (kube-proxy's
 * informers drop it too: client-go's TransformStripManagedFields); kubectl's
 * last-applied-configuration annotation; the EndpointSlice endpoints' targetRef (a Pod
 * reference per endpoint), and of an EndpointSlice's metadata all but SLICE_METADATA; a Node's
 * image list. Endpoint conditions are shared (sharedConditions). Changes the object in place;
 * returns it.
 */
export function trimObject<T>(obj: T): T {
  const o = obj as Trimmable | undefined;
  const metadata = o?.metadata;
  if (metadata?.managedFields !== undefined) delete metadata.managedFields;
  if (metadata?.annotations?.[LAST_APPLIED_ANNOTATION] !== undefined)
    delete metadata.annotations[LAST_APPLIED_ANNOTATION];
  if (o && isSlice(o)) {
    if (typeof metadata === 'object' && metadata !== null) o.metadata = sliceMetadata(metadata);
    if (Array.isArray(o.endpoints))
      for (let i = 0; i < o.endpoints.length; i++) {
        let ep = o.endpoints[i];
        if (typeof ep !== 'object' || ep === null) continue;
        // A copy without it: `delete` would make each endpoint a slower, larger dictionary.
        if (ep.targetRef !== undefined) {
          const { targetRef: _, ...rest } = ep;
          o.endpoints[i] = ep = rest;
        }
        if (ep.conditions !== undefined) ep.conditions = sharedConditions(ep.conditions);
      }
  }
  if (o?.status?.images !== undefined) delete o.status.images;
  return obj;
}
