import type { Logger } from '../log.js';
import {
  mapsOf,
  restoredEntries,
  staleAffinity,
  staleEntries,
  stickyFrontends,
  type StaleAffinity,
} from './affinity-cleanup.js';
import type { Nft } from './nft/exec.js';
import { Transaction } from './nft/transaction.js';
import type { Element, NftFamily, Table } from './nft/types.js';
import type { RulesetDelta } from './compile.js';
import { sortedFind } from '../util/sorted-index.js';
import {
  allElements,
  chainId,
  fragmentOf,
  keyText,
  setId,
  valueText,
  type AffinityStore,
  type Fragment,
  type Ruleset,
} from './ruleset.js';

/**
 * Everything in `rs`, from nothing: what a full sync sends after wiping our tables. With
 * `replace`, each table is first destroyed in the same transaction, so a restart or a
 * recovery replaces the old rules atomically: no packet ever sees a missing rule, and
 * conntrack keeps established flows on their endpoints (NftApplier puts the sticky clients'
 * affinity entries back in the same transaction).
 */
export function fullTransaction(rs: Ruleset, opts: { replace: boolean } = { replace: true }): Transaction {
  const tx = new Transaction();
  for (const t of rs.tables) {
    if (opts.replace) tx.destroy({ kind: 'table', family: t.family, table: t.table });
    tx.add(t);
  }
  // Declarations before references: nft resolves goto/@set while it reads.
  for (const c of rs.chains) tx.add(c.chain);
  for (const s of rs.sets) tx.add(s);
  for (const c of rs.chains) for (const r of c.rules) tx.add(r);
  for (const el of bySet(allElements(rs))) tx.add(el);
  return tx;
}

/**
 * Elements grouped by set, first-seen order kept: consecutive elements of one set share one
 * `add element` line (Transaction.toString), which nft parses far faster than many lines.
 */
function bySet(elements: Iterable<Element>): Element[] {
  const groups = new Map<string, Element[]>();
  for (const el of elements) {
    const id = setId(el.family, el.table, el.set);
    let g = groups.get(id);
    if (!g) groups.set(id, (g = []));
    g.push(el);
  }
  return [...groups.values()].flat();
}

const sameRules = (a: Ruleset['chains'][number], b: Ruleset['chains'][number]): boolean =>
  a.rules.length === b.rules.length &&
  a.rules.every((r, i) => r.rule === b.rules[i]!.rule && r.comment === b.rules[i]!.comment);

const setDefinition = (s: Ruleset['sets'][number]): string => JSON.stringify({ ...s, comment: undefined });

/**
 * Only what changed from `prev` to `next`: element adds and deletes, chains whose rules
 * changed flushed and refilled, new chains and sets added, stale ones deleted last (after
 * the elements that referenced them are gone, in the same transaction). With the compiler's
 * `delta` from `prev`, only the fragments and shared elements it names are read.
 */
export function partialTransaction(prev: Ruleset, next: Ruleset, delta?: RulesetDelta): Transaction {
  const known = delta?.base === prev ? delta : undefined;
  const tx = new Transaction();
  // The compiler hands over the very same static part when no chain or set changed.
  const same = prev.tables === next.tables && prev.chains === next.chains && prev.sets === next.sets;
  const statics = same ? undefined : diffStatic(prev, next, tx);
  const recreated = statics?.recreated ?? new Set<string>();

  // A recreated set lost its elements: every element of it goes back, so no shortcut then.
  const shortcut = known && recreated.size === 0 ? known : undefined;
  for (const [id, nextEls] of next.elements) {
    const prevEls = recreated.has(id) ? undefined : prev.elements.get(id);
    if (shortcut && prevEls === nextEls) continue;
    diffShared(prevEls, nextEls, shortcut?.shared.get(id), tx);
  }
  for (const [id, prevEls] of prev.elements) {
    if (next.elements.has(id) || statics?.gone(id)) continue;
    for (const el of prevEls) tx.delete(el);
  }
  diffFragments(prev, next, recreated, tx, shortcut?.fragments, statics?.gone);
  statics?.finish();
  return tx;
}

/**
 * Tables, chains and sets: new ones added, changed chains flushed, changed sets recreated, now;
 * `finish()` refills the chains and deletes what is gone, after the elements' operations.
 */
