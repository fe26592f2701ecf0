import { ipFamily } from '../model/ip.js';
import { compareStrings } from '../sorted-index.js';
import type { Element, NftFamily } from './nft/types.js';
import { fragmentOf, keyText, valueText, type Ruleset } from './ruleset.js';

/**
 * Session affinity lives in maps the kernel fills (affinity-<proto>: frontend . client →
 * endpoint). When an endpoint leaves a sticky frontend, its clients' entries must go, or they
 * would keep sending new connections to it until the timeout (kube-proxy deletes that
 * endpoint's affinity set). A full sync recreates the maps empty: the entries that still hold
 * go back in. These pure helpers say which entries; the applier reads the map.
 */

type Protocol = 'tcp' | 'udp' | 'sctp';

/** A sticky frontend that lost endpoints, per family and protocol. */
export interface StaleAffinity {
  family: NftFamily;
  table: string;
  proto: Protocol;
  /** `ip . port` of the frontend. */
  frontend: string;
  /** `ip . port` of every endpoint it no longer has. */
  gone: Set<string>;
}

/**
 * The `ip . port` of a backends element (key `ip . proto . port . slot`): its first and third
 * fields, cut out of the key text without splitting it.
 */
function frontendOf(el: Element): string {
  const { key } = el;
  const proto = key.indexOf(' . ');
  const port = key.indexOf(' . ', proto + 3);
  return key.slice(0, proto) + key.slice(port, key.indexOf(' . ', port + 3));
}

/** A port's sticky frontends: `ip . port` → its element of affinity-frontends-<proto>. */
function stickyOf(elements: readonly Element[]): Map<string, Element> {
  const sticky = new Map<string, Element>();
  for (const el of elements) if (el.set.startsWith('affinity-frontends-')) sticky.set(keyText(el), el);
  return sticky;
}

/** The endpoints (`ip . port`) each of `sticky`'s frontends picks from, in a port's elements. */
function endpointsOf(
  elements: readonly Element[],
  sticky: ReadonlyMap<string, Element>,
): Map<string, Set<string>> {
  const byFrontend = new Map<string, Set<string>>();
  for (const el of elements) {
    if (!el.set.startsWith('backends-') && !el.set.startsWith('cluster-backends-')) continue;
    const fe = frontendOf(el);
    if (!sticky.has(fe)) continue;
    const set = byFrontend.get(fe) ?? new Set<string>();
    set.add(valueText(el));
    byFrontend.set(fe, set);
  }
  return byFrontend;
}

/**
 * Sticky frontends of `prev` whose backends in `next` lack some endpoint they had. Only the
 * fragments that were replaced are read: an unchanged port cannot have lost an endpoint.
 * `only`: the port keys that can differ (the compiler's delta), when known.
 */
export function staleAffinity(prev: Ruleset, next: Ruleset, only?: ReadonlySet<string>): StaleAffinity[] {
  const out: StaleAffinity[] = [];
  const keys = only ? [...only].sort() : prev.fragments.map((f) => f.key);
  for (const key of keys) {
    const before = fragmentOf(prev, key);
    const after = fragmentOf(next, key);
    if (!before || after === before) continue;
    const sticky = stickyOf(before.elements);
    if (sticky.size === 0) continue;
    const had = endpointsOf(before.elements, sticky);
    const has = endpointsOf(after?.elements ?? [], sticky);
    for (const [frontend, eps] of had) {
      const now = has.get(frontend) ?? new Set<string>();
      const gone = new Set([...eps].filter((ep) => !now.has(ep)));
      const el = sticky.get(frontend)!;
      const proto = el.set.slice('affinity-frontends-'.length) as StaleAffinity['proto'];
      if (gone.size > 0) out.push({ family: el.family, table: el.table, proto, frontend, gone });
    }
  }
  return out;
}

interface JsonElem {
  elem?: { val?: { concat?: unknown[] }; timeout?: unknown; expires?: unknown };
}

/** One entry of an affinity map: frontend ip, port and client; endpoint ip and port. */
interface AffinityEntry {
  key: string[];
  value: string[];
  /** Seconds, as nft's JSON has them (whole seconds, rounded down); absent: the map's. */
  timeout?: number;
  expires?: number;
}

