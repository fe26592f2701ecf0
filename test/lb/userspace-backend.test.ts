import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import dgram from 'node:dgram';
import net from 'node:net';
import { ErrorCodes, hasCode } from '../../src/errors.js';
import { silentLogger } from '../../src/log.js';
import { UserspaceBackend, type ListenerInfo } from '../../src/lb/userspace-backend.js';
import {
  closeServer,
  deadPort,
  endpoint,
  fetchName,
  listen,
  nameServer,
  seededRandom,
  servicePort,
  state,
  tally,
  udpNameServer,
} from './support.js';

describe('userspace backend', () => {
  const cleanup: Array<() => Promise<void> | void> = [];
  let now = 0;
  const clock = { now: () => now };

  function backend(extra: Partial<ConstructorParameters<typeof UserspaceBackend>[0]> = {}): UserspaceBackend {
    const b = new UserspaceBackend({
      log: silentLogger(),
      bindMode: 'loopback',
      clock,
      random: seededRandom(42),
      sweepIntervalMs: 0,
      ...extra,
    });
    cleanup.push(() => b.close());
    return b;
  }
  async function names(n: number): Promise<Array<{ name: string; port: number }>> {
    const out = [];
    for (let i = 0; i < n; i++) {
      const s = await nameServer(`ep${i}`);
      cleanup.push(() => closeServer(s.server));
      out.push({ name: `ep${i}`, port: s.port });
    }
    return out;
  }
  function only(b: UserspaceBackend, protocol: 'TCP' | 'UDP' = 'TCP'): ListenerInfo {
    const l = b.listeners().filter((x) => x.protocol === protocol);
    assert.equal(l.length, 1);
    return l[0]!;
  }

  beforeEach(() => {
    now = 0;
  });
  afterEach(async () => {
    for (const f of cleanup.splice(0).reverse()) await f();
  });

  it('reaches every endpoint and nothing else over 30 connections', async () => {
    const eps = await names(3);
    const b = backend();
    await b.sync(
      state([
        servicePort(
          'web',
          eps.map((e) => endpoint(e.port)),
        ),
      ]),
    );
    const l = only(b);
    assert.equal(l.address, '127.0.0.1');
    assert.ok(l.port > 0);
    const got = await Promise.all(Array.from({ length: 30 }, () => fetchName(l.port)));
    assert.deepEqual([...tally(got).keys()].sort(), ['ep0', 'ep1', 'ep2']);
  });

  it('reaches every endpoint with maglev too (flows differ by client port)', async () => {
    const eps = await names(3);
    const b = backend({ maglevSeed: 99 });
    await b.sync(
      state([
        servicePort(
          'web',
          eps.map((e) => endpoint(e.port)),
          { lbAlgorithm: 'maglev' },
        ),
      ]),
    );
    const got = await Promise.all(Array.from({ length: 60 }, () => fetchName(only(b).port)));
    assert.deepEqual([...tally(got).keys()].sort(), ['ep0', 'ep1', 'ep2']);
  });

  it('skips a dead endpoint', async () => {
    const eps = await names(2);
    const dead = await deadPort();
    const b = backend();
    await b.sync(state([servicePort('web', [endpoint(dead), ...eps.map((e) => endpoint(e.port))])]));
    const got = await Promise.all(Array.from({ length: 30 }, () => fetchName(only(b).port)));
    assert.deepEqual([...tally(got).keys()].sort(), ['ep0', 'ep1']);
  });

  it('keeps a client on one endpoint with ClientIP affinity until the timeout passes', async () => {
    const eps = await names(3);
    const b = backend();
    await b.sync(
      state([
        servicePort(
          'web',
          eps.map((e) => endpoint(e.port)),
          { affinitySeconds: 10 },
        ),
      ]),
    );
    const port = only(b).port;
    const pinned = [];
    for (let i = 0; i < 30; i++) pinned.push(await fetchName(port));
    assert.equal(tally(pinned).size, 1);
    const later = [];
    for (let i = 0; i < 30; i++) {
      now += 10_001; // every connection finds the previous pin expired
      later.push(await fetchName(port));
    }
    assert.equal(tally(later).size, 3);
  });

  it('refuses a flood to a port without endpoints at once: every connection is reset, none hangs', async () => {
    const b = backend();
    await b.sync(state([servicePort('empty', [])]));
    const port = only(b).port;
    const outcomes = await Promise.all(
      Array.from(
        { length: 200 },
        () =>
          new Promise<string>((resolve) => {
            const c = net.connect(port, '127.0.0.1');
            let outcome = 'closed';
            c.on('data', () => (outcome = 'data'));
            c.on('error', (err: NodeJS.ErrnoException) => (outcome = err.code ?? 'error'));
            c.on('close', () => resolve(outcome));
          }),
      ),
    );
    const t = tally(outcomes);
    assert.equal(t.get('data'), undefined);
    assert.equal(
      (t.get('ECONNRESET') ?? 0) + (t.get('closed') ?? 0) + (t.get('EPIPE') ?? 0),
      200,
      [...t].join(),
    );
  });

  it('propagates half-close both ways', async () => {
    // Server 1 answers after the client's FIN; server 2 sends FIN first and still reads.
    const counter = net.createServer({ allowHalfOpen: true }, (s) => {
      let n = 0;
      s.on('data', (d: Buffer) => (n += d.length));
      s.on('end', () => s.end(`got ${n}`));
    });
    let heard: (text: string) => void = () => {};
    const late = new Promise<string>((resolve) => (heard = resolve));
    const early = net.createServer({ allowHalfOpen: true }, (s) => {
      let got = '';
      s.end('bye');
      s.on('data', (d: Buffer) => (got += d.toString()));
      s.on('end', () => heard(got));
    });
    const p1 = await listen(counter);
    const p2 = await listen(early);
    cleanup.push(
      () => closeServer(counter),
      () => closeServer(early),
    );
    const b = backend();
    await b.sync(
      state([servicePort('counter', [endpoint(p1)]), servicePort('early', [endpoint(p2)], { port: 81 })]),
    );
    const [lc, le] = b.listeners();
    const reply = await new Promise<string>((resolve, reject) => {
      const c = net.connect({ port: lc!.port, host: '127.0.0.1', allowHalfOpen: true });
      let text = '';
      c.on('error', reject);
      c.on('data', (d: Buffer) => (text += d.toString()));
      c.on('end', () => resolve(text));
      c.end(Buffer.alloc(100_000, 1));
    });
    assert.equal(reply, 'got 100000');
    await new Promise<void>((resolve, reject) => {
      const c = net.connect({ port: le!.port, host: '127.0.0.1', allowHalfOpen: true });
      c.on('error', reject);
      c.on('data', () => {});
      c.on('end', () => c.end('late words'));
      c.on('close', () => resolve());
    });
    assert.equal(await late, 'late words');
  });

  it('lets a removed endpoint finish its transfer byte-exact while new connections go elsewhere', async () => {
    const payload = Buffer.alloc(16 << 20);
    for (let i = 0; i < payload.length; i += 4) payload.writeUInt32LE(Math.imul(i, 2654435761) >>> 0, i);
    const bulk = net.createServer((s) => s.end(payload));
    const bulkPort = await listen(bulk);
    const [other] = await names(1);
    cleanup.push(() => closeServer(bulk));
    const b = backend();
    await b.sync(state([servicePort('web', [endpoint(bulkPort)])]));
    const port = only(b).port;

    const hash = createHash('sha256');
    let received = 0;
    const c = net.connect(port, '127.0.0.1');
    const done = new Promise<void>((resolve, reject) => {
      c.on('error', reject);
      c.on('end', () => resolve());
    });
    await new Promise<void>((resolve) =>
      c.once('data', (d: Buffer) => {
        c.pause();
        hash.update(d);
        received += d.length;
        resolve();
      }),
    );
    assert.ok(received < payload.length, 'still mid-stream');

    await b.sync(state([servicePort('web', [endpoint(other!.port)])]));
    const fresh = await Promise.all(Array.from({ length: 10 }, () => fetchName(port)));
    assert.deepEqual([...tally(fresh).keys()], ['ep0']);

    c.on('data', (d: Buffer) => {
      hash.update(d);
      received += d.length;
    });
    c.resume();
    await done;
    assert.equal(received, payload.length);
    assert.equal(hash.digest('hex'), createHash('sha256').update(payload).digest('hex'));
  });

  it('stops reading the endpoint while the client does not read, and resumes when it does', async () => {
    // The endpoint writes for as long as the kernel takes bytes. A proxy that kept reading
    // would let it go on forever; with backpressure the whole path fills and stalls.
    let sent = (): number => 0;
    const block = Buffer.alloc(1 << 20, 7);
    const endless = net.createServer((s) => {
      s.on('error', () => {});
      sent = () => s.bytesWritten - s.writableLength;
      const pump = (): void => {
        while (!s.destroyed && s.write(block));
      };
      s.on('drain', pump);
      pump();
    });
    const p = await listen(endless);
    cleanup.push(() => closeServer(endless));
    const b = backend({ highWaterMark: 64 * 1024 });
    await b.sync(state([servicePort('endless', [endpoint(p)])]));
    const c = net.connect(only(b).port, '127.0.0.1');
    cleanup.push(() => void c.destroy());
    c.on('error', () => {});
    await new Promise((resolve) => c.once('data', resolve));
    c.pause();

    let last = -1;
    for (let i = 0; i < 50 && sent() !== last; i++) {
      last = sent();
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    assert.equal(sent(), last, `the endpoint never stalled: ${sent()} bytes sent`);

    let more = 0;
    c.on('data', (d: Buffer) => (more += d.length));
    c.resume();
    while (sent() < last + (32 << 20)) await new Promise((resolve) => setTimeout(resolve, 20));
    assert.ok(more > 0);
  });

  it('closes idle TCP connections by the injected clock', async () => {
    const echo = net.createServer((s) => s.pipe(s));
    const p = await listen(echo);
    cleanup.push(() => closeServer(echo));
    const b = backend({ tcpIdleTimeoutMs: 60_000 });
    await b.sync(state([servicePort('echo', [endpoint(p)])]));
    const c = net.connect(only(b).port, '127.0.0.1');
    const closed = new Promise<void>((resolve) => c.on('close', () => resolve()));
    c.on('error', () => {});
    c.write('ping');
    await new Promise((resolve) => c.once('data', resolve));
    b.sweepIdle(); // sees the ping: still active
    now += 59_000;
    b.sweepIdle();
    assert.equal(only(b).active, 1, 'not idle long enough');
    now += 2_000;
    b.sweepIdle();
    await closed;
    assert.equal(only(b).active, 0);
  });

  it('relays UDP: replies reach the client from the service address; sessions idle out', async () => {
    const a = await udpNameServer('u0');
    const bSrv = await udpNameServer('u1');
    cleanup.push(
      () => void a.socket.close(),
      () => void bSrv.socket.close(),
    );
    const b = backend({ udpIdleTimeoutMs: 30_000 });
    await b.sync(state([servicePort('dns', [endpoint(a.port), endpoint(bSrv.port)], { protocol: 'UDP' })]));
    const l = only(b, 'UDP');
    const client = dgram.createSocket('udp4');
    cleanup.push(() => void client.close());
    await new Promise<void>((resolve) => client.bind(0, '127.0.0.1', resolve));
    const ask = (msg: string): Promise<{ text: string; from: dgram.RemoteInfo }> =>
      new Promise((resolve) => {
        client.once('message', (m, from) => resolve({ text: m.toString(), from }));
        client.send(msg, l.port, '127.0.0.1');
      });
    const r1 = await ask('one');
    assert.match(r1.text, /^u[01]:one$/);
    assert.equal(r1.from.address, '127.0.0.1');
    assert.equal(r1.from.port, l.port);
    const r2 = await ask('two');
    assert.equal(r2.text.slice(0, 2), r1.text.slice(0, 2), 'one session, one endpoint');
    assert.equal(only(b, 'UDP').active, 1);
    b.sweepIdle();
    now += 30_000;
    b.sweepIdle();
    assert.equal(only(b, 'UDP').active, 0);
    assert.match((await ask('three')).text, /^u[01]:three$/);
  });

  it('drops UDP without endpoints and ends sessions whose endpoint left', async () => {
    const a = await udpNameServer('u0');
    const c = await udpNameServer('u1');
    cleanup.push(
      () => void a.socket.close(),
      () => void c.socket.close(),
    );
    const b = backend();
    await b.sync(state([servicePort('dns', [endpoint(a.port)], { protocol: 'UDP' })]));
    const client = dgram.createSocket('udp4');
    cleanup.push(() => void client.close());
    await new Promise<void>((resolve) => client.bind(0, '127.0.0.1', resolve));
    const port = only(b, 'UDP').port;
    const ask = (msg: string): Promise<string> =>
      new Promise((resolve) => {
        client.once('message', (m) => resolve(m.toString()));
        client.send(msg, port, '127.0.0.1');
      });
    assert.equal(await ask('x'), 'u0:x');
    await b.sync(state([servicePort('dns', [endpoint(c.port)], { protocol: 'UDP' })]));
    assert.equal(only(b, 'UDP').active, 0);
    assert.equal(await ask('y'), 'u1:y');
    await b.sync(state([servicePort('dns', [], { protocol: 'UDP' })]));
    assert.equal(only(b, 'UDP').active, 0);
  });

  it('reconciles: new ports listen, removed ones close, endpoint changes keep the port; SCTP is reported', async () => {
    const [e0, e1] = await names(2);
    const b = backend();
    const sctp = servicePort('sctp', [endpoint(e0!.port)], { protocol: 'SCTP' });
    await b.sync(state([servicePort('a', [endpoint(e0!.port)]), sctp]));
    const portA = only(b).port;
    assert.deepEqual(
      b.skipped().map((s) => s.key),
      [sctp.key],
    );
    await b.sync(
      state([servicePort('a', [endpoint(e1!.port)]), servicePort('b', [endpoint(e0!.port)]), sctp]),
    );
    const [la, lb] = b.listeners();
    assert.equal(la!.port, portA, 'endpoint change keeps the listener');
    assert.equal(await fetchName(portA), 'ep1');
    assert.equal(await fetchName(lb!.port), 'ep0');
    await b.sync(state([servicePort('b', [endpoint(e0!.port)])]));
    assert.deepEqual(
      b.listeners().map((l) => l.key),
      ['default/b:/TCP/ipv4'],
    );
    const err = await fetchName(portA).then(
      () => undefined,
      (e: NodeJS.ErrnoException) => e.code,
    );
    assert.equal(err, 'ECONNREFUSED');
    assert.deepEqual(b.skipped(), []);
  });

  it('reports a frontend it cannot bind with a code, and serves the rest', async () => {
    const [e0] = await names(1);
    const b = backend({ bindMode: 'service-ip' });
    const taken = net.createServer();
    const takenPort = await listen(taken);
    cleanup.push(() => closeServer(taken));
    const err = await b
      .sync(
        state([
          servicePort('busy', [endpoint(e0!.port)], { clusterIP: '127.0.0.1', port: takenPort }),
          servicePort('ok', [endpoint(e0!.port)], { clusterIP: '127.0.0.1', port: 0 }),
        ]),
      )
      .catch((e: unknown) => e);
    assert.ok(hasCode(err, ErrorCodes.USERSPACE_LISTEN_FAILED));
    assert.deepEqual(
      b.skipped().map((s) => s.key),
      ['default/busy:/TCP/ipv4'],
    );
    assert.equal(b.listeners().length, 1);
    assert.equal(await fetchName(b.listeners()[0]!.port), 'ep0');
  });
});
