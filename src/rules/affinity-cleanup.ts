import type { Element, NftFamily } from './nft/types.js';
import { fragmentOf, keyText, valueText, type Ruleset } from './ruleset.js';

/**
 * Session affinity lives in maps the kernel fills (affinity-<proto>: frontend . client →
 * endpoint). When an endpoint leaves a sticky frontend, its clients' entries must go, or they
 * would keep sending new connections to it until the timeout (kube-proxy deletes that
 * endpoint's affinity set). These pure helpers say which entries; the applier reads the map.
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

const frontendOf = (el: Element): string => `${el.key[0]} . ${el.key[2]}`;

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
    const sticky = new Map<string, Element>();
    for (const el of before.elements)
      if (el.set.startsWith('affinity-frontends-')) sticky.set(keyText(el), el);
    if (sticky.size === 0) continue;
    const endpoints = (elements: readonly Element[]): Map<string, Set<string>> => {
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
    };
    const had = endpoints(before.elements);
    const has = endpoints(after?.elements ?? []);
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
