import assert from 'node:assert/strict';
import { Registry } from 'prom-client';
import { createEventMetrics } from '../../src/events/event-metrics.js';
import { kubeEventSink, type EventSink } from '../../src/events/event-sink.js';
import { nodeRef, type ObjectRef } from '../../src/events/object-ref.js';
import { EventRecorder, microTime, type EventInput } from '../../src/events/recorder.js';
import { createLogger } from '../../src/log.js';
import { TestApiServer } from '../support/api-server.js';
import { FakeClock } from '../support/fake-clock.js';

const MINUTE = 60_000;

const svc = (name: string): ObjectRef => ({
  kind: 'Service',
  apiVersion: 'v1',
  namespace: 'shop',
  name,
  uid: `uid-${name}`,
});

const warning = (name: string, note = 'spec.ports: not a list'): EventInput => ({
  regarding: svc(name),
  type: 'Warning',
  reason: 'ServiceSkipped',
  action: 'ProgramRules',
  note,
});

/**
 * The recorder with the real @kubernetes/client-node EventsV1Api against the test API server,
 * which checks what a real one would (required fields, MicroTime, namespaces) and stores the
 * Events; the recorder's windows and buckets run on a fake clock, so nothing here waits on time.
 */
describe('EventRecorder through the real client', function () {
  let server: TestApiServer;
  let sink: EventSink;
  let clock: FakeClock;
  let registry: Registry;
  let lines: Array<Record<string, unknown>>;
  let recorder: EventRecorder;

  const make = (opts: { maxQueue?: number } = {}): EventRecorder =>
    new EventRecorder({
      sink,
      instance: 'kube-nftproxy-node-a',
      log: createLogger({ destination: { write: (l: string) => void lines.push(JSON.parse(l)) } }),
      clock,
      metrics: createEventMetrics(registry),
      ...opts,
    });

  const counter = async (name: string, label: string, value: string): Promise<number> => {
    const m = await registry.getSingleMetric(name)!.get();
    return m.values.find((v) => v.labels[label] === value)?.value ?? NaN;
  };

  beforeEach(async () => {
    server = await TestApiServer.create();
    sink = await kubeEventSink(server.kubeConfig());
    clock = new FakeClock();
    registry = new Registry();
    lines = [];
    recorder = make();
  });

  afterEach(async () => {
    recorder.stop();
    await server.close();
  });

  it('creates the first occurrence as an events.k8s.io/v1 Event in the object’s namespace', async () => {
    recorder.emit(warning('web'));
    await recorder.flush();
    assert.deepEqual(
      server.eventRequests.map((r) => [r.verb, r.namespace, r.contentType, r.status]),
      [['create', 'shop', 'application/json', 201]],
    );
    const [event] = server.events();
    const t0 = microTime(clock.wallNow());
    assert.match(String((event!.metadata as { name: string }).name), /^web\.[0-9a-f]+$/);
    assert.deepEqual(
      { ...event, metadata: undefined },
      {
        apiVersion: 'events.k8s.io/v1',
        kind: 'Event',
        metadata: undefined,
        eventTime: t0,
        type: 'Warning',
        reason: 'ServiceSkipped',
        action: 'ProgramRules',
        note: 'spec.ports: not a list',
        regarding: { kind: 'Service', apiVersion: 'v1', namespace: 'shop', name: 'web', uid: 'uid-web' },
        reportingController: 'kube-nftproxy',
        reportingInstance: 'kube-nftproxy-node-a',
      },
    );
    assert.equal(await counter('kube_nftproxy_events_sent_total', 'verb', 'create'), 1);
  });

  it('puts a Node’s Event (kube-proxy’s reference: uid = name) in `default`', async () => {
    recorder.emit({
      regarding: nodeRef('node-a'),
      type: 'Normal',
      reason: 'Starting',
      action: 'StartKubeNftproxy',
      note: '',
    });
    await recorder.flush();
    const [event] = server.events();
    assert.equal((event!.metadata as { namespace: string }).namespace, 'default');
    assert.deepEqual(event!.regarding, { kind: 'Node', name: 'node-a', uid: 'node-a' });
    assert.equal(event!.type, 'Normal');
  });

  it('aggregates repeats into the first Event’s series with strategic merge patches', async () => {
    recorder.emit(warning('web'));
    await recorder.flush();
    await clock.advance(10_000);
    recorder.emit(warning('web'));
    await recorder.flush();
    await clock.advance(10_000);
    recorder.emit(warning('web'));
    await recorder.flush();
    assert.deepEqual(
      server.eventRequests.map((r) => [r.verb, r.status]),
      [
        ['create', 201],
        ['patch', 200],
        ['patch', 200],
      ],
    );
    const patch = server.eventRequests[1]!;
    assert.equal(patch.contentType, 'application/strategic-merge-patch+json');
    assert.equal(patch.name, (server.events()[0]!.metadata as { name: string }).name);
    assert.deepEqual(server.eventRequests[2]!.body, {
      series: { count: 3, lastObservedTime: microTime(clock.wallNow()) },
    });
    assert.equal(server.events().length, 1, 'one Event');
    assert.deepEqual(server.events()[0]!.series, { count: 3, lastObservedTime: microTime(clock.wallNow()) });
  });

  it('lets repeats ride along with a request still queued for their Event (no extra request)', async () => {
    // 'a' goes out at once; 'b' waits behind it, and its repeats join the create that waits.
    recorder.emit(warning('a'));
    recorder.emit(warning('b'));
    recorder.emit(warning('b'));
    recorder.emit(warning('b'));
    await recorder.flush();
    assert.deepEqual(
      server.eventRequests.map((r) => [r.verb, r.name.split('.')[0]]),
      [
        ['create', 'a'],
        ['create', 'b'],
      ],
    );
    assert.deepEqual((server.eventRequests[1]!.body.series as { count: number }).count, 3);
  });

  it('tells a different note, reason or object apart: each is an Event of its own', async () => {
    recorder.emit(warning('web'));
    recorder.emit(warning('web', 'another problem'));
    recorder.emit({ ...warning('web'), reason: 'FrontendContested' });
    recorder.emit(warning('api'));
    await recorder.flush();
    assert.deepEqual(
      server.eventRequests.map((r) => r.verb),
      ['create', 'create', 'create', 'create'],
    );
    assert.equal(new Set(server.events().map((e) => (e.metadata as { name: string }).name)).size, 4);
  });

  it('ends a series quiet for six minutes (its next occurrence is a new Event)', async () => {
    recorder.emit(warning('web'));
    await recorder.flush();
    await clock.advance(6 * MINUTE);
    recorder.emit(warning('web'));
    await recorder.flush();
    assert.deepEqual(
      server.eventRequests.map((r) => r.verb),
      ['create', 'create'],
    );
    assert.equal(server.events().length, 2);
  });

  it('rate-limits a flapping object: 25 requests, then its count goes out when the series ends', async () => {
    for (let i = 0; i < 100; i++) {
      recorder.emit(warning('flappy'));
      await recorder.flush();
    }
    assert.deepEqual(
      server.eventRequests.map((r) => r.verb),
      ['create', ...Array<string>(24).fill('patch')],
      'the burst: one create, then patches, then nothing',
    );
    assert.equal(await counter('kube_nftproxy_events_dropped_total', 'reason', 'rate-limited'), 75);
    // Another object has a bucket of its own.
    recorder.emit(warning('calm'));
    await recorder.flush();
    assert.equal(server.eventRequests.at(-1)!.name.startsWith('calm.'), true);

    // Six quiet minutes end the series: its last count is sent once, beyond the bucket.
    await clock.advance(6 * MINUTE);
    await recorder.flush();
    const flappy = server.events().find((e) => (e.regarding as ObjectRef).name === 'flappy')!;
    assert.equal((flappy.series as { count: number }).count, 100);
    assert.equal(server.eventRequests.length, 27);

    // Refilled by then: one token per five minutes (six minutes passed: one).
    recorder.emit(warning('flappy'));
    recorder.emit(warning('flappy', 'something else'));
    await recorder.flush();
    assert.deepEqual(
      server.eventRequests.slice(27).map((r) => r.verb),
      ['create'],
      'one token, one request',
    );
  });

  it('creates a series again whose Event is gone (404 on patch), with its count', async () => {
    recorder.emit(warning('web'));
    await recorder.flush();
    server.expireEvents();
    recorder.emit(warning('web'));
    await recorder.flush();
    assert.deepEqual(
      server.eventRequests.map((r) => [r.verb, r.status]),
      [
        ['create', 201],
        ['patch', 404],
        ['create', 201],
      ],
    );
    assert.equal((server.events()[0]!.series as { count: number }).count, 2);
  });

  it('drops refused Events, counts them, and logs the failure once per streak', async () => {
    server.refuseEvents(403);
    recorder.emit(warning('a'));
    recorder.emit(warning('b'));
    recorder.emit(warning('c'));
    await recorder.flush();
    assert.deepEqual(
      server.eventRequests.map((r) => r.status),
      [403, 403, 403],
    );
    assert.equal(await counter('kube_nftproxy_events_dropped_total', 'reason', 'failed'), 3);
    const warned = lines.filter((l) => l.component === 'events' && l.level === 40);
    assert.equal(warned.length, 1, JSON.stringify(lines));
    assert.match(String((warned[0]!.err as { message: string }).message), /HTTP 403/);

    server.refuseEvents(undefined);
    recorder.emit(warning('d'));
    await recorder.flush();
    assert.deepEqual(
      lines.filter((l) => l.component === 'events').map((l) => l.msg),
      [warned[0]!.msg, 'Events are sent again'],
    );
    assert.equal(server.events().length, 1);
  });

  it('never queues more than maxQueue requests: the rest are dropped and counted', async () => {
    recorder.stop();
    registry = new Registry();
    recorder = make({ maxQueue: 2 });
    // The first goes out at once (in flight, off the queue); two wait; two find the queue full.
    for (const name of ['a', 'b', 'c', 'd', 'e']) recorder.emit(warning(name));
    await recorder.flush();
    assert.deepEqual(
      server.eventRequests.map((r) => r.name.split('.')[0]),
      ['a', 'b', 'c'],
    );
    assert.equal(await counter('kube_nftproxy_events_dropped_total', 'reason', 'queue-full'), 2);
  });

  it('cuts a note to the API server’s 1 kB, on a character boundary', async () => {
    recorder.emit(warning('web', 'é'.repeat(600)));
    await recorder.flush();
    assert.deepEqual(
      server.eventRequests.map((r) => r.status),
      [201],
    );
    assert.equal(server.events()[0]!.note, 'é'.repeat(512));
  });

  it('sends nothing once stopped', async () => {
    recorder.stop();
    recorder.emit(warning('web'));
    await recorder.flush();
    assert.equal(server.eventRequests.length, 0);
    assert.equal(clock.pending, 0, 'no sweep left behind');
  });
});
