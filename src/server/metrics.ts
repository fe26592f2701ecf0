import {
  Counter,
  Gauge,
  Histogram,
  Registry,
  collectDefaultMetrics,
  exponentialBuckets,
  linearBuckets,
} from 'prom-client';
import type { PortCounters } from '../counters/service-counters.js';
import type { Family, Skipped } from '../model/types.js';
import { buildInfo } from '../version.js';

/** Sizes of the ruleset this proxy owns, after a sync. */
export interface RulesetSize {
  chains: number;
  rules: number;
  sets: number;
  elements: number;
}

/** Local-policy service ports without a local endpoint, of one family. */
export interface NoLocalEndpoints {
  internal: number;
  external: number;
}

/**
 * The daemon's metrics: one registry per daemon, and one typed method per thing observed.
 *
 * kube-proxy runs one proxier per IP family and labels its sync metrics `ip_family`. Here one
 * sync programs both tables (`ip` and `ip6`) in one nft transaction, always both: so a sync's
 * observation (its duration, its time, its failure, the latency it ends) is the same for each
 * family and is recorded once under each, as a dual-stack kube-proxy whose two proxiers synced
 * together would. Where the figure differs by family (no-local-endpoint ports, conntrack, the
 * iptables leftovers), it is counted per family.
 */
export interface ProxyMetrics {
  registry: Registry;
  /** One sync took `seconds`; `full` says a full (not partial) sync. Both families. */
  syncDuration(full: boolean, seconds: number): void;
  /** A sync succeeded at `ts`, epoch milliseconds. Both families. */
  lastSync(ts: number): void;
  /** A sync was queued at `ts`, epoch milliseconds. Both families. */
  lastQueued(ts: number): void;
  /**
   * From a change's trigger time (EndpointSlice annotation) to its rules being applied. Both
   * families: the trigger times are gathered without the slice's address type.
   */
  networkProgramming(seconds: number): void;
  /** Changes waiting for the next sync. */
  pending(services: number, endpoints: number): void;
  /** Changes seen since the last call (added to the totals). */
  changes(services: number, endpoints: number): void;
  /** A sync failed: nothing of it was applied (kube_nftproxy_sync_failures_total). */
  syncFailed(): void;
  /**
   * nft failed a sync's transaction (kube-proxy's nftables sync failures), both families: also
   * when the refusal is then contained by holding the Services it names out.
   */
  nftSyncFailed(): void;
  /**
   * A cleanup of stale rules, apart from the sync and leaving it applied, failed for these
   * families (kube-proxy's nftables cleanup failures; here: removing kube-proxy's leftovers).
   */
  nftCleanupFailed(families: readonly Family[]): void;
  /** The last transaction's operation count. */
  transaction(operations: number): void;
  /** Service ports with a Local traffic policy and no local endpoints, per family and policy. */
  noLocalEndpoints(byFamily: Readonly<Record<Family, NoLocalEndpoints>>): void;
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
  /**
   * --service-counters: registers the per-frontend counters, read from the kernel at each
   * scrape through `read` (undefined: nothing read yet, the last figures stay).
   */
  serviceCounters(read: () => Promise<readonly PortCounters[] | undefined>): void;
}

/** kube-proxy's ip_family label values, by our Family. */
const IP_FAMILY: Readonly<Record<Family, 'IPv4' | 'IPv6'>> = { ipv4: 'IPv4', ipv6: 'IPv6' };
const FAMILIES = ['ipv4', 'ipv6'] as const satisfies readonly Family[];

