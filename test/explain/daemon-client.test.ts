import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { connectTarget, fetchServices } from '../../src/explain/daemon-client.js';
import { parseExplainArgs } from '../../src/explain/command.js';
import { ErrorCodes, hasCode } from '../../src/errors.js';

/** fetchServices against a real HTTP server on a port of its own, answering as told. */
describe('explain: reading /debug/services', () => {
  let server: Server;
  let address: string;
  let answers: Array<{ status: number; body: string }>;
  let paths: string[];

  beforeEach(async () => {
    answers = [];
    paths = [];
    server = createServer((req, res) => {
      paths.push(req.url ?? '');
      const a = answers.shift() ?? { status: 500, body: '{"error":"no answer left"}' };
      res.writeHead(a.status, { 'content-type': 'application/json' });
      res.end(a.body);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    address = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterEach(async () => {
    await new Promise<void>((r) => server.close(() => r()));
  });

  const ok = { status: 200, body: JSON.stringify({ synced: true, ports: [], skipped: [] }) };
  const noSleep = async (): Promise<void> => {};

  it('asks for the one Service, and asks again after a 429 (one request at a time)', async () => {
    answers.push({ status: 429, body: '{"error":"one at a time"}' }, ok);
    const answer = await fetchServices(address, 'kube-system/kube-dns', { sleep: noSleep });
    assert.deepEqual(answer, { synced: true, ports: [], skipped: [] });
    assert.deepEqual(paths, Array(2).fill('/debug/services?service=kube-system%2Fkube-dns'));
  });

  for (const [what, answer, pattern] of [
    [
      'an error status',
      { status: 400, body: '{"error":"service: expected namespace/name"}' },
      /HTTP 400: service: expected/,
    ],
    ['something not JSON', { status: 200, body: '<html>' }, /not JSON/],
    ['JSON of another kind', { status: 200, body: '{"a":1}' }, /not a \/debug\/services answer/],
    [
      'a daemon not synced yet',
      { status: 200, body: '{"synced":false,"ports":[],"skipped":[]}' },
      /not synced yet/,
    ],
  ] as const) {
    it(`names the address on ${what}`, async () => {
      answers.push(answer);
      await assert.rejects(fetchServices(address, 'a/b', { sleep: noSleep }), (err: Error) => {
        assert.ok(hasCode(err, ErrorCodes.EXPLAIN_DAEMON_UNAVAILABLE));
        assert.ok(err.message.includes(address), err.message);
        assert.match(err.message, pattern);
        return true;
      });
    });
  }

  it('names the address when the daemon does not answer within --timeout', async () => {
    // A server that accepts and never answers: the outcome does not depend on how long it waits.
    const silent = createServer(() => {});
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const at = `127.0.0.1:${(silent.address() as AddressInfo).port}`;
    try {
      await assert.rejects(fetchServices(at, 'a/b', { timeoutMs: 50 }), (err: Error) => {
        assert.ok(hasCode(err, ErrorCodes.EXPLAIN_DAEMON_UNAVAILABLE));
        assert.match(err.message, new RegExp(`daemon at ${at}: no answer within 50 ms`));
        return true;
      });
    } finally {
      silent.closeAllConnections();
      await new Promise<void>((r) => silent.close(() => r()));
    }
  });

  it('gives up after a few 429s', async () => {
    answers.push(...Array(5).fill({ status: 429, body: '{}' }));
    await assert.rejects(fetchServices(address, 'a/b', { sleep: noSleep }), /HTTP 429/);
  });
});

describe('explain: arguments', () => {
  it('connects to loopback for a bind-all address', () => {
    assert.deepEqual(connectTarget('0.0.0.0:10249'), { host: '127.0.0.1', port: 10249 });
    assert.deepEqual(connectTarget(':10249'), { host: '127.0.0.1', port: 10249 });
    assert.deepEqual(connectTarget('[::]:10249'), { host: '::1', port: 10249 });
    assert.deepEqual(connectTarget('[fd00::1]:9'), { host: 'fd00::1', port: 9 });
  });

  it('reads the Service, --address (or --metrics-bind-address) and --timeout', () => {
    assert.deepEqual(parseExplainArgs(['ns/web']), {
      help: false,
      service: 'ns/web',
      address: '127.0.0.1:10249',
      timeoutMs: 10_000,
    });
    assert.deepEqual(parseExplainArgs(['--metrics-bind-address=10.0.0.1:9', 'ns/web', '--timeout', '2.5']), {
      help: false,
      service: 'ns/web',
      address: '10.0.0.1:9',
      timeoutMs: 2500,
    });
    assert.equal(parseExplainArgs(['--help']).help, true);
  });

  for (const argv of [
    [],
    ['web'],
    ['NS/Web'],
    ['a/b', 'c/d'],
    ['a/b', '--address', 'nope'],
    ['a/b', '--timeout', '0'],
    ['a/b', '--x'],
    ['a/b', '--address'],
  ])
    it(`refuses ${JSON.stringify(argv)} as CONFIG_INVALID`, () => {
      assert.throws(
        () => parseExplainArgs(argv),
        (err) => hasCode(err, ErrorCodes.CONFIG_INVALID),
      );
    });
});
