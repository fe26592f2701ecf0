import type { Logger } from '../log.js';
import {
  mapsOf,
  restoredEntries,
  staleAffinity,
  staleEntries,
  stickyFrontends,
  type StaleAffinity,
} from './affinity-cleanup.js';
import type { RulesetDelta } from './compile.js';
import { partialTransaction, plannedFullTransaction } from './diff.js';
import type { Nft } from './nft/exec.js';
import { Transaction } from './nft/transaction.js';
import type { Element, NftFamily, Table } from './nft/types.js';
import type { AffinityStore, Ruleset } from './ruleset.js';
import { CapacityLedger, DEFAULT_CAPACITY, type CapacityOptions } from './set-capacity.js';
import { isSetFull } from '../errors.js';

/** The largest transaction whose text `NftApplier.lastTransaction` keeps. */
export const KEPT_TRANSACTION_OPERATIONS = 10_000;

export interface SyncResult {
  full: boolean;
  /** Operations sent (0: nothing changed, nothing run). */
  operations: number;
}

/**
 * The only code that changes the kernel. Keeps the ruleset it last applied; a sync sends
 * the difference, or everything when asked, at start, or after any failure (the kernel
 * state is then unknown to us, though nft's transaction left it as it was), or when the
 * difference would take a set past the size the last full sync gave it (set-capacity.ts).
 */
export class NftApplier {
  readonly #nft: Nft;
  readonly #log: Logger;
  #applied: Ruleset | undefined;
  #lastText = '';
  readonly #capacityOpts: CapacityOptions;
  /** What the kernel's sized sets hold (set-capacity.ts). */
  readonly #capacity = new CapacityLedger();

  /** Foreign tables every full sync destroys in the same transaction (kube-proxy's: a takeover). */
  readonly #takeOver: readonly Table[];

  constructor(opts: { nft: Nft; log: Logger; takeOver?: readonly Table[]; capacity?: CapacityOptions }) {
    this.#nft = opts.nft;
    this.#log = opts.log;
    this.#takeOver = opts.takeOver ?? [];
    this.#capacityOpts = opts.capacity ?? DEFAULT_CAPACITY;
  }

  /** The ruleset as last applied, or undefined before the first success. */
  get applied(): Ruleset | undefined {
    return this.#applied;
  }

  /**
   * The text of the last transaction sent (successful or not), for tests and debugging. Only
   * transactions up to KEPT_TRANSACTION_OPERATIONS are kept whole: a full sync's text is 6 MB
   * at 10,000 Services, held until the next sync for nobody.
   */
  get lastTransaction(): string {
    return this.#lastText;
  }