/** The kinds of skipped object, each a series from the start. */
const SKIPPED_KINDS = [
  'Service',
  'EndpointSlice',
  'Node',
  'File',
  'ServiceCIDR',
] as const satisfies ReadonlyArray<Skipped['kind']>;

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
 * tests — do not collide) with kube-proxy's metric names and labels where they apply, our own
 * under `kube_nftproxy_`, kubernetes_build_info, and prom-client's default metrics under their
 * standard names: `process_*` as kube-proxy exports them, and `nodejs_*` as every Node.js
 * dashboard reads them (kube-proxy has no such names to collide with: its runtime's are `go_*`).
 */
export function createMetrics(): ProxyMetrics {
  const registry = new Registry();
  const registers = [registry];
  let refresh: (() => void) | undefined;

  const syncAll = new Histogram({
    name: 'kubeproxy_sync_proxy_rules_duration_seconds',
    help: 'SyncProxyRules latency in seconds',
    labelNames: ['ip_family'] as const,
    buckets: SYNC_BUCKETS,
    registers,
  });
  const syncFull = new Histogram({
    name: 'kubeproxy_sync_full_proxy_rules_duration_seconds',
    help: 'SyncProxyRules latency in seconds for full resyncs',
    labelNames: ['ip_family'] as const,
    buckets: SYNC_BUCKETS,
    registers,
  });
  const syncPartial = new Histogram({
    name: 'kubeproxy_sync_partial_proxy_rules_duration_seconds',
    help: 'SyncProxyRules latency in seconds for partial resyncs',
    labelNames: ['ip_family'] as const,
    buckets: SYNC_BUCKETS,
    registers,
  });
  const lastTimestamp = new Gauge({
    name: 'kubeproxy_sync_proxy_rules_last_timestamp_seconds',
    help: 'The last time proxy rules were successfully synced',
    labelNames: ['ip_family'] as const,
    registers,
  });
  const lastQueuedTimestamp = new Gauge({
    name: 'kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds',
    help: 'The last time a sync of proxy rules was queued',
    labelNames: ['ip_family'] as const,
    registers,
  });
  const networkProgramming = new Histogram({
    name: 'kubeproxy_network_programming_duration_seconds',
    help: 'In Cluster Network Programming Latency in seconds',
    labelNames: ['ip_family'] as const,
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
    labelNames: ['ip_family', 'traffic_policy'] as const,
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

  // kube-proxy's nftables proxier: a failed sync transaction, and a failed cleanup transaction
  // (its stale chains go in one apart from the sync; ours go in the sync's own transaction, so
  // the cleanup that can fail apart here is the removal of kube-proxy's iptables leftovers).
  const nftSyncFailures = new Counter({
    name: 'kubeproxy_sync_proxy_rules_nftables_sync_failures_total',
    help: 'Cumulative proxy nftables sync failures',
    labelNames: ['ip_family'] as const,
    registers,
  });
  const nftCleanupFailures = new Counter({
    name: 'kubeproxy_sync_proxy_rules_nftables_cleanup_failures_total',
    help: 'Cumulative proxy nftables cleanup failures',
    labelNames: ['ip_family'] as const,
    registers,
  });

  // component-base's constant 1, labelled with what built the binary.
  const build = new Gauge({
    name: 'kubernetes_build_info',
    help:
      "A metric with a constant '1' value labeled by major, minor, git version, git commit, git tree " +
      'state, build date, Go version, and compiler from which Kubernetes was built, and platform on ' +
      'which it is running.',
    labelNames: [
      'major',
      'minor',
      'git_version',
      'git_commit',
      'git_tree_state',
      'build_date',
      'go_version',
      'compiler',
      'platform',
    ] as const,
    registers,
  });
  build.set(buildInfo(), 1);

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
  for (const kind of ['chains', 'rules', 'sets', 'elements']) rulesetObjects.set({ kind }, 0);
  for (const ip_family of Object.values(IP_FAMILY)) {
    noLocal.set({ ip_family, traffic_policy: 'internal' }, 0);
    noLocal.set({ ip_family, traffic_policy: 'external' }, 0);
    conntrackDeleted.inc({ ip_family }, 0);
    nftSyncFailures.inc({ ip_family }, 0);
    nftCleanupFailures.inc({ ip_family }, 0);
    for (const h of [syncAll, syncFull, syncPartial, networkProgramming]) h.zero({ ip_family });
    lastTimestamp.set({ ip_family }, 0);
    lastQueuedTimestamp.set({ ip_family }, 0);
  }

  collectDefaultMetrics({ register: registry });

  return {
    registry,
    syncDuration(full, seconds) {
      for (const ip_family of Object.values(IP_FAMILY)) {
        syncAll.observe({ ip_family }, seconds);
        (full ? syncFull : syncPartial).observe({ ip_family }, seconds);
      }
    },
    lastSync(ts) {
      for (const ip_family of Object.values(IP_FAMILY)) lastTimestamp.set({ ip_family }, ts / 1000);
    },
    lastQueued(ts) {
      for (const ip_family of Object.values(IP_FAMILY)) lastQueuedTimestamp.set({ ip_family }, ts / 1000);
    },
    networkProgramming(seconds) {
      for (const ip_family of Object.values(IP_FAMILY)) networkProgramming.observe({ ip_family }, seconds);
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
    nftSyncFailed() {
      for (const ip_family of Object.values(IP_FAMILY)) nftSyncFailures.inc({ ip_family });
    },
    nftCleanupFailed(families) {
      for (const family of new Set(families)) nftCleanupFailures.inc({ ip_family: IP_FAMILY[family] });
    },
    transaction(operations) {
      transactionOps.observe(operations);
      lastTransactionOps.set(operations);
    },
    noLocalEndpoints(byFamily) {
      for (const family of FAMILIES) {
        const ip_family = IP_FAMILY[family];
        noLocal.set({ ip_family, traffic_policy: 'internal' }, byFamily[family].internal);
        noLocal.set({ ip_family, traffic_policy: 'external' }, byFamily[family].external);
      }
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
      const ip_family = IP_FAMILY[family];
      conntrackDuration.observe({ ip_family }, seconds);
      if (deleted > 0) conntrackDeleted.inc({ ip_family }, deleted);
    },
    serviceCounters(read) {
      registerServiceCounters(registry, read);
    },
  };
}

const SERVICE_LABELS = ['namespace', 'service', 'port', 'frontend', 'protocol'] as const;
type ServiceLabel = (typeof SERVICE_LABELS)[number];
type Read = () => Promise<readonly PortCounters[] | undefined>;
type Figure = 'connections' | 'noEndpoints' | 'sourceRangeDrops';

/**
 * A counter whose values are the kernel's as last read: each scrape reads them (the reader
 * caches and bounds that) and hands them to prom-client as they are, without its per-series
 * label hashing (30,000 series at 10,000 Services). So they start again at a full sync (the
 * kernel's counters are recreated) and for a frontend whose element a partial sync replaced.
 */
class KernelCounter extends Counter<ServiceLabel> {
  readonly #read: Read;
  readonly #figure: Figure;
  /** The last values read: a failed or unfinished read keeps them. */
  #last: readonly PortCounters[] = [];

  constructor(registry: Registry, name: string, help: string, figure: Figure, read: Read) {
    super({ name, help, labelNames: SERVICE_LABELS, registers: [registry] });
    this.#read = read;
    this.#figure = figure;
  }

  override async get(): ReturnType<Counter<ServiceLabel>['get']> {
    this.#last = (await this.#read()) ?? this.#last;
    const values: Array<{ value: number; labels: Record<ServiceLabel, string> }> = [];
    const drops = this.#figure === 'sourceRangeDrops';
    for (const p of this.#last)
      for (const fe of p.frontends) {
        // Only a frontend that source ranges guard can drop: the others would be 0 forever.
        if (drops && !p.guarded.has(fe.frontend)) continue;
        const { namespace, service, port, protocol } = p;
        values.push({
          value: fe[this.#figure],
          labels: { namespace, service, port, frontend: fe.frontend, protocol },
        });
      }
    const base = await super.get();
    return { ...base, values };
  }
}

/** The three per-frontend counters (issue #15's contract), sharing one read per scrape. */
function registerServiceCounters(registry: Registry, read: Read): void {
  new KernelCounter(
    registry,
    'kube_nftproxy_service_connections_total',
    'New connections sent to an endpoint, per Service frontend (kernel counters; reset by a full sync)',
    'connections',
    read,
  );
  new KernelCounter(
    registry,
    'kube_nftproxy_service_no_endpoints_total',
    'New connections refused or dropped because the Service port has no usable endpoint for the frontend',
    'noEndpoints',
    read,
  );
  new KernelCounter(
    registry,
    'kube_nftproxy_service_source_range_drops_total',
    'New connections dropped by loadBalancerSourceRanges, per Service frontend',
    'sourceRangeDrops',
    read,
  );
}
