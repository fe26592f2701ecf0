/** `namespace/name`, an empty namespace being `default`: how Services and slices are keyed everywhere. */
export const objectKey = (namespace: string | undefined, name: string | undefined): string =>
  `${namespace || 'default'}/${name ?? ''}`;

/** An object's key for messages: `<unnamed>` when it has no name. */
export const objName = (o: { metadata?: { namespace?: string; name?: string } }): string =>
  objectKey(o.metadata?.namespace, o.metadata?.name ?? '<unnamed>');
