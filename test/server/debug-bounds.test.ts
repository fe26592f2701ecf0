import assert from 'node:assert/strict';
import { silentLogger } from '../../src/log.js';
import { buildState } from '../../src/model/build-state.js';
import type { ProxyState } from '../../src/model/types.js';
import { ProxyHealth } from '../../src/server/health.js';
import { createMetrics } from '../../src/server/metrics.js';
import { createServers, type Servers } from '../../src/server/servers.js';
import { describeServices, type ServicesQuery } from '../../src/server/services-view.js';
import type { DaemonView, TraceQuery } from '../../src/server/view.js';
import { service, slice } from '../support/objects.js';
import { waitFor } from '../support/wait-for.js';

/** A promise the test settles by hand. */
function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve = (): void => undefined;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

/** 200 Services with 10 endpoints each, and what was skipped. */
function bigState(): ProxyState {
  const services = [];
  const slices = [];
  for (let i = 0; i < 200; i++) {
    services.push(service('ns', `s${i}`, { clusterIP: `10.96.1.${i}`, ports: [{ port: 80 }] }));
    slices.push(
      slice(
        'ns',
        `s${i}-a`,
        `s${i}`,
        [{ port: 8080 }],
        Array.from({ length: 10 }, (_, j) => ({ ip: `10.244.${i}.${j + 1}`, nodeName: 'n1' })),
      ),
    );
  }
  const state = buildState(
    { services, slices },
    { nodeName: 'n1', nodeIPs: ['10.0.0.1'], lbAlgorithm: 'random' },
  );
  state.skipped.push({ kind: 'File', name: '/src/bomb.yaml', reason: 'YAML aliases expand past 100 nodes' });
  return state;
}

/** A view over a real state, whose /debug/services and ?live=1 answers the test can hold back. */
class HeldView implements DaemonView {
  mode = 'nftables' as const;
  state = bigState();
  text = '';
  hold: Promise<void> | undefined;
  calls = { services: [] as ServicesQuery[], rules: [] as Array<string | undefined>, live: 0 };
  rules(service?: string): string {
    this.calls.rules.push(service);
    return this.text;
  }
  async liveRules(): Promise<string> {
    this.calls.live++;
    await this.hold;
    return this.text;
  }
  trace(_q: TraceQuery): unknown {
    return {};
  }
  config(): unknown {
    return {};
  }
  async services(query?: ServicesQuery): Promise<unknown> {
    this.calls.services.push(query ?? {});
    await this.hold;
    return describeServices(this.state, undefined, query);
  }
}

