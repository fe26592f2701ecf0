import { sortedIndex } from '../util/sorted-index.js';
import type { Element, NftFamily } from './nft/types.js';

const keyOf = (el: Element): string => el.key;

/**
 * The hairpin set's elements (`ip . ip` for each local endpoint that can reach itself through
 * a Service), counted: one element however many service ports share the endpoint, gone when
 * the last one lets it go. Kept sorted as it changes (a binary search and a splice), and
 * handed out as a snapshot that later changes never touch.
 */
export class HairpinSet {
  readonly #family: NftFamily;
  readonly #table: string;
  readonly #counts = new Map<string, number>();
  /** Sorted by key text (the order of the addresses as strings). */
  readonly #elements: Element[] = [];
  #snapshot: readonly Element[] | undefined;

  constructor(family: NftFamily, table: string) {
    this.#family = family;
    this.#table = table;
  }

  /** Counts `ip` once more (+1) or once less (−1); returns its element key text if it came or went. */
  count(ip: string, by: 1 | -1): string | undefined {
    const n = (this.#counts.get(ip) ?? 0) + by;
    if (n > 0) this.#counts.set(ip, n);
    else this.#counts.delete(ip);
    const came = n === 1 && by === 1;
    if (!came && n !== 0) return undefined;
    // A join, not a template literal: one flat string rather than a V8 cons string.
    const key = [ip, ip].join(' . ');
    const at = sortedIndex(this.#elements, key, keyOf);
    if (came)
      this.#elements.splice(at, 0, {
        kind: 'element',
        family: this.#family,
        table: this.#table,
        set: 'hairpin',
        key,
      });
    else this.#elements.splice(at, 1);
    this.#snapshot = undefined;
    return key;
  }

  /** The elements, sorted; the same array until an address comes or goes. */
  elements(): readonly Element[] {
    return (this.#snapshot ??= this.#elements.slice());
  }
}
