import type { KubeConfig } from '@kubernetes/client-node';
import { ErrorCodes, ProxyError } from '../errors.js';
import type { ObjectRef } from './object-ref.js';
import type { EventType } from './reasons.js';

/** An events.k8s.io/v1 EventSeries: how often, and when last, an isomorphic Event recurred. */
export interface EventSeries {
  count: number;
  /** MicroTime: RFC 3339 with six fractional digits, as the API server parses it. */
  lastObservedTime: string;
}

/** An events.k8s.io/v1 Event as sent: plain data, no client classes. */
export interface EventBody {
  apiVersion: 'events.k8s.io/v1';
  kind: 'Event';
  metadata: { name: string; namespace: string };
  /** MicroTime of the first occurrence. */
  eventTime: string;
  type: EventType;
  reason: string;
  action: string;
  note: string;
  regarding: ObjectRef;
  reportingController: string;
  reportingInstance: string;
  series?: EventSeries;
}

/**
 * Where Events go: the thin I/O under the recorder, so that its decisions (what to send, when
 * to aggregate, when to drop) are tested without an API server and its requests with one.
 */
export interface EventSink {
  /** POST the Event; an error status is an EVENT_STATUS ProxyError (409: it exists already). */
  create(event: EventBody): Promise<void>;
  /** PATCH the Event's series; an error status is an EVENT_STATUS ProxyError (404: it is gone). */
  patchSeries(namespace: string, name: string, series: EventSeries): Promise<void>;
}

/** The API server answered an Event request with an error status; test with isEventStatus. */
export class EventStatusError extends ProxyError {
  constructor(
    readonly statusCode: number,
    message: string,
  ) {
    super(ErrorCodes.EVENT_STATUS, message);
  }
}

/**
 * The sink of the daemon's API server: @kubernetes/client-node's EventsV1Api on the daemon's own
 * credentials. Loaded on demand (as the kube source is), so --source never loads the client.
 */
export async function kubeEventSink(kubeConfig: KubeConfig): Promise<EventSink> {
  const { EventsV1Api, PatchStrategy, setHeaderOptions } = await import('@kubernetes/client-node');
  const eventsApi = kubeConfig.makeApiClient(EventsV1Api);
  // client-go patches a series with a strategic merge patch; client-node would send a JSON patch.
  const patchOptions = setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch);
  const statusOf = (err: unknown, what: string): unknown => {
    const code = (err as { code?: unknown }).code;
    if (typeof code !== 'number') return err;
    const message = (err as { body?: { message?: unknown } }).body?.message;
    return new EventStatusError(
      code,
      `${what}: HTTP ${code}${typeof message === 'string' ? `: ${message}` : ''}`,
    );
  };
  return {
    async create(event) {
      const namespace = event.metadata.namespace;
      try {
        // eventTime is already a MicroTime string; the client passes strings through as they are.
        await eventsApi.createNamespacedEvent({ namespace, body: event as never });
      } catch (err) {
        throw statusOf(err, `create Event ${namespace}/${event.metadata.name}`);
      }
    },
    async patchSeries(namespace, name, series) {
      try {
        await eventsApi.patchNamespacedEvent({ namespace, name, body: { series } }, patchOptions);
      } catch (err) {
        throw statusOf(err, `patch Event ${namespace}/${name}`);
      }
    },
  };
}
