/**
 * Drops what the proxy never reads from an object as it arrives, before the informer caches
 * it: metadata.managedFields, which in a real cluster is often the largest part of a Service
 * or an EndpointSlice. kube-proxy's informers do the same (client-go's
 * TransformStripManagedFields). Changes the object in place; returns it.
 */
export function trimObject<T>(obj: T): T {
  const metadata = (obj as { metadata?: { managedFields?: unknown } } | undefined)?.metadata;
  if (metadata && metadata.managedFields !== undefined) delete metadata.managedFields;
  return obj;
}