function diffStatic(
  prev: Ruleset,
  next: Ruleset,
  tx: Transaction,
): { recreated: Set<string>; gone: (setId: string) => boolean; finish: () => void } {
  const tableId = (t: Table): string => `${t.family} ${t.table}`;
  const prevTables = new Set(prev.tables.map(tableId));
  for (const t of next.tables) if (!prevTables.has(tableId(t))) tx.add(t);

  const idOf = (c: Ruleset['chains'][number]): string => chainId(c.chain.family, c.chain.table, c.chain.name);
  const prevChains = new Map(prev.chains.map((c) => [idOf(c), c]));
  const nextChains = new Map(next.chains.map((c) => [idOf(c), c]));
  const refill: Ruleset['chains'] = [];
  for (const [id, c] of nextChains) {
    const old = prevChains.get(id);
    if (!old) {
      tx.add(c.chain);
      refill.push(c);
    } else if (!sameRules(old, c)) {
      tx.flush(c.chain);
      refill.push(c);
    }
  }
  const prevSets = new Map(prev.sets.map((s) => [setId(s.family, s.table, s.name), s]));
  const nextSets = new Map(next.sets.map((s) => [setId(s.family, s.table, s.name), s]));
  const recreated = new Set<string>();
  for (const [id, s] of nextSets) {
    const old = prevSets.get(id);
    if (old && setDefinition(old) !== setDefinition(s)) {
      tx.delete(old);
      recreated.add(id);
    }
    if (!old || recreated.has(id)) tx.add(s);
  }
  return {
    recreated,
    // Elements of a set that is deleted go with it.
    gone: (id) => !nextSets.has(id),
    finish: () => {
      for (const c of refill) for (const r of c.rules) tx.add(r);
      for (const [id, c] of prevChains) {
        if (nextChains.has(id)) continue;
        tx.flush(c.chain);
        tx.delete(c.chain);
      }
      for (const [id, s] of prevSets) if (!nextSets.has(id)) tx.delete(s);
      const nextTables = new Set(next.tables.map(tableId));
      for (const t of prev.tables) if (!nextTables.has(tableId(t))) tx.delete(t);
    },
  };
}

/**
 * One shared set's element operations; with `keys` (from a delta), only those keys are read.
 * A map element's value cannot be changed in place (the kernel says EBUSY): delete, then add.
 */
function diffShared(
  prevEls: readonly Element[] | undefined,
  nextEls: readonly Element[],
  keys: ReadonlySet<string> | undefined,
  tx: Transaction,
): void {
  const changed = (a: Element | undefined, b: Element | undefined): boolean =>
    !a || !b || valueText(a) !== valueText(b);
  if (keys) {
    const sorted = [...keys].sort();
    const find = (list: readonly Element[] | undefined, key: string): Element | undefined =>
      list && sortedFind(list, key, keyText);
    for (const key of sorted) {
      const before = find(prevEls, key);
      if (before && changed(before, find(nextEls, key))) tx.delete(before);
    }
    for (const key of sorted) {
      const now = find(nextEls, key);
      if (now && changed(find(prevEls, key), now)) tx.add(now);
    }
    return;
  }
  const byKey = (list: readonly Element[]): Map<string, Element> =>
    new Map(list.map((el) => [keyText(el), el]));
  const prevMap = prevEls && byKey(prevEls);
  const nextMap = byKey(nextEls);
  if (prevMap) for (const [key, el] of prevMap) if (changed(el, nextMap.get(key))) tx.delete(el);
  for (const [key, el] of nextMap) if (changed(prevMap?.get(key), el)) tx.add(el);
}

const elementId = (el: Element): string => `${setId(el.family, el.table, el.set)} ${keyText(el)}`;

