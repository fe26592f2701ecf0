import { ipFamily } from '../model/ip.js';
import type { NftProtocol } from '../model/protocol.js';
import { compareStrings } from '../util/sorted-index.js';
import type { Element, NftFamily } from './nft/types.js';
import { fragmentOf, keyText, type AffinityStore, type Ruleset, type StickyFrontend } from './ruleset.js';

/**
 * Session affinity lives in maps the kernel fills (IPv4: affinity-<proto>, frontend . client →
 * endpoint; IPv6: a frontend group's own maps, client → endpoint address and client → endpoint
 * port). When an endpoint leaves a sticky frontend, its clients' entries must go, or they would
 * keep sending new connections to it until the timeout (kube-proxy deletes that endpoint's
 * affinity set). A full sync recreates the maps empty: the entries that still hold go back in.
 * These pure helpers say which entries; the applier reads the maps that `mapsOf` names.
 */

/** A sticky frontend that lost endpoints. */
export interface StaleAffinity {
  family: NftFamily;
  table: string;
  proto: NftProtocol;
  store: AffinityStore;
  /** `ip . port` of every endpoint it no longer has. */
  gone: Set<string>;
}

/** The maps to read for a store: the one map (IPv4), or the address and port maps (IPv6). */
export const mapsOf = (store: AffinityStore): string[] =>
  'portMap' in store ? [store.map, store.portMap] : [store.map];

/** One sticky frontend's identity within its store: the frontend (IPv4), or none (IPv6's own maps). */
const frontendOf = (store: AffinityStore): string => ('frontend' in store ? store.frontend : '');
const stickyId = (s: StickyFrontend): string =>
  `${s.family} ${s.table} ${s.store.map} ${frontendOf(s.store)}`;

/**
 * Sticky frontends of `prev` whose endpoints in `next` lack some endpoint they had. Only the
 * fragments that were replaced are read: an unchanged port cannot have lost an endpoint.
 * `only`: the port keys that can differ (the compiler's delta), when known. A store whose map
 * `next` does not have (an IPv6 group's, gone with its port) goes with its entries.
 */
export function staleAffinity(prev: Ruleset, next: Ruleset, only?: ReadonlySet<string>): StaleAffinity[] {
  const out: StaleAffinity[] = [];
  let maps: Set<string> | undefined;
  const kept = (s: StickyFrontend): boolean =>
    (maps ??= new Set(next.sets.map((set) => `${set.family} ${set.table} ${set.name}`))).has(
      `${s.family} ${s.table} ${s.store.map}`,
    );
  const keys = only ? [...only].sort() : prev.fragments.map((f) => f.key);
  for (const key of keys) {
    const before = fragmentOf(prev, key);
    const after = fragmentOf(next, key);
    if (!before || after === before) continue;
    const has = new Map((after?.sticky ?? []).map((s) => [stickyId(s), s]));
    for (const s of before.sticky ?? []) {
      if (!kept(s)) continue;
      const now = new Set(has.get(stickyId(s))?.endpoints ?? []);
      const gone = new Set(s.endpoints.filter((ep) => !now.has(ep)));
      if (gone.size > 0) out.push({ family: s.family, table: s.table, proto: s.proto, store: s.store, gone });
    }
  }
  return out;
}

interface JsonElem {
  elem?: { val?: unknown; timeout?: unknown; expires?: unknown };
}

/** One entry of an affinity map: its key and value fields, as nft's JSON has them. */
interface AffinityEntry {
  key: string[];
  value: string[];
  /** Seconds, as nft's JSON has them (whole seconds, rounded down); absent: the map's. */
  timeout?: number;
  expires?: number;
}

/** A key or value of nft's JSON as fields: a concatenation, or one address or number. */
function jsonFields(data: unknown): string[] {
  if (typeof data === 'string' || typeof data === 'number') return [String(data)];
  const concat = (data as { concat?: unknown[] } | undefined)?.concat;
  return Array.isArray(concat) ? concat.map(String) : [];
}

