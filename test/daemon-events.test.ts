import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Daemon } from '../src/daemon.js';
import { kubeEventSink } from '../src/events/event-sink.js';
import { createLogger, silentLogger } from '../src/log.js';
import { FakeNft } from '../src/rules/nft/fake.js';
import type { Operation } from '../src/rules/nft/types.js';
import { createKubeSource } from '../src/watch/kube-source.js';
import { TestApiServer, type StoredObject } from './support/api-server.js';
import { HandSource, testDaemonConfig } from './support/daemon-harness.js';
import { FakeClock } from './support/fake-clock.js';
import { node, service, slice, yamlDocs } from './support/objects.js';
import { waitFor } from './support/wait-for.js';

const NODE = 'node-a';

/** An Event as the test API server stored it: what `kubectl get events` would list. */
interface StoredEvent {
  metadata: { name: string; namespace: string };
  type: string;
  reason: string;
  action: string;
  note: string;
  regarding: { kind: string; namespace?: string; name: string; uid?: string };
  reportingController: string;
  reportingInstance: string;
  series?: { count: number };
}

/**
 * The daemon's Kubernetes Events, end to end: it reads the test API server through the real
 * client-node informers and sends its Events to the same server through the real EventsV1Api.
 * The daemon's clock is fake (a sync runs when the test advances it); the API traffic is real.
 */
