import type { V1EndpointSlice, V1Node, V1Service, V1ServiceCIDR } from '@kubernetes/client-node';
import { sliceServiceKey } from '../model/endpoint-slice.js';
import { objectKey } from '../model/object-key.js';
import type { ModelSource } from '../model/state-builder.js';
import type { Kind, KindMap, SourceHandler } from './source.js';

/** When the change behind a slice happened, for kube-proxy's network programming latency. */
export const TRIGGER_TIME_ANNOTATION = 'endpoints.kubernetes.io/last-change-trigger-time';

/**
 * The latest object of every kind, fed by a source, and the Services whose rules may have
 * changed since the last `takeChanges()`. A slice change marks the Service it belongs to now
 * and the one it belonged to before (an endpoint can move between Services' slices).
 */
export class ObjectStore implements SourceHandler {
  readonly services = new Map<string, V1Service>();
  readonly slices = new Map<string, V1EndpointSlice>();
  readonly nodes = new Map<string, V1Node>();
  /** ServiceCIDR objects by name (cluster-scoped): the ClusterIP ranges, when the cluster has them. */
  readonly serviceCIDRs = new Map<string, V1ServiceCIDR>();
  /**
   * The keys of the slices labelled for each Service key ('' without the label). An array, not
   * a Map: a Service has a handful of slices, and 10,000 small Maps cost 5 MB.
   */
  readonly #slicesByService = new Map<string, string[]>();
  /**
   * The Services changed since takeChanges(), apart as kube-proxy counts them: those whose
   * object changed, and those whose slices did. Their union is what a sync joins again.
   */
  #serviceChanged = new Set<string>();
  #endpointsChanged = new Set<string>();
  #events = { services: 0, endpoints: 0 };
  #synced = false;
  /** endpoints.kubernetes.io/last-change-trigger-time of slices changed since takeChanges(). */
  #triggers: number[] = [];
  #onChange: () => void;
  /** The source's files that could not be parsed, as of its last read. */
  unreadableFiles: Array<{ file: string; reason: string }> = [];

  constructor(opts: { onChange?: () => void } = {}) {
    this.#onChange = opts.onChange ?? (() => {});
  }

  get isSynced(): boolean {
    return this.#synced;
  }

  upsert<K extends Kind>(kind: K, object: KindMap[K]): void {
    const key = objectKey(object.metadata?.namespace, object.metadata?.name);
    if (kind === 'Service') {
      this.services.set(key, object as V1Service);
      this.#serviceChange(key);
    } else if (kind === 'EndpointSlice') {
      this.#events.endpoints++;
      const prev = this.slices.get(key);
      if (prev) this.#unindex(key, prev);
      this.slices.set(key, object as V1EndpointSlice);
      this.#index(key, object as V1EndpointSlice);
      const trigger = Date.parse(object.metadata?.annotations?.[TRIGGER_TIME_ANNOTATION] ?? '');
      if (Number.isFinite(trigger)) this.#triggers.push(trigger);
    } else if (kind === 'ServiceCIDR') {
      this.serviceCIDRs.set(object.metadata?.name ?? '', object as V1ServiceCIDR);
    } else {
      this.nodes.set(object.metadata?.name ?? '', object as V1Node);
    }
    this.#onChange();
  }

  remove(kind: Kind, namespace: string, name: string): void {
    const key = objectKey(namespace, name);
    if (kind === 'Service') {
      if (this.services.delete(key)) this.#serviceChange(key);
    } else if (kind === 'EndpointSlice') {
      const prev = this.slices.get(key);
      if (prev) {
        this.#events.endpoints++;
        this.slices.delete(key);
        this.#unindex(key, prev);
      }
    } else if (kind === 'ServiceCIDR') this.serviceCIDRs.delete(name);
    else this.nodes.delete(name);
    this.#onChange();
  }

  synced(): void {
    this.#synced = true;
    this.#onChange();
  }

  unreadable(files: Array<{ file: string; reason: string }>): void {
    const changed = JSON.stringify(files) !== JSON.stringify(this.unreadableFiles);
    this.unreadableFiles = files;
    // A bad file dropped beside unchanged ones changes no object, but the skipped list.
    if (changed) this.#onChange();
  }

  /** A slice's Service (as labelled now) changes with it. */
  #index(key: string, slice: V1EndpointSlice): void {
    const svc = sliceServiceKey(slice);
    const group = this.#slicesByService.get(svc);
    if (!group) this.#slicesByService.set(svc, [key]);
    else if (!group.includes(key)) group.push(key);
    this.#endpointsChange(svc);
  }

  /** The Service it belonged to changes too: an endpoint can move between Services' slices. */
  #unindex(key: string, slice: V1EndpointSlice): void {
    const svc = sliceServiceKey(slice);
    const group = this.#slicesByService.get(svc);
    const at = group?.indexOf(key) ?? -1;
    if (at >= 0) group!.splice(at, 1);
    if (group?.length === 0) this.#slicesByService.delete(svc);
    this.#endpointsChange(svc);
  }

  #serviceChange(key: string): void {
    this.#events.services++;
    this.#serviceChanged.add(key);
  }

  #endpointsChange(service: string): void {
    this.#endpointsChanged.add(service);
  }

  /** The objects as the model reads them, with this node's Node. */
  modelSource(nodeName: string): ModelSource {
    const node = this.nodes.get(nodeName);
    return {
      services: this.services,
      slicesOf: (service) => (this.#slicesByService.get(service) ?? []).map((key) => this.slices.get(key)!),
      sliceServices: () => this.#slicesByService.keys(),
      serviceCIDRs: this.serviceCIDRs.values(),
      ...(node ? { node } : {}),
    };
  }

  /**
   * Service keys changed since the last call, the slices' trigger times, and how many Service
   * and EndpointSlice events there were (kube-proxy's change totals); resets them. (A Node
   * or ServiceCIDR change needs no key: the model reads those whole at every sync.)
   */
  takeChanges(): {
    services: Set<string>;
    triggers: number[];
    events: { services: number; endpoints: number };
  } {
    const services = this.#serviceChanged;
    for (const key of this.#endpointsChanged) services.add(key);
    const out = { services, triggers: this.#triggers, events: this.#events };
    this.#serviceChanged = new Set();
    this.#endpointsChanged = new Set();
    this.#events = { services: 0, endpoints: 0 };
    this.#triggers = [];
    return out;
  }

  /** Changes waiting for a sync: Services whose object changed, and whose endpoints did (kube-proxy's pending gauges). */
  get pending(): { services: number; endpoints: number } {
    return { services: this.#serviceChanged.size, endpoints: this.#endpointsChanged.size };
  }
}
