import { systemClock, type Clock } from '../util/clock.js';
import type { Logger } from '../log.js';
import type { StateDelta } from '../model/state-builder.js';
import type { Family, ProxyState } from '../model/types.js';
import type { Conntrack } from './exec.js';
import { changedUdpFamilies, StaleFlows, targetPorts, udpTargets } from './stale-flows.js';

/** What a cleanup reports, per family: for the two kube-proxy metrics. */
export interface ConntrackObserver {
  conntrackReconciled(family: Family, seconds: number, deleted: number): void;
}

export interface ConntrackReconcilerOptions {
  conntrack: Conntrack;
  log: Logger;
  metrics?: ConntrackObserver;
  clock?: Clock;
}

/**
 * Deletes stale UDP conntrack entries after the syncs that call for it (see stale-flows.ts),
 * in the background: a cleanup lists the whole table (a quarter of a second per 100,000
 * entries, measured), and the next sync must never wait for it. One cleanup runs at a time;
 * requests made meanwhile coalesce into one more, with the newest state. A family whose
 * cleanup failed is tried again after the next successful sync, not in a loop.
 *
 * The daemon calls {@link note} with every sync's delta before applying it, and
 * {@link synced} once the rules are in: a change noted by a sync that failed is cleaned after
 * the next one that succeeds.
 */
export class ConntrackReconciler {
  readonly #conntrack: Conntrack;
  readonly #log: Logger;
  readonly #metrics: ConntrackObserver | undefined;
  readonly #clock: Clock;
  /** Families noted as changed since the last cleanup was started. */
  #noted = new Set<Family>();
  /** Families due, waiting for the running cleanup to end. */
  #due = new Set<Family>();
  #state: ProxyState | undefined;
  #running: Promise<void> | undefined;
  #runs = 0;
  #lastFailure: string | undefined;

  constructor(opts: ConntrackReconcilerOptions) {
    this.#conntrack = opts.conntrack;
    this.#log = opts.log.child({ component: 'conntrack' });
    this.#metrics = opts.metrics;
    this.#clock = opts.clock ?? systemClock;
  }

  /** Family cleanups finished so far, successful or not (tests count them). */
  get runs(): number {
    return this.#runs;
  }

  /** Notes the UDP changes of a sync about to be applied. */
  note(state: ProxyState, delta: StateDelta | undefined): void {
    for (const family of changedUdpFamilies(state, delta)) this.#noted.add(family);
  }

  /** The rules of `state` are in: start a cleanup of the noted families (or queue one). */
  synced(state: ProxyState): void {
    if (this.#noted.size === 0) return;
    for (const family of this.#noted) this.#due.add(family);
    this.#noted.clear();
    this.#state = state;
    this.#running ??= this.#loop().finally(() => (this.#running = undefined));
  }

  /** Resolves when no cleanup runs and none is queued. */
  async idle(): Promise<void> {
    while (this.#running) await this.#running;
  }

  /** Drops the queued cleanups and waits for the running one (its conntrack process) to end. */
  async stop(): Promise<void> {
    this.#due.clear();
    this.#noted.clear();
    await this.idle();
  }

  async #loop(): Promise<void> {
    while (this.#due.size > 0) {
      const families = [...this.#due].sort();
      this.#due.clear();
      const state = this.#state!;
      for (const family of families) await this.#clean(state, family);
    }
  }

  async #clean(state: ProxyState, family: Family): Promise<void> {
    const start = this.#clock.now();
    try {
      const { stale, filters, deleted } = await deleteStaleUdp(this.#conntrack, state, family);
      const seconds = (this.#clock.now() - start) / 1000;
      this.#metrics?.conntrackReconciled(family, seconds, deleted);
      this.#lastFailure = undefined;
      const fields = { family, stale, filters, deleted, seconds };
      if (deleted > 0) this.#log.info(fields, 'deleted stale UDP conntrack entries');
      else this.#log.debug(fields, 'no stale UDP conntrack entries');
    } catch (err) {
      // Tried again after the next successful sync (at least one per sync period).
      this.#noted.add(family);
      const text = String((err as Error).message);
      if (text !== this.#lastFailure)
        this.#log.error({ err, family }, 'conntrack cleanup failed; will retry');
      else this.#log.debug({ err, family }, 'conntrack cleanup failed again');
      this.#lastFailure = text;
    } finally {
      this.#runs++;
    }
  }
}

/**
 * One cleanup of `family`: lists its UDP entries sent to the frontends of `state` and deletes
 * those that go to an endpoint the frontend no longer has (stale-flows.ts). What the daemon runs
 * after a sync, and kernel tests that drive the applier themselves run in its place.
 */
export async function deleteStaleUdp(
  conntrack: Conntrack,
  state: ProxyState,
  family: Family,
): Promise<{ stale: number; filters: number; deleted: number }> {
  const stale = new StaleFlows(udpTargets(state, family));
  if (stale.targets.frontends.size + stale.targets.nodePorts.size > 0)
    await conntrack.listUdp(family, (flow) => stale.add(flow), targetPorts(stale.targets));
  const { filters } = stale;
  const deleted = await conntrack.deleteUdp(family, filters);
  return { stale: stale.flows, filters: filters.length, deleted };
}
