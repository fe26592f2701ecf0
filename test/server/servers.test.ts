import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { ErrorCodes, hasCode, ProxyError } from '../../src/errors.js';
import { createLogger, silentLogger } from '../../src/log.js';
import type { ProxyState } from '../../src/model/types.js';
import { ProxyHealth } from '../../src/server/health.js';
import { createMetrics, type ProxyMetrics } from '../../src/server/metrics.js';
import { createServers, type Servers } from '../../src/server/servers.js';
import type { DaemonView, TraceQuery } from '../../src/server/view.js';
import { FakeClock } from '../support/fake-clock.js';

const STATE: ProxyState = {
  node: { name: 'node-a', ips: ['10.0.0.1'], labels: {} },
  ports: [],
  skipped: [],
};

/** A view whose answers and failures the test controls. */
class FakeView implements DaemonView {
  mode: 'nftables' | 'userspace' = 'nftables';
  fail: 'services' | 'trace' | 'rules' | 'live' | 'config' | undefined;
  traced: TraceQuery[] = [];
  /** Set by a test: live traces are available, and answer or fail as it says. */
  liveTrace?: (q: TraceQuery, seconds: number) => Promise<unknown>;
  liveTraceStatus?: () => unknown;

  state(): ProxyState | undefined {
    return STATE;
  }
  rules(): string {
    if (this.fail === 'rules') throw new Error('rules exploded');
    return 'table ip kube-nftproxy {\n}\n';
  }
  async liveRules(): Promise<string> {
    if (this.fail === 'live') throw new Error('nft list failed');
    return 'table ip kube-nftproxy { # live\n}\n';
  }
  trace(q: TraceQuery): unknown {
    if (this.fail === 'trace') throw new Error('trace exploded');
    this.traced.push(q);
    return { verdict: 'dnat', endpoints: ['10.244.1.5:8080'], masquerade: false };
  }
  services(): unknown {
    if (this.fail === 'services') throw new Error('services exploded');
    return { ports: [{ key: 'default/web:http/TCP/ipv4' }], skipped: [] };
  }
  config(): unknown {
    if (this.fail === 'config') throw new Error('config exploded');
    return { kind: 'KubeProxyConfiguration', mode: this.mode, syncPeriod: '30s' };
  }
}

interface Answer {
  status: number;
  type: string | null;
  body: string;
  headers: Headers;
}

