import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ipOrder, ipToBigInt } from '../../src/model/ip.js';

/** The order as it was defined before IPv4 became a number: one bigint, IPv6 above 2^128. */
const reference = (ip: string): bigint => (ip.includes(':') ? (1n << 128n) | ipToBigInt(ip) : ipToBigInt(ip));
const sign = (a: number | bigint, b: number | bigint): number => (a < b ? -1 : a > b ? 1 : 0);

describe('ipOrder', () => {
  const ipArb = fc.oneof(
    fc.ipV4(),
    fc.ipV6(),
    fc.constantFrom('0.0.0.0', '255.255.255.255', '::', '::ffff:1.2.3.4'),
  );

  it('orders any two addresses as their numeric values do, IPv4 before IPv6', () => {
    fc.assert(
      fc.property(ipArb, ipArb, (a, b) => {
        assert.equal(sign(ipOrder(a), ipOrder(b)), sign(reference(a), reference(b)));
      }),
      { numRuns: 2000 },
    );
  });

  it('is the address as a number for IPv4', () => {
    assert.equal(ipOrder('10.0.0.1'), 0x0a000001);
    assert.equal(ipOrder('255.255.255.255'), 2 ** 32 - 1);
    assert.ok(ipOrder('255.255.255.255') < ipOrder('::'));
  });
});