  /**
   * Makes the kernel hold `desired`. `delta` (the compiler's, when it compiled incrementally)
   * is used if it starts from what was applied last: the diff then reads only what it names
   * (the identity contract: StateDelta, src/model/state-builder.ts).
   */
  async sync(desired: Ruleset, opts: { full?: boolean; delta?: RulesetDelta } = {}): Promise<SyncResult> {
    if (opts.full !== true && this.#applied !== undefined) {
      const delta = opts.delta?.base === this.#applied ? opts.delta : undefined;
      const tx = partialTransaction(this.#applied, desired, delta);
      const capacity = this.#capacity.check(tx);
      const { overflows } = capacity;
      if (overflows.length === 0) {
        try {
          return await this.#run(
            desired,
            tx,
            false,
            async () => this.#forgetStaleAffinity(this.#applied!, desired, tx, delta),
            capacity.commit,
          );
        } catch (err) {
          // Our count of a set's elements was short: nothing is wrong with any Service.
          if (!isSetFull(err)) throw err;
          this.#log.warn({ err }, 'a set was full: full sync');
        }
      } else {
        // The kernel would refuse the elements past a set's size: a full sync sizes it afresh.
        this.#log.info({ overflows }, 'a set outgrew its size: full sync');
      }
    }
    const { tx, plan } = plannedFullTransaction(desired, { replace: true, capacity: this.#capacityOpts });
    // kube-proxy's tables go in the transaction that brings ours: a live node switches over
    // without a moment where both, or neither, DNAT (conntrack keeps established flows).
    for (const t of this.#takeOver) tx.destroy(t);
    return this.#run(
      desired,
      tx,
      true,
      async () => this.#keepAffinity(desired, tx),
      () => this.#capacity.reset(plan),
    );
  }

  /**
   * Completes `tx` (`more`: the affinity entries it keeps or forgets), runs it and makes
   * `tx`'s ruleset the applied one, and `booked` what it did to the sized sets; any failure
   * leaves nothing known (the next sync is full).
   */
  async #run(
    desired: Ruleset,
    tx: Transaction,
    full: boolean,
    more: () => Promise<void>,
    booked: () => void,
  ): Promise<SyncResult> {
    await more();
    if (tx.size === 0) return { full, operations: 0 };
    this.#lastText =
      tx.size <= KEPT_TRANSACTION_OPERATIONS
        ? tx.toString()
        : `# a transaction of ${tx.size} operations (not kept)\n`;
    try {
      await this.#nft.run(tx);
    } catch (err) {
      this.#applied = undefined;
      this.#capacity.clear();
      throw err;
    }
    this.#applied = desired;
    booked();
    this.#log.debug({ full, operations: tx.size }, 'nft transaction applied');
    return { full, operations: tx.size };
  }

  /** The listings (`nft -j list map`) of a store's maps, by map name. */
  async #listings(family: NftFamily, table: string, store: AffinityStore): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    for (const map of mapsOf(store)) out.set(map, await this.#nft.listMapJson(family, table, map));
    return out;
  }

  /** Clients stuck to endpoints that are gone lose their affinity entry, in the same transaction. */
  async #forgetStaleAffinity(
    prev: Ruleset,
    next: Ruleset,
    tx: Transaction,
    delta: RulesetDelta | undefined,
  ): Promise<void> {
    const stale = staleAffinity(prev, next, delta?.fragments);
    const groups = new Map<string, StaleAffinity[]>();
    for (const s of stale) {
      const id = `${s.family} ${s.table} ${s.store.map}`;
      const group = groups.get(id);
      if (group) group.push(s);
      else groups.set(id, [s]);
    }
    for (const group of groups.values()) {
      const { family, table, proto, store } = group[0]!;
      const entries = staleEntries(group, await this.#listings(family, table, store));
      for (const el of entries) tx.add(el).delete(el);
      if (entries.length)
        this.#log.info(
          { family, proto, map: store.map, entries: entries.length },
          'forgot affinity to removed endpoints',
        );
    }
  }

  /**
   * A full sync recreates the affinity maps empty, which kube-proxy never does to its sticky
   * clients: the entries that still hold go back in, in the same transaction, after the maps.
   * A map that cannot be read (none yet, at first start) keeps nothing; the sync goes on.
   */
  async #keepAffinity(desired: Ruleset, tx: Transaction): Promise<void> {
    for (const group of stickyFrontends(desired)) {
      const { family, table, proto, store } = group;
      let entries: Element[];
      try {
        entries = restoredEntries(group, await this.#listings(family, table, store));
      } catch (err) {
        this.#log.warn(
          { err, family, proto, map: store.map },
          'cannot read affinity map: its clients start afresh',
        );
        continue;
      }
      for (const el of entries) tx.add(el);
      if (entries.length)
        this.#log.info({ family, proto, map: store.map, entries: entries.length }, 'kept session affinity');
    }
  }

  /** Forget what was applied: the next sync is a full one. */
  invalidate(): void {
    this.#applied = undefined;
  }
}

/** Delete our tables and `also` (kube-proxy's, for --cleanup), nothing else; missing tables are fine. */
export async function cleanupTables(nft: Nft, table: string, also: readonly Table[] = []): Promise<void> {
  const tx = new Transaction();
  for (const family of ['ip', 'ip6'] as NftFamily[])
    tx.destroy({ kind: 'table', family, table } satisfies Table);
  for (const t of also) tx.destroy(t);
  await nft.run(tx);
}