describe('Daemon: Kubernetes Events through the test API server', function () {
  this.timeout(120_000);
  let server: TestApiServer;
  let clock: FakeClock;
  let daemon: Daemon | undefined;
  let blocker: net.Server | undefined;
  let dir: string | undefined;

  const events = (): StoredEvent[] => server.events() as unknown as StoredEvent[];
  const eventsFor = (name: string): StoredEvent[] => events().filter((e) => e.regarding.name === name);
  const requestsFor = (name: string): string[] =>
    server.eventRequests.filter((r) => r.name.startsWith(`${name}.`)).map((r) => r.verb);

  async function start(extra: string[] = []): Promise<Daemon> {
    const log = silentLogger();
    const d = new Daemon(testDaemonConfig(NODE, extra), {
      log,
      env: { localAddresses: ['127.0.0.1'] },
      nft: new FakeNft(),
      clock,
      source: createKubeSource({ kubeConfig: server.kubeConfig(), nodeName: NODE, log, watchdogMs: 0 }),
      eventSink: await kubeEventSink(server.kubeConfig()),
    });
    daemon = d;
    await d.start();
    await waitFor(() => d.store.isSynced, { what: 'the informers to sync' });
    await syncs(1);
    return d;
  }

  /** Runs syncs until `n` have been applied, then lets their Events go out. */
  async function syncs(n: number): Promise<void> {
    const d = daemon!;
    await waitFor(
      () => {
        void clock.advance(0);
        return d.syncs >= n;
      },
      { what: `sync ${n}` },
    );
    assert.equal(d.syncs, n, 'one sync per change');
    await d.events?.flush();
  }

  /** Apply a change on the API server and wait for the daemon's sync of it. */
  async function change(fn: () => void): Promise<void> {
    const before = daemon!.syncs;
    fn();
    await syncs(before + 1);
  }

  beforeEach(async () => {
    server = await TestApiServer.create();
    server.create('Node', node(NODE, ['127.0.0.1']) as StoredObject);
    server.create('Service', svc('web', { clusterIP: '10.96.0.10', ports: [{ port: 80 }] }));
    server.create('EndpointSlice', eps('web', 1));
    clock = new FakeClock();
  });

  afterEach(async () => {
    await daemon?.stop();
    daemon = undefined;
    await new Promise<void>((resolve) => (blocker ? blocker.close(() => resolve()) : resolve()));
    blocker = undefined;
    if (dir) rmSync(dir, { recursive: true, force: true });
    dir = undefined;
    await server.close();
  });

  it('tells the Node it started (Normal Starting, as kube-proxy), and healthy Services nothing', async () => {
    await start();
    await change(() => server.update('EndpointSlice', eps('web', 2)));
    assert.deepEqual(
      events().map((e) => [e.metadata.namespace, e.type, e.reason, e.action, e.regarding]),
      [['default', 'Normal', 'Starting', 'StartKubeNftproxy', { kind: 'Node', name: NODE, uid: NODE }]],
    );
    assert.equal(events()[0]!.reportingController, 'kube-nftproxy');
    assert.equal(events()[0]!.reportingInstance, `kube-nftproxy-${NODE}`);
    assert.equal(server.eventRequests.length, 1);
  });

  it('warns once about a skipped Service; a flapping one is aggregated and rate-limited', async () => {
    const broken = svc('broken', { clusterIP: '10.96.0.300', ports: [{ port: 80 }] });
    server.create('Service', broken);
    const d = await start();
    const uid = server.objects('Service').find((o) => o.metadata?.name === 'broken')!.metadata!.uid;
    assert.deepEqual(
      eventsFor('broken').map((e) => [e.metadata.namespace, e.type, e.reason, e.action, e.note, e.regarding]),
      [
        [
          'shop',
          'Warning',
          'ServiceSkipped',
          'ProgramRules',
          'invalid clusterIP "10.96.0.300"',
          { kind: 'Service', apiVersion: 'v1', namespace: 'shop', name: 'broken', uid },
        ],
      ],
    );
    // The problem persists through later syncs: nothing more is sent.
    for (let i = 2; i <= 4; i++) await change(() => server.update('EndpointSlice', eps('web', i)));
    assert.deepEqual(requestsFor('broken'), ['create']);

    // Mended, then broken again: the same Event, its series counted.
    const fixed = svc('broken', { clusterIP: '10.96.0.30', ports: [{ port: 80 }] });
    await change(() => server.update('Service', fixed));
    await change(() => server.update('Service', broken));
    assert.deepEqual(requestsFor('broken'), ['create', 'patch']);
    assert.equal(eventsFor('broken')[0]!.series?.count, 2);

    // Flapping on: 30 more comebacks cost the API server 25 requests in all, not 32.
    for (let i = 0; i < 30; i++) {
      await change(() => server.update('Service', fixed));
      await change(() => server.update('Service', broken));
    }
    assert.equal(requestsFor('broken').length, 25);
    assert.equal(eventsFor('broken').length, 1, 'one Event');
    assert.equal(eventsFor('broken')[0]!.series?.count, 25);
    assert.equal(d.state?.skipped.length, 1);
    assert.deepEqual(eventsFor('web'), [], 'the healthy Service: none');
  });

  it('warns the newer Service that lost a frontend, and a Service over --max-service-elements', async () => {
    const ext = { externalIPs: ['192.0.2.7'], ports: [{ port: 80 }] };
    server.create('Service', svc('older', { clusterIP: '10.96.0.21', ...ext }));
    server.create('Service', svc('newer', { clusterIP: '10.96.0.22', ...ext }));
    server.create('Service', svc('big', { clusterIP: '10.96.0.23', ports: [{ port: 80 }] }));
    server.create('EndpointSlice', eps('big', 30));
    await start(['--max-service-elements', '20']);
    await change(() => server.update('EndpointSlice', eps('web', 2)));
    assert.deepEqual(
      events()
        .filter((e) => e.type === 'Warning')
        .map((e) => [e.regarding.name, e.reason, e.note])
        .sort(),
      [
        ['big', 'ElementBudgetExceeded', 'needs about 32 nft elements, more than --max-service-elements 20'],
        [
          'newer',
          'FrontendContested',
          "externalIP 192.0.2.7 tcp/80 is shop/older's externalIP (the older Service keeps it): left out",
        ],
      ],
    );
    assert.equal(server.eventRequests.length, 3, 'Starting and the two Warnings, each once');
  });

  it('warns a Service whose healthCheckNodePort cannot be bound, once per failure streak', async () => {
    blocker = net.createServer();
    await new Promise<void>((resolve) => blocker!.listen(0, '127.0.0.1', resolve));
    const port = (blocker.address() as net.AddressInfo).port;
    server.create(
      'Service',
      svc('lb', {
        type: 'LoadBalancer',
        clusterIP: '10.96.0.40',
        externalTrafficPolicy: 'Local',
        healthCheckNodePort: port,
        ports: [{ port: 80, nodePort: 30080 }],
      }),
    );
    const d = await start();
    // Retried at every sync, and failing each time: still one Warning.
    for (let i = 2; i <= 3; i++) await change(() => server.update('EndpointSlice', eps('web', i)));
    assert.deepEqual(d.healthChecks.serving(), []);
    const warned = eventsFor('lb');
    assert.deepEqual(
      warned.map((e) => [e.type, e.reason, e.action]),
      [['Warning', 'HealthCheckNodePortBindFailed', 'ServeHealthCheck']],
    );
    // Where it listens follows --nodeport-addresses (here: every address, 0.0.0.0).
    assert.match(
      warned[0]!.note,
      new RegExp(`^healthCheckNodePort ${port} \\(ipv4\\): cannot listen on [0-9.]+:${port}: EADDRINUSE$`),
    );
    assert.deepEqual(requestsFor('lb'), ['create']);
  });

  it('warns a Service whose rules nft refused (held out), by the uid of the object the daemon holds', async () => {
    const nft = new FakeNft();
    nft.refuse((op: Operation) =>
      op.verb === 'add' && op.object.kind === 'element' && op.object.key.startsWith('10.96.0.50 ')
        ? 'Could not process rule: File exists'
        : undefined,
    );
    const source = new HandSource();
    const d = new Daemon(testDaemonConfig(NODE), {
      log: silentLogger(),
      env: { localAddresses: ['127.0.0.1'] },
      nft,
      source,
      clock,
      eventSink: await kubeEventSink(server.kubeConfig()),
    });
    daemon = d;
    await d.start();
    const h = source.handler!;
    const refused = service('shop', 'refused', { clusterIP: '10.96.0.50', ports: [{ port: 80 }] });
    refused.metadata!.uid = 'uid-refused';
    h.upsert('Node', node(NODE, ['127.0.0.1']));
    h.upsert('Service', refused);
    h.upsert('Service', service('shop', 'fine', { clusterIP: '10.96.0.51', ports: [{ port: 80 }] }));
    h.synced();
    await syncs(1);
    const warned = events().filter((e) => e.type === 'Warning');
    assert.deepEqual(
      warned.map((e) => [e.reason, e.regarding]),
      [
        [
          'ServiceSkipped',
          { kind: 'Service', apiVersion: 'v1', namespace: 'shop', name: 'refused', uid: 'uid-refused' },
        ],
      ],
    );
    assert.match(warned[0]!.note, /^nft refused its rules: /);
  });

  it('sends to the API server it watches when nothing is injected (--kubeconfig, as the CLI runs it)', async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'events-kubeconfig-'));
    const kubeconfig = path.join(dir, 'kubeconfig.yaml');
    writeFileSync(
      kubeconfig,
      [
        'apiVersion: v1',
        'kind: Config',
        `clusters: [{ name: test, cluster: { server: '${server.url}', insecure-skip-tls-verify: true } }]`,
        'users: [{ name: test, user: {} }]',
        'contexts: [{ name: test, context: { cluster: test, user: test } }]',
        'current-context: test',
        '',
      ].join('\n'),
    );
    server.create('Service', svc('broken', { clusterIP: '10.96.0.300', ports: [{ port: 80 }] }));
    const d = new Daemon(testDaemonConfig(NODE, ['--kubeconfig', kubeconfig]), {
      log: silentLogger(),
      env: { localAddresses: ['127.0.0.1'] },
      nft: new FakeNft(),
      clock,
    });
    daemon = d;
    await d.start();
    await waitFor(() => d.store.isSynced, { what: 'the informers to sync' });
    await syncs(1);
    assert.deepEqual(
      events()
        .map((e) => [e.type, e.reason, e.regarding.name])
        .sort(),
      [
        ['Normal', 'Starting', NODE],
        ['Warning', 'ServiceSkipped', 'broken'],
      ],
    );
  });

  it('sends nothing with --source, even given where to send', async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'events-source-'));
    writeFileSync(
      path.join(dir, 'objects.yaml'),
      yamlDocs([
        node(NODE, ['127.0.0.1']),
        svc('broken', { clusterIP: '10.96.0.300', ports: [{ port: 80 }] }),
      ]),
    );
    const lines: Array<Record<string, unknown>> = [];
    const d = new Daemon(testDaemonConfig(NODE, ['--source', dir]), {
      log: createLogger({ destination: { write: (l: string) => void lines.push(JSON.parse(l)) } }),
      env: { localAddresses: ['127.0.0.1'] },
      nft: new FakeNft(),
      clock,
      eventSink: await kubeEventSink(server.kubeConfig()),
    });
    daemon = d;
    await d.start();
    await syncs(1);
    assert.equal(d.state?.skipped.length, 1, 'the broken Service is skipped');
    assert.equal(d.events, undefined);
    assert.deepEqual(server.eventRequests, []);
  });
});

function svc(name: string, spec: Parameters<typeof service>[2]): StoredObject {
  return service('shop', name, spec) as StoredObject;
}

function eps(name: string, n: number): StoredObject {
  const endpoints = Array.from({ length: n }, (_, i) => ({ ip: `10.244.1.${i + 2}`, nodeName: NODE }));
  return slice('shop', `${name}-a`, name, [{ port: 8080 }], endpoints) as unknown as StoredObject;
}
