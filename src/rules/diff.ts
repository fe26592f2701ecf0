import { Transaction } from './nft/transaction.js';
import type { Element, Table } from './nft/types.js';
import type { RulesetDelta } from './compile.js';
import { sortedFind } from '../util/sorted-index.js';
import { planCapacity, type CapacityOptions, type SetCapacity } from './set-capacity.js';
import {
  allElements,
  chainId,
  fragmentOf,
  keyText,
  setId,
  valueText,
  type Fragment,
  type Ruleset,
} from './ruleset.js';

/**
 * Everything in `rs`, from nothing: what a full sync sends after wiping our tables. With
 * `replace`, each table is first destroyed in the same transaction, so a restart or a
 * recovery replaces the old rules atomically: no packet ever sees a missing rule, and
 * conntrack keeps established flows on their endpoints (NftApplier puts the sticky clients'
 * affinity entries back in the same transaction). Large sets are created at the size their
 * elements call for (set-capacity.ts, with `capacity`'s options).
 */
export function fullTransaction(
  rs: Ruleset,
  opts: { replace: boolean; capacity?: CapacityOptions } = { replace: true },
): Transaction {
  return plannedFullTransaction(rs, opts).tx;
}

/** fullTransaction, with the sizes it gave the sets (what NftApplier's ledger starts from). */
export function plannedFullTransaction(
  rs: Ruleset,
  opts: { replace: boolean; capacity?: CapacityOptions },
): { tx: Transaction; plan: Map<string, SetCapacity> } {
  const groups = groupBySet(allElements(rs));
  const plan = planCapacity(rs, groups, opts.capacity);
  const tx = new Transaction();
  for (const t of rs.tables) {
    if (opts.replace) tx.destroy({ kind: 'table', family: t.family, table: t.table });
    tx.add(t);
  }
  // Declarations before references: nft resolves goto/@set while it reads.
  for (const c of rs.chains) tx.add(c.chain);
  for (const s of rs.sets) {
    const size = plan.get(setId(s.family, s.table, s.name))?.size;
    tx.add(size === undefined ? s : { ...s, size });
  }
  for (const c of rs.chains) for (const r of c.rules) tx.add(r);
  for (const group of groups) for (const el of group) tx.add(el);
  return { tx, plan };
}

/**
 * Elements grouped by set, first-seen order kept: consecutive elements of one set share one
 * `add element` line (Transaction.toString), which nft parses far faster than many lines.
 */
function bySet(elements: Iterable<Element>): Element[] {
  return groupBySet(elements).flat();
}

/** The elements of each set, one list per set, in the order the sets are first seen. */
function groupBySet(elements: Iterable<Element>): Element[][] {
  // By set, table and family in nested maps: the compiler's own name strings are the keys, where
  // a setId per element made (and hashed) 170,000 new strings at 10,000 Services.
  const groups = new Map<string, Map<string, Map<string, Element[]>>>();
  const inOrder: Element[][] = [];
  for (const el of elements) {
    let byTable = groups.get(el.set);
    if (!byTable) groups.set(el.set, (byTable = new Map()));
    let byFamily = byTable.get(el.table);
    if (!byFamily) byTable.set(el.table, (byFamily = new Map()));
    let g = byFamily.get(el.family);
    if (!g) {
      byFamily.set(el.family, (g = []));
      inOrder.push(g);
    }
    g.push(el);
  }
  return inOrder;
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

/** The whole ruleset in `nft -f` syntax, as /debug/rules and --dry-run show it. */
export function renderRuleset(rs: Ruleset): string {
  return fullTransaction(rs, { replace: false }).toString();
}
