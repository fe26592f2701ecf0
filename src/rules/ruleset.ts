import type { Skipped } from '../model/types.js';
import type { NftProtocol } from '../model/protocol.js';
import { sortedFind } from '../util/sorted-index.js';
import type { Chain, Element, NftFamily, NftMap, NftSet, Rule, Table } from './nft/types.js';

/**
 * The desired nftables state as data: what compile() returns and what the applier diffs.
 * `static` objects (tables, chains with their rules, sets and maps) change rarely; elements
 * carry the services and change with them.
 */
export interface Ruleset {
  tables: Table[];
  /** Chains with their rules, in creation order. */
  chains: Array<{ chain: Chain; rules: Rule[] }>;
  sets: Array<NftSet | NftMap>;
  /**
   * Elements shared by many service ports (hairpin), by set id (`family table set`), each list
   * sorted by key text.
   */
  elements: Map<string, readonly Element[]>;
  /**
   * Each service port's own elements, sorted by port key. A fragment object that is the same
   * in two rulesets has the same elements: the applier diffs only fragments that were replaced.
   * Sorted arrays rather than maps: the next ruleset is a copy with a few splices, which at
   * 10,000 ports costs microseconds where copying a Map costs milliseconds.
   */
  fragments: readonly Fragment[];
  /**
   * Services the compiler left out, with the reason (over --max-service-elements), sorted by
   * name: the caller lists them with the model's skipped objects.
   */
  skipped: Skipped[];
}

/** The elements one service port contributes. */
export interface Fragment {
  /** The service port's key. */
  readonly key: string;
  readonly elements: readonly Element[];
  /** Its frontends with session affinity, and what they pick from (affinity-cleanup.ts). */
  readonly sticky?: readonly StickyFrontend[];
}

/** A frontend with sessionAffinity ClientIP, where its clients are recorded, and what it picks from. */
export interface StickyFrontend {
  readonly family: NftFamily;
  readonly table: string;
  readonly proto: NftProtocol;
  readonly store: AffinityStore;
  /** `ip . port` of every endpoint it picks from (both lists of an eTP Local frontend), sorted. */
  readonly endpoints: readonly string[];
}

/** The maps the kernel fills with a sticky frontend's clients. */
export type AffinityStore =
  /** IPv4: affinity-<proto>, shared by all: frontend `ip . port` . client → endpoint `ip . port`. */
  | { readonly map: string; readonly frontend: string }
  /**
   * IPv6: the frontend group's own maps, client → endpoint address (`map`) and client →
   * endpoint port (`portMap`): nft 1.0.6 cannot update an IPv6 map with concatenations.
   */
  | { readonly map: string; readonly portMap: string };

const fragmentKey = (f: Fragment): string => f.key;

/** The fragment of port `key`, if the ruleset has one. */
export const fragmentOf = (rs: Ruleset, key: string): Fragment | undefined =>
  sortedFind(rs.fragments, key, fragmentKey);

/** Every element of a ruleset: shared ones, then each fragment's. */
export function* allElements(rs: Ruleset): Generator<Element> {
  for (const list of rs.elements.values()) yield* list;
  for (const f of rs.fragments) yield* f.elements;
}

export const setId = (family: NftFamily, table: string, set: string): string => `${family} ${table} ${set}`;
export const chainId = (family: NftFamily, table: string, chain: string): string =>
  `${family} ${table} ${chain}`;
/** An element's key and value as nft prints them: the identity and content the diffs compare. */
export { renderKey as keyText, renderValue as valueText } from './nft/render.js';

/** Count of objects, for logs and metrics. */
export function rulesetSize(rs: Ruleset): { chains: number; rules: number; sets: number; elements: number } {
  let rules = 0;
  for (const c of rs.chains) rules += c.rules.length;
  let elements = 0;
  for (const list of rs.elements.values()) elements += list.length;
  for (const f of rs.fragments) elements += f.elements.length;
  return { chains: rs.chains.length, rules, sets: rs.sets.length, elements };
}
