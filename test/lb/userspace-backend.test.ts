import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import dgram from 'node:dgram';
import net from 'node:net';
import { createLogger, silentLogger } from '../../src/log.js';
import { UserspaceBackend, type ListenerInfo } from '../../src/lb/userspace-backend.js';
import {
  closeServer,
  deadPort,
  endpoint,
  fetchName,
  freeUdpPort,
  listen,
  nameServer,
  seededRandom,
  servicePort,
  state,
  tally,
  udpClient,
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

  it('skips a frontend whose port is taken with its reason, serves the rest, and binds it once the port is free', async () => {
    const [e0] = await names(1);
    const lines: Array<{ msg: string; key?: string }> = [];
    const log = createLogger({ destination: { write: (line: string) => void lines.push(JSON.parse(line)) } });
    const b = backend({ bindMode: 'service-ip', log });
    const taken = net.createServer();
    const takenPort = await listen(taken);
    const st = state([
      servicePort('busy', [endpoint(e0!.port)], { clusterIP: '127.0.0.1', port: takenPort }),
      servicePort('ok', [endpoint(e0!.port)], { clusterIP: '127.0.0.1', port: 0 }),
    ]);
    const first = await b.sync(st);
    assert.equal(first.listening, 1);
    assert.deepEqual(
      first.skipped.map((s) => [s.key, s.service]),
      [['default/busy:/TCP/ipv4', 'default/busy']],
    );
    assert.match(
      first.skipped[0]!.reason,
      new RegExp(`clusterIP 127\\.0\\.0\\.1:${takenPort}/TCP: .*EADDRINUSE`),
    );
    assert.equal(await fetchName(only(b).port), 'ep0');
    assert.equal((await b.sync(st)).skipped.length, 1, 'tried again, still taken');
    const skippedLines = (): number => lines.filter((l) => l.msg.startsWith('frontend skipped')).length;
    assert.equal(skippedLines(), 1, 'logged once');

    await closeServer(taken);
    const third = await b.sync(st);
    assert.deepEqual([third.listening, third.skipped], [2, []]);
    assert.equal(await fetchName(takenPort), 'ep0');
    assert.deepEqual(
      lines.filter((l) => l.msg === 'skipped frontend now listens').map((l) => l.key),
      ['default/busy:/TCP/ipv4'],
    );
    assert.equal(skippedLines(), 1);
  });

  it('a UDP load-balancer frontend serves clients inside loadBalancerSourceRanges only', async () => {
    const heard: string[] = [];
    const ep = dgram.createSocket('udp4');
    ep.on('message', (msg, rinfo) => {
      heard.push(msg.toString());
      ep.send(`ok:${msg.toString()}`, rinfo.port, rinfo.address);
    });
    await new Promise<void>((resolve) => ep.bind(0, '127.0.0.1', resolve));
    cleanup.push(() => void ep.close());
    const port = await freeUdpPort();
    const b = backend({ bindMode: 'service-ip' });
    const lb = (ranges: string[]): ReturnType<typeof servicePort> =>
      servicePort('dns', [endpoint(ep.address().port)], {
        protocol: 'UDP',
        clusterIP: undefined,
        port,
        loadBalancerIPs: ['127.0.0.1'],
        sourceRanges: ranges,
      });
    const result = await b.sync(state([lb(['127.0.0.2/32'])]));
    assert.deepEqual(result.skipped, []);
    assert.equal(only(b, 'UDP').frontend, 'loadBalancer');
    const inside = await udpClient('127.0.0.2');
    const outside = await udpClient('127.0.0.3');
    cleanup.push(
      () => void inside.close(),
      () => void outside.close(),
    );
    const ask = (c: dgram.Socket, msg: string): Promise<string> =>
      new Promise((resolve) => {
        c.once('message', (m) => resolve(m.toString()));
        c.send(msg, port, '127.0.0.1');
      });
    // Sent first: read by the proxy before the inside client's datagram.
    outside.send('outside', port, '127.0.0.1');
    assert.equal(await ask(inside, 'inside'), 'ok:inside');
    assert.deepEqual(heard, ['inside']);
    assert.equal(only(b, 'UDP').refused, 1);

    await b.sync(state([lb([])]));
    assert.equal(await ask(outside, 'any'), 'ok:any', 'no ranges: any client');
  });

  it('service-ip mode makes local only what the address rule allows, and removes only what it added', async () => {
    const added: string[] = [];
    const removed: string[] = [];
    const localAddresses = {
      add: async (ip: string) => void added.push(ip),
      remove: async (ip: string) => void removed.push(ip),
      gateways: async () => ['10.96.0.254'],
    };
    const [e0] = await names(1);
    const b = backend({ bindMode: 'service-ip', serviceCIDRs: ['10.96.0.0/12'], localAddresses });
    const web = servicePort('web', [endpoint(e0!.port)], {
      clusterIP: '10.96.0.10',
      port: 0,
      // Local already (127.0.0.1), outside the CIDR, the gateway, and the API server's address.
      externalIPs: ['127.0.0.1', '203.0.113.7', '10.96.0.254', '10.100.0.1'],
    });
    const api = servicePort('kubernetes', [endpoint(6443, '10.100.0.1')], {
      clusterIP: '127.0.0.1',
      port: 0,
    });
    const result = await b.sync(state([web, api]));
    assert.deepEqual(added, ['10.96.0.10'], 'only the ClusterIP inside --service-cidr');
    const reasons = new Map(result.skipped.map((s) => [s.reason.split(':')[0]!.split(' ')[1], s.reason]));
    assert.match(reasons.get('203.0.113.7')!, /only addresses inside --service-cidr \(10\.96\.0\.0\/12\)/);
    assert.match(reasons.get('10.96.0.254')!, /gateway/);
    assert.match(reasons.get('10.100.0.1')!, /endpoint of default\/kubernetes/);
    // The fake made nothing local: the ClusterIP stays unbindable, with the kernel's reason.
    assert.match(reasons.get('10.96.0.10')!, /EADDRNOTAVAIL/);
    assert.deepEqual(
      b.listeners().map((l) => [l.key, l.frontend, l.address]),
      [
        ['default/kubernetes:/TCP/ipv4', 'clusterIP', '127.0.0.1'],
        ['default/web:/TCP/ipv4', 'externalIP', '127.0.0.1'],
      ],
    );
    assert.equal(result.skipped.length, 4);

    await b.sync(state([api]));
    assert.deepEqual(removed, ['10.96.0.10'], 'the address it added, and no other');
  });

  it('without --service-cidr, service-ip mode makes ClusterIPs local and no externalIP', async () => {
    const added: string[] = [];
    const localAddresses = {
      add: async (ip: string) => void added.push(ip),
      remove: async () => {},
      gateways: async () => [],
    };
    const b = backend({ bindMode: 'service-ip', localAddresses });
    const result = await b.sync(
      state([servicePort('web', [], { clusterIP: '10.96.0.10', externalIPs: ['10.96.0.11', '192.0.2.50'] })]),
    );
    assert.deepEqual(added, ['10.96.0.10']);
    assert.deepEqual(
      result.skipped
        .filter((s) => /not set: ClusterIPs only/.test(s.reason))
        .map((s) => s.reason.split(':')[0]),
      ['externalIP 10.96.0.11', 'externalIP 192.0.2.50'],
    );
  });
});
