import type { KubeConfig } from '@kubernetes/client-node';
import { systemClock, wallTime, type Clock } from './util/clock.js';
import type { Conntrack } from './conntrack/exec.js';
import { ConntrackReconciler } from './conntrack/reconciler.js';
import { createDaemonEvents, type DaemonEvents } from './events/daemon-events.js';
import type { EventSink } from './events/event-sink.js';
import { logSkipped, skippedId } from './log-skipped.js';
import type { ProxyConfig } from './config-types.js';
import type { Logger } from './log.js';
import { FULL_SYNC_PERIOD_MS, type Backend, type BackendSyncResult } from './backend/backend.js';
import { NftBackend } from './backend/nft-backend.js';
import { UserspaceProxyBackend } from './backend/userspace-backend.js';
import { awaitingPodCIDRs } from './model/local-traffic.js';
import { trace, type Packet, type Trace } from './model/trace.js';
import type { ProxyState } from './model/types.js';
import { StateBuilder } from './model/state-builder.js';
import { effectiveKubeProxyConfig } from './kube-proxy-config.js';
import { cleanupLeftovers, leftoverFailureFamilies, type RunProgram } from './kube-proxy-leftovers.js';
import { compileConfig, modelConfig, nodePortIPsOf, stateFrom, type Environment } from './pipeline.js';
import type { NftApplier } from './rules/applier.js';
import type { Nft } from './rules/nft/exec.js';
import { isNodeEligible, ProxyHealth } from './server/health.js';
import { desiredHealthChecks, HealthCheckNodePorts } from './server/health-check-node-ports.js';
import { SyncGarbage } from './util/collect-garbage.js';
import { createMetrics, type ProxyMetrics } from './server/metrics.js';
import { createServers, type Servers } from './server/servers.js';
import type { DaemonView } from './server/view.js';
import { describeServices } from './server/services-view.js';
import { LiveTracer } from './trace/live-trace.js';
import { FileSource } from './watch/file-source.js';
import { ObjectStore } from './watch/object-store.js';
import { BoundedFrequencyRunner } from './watch/runner.js';
import type { Source, SourceHandler } from './watch/source.js';

export interface DaemonDeps {
  log: Logger;
  env: Environment;
  nft: Nft;
  /** The object source; default: --source files, else the API server. */
  source?: Source;
  /**
   * Runs iptables and ip to remove kube-proxy's iptables/IPVS leftovers after the first sync
   * (nftables mode); none: they are left alone (tests on the host must never touch it).
   */
  leftovers?: RunProgram;
  /**
   * The node settings the nftables mode needs (conntrack sysctls), run once the credentials
   * and nft are known to work, before anything is programmed; none: left alone (tests).
   */
  prepareNode?: () => Promise<void>;
  clock?: Clock;
  /**
   * Deletes stale UDP conntrack entries after nftables syncs (src/conntrack/); without it,
   * none are. The CLI passes the host's conntrack, tests one inside their namespace.
   */
  conntrack?: Conntrack;
  /**
   * Where Kubernetes Events go (src/events/); default: the API server the default source
   * watches. None are sent with --source, whatever this is.
   */
  eventSink?: EventSink;
}

/**
 * The node daemon: source → ObjectStore → runner → model → Backend (nftables or userspace) →
 * servers. Nothing is applied before the source has synced once. Stopping leaves the rules
 * in place, so traffic keeps flowing while the daemon restarts; the next start replaces them
 * atomically.
 */
