import assert from 'node:assert/strict';
import { systemClock, type Clock, type ClockTimer } from '../../src/util/clock.js';
import { createLogger, silentLogger, type Logger } from '../../src/log.js';
import { createKubeSource, PROXY_LABEL_SELECTOR } from '../../src/watch/kube-source.js';
import type { AccessProblem, Kind, KindMap, Source, SourceHandler } from '../../src/watch/source.js';
import { LAST_APPLIED_ANNOTATION } from '../../src/watch/trim-object.js';
import {
  FORBIDDEN_USER,
  parseLabelSelector,
  TestApiServer,
  type ApiKind,
  type StoredObject,
} from '../support/api-server.js';
import { waitFor } from '../support/wait-for.js';

const NODE = 'node-a';
const KINDS: Kind[] = ['Service', 'EndpointSlice', 'Node'];

/** Records what a source delivers, and counts every repeat or spurious removal. */
class RecordingHandler implements SourceHandler {
  readonly view: Record<Kind, Map<string, KindMap[Kind]>> = {
    Service: new Map(),
    EndpointSlice: new Map(),
    Node: new Map(),
    ServiceCIDR: new Map(),
  };
  /** Every call, in order: "upsert Service ns/name@rv", "remove ...", "synced". */
  readonly calls: string[] = [];
  readonly problems: string[] = [];
  duplicates = 0;
  spuriousRemoves = 0;
  syncedCount = 0;

  upsert<K extends Kind>(kind: K, object: KindMap[K]): void {
    const key = keyOf(object.metadata?.namespace ?? '', object.metadata?.name ?? '');
    const rv = object.metadata?.resourceVersion;
    if (this.view[kind].get(key)?.metadata?.resourceVersion === rv) this.duplicates++;
    this.view[kind].set(key, object);
    this.calls.push(`upsert ${kind} ${key}@${rv}`);
  }

  remove(kind: Kind, namespace: string, name: string): void {
    const key = keyOf(namespace, name);
    if (!this.view[kind].delete(key)) this.spuriousRemoves++;
    this.calls.push(`remove ${kind} ${key}`);
  }

  synced(): void {
    this.syncedCount++;
    this.calls.push('synced');
  }

  problem(what: string): void {
    this.problems.push(what);
  }

  /** Every denied() call: the refusal, or undefined when it ended. */
  readonly denials: Array<[Kind, AccessProblem | undefined]> = [];

  denied(kind: Kind, problem: AccessProblem | undefined): void {
    this.denials.push([kind, problem]);
  }

  get<K extends Kind>(kind: K, key: string): KindMap[K] | undefined {
    return this.view[kind].get(key) as KindMap[K] | undefined;
  }

  /** key → resourceVersion, sorted. */
  versions(kind: Kind): Array<[string, string | undefined]> {
    return [...this.view[kind].entries()]
      .map(([k, o]) => [k, o.metadata?.resourceVersion] as [string, string | undefined])
      .sort(byKey);
  }
}

/** A clock that counts its pending timers, so a test can check that stop() leaves none. */
class CountingClock implements Clock {
  readonly pending = new Set<ClockTimer>();
  now(): number {
    return systemClock.now();
  }
  setTimeout(fn: () => void, ms: number): ClockTimer {
    const t = systemClock.setTimeout(() => {
      this.pending.delete(t);
      fn();
    }, ms);
    this.pending.add(t);
    return t;
  }
  clearTimeout(t: ClockTimer): void {
    this.pending.delete(t);
    systemClock.clearTimeout(t);
  }
}

function keyOf(namespace: string, name: string): string {
  return namespace ? `${namespace}/${name}` : name;
}

function byKey<T extends [string, unknown]>(a: T, b: T): number {
  return a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0;
}

const proxied = parseLabelSelector(PROXY_LABEL_SELECTOR);

/** What the source should deliver of the server's objects: kube-proxy's selection. */
function expected(server: TestApiServer, kind: ApiKind): Array<[string, string | undefined]> {
  return server
    .objects(kind)
    .filter((o) => (kind === 'Node' ? o.metadata?.name === NODE : proxied(o.metadata?.labels ?? {})))
    .map(
      (o) =>
        [keyOf(o.metadata?.namespace ?? '', o.metadata?.name ?? ''), o.metadata?.resourceVersion] as [
          string,
          string | undefined,
        ],
    )
    .sort(byKey);
}

