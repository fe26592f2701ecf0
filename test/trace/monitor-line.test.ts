import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { parseTraceLine } from '../../src/trace/monitor-line.js';

const FIXTURES = 'test/fixtures/nft-trace';

describe('parseTraceLine: one line of nft monitor trace', () => {
  const cases: Array<[string, ReturnType<typeof parseTraceLine>]> = [
    [
      'trace id 1f9d1510 ip kube-nftproxy filter-forward packet: iif "eth0" oif "veth0" ether saddr 6a:3f:0a:ab:40:91 ether daddr f6:c7:0a:af:a8:f0 ip saddr 172.30.0.100 ip daddr 10.244.1.11 ip dscp cs0 ip ecn not-ect ip ttl 63 ip id 1 ip length 60 tcp sport 41000 tcp dport 8080 tcp flags == syn tcp window 64240 ',
      {
        id: '1f9d1510',
        family: 'ip',
        table: 'kube-nftproxy',
        chain: 'filter-forward',
        kind: 'packet',
        packet: {
          saddr: '172.30.0.100',
          daddr: '10.244.1.11',
          proto: 'tcp',
          sport: 41000,
          dport: 8080,
          iif: 'eth0',
          oif: 'veth0',
        },
      },
    ],
    [
      'trace id 0d66980b ip6 kube-nftproxy nat-output packet: oif "eth0" ip6 saddr fd00:172:30::1 ip6 daddr fd00:10:96::a ip6 dscp cs0 ip6 ecn not-ect ip6 hoplimit 64 ip6 flowlabel 0 ip6 nexthdr udp ip6 length 20 udp sport 5353 udp dport 53 udp length 20 ',
      {
        id: '0d66980b',
        family: 'ip6',
        table: 'kube-nftproxy',
        chain: 'nat-output',
        kind: 'packet',
        packet: {
          saddr: 'fd00:172:30::1',
          daddr: 'fd00:10:96::a',
          proto: 'udp',
          sport: 5353,
          dport: 53,
          oif: 'eth0',
        },
      },
    ],
    [
      'trace id ea90dbb4 ip kube-nftproxy services rule ip daddr . meta l4proto . th dport vmap @service-ips (verdict goto clusterip-1)',
      {
        id: 'ea90dbb4',
        family: 'ip',
        table: 'kube-nftproxy',
        chain: 'services',
        kind: 'rule',
        rule: 'ip daddr . meta l4proto . th dport vmap @service-ips',
        verdict: 'goto clusterip-1',
      },
    ],
    [
      'trace id 994b8b17 ip kube-nftproxy services unknown rule handle 23 (verdict goto clusterip-1)',
      {
        id: '994b8b17',
        family: 'ip',
        table: 'kube-nftproxy',
        chain: 'services',
        kind: 'rule',
        rule: undefined,
        handle: 23,
        verdict: 'goto clusterip-1',
      },
    ],
    [
      'trace id 1f9d1510 ip kube-nftproxy filter-forward policy accept meta mark 0x00004000 ',
      {
        id: '1f9d1510',
        family: 'ip',
        table: 'kube-nftproxy',
        chain: 'filter-forward',
        kind: 'policy',
        verdict: 'accept',
      },
    ],
    [
      'trace id 1f9d1510 ip kube-nftproxy firewall-check verdict continue ',
      {
        id: '1f9d1510',
        family: 'ip',
        table: 'kube-nftproxy',
        chain: 'firewall-check',
        kind: 'verdict',
        verdict: 'continue',
      },
    ],
    ['', undefined],
    ['Error: Could not process rule: Operation not permitted', undefined],
  ];
  for (const [line, want] of cases) {
    it(`${line.slice(0, 70) || '(empty)'}…`, () => {
      assert.deepEqual(parseTraceLine(line), want);
    });
  }

  // daemon-*: the daemon's rules in a lab; the others: a small hand-written table (a rule added
  // after nft started, a reject), in the first experiment.
  for (const file of readdirSync(FIXTURES)) {
    it(`reads every line of ${file} (nft ${file.replace(/^.*-([0-9.]+)\.txt$/, '$1')}, captured in a netns)`, () => {
      const lines = readFileSync(`${FIXTURES}/${file}`, 'utf8').split('\n').filter(Boolean);
      assert.ok(lines.length > 40);
      const unread = lines.filter((l) => parseTraceLine(l) === undefined);
      assert.deepEqual(unread, []);
    });
  }
});
