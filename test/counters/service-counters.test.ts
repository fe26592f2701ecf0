import assert from 'node:assert/strict';
import { buildState } from '../../src/model/build-state.js';
import { CounterReader, type CounterReaderOptions } from '../../src/counters/counter-reader.js';
import type { CountedElement } from '../../src/counters/nft-json.js';
import { portCounters } from '../../src/counters/service-counters.js';
import { silentLogger } from '../../src/log.js';
import type { ListOptions } from '../../src/rules/nft/exec.js';
import type { NftFamily } from '../../src/rules/nft/types.js';
import { FakeClock, settle } from '../support/fake-clock.js';
import { service, slice } from '../support/objects.js';

const NODE_IPS = { ipv4: ['192.168.0.10'], ipv6: [] };

/** A ClusterIP with endpoints, an eTP Local NodePort whose endpoints are all elsewhere, a guarded LB. */
function state() {
  return buildState(
    {
      services: [
        service('ns', 'a', { clusterIP: '10.96.0.1', ports: [{ name: 'http', port: 80 }] }),
        service('ns', 'np', {
          type: 'NodePort',
          clusterIP: '10.96.0.3',
          externalTrafficPolicy: 'Local',
          ports: [{ port: 80, nodePort: 30080 }],
        }),
        service(
          'ns',
          'lb',
          {
            type: 'LoadBalancer',
            clusterIP: '10.96.0.4',
            loadBalancerSourceRanges: ['192.0.2.0/24'],
            ports: [{ port: 443, nodePort: 30443 }],
          },
          { lbIPs: ['198.51.100.7'] },
        ),
      ],
      slices: [
        slice('ns', 'a-1', 'a', [{ name: 'http', port: 8080 }], [{ ip: '10.244.1.2', nodeName: 'n1' }]),
        slice('ns', 'np-1', 'np', [{ port: 8080 }], [{ ip: '10.244.2.3', nodeName: 'n2' }]),
        slice('ns', 'lb-1', 'lb', [{ port: 8443 }], [{ ip: '10.244.2.4', nodeName: 'n2' }]),
      ],
    },
    { nodeName: 'n1', nodeIPs: ['192.168.0.10'], lbAlgorithm: 'random' },
  );
}

const el = (ip: string, proto: 'tcp' | 'udp', port: number, packets: number): CountedElement => ({
  key: { ip, proto, port },
  packets,
});

describe('counters: kernel counts put back on service ports', () => {
  it('labels each frontend, takes an eTP Local frontend without local endpoints from shortcircuit-ips, and marks guarded ones', () => {
    const ports = portCounters(state(), NODE_IPS, {
      connections: [
        el('10.96.0.1', 'tcp', 80, 5),
        el('192.168.0.10', 'tcp', 30080, 9),
        el('10.96.0.3', 'tcp', 80, 2),
      ],
      noEndpoints: [el('192.168.0.10', 'tcp', 30080, 6)],
      shortcircuit: [el('192.168.0.10', 'tcp', 30080, 3)],
      sourceRangeDrops: [el('198.51.100.7', 'tcp', 443, 4)],
    });
    const byService = new Map(ports.map((p) => [p.service, p]));
    const a = byService.get('a')!;
    assert.deepEqual(
      { namespace: a.namespace, port: a.port, protocol: a.protocol, frontends: a.frontends },
      {
        namespace: 'ns',
        port: 'http',
        protocol: 'TCP',
        frontends: [{ frontend: '10.96.0.1:80', connections: 5, noEndpoints: 0, sourceRangeDrops: 0 }],
      },
    );
    // service-ips saw 9 at the NodePort: 6 dropped (no local endpoint), 3 short-circuited.
    assert.deepEqual(byService.get('np')!.frontends, [
      { frontend: '10.96.0.3:80', connections: 2, noEndpoints: 0, sourceRangeDrops: 0 },
      { frontend: '192.168.0.10:30080', connections: 3, noEndpoints: 6, sourceRangeDrops: 0 },
    ]);
    const lb = byService.get('lb')!;
    assert.deepEqual([...lb.guarded], ['198.51.100.7:443']);
    assert.deepEqual(
      lb.frontends.find((f) => f.frontend === '198.51.100.7:443'),
      { frontend: '198.51.100.7:443', connections: 0, noEndpoints: 0, sourceRangeDrops: 4 },
    );
  });
});