/** The entries of `nft -j list map`, and the map's own timeout. */
function affinityEntries(json: string | undefined): { timeout?: number; entries: AffinityEntry[] } {
  if (json === undefined || json.trim() === '') return { entries: [] };
  const doc = JSON.parse(json) as {
    nftables?: Array<{ map?: { timeout?: unknown; elem?: Array<[unknown, unknown]> } }>;
  };
  const map = doc.nftables?.find((o) => o.map)?.map;
  const secs = (n: unknown): number | undefined =>
    Number.isInteger(n) && (n as number) >= 0 ? (n as number) : undefined;
  const entries: AffinityEntry[] = [];
  for (const [k, v] of map?.elem ?? []) {
    const wrapped = (k as JsonElem | undefined)?.elem;
    const key = jsonFields(wrapped ? wrapped.val : k);
    const value = jsonFields(v);
    const timeout = secs(wrapped?.timeout);
    const expires = secs(wrapped?.expires);
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

/** An entry of an IPv6 group: the client, its endpoint `ip . port`, and both maps' entries. */
interface ClientEntry {
  client: string;
  endpoint: string;
  address: AffinityEntry;
  port: AffinityEntry;
}

/** The clients of an IPv6 group's two maps, joined: a client in one map only is left out. */
function clientEntries(addresses: AffinityEntry[], ports: AffinityEntry[]): ClientEntry[] {
  const portOf = new Map<string, AffinityEntry>();
  for (const e of ports) if (e.key.length === 1 && e.value.length === 1) portOf.set(e.key[0]!, e);
  const out: ClientEntry[] = [];
  for (const address of addresses) {
    if (address.key.length !== 1 || address.value.length !== 1) continue;
    const client = address.key[0]!;
    const port = portOf.get(client);
    if (port) out.push({ client, endpoint: `${address.value[0]} . ${port.value[0]}`, address, port });
  }
  return out;
}

/**
 * The affinity entries to delete, from the listings (`nft -j list map`, by map name) of the
 * maps `mapsOf` names for the stale frontends of one store. Each is deleted with `add` (a
 * no-op when it is still there, a re-creation when it just expired) then `delete`, so the
 * transaction cannot fail on an entry the kernel timed out meanwhile.
 */
export function staleEntries(stale: StaleAffinity[], listings: ReadonlyMap<string, string>): Element[] {
  if (stale.length === 0) return [];
  const { family, table, store } = stale[0]!;
  const element = (set: string, key: string, value: string): Element => ({
    kind: 'element',
    family,
    table,
    set,
    key,
    value,
  });
  const out: Element[] = [];
  if ('portMap' in store) {
    const gone = new Set(stale.flatMap((s) => [...s.gone]));
    const entries = clientEntries(
      affinityEntries(listings.get(store.map)).entries,
      affinityEntries(listings.get(store.portMap)).entries,
    );
    for (const { client, endpoint, address, port } of entries) {
      if (!gone.has(endpoint)) continue;
      out.push(element(store.map, client, address.value[0]!), element(store.portMap, client, port.value[0]!));
    }
    return out;
  }
  for (const { key, value } of affinityEntries(listings.get(store.map)).entries) {
    if (key.length !== 3 || value.length !== 2) continue;
    const frontend = `${key[0]} . ${key[1]}`;
    const endpoint = value.join(' . ');
    if (!stale.some((s) => frontendOf(s.store) === frontend && s.gone.has(endpoint))) continue;
    out.push(element(store.map, key.join(' . '), endpoint));
  }
  return out;
}

/** The sticky frontends of a ruleset that share one store, with their endpoints. */
export interface StickyGroup {
  family: NftFamily;
  table: string;
  proto: NftProtocol;
  /** The store (its frontend, for IPv4, is the first one's: see `endpoints`). */
  store: AffinityStore;
  /** Frontend `ip . port` (IPv4), or '' (IPv6: the maps are the group's own) → its endpoints. */
  endpoints: Map<string, Set<string>>;
}

/** Every sticky store of `rs`, in family, table, map order. */
export function stickyFrontends(rs: Ruleset): StickyGroup[] {
  const groups = new Map<string, StickyGroup>();
  for (const f of rs.fragments) {
    for (const s of f.sticky ?? []) {
      const id = `${s.family} ${s.table} ${s.store.map}`;
      let group = groups.get(id);
      if (!group)
        groups.set(
          id,
          (group = {
            family: s.family,
            table: s.table,
            proto: s.proto,
            store: s.store,
            endpoints: new Map(),
          }),
        );
      group.endpoints.set(frontendOf(s.store), new Set(s.endpoints));
    }
  }
  return [...groups.keys()].sort(compareStrings).map((id) => groups.get(id)!);
}

/**
 * The entries of the listings (`nft -j list map`, by map name, of the maps `mapsOf` names) that
 * a full sync puts back into the recreated maps: those of a frontend still sticky, to one of its
 * endpoints, each with the time it had left (a client does not get a fresh timeout). An entry
 * with less than a second left is dropped: nft reads `expires 0s` as not given, which would
 * renew it. One that expires between the listing and the commit lives on by that much; its add
 * cannot collide, as the map it goes into is new.
 */
export function restoredEntries(group: StickyGroup, listings: ReadonlyMap<string, string>): Element[] {
  const { family, table, store } = group;
  const out: Element[] = [];
  const timed = (
    set: string,
    key: string,
    value: string,
    entry: AffinityEntry,
    mapTimeout: number | undefined,
  ): Element | undefined => {
    // Given both, the kernel refuses an expiry beyond the timeout ("Numerical result out of range").
    const limit = entry.timeout ?? mapTimeout ?? entry.expires;
    const { expires } = entry;
    if (expires === undefined || limit === undefined || Math.min(expires, limit) < 1) return undefined;
    return {
      kind: 'element',
      family,
      table,
      set,
      key,
      value,
      timeout: `${limit}s`,
      expires: `${Math.min(expires, limit)}s`,
    };
  };
  if ('portMap' in store) {
    const eps = group.endpoints.get('');
    const addresses = affinityEntries(listings.get(store.map));
    const ports = affinityEntries(listings.get(store.portMap));
    for (const { client, endpoint, address, port } of clientEntries(addresses.entries, ports.entries)) {
      if (!eps?.has(endpoint) || ipFamily(client) !== 'ipv6') continue;
      const a = timed(store.map, client, address.value[0]!, address, addresses.timeout);
      const p = timed(store.portMap, client, port.value[0]!, port, ports.timeout);
      if (a && p) out.push(a, p);
    }
  } else {
    const listing = affinityEntries(listings.get(store.map));
    for (const entry of listing.entries) {
      const { key, value } = entry;
      if (key.length !== 3 || value.length !== 2) continue;
      const endpoint = value.join(' . ');
      const eps = group.endpoints.get(`${key[0]} . ${key[1]}`);
      if (!eps?.has(endpoint)) continue;
      // The client's address is the kernel's text: it must be an address of the map's family.
      if (ipFamily(key[2]!) !== ipFamily(key[0]!)) continue;
      const el = timed(store.map, key.join(' . '), endpoint, entry, listing.timeout);
      if (el) out.push(el);
    }
  }
  return out.sort((a, b) => compareStrings(`${a.set} ${keyText(a)}`, `${b.set} ${keyText(b)}`));
}
