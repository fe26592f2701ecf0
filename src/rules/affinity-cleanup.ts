import { ipFamily } from '../model/ip.js';
import { compareStrings } from '../sorted-index.js';
import type { Element, NftFamily } from './nft/types.js';
import { fragmentOf, keyText, type Fragment, type Ruleset, type StickyFrontend } from './ruleset.js';

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

/** The endpoints each sticky frontend of a fragment picks from, by frontend `ip . port`. */
function stickyOf(f: Fragment | undefined): Map<string, StickyFrontend> {
  return new Map((f?.sticky ?? []).map((s) => [s.frontend, s]));
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
    const had = stickyOf(before);
    const has = stickyOf(after);
    for (const [frontend, s] of had) {
      const now = new Set(has.get(frontend)?.endpoints ?? []);
      const gone = new Set(s.endpoints.filter((ep) => !now.has(ep)));
      if (gone.size > 0) out.push({ family: s.family, table: s.table, proto: s.proto, frontend, gone });
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
    for (const s of f.sticky ?? []) {
      const id = `${s.family} ${s.table} ${s.proto}`;
      let group = groups.get(id);
      if (!group)
        groups.set(id, (group = { family: s.family, table: s.table, proto: s.proto, endpoints: new Map() }));
      group.endpoints.set(s.frontend, new Set(s.endpoints));
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
