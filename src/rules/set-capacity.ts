/**
 * Pre-sized hash sets. An nft set without a `size` starts as a hash table of 4 buckets, and a
 * full sync that inserts 680,000 elements into one (50,000 Services, the mix) makes the
 * kernel grow it by rehashing again and again while inserting: `rhashtable_insert_slow` took
 * about 10 % of nft's time at 50,000 Services, more per element than at 10,000. With a `size`
 * the kernel builds the table at its final size at once (and picks its fixed-size hash): the
 * full load of the 50,000-Service mix went from 10.4 s to 8.1 s, the 10,000 from 1.73 s to
 * 1.55 s (bench/scale.ts).
 *
 * The size is also a cap: an insert past it fails. So a full sync sizes each large set with
 * headroom over what it holds, partial syncs count what they add and delete, and a partial
 * sync that would overfill a set becomes a full sync, which sizes it afresh (CapacityLedger,
 * used by NftApplier). Sets the kernel fills itself (dynamic, timeout) and interval sets
 * (other backends, which take no hint) are never sized.
 */
import type { Transaction } from './nft/transaction.js';
import type { Element, NftMap, NftSet } from './nft/types.js';
import { setId, type Ruleset } from './ruleset.js';

export interface CapacityOptions {
  /** Sets holding fewer elements stay unsized: their growth costs nothing worth a cap. */
  from: number;
  /** Size = elements × headroom, rounded up to a multiple of `step`. */
  headroom: number;
  step: number;
}

export const DEFAULT_CAPACITY: CapacityOptions = { from: 4096, headroom: 1.5, step: 1024 };

/** A sized set: the size it was created with, and the elements it holds. */
export interface SetCapacity {
  size: number;
  elements: number;
}

/** Hash-backed sets that only we fill: the ones a size helps and a cap cannot surprise. */
export const sizable = (set: NftSet | NftMap): boolean =>
  !set.flags?.some((f) => f === 'interval' || f === 'dynamic' || f === 'timeout');

/** The size for a set of `elements`: headroom over them, so partial syncs rarely need a full one. */
export const capacityFor = (elements: number, opts: CapacityOptions = DEFAULT_CAPACITY): number =>
  Math.ceil((elements * opts.headroom) / opts.step) * opts.step;

/**
 * The sets of `rs` a full sync sizes, by set id, with their sizes and element counts; `groups`
 * holds every element of `rs`, one list per set (as the full transaction queues them).
 */
export function planCapacity(
  rs: Ruleset,
  groups: ReadonlyArray<readonly Element[]>,
  opts: CapacityOptions = DEFAULT_CAPACITY,
): Map<string, SetCapacity> {
  const wanted = new Set<string>();
  for (const s of rs.sets) if (sizable(s)) wanted.add(setId(s.family, s.table, s.name));
  const plan = new Map<string, SetCapacity>();
  for (const group of groups) {
    const first = group[0];
    if (!first || group.length < opts.from) continue;
    const id = setId(first.family, first.table, first.set);
    if (wanted.has(id)) plan.set(id, { size: capacityFor(group.length, opts), elements: group.length });
  }
  return plan;
}

/** A set a transaction would take past its size. */
export interface Overflow {
  set: string;
  size: number;
  elements: number;
}

/** What a partial transaction does to the sized sets, counted once: its overflows, and its booking. */
export interface CapacityCheck {
  /** The sets it would take past their size, with the elements they would hold; empty when it fits. */
  overflows: Overflow[];
  /** Books it, once nft applied it. */
  commit(): void;
}

/**
 * What the kernel's sized sets hold, kept across partial syncs: `check` says whether a partial
 * transaction keeps every one within its size, and books it once nft took it.
 */
export class CapacityLedger {
  #sets = new Map<string, SetCapacity>();

  /** After a full sync: exactly the sets it sized. */
  reset(plan: ReadonlyMap<string, SetCapacity>): void {
    this.#sets = new Map([...plan].map(([id, c]) => [id, { ...c }]));
  }

  /** Nothing is known (a failed sync): the next sync is a full one anyway. */
  clear(): void {
    this.#sets.clear();
  }

  check(tx: Transaction): CapacityCheck {
    const after = this.#count(tx);
    const overflows: Overflow[] = [];
    for (const [id, n] of after) {
      const c = this.#sets.get(id);
      if (c && n > c.size) overflows.push({ set: id, size: c.size, elements: n });
    }
    return {
      overflows,
      commit: () => {
        for (const [id, n] of after) {
          const c = this.#sets.get(id);
          if (c) c.elements = n;
        }
        // A set deleted (gone, or recreated with another definition) no longer has its size.
        for (const op of tx.operations) {
          const o = op.object;
          if ((o.kind === 'set' || o.kind === 'map') && op.verb === 'delete')
            this.#sets.delete(setId(o.family, o.table, o.name));
        }
      },
    };
  }

  /** A sized set's current size and count. */
  get(id: string): SetCapacity | undefined {
    return this.#sets.get(id);
  }

  /**
   * The element count of every sized set `tx` touches, after it. A changed map value is a
   * delete and an add of one key: the count stays. An add of an element already there does
   * not happen: the diff adds only what the kernel lacks.
   */
  #count(tx: Transaction): Map<string, number> {
    const after = new Map<string, number>();
    if (this.#sets.size === 0) return after;
    for (const op of tx.operations) {
      const o = op.object;
      if (o.kind !== 'element' || (op.verb !== 'add' && op.verb !== 'delete')) continue;
      const id = setId(o.family, o.table, o.set);
      const c = this.#sets.get(id);
      if (!c) continue;
      after.set(id, (after.get(id) ?? c.elements) + (op.verb === 'add' ? 1 : -1));
    }
    return after;
  }
}
