import {
  Counter,
  Gauge,
  Histogram,
  Registry,
  collectDefaultMetrics,
  exponentialBuckets,
  linearBuckets,
} from 'prom-client';
import type { Family } from '../model/types.js';

/** Sizes of the ruleset this proxy owns, after a sync. */
export interface RulesetSize {
  chains: number;
  rules: number;
  sets: number;
  elements: number;
}

/** The daemon's metrics: one registry per daemon, and one typed method per thing observed. */
export interface ProxyMetrics {
  registry: Registry;
  /** One sync took `seconds`; `full` says a full (not partial) sync. */
  syncDuration(full: boolean, seconds: number): void;
  /** A sync succeeded at `ts`, epoch milliseconds. */
  lastSync(ts: number): void;
  /** A sync was queued at `ts`, epoch milliseconds. */
  lastQueued(ts: number): void;
  /** From a change's trigger time (EndpointSlice annotation) to its rules being applied. */
  networkProgramming(seconds: number): void;
  /** Changes waiting for the next sync. */
  pending(services: number, endpoints: number): void;
  /** Changes seen since the last call (added to the totals). */
  changes(services: number, endpoints: number): void;
  syncFailed(): void;
  /** The last transaction's operation count. */
  transaction(operations: number): void;
  /** Service ports with a Local traffic policy and no local endpoints, per policy. */
  noLocalEndpoints(internal: number, external: number): void;
  rulesetSize(s: RulesetSize): void;
  /**
   * Called when /metrics is scraped, before the two gauges above are read: figures that cost a
   * walk of every service port are computed then, not at every sync.
   */
  onScrape(refresh: () => void): void;
  /** A /healthz or /livez answer, by HTTP status code. */
  probe(path: 'healthz' | 'livez', code: number): void;
  /**
   * Objects skipped now as malformed or refused (not those ignored by design), by kind, and
   * frontends left out because another Service owns them. Set at scrape time.
   */
  skipped(byKind: Readonly<Record<string, number>>, contestedFrontends: number): void;
  /** Services held out because nft refused their rules (src/rules/held-out.ts). */
  heldOut(services: number): void;
  /** One family's stale UDP conntrack cleanup took `seconds` and deleted `deleted` entries. */
  conntrackReconciled(family: Family, seconds: number, deleted: number): void;
}

/** The kinds of skipped object, each a series from the start. */
const SKIPPED_KINDS = ['Service', 'EndpointSlice', 'Node', 'File'] as const;

// kube-proxy's buckets (pkg/proxy/metrics): 1 ms doubling 15 times for sync durations, and
// 0.25 s .. 5 min for network programming, so existing dashboards read the same.
const SYNC_BUCKETS = exponentialBuckets(0.001, 2, 15);
const NETWORK_PROGRAMMING_BUCKETS = [
  ...linearBuckets(0.25, 0.25, 2),
  ...linearBuckets(1, 1, 59),
  ...linearBuckets(60, 5, 12),
  ...linearBuckets(120, 30, 7),
];
const TRANSACTION_BUCKETS = exponentialBuckets(1, 4, 10);

/**
 * Creates a fresh registry (never prom-client's global one, so two daemons in one process —
 * tests — do not collide) with kube-proxy's metric names where they apply, our own under
 * `kube_nftproxy_`, and Node's default process metrics under the same prefix.
 */
