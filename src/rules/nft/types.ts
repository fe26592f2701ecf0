/**
 * nftables objects as plain data, after knftables' types.go. Each object renders to exactly
 * one `nft -f` line (render.ts), so a Transaction's text is exactly what nft reads.
 * Every object names its own family and table: one transaction may span `ip` and `ip6`.
 */

export type NftFamily = 'ip' | 'ip6' | 'inet';

interface Base {
  family: NftFamily;
  table: string;
}

export interface Table extends Base {
  kind: 'table';
  comment?: string;
}

export type Hook = 'prerouting' | 'input' | 'forward' | 'output' | 'postrouting';

export interface Chain extends Base {
  kind: 'chain';
  name: string;
  /** Base chains only: all three of type, hook and priority. */
  type?: 'filter' | 'nat' | 'route';
  hook?: Hook;
  /** A number or a standard name with offset: 'dstnat', 'srcnat', 'filter - 10'. */
  priority?: string | number;
  comment?: string;
}

export interface Rule extends Base {
  kind: 'rule';
  chain: string;
  /** The rule's statements, in nft syntax. References (`goto x`, `jump x`, `@set`) are checked by the Fake. */
  rule: string;
  comment?: string;
}

/** A set (no value) or a map (with `value`/`valueTypeof`). */
interface SetLike extends Base {
  name: string;
  /** `type` key spec, e.g. ['ipv4_addr', 'inet_proto', 'inet_service']; or use `typeof`. */
  type?: string[];
  /** `typeof` key spec, e.g. 'ip daddr . meta l4proto . th dport'. */
  typeof?: string;
  flags?: Array<'constant' | 'interval' | 'timeout' | 'dynamic'>;
  /** Default element timeout, e.g. '3h' or '10800s'. */
  timeout?: string;
  /**
   * Every element carries a packet and byte counter, bumped when a lookup matches it (nft's
   * `counter ;` in the set's body). It lives and dies with the element: deleting and re-adding
   * an element (a changed map value) starts it again from 0.
   */
  counter?: boolean;
  /**
   * The most elements it may hold (nft's `size`). The kernel also takes it as the hint that
   * sizes the hash table from the start, where an unsized set grows by rehashing while a full
   * sync inserts into it (set-capacity.ts); an insert past it fails ("Too many open files in
   * system", NFT_SET_FULL).
   */
  size?: number;
  comment?: string;
}

export interface NftSet extends SetLike {
  kind: 'set';
}

export interface NftMap extends SetLike {
  kind: 'map';
  /** Value type, e.g. 'verdict' or ['ipv4_addr', 'inet_service']. */
  valueType?: string[];
  /** Value typeof, e.g. 'ip daddr . th dport'. */
  valueTypeof?: string;
}

export interface Element extends Base {
  kind: 'element';
  /** The set or map the element belongs to. */
  set: string;
  /**
   * The key as nft reads it, fields joined with ' . ': '10.96.0.1 . tcp . 80'. One string
   * rather than an array of fields: a ruleset holds 100,000s of elements, and an array of four
   * short strings costs more heap than the text itself.
   */
  key: string;
  /** The map value as nft reads it: '10.1.0.1 . 8080', or a verdict such as 'goto x'; absent for sets. */
  value?: string;
  /** Sets and maps with flags timeout only: this element's timeout, e.g. '600s' (the set's otherwise). */
  timeout?: string;
  /** Sets and maps with flags timeout only: the time it has left, at most its timeout, e.g. '420s'. */
  expires?: string;
  comment?: string;
}

export type NftObject = Table | Chain | Rule | NftSet | NftMap | Element;

export type Verb = 'add' | 'create' | 'flush' | 'delete' | 'destroy';

export interface Operation {
  verb: Verb;
  object: NftObject;
}
