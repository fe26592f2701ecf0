/** kubectl's copy of the whole object as last applied: as large as the object itself. */
export const LAST_APPLIED_ANNOTATION = 'kubectl.kubernetes.io/last-applied-configuration';

interface Trimmable {
  metadata?: { managedFields?: unknown; annotations?: Record<string, string> };
  /** EndpointSlice: each endpoint's Pod reference is never read. */
  endpoints?: Array<{ targetRef?: unknown }>;
  /** Node: the images it holds (often dozens, with every tag and digest). */
  status?: { images?: unknown };
}

/**
 * Drops what the proxy never reads from an object as it arrives, before the informer caches
 * it, so that it is not held for as long as the object lives: metadata.managedFields, which in
 * a real cluster is often the largest part of a Service or an EndpointSlice (kube-proxy's
 * informers drop it too: client-go's TransformStripManagedFields); kubectl's
 * last-applied-configuration annotation; the EndpointSlice endpoints' targetRef (a Pod
 * reference per endpoint); a Node's image list. Changes the object in place; returns it.
 */
export function trimObject<T>(obj: T): T {
  const o = obj as Trimmable | undefined;
  const metadata = o?.metadata;
  if (metadata?.managedFields !== undefined) delete metadata.managedFields;
  if (metadata?.annotations?.[LAST_APPLIED_ANNOTATION] !== undefined)
    delete metadata.annotations[LAST_APPLIED_ANNOTATION];
  if (Array.isArray(o?.endpoints))
    for (const ep of o.endpoints) if (ep?.targetRef !== undefined) delete ep.targetRef;
  if (o?.status?.images !== undefined) delete o.status.images;
  return obj;
}
