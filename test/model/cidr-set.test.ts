import assert from 'node:assert/strict';
import fc from 'fast-check';
import { mergeCidrs } from '../../src/model/cidr-set.js';
import { cidrContains, parseCidr } from '../../src/model/ip.js';

describe('mergeCidrs', () => {
  const table: Array<[string, string[], string[]]> = [
    ['nothing', [], []],
    ['a range inside an earlier one', ['10.0.0.0/8', '10.1.0.0/16'], ['10.0.0.0/8']],
    ['a range inside a later one', ['10.1.0.0/16', '10.0.0.0/8'], ['10.0.0.0/8']],
    ['duplicates', ['192.0.2.0/24', '192.0.2.0/24'], ['192.0.2.0/24']],
    ['two halves of one block', ['10.0.1.0/24', '10.0.0.0/24'], ['10.0.0.0/23']],
    ['halves that join twice', ['10.0.0.0/25', '10.0.0.128/26', '10.0.0.192/26'], ['10.0.0.0/24']],
    ['neighbours that are not halves', ['10.0.1.0/24', '10.0.2.0/24'], ['10.0.1.0/24', '10.0.2.0/24']],
    ['a host inside a range', ['203.0.113.7/32', '203.0.113.0/24'], ['203.0.113.0/24']],
    ['everything', ['0.0.0.0/0', '10.0.0.0/8'], ['0.0.0.0/0']],
    ['both halves of everything', ['0.0.0.0/1', '128.0.0.0/1'], ['0.0.0.0/0']],
    ['families apart', ['fd00::/8', '10.0.0.0/8', 'fd00:1::/32'], ['10.0.0.0/8', 'fd00::/8']],
  ];
  for (const [what, input, want] of table)
    it(`merges ${what}`, () => assert.deepEqual(mergeCidrs(input), want));

  it('covers the same addresses with ranges that never overlap (property)', () => {
    const cidr = fc
      .tuple(
        fc.integer({ min: 0, max: 255 }),
        fc.integer({ min: 0, max: 255 }),
        fc.integer({ min: 20, max: 32 }),
      )
      .map(([a, b, prefix]) => parseCidr(`10.${a % 4}.${b}.0/${prefix}`)!.text);
    const probe = fc.tuple(
      fc.integer({ min: 0, max: 3 }),
      fc.integer({ min: 0, max: 255 }),
      fc.integer({ min: 0, max: 255 }),
    );
    fc.assert(
      fc.property(fc.array(cidr, { maxLength: 12 }), fc.array(probe, { maxLength: 30 }), (input, probes) => {
        const merged = mergeCidrs(input).map((t) => parseCidr(t)!);
        for (const [a, b, c] of probes) {
          const ip = `10.${a}.${b}.${c}`;
          const before = input.some((t) => cidrContains(parseCidr(t)!, ip));
          const after = merged.filter((m) => cidrContains(m, ip)).length;
          assert.equal(after, before ? 1 : 0, `${ip}: in ${after} merged ranges`);
        }
      }),
    );
  });
});

describe('parseCidr, IPv4', () => {
  it('clears host bits, keeps the prefix, and tells /0 and /32 apart', () => {
    const got = (t: string): [string, bigint, number] | undefined => {
      const c = parseCidr(t);
      return c && [c.text, c.base, c.prefix];
    };
    assert.deepEqual(got('10.1.2.3/8'), ['10.0.0.0/8', 0x0a000000n, 8]);
    assert.deepEqual(got('255.255.255.255/32'), ['255.255.255.255/32', 0xffffffffn, 32]);
    assert.deepEqual(got('203.0.113.77/0'), ['0.0.0.0/0', 0n, 0]);
    assert.deepEqual(got(' 192.0.2.129/25 '), ['192.0.2.128/25', 0xc0000280n, 25]);
    assert.deepEqual(got('192.0.2.1'), ['192.0.2.1/32', 0xc0000201n, 32]);
    for (const bad of ['192.0.2.0/33', '192.0.2.0/-1', '192.0.2.0/', '192.0.2.0/1234', '300.0.0.0/8'])
      assert.equal(parseCidr(bad), undefined, bad);
  });

  it('is the network of the address under the prefix, as bits (property)', () => {
    const address = fc.tuple(fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 0, max: 32 }));
    fc.assert(
      fc.property(address, ([n, prefix]) => {
        const text = [24, 16, 8, 0].map((s) => (n >>> s) & 255).join('.');
        const c = parseCidr(`${text}/${prefix}`)!;
        const base = (BigInt(n) >> BigInt(32 - prefix)) << BigInt(32 - prefix);
        const baseText = [24n, 16n, 8n, 0n].map((s) => Number((base >> s) & 255n)).join('.');
        assert.deepEqual(c, { family: 'ipv4', base, prefix, text: `${baseText}/${prefix}` });
      }),
      { numRuns: 1000 },
    );
  });
});
