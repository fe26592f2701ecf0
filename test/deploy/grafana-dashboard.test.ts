import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Daemon } from '../../src/daemon.js';
import { repoRoot } from '../support/build-output.js';
import { startHandDaemon } from '../support/daemon-harness.js';
import { service, slice } from '../support/objects.js';
import { exposedFamilies, isExposed, promqlMetricNames, variableQueryExpr } from '../support/promql-names.js';

/** The per-Service counters of issue #15 (kube_nftproxy_service_*_total). */
const SERVICE_COUNTERS = [
  'kube_nftproxy_service_connections_total',
  'kube_nftproxy_service_no_endpoints_total',
  'kube_nftproxy_service_source_range_drops_total',
];

interface Target {
  expr: string;
  refId: string;
  datasource?: { type?: string; uid?: string };
}
interface Panel {
  id: number;
  type: string;
  title: string;
  gridPos: { h: number; w: number; x: number; y: number };
  datasource?: { type?: string; uid?: string };
  targets?: Target[];
  panels?: Panel[];
}
interface Variable {
  name: string;
  type: string;
  query: string | { query: string };
  datasource?: { type?: string; uid?: string };
}
interface Dashboard {
  uid: string;
  title: string;
  schemaVersion: number;
  panels: Panel[];
  templating: { list: Variable[] };
}

const FILE = path.join(repoRoot, 'manifests', 'grafana-dashboard.json');
const DATASOURCE = { type: 'prometheus', uid: '${datasource}' };
/** Grafana's own variables a query may use. */
const BUILT_IN = new Set(['__rate_interval', '__range', '__interval', '__all']);

const dashboard = JSON.parse(readFileSync(FILE, 'utf8')) as Dashboard;
/** Every panel, rows' collapsed children included. */
const allPanels = dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
const queryPanels = allPanels.filter((p) => p.type !== 'row');
const variableQuery = (v: Variable): string => (typeof v.query === 'string' ? v.query : v.query.query);
/** Every PromQL expression in the dashboard, with where it is. */
const expressions: Array<{ where: string; expr: string }> = [
  ...queryPanels.flatMap((p) =>
    (p.targets ?? []).map((t) => ({ where: `panel "${p.title}" ${t.refId}`, expr: t.expr })),
  ),
  ...dashboard.templating.list
    .filter((v) => v.type === 'query')
    .map((v) => ({ where: `variable $${v.name}`, expr: variableQueryExpr(variableQuery(v)) })),
];