export class Daemon {
  readonly store: ObjectStore;
  readonly health: ProxyHealth;
  readonly metrics: ProxyMetrics;
  /** The healthCheckNodePort servers of eTP Local LoadBalancer Services (both modes). */
  readonly healthChecks: HealthCheckNodePorts;
  /** Stale UDP conntrack cleanup, in nftables mode with a conntrack (userspace mode has no DNAT). */
  readonly conntrack: ConntrackReconciler | undefined;
  #runner: BoundedFrequencyRunner;
  #servers: Servers | undefined;
  #source: Source | undefined;
  /** Programs each state: the nftables or the userspace backend (--proxy-mode). */
  readonly #backend: Backend;
  /** The nftables backend, when that is the mode (tests read its applier). */
  readonly #nftBackend: NftBackend | undefined;
  /** GET /debug/trace?live=1: kernel traces beside the model's; nftables mode only. */
  readonly #liveTracer: LiveTracer | undefined;
  /** Removes kube-proxy's leftovers after the first sync; nftables mode only. */
  readonly #leftovers: RunProgram | undefined;
  #state: ProxyState | undefined;
  /** Joins only the Services that changed since the last sync; a new one when the host's addresses change. */
  #builder: StateBuilder;
  /** deps.env with the host's addresses as last read (#refreshAddresses). */
  #env: Environment;
  /** The Node object the addresses were last read for. */
  #addressesNode: unknown;
  /** A sync failed since the last one that worked: the addresses are read again. */
  #failedSince = false;
  /** When the backend last replaced everything: the host's addresses are read again as often. */
  #lastFull = -Infinity;
  /** The wait for the Node's pod CIDRs (NodeCIDR) has been logged. */
  #waitingLogged = false;
  /**
   * The skipped entries already logged. Only those still skipped are kept: the set is as large
   * as the current skipped list, not every name ever skipped, and an object that is mended and
   * broken again is logged again.
   */
  #skippedSeen = new Set<string>();
  #syncs = 0;
  /** Collects the garbage of full syncs, once they are over and again once the daemon is quiet. */
  readonly #garbage: SyncGarbage;
  /** Kubernetes Events: undefined with --source, or without an API server to send them to. */
  #events: DaemonEvents | undefined;
  /** The default source's credentials: its Events go to the same API server. */
  #kubeConfig: KubeConfig | undefined;
  readonly #log: Logger;
  readonly #clock: Clock;
  /** Epoch milliseconds from the injected clock, so metric timestamps move with a test's clock. */
  readonly #wallNow: () => number;

  constructor(
    readonly config: ProxyConfig,
    readonly deps: DaemonDeps,
  ) {
    this.#log = deps.log.child({ component: 'daemon' });
    this.#clock = deps.clock ?? systemClock;
    this.#wallNow = wallTime(this.#clock);
    this.#garbage = new SyncGarbage({ clock: this.#clock });
    this.health = new ProxyHealth({ healthTimeoutMs: 2 * config.syncPeriodMs, clock: this.#clock });
    this.metrics = createMetrics();
    this.healthChecks = new HealthCheckNodePorts({
      healthy: () => this.health.status().healthy,
      log: deps.log,
      onListenFailed: (hc, err) =>
        this.#events?.healthCheckFailed(
          hc,
          `healthCheckNodePort ${hc.port} (${hc.family}): ${errorText(err)}`,
        ),
    });
    this.metrics.onScrape(() => this.#refreshScraped());
    this.#env = { ...deps.env };
    this.#builder = new StateBuilder(modelConfig(config, this.#env));
    if (config.proxyMode === 'nftables' && deps.conntrack) {
      this.conntrack = new ConntrackReconciler({
        conntrack: deps.conntrack,
        log: deps.log,
        metrics: this.metrics,
        clock: this.#clock,
      });
    }
    if (config.proxyMode === 'nftables') {
      this.#nftBackend = new NftBackend({
        nft: deps.nft,
        log: deps.log,
        clock: this.#clock,
        table: config.tableName,
        compileConfig: (state) => compileConfig(state, this.config, this.#env),
        metrics: this.metrics,
        logSkipped: (skipped) => logSkipped(this.#log, skipped, this.#skippedSeen),
        ...(this.conntrack ? { conntrack: this.conntrack } : {}),
        ...(deps.prepareNode ? { prepareNode: deps.prepareNode } : {}),
        serviceCounters: config.serviceCounters,
      });
      const counters = this.#nftBackend.counters;
      if (counters) this.metrics.serviceCounters(async () => (await counters.read())?.ports);
      this.#backend = this.#nftBackend;
      this.#leftovers = deps.leftovers;
      this.#liveTracer = new LiveTracer({ nft: deps.nft, table: config.tableName, log: deps.log });
    } else {
      this.#liveTracer = undefined;
      this.#backend = new UserspaceProxyBackend({
        log: deps.log,
        config,
        // The same NodePort addresses as the rules would use (--nodeport-addresses).
        nodePortIPs: (state) => nodePortIPsOf(state, this.config, this.#env),
      });
    }
    this.store = new ObjectStore({
      onChange: () => {
        this.health.queued();
        this.metrics.lastQueued(this.#wallNow());
        const pending = this.store.pending;
        this.metrics.pending(pending.services, pending.endpoints);
        this.#runner.run();
      },
    });
    this.#runner = new BoundedFrequencyRunner({
      name: 'sync',
      fn: () => this.sync(),
      minIntervalMs: config.minSyncPeriodMs,
      maxIntervalMs: config.syncPeriodMs,
      clock: this.#clock,
      log: deps.log,
    });
  }