/** The entries of `nft -j list map` of affinity-<proto>, and the map's own timeout. */
function affinityEntries(json: string): { timeout?: number; entries: AffinityEntry[] } {
  if (json.trim() === '') return { entries: [] };
  const doc = JSON.parse(json) as {
    nftables?: Array<{ map?: { timeout?: unknown; elem?: Array<[JsonElem, { concat?: unknown[] }]> } }>;
  };
  const map = doc.nftables?.find((o) => o.map)?.map;
  const secs = (n: unknown): number | undefined =>
    Number.isInteger(n) && (n as number) >= 0 ? (n as number) : undefined;
  const entries: AffinityEntry[] = [];
  for (const [k, v] of map?.elem ?? []) {
    const key = (k?.elem?.val?.concat ?? []).map(String);
    const value = (v?.concat ?? []).map(String);
    if (key.length !== 3 || value.length !== 2) continue;
    const timeout = secs(k.elem?.timeout);
    const expires = secs(k.elem?.expires);
    entries.push({
      key,
      value,
      ...(timeout === undefined ? {} : { timeout }),
      ...(expires === undefined ? {} : { expires }),
    });
  }
  const timeout = secs(map?.timeout);
  return { ...(timeout === undefined ? {} : { timeout }), entries };
}

/**
 * The affinity entries to delete, from `nft -j list map` of affinity-<proto>. Each is deleted
 * with `add` (a no-op when it is still there, a re-creation when it just expired) then
 * `delete`, so the transaction cannot fail on an entry the kernel timed out meanwhile.
 */
export function staleEntries(stale: StaleAffinity[], json: string): Element[] {
  if (stale.length === 0) return [];
  const first = stale[0]!;
  const out: Element[] = [];
  for (const { key, value } of affinityEntries(json).entries) {
    const frontend = `${key[0]} . ${key[1]}`;
    const endpoint = value.join(' . ');
    if (!stale.some((s) => s.frontend === frontend && s.gone.has(endpoint))) continue;
    out.push({
      kind: 'element',
      family: first.family,
      table: first.table,
      set: `affinity-${first.proto}`,
      key: key.join(' . '),
      value: endpoint,
    });
  }
  return out;
}

/** The sticky frontends of a ruleset that share one affinity map, with their endpoints. */
export interface StickyFrontends {
  family: NftFamily;
  table: string;
  proto: Protocol;
  /** Frontend `ip . port` → the endpoints (`ip . port`) it picks from. */
  endpoints: Map<string, Set<string>>;
}

/** Every sticky frontend of `rs`, grouped by affinity map, in family, table, protocol order. */
export function stickyFrontends(rs: Ruleset): StickyFrontends[] {
  const groups = new Map<string, StickyFrontends>();
  for (const f of rs.fragments) {
    const sticky = stickyOf(f.elements);
    if (sticky.size === 0) continue;
    for (const [frontend, eps] of endpointsOf(f.elements, sticky)) {
      const el = sticky.get(frontend)!;
      const proto = el.set.slice('affinity-frontends-'.length) as Protocol;
      const id = `${el.family} ${el.table} ${proto}`;
      let group = groups.get(id);
      if (!group)
        groups.set(id, (group = { family: el.family, table: el.table, proto, endpoints: new Map() }));
      group.endpoints.set(frontend, eps);
    }
  }
  return [...groups.keys()].sort(compareStrings).map((id) => groups.get(id)!);
}

/**
 * The entries of `json` (`nft -j list map` of the group's affinity map) that a full sync puts
 * back into the recreated map: those of a frontend still sticky, to one of its endpoints, each
 * with the time it had left (a client does not get a fresh timeout). An entry with less than a
 * second left is dropped: nft reads `expires 0s` as not given, which would renew it. One that
 * expires between the listing and the commit lives on by that much; its add cannot collide, as
 * the map it goes into is new.
 */
export function restoredEntries(group: StickyFrontends, json: string): Element[] {
  const { family, table, proto } = group;
  const listing = affinityEntries(json);
  const out: Element[] = [];
  for (const { key, value, timeout, expires } of listing.entries) {
    const endpoint = value.join(' . ');
    const eps = group.endpoints.get(`${key[0]} . ${key[1]}`);
    if (!eps?.has(endpoint)) continue;
    // The client's address is the kernel's text: it must be an address of the map's family.
    if (ipFamily(key[2]!) !== ipFamily(key[0]!)) continue;
    // Given both, the kernel refuses an expiry beyond the timeout ("Numerical result out of range").
    const limit = timeout ?? listing.timeout ?? expires;
    if (expires === undefined || limit === undefined || Math.min(expires, limit) < 1) continue;
    out.push({
      kind: 'element',
      family,
      table,
      set: `affinity-${proto}`,
      key: key.join(' . '),
      value: endpoint,
      timeout: `${limit}s`,
      expires: `${Math.min(expires, limit)}s`,
    });
  }
  return out.sort((a, b) => compareStrings(keyText(a), keyText(b)));
}
