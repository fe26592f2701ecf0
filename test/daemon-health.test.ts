import assert from 'node:assert/strict';
import { Daemon } from '../src/daemon.js';
import { createLogger } from '../src/log.js';
import { FakeNft } from '../src/rules/nft/fake.js';
import { createKubeSource } from '../src/watch/kube-source.js';
import { TestApiServer, type StoredObject } from './support/api-server.js';
import { FakeClock } from './support/fake-clock.js';
import { node, service, slice } from './support/objects.js';
import { waitFor } from './support/wait-for.js';
import { testDaemonConfig } from './support/daemon-harness.js';

/**
 * The Daemon reading a test API server through the real client-node, with RBAC missing: its
 * probes must not stay green while it programs nothing. The daemon's clock (health, runner) is
 * fake, so the grace period passes when the test says so; the informers run on real time.
 */
describe('Daemon health with the API server refusing every list (RBAC missing)', function () {
  this.timeout(60_000);
  const NODE = 'node-a';
  const SYNC_PERIOD_MS = 30_000;
  let server: TestApiServer;
  let clock: FakeClock;
  let daemon: Daemon;
  let lines: Array<Record<string, unknown>>;

  const get = async (path: string): Promise<{ status: number; body: Record<string, unknown> }> => {
    const res = await fetch(`http://127.0.0.1:${daemon.servers!.healthz.port}${path}`);
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };

  beforeEach(async () => {
    server = await TestApiServer.create();
    server.create('Node', stored(node(NODE, ['10.0.0.1'])));
    server.create(
      'Service',
      stored(service('default', 'web', { clusterIP: '10.96.0.10', ports: [{ port: 80 }] })),
    );
    server.create(
      'EndpointSlice',
      stored(slice('default', 'web-a', 'web', [{ port: 8080 }], [{ ip: '10.244.1.11', nodeName: NODE }])),
    );
    server.forbid();
    clock = new FakeClock();
    lines = [];
    const log = createLogger({
      level: 'info',
      destination: { write: (line: string) => void lines.push(JSON.parse(line)) },
    });
    const config = testDaemonConfig(NODE, ['--sync-period', `${SYNC_PERIOD_MS / 1000}s`]);
    daemon = new Daemon(config, {
      log,
      env: { localAddresses: ['10.0.0.1'] },
      nft: new FakeNft(),
      clock,
      source: createKubeSource({
        kubeConfig: server.kubeConfig(),
        nodeName: NODE,
        log,
        watchdogMs: 0,
        backoff: { initialMs: 20, maxMs: 200, jitter: 0.5 },
      }),
    });
    await daemon.start();
  });

  afterEach(async () => {
    await daemon.stop();
    await server.close();
  });

  it('turns /healthz and /livez 503 after the grace period, naming the refusals; 200 once synced', async () => {
    const refused = (): unknown[] => lines.filter((l) => l.level === 50 && l.component === 'kube-source');
    await waitFor(() => refused().length === 3 && server.counters.list.Service >= 3, {
      what: 'a refusal line for each kind, and retries',
    });
    assert.deepEqual(
      refused()
        .map((l) => (l as { resource: string }).resource)
        .sort(),
      ['endpointslices', 'nodes', 'services'],
    );

    // Within the grace period (the health timeout, 2 × --sync-period): ready, refusals shown.
    const early = await get('/healthz');
    assert.equal(early.status, 200);
    assert.equal((early.body.apiErrors as unknown[]).length, 3);

    await clock.advance(2 * SYNC_PERIOD_MS);
    for (const path of ['/healthz', '/livez']) {
      const r = await get(path);
      assert.equal(r.status, 503, `${path}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.lastUpdated, '0001-01-01T00:00:00.000Z');
      assert.match(
        String(r.body.reason),
        /^no rules applied yet, 60 s after start; the API server refuses to /,
      );
      assert.match(String(r.body.reason), /list services \(HTTP 403\)/);
      const errors = r.body.apiErrors as Array<{
        kind: string;
        resource: string;
        status: number;
        action: string;
      }>;
      assert.deepEqual(
        errors.map((e) => [e.kind, e.resource, e.status]),
        [
          ['EndpointSlice', 'endpointslices', 403],
          ['Node', 'nodes', 403],
          ['Service', 'services', 403],
        ],
      );
      assert.ok(errors.every((e) => e.action.includes('kubectl apply -k manifests/')));
    }
    assert.equal(daemon.syncs, 0);

    // The role is granted: the informers list, the daemon syncs, the probes turn green.
    server.allow();
    await waitFor(() => daemon.store.isSynced, { what: 'the store to sync' });
    await clock.advance(0);
    assert.equal(daemon.syncs, 1);
    for (const path of ['/healthz', '/livez']) {
      const r = await get(path);
      assert.equal(r.status, 200, `${path}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.reason, undefined);
      assert.equal(r.body.apiErrors, undefined);
    }
  });
});

function stored(o: object): StoredObject {
  return o as StoredObject;
}
