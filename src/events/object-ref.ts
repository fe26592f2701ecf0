/**
 * What an Event is about (its `regarding`): core/v1 ObjectReference's fields that matter here.
 * `kubectl describe` finds an object's Events by kind, namespace, name and uid, so a Service's
 * reference carries its uid.
 */
export interface ObjectRef {
  kind: string;
  apiVersion?: string;
  /** Absent for cluster-scoped objects (Node): their Events live in `default`. */
  namespace?: string;
  name: string;
  uid?: string;
}

/**
 * This node's Node, as kube-proxy refers to it: uid = the node's name (what the kubelet uses
 * too, and what `kubectl describe node` looks Events up by).
 */
export function nodeRef(nodeName: string): ObjectRef {
  return { kind: 'Node', name: nodeName, uid: nodeName };
}

/** A Service object as the store holds it: only its metadata is read. */
interface ServiceLike {
  metadata?: { namespace?: string; name?: string; uid?: string };
}

/** A Service's reference; undefined when the object has no name (never referable). */
export function serviceRef(service: ServiceLike): ObjectRef | undefined {
  const name = service.metadata?.name;
  if (!name) return undefined;
  const uid = service.metadata?.uid;
  return {
    kind: 'Service',
    apiVersion: 'v1',
    namespace: service.metadata?.namespace || 'default',
    name,
    ...(uid ? { uid } : {}),
  };
}

/** One string per object (not per version): the key of its rate limit. */
export function refKey(ref: ObjectRef): string {
  return `${ref.kind}/${ref.namespace ?? ''}/${ref.name}/${ref.uid ?? ''}`;
}
