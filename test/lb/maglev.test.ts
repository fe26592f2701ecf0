import assert from 'node:assert/strict';
import {
  MAGLEV_PRIMES,
  buildMaglevTable,
  endpointName,
  flowHash,
  maglevEndpointTable,
  maglevLookup,
  maglevSize,
  murmur3,
  sortedBackends,
} from '../../src/lb/maglev.js';

/** Deterministic pseudo-random backend names: IPv4 pod IPs and a few IPv6 ones. */
function backends(n: number, salt: number): string[] {
  let s = (salt * 2654435761) >>> 0 || 1;
  const rnd = (): number => (s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32;
  const out = new Set<string>();
  while (out.size < n) {
    const a = Math.floor(rnd() * 256);
    const b = Math.floor(rnd() * 254) + 1;
    out.add(rnd() < 0.2 ? `[fd00::${a.toString(16)}:${b.toString(16)}]:8080` : `10.244.${a}.${b}:8080`);
  }
  return [...out];
}

function names(list: string[], table: Int32Array): string[] {
  const sorted = sortedBackends(list);
  return Array.from(table, (i) => sorted[i]!);
}

function movedFraction(before: string[], after: string[], m: number, seed: number): number {
  const a = names(before, buildMaglevTable(before, m, seed));
  const b = names(after, buildMaglevTable(after, m, seed));
  let moved = 0;
  for (let i = 0; i < m; i++) if (a[i] !== b[i]) moved++;
  return moved / m;
}

function shuffle<T>(xs: T[], salt: number): T[] {
  const out = [...xs];
  let s = salt;
  for (let i = out.length - 1; i > 0; i--) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    const j = s % (i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

describe('maglev', () => {
  it('murmur3 matches the reference vectors', () => {
    assert.equal(murmur3('', 1), 0x514e28b7);
    assert.equal(murmur3('hello', 0), 0x248bfa47);
    assert.equal(murmur3('The quick brown fox jumps over the lazy dog', 0x9747b28c), 0x2fa826cd);
  });

  it("uses Cilium's primes", () => {
    assert.deepEqual(MAGLEV_PRIMES, [251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521]);
    for (const n of [1, 2, 10, 21, 100, 101, 1000, 5000]) assert.ok(MAGLEV_PRIMES.includes(maglevSize(n)));
    for (let n = 1; n < 2000; n++) assert.ok(maglevSize(n) >= maglevSize(n - 1 || 1), 'monotonic');
  });

  it('builds identical tables from shuffled and duplicated inputs', () => {
    const list = backends(37, 1);
    const t = buildMaglevTable(list, 4093, 42);
    for (let salt = 1; salt <= 5; salt++) {
      assert.deepEqual(buildMaglevTable(shuffle(list, salt), 4093, 42), t);
    }
    assert.deepEqual(buildMaglevTable([...list, ...list.slice(0, 5)], 4093, 42), t);
    assert.notDeepEqual(buildMaglevTable(list, 4093, 43), t, 'the seed matters');
  });

  it('fills every slot with a valid index, and -1 for no backends', () => {
    const t = buildMaglevTable(backends(7, 2), 251, 0);
    assert.ok(t.every((i) => i >= 0 && i < 7));
    assert.ok(buildMaglevTable([], 251, 0).every((i) => i === -1));
    assert.equal(maglevLookup(buildMaglevTable([], 251, 0), 12345), -1);
  });

  for (const n of [1, 3, 10, 50, 100]) {
    it(`balances ${n} backends within ±2 % of M/N at M = maglevSize(N)`, () => {
      const m = maglevSize(n);
      const counts = new Array<number>(n).fill(0);
      for (const i of buildMaglevTable(backends(n, n), m, 7)) counts[i]!++;
      const ideal = m / n;
      for (const c of counts)
        assert.ok(Math.abs(c - ideal) <= 0.02 * ideal, `${c} vs ideal ${ideal.toFixed(1)}`);
    });
  }

  for (const n of [3, 10, 50, 100]) {
    it(`moves about 1/N of the slots when one of ${n} backends goes or one comes`, () => {
      const m = maglevSize(n);
      for (const seed of [1, 2, 3]) {
        const all = backends(n + 1, seed * 1000 + n);
        const base = all.slice(0, n);
        const extra = all[n]!;
        for (const drop of [0, Math.floor(n / 2), n - 1]) {
          const removed = base.filter((_, i) => i !== drop);
          const moved = movedFraction(base, removed, m, seed);
          assert.ok(moved <= 1 / n + 0.01, `remove #${drop} of ${n} at M=${m}, seed ${seed}: ${pct(moved)}`);
        }
        const moved = movedFraction(base, [...base, extra], m, seed);
        assert.ok(moved <= 1 / (n + 1) + 0.01, `add one to ${n} at M=${m}, seed ${seed}: ${pct(moved)}`);
      }
    });
  }

  it('hashes flows stably and spreads them', () => {
    assert.equal(flowHash('10.0.0.1', 40000, 9), flowHash('10.0.0.1', 40000, 9));
    assert.notEqual(flowHash('10.0.0.1', 40000, 9), flowHash('10.0.0.1', 40001, 9));
    const t = buildMaglevTable(backends(4, 3), 251, 0);
    const seen = new Set<number>();
    for (let port = 30000; port < 30200; port++) seen.add(maglevLookup(t, flowHash('10.1.2.3', port, 0)));
    assert.equal(seen.size, 4);
  });

  it('gives the nftables compiler the slot → endpoint table the pickers use', () => {
    const eps = [
      { ip: '10.0.0.2', port: 80 },
      { ip: 'fd00::1', port: 80 },
      { ip: '10.0.0.1', port: 80 },
      { ip: '10.0.0.1', port: 80 },
    ];
    const { m, slots } = maglevEndpointTable(eps, 5);
    assert.equal(m, maglevSize(3));
    assert.equal(slots.length, m);
    const table = buildMaglevTable(eps.map(endpointName), m, 5);
    const sorted = sortedBackends(eps.map(endpointName));
    for (let i = 0; i < m; i++) assert.equal(endpointName(slots[i]!), sorted[table[i]!]);
    assert.equal(endpointName({ ip: 'fd00::1', port: 80 }), '[fd00::1]:80');
    assert.deepEqual(maglevEndpointTable([], 5, 251), { m: 251, slots: [] });
  });
});

function pct(x: number): string {
  return `${(x * 100).toFixed(2)} %`;
}
