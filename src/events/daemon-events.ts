import type { Registry } from 'prom-client';
import type { Logger } from '../log.js';
import type { Skipped } from '../model/types.js';
import type { Clock } from '../util/clock.js';
import { createEventMetrics } from './event-metrics.js';
import type { EventSink } from './event-sink.js';
import { nodeRef, refKey, serviceRef, type ObjectRef } from './object-ref.js';
import { EventActions, EventReasons, REPORTING_CONTROLLER } from './reasons.js';
import { EventRecorder } from './recorder.js';
import { problemId, serviceProblems, type ServiceProblem } from './service-problems.js';

export interface DaemonEventsOptions {
  recorder: EventRecorder;
  /** This node's name: the Node the Starting Event is about. */
  nodeName: string;
  /** The Service object with this `namespace/name` as the daemon holds it (for its uid). */
  service: (key: string) => { metadata?: { namespace?: string; name?: string; uid?: string } } | undefined;
}

/**
 * What the daemon tells the cluster, decided from what it already knows: a Normal `Starting` on
 * its Node once started, and a Warning on a Service when a problem of it appears — not at every
 * sync it persists through. A problem that goes away and comes back is told again (the recorder
 * then aggregates it into the first Event's series, or drops it over the object's rate limit).
 */
export class DaemonEvents {
  readonly #recorder: EventRecorder;
  readonly #nodeName: string;
  readonly #service: DaemonEventsOptions['service'];
  /** The problems of the last sync, by problemId and object: only those are remembered. */
  #current = new Set<string>();

  constructor(opts: DaemonEventsOptions) {
    this.#recorder = opts.recorder;
    this.#nodeName = opts.nodeName;
    this.#service = opts.service;
  }

  /** kube-proxy's birth cry: Normal `Starting` on this node's Node. */
  started(): void {
    this.#recorder.emit({
      regarding: nodeRef(this.#nodeName),
      type: 'Normal',
      reason: EventReasons.Starting,
      action: EventActions.Starting,
      note: '',
    });
  }

  /** After a sync that worked: a Warning for each Service problem among `skipped` that is new. */
  synced(skipped: readonly Skipped[]): void {
    const now = new Set<string>();
    for (const problem of serviceProblems(skipped)) {
      const ref = this.#refOf(problem.service);
      const id = `${refKey(ref)}\u0000${problemId(problem)}`;
      now.add(id);
      if (!this.#current.has(id)) this.#warn(ref, problem);
    }
    this.#current = now;
  }

  /**
   * A healthCheckNodePort could not be listened on (the first failure of a streak: the health
   * check servers tell each streak once).
   */
  healthCheckFailed(service: { namespace: string; name: string }, note: string): void {
    const key = `${service.namespace}/${service.name}`;
    this.#warn(this.#refOf(key), {
      service: key,
      reason: EventReasons.HealthCheckNodePortBindFailed,
      note,
    });
  }

  /** Resolves once what was emitted has been sent or dropped (tests). */
  flush(): Promise<void> {
    return this.#recorder.flush();
  }

  stop(): void {
    this.#recorder.stop();
  }

  #warn(regarding: ObjectRef, problem: ServiceProblem): void {
    this.#recorder.emit({
      regarding,
      type: 'Warning',
      reason: problem.reason,
      action: EventActions[problem.reason],
      note: problem.note,
    });
  }

  /** The Service's reference, with its uid when the daemon holds the object. */
  #refOf(key: string): ObjectRef {
    const slash = key.indexOf('/');
    const fallback = { metadata: { namespace: key.slice(0, slash), name: key.slice(slash + 1) } };
    const held = this.#service(key);
    return serviceRef(held?.metadata?.name ? held : fallback) ?? { kind: 'Service', name: key };
  }
}

/**
 * The daemon's Events on `sink`: reportingInstance `kube-nftproxy-<node>` (client-go's
 * `<controller>-<hostname>`; in the DaemonSet's host network the hostname is the node's), the
 * recorder's counters on the daemon's registry.
 */
export function createDaemonEvents(opts: {
  sink: EventSink;
  nodeName: string;
  service: DaemonEventsOptions['service'];
  log: Logger;
  clock: Clock;
  registry: Registry;
}): DaemonEvents {
  const recorder = new EventRecorder({
    sink: opts.sink,
    instance: `${REPORTING_CONTROLLER}-${opts.nodeName}`,
    log: opts.log,
    clock: opts.clock,
    metrics: createEventMetrics(opts.registry),
  });
  return new DaemonEvents({ recorder, nodeName: opts.nodeName, service: opts.service });
}