describe('createServers', () => {
  const epoch = Date.UTC(2024, 0, 1, 0, 0, 0);
  let clock: FakeClock;
  let health: ProxyHealth;
  let metrics: ProxyMetrics;
  let view: FakeView;
  let logLines: Array<Record<string, unknown>>;
  let servers: Servers;

  async function get(which: 'healthz' | 'metrics', path: string, method = 'GET'): Promise<Answer> {
    const { port } = servers[which];
    const res = await fetch(`http://127.0.0.1:${port}${path}`, { method });
    return {
      status: res.status,
      type: res.headers.get('content-type'),
      body: await res.text(),
      headers: res.headers,
    };
  }

  beforeEach(async () => {
    clock = new FakeClock(epoch);
    health = new ProxyHealth({ healthTimeoutMs: 120_000, clock });
    metrics = createMetrics();
    view = new FakeView();
    logLines = [];
    const log = createLogger({
      level: 'debug',
      destination: { write: (line: string) => void logLines.push(JSON.parse(line)) },
    });
    servers = await createServers({
      healthzAddress: '127.0.0.1:0',
      metricsAddress: '127.0.0.1:0',
      health,
      metrics,
      view,
      log,
    });
  });

  afterEach(async () => {
    await servers.close();
  });

  it('listens on two distinct ports and reports them', () => {
    assert.equal(servers.healthz.address, '127.0.0.1');
    assert.ok(servers.healthz.port > 0 && servers.metrics.port > 0);
    assert.notEqual(servers.healthz.port, servers.metrics.port);
  });

  describe('/healthz and /livez', () => {
    it('answer 200 with kube-proxy body while healthy', async () => {
      const h = await get('healthz', '/healthz');
      assert.equal(h.status, 200);
      assert.equal(h.type, 'application/json; charset=utf-8');
      assert.equal(h.headers.get('x-content-type-options'), 'nosniff');
      const never = { lastUpdated: '0001-01-01T00:00:00.000Z', healthy: true };
      // kube-proxy 1.33's body, in its order: healthy and the per-family status included.
      assert.equal(
        h.body,
        JSON.stringify({
          lastUpdated: '2024-01-01T00:00:00.000Z',
          currentTime: '2024-01-01T00:00:00.000Z',
          nodeEligible: true,
          healthy: true,
          status: { IPv4: never, IPv6: never },
        }),
      );
      const l = await get('healthz', '/livez');
      assert.equal(l.status, 200);
      assert.equal(l.type, 'application/json; charset=utf-8');
      // /livez: the same without nodeEligible, as kube-proxy's livez handler.
      assert.equal(
        l.body,
        JSON.stringify({
          lastUpdated: '2024-01-01T00:00:00.000Z',
          currentTime: '2024-01-01T00:00:00.000Z',
          healthy: true,
          status: { IPv4: never, IPv6: never },
        }),
      );
    });

    it('answer 503 once a queued change is late, 200 again after a sync', async () => {
      await clock.advance(5000);
      health.updated();
      health.queued();
      await clock.advance(120_000);
      const h = await get('healthz', '/healthz');
      assert.equal(h.status, 503);
      // Each family unhealthy, its lastUpdated the last sync (as the top-level one while late).
      const synced = { lastUpdated: '2024-01-01T00:00:05.000Z', healthy: false };
      assert.deepEqual(JSON.parse(h.body), {
        lastUpdated: '2024-01-01T00:00:05.000Z',
        currentTime: '2024-01-01T00:02:05.000Z',
        nodeEligible: true,
        healthy: false,
        status: { IPv4: synced, IPv6: synced },
        reason: 'a change queued 120 s ago is not applied yet',
      });
      const l = await get('healthz', '/livez');
      assert.equal(l.status, 503);
      assert.deepEqual(JSON.parse(l.body).status, { IPv4: synced, IPv6: synced });
      health.updated();
      assert.equal((await get('healthz', '/healthz')).status, 200);
      assert.equal((await get('healthz', '/livez')).status, 200);
      // A node being drained fails /healthz only: its body still says the proxy is healthy.
      health.nodeEligible(false);
      const drained = await get('healthz', '/healthz');
      assert.equal(drained.status, 503);
      const body = JSON.parse(drained.body) as { nodeEligible: boolean; healthy: boolean };
      assert.deepEqual([body.nodeEligible, body.healthy], [false, true]);
    });

    it('answer 503 with the reason and the API refusals when no sync was applied after start', async () => {
      health.started();
      health.apiAccess('Node', {
        verb: 'list',
        group: '',
        resource: 'nodes',
        status: 403,
        message: 'nodes is forbidden',
        action: 'grant list and watch on nodes',
      });
      // Within the grace period: still 200, but the refusal already shows.
      const early = await get('healthz', '/healthz');
      assert.equal(early.status, 200);
      assert.equal(JSON.parse(early.body).apiErrors[0].resource, 'nodes');
      await clock.advance(120_000);
      for (const path of ['/healthz', '/livez']) {
        const r = await get('healthz', path);
        assert.equal(r.status, 503, path);
        const body = JSON.parse(r.body);
        assert.match(body.reason, /no rules applied yet, 120 s after start; .*list nodes \(HTTP 403\)/);
        assert.deepEqual(body.apiErrors, [
          {
            kind: 'Node',
            verb: 'list',
            group: '',
            resource: 'nodes',
            status: 403,
            message: 'nodes is forbidden',
            action: 'grant list and watch on nodes',
          },
        ]);
      }
    });

    it('an ineligible node fails /healthz but not /livez', async () => {
      health.nodeEligible(false);
      const h = await get('healthz', '/healthz');
      assert.equal(h.status, 503);
      assert.equal(JSON.parse(h.body).nodeEligible, false);
      assert.equal((await get('healthz', '/livez')).status, 200);
    });

    it('count answers in kubeproxy_proxy_healthz_total / _livez_total by code', async () => {
      await get('healthz', '/healthz');
      health.nodeEligible(false);
      await get('healthz', '/healthz');
      await get('healthz', '/livez');
      const text = (await get('metrics', '/metrics')).body;
      assert.match(text, /^kubeproxy_proxy_healthz_total\{code="200"\} 1$/m);
      assert.match(text, /^kubeproxy_proxy_healthz_total\{code="503"\} 1$/m);
      assert.match(text, /^kubeproxy_proxy_livez_total\{code="200"\} 1$/m);
    });

    it('are not served on the metrics address, nor metrics on the healthz address', async () => {
      assert.equal((await get('metrics', '/healthz')).status, 404);
      assert.equal((await get('healthz', '/metrics')).status, 404);
      assert.equal((await get('healthz', '/debug/rules')).status, 404);
    });

    it('answer HEAD like GET, without a body', async () => {
      const h = await get('healthz', '/healthz', 'HEAD');
      assert.equal(h.status, 200);
      assert.equal(h.body, '');
    });
  });

  describe('/metrics', () => {
    it('serves Prometheus text with kube-proxy names after some observations', async () => {
      metrics.syncDuration(true, 0.5);
      metrics.syncDuration(false, 0.01);
      metrics.lastSync(epoch);
      metrics.lastQueued(epoch + 1500);
      metrics.networkProgramming(1.2);
      metrics.pending(3, 7);
      metrics.changes(4, 9);
      metrics.changes(1, 1);
      metrics.syncFailed();
      metrics.transaction(42);
      metrics.noLocalEndpoints({ ipv4: { internal: 2, external: 5 }, ipv6: { internal: 0, external: 1 } });
      metrics.rulesetSize({ chains: 30, rules: 80, sets: 6, elements: 1200 });
      const m = await get('metrics', '/metrics');
      assert.equal(m.status, 200);
      assert.match(m.type ?? '', /^text\/plain; version=0\.0\.4/);
      const text = m.body;
      const lines: RegExp[] = [
        /^# TYPE kubeproxy_sync_proxy_rules_duration_seconds histogram$/m,
        /^# TYPE kubeproxy_sync_proxy_rules_last_timestamp_seconds gauge$/m,
        /^# TYPE kubeproxy_network_programming_duration_seconds histogram$/m,
        // One sync programs both families: its observations are recorded under each.
        ...['IPv4', 'IPv6'].flatMap((f) => [
          new RegExp(`^kubeproxy_sync_proxy_rules_duration_seconds_count\\{ip_family="${f}"\\} 2$`, 'm'),
          new RegExp(`^kubeproxy_sync_full_proxy_rules_duration_seconds_count\\{ip_family="${f}"\\} 1$`, 'm'),
          new RegExp(
            `^kubeproxy_sync_full_proxy_rules_duration_seconds_bucket\\{le="0.512",ip_family="${f}"\\} 1$`,
            'm',
          ),
          new RegExp(
            `^kubeproxy_sync_partial_proxy_rules_duration_seconds_sum\\{ip_family="${f}"\\} 0.01$`,
            'm',
          ),
          new RegExp(
            `^kubeproxy_sync_proxy_rules_last_timestamp_seconds\\{ip_family="${f}"\\} ${epoch / 1000}$`,
            'm',
          ),
          new RegExp(
            `^kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds\\{ip_family="${f}"\\} ${(epoch + 1500) / 1000}$`,
            'm',
          ),
          new RegExp(
            `^kubeproxy_network_programming_duration_seconds_bucket\\{le="0.25",ip_family="${f}"\\} 0$`,
            'm',
          ),
          new RegExp(
            `^kubeproxy_network_programming_duration_seconds_bucket\\{le="2",ip_family="${f}"\\} 1$`,
            'm',
          ),
          new RegExp(
            `^kubeproxy_network_programming_duration_seconds_bucket\\{le="300",ip_family="${f}"\\} 1$`,
            'm',
          ),
        ]),
        /^kubeproxy_sync_proxy_rules_service_changes_pending 3$/m,
        /^kubeproxy_sync_proxy_rules_endpoint_changes_pending 7$/m,
        /^# TYPE kubeproxy_sync_proxy_rules_service_changes_total counter$/m,
        /^kubeproxy_sync_proxy_rules_service_changes_total 5$/m,
        /^kubeproxy_sync_proxy_rules_endpoint_changes_total 10$/m,
        /^kubeproxy_sync_proxy_rules_no_local_endpoints_total\{ip_family="IPv4",traffic_policy="internal"\} 2$/m,
        /^kubeproxy_sync_proxy_rules_no_local_endpoints_total\{ip_family="IPv4",traffic_policy="external"\} 5$/m,
        /^kubeproxy_sync_proxy_rules_no_local_endpoints_total\{ip_family="IPv6",traffic_policy="internal"\} 0$/m,
        /^kubeproxy_sync_proxy_rules_no_local_endpoints_total\{ip_family="IPv6",traffic_policy="external"\} 1$/m,
        /^kube_nftproxy_sync_failures_total 1$/m,
        /^kube_nftproxy_nft_transaction_operations_sum 42$/m,
        /^kube_nftproxy_nft_transaction_operations_last 42$/m,
        /^kube_nftproxy_ruleset_objects\{kind="chains"\} 30$/m,
        /^kube_nftproxy_ruleset_objects\{kind="elements"\} 1200$/m,
        /^# HELP kubeproxy_sync_proxy_rules_duration_seconds SyncProxyRules latency in seconds$/m,
      ];
      for (const re of lines) assert.match(text, re);
    });

    it('counts nftables sync failures for both families and cleanup failures per family, from 0', async () => {
      const count = (text: string, what: 'sync' | 'cleanup', f: string): number => {
        const name = `kubeproxy_sync_proxy_rules_nftables_${what}_failures_total`;
        const m = new RegExp(`^${name}\\{ip_family="${f}"\\} (\\d+)$`, 'm').exec(text);
        assert.ok(m, `${name}{ip_family="${f}"} in\n${text}`);
        return Number(m[1]);
      };
      const before = (await get('metrics', '/metrics')).body;
      assert.match(before, /^# TYPE kubeproxy_sync_proxy_rules_nftables_sync_failures_total counter$/m);
      assert.match(
        before,
        /^# HELP kubeproxy_sync_proxy_rules_nftables_cleanup_failures_total Cumulative proxy nftables cleanup failures$/m,
      );
      for (const f of ['IPv4', 'IPv6'])
        assert.deepEqual([count(before, 'sync', f), count(before, 'cleanup', f)], [0, 0]);
      metrics.nftSyncFailed();
      metrics.nftCleanupFailed(['ipv6']);
      metrics.nftCleanupFailed(['ipv4', 'ipv6', 'ipv6']);
      const after = (await get('metrics', '/metrics')).body;
      assert.deepEqual(
        ['IPv4', 'IPv6'].map((f) => [count(after, 'sync', f), count(after, 'cleanup', f)]),
        [
          [1, 1],
          [1, 2],
        ],
      );
      // Ours stays apart: a sync nft refused may still have been applied without a Service.
      assert.match(after, /^kube_nftproxy_sync_failures_total 0$/m);
    });

    it('exports kubernetes_build_info from package.json, as component-base labels it', async () => {
      const { version } = JSON.parse(
        readFileSync(new URL('../../package.json', import.meta.url), 'utf8'),
      ) as {
        version: string;
      };
      const [major, minor] = version.split('.');
      const text = (await get('metrics', '/metrics')).body;
      const line = text.split('\n').find((l) => l.startsWith('kubernetes_build_info{'));
      assert.ok(line, text);
      assert.ok(line.endsWith('} 1'), line);
      const labels = Object.fromEntries([...line.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1]!, m[2]!]));
      assert.deepEqual(labels, {
        major,
        minor,
        git_version: `v${version}`,
        git_commit: 'unknown',
        git_tree_state: 'unknown',
        build_date: 'unknown',
        go_version: '',
        compiler: `node ${process.version}`,
        platform: `linux/${process.arch === 'x64' ? 'amd64' : process.arch}`,
      });
    });

    it("exports the process under the standard process_* names kube-proxy's dashboards read", async () => {
      const text = (await get('metrics', '/metrics')).body;
      for (const name of [
        'process_cpu_seconds_total',
        'process_resident_memory_bytes',
        'process_start_time_seconds',
        'process_open_fds',
        'process_max_fds',
        'process_virtual_memory_bytes',
      ]) {
        const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
        assert.ok(m, `${name} missing`);
        // CPU time counts from the registry's creation (prom-client's way): maybe 0 µs yet.
        const least = name === 'process_cpu_seconds_total' ? 0 : Number.MIN_VALUE;
        assert.ok(Number(m[1]) >= least, `${name} ${m[1]}`);
      }
      const start = Number(/^process_start_time_seconds (\S+)$/m.exec(text)![1]);
      assert.ok(Math.abs(start - (Date.now() / 1000 - process.uptime())) < 5, `start time ${start}`);
      // Node's own under prom-client's standard names; nothing under the old prefixed ones.
      assert.match(text, /^nodejs_heap_size_used_bytes \d+/m);
      assert.doesNotMatch(text, /^kube_nftproxy_(process|nodejs)_/m);
    });

    it('keeps one registry per daemon', async () => {
      const other = createMetrics();
      other.syncFailed();
      other.syncFailed();
      assert.match(await metrics.registry.metrics(), /^kube_nftproxy_sync_failures_total 0$/m);
      assert.match(await other.registry.metrics(), /^kube_nftproxy_sync_failures_total 2$/m);
    });
  });

  describe('/configz', () => {
    it("answers the view's configuration under kube-proxy's API group name, on the metrics address", async () => {
      const r = await get('metrics', '/configz');
      assert.equal(r.status, 200);
      assert.equal(r.type, 'application/json; charset=utf-8');
      assert.deepEqual(JSON.parse(r.body), {
        'kubeproxy.config.k8s.io': { kind: 'KubeProxyConfiguration', mode: 'nftables', syncPeriod: '30s' },
      });
      assert.equal((await get('healthz', '/configz')).status, 404);
      view.fail = 'config';
      assert.equal((await get('metrics', '/configz')).status, 500);
    });
  });

  describe('/debug and /proxyMode', () => {
    it('/debug/rules gives the last applied ruleset as text, ?live=1 the kernel one', async () => {
      const r = await get('metrics', '/debug/rules');
      assert.equal(r.status, 200);
      assert.equal(r.type, 'text/plain; charset=utf-8');
      assert.equal(r.body, 'table ip kube-nftproxy {\n}\n');
      const live = await get('metrics', '/debug/rules?live=1');
      assert.equal(live.status, 200);
      assert.equal(live.body, 'table ip kube-nftproxy { # live\n}\n');
      const bad = await get('metrics', '/debug/rules?live=yes');
      assert.equal(bad.status, 400);
      assert.equal(JSON.parse(bad.body).parameter, 'live');
    });

    it('/debug/services gives the view as JSON', async () => {
      const s = await get('metrics', '/debug/services');
      assert.equal(s.status, 200);
      assert.equal(s.type, 'application/json; charset=utf-8');
      assert.deepEqual(JSON.parse(s.body), view.services());
    });

    it('/debug/trace passes the validated query and gives the answer as JSON', async () => {
      const t = await get('metrics', '/debug/trace?src=192.0.2.7&dst=10.96.0.10&port=80&proto=TCP');
      assert.equal(t.status, 200);
      assert.equal(t.type, 'application/json; charset=utf-8');
      assert.deepEqual(JSON.parse(t.body), {
        verdict: 'dnat',
        endpoints: ['10.244.1.5:8080'],
        masquerade: false,
      });
      assert.deepEqual(view.traced, [
        { src: '192.0.2.7', dst: '10.96.0.10', port: 80, proto: 'tcp', from: 'outside' },
      ]);
    });

    const badTraces: Array<[string, string]> = [
      ['', 'src'],
      ['?src=nope&dst=10.96.0.10&port=80&proto=tcp', 'src'],
      ['?src=10.0.0.9&dst=10.96.0.10.1&port=80&proto=tcp', 'dst'],
      ['?src=10.0.0.9&dst=10.96.0.10&port=70000&proto=tcp', 'port'],
      ['?src=10.0.0.9&dst=10.96.0.10&port=80&proto=gre', 'proto'],
      ['?src=10.0.0.9&dst=10.96.0.10&port=80&proto=udp&from=space', 'from'],
    ];
    for (const [query, parameter] of badTraces) {
      it(`/debug/trace${query} → 400 naming ${parameter}`, async () => {
        const t = await get('metrics', `/debug/trace${query}`);
        assert.equal(t.status, 400);
        assert.equal(t.type, 'application/json; charset=utf-8');
        const body = JSON.parse(t.body);
        assert.equal(body.parameter, parameter);
        assert.match(body.error, new RegExp(`^${parameter}: `));
        assert.deepEqual(view.traced, [], 'the view is not asked');
      });
    }

    describe('/debug/trace?live=1', () => {
      const Q = '/debug/trace?src=10.244.1.50&dst=10.96.0.10&port=80&proto=tcp';
      let asked: Array<[TraceQuery, number]>;
      beforeEach(() => {
        asked = [];
        view.liveTrace = async (q, seconds) => {
          asked.push([q, seconds]);
          return { kernel: { dnat: '10.244.1.5:8080' }, agree: true };
        };
      });

      it('hands the validated packet and the default limit to the view, and answers its JSON', async () => {
        const t = await get('metrics', `${Q}&live=1`);
        assert.equal(t.status, 200);
        assert.deepEqual(JSON.parse(t.body), { kernel: { dnat: '10.244.1.5:8080' }, agree: true });
        assert.deepEqual(asked, [
          [{ src: '10.244.1.50', dst: '10.96.0.10', port: 80, proto: 'tcp', from: 'outside' }, 10],
        ]);
        assert.deepEqual(view.traced, [], 'not the model alone');
      });

      it('takes timeout= in whole seconds up to 60', async () => {
        assert.equal((await get('metrics', `${Q}&live=1&timeout=60`)).status, 200);
        assert.equal(asked[0]![1], 60);
        for (const bad of ['0', '61', '1.5', 'ten']) {
          const t = await get('metrics', `${Q}&live=1&timeout=${bad}`);
          assert.equal(t.status, 400, bad);
          assert.equal(JSON.parse(t.body).parameter, 'timeout');
        }
        const alone = await get('metrics', `${Q}&timeout=5`);
        assert.equal(alone.status, 400);
        assert.match(JSON.parse(alone.body).error, /^timeout: only with live=1/);
        assert.equal((await get('metrics', `${Q}&live=yes`)).status, 400);
        assert.equal(asked.length, 1);
      });

      it('a second live trace while one runs: 409 with the reason', async () => {
        view.liveTrace = async () => {
          throw new ProxyError(ErrorCodes.LIVE_TRACE_BUSY, 'a live trace is running already (one at a time)');
        };
        const t = await get('metrics', `${Q}&live=1`);
        assert.equal(t.status, 409);
        assert.match(JSON.parse(t.body).error, /one at a time/);
      });

      it('without live traces (userspace mode): 400 naming live', async () => {
        delete view.liveTrace;
        view.mode = 'userspace';
        const t = await get('metrics', `${Q}&live=1`);
        assert.equal(t.status, 400);
        assert.deepEqual(JSON.parse(t.body), {
          error: 'live: no live traces in userspace mode',
          parameter: 'live',
        });
      });

      it("/debug/trace/live shows the view's status, idle without one", async () => {
        assert.deepEqual(JSON.parse((await get('metrics', '/debug/trace/live')).body), { state: 'idle' });
        view.liveTraceStatus = () => ({ state: 'armed', packet: { saddr: '10.244.1.50' } });
        const t = await get('metrics', '/debug/trace/live');
        assert.equal(t.status, 200);
        assert.deepEqual(JSON.parse(t.body), { state: 'armed', packet: { saddr: '10.244.1.50' } });
      });
    });

    it('/proxyMode answers the mode as bare text', async () => {
      let p = await get('metrics', '/proxyMode');
      assert.equal(p.status, 200);
      assert.equal(p.type, 'text/plain; charset=utf-8');
      assert.equal(p.body, 'nftables');
      view.mode = 'userspace';
      p = await get('metrics', '/proxyMode');
      assert.equal(p.body, 'userspace');
    });
  });

  describe('errors', () => {
    it('unknown path → 404 JSON', async () => {
      for (const path of ['/', '/debug', '/debug/rules/', '/nope?x=1', '//x/metrics']) {
        const r = await get('metrics', path);
        assert.equal(r.status, 404, path);
        assert.equal(r.type, 'application/json; charset=utf-8');
        assert.ok(JSON.parse(r.body).error);
      }
    });

    it('non-GET → 405 with Allow', async () => {
      for (const [which, path, method] of [
        ['healthz', '/healthz', 'POST'],
        ['metrics', '/metrics', 'PUT'],
        ['metrics', '/debug/services', 'DELETE'],
      ] as const) {
        const r = await get(which, path, method);
        assert.equal(r.status, 405, `${method} ${path}`);
        assert.equal(r.headers.get('allow'), 'GET, HEAD');
        assert.ok(JSON.parse(r.body).error);
      }
    });

    for (const [fail, path] of [
      ['services', '/debug/services'],
      ['trace', '/debug/trace?src=10.0.0.1&dst=10.0.0.2&port=80&proto=tcp'],
      ['rules', '/debug/rules'],
      ['live', '/debug/rules?live=1'],
    ] as const) {
      it(`a throwing view (${fail}) → 500 JSON and a log line; the next request works`, async () => {
        view.fail = fail;
        const r = await get('metrics', path);
        assert.equal(r.status, 500);
        assert.equal(r.type, 'application/json; charset=utf-8');
        assert.ok(JSON.parse(r.body).error);
        const line = logLines.find((l) => l.msg === 'request failed');
        assert.ok(line, 'logged');
        assert.equal(line.level, 50);
        assert.equal(line.component, 'server');
        assert.ok((line.err as { message?: string }).message);
        view.fail = undefined;
        assert.equal((await get('metrics', path)).status, 200);
      });
    }

    it('a view answering undefined gives JSON null, not a broken reply', async () => {
      view.services = () => undefined;
      const r = await get('metrics', '/debug/services');
      assert.equal(r.status, 200);
      assert.equal(JSON.parse(r.body), null);
    });
  });

  describe('lifecycle', () => {
    it('close() frees both ports and may be called twice', async () => {
      const ports = [servers.healthz.port, servers.metrics.port];
      await get('metrics', '/metrics'); // leaves a keep-alive connection open
      await servers.close();
      await servers.close();
      for (const port of ports) {
        const probe = createNetServer();
        await new Promise<void>((resolve, reject) => {
          probe.once('error', reject);
          probe.listen(port, '127.0.0.1', resolve);
        });
        await new Promise<void>((resolve) => probe.close(() => resolve()));
      }
    });

    it('a port in use rejects with SERVER_LISTEN_FAILED naming the address, and frees the other', async () => {
      const busy = `127.0.0.1:${servers.metrics.port}`;
      let healthzPort = 0;
      const blocker = createNetServer();
      await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
      healthzPort = (blocker.address() as AddressInfo).port;
      await new Promise<void>((resolve) => blocker.close(() => resolve()));
      await assert.rejects(
        createServers({
          healthzAddress: `127.0.0.1:${healthzPort}`,
          metricsAddress: busy,
          health,
          metrics,
          view,
          log: silentLogger(),
        }),
        (err: unknown) =>
          hasCode(err, ErrorCodes.SERVER_LISTEN_FAILED) &&
          (err as Error).message.includes(busy) &&
          (err as Error).message.includes('address in use'),
      );
      // The healthz server that did start was closed again.
      const probe = createNetServer();
      await new Promise<void>((resolve, reject) => {
        probe.once('error', reject);
        probe.listen(healthzPort, '127.0.0.1', resolve);
      });
      await new Promise<void>((resolve) => probe.close(() => resolve()));
    });

    it('an invalid address rejects with CONFIG_INVALID', async () => {
      await assert.rejects(
        createServers({
          healthzAddress: '127.0.0.1',
          metricsAddress: '127.0.0.1:0',
          health,
          metrics,
          view,
          log: silentLogger(),
        }),
        (err: unknown) => hasCode(err, ErrorCodes.CONFIG_INVALID),
      );
    });
  });
});
