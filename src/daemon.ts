import { systemClock, wallTime, type Clock } from './clock.js';
import { logSkipped, skippedId } from './log-skipped.js';
import type { ProxyConfig } from './config-types.js';
import type { Logger } from './log.js';
import { UserspaceBackend } from './lb/userspace-backend.js';
import { ipLocalAddresses } from './lb/local-address.js';
import { trace } from './model/trace.js';
import type { ProxyState } from './model/types.js';
import { StateBuilder } from './model/state-builder.js';
import { nodePortIPs } from './node-addresses.js';
import { compileConfig, modelConfig, stateFrom, type Environment } from './pipeline.js';
import { Compiler } from './rules/compile.js';
import { NftApplier, renderRuleset } from './rules/apply.js';
import type { Nft } from './rules/nft/exec.js';
import { probeNft } from './rules/nft/probe.js';
import { rulesetSize } from './rules/ruleset.js';
import { isNodeEligible, ProxyHealth } from './server/health.js';
import { createMetrics, type ProxyMetrics } from './server/metrics.js';
import { createServers, type Servers } from './server/servers.js';
import type { DaemonView } from './server/view.js';
import { describeServices } from './server/services-view.js';
import { FileSource } from './watch/file-source.js';
import { ObjectStore } from './watch/object-store.js';
import { BoundedFrequencyRunner } from './watch/runner.js';
import type { Source } from './watch/source.js';

/** A full resync (atomic replacement of our tables) at least this often, as kube-proxy does. */
const FULL_SYNC_PERIOD_MS = 60 * 60 * 1000;

export interface DaemonDeps {
  log: Logger;
  env: Environment;
  nft: Nft;
  /** The object source; default: --source files, else the API server. */
  source?: Source;
  clock?: Clock;
}

/**
 * The node daemon: source → ObjectStore → runner → (model → compile → nft | userspace) →
 * servers. Nothing is applied before the source has synced once. Stopping leaves the rules
 * in place, so traffic keeps flowing while the daemon restarts; the next start replaces them
 * atomically.
 */
