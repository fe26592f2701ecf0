/**
 * Maglev consistent hashing (Eisenbud et al., NSDI 2016): a slot table of prime size M in
 * which every backend owns about M/N slots, built only from the sorted backend names and a
 * cluster-wide seed, so every node builds the same table and a backend change moves about
 * 1/N of the slots. The nftables compiler emits the same table as map elements; the
 * userspace pickers look flows up in it. Pure functions, no I/O, no Math.random.
 */
import { compareStrings } from '../util/sorted-index.js';

/** Cilium's table sizes: primes just under powers of two, so the table stays near 2^k entries. */
export const MAGLEV_PRIMES: readonly number[] = [251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521];

/**
 * Table sizes by backend count, measured (100 random backend sets and seeds per cell) against
 * the promises test/lb/maglev.test.ts checks: removing one of N backends moves at most
 * 1/N + 1 percentage point of the slots, adding one at most 1/(N+1) + 1 point, and each
 * backend owns M/N slots within ±2 % (needs M ≥ 50·N: Maglev hands out floor or ceil of M/N).
 * The excess disruption has a systematic part of about 3·N/M, which sets the upper bounds
 * (16381 is over 1 point for most sets at N = 50, 32749 at N ≈ 100, 65521 at N ≈ 330), and a
 * rare tail at any size: 0–3 % of sets exceeded the promise at the sizes chosen here, and
 * smaller primes failed far more often for every N ≥ 2 (N = 10: 12.7 % moved at 1021,
 * 11.0 % at 4093 per DESIGN.md). Maglev gives no hard bound; this is the measured one.
 */
const MAGLEV_SIZE_LIMITS: ReadonlyArray<readonly [maxBackends: number, m: number]> = [
  [1, 251],
  [20, 16381],
  [100, 32749],
];

/**
 * The smallest table size that keeps the balance and disruption promises for n backends
 * (see above), capped at 65521: beyond about 330 backends disruption grows past 1/N + 1
 * point, and beyond 1310 balance drifts past ±2 %, because the table cannot grow.
 */
export function maglevSize(n: number): number {
  for (const [max, m] of MAGLEV_SIZE_LIMITS) if (n <= max) return m;
  return 65521;
}

/** 32-bit murmur3 (x86_32) of the UTF-8 bytes of `s`: stable across nodes and Node versions. */
export function murmur3(s: string, seed: number): number {
  const data = new TextEncoder().encode(s);
  let h = seed >>> 0;
  const len = data.length;
  const blocks = len & ~3;
  for (let i = 0; i < blocks; i += 4) {
    let k = (data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24)) >>> 0;
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  const tail = len & 3;
  if (tail > 0) {
    let k = data[blocks]!;
    if (tail > 1) k ^= data[blocks + 1]! << 8;
    if (tail > 2) k ^= data[blocks + 2]! << 16;
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
    h ^= k;
  }
  h ^= len;
  return fmix32(h);
}

function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** The seed of the second hash (skip) is derived from the first so callers pass one seed. */
const SKIP_SEED_XOR = 0x5bd1e995;

/**
 * The Maglev table: slot → index into the sorted unique backend list (see `sortedBackends`).
 * The same backends in any order and with duplicates give the same table. Empty input gives
 * a table of -1. `m` must be prime for every backend's permutation to cover the table.
 */
export function buildMaglevTable(backends: readonly string[], m: number, seed: number): Int32Array {
  if (!Number.isInteger(m) || m < 2)
    throw new RangeError(`maglev table size must be an integer ≥ 2, got ${m}`);
  const names = sortedBackends(backends);
  const n = names.length;
  const table = new Int32Array(m).fill(-1);
  if (n === 0) return table;
  const pos = new Uint32Array(n);
  const skip = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    const name = names[i]!;
    pos[i] = murmur3(name, seed) % m;
    skip[i] = (murmur3(name, (seed ^ SKIP_SEED_XOR) >>> 0) % (m - 1)) + 1;
  }
  // Backends take turns claiming their next preferred free slot until the table is full.
  let filled = 0;
  for (;;) {
    for (let i = 0; i < n; i++) {
      let c = pos[i]!;
      while (table[c] !== -1) c = (c + skip[i]!) % m;
      table[c] = i;
      pos[i] = (c + skip[i]!) % m;
      if (++filled === m) return table;
    }
  }
}

/** The backend list a table indexes into: unique, sorted by code unit (locale-independent). */
export function sortedBackends(backends: readonly string[]): string[] {
  return [...new Set(backends)].sort(compareStrings);
}

/** The slot a 32-bit key hash falls into; -1 for an empty table. */
export function maglevLookup(table: Int32Array, key: number): number {
  if (table.length === 0) return -1;
  return table[(key >>> 0) % table.length]!;
}

/**
 * Hash of a client flow (address, port) for the userspace picker. Walks the address string
 * in place (no allocation on the connection path); addresses are ASCII.
 */
export function flowHash(ip: string, port: number, seed: number): number {
  let h = (seed ^ 0x811c9dc5) >>> 0;
  for (let i = 0; i < ip.length; i++) h = Math.imul(h ^ ip.charCodeAt(i), 0x01000193);
  h = Math.imul(h ^ (port & 0xff), 0x01000193);
  h = Math.imul(h ^ (port >>> 8), 0x01000193);
  return fmix32(h);
}

/** `ip:port`, or `[ip]:port` for IPv6: the backend name an endpoint is hashed by. */
export function endpointName(ep: { ip: string; port: number }): string {
  return ep.ip.includes(':') ? `[${ep.ip}]:${ep.port}` : `${ep.ip}:${ep.port}`;
}

/**
 * The table the nftables compiler emits as `slot : ip . port` map elements for a service
 * port: `slots[i]` is the endpoint that slot i maps to. Endpoints are named by
 * `endpointName`, so the userspace picker and the rules agree slot by slot.
 */
export function maglevEndpointTable<T extends { ip: string; port: number }>(
  endpoints: readonly T[],
  seed: number,
  m: number = maglevSize(new Set(endpoints.map(endpointName)).size),
): { m: number; slots: T[] } {
  const byName = new Map<string, T>();
  for (const ep of endpoints) if (!byName.has(endpointName(ep))) byName.set(endpointName(ep), ep);
  const names = sortedBackends([...byName.keys()]);
  const table = buildMaglevTable(names, m, seed);
  const slots: T[] = [];
  if (names.length === 0) return { m, slots };
  for (let i = 0; i < m; i++) slots.push(byName.get(names[table[i]!]!)!);
  return { m, slots };
}
