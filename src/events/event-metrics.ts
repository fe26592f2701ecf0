import { Counter, type Registry } from 'prom-client';

/** Why an Event (or a series update) was not sent. */
export type EventDropReason = 'rate-limited' | 'queue-full' | 'failed';

const DROP_REASONS: readonly EventDropReason[] = ['rate-limited', 'queue-full', 'failed'];

/** What the recorder counts, on the daemon's /metrics. */
export interface EventMetrics {
  /** An Event was created (`create`) or its series patched (`patch`). */
  sent(verb: 'create' | 'patch'): void;
  dropped(reason: EventDropReason): void;
}

/**
 * The recorder's counters on `registry` (the daemon's own): kept with the recorder rather than in
 * src/server/metrics.ts, since nothing else observes them. Every series exists from the start at
 * 0, so an alert on the rate of `failed` sees 0 and not nothing.
 */
export function createEventMetrics(registry: Registry): EventMetrics {
  const sentTotal = new Counter({
    name: 'kube_nftproxy_events_sent_total',
    help: 'Kubernetes Events sent to the API server: created, or their series patched',
    labelNames: ['verb'] as const,
    registers: [registry],
  });
  const droppedTotal = new Counter({
    name: 'kube_nftproxy_events_dropped_total',
    help: 'Kubernetes Events not sent: over the per-object rate limit, the send queue full, or refused or failed',
    labelNames: ['reason'] as const,
    registers: [registry],
  });
  for (const verb of ['create', 'patch']) sentTotal.inc({ verb }, 0);
  for (const reason of DROP_REASONS) droppedTotal.inc({ reason }, 0);
  return {
    sent: (verb) => sentTotal.inc({ verb }),
    dropped: (reason) => droppedTotal.inc({ reason }),
  };
}
