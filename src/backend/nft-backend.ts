import { wallTime, type Clock } from '../util/clock.js';
import { CounterReader } from '../counters/counter-reader.js';
import type { ConntrackReconciler } from '../conntrack/reconciler.js';
import { KUBE_PROXY_TABLES } from '../kube-proxy-leftovers.js';
import type { Logger } from '../log.js';
import type { StateDelta } from '../model/state-builder.js';
import type { ProxyState, Skipped } from '../model/types.js';
import { NftApplier, type SyncResult } from '../rules/applier.js';
import { renderRuleset } from '../rules/diff.js';
import { Compiler, programmedState, type CompileConfig } from '../rules/compile.js';
import { containRefusal } from '../rules/contain.js';
import { HeldOut } from '../rules/held-out.js';
import { isRefusal, refusalReason } from '../rules/isolate.js';
import type { Nft } from '../rules/nft/exec.js';
import { probeNft } from '../rules/nft/probe.js';
import { rulesetSize } from '../rules/ruleset.js';
import type { ProxyMetrics } from '../server/metrics.js';
import {
  FULL_SYNC_PERIOD_MS,
  type Backend,
  type BackendDescription,
  type BackendSyncOptions,
  type BackendSyncResult,
} from './backend.js';

export interface NftBackendOptions {
  nft: Nft;
  log: Logger;
  clock: Clock;
  /** Our table's name (--table-name), read back by liveRules. */
  table: string;
  /**
   * The compile config for a state: it depends on the Node (detect-local) and on the host's
   * addresses as last read, which the daemon owns.
   */
  compileConfig: (state: ProxyState) => CompileConfig;
  /** kube-proxy's nftables figures it keeps up. */
  metrics: Pick<ProxyMetrics, 'nftSyncFailed' | 'transaction' | 'heldOut' | 'rulesetSize'>;
  /** Logs skipped entries once (the daemon's set of those already logged). */
  logSkipped: (skipped: Skipped[]) => void;
  /** Told of every change and every applied sync; deletes stale UDP conntrack entries. */
  conntrack?: Pick<ConntrackReconciler, 'note' | 'synced'>;
  /** The node settings nftables mode needs (conntrack sysctls), run once nft works. */
  prepareNode?: () => Promise<void>;
  /** --service-counters: read the rules' per-frontend counters (`counters`). */
  serviceCounters?: boolean;
}

/**
 * The nftables backend: ProxyState → Compiler → NftApplier, with kube-proxy's periodic full
 * sync, and Services nft refuses held out (one bad Service costs only itself, issue #11).
 */
export class NftBackend implements Backend {
  readonly mode = 'nftables';
  readonly needsPodCIDRs = true;
  /** Syncs our tables (and takes over kube-proxy's nftables tables in the first one). */
  readonly applier: NftApplier;
  readonly #opts: NftBackendOptions;
  readonly #log: Logger;
  /** Services whose rules nft refused: left out of every sync until their objects change. */
  readonly #heldOut = new HeldOut();
  #lastFull = -Infinity;
  #compiler: { key: string; compiler: Compiler } | undefined;
  /** The state the applied rules were compiled from (after the last sync that worked). */
  #programmed: ProxyState | undefined;
  /** The compile config of the last compile: the NodePort addresses the counters are read against. */
  #compiled: CompileConfig | undefined;
  /** Wall-clock time of the last full sync, which started the kernel's counters again. */
  #countersSince: number | undefined;
  readonly #wallNow: () => number;
  /** The per-frontend counters of the applied rules; none with --service-counters=false. */
  readonly counters: CounterReader | undefined;

  constructor(opts: NftBackendOptions) {
    this.#opts = opts;
    this.#log = opts.log.child({ component: 'nftables' });
    this.applier = new NftApplier({
      nft: opts.nft,
      log: opts.log.child({ component: 'rules' }),
      takeOver: KUBE_PROXY_TABLES,
    });
    this.#wallNow = wallTime(opts.clock);
    this.counters = opts.serviceCounters
      ? new CounterReader({
          nft: opts.nft,
          table: opts.table,
          log: opts.log,
          clock: opts.clock,
          rules: () => {
            const state = this.#programmed;
            const since = this.#countersSince;
            const cc = this.#compiled;
            return state && since !== undefined && cc
              ? { state, since, nodePortIPs: cc.nodePortIPs }
              : undefined;
          },
        })
      : undefined;
  }