/** Port key → its fragment in prev and in next, in key order: the keys of `only`, or all. */
function pairs(
  prev: Ruleset,
  next: Ruleset,
  only: ReadonlySet<string> | undefined,
): Array<[Fragment | undefined, Fragment | undefined]> {
  if (only) return [...only].sort().map((key) => [fragmentOf(prev, key), fragmentOf(next, key)]);
  // Both sorted by key: one merge walk.
  const out: Array<[Fragment | undefined, Fragment | undefined]> = [];
  const a = prev.fragments;
  const b = next.fragments;
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    const ka = a[i]?.key;
    const kb = b[j]?.key;
    if (kb === undefined || (ka !== undefined && ka < kb)) out.push([a[i++], undefined]);
    else if (ka === undefined || kb < ka) out.push([undefined, b[j++]]);
    else out.push([a[i++], b[j++]]);
  }
  return out;
}

/**
 * Element operations between the service ports' fragments: a fragment that is the same object
 * in both is skipped unread, so one changed Service costs its own elements only. With a delta
 * (`only`), only its keys are looked at. All deletes come before all adds, so an element that
 * moves between two ports is never in the way. Elements of a set that is deleted (`deleted`:
 * a service port's own Maglev map) go with it, unnamed.
 */
function diffFragments(
  prev: Ruleset,
  next: Ruleset,
  recreated: Set<string>,
  tx: Transaction,
  only?: ReadonlySet<string>,
  deleted?: (setId: string) => boolean,
): void {
  const deletes: Element[] = [];
  const adds: Element[] = [];
  const index = (f: Fragment | undefined): Map<string, Element> => {
    const m = new Map<string, Element>();
    for (const el of f?.elements ?? []) m.set(elementId(el), el);
    return m;
  };
  const gone = (el: Element): boolean => recreated.has(setId(el.family, el.table, el.set));
  const both = pairs(prev, next, only);
  for (const [before, after] of both) {
    if (!before || after === before) continue;
    const now = index(after);
    for (const el of before.elements) {
      if (gone(el) || deleted?.(setId(el.family, el.table, el.set))) continue;
      const same = now.get(elementId(el));
      if (!same || valueText(same) !== valueText(el)) deletes.push(el);
    }
  }
  for (const [before, after] of both) {
    if (!after) continue;
    if (before === after) {
      // Unchanged, but its set was recreated empty: everything goes back in.
      if (recreated.size > 0) for (const el of after.elements) if (gone(el)) adds.push(el);
      continue;
    }
    const had = index(before);
    for (const el of after.elements) {
      const old = had.get(elementId(el));
      if (!old || gone(el) || valueText(old) !== valueText(el)) adds.push(el);
    }
  }
  for (const el of bySet(deletes)) tx.delete(el);
  for (const el of bySet(adds)) tx.add(el);
}

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
 * state is then unknown to us, though nft's transaction left it as it was).
 */
export class NftApplier {
  readonly #nft: Nft;
  readonly #log: Logger;
  #applied: Ruleset | undefined;
  #lastText = '';

  /** Foreign tables every full sync destroys in the same transaction (kube-proxy's: a takeover). */
  readonly #takeOver: readonly Table[];

  constructor(opts: { nft: Nft; log: Logger; takeOver?: readonly Table[] }) {
    this.#nft = opts.nft;
    this.#log = opts.log;
    this.#takeOver = opts.takeOver ?? [];
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
    const full = opts.full === true || this.#applied === undefined;
    const delta = opts.delta?.base === this.#applied ? opts.delta : undefined;
    const tx = full ? fullTransaction(desired) : partialTransaction(this.#applied!, desired, delta);
    // kube-proxy's tables go in the transaction that brings ours: a live node switches over
    // without a moment where both, or neither, DNAT (conntrack keeps established flows).
    if (full) for (const t of this.#takeOver) tx.destroy(t);
    if (full) await this.#keepAffinity(desired, tx);
    else await this.#forgetStaleAffinity(this.#applied!, desired, tx, delta);
    if (tx.size === 0) return { full, operations: 0 };
    this.#lastText =
      tx.size <= KEPT_TRANSACTION_OPERATIONS
        ? tx.toString()
        : `# a transaction of ${tx.size} operations (not kept)\n`;
    try {
      await this.#nft.run(tx);
    } catch (err) {
      this.#applied = undefined;
      throw err;
    }
    this.#applied = desired;
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

/** The whole ruleset in `nft -f` syntax, as /debug/rules and --dry-run show it. */
export function renderRuleset(rs: Ruleset): string {
  return fullTransaction(rs, { replace: false }).toString();
}