/** An nft whose listings hold counters, answering when told. */
function listingNft() {
  const calls: string[] = [];
  const waiting: Array<() => void> = [];
  let hold = false;
  const packets = new Map<string, number>([['service-ips', 5]]);
  return {
    calls,
    hold(on: boolean) {
      hold = on;
      if (!on) for (const go of waiting.splice(0)) go();
    },
    set: (map: string, n: number) => packets.set(map, n),
    async listMapJson(family: NftFamily, table: string, map: string, opts: ListOptions = {}) {
      const kind = opts.kind ?? 'map';
      calls.push(`${family} ${map} ${kind}${opts.numericProtocol ? ' -p' : ''}`);
      if (hold) await new Promise<void>((resolve) => waiting.push(resolve));
      const val = { concat: ['10.96.0.1', opts.numericProtocol ? 6 : 'tcp', 80] };
      const item = { elem: { val, counter: { packets: packets.get(map) ?? 0, bytes: 0 } } };
      return JSON.stringify({
        nftables: [{ [kind]: { elem: [kind === 'map' ? [item, { accept: null }] : item] } }],
      });
    },
  };
}

describe('counters: CounterReader', () => {
  const rules = { state: state(), nodePortIPs: NODE_IPS, since: Date.UTC(2026, 0, 1) };
  /** A reader of table `t` with these rules always synced. */
  const readerOf = (
    nft: CounterReaderOptions['nft'],
    clock: FakeClock,
    opts: Pick<CounterReaderOptions, 'maxAgeMs' | 'timeoutMs'>,
  ): CounterReader =>
    new CounterReader({ nft, table: 't', rules: () => rules, log: silentLogger(), clock, ...opts });

  it('reads only the maps the state uses, and nothing before the first sync', async () => {
    const nft = listingNft();
    const clock = new FakeClock();
    const synced: { rules?: typeof rules } = {};
    const reader = new CounterReader({
      nft,
      table: 't',
      rules: () => synced.rules,
      log: silentLogger(),
      clock,
    });
    assert.equal(await reader.read(), undefined);
    assert.deepEqual(nft.calls, []);
    synced.rules = rules;
    const snap = await reader.read();
    assert.deepEqual(nft.calls, [
      'ip service-ips map -p',
      'ip no-endpoint-services map -p',
      'ip shortcircuit-ips map -p',
      'ip firewall-ips set -p',
    ]);
    assert.equal(snap!.since, rules.since);
    assert.equal(
      snap!.byKey.get(rules.state.ports.find((sp) => sp.service === 'ns/a')!.key)!.frontends[0]!.connections,
      5,
    );
  });

  it('shares one read in flight and reuses it for a while, then reads again', async () => {
    const nft = listingNft();
    const clock = new FakeClock();
    const reader = readerOf(nft, clock, { maxAgeMs: 2000 });
    nft.hold(true);
    const one = reader.read();
    const two = reader.read();
    await settle();
    nft.hold(false);
    const [a, b] = await Promise.all([one, two]);
    assert.equal(a, b);
    assert.equal(nft.calls.length, 4, 'one read of four maps');
    assert.equal(await reader.read(), a, 'young enough: reused');
    await clock.advance(2000);
    nft.set('service-ips', 8);
    const c = await reader.read();
    assert.equal(nft.calls.length, 8);
    assert.equal(
      c!.byKey.get(rules.state.ports.find((sp) => sp.service === 'ns/a')!.key)!.frontends[0]!.connections,
      8,
    );
  });

  it('answers with the last read when a read is slow, and starts no second one meanwhile', async () => {
    const nft = listingNft();
    const clock = new FakeClock();
    const reader = readerOf(nft, clock, { maxAgeMs: 0, timeoutMs: 100 });
    const first = await reader.read();
    nft.hold(true);
    const slow = reader.read();
    await settle();
    await clock.advance(100);
    assert.equal(await slow, first, 'the last read');
    const calls = nft.calls.length;
    const again = reader.read();
    await settle();
    assert.equal(nft.calls.length, calls, 'the slow read is still the one in flight');
    nft.hold(false);
    assert.notEqual(await again, first);
  });
});
