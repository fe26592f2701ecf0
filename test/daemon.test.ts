import assert from 'node:assert/strict';
import { Daemon } from '../src/daemon.js';
import { ErrorCodes, ProxyError } from '../src/errors.js';
import { effectiveKubeProxyConfig } from '../src/kube-proxy-config.js';
import type { RunProgram } from '../src/kube-proxy-leftovers.js';
import { rulesetSize } from '../src/rules/ruleset.js';
import { createLogger, silentLogger } from '../src/log.js';
import { FakeNft } from '../src/rules/nft/fake.js';
import { FakeClock } from './support/fake-clock.js';
import { node, service, slice } from './support/objects.js';
import { HandSource, testDaemonConfig } from './support/daemon-harness.js';

/** FakeNft behind a switch: while `broken`, every transaction is refused as the kernel would. */
class SwitchableNft extends FakeNft {
  broken = false;
  refused = 0;
  override async run(tx: Parameters<FakeNft['run']>[0]): Promise<void> {
    if (this.broken) {
      this.refused++;
      throw new ProxyError(ErrorCodes.NFT_REJECTED, 'injected: nft refused the transaction');
    }
    await super.run(tx);
  }
}

interface Answer {
  status: number;
  body: string;
}

/** The Daemon over a FakeNft and a fake clock, its servers on real sockets (port 0). */
describe('Daemon: health, metrics and debug views over HTTP', () => {
  const NODE = 'node-a';
  const VIP = '10.96.0.10';
  let clock: FakeClock;
  let nft: SwitchableNft;
  let source: HandSource;
  let daemon: Daemon;

  const get = async (server: 'healthz' | 'metrics', path: string): Promise<Answer> => {
    const port = daemon.servers![server].port;
    const res = await fetch(`http://127.0.0.1:${port}${path}`);
    return { status: res.status, body: await res.text() };
  };

  /** A sample's value from the Prometheus text, or undefined when absent. */
  const sample = async (name: string): Promise<number | undefined> => {
    const { body } = await get('metrics', '/metrics');
    const line = body.split('\n').find((l) => l.startsWith(`${name} `));
    return line === undefined ? undefined : Number(line.slice(name.length + 1));
  };

  const webSlice = (ips: string[]) =>
    slice(
      'default',
      'web-a',
      'web',
      [{ name: 'http', port: 8080 }],
      ips.map((ip) => ({ ip, nodeName: NODE })),
    );

  beforeEach(async () => {
    clock = new FakeClock();
    nft = new SwitchableNft();
    source = new HandSource();
    const config = testDaemonConfig(NODE, ['--service-cidr', '10.96.0.0/16', '--sync-period', '30s']);
    daemon = new Daemon(config, {
      log: silentLogger(),
      env: { localAddresses: ['10.0.0.1'] },
      nft,
      source,
      clock,
    });
    await daemon.start();
    const h = source.handler!;
    h.upsert('Node', node(NODE, ['10.0.0.1']));
    h.upsert(
      'Service',
      service('default', 'web', { clusterIP: VIP, ports: [{ name: 'http', port: 80, targetPort: 8080 }] }),
    );
    h.upsert('EndpointSlice', webSlice(['10.244.1.11', '10.244.1.12']));
    h.synced();
    await clock.advance(0);
    assert.equal(daemon.syncs, 1);
  });

  afterEach(async () => {
    await daemon.stop();
  });

  it('turns /healthz 503 when a queued change cannot be applied in time, and 200 once it is', async () => {
    assert.equal((await get('healthz', '/healthz')).status, 200);
    const lastSync = 'kubeproxy_sync_proxy_rules_last_timestamp_seconds{ip_family="IPv4"}';
    const firstSync = await sample(lastSync);
    assert.ok(firstSync !== undefined && firstSync > 0, `last sync timestamp: ${firstSync}`);
    assert.equal(await sample(lastSync.replace('IPv4', 'IPv6')), firstSync, 'one sync programs both');
    assert.equal(await sample('kube_nftproxy_sync_failures_total'), 0);
    const nftFailures = (f: string) =>
      sample(`kubeproxy_sync_proxy_rules_nftables_sync_failures_total{ip_family="${f}"}`);
    assert.deepEqual([await nftFailures('IPv4'), await nftFailures('IPv6')], [0, 0]);

    nft.broken = true;
    source.handler!.upsert('EndpointSlice', webSlice(['10.244.1.11', '10.244.1.12', '10.244.1.13']));
    await clock.advance(0);
    assert.ok(nft.refused >= 1, 'the change was tried');
    // Still within the health timeout (2 × sync period): retrying is not yet unhealthy.
    assert.equal((await get('healthz', '/healthz')).status, 200);

    await clock.advance(2 * 30_000);
    const down = await get('healthz', '/healthz');
    assert.equal(down.status, 503, down.body);
    assert.equal((await get('healthz', '/livez')).status, 503);
    const failures = await sample('kube_nftproxy_sync_failures_total');
    assert.ok(failures !== undefined && failures >= 2, `failures: ${failures}, refused ${nft.refused}`);
    assert.equal(failures, nft.refused);
    // kube-proxy's count: each refused transaction, under both families (it held both tables).
    assert.deepEqual([await nftFailures('IPv4'), await nftFailures('IPv6')], [nft.refused, nft.refused]);
    assert.equal(await sample(lastSync), firstSync);
    const body = JSON.parse(down.body) as { lastUpdated: string; healthy: boolean; status: unknown };
    const synced = new Date(firstSync * 1000).toISOString();
    assert.equal(body.lastUpdated, synced);
    assert.equal(body.healthy, false);
    const late = { lastUpdated: synced, healthy: false };
    assert.deepEqual(body.status, { IPv4: late, IPv6: late });

    nft.broken = false;
    // The runner's retry (backoff capped at the sync period) applies the change.
    await clock.advance(30_000);
    assert.equal((await get('healthz', '/healthz')).status, 200);
    const recovered = await sample(lastSync);
    assert.ok(recovered !== undefined && recovered > firstSync, `${recovered} after ${firstSync}`);
    assert.match(nft.dump(), /10\.244\.1\.13/);
  });

  it('counts the ruleset and the Local ports without local endpoints as of the last sync, when scraped', async () => {
    const elements = 'kube_nftproxy_ruleset_objects{kind="elements"}';
    const noLocal = (f: string) =>
      `kubeproxy_sync_proxy_rules_no_local_endpoints_total{ip_family="${f}",traffic_policy="internal"}`;
    const before = await sample(elements);
    assert.equal(before, rulesetSize(daemon.applier.applied!).elements);
    assert.equal(await sample(noLocal('IPv4')), 0);

    // internalTrafficPolicy Local with its only endpoint on another node.
    const h = source.handler!;
    h.upsert(
      'Service',
      service('default', 'db', {
        clusterIP: '10.96.0.11',
        internalTrafficPolicy: 'Local',
        ports: [{ port: 5432 }],
      }),
    );
    h.upsert(
      'EndpointSlice',
      slice('default', 'db-a', 'db', [{ port: 5432 }], [{ ip: '10.244.2.7', nodeName: 'node-b' }]),
    );
    await clock.advance(0);
    // Counted in its own family only: an IPv4 Service, as kube-proxy's IPv4 proxier counts it.
    assert.equal(await sample(noLocal('IPv4')), 1);
    assert.equal(await sample(noLocal('IPv6')), 0);
    const after = await sample(elements);
    assert.equal(after, rulesetSize(daemon.applier.applied!).elements);
    assert.ok(after! > before!, `${after} elements after adding a Service, ${before} before`);
  });

  it('keeps programming when a Service claims another’s ClusterIP: it loses that frontend, says so, counts it', async () => {
    const h = source.handler!;
    // A tenant's externalIP on web's ClusterIP and port: before frontend ownership, nft
    // refused every transaction from here on ("File exists").
    h.upsert(
      'Service',
      service('tenant', 'grab', {
        clusterIP: '10.96.0.50',
        externalIPs: [VIP],
        ports: [{ port: 80, targetPort: 8080 }],
      }),
    );
    h.upsert('EndpointSlice', slice('tenant', 'grab-a', 'grab', [{ port: 8080 }], [{ ip: '10.244.9.9' }]));
    await clock.advance(0);
    h.upsert('EndpointSlice', webSlice(['10.244.1.11', '10.244.1.13']));
    await clock.advance(0);
    assert.equal(nft.refused, 0);
    assert.match(nft.dump(), /10\.244\.1\.13/, "web's endpoint change reached the rules");
    assert.doesNotMatch(
      nft.dump(),
      new RegExp(`${VIP.replace(/\./g, '\\.')} \\. tcp \\. 80 : goto external`),
    );
    assert.match(nft.dump(), /10\.96\.0\.50 \. tcp \. 80/, "the tenant's own ClusterIP works");
    const view = JSON.parse((await get('metrics', '/debug/services')).body) as {
      skipped: Array<{ name: string; reason: string }>;
    };
    assert.deepEqual(
      view.skipped.map((s) => s.name),
      ['tenant/grab'],
    );
    assert.match(view.skipped[0]!.reason, /externalIP 10\.96\.0\.10 tcp\/80 is default\/web's clusterIP/);
    assert.equal(await sample('kube_nftproxy_contested_frontends'), 1);
    assert.equal((await get('healthz', '/healthz')).status, 200);
  });

  it('counts Service and EndpointSlice changes apart, as kube-proxy’s change metrics do', async () => {
    const total = (what: 'service' | 'endpoint'): Promise<number | undefined> =>
      sample(`kubeproxy_sync_proxy_rules_${what}_changes_total`);
    const [services, endpoints] = [await total('service'), await total('endpoint')];
    const h = source.handler!;
    const ports = [{ port: 8080 }];
    // One Service event and three EndpointSlice events, all for one new Service.
    h.upsert('Service', service('default', 'cache', { clusterIP: '10.96.0.12', ports: [{ port: 6379 }] }));
    for (const ip of ['10.244.1.21', '10.244.1.22', '10.244.1.23'])
      h.upsert('EndpointSlice', slice('default', 'cache-a', 'cache', ports, [{ ip, nodeName: NODE }]));
    assert.equal(await sample('kubeproxy_sync_proxy_rules_service_changes_pending'), 1);
    assert.equal(await sample('kubeproxy_sync_proxy_rules_endpoint_changes_pending'), 1);
    await clock.advance(0);
    assert.equal(await total('service'), services! + 1);
    assert.equal(await total('endpoint'), endpoints! + 3);
    assert.equal(await sample('kubeproxy_sync_proxy_rules_endpoint_changes_pending'), 0);
  });

  it('serves the effective configuration under /configz, as --write-config-to writes it', async () => {
    const r = await get('metrics', '/configz');
    assert.equal(r.status, 200, r.body);
    const configz = JSON.parse(r.body) as Record<string, unknown>;
    assert.deepEqual(Object.keys(configz), ['kubeproxy.config.k8s.io']);
    assert.deepEqual(configz['kubeproxy.config.k8s.io'], effectiveKubeProxyConfig(daemon.config));
    const c = configz['kubeproxy.config.k8s.io'] as Record<string, unknown>;
    assert.equal(c.kind, 'KubeProxyConfiguration');
    assert.equal(c.mode, 'nftables');
    assert.equal(c.hostnameOverride, NODE);
    assert.equal(c.syncPeriod, '30s');
    assert.equal(c.minSyncPeriod, '0s');
  });

  it('lists the Service under /debug/services', async () => {
    const r = await get('metrics', '/debug/services');
    assert.equal(r.status, 200);
    const text = JSON.stringify(JSON.parse(r.body));
    assert.match(text, /default\/web/);
    assert.match(text, /10\.96\.0\.10/);
    assert.match(text, /10\.244\.1\.11/);
  });

  it('traces a packet to the ClusterIP under /debug/trace', async () => {
    const r = await get('metrics', `/debug/trace?src=10.244.1.50&dst=${VIP}&port=80&proto=tcp&from=pod`);
    assert.equal(r.status, 200, r.body);
    const trace = JSON.parse(r.body) as { verdict: string; endpoints?: unknown };
    assert.equal(trace.verdict, 'dnat');
    assert.match(
      JSON.stringify(trace.endpoints),
      /10\.244\.1\.11.*10\.244\.1\.12|10\.244\.1\.12.*10\.244\.1\.11/,
    );
  });

  it('shows the applied ruleset under /debug/rules, and the kernel copy with ?live=1', async () => {
    const r = await get('metrics', '/debug/rules');
    assert.equal(r.status, 200);
    assert.match(r.body, /^add table ip kube-nftproxy/m);
    assert.match(r.body, /10\.96\.0\.10/);
    const live = await get('metrics', '/debug/rules?live=1');
    assert.equal(live.status, 200);
    assert.match(live.body, /10\.96\.0\.10/);
  });
});

describe("Daemon: kube-proxy's nftables cleanup failures", () => {
  it("counts a failed removal of kube-proxy's leftovers under the family it failed in", async () => {
    const clock = new FakeClock();
    const source = new HandSource();
    const calls: string[] = [];
    let finished!: () => void;
    const lastStep = new Promise<void>((resolve) => (finished = resolve));
    // kube-proxy's IPv6 iptables chains are there and ip6tables-restore fails; IPv4 has none.
    const leftovers: RunProgram = async (program) => {
      calls.push(program);
      if (program === 'ip6tables-nft-save')
        return { code: 0, stdout: '*nat\n:KUBE-SERVICES - [0:0]\nCOMMIT\n', stderr: '' };
      if (program === 'ip6tables-nft-restore')
        return { code: 1, stdout: '', stderr: 'ip6tables-restore: injected failure' };
      if (program === 'iptables-nft-save') return { code: 0, stdout: '*nat\nCOMMIT\n', stderr: '' };
      if (program === 'ip') {
        finished();
        return { code: 1, stdout: '', stderr: 'Device "kube-ipvs0" does not exist.' };
      }
      return undefined;
    };
    const config = testDaemonConfig('node-a');
    const daemon = new Daemon(config, {
      log: silentLogger(),
      env: { localAddresses: ['10.0.0.1'] },
      nft: new FakeNft(),
      source,
      clock,
      leftovers,
    });
    await daemon.start();
    try {
      const failures = async (): Promise<string[]> => {
        const res = await fetch(`http://127.0.0.1:${daemon.servers!.metrics.port}/metrics`);
        return (await res.text())
          .split('\n')
          .filter((l) => l.startsWith('kubeproxy_sync_proxy_rules_nftables_cleanup_failures_total{'));
      };
      assert.deepEqual(await failures(), [
        'kubeproxy_sync_proxy_rules_nftables_cleanup_failures_total{ip_family="IPv4"} 0',
        'kubeproxy_sync_proxy_rules_nftables_cleanup_failures_total{ip_family="IPv6"} 0',
      ]);
      source.handler!.upsert('Node', node('node-a', ['10.0.0.1']));
      source.handler!.synced();
      await clock.advance(0);
      assert.equal(daemon.syncs, 1);
      // The removal runs beside the syncs once the first is in; its last step is `ip link show`.
      await lastStep;
      await new Promise((resolve) => setImmediate(resolve));
      assert.ok(calls.includes('ip6tables-nft-restore'), calls.join(' '));
      assert.deepEqual(await failures(), [
        'kubeproxy_sync_proxy_rules_nftables_cleanup_failures_total{ip_family="IPv4"} 0',
        'kubeproxy_sync_proxy_rules_nftables_cleanup_failures_total{ip_family="IPv6"} 1',
      ]);
      // The sync itself stands: no sync failure of either kind.
      const text = await (await fetch(`http://127.0.0.1:${daemon.servers!.metrics.port}/metrics`)).text();
      assert.match(text, /^kubeproxy_sync_proxy_rules_nftables_sync_failures_total\{ip_family="IPv6"\} 0$/m);
      assert.match(text, /^kube_nftproxy_sync_failures_total 0$/m);
    } finally {
      await daemon.stop();
    }
  });
});

describe('Daemon: --max-service-elements', () => {
  it('lists a Service over the budget under /debug/services, logs it once, and programs the rest', async () => {
    const clock = new FakeClock();
    const nft = new FakeNft();
    const source = new HandSource();
    const lines: Array<{ msg?: string; object?: string; reason?: string }> = [];
    const log = createLogger({ destination: { write: (line: string) => void lines.push(JSON.parse(line)) } });
    const config = testDaemonConfig('node-a', ['--max-service-elements', '20']);
    const daemon = new Daemon(config, { log, env: { localAddresses: ['10.0.0.1'] }, nft, source, clock });
    await daemon.start();
    try {
      const h = source.handler!;
      const eps = (n: number) => Array.from({ length: n }, (_, i) => ({ ip: `10.244.1.${i + 2}` }));
      h.upsert('Node', node('node-a', ['10.0.0.1']));
      h.upsert('Service', service('default', 'small', { clusterIP: '10.96.0.1', ports: [{ port: 80 }] }));
      h.upsert('EndpointSlice', slice('default', 'small-a', 'small', [{ port: 8080 }], eps(2)));
      h.upsert('Service', service('default', 'big', { clusterIP: '10.96.0.2', ports: [{ port: 80 }] }));
      h.upsert('EndpointSlice', slice('default', 'big-a', 'big', [{ port: 8080 }], eps(30)));
      h.synced();
      await clock.advance(0);
      // A change elsewhere: the big Service stays skipped and is not logged again.
      h.upsert('EndpointSlice', slice('default', 'small-a', 'small', [{ port: 8080 }], eps(3)));
      await clock.advance(0);
      assert.equal(daemon.syncs, 2);

      const port = daemon.servers!.metrics.port;
      const view = (await (await fetch(`http://127.0.0.1:${port}/debug/services`)).json()) as {
        ports: Array<{ service: string }>;
        skipped: Array<{ kind: string; name: string; reason: string }>;
      };
      assert.deepEqual(
        view.ports.map((p) => p.service),
        ['default/small'],
        'a skipped Service is not listed as programmed',
      );
      const reason = 'needs about 32 nft elements, more than --max-service-elements 20';
      assert.deepEqual(view.skipped, [{ kind: 'Service', name: 'default/big', reason, overBudget: true }]);
      assert.deepEqual(
        lines.filter((l) => l.object === 'default/big').map((l) => [l.msg, l.reason]),
        [['skipped invalid object', reason]],
      );
      const rules = await nft.list('ip', 'kube-nftproxy');
      assert.match(rules, /10\.96\.0\.1 \. tcp \. 80/);
      assert.doesNotMatch(rules, /10\.96\.0\.2/);
    } finally {
      await daemon.stop();
    }
  });
});
