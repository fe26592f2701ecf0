import type { V1EndpointSlice, V1Node, V1Service, V1ServiceCIDR } from '@kubernetes/client-node';

/** The kinds of object a source delivers. */
export type Kind = 'Service' | 'EndpointSlice' | 'Node' | 'ServiceCIDR';

export interface KindMap {
  Service: V1Service;
  EndpointSlice: V1EndpointSlice;
  Node: V1Node;
  /** networking.k8s.io ServiceCIDR (v1, or v1beta1: the same shape), cluster-scoped. */
  ServiceCIDR: V1ServiceCIDR;
}

/** Kinds without a namespace: their objects are keyed by name alone. */
export const isClusterScoped = (kind: Kind): boolean => kind === 'Node' || kind === 'ServiceCIDR';

export type KubeObject = V1Service | V1EndpointSlice | V1Node | V1ServiceCIDR;

/** The API server refuses a kind's list or watch: no RBAC grant (403) or bad credentials (401). */
export interface AccessProblem {
  verb: 'list' | 'watch';
  /** The API group as RBAC names it: '' for the core group. */
  group: string;
  /** The resource as RBAC names it, e.g. 'endpointslices'. */
  resource: string;
  status: 401 | 403;
  /** The API server's own message (it names the user and what was refused). */
  message: string;
  /** What to do about it, for a person. */
  action: string;
}

/**
 * What a source tells its consumer (the ChangeTracker). Sources of both kinds (kube informers,
 * files) speak this one interface, so everything downstream is the same.
 */
export interface SourceHandler {
  /** An object was added or changed. */
  upsert<K extends Kind>(kind: K, object: KindMap[K]): void;
  /** An object is gone. `namespace` is '' for cluster-scoped kinds (Node, ServiceCIDR). */
  remove(kind: Kind, namespace: string, name: string): void;
  /** Every kind has been listed once: syncing may begin. Called once per source start. */
  synced(): void;
  /** A source-level problem worth a log line that does not stop the source (a watch restart). */
  problem?(what: string, err: unknown): void;
  /**
   * The problems of the last read, by file: a file that could not be read or parsed (skipped
   * as a whole), or an object in it whose envelope is unusable (skipped alone). The list
   * replaces the one before, so a file that was mended leaves it.
   */
  unreadable?(files: Array<{ file: string; reason: string }>): void;
  /**
   * The API server refuses this kind (`problem`), or accepts it again (`undefined`). Said once
   * when it starts and once when it ends, not at every retry.
   */
  denied?(kind: Kind, problem: AccessProblem | undefined): void;
}

export interface Source {
  start(handler: SourceHandler): Promise<void>;
  stop(): Promise<void>;
}