export class Daemon {
  readonly store: ObjectStore;
  readonly health: ProxyHealth;
  readonly metrics: ProxyMetrics;
  readonly applier: NftApplier;
  #runner: BoundedFrequencyRunner;
  #servers: Servers | undefined;
  #source: Source | undefined;
  #userspace: UserspaceBackend | undefined;
  #state: ProxyState | undefined;
  /** Joins only the Services that changed since the last sync. */
  readonly #builder: StateBuilder;
  #lastFull = -Infinity;
  /**
   * The skipped entries already logged. Only those still skipped are kept: the set is as large
   * as the current skipped list, not every name ever skipped, and an object that is mended and
   * broken again is logged again.
   */
  #skippedSeen = new Set<string>();
  #syncs = 0;
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
    this.health = new ProxyHealth({ healthTimeoutMs: 2 * config.syncPeriodMs, clock: this.#clock });
    this.metrics = createMetrics();
    this.metrics.onScrape(() => this.#refreshScraped());
    this.#builder = new StateBuilder(modelConfig(config, deps.env));
    this.applier = new NftApplier({ nft: deps.nft, log: deps.log.child({ component: 'rules' }) });
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

  /** How many syncs have succeeded (tests wait on it). */
  get syncs(): number {
    return this.#syncs;
  }

  get state(): ProxyState | undefined {
    return this.#state;
  }

  async start(): Promise<void> {
    if (this.config.proxyMode === 'nftables') {
      const { version } = await probeNft(this.deps.nft);
      this.#log.info({ nft: version }, 'nftables ready');
    } else {
      const root = typeof process.getuid === 'function' && process.getuid() === 0;
      const bind = this.config.userspaceBind;
      const bindMode = bind === 'auto' ? (root ? 'service-ip' : 'loopback') : bind;
      this.#userspace = new UserspaceBackend({
        log: this.deps.log,
        bindMode,
        maglevSeed: this.config.maglevSeed,
        ...(bindMode === 'service-ip' ? { localAddresses: ipLocalAddresses() } : {}),
      });
      this.#log.info({ bindMode }, 'userspace proxy ready');
    }
    this.#servers = await createServers({
      healthzAddress: this.config.healthzBindAddress,
      metricsAddress: this.config.metricsBindAddress,
      health: this.health,
      metrics: this.metrics,
      view: this.view,
      log: this.deps.log.child({ component: 'server' }),
    });
    this.#source = this.deps.source ?? (await this.#defaultSource());
    await this.#source.start(this.store);
    this.#runner.start();
  }

  /** Stop watching and serving; the rules stay. */
  async stop(): Promise<void> {
    await this.#runner.stop();
    await this.#source?.stop();
    await this.#servers?.close();
    await this.#userspace?.close();
    this.deps.nft.close?.();
  }

  get servers(): Servers | undefined {
    return this.#servers;
  }

  async #defaultSource(): Promise<Source> {
    if (this.config.source) {
      const files = new FileSource(this.config.source, { log: this.#log });
      files.watch();
      return files;
    }
    const { loadKubeConfig } = await import('./watch/kubeconfig.js');
    const { createKubeSource } = await import('./watch/kube-source.js');
    const { kubeConfig, source, server } = loadKubeConfig({ kubeconfigPath: this.config.kubeconfig });
    this.#log.info({ credentials: source, server }, 'watching the API server');
    return createKubeSource({ kubeConfig, nodeName: this.config.hostnameOverride, log: this.deps.log });
  }

  #compiler: { key: string; compiler: Compiler } | undefined;

  /** One Compiler while the compile config stays (its memory makes one change cost one port). */
  #compilerFor(state: ProxyState): Compiler {
    const cc = compileConfig(state, this.config, this.deps.env);
    const key = JSON.stringify(cc);
    if (this.#compiler?.key !== key) this.#compiler = { key, compiler: new Compiler(cc) };
    return this.#compiler.compiler;
  }

  /** One sync: the runner calls it; never two at once. */
  async sync(): Promise<void> {
    if (!this.store.isSynced) return;
    const start = this.#clock.now();
    const changes = this.store.takeChanges();
    this.metrics.changes(changes.events.services, changes.events.endpoints);
    const state = stateFrom(this.store, this.config, this.deps.env, {
      builder: this.#builder,
      changed: changes.services,
    });
    logSkipped(this.#log, state.skipped, this.#skippedSeen);
    // Every current entry is in the set now: anything more is no longer skipped.
    if (this.#skippedSeen.size > state.skipped.length) {
      const now = new Set(state.skipped.map(skippedId));
      for (const id of this.#skippedSeen) if (!now.has(id)) this.#skippedSeen.delete(id);
    }
    const node = this.store.nodes.get(this.config.hostnameOverride);
    if (node) this.health.nodeEligible(isNodeEligible(node));
    let full = false;
    try {
      if (this.#userspace) {
        // The same NodePort addresses as the rules would use (--nodeport-addresses).
        await this.#userspace.sync(
          state,
          nodePortIPs(state.node, this.config.nodePortAddresses, this.deps.env.localAddresses),
        );
      } else {
        const compiler = this.#compilerFor(state);
        const rules = compiler.compile(state, this.#builder.delta);
        const wantFull = start - this.#lastFull >= FULL_SYNC_PERIOD_MS;
        const result = await this.applier.sync(rules, {
          full: wantFull,
          ...(compiler.delta ? { delta: compiler.delta } : {}),
        });
        full = result.full;
        if (full) this.#lastFull = start;
        this.metrics.transaction(result.operations);
      }
    } catch (err) {
      this.metrics.syncFailed();
      this.#log.error({ err }, 'sync failed; retrying');
      throw err;
    }
    this.#state = state;
    this.#syncs++;
    const seconds = (this.#clock.now() - start) / 1000;
    this.health.updated();
    this.metrics.syncDuration(full, seconds);
    const now = this.#wallNow();
    this.metrics.lastSync(now);
    this.metrics.pending(0, 0);
    for (const t of changes.triggers) this.metrics.networkProgramming(Math.max(0, now - t) / 1000);
    this.#scraped = false;
    this.#log.debug({ full, seconds, ports: state.ports.length }, 'synced');
  }

  /** Whether the scrape-time figures below reflect the last sync. */
  #scraped = false;

  /** Figures that walk every service port, for /metrics: computed at scrape, once per sync. */
  #refreshScraped(): void {
    const state = this.#state;
    if (this.#scraped || !state) return;
    this.#scraped = true;
    const noLocal = (pick: (sp: ProxyState['ports'][number]) => boolean): number =>
      state.ports.filter((sp) => pick(sp) && sp.hasEndpoints && sp.localEndpoints.length === 0).length;
    this.metrics.noLocalEndpoints(
      noLocal((sp) => sp.internalPolicyLocal),
      noLocal((sp) => sp.externalPolicyLocal),
    );
    if (this.applier.applied) this.metrics.rulesetSize(rulesetSize(this.applier.applied));
  }

  /** What the servers read. */
  get view(): DaemonView {
    return (this.#view ??= this.#makeView());
  }

  #view: DaemonView | undefined;

  #makeView(): DaemonView {
    return {
      mode: this.config.proxyMode,
      rules: (service) => {
        const applied = this.applier.applied;
        if (!applied) return '';
        if (service === undefined) return renderRuleset(applied);
        // The state the applied ruleset was compiled from says which port keys are the Service's.
        const keys = new Set(this.#state?.ports.filter((sp) => sp.service === service).map((sp) => sp.key));
        return renderRuleset({
          tables: [],
          chains: [],
          sets: [],
          elements: new Map(),
          fragments: applied.fragments.filter((f) => keys.has(f.key)),
        });
      },
      liveRules: async () => {
        const parts = await Promise.all(
          (['ip', 'ip6'] as const).map((f) => this.deps.nft.list(f, this.config.tableName)),
        );
        return parts.join('');
      },
      trace: (q) => {
        const state = this.#state;
        if (!state) return { verdict: 'no-match', why: 'no sync yet' };
        return trace(state, compileConfig(state, this.config, this.deps.env), q);
      },
      services: (query) => describeServices(this.#state, this.#userspace?.listeners(), query),
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