describe('manifests/grafana-dashboard.json: a Grafana dashboard', () => {
  it('is a dashboard Grafana imports: uid, title, schemaVersion, unique panel ids', () => {
    assert.equal(typeof dashboard.uid, 'string');
    assert.ok(dashboard.uid.length > 0 && dashboard.uid.length <= 40, dashboard.uid);
    assert.equal(typeof dashboard.title, 'string');
    assert.ok(
      Number.isInteger(dashboard.schemaVersion) && dashboard.schemaVersion >= 36,
      String(dashboard.schemaVersion),
    );
    const ids = allPanels.map((p) => p.id);
    assert.ok(
      ids.every((id) => Number.isInteger(id) && id > 0),
      ids.join(),
    );
    assert.equal(new Set(ids).size, ids.length, 'panel ids repeat');
  });

  it('lays every panel on the 24-column grid without overlaps', () => {
    const boxes = dashboard.panels.map((p) => {
      const g = p.gridPos;
      assert.ok(g, `panel "${p.title}" has no gridPos`);
      for (const k of ['h', 'w', 'x', 'y'] as const)
        assert.ok(Number.isInteger(g[k]) && g[k] >= 0, `panel "${p.title}" gridPos.${k}`);
      assert.ok(g.w > 0 && g.h > 0 && g.x + g.w <= 24, `panel "${p.title}" leaves the grid`);
      return { title: p.title, ...g };
    });
    for (const [i, a] of boxes.entries())
      for (const b of boxes.slice(i + 1))
        assert.ok(
          a.x + a.w <= b.x || b.x + b.w <= a.x || a.y + a.h <= b.y || b.y + b.h <= a.y,
          `"${a.title}" and "${b.title}" overlap`,
        );
  });

  it('asks the Prometheus data source chosen in its $datasource variable, everywhere', () => {
    const ds = dashboard.templating.list.find((v) => v.name === 'datasource');
    assert.deepEqual(ds && { type: ds.type, query: ds.query }, { type: 'datasource', query: 'prometheus' });
    for (const p of queryPanels) {
      assert.deepEqual(p.datasource, DATASOURCE, `panel "${p.title}"`);
      assert.ok((p.targets ?? []).length > 0, `panel "${p.title}" has no query`);
      const refIds = p.targets!.map((t) => t.refId);
      assert.equal(new Set(refIds).size, refIds.length, `panel "${p.title}" repeats a refId`);
      for (const t of p.targets!) assert.deepEqual(t.datasource, DATASOURCE, `panel "${p.title}" ${t.refId}`);
    }
    for (const v of dashboard.templating.list.filter((x) => x.type === 'query'))
      assert.deepEqual(v.datasource, DATASOURCE, `variable $${v.name}`);
  });

  it('uses only variables it defines', () => {
    const defined = new Set(dashboard.templating.list.map((v) => v.name));
    const used = [...JSON.stringify(dashboard).matchAll(/\$\{?(\w+)/g)].map((m) => m[1]!);
    for (const name of used) assert.ok(defined.has(name) || BUILT_IN.has(name), `$${name} is not defined`);
  });

  it('shows the contract counters per Service, chosen by the namespace and service variables', () => {
    const perService = expressions.filter(({ expr }) => /kube_nftproxy_service_\w+_total/.test(expr));
    const read = new Set(perService.flatMap(({ expr }) => promqlMetricNames(expr)));
    for (const name of SERVICE_COUNTERS) assert.ok(read.has(name), `no query reads ${name}`);
    for (const { where, expr } of perService.filter((e) => e.where.startsWith('panel')))
      assert.match(expr, /namespace=~"\$namespace", service=~"\$service"/, where);
  });

  it("reads kube-proxy's sync and network programming histograms, failures, held-out and contested", () => {
    const read = new Set(expressions.flatMap(({ expr }) => promqlMetricNames(expr)));
    for (const name of [
      'kubeproxy_sync_proxy_rules_duration_seconds_bucket',
      'kubeproxy_network_programming_duration_seconds_bucket',
      'kubeproxy_sync_proxy_rules_last_timestamp_seconds',
      'kube_nftproxy_sync_failures_total',
      'kubeproxy_sync_proxy_rules_nftables_sync_failures_total',
      'kube_nftproxy_services_held_out',
      'kube_nftproxy_contested_frontends',
    ])
      assert.ok(read.has(name), `no query reads ${name}`);
  });
});

/** Every metric name the dashboard reads, against what a running daemon's /metrics exposes. */
describe("manifests/grafana-dashboard.json against the daemon's /metrics", function () {
  this.timeout(60_000);
  const NODE = 'node-a';
  let daemon: Daemon;
  let families: Map<string, string>;

  before(async () => {
    const started = await startHandDaemon({ node: NODE, flags: ['--sync-period', '30s'] });
    daemon = started.daemon;
    const { handler: h, clock } = started;
    h.upsert(
      'Service',
      service('shop', 'web', { clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80 }] }),
    );
    h.upsert(
      'EndpointSlice',
      slice('shop', 'web-a', 'web', [{ name: 'http', port: 80 }], [{ ip: '10.244.1.11', nodeName: NODE }]),
    );
    h.synced();
    await clock.advance(0);
    assert.equal(daemon.syncs, 1);
    const res = await fetch(`http://127.0.0.1:${daemon.servers!.metrics.port}/metrics`);
    assert.equal(res.status, 200);
    families = exposedFamilies(await res.text());
  });

  after(async () => {
    await daemon?.stop();
  });

  it('names only metrics the daemon exports', () => {
    assert.ok(families.size > 30, [...families.keys()].join(' '));
    const missing = expressions.flatMap(({ where, expr }) =>
      promqlMetricNames(expr)
        .filter((name) => !isExposed(name, families))
        .map((name) => `${where}: ${name}`),
    );
    assert.deepEqual(missing, []);
    assert.ok(expressions.length > 30, String(expressions.length));
  });

  it('exports the per-Service counters the dashboard reads', () => {
    for (const name of SERVICE_COUNTERS) assert.ok(families.has(name), name);
  });
});

describe('promqlMetricNames', () => {
  for (const [expr, names] of [
    [
      'histogram_quantile(0.99, sum by (le, instance) (rate(a_seconds_bucket{x=~"$v", y="f(z)"}[$__rate_interval])))',
      ['a_seconds_bucket'],
    ],
    ['time() - max by (instance) (last_ts{instance=~"$instance"})', ['last_ts']],
    ['sum(rate(a_total[5m])) / on (instance) group_left (node) b_info offset 1h', ['a_total', 'b_info']],
    ['topk(20, sum without (pod) (increase(c_total[$__range]))) > 1e3 and bool d', ['c_total', 'd']],
    ['a:recorded:rate5m * 2', ['a:recorded:rate5m']],
  ] as const)
    it(`reads ${JSON.stringify(names)} in ${expr}`, () => {
      assert.deepEqual(promqlMetricNames(expr).sort(), [...names].sort());
    });

  it('reads the series of label_values(EXPR, label), not the label', () => {
    assert.equal(variableQueryExpr('label_values(m{a=~"$a"}, service)'), 'm{a=~"$a"}');
    assert.deepEqual(promqlMetricNames(variableQueryExpr('label_values(m{a=~"$a"}, service)')), ['m']);
  });
});