export function createMetrics(): ProxyMetrics {
  const registry = new Registry();
  const registers = [registry];
  let refresh: (() => void) | undefined;

  const syncAll = new Histogram({
    name: 'kubeproxy_sync_proxy_rules_duration_seconds',
    help: 'SyncProxyRules latency in seconds',
    buckets: SYNC_BUCKETS,
    registers,
  });
  const syncFull = new Histogram({
    name: 'kubeproxy_sync_full_proxy_rules_duration_seconds',
    help: 'SyncProxyRules latency in seconds for full resyncs',
    buckets: SYNC_BUCKETS,
    registers,
  });
  const syncPartial = new Histogram({
    name: 'kubeproxy_sync_partial_proxy_rules_duration_seconds',
    help: 'SyncProxyRules latency in seconds for partial resyncs',
    buckets: SYNC_BUCKETS,
    registers,
  });
  const lastTimestamp = new Gauge({
    name: 'kubeproxy_sync_proxy_rules_last_timestamp_seconds',
    help: 'The last time proxy rules were successfully synced',
    registers,
  });
  const lastQueuedTimestamp = new Gauge({
    name: 'kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds',
    help: 'The last time a sync of proxy rules was queued',
    registers,
  });
  const networkProgramming = new Histogram({
    name: 'kubeproxy_network_programming_duration_seconds',
    help: 'In Cluster Network Programming Latency in seconds',
    buckets: NETWORK_PROGRAMMING_BUCKETS,
    registers,
  });
  const endpointPending = new Gauge({
    name: 'kubeproxy_sync_proxy_rules_endpoint_changes_pending',
    help: 'Pending proxy rules Endpoint changes',
    registers,
  });
  const servicePending = new Gauge({
    name: 'kubeproxy_sync_proxy_rules_service_changes_pending',
    help: 'Pending proxy rules Service changes',
    registers,
  });
  const endpointTotal = new Counter({
    name: 'kubeproxy_sync_proxy_rules_endpoint_changes_total',
    help: 'Cumulative proxy rules Endpoint changes',
    registers,
  });
  const serviceTotal = new Counter({
    name: 'kubeproxy_sync_proxy_rules_service_changes_total',
    help: 'Cumulative proxy rules Service changes',
    registers,
  });
  const noLocal = new Gauge({
    name: 'kubeproxy_sync_proxy_rules_no_local_endpoints_total',
    help: 'Number of services with a Local traffic policy and no endpoints',
    labelNames: ['traffic_policy'] as const,
    registers,
    collect: () => refresh?.(),
  });
  const healthzTotal = new Counter({
    name: 'kubeproxy_proxy_healthz_total',
    help: 'Cumulative proxy healthz HTTP status',
    labelNames: ['code'] as const,
    registers,
  });
  const livezTotal = new Counter({
    name: 'kubeproxy_proxy_livez_total',
    help: 'Cumulative proxy livez HTTP status',
    labelNames: ['code'] as const,
    registers,
  });

  // kube-proxy's conntrack reconciler (pkg/proxy/conntrack), labelled as upstream.
  const conntrackDuration = new Histogram({
    name: 'kubeproxy_conntrack_reconciler_sync_duration_seconds',
    help: 'ReconcileConntrackFlowsLatency latency in seconds',
    labelNames: ['ip_family'] as const,
    buckets: SYNC_BUCKETS,
    registers,
  });
  const conntrackDeleted = new Counter({
    name: 'kubeproxy_conntrack_reconciler_deleted_entries_total',
    help: 'Cumulative conntrack flows deleted by conntrack reconciler',
    labelNames: ['ip_family'] as const,
    registers,
  });

  const syncFailures = new Counter({
    name: 'kube_nftproxy_sync_failures_total',
    help: 'Syncs that failed (the rules stayed as they were; a full sync follows)',
    registers,
  });
  const transactionOps = new Histogram({
    name: 'kube_nftproxy_nft_transaction_operations',
    help: 'Operations per nft transaction',
    buckets: TRANSACTION_BUCKETS,
    registers,
  });
  const lastTransactionOps = new Gauge({
    name: 'kube_nftproxy_nft_transaction_operations_last',
    help: 'Operations in the last nft transaction',
    registers,
  });
  const rulesetObjects = new Gauge({
    name: 'kube_nftproxy_ruleset_objects',
    help: 'Objects in the ruleset this proxy owns, by kind',
    labelNames: ['kind'] as const,
    registers,
    collect: () => refresh?.(),
  });

  const skippedObjects = new Gauge({
    name: 'kube_nftproxy_skipped_objects',
    help: 'Objects skipped as malformed or refused (each with its reason on /debug/services), by kind',
    labelNames: ['kind'] as const,
    registers,
    collect: () => refresh?.(),
  });
  const contested = new Gauge({
    name: 'kube_nftproxy_contested_frontends',
    help: 'Frontends (IP, protocol, port) a Service claims but another Service owns: left out for it',
    registers,
    collect: () => refresh?.(),
  });
  const heldOutServices = new Gauge({
    name: 'kube_nftproxy_services_held_out',
    help: 'Services whose rules nft refused, held out until their objects change',
    registers,
  });

  // Zero-valued series from the start, so a query for them finds 0 and not nothing.
  for (const kind of SKIPPED_KINDS) skippedObjects.set({ kind }, 0);
  noLocal.set({ traffic_policy: 'internal' }, 0);
  noLocal.set({ traffic_policy: 'external' }, 0);
  for (const kind of ['chains', 'rules', 'sets', 'elements']) rulesetObjects.set({ kind }, 0);
  for (const ip_family of ['IPv4', 'IPv6']) conntrackDeleted.inc({ ip_family }, 0);

  collectDefaultMetrics({ register: registry, prefix: 'kube_nftproxy_' });

  return {
    registry,
    syncDuration(full, seconds) {
      syncAll.observe(seconds);
      (full ? syncFull : syncPartial).observe(seconds);
    },
    lastSync(ts) {
      lastTimestamp.set(ts / 1000);
    },
    lastQueued(ts) {
      lastQueuedTimestamp.set(ts / 1000);
    },
    networkProgramming(seconds) {
      networkProgramming.observe(seconds);
    },
    pending(services, endpoints) {
      servicePending.set(services);
      endpointPending.set(endpoints);
    },
    changes(services, endpoints) {
      if (services > 0) serviceTotal.inc(services);
      if (endpoints > 0) endpointTotal.inc(endpoints);
    },
    syncFailed() {
      syncFailures.inc();
    },
    transaction(operations) {
      transactionOps.observe(operations);
      lastTransactionOps.set(operations);
    },
    noLocalEndpoints(internal, external) {
      noLocal.set({ traffic_policy: 'internal' }, internal);
      noLocal.set({ traffic_policy: 'external' }, external);
    },
    rulesetSize(s) {
      for (const kind of ['chains', 'rules', 'sets', 'elements'] as const) {
        rulesetObjects.set({ kind }, s[kind]);
      }
    },
    onScrape(fn) {
      refresh = fn;
    },
    probe(path, code) {
      (path === 'healthz' ? healthzTotal : livezTotal).inc({ code: String(code) });
    },
    skipped(byKind, contestedFrontends) {
      for (const kind of SKIPPED_KINDS) skippedObjects.set({ kind }, byKind[kind] ?? 0);
      contested.set(contestedFrontends);
    },
    heldOut(services) {
      heldOutServices.set(services);
    },
    conntrackReconciled(family, seconds, deleted) {
      const ip_family = family === 'ipv4' ? 'IPv4' : 'IPv6';
      conntrackDuration.observe({ ip_family }, seconds);
      if (deleted > 0) conntrackDeleted.inc({ ip_family }, deleted);
    },
  };
}