  /** The nftables backend's applier (tests read what it applied); throws in userspace mode. */
  get applier(): NftApplier {
    if (!this.#nftBackend) throw new Error('no nftables applier in userspace mode');
    return this.#nftBackend.applier;
  }

  /** Kubernetes Events, when they are sent (tests flush them). */
  get events(): DaemonEvents | undefined {
    return this.#events;
  }

  /** How many syncs have succeeded (tests wait on it). */
  get syncs(): number {
    return this.#syncs;
  }

  get state(): ProxyState | undefined {
    return this.#state;
  }

  /**
   * Start, or fail with the error that stopped it, having stopped whatever had started (servers,
   * the nft session): a daemon that cannot start must not linger with a green /healthz. The
   * credentials or --source are checked first: that touches nothing, and it fails in a second.
   */
  async start(): Promise<void> {
    // Until the first sync is applied, the start counts as a pending change (ProxyHealth).
    this.health.started();
    try {
      await this.#start();
    } catch (err) {
      // Each part on its own: one that fails to stop (a source whose read failed rethrows it)
      // must not keep the others running. The start's error is the one worth reporting.
      const steps = [
        () => this.#runner.stop(),
        () => this.#events?.stop(),
        () => this.#source?.stop(),
        () => this.#servers?.close(),
        () => this.#backend.close(),
        () => this.deps.nft.close?.(),
      ];
      for (const step of steps)
        await Promise.resolve()
          .then(step)
          .catch(() => undefined);
      throw err;
    }
  }

  async #start(): Promise<void> {
    this.#source = this.deps.source ?? (await this.#defaultSource());
    this.#events = await this.#makeEvents();
    await this.#backend.start();
    await this.#clearTraceLeftovers();
    this.#servers = await createServers({
      healthzAddress: this.config.healthzBindAddress,
      metricsAddress: this.config.metricsBindAddress,
      health: this.health,
      metrics: this.metrics,
      view: this.view,
      log: this.deps.log.child({ component: 'server' }),
    });
    await this.#source.start(this.#sourceHandler());
    if (this.#source instanceof FileSource) this.#source.watch();
    // kube-proxy's birth cry: once its informers run, before the first sync.
    this.#events?.started();
    this.#runner.start();
  }

  /** Events go to the API server; none from --source (no cluster to tell) or without a sink. */
  async #makeEvents(): Promise<DaemonEvents | undefined> {
    if (this.config.source) return undefined;
    let sink = this.deps.eventSink;
    if (!sink && this.#kubeConfig) {
      const { kubeEventSink } = await import('./events/event-sink.js');
      sink = await kubeEventSink(this.#kubeConfig);
    }
    if (!sink) return undefined;
    return createDaemonEvents({
      sink,
      nodeName: this.config.hostnameOverride,
      service: (key) => this.store.services.get(key),
      log: this.deps.log,
      clock: this.#clock,
      registry: this.metrics.registry,
    });
  }

  /**
   * A trace table left by a daemon that died mid-trace marks nothing any more (its tuple timed
   * out in the kernel), but it is ours to remove. A failure costs only a log line.
   */
  async #clearTraceLeftovers(): Promise<void> {
    try {
      await this.#liveTracer?.clearLeftovers();
    } catch (err) {
      this.#log.warn({ err }, 'cannot remove a trace table left from an earlier run');
    }
  }

  /**
   * The store, and the API server's refusals for /healthz. Every SourceHandler method is listed
   * (Required): one added to the interface fails the typecheck here instead of being dropped.
   */
  #sourceHandler(): SourceHandler {
    const store = this.store;
    const handler: Required<SourceHandler> = {
      upsert: (kind, object) => store.upsert(kind, object),
      remove: (kind, namespace, name) => store.remove(kind, namespace, name),
      synced: () => store.synced(),
      unreadable: (files) => store.unreadable(files),
      denied: (kind, problem) => this.health.apiAccess(kind, problem),
      // The source has logged it already; the next sync catches up.
      problem: () => undefined,
    };
    return handler;
  }

  /** Stop watching and serving; the rules stay. */
  async stop(): Promise<void> {
    await this.#liveTracer?.close();
    await this.#runner.stop();
    this.#garbage.stop();
    this.#events?.stop();
    await this.conntrack?.stop();
    await this.#source?.stop();
    await this.#servers?.close();
    await this.healthChecks.close();
    await this.#backend.close();
    this.deps.nft.close?.();
  }

  get servers(): Servers | undefined {
    return this.#servers;
  }

  async #defaultSource(): Promise<Source> {
    // Watched once start() has read it: a missing path is then SOURCE_UNREADABLE (exit 5).
    if (this.config.source) return new FileSource(this.config.source, { log: this.#log });
    const { loadKubeConfig } = await import('./watch/kubeconfig.js');
    const { createKubeSource } = await import('./watch/kube-source.js');
    const { kubeConfig, source, server } = loadKubeConfig({ kubeconfigPath: this.config.kubeconfig });
    this.#kubeConfig = kubeConfig;
    this.#log.info({ credentials: source, server }, 'watching the API server');
    return createKubeSource({ kubeConfig, nodeName: this.config.hostnameOverride, log: this.deps.log });
  }

  /**
   * Reads the host's addresses again when a full sync is due (hourly), after a failed sync, and
   * when this node's Node object changed: --nodeport-addresses and the node IP fallback then
   * follow an address added or removed since the start. New addresses mean a new StateBuilder:
   * the next update joins everything (NodePort ownership depends on them), as a Node change does.
   */
  #refreshAddresses(start: number): void {
    const read = this.deps.env.readLocalAddresses;
    if (!read) return;
    const node = this.store.nodes.get(this.config.hostnameOverride);
    const due =
      start - this.#lastFull >= FULL_SYNC_PERIOD_MS || this.#failedSince || node !== this.#addressesNode;
    if (!due) return;
    this.#addressesNode = node;
    let now: string[];
    try {
      now = read();
    } catch (err) {
      this.#log.warn({ err }, "the host's addresses could not be read again; keeping the last ones");
      return;
    }
    if (now.join() === this.#env.localAddresses.join()) return;
    this.#log.info({ was: this.#env.localAddresses, now }, "the host's addresses changed");
    this.#env = { ...this.#env, localAddresses: now };
    this.#builder = new StateBuilder(modelConfig(this.config, this.#env));
  }

  /** One sync: the runner calls it; never two at once. */
  async sync(): Promise<void> {
    if (!this.store.isSynced) return;
    const start = this.#clock.now();
    const changes = this.store.takeChanges();
    this.metrics.changes(changes.events.services, changes.events.endpoints);
    this.#refreshAddresses(start);
    const { state, delta } = stateFrom(this.store, this.config, this.#env, {
      builder: this.#builder,
      changed: changes.services,
    });
    logSkipped(this.#log, state.skipped, this.#skippedSeen);
    const node = this.store.nodes.get(this.config.hostnameOverride);
    if (node) this.health.nodeEligible(isNodeEligible(node));
    // As kube-proxy, nothing is programmed before NodeCIDR has the Node's pod CIDRs: until then
    // every pod's connection to a ClusterIP would be masqueraded. /healthz turns unhealthy if
    // they take longer than a queued change may. Once programmed, a change of them recompiles.
    if (
      this.#backend.needsPodCIDRs &&
      this.#lastFull === -Infinity &&
      awaitingPodCIDRs(this.config.detectLocal, state.node)
    ) {
      if (!this.#waitingLogged)
        this.#log.info(
          { node: this.config.hostnameOverride, nodeKnown: node !== undefined },
          "waiting for the Node's spec.podCIDRs (--detect-local-mode NodeCIDR)",
        );
      this.#waitingLogged = true;
      return;
    }
    let result: BackendSyncResult;
    try {
      result = await this.#backend.sync(state, delta, {
        changedServices: changes.services,
        now: start,
      });
    } catch (err) {
      this.#failedSince = true;
      this.metrics.syncFailed();
      this.#log.error({ err }, 'sync failed; retrying');
      throw err;
    }
    // The state as programmed (what the backend left out among the skipped) is what is shown.
    const { programmed: shown, full } = result;
    if (full) this.#lastFull = start;
    // What a full sync read and wrote is garbage now; V8 would keep it until it next needs room.
    this.#garbage.synced(full);
    this.#state = shown;
    this.#failedSince = false;
    // Every entry skipped now (the model's, the compiler's, the held-out) is in the set: anything
    // more is no longer skipped, and is logged again if it comes back.
    if (this.#skippedSeen.size > shown.skipped.length) {
      const now = new Set(shown.skipped.map(skippedId));
      for (const id of this.#skippedSeen) if (!now.has(id)) this.#skippedSeen.delete(id);
    }
    // After the rules, as kube-proxy: a load balancer is told of local endpoints that work.
    await this.healthChecks.reconcile(
      desiredHealthChecks(shown, this.config.nodePortAddresses, this.#env.localAddresses),
    );
    // A Warning on each Service with a problem new since the last sync.
    this.#events?.synced(shown.skipped);
    this.#syncs++;
    if (this.#syncs === 1 && this.#leftovers) void this.#removeLeftovers(this.#leftovers);
    const seconds = (this.#clock.now() - start) / 1000;
    this.health.updated();
    this.metrics.syncDuration(full, seconds);
    const now = this.#wallNow();
    this.metrics.lastSync(now);
    this.metrics.pending(0, 0);
    for (const t of changes.triggers) this.metrics.networkProgramming(Math.max(0, now - t) / 1000);
    this.#scraped = false;
    this.#log.debug({ full, seconds, ports: shown.ports.length }, 'synced');
  }

  /**
   * kube-proxy's iptables and IPVS leftovers go once our rules are in (its nftables tables went
   * in that very transaction): from then on no new connection can meet its DNAT first. Runs
   * beside the syncs; a failure is logged and costs nothing else.
   */
  async #removeLeftovers(run: RunProgram): Promise<void> {
    try {
      const report = await cleanupLeftovers(run, this.#log);
      if (Object.keys(report.iptables).length > 0 || report.ipvsInterface)
        this.#log.info(report, "removed kube-proxy's iptables and IPVS leftovers");
      if (report.errors.length > 0) {
        this.metrics.nftCleanupFailed(leftoverFailureFamilies(report));
        this.#log.warn({ errors: report.errors }, "some of kube-proxy's leftovers could not be removed");
      }
    } catch (err) {
      this.metrics.nftCleanupFailed(['ipv4', 'ipv6']);
      this.#log.warn({ err }, "kube-proxy's leftovers could not be removed");
    }
  }

  /** Whether the scrape-time figures below reflect the last sync. */
  #scraped = false;

  /** Figures that walk every service port, for /metrics: computed at scrape, once per sync. */
  #refreshScraped(): void {
    const state = this.#state;
    if (this.#scraped || !state) return;
    this.#scraped = true;
    // Per family, as kube-proxy's proxier of each family counts the ports it programs.
    const noLocal = { ipv4: { internal: 0, external: 0 }, ipv6: { internal: 0, external: 0 } };
    for (const sp of state.ports) {
      if (!sp.hasEndpoints || sp.localEndpoints.length > 0) continue;
      if (sp.internalPolicyLocal) noLocal[sp.family].internal++;
      if (sp.externalPolicyLocal) noLocal[sp.family].external++;
    }
    this.metrics.noLocalEndpoints(noLocal);
    this.#backend.scrape();
    const byKind: Record<string, number> = {};
    let contested = 0;
    for (const s of state.skipped) {
      if (s.contested) contested++;
      else if (!s.ignored) byKind[s.kind] = (byKind[s.kind] ?? 0) + 1;
    }
    this.metrics.skipped(byKind, contested);
  }

  /** What the servers read. */
  get view(): DaemonView {
    return (this.#view ??= this.#makeView());
  }

  #view: DaemonView | undefined;

  #makeView(): DaemonView {
    return {
      mode: this.config.proxyMode,
      rules: (service) => this.#backend.rules(service),
      liveRules: () => this.#backend.liveRules(),
      trace: (q) => this.#modelTrace(q),
      ...(this.#liveTracer ? this.#liveView(this.#liveTracer) : {}),
      config: () => effectiveKubeProxyConfig(this.config),
      services: async (query) => {
        const { state, listeners } = this.#backend.describe(this.#state);
        const counters = await this.#nftBackend?.counters?.read();
        return describeServices(state, listeners, query, counters);
      },
    };
  }

  /** Where the model sends such a packet, by the last programmed state. */
  #modelTrace(q: Packet): Trace {
    const state = this.#state;
    if (!state) return { verdict: 'no-match', why: 'no sync yet' };
    return trace(state, compileConfig(state, this.config, this.#env), q);
  }

  /** The live trace's part of the view: the model answers from the state as it is when the trace ends. */
  #liveView(tracer: LiveTracer): Pick<DaemonView, 'liveTrace' | 'liveTraceStatus'> {
    return {
      liveTrace: (q, seconds) => tracer.trace(q, seconds, () => this.#modelTrace(q)),
      liveTraceStatus: () => tracer.status(),
    };
  }
}

/** Run until SIGTERM or SIGINT; the rules stay in place. */
export async function runDaemon(config: ProxyConfig, deps: DaemonDeps): Promise<void> {
  const daemon = new Daemon(config, deps);
  await daemon.start();
  await new Promise<void>((resolve) => {
    const stop = (signal: string): void => {
      deps.log.info({ signal }, 'stopping; rules stay in place');
      resolve();
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  await daemon.stop();
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