  async start(): Promise<void> {
    const { version } = await probeNft(this.#opts.nft);
    this.#log.info({ nft: version }, 'nftables ready');
    await this.#opts.prepareNode?.();
  }

  async sync(
    state: ProxyState,
    delta: StateDelta | undefined,
    opts: BackendSyncOptions,
  ): Promise<BackendSyncResult> {
    try {
      return await this.#sync(state, delta, opts);
    } finally {
      this.#opts.metrics.heldOut(this.#heldOut.size);
    }
  }

  async #sync(
    state: ProxyState,
    stateDelta: StateDelta | undefined,
    { changedServices, now }: BackendSyncOptions,
  ): Promise<BackendSyncResult> {
    const { metrics, logSkipped, conntrack } = this.#opts;
    const wantFull = now - this.#lastFull >= FULL_SYNC_PERIOD_MS;
    // A held-out Service is tried again when its objects change, and at every periodic
    // full sync (what it collided with may be gone).
    if (wantFull) this.#heldOut.releaseAll();
    this.#heldOut.release(changedServices);
    const { state: view, delta } = this.#heldOut.view(state, stateDelta);
    conntrack?.note(view, delta);
    const compiler = this.#compilerFor(view);
    const { ruleset: rules, delta: rulesDelta } = compiler.compile(view, delta);
    // Services the compiler left out (too many elements) are listed with the model's.
    logSkipped(rules.skipped);
    let programmed = programmedState(view, rules);
    const before = this.applier.applied;
    let result: SyncResult;
    try {
      result = await this.applier.sync(rules, {
        full: wantFull,
        ...(rulesDelta ? { delta: rulesDelta } : {}),
      });
    } catch (err) {
      // nft failed the sync (its transaction, or a map read it needed): kube-proxy's count,
      // even when containment then applies the rest.
      metrics.nftSyncFailed();
      if (!isRefusal(err)) throw err;
      // One bad Service costs only itself: it is held out, the rest applied (issue #11).
      const began = this.#opts.clock.now();
      const partial = !wantFull && before ? { before, ...(delta ? { delta } : {}) } : undefined;
      const contained = await containRefusal(
        {
          nft: this.#opts.nft,
          applier: this.applier,
          compiler,
          heldOut: this.#heldOut,
          log: this.#log,
        },
        { state, view, rules, err, ...(partial ? { partial } : {}) },
      );
      result = contained.result;
      programmed = programmedState(contained.view, this.applier.applied ?? rules);
      logSkipped(programmed.skipped);
      this.#log.warn(
        {
          refused: refusalReason(err),
          heldOut: [...contained.heldOut.keys()],
          checks: contained.checks,
          ms: this.#opts.clock.now() - began,
        },
        'nft refused a sync: applied it without the Services it refuses',
      );
    }
    if (result.full) {
      this.#lastFull = now;
      this.#countersSince = this.#wallNow();
    }
    metrics.transaction(result.operations);
    this.#programmed = programmed;
    // In the background: the next sync never waits for a cleanup.
    conntrack?.synced(programmed);
    return { programmed, full: result.full };
  }

  /** One Compiler while the compile config stays (its memory makes one change cost one port). */
  #compilerFor(state: ProxyState): Compiler {
    const cc = this.#opts.compileConfig(state);
    const key = JSON.stringify(cc);
    this.#compiled = cc;
    if (this.#compiler?.key !== key) this.#compiler = { key, compiler: new Compiler(cc) };
    return this.#compiler.compiler;
  }

  rules(service?: string): string {
    const applied = this.applier.applied;
    if (!applied) return '';
    if (service === undefined) return renderRuleset(applied);
    // The state the applied ruleset was compiled from says which port keys are the Service's.
    const keys = new Set(this.#programmed?.ports.filter((sp) => sp.service === service).map((sp) => sp.key));
    return renderRuleset({
      tables: [],
      chains: [],
      sets: [],
      elements: new Map(),
      skipped: [],
      fragments: applied.fragments.filter((f) => keys.has(f.key)),
    });
  }

  async liveRules(): Promise<string> {
    const parts = await Promise.all(
      (['ip', 'ip6'] as const).map((f) => this.#opts.nft.list(f, this.#opts.table)),
    );
    return parts.join('');
  }

  describe(state: ProxyState | undefined): BackendDescription {
    return { state };
  }

  scrape(): void {
    if (this.applier.applied) this.#opts.metrics.rulesetSize(rulesetSize(this.applier.applied));
  }

  /** The rules stay in place; the nft session is the daemon's to close. */
  async close(): Promise<void> {}
}
