import type { Element, NftFamily } from './nft/types.js';
import { setId, type Ruleset } from './ruleset.js';

/**
 * Session affinity lives in maps the kernel fills (affinity-<proto>: frontend . client →
 * endpoint). When an endpoint leaves a sticky frontend, its clients' entries must go, or they
 * would keep sending new connections to it until the timeout (kube-proxy deletes that
 * endpoint's affinity set). These pure helpers say which entries; the applier reads the map.
 */

const PROTOCOLS = ['tcp', 'udp', 'sctp'] as const;

/** A sticky frontend that lost endpoints, per family and protocol. */
export interface StaleAffinity {
  family: NftFamily;
  table: string;
  proto: (typeof PROTOCOLS)[number];
  /** `ip . port` of the frontend. */
  frontend: string;
  /** `ip . port` of every endpoint it no longer has. */
  gone: Set<string>;
}

const frontendOf = (el: Element): string => `${el.key[0]} . ${el.key[2]}`;

/** Sticky frontends of `prev` whose backends in `next` lack some endpoint they had. */
export function staleAffinity(prev: Ruleset, next: Ruleset): StaleAffinity[] {
  const out: StaleAffinity[] = [];
  for (const t of prev.tables) {
    for (const proto of PROTOCOLS) {
      const sticky = prev.elements.get(setId(t.family, t.table, `affinity-frontends-${proto}`));
      if (!sticky || sticky.size === 0) continue;
      const endpoints = (rs: Ruleset): Map<string, Set<string>> => {
        const byFrontend = new Map<string, Set<string>>();
        for (const el of rs.elements.get(setId(t.family, t.table, `backends-${proto}`))?.values() ?? []) {
          const fe = frontendOf(el);
          if (!sticky.has(fe)) continue;
          const set = byFrontend.get(fe) ?? new Set<string>();
          set.add((el.value ?? []).join(' . '));
          byFrontend.set(fe, set);
        }
        return byFrontend;
      };
      const before = endpoints(prev);
      const after = endpoints(next);
      for (const [frontend, had] of before) {
        const now = after.get(frontend) ?? new Set<string>();
        const gone = new Set([...had].filter((ep) => !now.has(ep)));
        if (gone.size > 0) out.push({ family: t.family, table: t.table, proto, frontend, gone });
      }
    }
  }
  return out;
}

interface JsonElem {
  elem?: { val?: { concat?: unknown[] } };
}

/**
 * The affinity entries to delete, from `nft -j list map` of affinity-<proto>. Each is deleted
 * with `add` (a no-op when it is still there, a re-creation when it just expired) then
 * `delete`, so the transaction cannot fail on an entry the kernel timed out meanwhile.
 */
export function staleEntries(stale: StaleAffinity[], json: string): Element[] {
  if (json.trim() === '' || stale.length === 0) return [];
  const doc = JSON.parse(json) as {
    nftables?: Array<{ map?: { elem?: Array<[JsonElem, { concat?: unknown[] }]> } }>;
  };
  const map = doc.nftables?.find((o) => o.map)?.map;
  const out: Element[] = [];
  const first = stale[0]!;
  for (const [k, v] of map?.elem ?? []) {
    const key = (k?.elem?.val?.concat ?? []).map(String);
    const value = (v?.concat ?? []).map(String);
    if (key.length !== 3 || value.length !== 2) continue;
    const frontend = `${key[0]} . ${key[1]}`;
    const endpoint = value.join(' . ');
    if (!stale.some((s) => s.frontend === frontend && s.gone.has(endpoint))) continue;
    out.push({
      kind: 'element',
      family: first.family,
      table: first.table,
      set: `affinity-${first.proto}`,
      key,
      value,
    });
  }
  return out;
}
