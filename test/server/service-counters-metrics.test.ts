import assert from 'node:assert/strict';
import type { PortCounters } from '../../src/counters/service-counters.js';
import { createMetrics } from '../../src/server/metrics.js';

const port = (over: Partial<PortCounters>): PortCounters => ({
  key: 'ns/web:http:ipv4',
  namespace: 'ns',
  service: 'web',
  port: 'http',
  protocol: 'TCP',
  frontends: [],
  guarded: new Set(),
  ...over,
});

const series = (text: string): string[] =>
  text.split('\n').filter((l) => l.startsWith('kube_nftproxy_service_'));

describe('metrics: kube_nftproxy_service_*_total', () => {
  it('exports each frontend read, the drop counter only where source ranges guard it', async () => {
    const m = createMetrics();
    let reads = 0;
    const ports = [
      port({
        frontends: [{ frontend: '10.96.0.10:80', connections: 12, noEndpoints: 0, sourceRangeDrops: 0 }],
      }),
      port({
        key: 'ns/lb::ipv6',
        service: 'lb',
        port: '',
        protocol: 'UDP',
        frontends: [{ frontend: '[fd00::7]:53', connections: 1, noEndpoints: 2, sourceRangeDrops: 3 }],
        guarded: new Set(['[fd00::7]:53']),
      }),
    ];
    m.serviceCounters(async () => {
      reads++;
      return ports;
    });
    assert.deepEqual(series(await m.registry.metrics()).sort(), [
      'kube_nftproxy_service_connections_total{namespace="ns",service="lb",port="",frontend="[fd00::7]:53",protocol="UDP"} 1',
      'kube_nftproxy_service_connections_total{namespace="ns",service="web",port="http",frontend="10.96.0.10:80",protocol="TCP"} 12',
      'kube_nftproxy_service_no_endpoints_total{namespace="ns",service="lb",port="",frontend="[fd00::7]:53",protocol="UDP"} 2',
      'kube_nftproxy_service_no_endpoints_total{namespace="ns",service="web",port="http",frontend="10.96.0.10:80",protocol="TCP"} 0',
      'kube_nftproxy_service_source_range_drops_total{namespace="ns",service="lb",port="",frontend="[fd00::7]:53",protocol="UDP"} 3',
    ]);
    assert.equal(reads, 3, 'each counter asks the reader (which shares one read)');
  });

  it('keeps the last values while nothing new is read, and has none of them with counters off', async () => {
    const m = createMetrics();
    let next: PortCounters[] | undefined = [
      port({
        frontends: [{ frontend: '10.96.0.10:80', connections: 5, noEndpoints: 0, sourceRangeDrops: 0 }],
      }),
    ];
    m.serviceCounters(async () => next);
    assert.equal(series(await m.registry.metrics()).length, 2);
    next = undefined;
    assert.match(await m.registry.metrics(), /connections_total\{[^}]*\} 5$/m);
    assert.deepEqual(series(await createMetrics().registry.metrics()), []);
    assert.doesNotMatch(await createMetrics().registry.metrics(), /kube_nftproxy_service_/);
  });
});
