import type { KubernetesObject } from '@kubernetes/client-node';

/**
 * What a consumer has been told about one kind: namespace/name → resourceVersion of the last
 * object delivered. Every delivery goes through here, so restarts, relists and the informer's own
 * replays neither repeat an object the consumer has nor forget one that vanished meanwhile.
 */
export class DeliveredObjects {
  private readonly versions = new Map<string, string | undefined>();

  /** Record `obj`; false if the consumer already has this very version. */
  upsert(obj: KubernetesObject): boolean {
    const key = keyOf(obj.metadata?.namespace ?? '', obj.metadata?.name ?? '');
    const rv = obj.metadata?.resourceVersion;
    // Without a resourceVersion there is nothing to compare: deliver.
    if (rv !== undefined && this.versions.has(key) && this.versions.get(key) === rv) return false;
    this.versions.set(key, rv);
    return true;
  }

  /** Forget an object; false if the consumer did not have it. */
  remove(namespace: string, name: string): boolean {
    return this.versions.delete(keyOf(namespace, name));
  }

  /**
   * A full list arrived: the objects the consumer has that are not in it have vanished while we
   * were not watching. Returns them as [namespace, name] (sorted, for stable output).
   */
  vanished(items: readonly KubernetesObject[]): Array<[string, string]> {
    const present = new Set(items.map((o) => keyOf(o.metadata?.namespace ?? '', o.metadata?.name ?? '')));
    return [...this.versions.keys()]
      .filter((k) => !present.has(k))
      .sort()
      .map(splitKey);
  }
}

// '/' cannot occur in a namespace or a name, so the key is unambiguous. Joined: one flat string
// per object held, where a template literal makes a cons string and a copy of `namespace/`.
function keyOf(namespace: string, name: string): string {
  return [namespace, name].join('/');
}

function splitKey(key: string): [string, string] {
  const i = key.indexOf('/');
  return [key.slice(0, i), key.slice(i + 1)];
}