function inSync(h: RecordingHandler, server: TestApiServer): boolean {
  return KINDS.every((k) => JSON.stringify(h.versions(k)) === JSON.stringify(expected(server, k)));
}

/** The final view is the server's objects, and nothing was delivered twice or removed unseen. */
async function assertConverged(h: RecordingHandler, server: TestApiServer): Promise<void> {
  await waitFor(() => inSync(h, server), {
    what: 'the handler to see what the server has',
    timeoutMs: 60_000,
  });
  for (const k of KINDS) assert.deepEqual(h.versions(k), expected(server, k), k);
  assert.equal(h.duplicates, 0, `duplicates in ${h.calls.join('\n')}`);
  assert.equal(h.spuriousRemoves, 0, 'removes of objects never delivered');
  assert.equal(h.syncedCount, 1);
}

function service(ns: string, name: string, labels: Record<string, string> = {}, port = 80): StoredObject {
  return {
    metadata: { namespace: ns, name, labels },
    spec: {
      type: 'ClusterIP',
      clusterIP: '10.96.0.10',
      ports: [{ name: 'http', protocol: 'TCP', port, targetPort: 8080 }],
    },
  };
}

function slice(
  ns: string,
  name: string,
  svc: string,
  ips: string[],
  labels: Record<string, string> = {},
): StoredObject {
  return {
    metadata: { namespace: ns, name, labels: { 'kubernetes.io/service-name': svc, ...labels } },
    addressType: 'IPv4',
    endpoints: ips.map((ip) => ({
      addresses: [ip],
      conditions: { ready: true, serving: true, terminating: false },
      nodeName: NODE,
    })),
    ports: [{ name: 'http', protocol: 'TCP', port: 8080 }],
  };
}

function node(name: string): StoredObject {
  return {
    metadata: { name, labels: { 'kubernetes.io/hostname': name } },
    status: { addresses: [{ type: 'InternalIP', address: '192.168.0.1' }] },
  };
}

