/**
 * A Service's `namespace/name` as a person or a query gives it: a namespace (DNS label) and a
 * name (DNS subdomain). /debug/services?service= and `kube-nftproxy explain` check it the same way.
 */
export const SERVICE_NAME = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\/[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

/**
 * `namespace/name`, an empty namespace being `default`: how Services and slices are keyed
 * everywhere. Joined, not a template literal: V8 makes a template of 13 characters or more a
 * tree of cons strings (a 32-byte node and a copy of `namespace/`), where a join makes one flat
 * string; keys are held for as long as their objects live (several per Service).
 */
export const objectKey = (namespace: string | undefined, name: string | undefined): string =>
  [namespace || 'default', name ?? ''].join('/');

/** An object's key for messages: `<unnamed>` when it has no name. */
export const objName = (o: { metadata?: { namespace?: string; name?: string } }): string =>
  objectKey(o.metadata?.namespace, o.metadata?.name ?? '<unnamed>');
