import type { V1EndpointSlice, V1Node, V1Service } from '@kubernetes/client-node';
import { SERVICE_NAME_LABEL } from '../model/endpoint-slice.js';
import type { Kind, KindMap, SourceHandler } from './source.js';

/** When the change behind a slice happened, for kube-proxy's network programming latency. */
export const TRIGGER_TIME_ANNOTATION = 'endpoints.kubernetes.io/last-change-trigger-time';

const keyOf = (o: { metadata?: { namespace?: string; name?: string } }): string =>
  `${o.metadata?.namespace ?? ''}/${o.metadata?.name ?? ''}`;

/** The Service a slice belongs to, `namespace/name`, or undefined without the label. */
export function sliceServiceKey(slice: V1EndpointSlice): string | undefined {
  const svc = slice.metadata?.labels?.[SERVICE_NAME_LABEL];
  return svc ? `${slice.metadata?.namespace || 'default'}/${svc}` : undefined;
}

/**
 * The latest object of every kind, fed by a source, and the Services whose rules may have
 * changed since the last `takeChanges()`. A slice change marks the Service it belongs to now
 * and the one it belonged to before (an endpoint can move between Services' slices).
 */
export class ObjectStore implements SourceHandler {
  readonly services = new Map<string, V1Service>();
  readonly slices = new Map<string, V1EndpointSlice>();
  readonly nodes = new Map<string, V1Node>();
  #changed = new Set<string>();
  #nodeChanged = false;
  #synced = false;
  /** endpoints.kubernetes.io/last-change-trigger-time of slices changed since takeChanges(). */
  #triggers: number[] = [];
  #onChange: () => void;
  readonly problems: Array<{ what: string; reason: string }> = [];

  constructor(opts: { onChange?: () => void } = {}) {
    this.#onChange = opts.onChange ?? (() => {});
  }

  get isSynced(): boolean {
    return this.#synced;
  }

  upsert<K extends Kind>(kind: K, object: KindMap[K]): void {
    const key = keyOf(object);
    if (kind === 'Service') {
      this.services.set(key, object as V1Service);
      this.#changed.add(`${(object as V1Service).metadata?.namespace || 'default'}/${object.metadata?.name}`);
    } else if (kind === 'EndpointSlice') {
      const prev = this.slices.get(key);
      if (prev) this.#markSlice(prev);
      this.slices.set(key, object as V1EndpointSlice);
      this.#markSlice(object as V1EndpointSlice);
      const trigger = Date.parse(object.metadata?.annotations?.[TRIGGER_TIME_ANNOTATION] ?? '');
      if (Number.isFinite(trigger)) this.#triggers.push(trigger);
    } else {
      this.nodes.set(object.metadata?.name ?? '', object as V1Node);
      this.#nodeChanged = true;
    }
    this.#onChange();
  }

  remove(kind: Kind, namespace: string, name: string): void {
    const key = `${namespace}/${name}`;
    if (kind === 'Service') {
      if (this.services.delete(key)) this.#changed.add(`${namespace || 'default'}/${name}`);
    } else if (kind === 'EndpointSlice') {
      const prev = this.slices.get(key);
      if (prev) {
        this.slices.delete(key);
        this.#markSlice(prev);
      }
    } else if (this.nodes.delete(name)) this.#nodeChanged = true;
    this.#onChange();
  }

  synced(): void {
    this.#synced = true;
    this.#onChange();
  }

  problem(what: string, err: unknown): void {
    this.problems.push({ what, reason: err instanceof Error ? err.message : String(err) });
  }

  #markSlice(slice: V1EndpointSlice): void {
    const svc = sliceServiceKey(slice);
    if (svc) this.#changed.add(svc);
  }

  /** Services changed since the last call, and whether the Node changed; resets both. */
  takeChanges(): { services: Set<string>; node: boolean; triggers: number[] } {
    const out = { services: this.#changed, node: this.#nodeChanged, triggers: this.#triggers };
    this.#changed = new Set();
    this.#nodeChanged = false;
    this.#triggers = [];
    return out;
  }

  get pendingChanges(): number {
    return this.#changed.size + (this.#nodeChanged ? 1 : 0);
  }
}
