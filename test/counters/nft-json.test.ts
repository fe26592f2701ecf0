import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { countedElements } from '../../src/counters/nft-json.js';

/** Real `nft -j list map|set` output, captured in a network namespace after real packets. */
const fixture = (name: string): string =>
  readFileSync(new URL(`../fixtures/nft-counters/${name}`, import.meta.url), 'utf8');

describe('counters: the element counters of nft -j list', () => {
  for (const version of ['1.0.6', '1.1.3']) {
    it(`reads an IPv4 verdict map's counters as nft ${version} prints them`, () => {
      assert.deepEqual(countedElements(fixture(`ip-${version}.json`)), [
        { key: { ip: '127.0.0.1', proto: 'sctp', port: 9 }, packets: 0 },
        { key: { ip: '127.0.0.1', proto: 'udp', port: 53 }, packets: 3 },
        { key: { ip: '10.0.0.2', proto: 'udp', port: 53 }, packets: 0 },
        { key: { ip: '10.0.0.1', proto: 'tcp', port: 80 }, packets: 0 },
      ]);
    });

    it(`reads an IPv6 map and a set as nft ${version} prints them`, () => {
      assert.deepEqual(countedElements(fixture(`ip6-${version}.json`)), [
        { key: { ip: '::1', proto: 'udp', port: 53 }, packets: 2 },
        { key: { ip: 'fd00::10', proto: 'tcp', port: 80 }, packets: 0 },
      ]);
      assert.deepEqual(countedElements(fixture(`set6-${version}.json`)), [
        { key: { ip: '::1', proto: 'udp', port: 53 }, packets: 0 },
      ]);
    });

    it(`reads protocols printed as numbers (nft ${version} -p), as the reader lists them`, () => {
      assert.deepEqual(countedElements(fixture(`numeric-ip-${version}.json`)), [
        { key: { ip: '127.0.0.1', proto: 'sctp', port: 9 }, packets: 0 },
        { key: { ip: '127.0.0.1', proto: 'udp', port: 53 }, packets: 2 },
        { key: { ip: '10.0.0.1', proto: 'tcp', port: 80 }, packets: 0 },
      ]);
      assert.deepEqual(countedElements(fixture(`numeric-set6-${version}.json`)), [
        { key: { ip: 'fd00::10', proto: 'udp', port: 53 }, packets: 0 },
        { key: { ip: '::1', proto: 'tcp', port: 80 }, packets: 1 },
      ]);
    });
  }

  it('gives nothing for a missing map, and leaves out elements without a counter or of another shape', () => {
    assert.deepEqual(countedElements(''), []);
    const doc = {
      nftables: [
        { metainfo: { version: '1.0.6' } },
        {
          map: {
            name: 'service-ips',
            elem: [
              [{ concat: ['10.0.0.1', 'tcp', 80] }, { accept: null }],
              [{ elem: { val: { concat: ['10.0.0.2', 'tcp'] }, counter: { packets: 1, bytes: 1 } } }, null],
              [
                { elem: { val: { concat: ['10.0.0.3', 'icmp', 1] }, counter: { packets: 1, bytes: 1 } } },
                null,
              ],
              [
                { elem: { val: { concat: ['FD00:0::1', 'tcp', 80] }, counter: { packets: 7, bytes: 1 } } },
                null,
              ],
            ],
          },
        },
      ],
    };
    assert.deepEqual(countedElements(JSON.stringify(doc)), [
      { key: { ip: 'fd00::1', proto: 'tcp', port: 80 }, packets: 7 },
    ]);
    assert.throws(() => countedElements('not json'));
  });
});