describe('debug endpoints: bounds over HTTP', () => {
  let view: HeldView;
  let servers: Servers;
  const MAX = 64 * 1024;

  const get = async (path: string): Promise<{ status: number; body: string; headers: Headers }> => {
    const res = await fetch(`http://127.0.0.1:${servers.metrics.port}${path}`);
    return { status: res.status, body: await res.text(), headers: res.headers };
  };

  beforeEach(async () => {
    view = new HeldView();
    servers = await createServers({
      healthzAddress: '127.0.0.1:0',
      metricsAddress: '127.0.0.1:0',
      health: new ProxyHealth({ healthTimeoutMs: 60_000 }),
      metrics: createMetrics(),
      view,
      log: silentLogger(),
      debugMaxBytes: MAX,
    });
  });
  afterEach(async () => {
    await servers.close();
  });

  describe('one request at a time per endpoint', () => {
    for (const [path, count] of [
      ['/debug/services', () => view.calls.services.length],
      ['/debug/rules?live=1', () => view.calls.live],
    ] as const) {
      it(`${path}: a second request while one is being answered gets 429 at once`, async () => {
        const held = deferred();
        view.hold = held.promise;
        const first = get(path);
        await waitFor(() => count() === 1, { what: 'the first request to reach the view' });
        const second = await get(path);
        assert.equal(second.status, 429);
        assert.equal(second.headers.get('retry-after'), '1');
        assert.match(JSON.parse(second.body).error, /one \/debug\/\w+ request at a time/);
        assert.equal(count(), 1, 'the refused request never reached the view');
        held.resolve();
        assert.equal((await first).status, 200);
        // Released once answered: the next one is served.
        view.hold = undefined;
        assert.equal((await get(path)).status, 200);
      });
    }

    it('each endpoint has its own turn: /debug/rules answers while /debug/services is busy', async () => {
      const held = deferred();
      view.hold = held.promise;
      const services = get('/debug/services');
      await waitFor(() => view.calls.services.length === 1, { what: 'the services request' });
      assert.equal((await get('/debug/rules')).status, 200);
      assert.equal((await get('/debug/trace?src=10.0.0.1&dst=10.96.1.1&port=80&proto=tcp')).status, 200);
      held.resolve();
      assert.equal((await services).status, 200);
    });
  });

  describe('?service=namespace/name', () => {
    it('/debug/services lists that Service only', async () => {
      const r = await get('/debug/services?service=ns/s7');
      assert.equal(r.status, 200);
      const body = JSON.parse(r.body) as { ports: Array<{ service: string }>; truncated?: unknown };
      assert.deepEqual(
        body.ports.map((p) => p.service),
        ['ns/s7'],
      );
      assert.equal(body.truncated, undefined);
      assert.deepEqual(view.calls.services, [{ service: 'ns/s7', maxBytes: MAX }]);
    });

    it('/debug/rules passes it to the view', async () => {
      view.text = 'add element ip kube-nftproxy cluster-ips { 10.96.1.7 }\n';
      const r = await get('/debug/rules?service=ns/s7');
      assert.equal(r.status, 200);
      assert.equal(r.body, view.text);
      assert.deepEqual(view.calls.rules, ['ns/s7']);
    });

    for (const bad of ['s7', 'ns/', '/s7', 'ns/s7/x', 'NS/s7', '../etc', `ns/${'a'.repeat(254)}`, '']) {
      it(`${JSON.stringify(bad.length > 20 ? `${bad.slice(0, 12)}…` : bad)} → 400 naming the parameter, on both endpoints`, async () => {
        for (const path of ['/debug/services', '/debug/rules']) {
          const r = await get(`${path}?service=${encodeURIComponent(bad)}`);
          assert.equal(r.status, 400, path);
          assert.equal(JSON.parse(r.body).parameter, 'service');
        }
        assert.equal(view.calls.services.length + view.calls.rules.length, 0);
      });
    }

    it('not with ?live=1, which reads the kernel whole', async () => {
      const r = await get('/debug/rules?live=1&service=ns/s1');
      assert.equal(r.status, 400);
      assert.equal(JSON.parse(r.body).parameter, 'service');
    });
  });

  describe('size cap', () => {
    it('/debug/services stops at the cap with a marker that says what it left out', async () => {
      const r = await get('/debug/services');
      assert.equal(r.status, 200);
      assert.equal(r.headers.get('x-truncated'), 'true');
      const bytes = Buffer.byteLength(r.body);
      assert.ok(bytes <= MAX && bytes > MAX - 4096, `${bytes} bytes`);
      const body = JSON.parse(r.body) as {
        truncated: {
          ports: { shown: number; total: number };
          skipped: { shown: number; total: number };
          hint: string;
        };
        ports: unknown[];
        skipped: Array<{ name: string }>;
      };
      assert.equal(body.truncated.ports.total, 200);
      assert.ok(
        body.truncated.ports.shown > 0 && body.truncated.ports.shown < 200,
        JSON.stringify(body.truncated),
      );
      assert.equal(body.ports.length, body.truncated.ports.shown);
      assert.match(body.truncated.hint, /\?service=namespace\/name/);
      // The skipped file is listed before any port.
      assert.deepEqual(body.truncated.skipped, { shown: 1, total: 1 });
      assert.equal(body.skipped[0]!.name, '/src/bomb.yaml');
    });

    it('/debug/rules cuts at a line end within the cap and ends with an nft comment saying so', async () => {
      const line = 'add element ip kube-nftproxy cluster-ips { 10.96.1.1 }\n';
      view.text = line.repeat(Math.ceil((2 * MAX) / line.length));
      const r = await get('/debug/rules');
      assert.equal(r.headers.get('x-truncated'), 'true');
      const lines = r.body.split('\n');
      const marker = lines.at(-2)!;
      assert.match(marker, new RegExp(`^# truncated: \\d+ of ${view.text.length} bytes shown; \\?service=`));
      assert.ok(r.body.length <= MAX, `${r.body.length}`);
      const kept = r.body.slice(0, r.body.length - marker.length - 1);
      assert.ok(view.text.startsWith(kept) && kept.endsWith('\n'));
    });

    it('answers under the cap are whole and unmarked', async () => {
      view.text = 'table ip kube-nftproxy {\n}\n';
      const r = await get('/debug/rules');
      assert.equal(r.body, view.text);
      assert.equal(r.headers.get('x-truncated'), null);
    });
  });
});
