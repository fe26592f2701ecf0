/**
 * A Service's `namespace/name` as a person or a query gives it: a namespace (DNS label) and a
 * name (DNS subdomain). /debug/services?service= and `kube-nftproxy explain` check it the same way.
 */
export const SERVICE_NAME = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\/[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

/** `namespace/name`, an empty namespace being `default`: how Services and slices are keyed everywhere. */
export const objectKey = (namespace: string | undefined, name: string | undefined): string =>
  `${namespace || 'default'}/${name ?? ''}`;

/** An object's key for messages: `<unnamed>` when it has no name. */
export const objName = (o: { metadata?: { namespace?: string; name?: string } }): string =>
  objectKey(o.metadata?.namespace, o.metadata?.name ?? '<unnamed>');