describe('kube source (real client-node against a test API server)', function () {
  let server: TestApiServer;
  let source: Source | undefined;
  let h: RecordingHandler;

  beforeEach(async function () {
    server = await TestApiServer.create({ bookmarkIntervalMs: 100 });
    server.create('Node', node(NODE));
    server.create('Node', node('node-b'));
    server.create('Service', service('default', 'web'));
    server.create('Service', service('default', 'api'));
    server.create('EndpointSlice', slice('default', 'web-abc', 'web', ['10.0.0.1', '10.0.0.2']));
    server.create('EndpointSlice', slice('default', 'api-abc', 'api', ['10.0.1.1']));
    h = new RecordingHandler();
  });

  afterEach(async function () {
    await source?.stop();
    source = undefined;
    await server.close();
  });

  async function startSource(
    extra: { watchdogMs?: number; clock?: Clock; log?: Logger } = {},
  ): Promise<void> {
    source = createKubeSource({
      kubeConfig: server.kubeConfig(),
      nodeName: NODE,
      log: extra.log ?? silentLogger(),
      watchdogMs: extra.watchdogMs ?? 0,
      backoff: { initialMs: 50, maxMs: 400 },
      ...(extra.clock ? { clock: extra.clock } : {}),
    });
    await source.start(h);
  }

  it('lists everything, then calls synced once', async function () {
    await startSource();
    await waitFor(() => h.syncedCount > 0, { what: 'synced' });
    const synced = h.calls.indexOf('synced');
    // Every object of the initial lists was delivered before synced.
    for (const k of KINDS) {
      for (const [key] of expected(server, k)) {
        const at = h.calls.findIndex((c) => c.startsWith(`upsert ${k} ${key}@`));
        assert.ok(at >= 0 && at < synced, `${k} ${key} before synced`);
      }
    }
    const web = h.get('Service', 'default/web');
    assert.ok(web);
    assert.equal(web.kind, 'Service');
    assert.equal(web.apiVersion, 'v1');
    assert.equal(web.spec?.ports?.[0]?.port, 80);
    assert.ok(!h.view.Node.has('node-b'), 'only this node');
    await assertConverged(h, server);
  });

  it('follows adds, updates and deletes', async function () {
    await startSource();
    await waitFor(() => h.syncedCount > 0, { what: 'synced' });
    const added = server.create('Service', service('prod', 'db', {}, 5432));
    await waitFor(() => h.view.Service.has('prod/db'), { what: 'the add' });
    const updated = server.update('Service', service('prod', 'db', {}, 5433));
    await waitFor(
      () => h.get('Service', 'prod/db')?.metadata?.resourceVersion === updated.metadata?.resourceVersion,
      {
        what: 'the update',
      },
    );
    assert.equal(h.get('Service', 'prod/db')?.spec?.ports?.[0]?.port, 5433);
    server.delete('Service', 'prod', 'db');
    await waitFor(() => !h.view.Service.has('prod/db'), { what: 'the delete' });
    assert.deepEqual(
      h.calls.filter((c) => c.includes('prod/db')),
      [
        `upsert Service prod/db@${added.metadata?.resourceVersion}`,
        `upsert Service prod/db@${updated.metadata?.resourceVersion}`,
        'remove Service prod/db',
      ],
    );
    server.update('Node', { ...node(NODE), spec: { podCIDR: '10.244.1.0/24' } });
    server.update('Node', { ...node('node-b'), spec: { podCIDR: '10.244.2.0/24' } });
    await assertConverged(h, server);
    assert.equal(h.get('Node', NODE)?.spec?.podCIDR, '10.244.1.0/24');
  });

  it('trims listed and watched objects of what the proxy never reads, and keeps them plain JSON', async function () {
    const managed = [{ manager: 'kubectl', operation: 'Apply', fieldsV1: { 'f:spec': { 'f:ports': {} } } }];
    const annotations = { [LAST_APPLIED_ANNOTATION]: '{"kind":"Service"}', keep: 'me' };
    const bigService = (port: number): StoredObject => {
      const svc = service('prod', 'big', {}, port);
      return { ...svc, metadata: { ...svc.metadata, managedFields: managed, annotations } };
    };
    const podRef = { kind: 'Pod', namespace: 'prod', name: 'big-0', uid: 'u-0' };
    const bigSlice = (ip: string): StoredObject => {
      const s = slice('prod', 'big-a', 'big', [ip]);
      return { ...s, endpoints: (s.endpoints as object[]).map((ep) => ({ ...ep, targetRef: podRef })) };
    };
    const images = [{ names: ['registry.example/app@sha256:00', 'registry.example/app:1'], sizeBytes: 1 }];
    const bigNode = (podCIDR: string): StoredObject => {
      const n = node(NODE);
      return { ...n, spec: { podCIDR }, status: { ...(n.status as object), images } };
    };
    // What must stay of each: the fields the model reads.
    const assertTrimmed = (): void => {
      const svc = h.get('Service', 'prod/big');
      assert.equal(svc?.metadata?.managedFields, undefined);
      assert.deepEqual(svc?.metadata?.annotations, { keep: 'me' });
      assert.equal(svc?.metadata?.name, 'big');
      const sl = h.get('EndpointSlice', 'prod/big-a');
      assert.equal(sl?.endpoints?.[0]?.targetRef, undefined);
      assert.equal(sl?.endpoints?.[0]?.nodeName, NODE);
      assert.equal(sl?.endpoints?.[0]?.conditions?.ready, true);
      const n = h.get('Node', NODE);
      assert.equal(n?.status?.images, undefined);
      assert.equal(n?.status?.addresses?.[0]?.address, '192.168.0.1');
      // Parsed JSON, not client-node's model classes (a second copy of every object).
      for (const o of [svc, sl, n, sl?.endpoints?.[0]])
        assert.equal(Object.getPrototypeOf(o), Object.prototype, 'a plain object');
    };
    server.create('Service', bigService(80));
    server.create('EndpointSlice', bigSlice('10.0.9.1'));
    server.update('Node', bigNode('10.244.1.0/24'));
    await startSource();
    // All three kinds: their informers list apart, in any order.
    await waitFor(
      () =>
        h.view.Service.has('prod/big') &&
        h.view.EndpointSlice.has('prod/big-a') &&
        h.get('Node', NODE)?.spec?.podCIDR === '10.244.1.0/24',
      { what: 'the listed objects' },
    );
    assertTrimmed();
    server.update('Service', bigService(81));
    server.update('EndpointSlice', bigSlice('10.0.9.2'));
    server.update('Node', bigNode('10.244.9.0/24'));
    await waitFor(
      () =>
        h.get('Service', 'prod/big')?.spec?.ports?.[0]?.port === 81 &&
        h.get('EndpointSlice', 'prod/big-a')?.endpoints?.[0]?.addresses?.[0] === '10.0.9.2' &&
        h.get('Node', NODE)?.spec?.podCIDR === '10.244.9.0/24',
      { what: 'the watched updates' },
    );
    assertTrimmed();
  });

  it('delivers an endpoint moving between two slices, both slices, in order', async function () {
    server.create('EndpointSlice', slice('default', 'web-def', 'web', []));
    await startSource();
    await waitFor(() => h.syncedCount > 0, { what: 'synced' });
    const from = server.update('EndpointSlice', slice('default', 'web-abc', 'web', ['10.0.0.1']));
    const to = server.update('EndpointSlice', slice('default', 'web-def', 'web', ['10.0.0.2']));
    await assertConverged(h, server);
    const first = h.calls.indexOf(`upsert EndpointSlice default/web-abc@${from.metadata?.resourceVersion}`);
    const second = h.calls.indexOf(`upsert EndpointSlice default/web-def@${to.metadata?.resourceVersion}`);
    assert.ok(first >= 0 && second > first, h.calls.join('\n'));
    const moved = h.get('EndpointSlice', 'default/web-def');
    assert.ok(moved);
    assert.deepEqual(
      moved.endpoints.map((e) => e.addresses),
      [['10.0.0.2']],
    );
  });

  it('relists after 410 Gone: removes what vanished meanwhile, repeats nothing', async function () {
    await startSource();
    await waitFor(() => h.syncedCount > 0, { what: 'synced' });
    const listsBefore = server.counters.list.Service;
    // Changes the open watches never see: they are stalled, then their history is compacted.
    server.silence();
    server.delete('Service', 'default', 'api');
    server.delete('EndpointSlice', 'default', 'api-abc');
    server.update('Service', service('default', 'web', {}, 81));
    server.create('Service', service('default', 'new'));
    server.expire();
    server.silence(false);
    await assertConverged(h, server);
    assert.ok(server.counters.list.Service > listsBefore, 'relisted');
    assert.ok(h.calls.includes('remove Service default/api'));
    assert.ok(h.calls.includes('remove EndpointSlice default/api-abc'));
    assert.ok(
      h.problems.some((p) => p.includes('410')),
      h.problems.join('\n'),
    );
    assert.equal(h.get('Service', 'default/web')?.spec?.ports?.[0]?.port, 81);
  });

  it('restarts with a growing backoff after errors, then recovers', async function () {
    server.failNext('Service', 500, 3);
    const lines: Array<{ component?: string; kind?: string; msg?: string; level?: number }> = [];
    const log = createLogger({
      level: 'info',
      destination: { write: (line: string) => void lines.push(JSON.parse(line)) },
    });
    await startSource({ log });
    await waitFor(() => h.syncedCount > 0, { what: 'synced after the failures' });
    const restarts = h.problems.filter((p) => p.startsWith('Service informer restarts'));
    assert.deepEqual(
      restarts.map((p) => /in (\d+) ms/.exec(p)?.[1]),
      ['50', '100', '200'],
      restarts.join('\n'),
    );
    assert.ok(
      restarts.every((p) => p.endsWith('HTTP 500')),
      restarts.join('\n'),
    );
    // One warning line per restart, from the component's child logger, saying why.
    const logged = lines.filter((l) => l.msg?.startsWith('Service informer restarts'));
    assert.deepEqual(
      logged.map((l) => [l.component, l.kind, l.level, l.msg]),
      restarts.map((p) => ['kube-source', 'Service', 40, p]),
    );
    server.create('Service', service('default', 'after'));
    await assertConverged(h, server);
  });

  it('reconnects after dropped watch connections without losing anything', async function () {
    await startSource();
    await waitFor(() => h.syncedCount > 0, { what: 'synced' });
    const watchesBefore = server.counters.watch.Service;
    server.dropWatches();
    server.create('Service', service('default', 'during-drop'));
    server.delete('EndpointSlice', 'default', 'web-abc');
    server.update('Service', service('default', 'api', {}, 90));
    await assertConverged(h, server);
    if (process.env.DEBUG_KUBE_SOURCE) console.log(h.problems);
    // Converged may come from a relist; the watch follows it.
    await waitFor(() => server.counters.watch.Service > watchesBefore, { what: 'a new Service watch' });
  });

  it('restarts a silent watch (watchdog) and catches up', async function () {
    await startSource({ watchdogMs: 1000 });
    await waitFor(() => h.syncedCount > 0, { what: 'synced' });
    server.silence();
    server.create('Service', service('default', 'while-silent'));
    // Only a restart (a fresh list) can deliver it: the watches receive nothing.
    await waitFor(() => h.view.Service.has('default/while-silent'), {
      what: 'the watchdog relist',
      timeoutMs: 60_000,
    });
    assert.ok(
      h.problems.some((p) => p.includes('watch silent')),
      h.problems.join('\n'),
    );
    server.silence(false);
    server.create('Service', service('default', 'after-silence'));
    await assertConverged(h, server);
  });

  it('catches up after the API server was down for a while', async function () {
    await startSource();
    await waitFor(() => h.syncedCount > 0, { what: 'synced' });
    await server.stop();
    server.delete('Service', 'default', 'web');
    server.create('Service', service('default', 'while-down'));
    server.update('EndpointSlice', slice('default', 'api-abc', 'api', ['10.0.1.1', '10.0.1.2']));
    const problems = h.problems.length;
    await waitFor(() => h.problems.slice(problems).some((p) => p.includes('ECONNREFUSED')), {
      what: 'a failed reconnect while the server is down',
    });
    await server.start();
    await assertConverged(h, server);
    assert.ok(h.calls.includes('remove Service default/web'));
  });

  it("never delivers objects outside kube-proxy's label selection", async function () {
    server.create(
      'Service',
      service('default', 'other-proxy', { 'service.kubernetes.io/service-proxy-name': 'foo' }),
    );
    server.create(
      'EndpointSlice',
      slice('default', 'headless-abc', 'headless', ['10.0.2.1'], { 'service.kubernetes.io/headless': '' }),
    );
    await startSource();
    await waitFor(() => h.syncedCount > 0, { what: 'synced' });
    // A Service that joins the other proxy leaves our view; one that leaves it joins.
    server.update(
      'Service',
      service('default', 'api', { 'service.kubernetes.io/service-proxy-name': 'foo' }),
    );
    server.update('Service', service('default', 'other-proxy'));
    await waitFor(() => h.view.Service.has('default/other-proxy') && !h.view.Service.has('default/api'), {
      what: 'selection changes',
    });
    server.create(
      'Service',
      service('default', 'late-other', { 'service.kubernetes.io/service-proxy-name': 'foo' }),
    );
    server.create('Service', service('default', 'late-ours'));
    await assertConverged(h, server);
    assert.ok(
      !h.calls.some((c) => c.includes('headless-abc') || c.includes('late-other')),
      h.calls.join('\n'),
    );
    const otherProxy = h.calls.filter((c) => c.includes('other-proxy'));
    assert.equal(otherProxy.length, 1, 'delivered only once it left the other proxy');
    assert.ok(h.calls.includes('remove Service default/api'));
  });

  it('reports a consumer that throws, and keeps delivering', async function () {
    const upsert = h.upsert.bind(h);
    h.upsert = (kind, object) => {
      if (object.metadata?.name === 'poison') throw new Error('consumer bug');
      upsert(kind, object);
    };
    server.create('Service', service('default', 'poison'));
    await startSource();
    await waitFor(() => h.syncedCount > 0, { what: 'synced' });
    server.update('Service', service('default', 'poison', {}, 81));
    server.create('Service', service('default', 'after-poison'));
    await waitFor(() => h.view.Service.has('default/after-poison'), { what: 'later objects' });
    await waitFor(
      () => h.problems.filter((p) => p.includes('default/poison: the consumer failed')).length === 2,
      {
        what: 'both failures reported',
      },
    );
    assert.ok(!h.problems.some((p) => p.includes('restarts')), h.problems.join('\n'));
  });

  it('stop() closes every watch and leaves no timer behind, even mid-backoff', async function () {
    const clock = new CountingClock();
    await startSource({ watchdogMs: 60_000, clock });
    await waitFor(() => h.syncedCount > 0 && server.openWatches === 3, { what: 'three open watches' });
    await server.stop();
    // Every informer is now waiting to retry (or about to).
    await waitFor(() => h.problems.filter((p) => p.includes('ECONNREFUSED')).length >= 3, {
      what: 'retries pending',
    });
    await source?.stop();
    source = undefined;
    assert.equal(clock.pending.size, 0, 'no pending timers');
    const calls = h.calls.length;
    await server.start();
    server.create('Service', service('default', 'after-stop'));
    // The server sees no watch come back; nothing is delivered.
    assert.equal(server.openWatches, 0);
    assert.equal(h.calls.length, calls);
  });

  it('lists first from the watch cache (resourceVersion=0), after 410 Gone as a consistent read, else from the newest version seen', async function () {
    await startSource();
    await waitFor(() => h.syncedCount > 0, { what: 'synced' });
    const lists = (kind: ApiKind) => server.requests.filter((r) => r.kind === kind && r.verb === 'list');
    // client-go's reflector: the first list may be served by the API server's watch cache.
    for (const k of KINDS) assert.equal(lists(k)[0]?.query.resourceVersion, '0', `${k}: first list`);

    // The history is compacted under a stalled watch: 410 Gone, then a relist that must not be
    // served from a cache that may be older than what was already seen.
    const before410 = lists('Service').length;
    server.silence();
    server.create('Service', service('default', 'during-410'));
    server.expire();
    server.silence(false);
    await waitFor(() => h.view.Service.has('default/during-410'), { what: 'the relist after 410' });
    const after410 = lists('Service').slice(before410);
    assert.ok(after410.length >= 1, 'relisted');
    assert.equal(after410[0]!.query.resourceVersion, undefined, 'no resourceVersion: a consistent read');

    // A restart for any other reason relists at the newest version seen: not older than that.
    const seen = Math.max(...[...h.view.Service.values()].map((o) => Number(o.metadata?.resourceVersion)));
    const beforeRestart = lists('Service').length;
    server.failNext('Service', 500);
    server.dropWatches();
    server.create('Service', service('default', 'after-restart'));
    await waitFor(() => h.view.Service.has('default/after-restart'), { what: 'the relist after a restart' });
    await assertConverged(h, server);
    const relists = lists('Service').slice(beforeRestart);
    assert.ok(relists.length >= 1, `relisted: ${JSON.stringify(server.requests.slice(-6))}`);
    const rv = relists[0]!.query.resourceVersion;
    assert.ok(rv !== undefined && rv !== '0' && Number(rv) >= seen, `relist at ${rv}, newest seen ${seen}`);
  });

  it('names each refused resource once in the log and to the handler, retries quietly, and recovers', async function () {
    server.forbid(undefined, 403);
    server.forbid('Node', 401);
    const lines: Array<Record<string, unknown>> = [];
    const log = createLogger({
      level: 'debug',
      destination: { write: (line: string) => void lines.push(JSON.parse(line)) },
    });
    await startSource({ log });
    // Several refused retries of every kind (backoff 50..400 ms), not one.
    await waitFor(() => KINDS.every((k) => server.counters.list[k] >= 4), { what: 'refused retries' });
    assert.equal(h.syncedCount, 0, 'nothing synced while refused');

    const errors = lines.filter((l) => l.level === 50);
    assert.deepEqual(errors.map((l) => l.kind).sort(), ['EndpointSlice', 'Node', 'Service'], 'one line each');
    const slices = errors.find((l) => l.kind === 'EndpointSlice')!;
    assert.deepEqual(
      [slices.verb, slices.group, slices.resource, slices.status],
      ['list', 'discovery.k8s.io', 'endpointslices', 403],
    );
    assert.match(String(slices.msg), /refuses to list endpointslices \(HTTP 403\)/);
    assert.match(
      String(slices.msg),
      /get, list and watch on endpointslices in API group "discovery\.k8s\.io"/,
    );
    assert.match(String(slices.msg), /kubectl apply -k manifests\//);
    assert.match(String(slices.apiMessage), new RegExp(`User "${FORBIDDEN_USER}" cannot list`));
    const nodes = errors.find((l) => l.kind === 'Node')!;
    assert.equal(nodes.status, 401);
    assert.match(String(nodes.msg), /rejects these credentials/);
    // The refusals replace the restart warnings; nothing else was worth a warning.
    assert.deepEqual(
      lines.filter((l) => l.level === 40).map((l) => l.msg),
      [],
    );
    assert.deepEqual(h.denials.map(([k, p]) => [k, p?.verb, p?.resource, p?.status]).sort(), [
      ['EndpointSlice', 'list', 'endpointslices', 403],
      ['Node', 'list', 'nodes', 401],
      ['Service', 'list', 'services', 403],
    ]);

    server.allow();
    await assertConverged(h, server);
    assert.deepEqual(
      h.denials
        .slice(3)
        .map(([k, p]) => [k, p])
        .sort(),
      [
        ['EndpointSlice', undefined],
        ['Node', undefined],
        ['Service', undefined],
      ],
    );
    assert.equal(lines.filter((l) => /allows list and watch again/.test(String(l.msg))).length, 3);
  });
});
