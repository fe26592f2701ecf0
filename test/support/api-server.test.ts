import assert from 'node:assert/strict';
import http from 'node:http';
import { parseLabelSelector, TestApiServer } from './api-server.js';
import { waitFor } from './wait-for.js';

/** The test server is infrastructure other tests trust: its protocol is checked here with plain HTTP. */
describe('TestApiServer', function () {
  let server: TestApiServer;

  beforeEach(async function () {
    server = await TestApiServer.create({ bookmarkIntervalMs: 50 });
  });

  afterEach(async function () {
    await server.close();
  });

  async function get(path: string): Promise<{ status: number; body: { [k: string]: unknown } }> {
    const res = await fetch(server.url + path);
    return { status: res.status, body: (await res.json()) as { [k: string]: unknown } };
  }

  interface WatchEvent {
    type: string;
    object: { kind?: string; code?: number };
  }

  /** Open a watch and collect its events until `until` holds; then close it. */
  async function watch(path: string, until: (events: WatchEvent[]) => boolean) {
    const events: WatchEvent[] = [];
    let ended = false;
    const req = http.get(server.url + path, (res) => {
      let buf = '';
      res.on('data', (chunk: Buffer) => {
        buf += chunk.toString();
        let i: number;
        while ((i = buf.indexOf('\n')) >= 0) {
          events.push(JSON.parse(buf.slice(0, i)) as WatchEvent);
          buf = buf.slice(i + 1);
        }
      });
      res.on('end', () => (ended = true));
      res.on('error', () => (ended = true));
    });
    req.on('error', () => (ended = true));
    try {
      await waitFor(() => until(events) || ended, { what: `events on ${path}` });
    } finally {
      req.destroy();
    }
    return { events, ended };
  }

  it('lists with a resourceVersion, without kind on items, filtered by selectors', async function () {
    server.create('Service', { metadata: { namespace: 'a', name: 's1', labels: { app: 'x' } } });
    server.create('Service', { metadata: { namespace: 'b', name: 's2' } });
    const all = await get('/api/v1/services');
    assert.equal(all.body.kind, 'ServiceList');
    assert.deepEqual(all.body.metadata, { resourceVersion: server.resourceVersion });
    const items = all.body.items as Array<{ kind?: string; metadata: { name: string } }>;
    assert.deepEqual(
      items.map((i) => i.metadata.name),
      ['s1', 's2'],
    );
    assert.ok(items.every((i) => i.kind === undefined));
    const ns = await get('/api/v1/namespaces/b/services');
    assert.deepEqual(
      (ns.body.items as Array<{ metadata: { name: string } }>).map((i) => i.metadata.name),
      ['s2'],
    );
    const selected = await get('/api/v1/services?labelSelector=app%3Dx');
    assert.equal((selected.body.items as unknown[]).length, 1);
    server.create('Node', { metadata: { name: 'n1' } });
    server.create('Node', { metadata: { name: 'n2' } });
    const node = await get('/api/v1/nodes?fieldSelector=metadata.name%3Dn2');
    assert.deepEqual(
      (node.body.items as Array<{ metadata: { name: string } }>).map((i) => i.metadata.name),
      ['n2'],
    );
    assert.equal(server.counters.list.Service, 3);
    assert.equal(server.counters.list.Node, 1);
  });

  it('watches from a resourceVersion; an object leaving the selection is DELETED, joining it ADDED', async function () {
    server.create('Service', { metadata: { namespace: 'a', name: 's1' } });
    const from = server.resourceVersion;
    server.update('Service', { metadata: { namespace: 'a', name: 's1', labels: { skip: '' } } });
    server.update('Service', { metadata: { namespace: 'a', name: 's1' } });
    server.delete('Service', 'a', 's1');
    const { events } = await watch(
      `/api/v1/services?watch=true&resourceVersion=${from}&labelSelector=!skip`,
      (e) => e.length >= 3,
    );
    assert.deepEqual(
      events.map((e) => e.type),
      ['DELETED', 'ADDED', 'DELETED'],
    );
    assert.equal(events[0]?.object.kind, 'Service');
  });

  it('sends bookmarks only when asked, and nothing at all while silenced', async function () {
    const rv = server.resourceVersion;
    const { events } = await watch(
      `/api/v1/services?watch=true&resourceVersion=${rv}&allowWatchBookmarks=true`,
      (e) => e.length >= 2,
    );
    assert.deepEqual(
      events.slice(0, 2).map((e) => e.type),
      ['BOOKMARK', 'BOOKMARK'],
    );
    server.silence();
    server.create('Service', { metadata: { namespace: 'a', name: 'quiet' } });
    let got: Array<{ type: string }> = [];
    const pending = watch(
      `/api/v1/services?watch=true&resourceVersion=${rv}&allowWatchBookmarks=true`,
      (e) => {
        got = e;
        return e.length > 0;
      },
    );
    await waitFor(() => server.openWatches === 1, { what: 'the silenced watch to be open' });
    assert.equal(got.length, 0);
    server.silence(false);
    const { events: resumed } = await pending;
    assert.equal(resumed[0]?.type, 'ADDED');
  });

  it('answers a watch from before expire() with ERROR 410 and closes it', async function () {
    server.create('Service', { metadata: { namespace: 'a', name: 's1' } });
    const old = server.resourceVersion;
    server.create('Service', { metadata: { namespace: 'a', name: 's2' } });
    server.expire();
    const { events, ended } = await watch(`/api/v1/services?watch=true&resourceVersion=${old}`, () => false);
    assert.ok(ended);
    assert.equal(events.length, 1);
    assert.equal(events[0]?.type, 'ERROR');
    assert.equal(events[0]?.object.code, 410);
  });

  it('fails the next request as planned, then serves again', async function () {
    server.failNext('Service', 503);
    assert.equal((await get('/api/v1/nodes')).status, 200);
    assert.equal((await get('/api/v1/services')).status, 503);
    assert.equal((await get('/api/v1/services')).status, 200);
  });

  it('comes back on the same port after stop()', async function () {
    const url = server.url;
    await server.stop();
    await assert.rejects(fetch(url + '/version'));
    await server.start();
    assert.equal(server.url, url);
    assert.equal((await get('/version')).status, 200);
  });

  it('parses the label selector terms kube-proxy and tests use', function () {
    const cases: Array<[string, Record<string, string>, boolean]> = [
      ['!a', {}, true],
      ['!a', { a: '' }, false],
      ['a', { a: '' }, true],
      ['a=1', { a: '1' }, true],
      ['a==1', { a: '2' }, false],
      ['a!=1', {}, true],
      ['a!=1', { a: '1' }, false],
      [
        '!service.kubernetes.io/headless,!service.kubernetes.io/service-proxy-name',
        { 'service.kubernetes.io/headless': '' },
        false,
      ],
      ['!service.kubernetes.io/headless,!service.kubernetes.io/service-proxy-name', { app: 'x' }, true],
    ];
    for (const [selector, labels, want] of cases) {
      assert.equal(parseLabelSelector(selector)(labels), want, `${selector} on ${JSON.stringify(labels)}`);
    }
    assert.throws(() => parseLabelSelector('a in (1,2)'));
  });
});
