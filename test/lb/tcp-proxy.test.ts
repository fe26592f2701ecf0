import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import { silentLogger } from '../../src/log.js';
import { TcpProxy } from '../../src/lb/tcp-proxy.js';
import { waitFor } from '../support/wait-for.js';
import { closeServer, listen, stalledEndpoint } from './support.js';

/** Bytes a socket has handed to the kernel (written, less what still waits in its buffer). */
function accepted(s: net.Socket): number {
  return s.bytesWritten - s.writableLength;
}

/** Waits until `f()` stops changing over 200 ms (at most 10 s) and returns its last value. */
async function settled(f: () => number): Promise<number> {
  let last = -1;
  for (let i = 0; i < 50 && f() !== last; i++) {
    last = f();
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  return last;
}

/** sha256 of `b`, hex. */
function sha(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

/**
 * Hashes what `s` receives until its FIN, reading slowly (a 1 ms rest after every 256 KiB), so
 * that the kernel's buffers towards it fill and the proxy's writes to it queue.
 */
function slowDigest(s: net.Socket): Promise<string> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    let sinceRest = 0;
    s.on('error', reject);
    s.on('data', (d: Buffer) => {
      hash.update(d);
      sinceRest += d.length;
      if (sinceRest < 256 * 1024) return;
      sinceRest = 0;
      s.pause();
      setTimeout(() => s.resume(), 1);
    });
    s.on('end', () => resolve(hash.digest('hex')));
  });
}

// The client side reads through Node's internal onread fields where this Node has them, and
// through 'data' events otherwise: each behaviour is proven on both paths.
for (const clientReads of ['auto', 'data'] as const) {
  describe(`tcp proxy, clients read via ${clientReads}`, () => {
    const cleanup: Array<() => Promise<void> | void> = [];
    afterEach(async () => {
      for (const f of cleanup.splice(0).reverse()) await f();
    });

    async function proxyTo(server: net.Server, highWaterMark = 64 * 1024): Promise<TcpProxy> {
      const port = await listen(server);
      cleanup.push(() => closeServer(server));
      const proxy = await TcpProxy.listen({
        log: silentLogger(),
        address: '127.0.0.1',
        port: 0,
        spec: { algorithm: 'random', affinitySeconds: 0, seed: 0 },
        endpoints: [{ ip: '127.0.0.1', port }],
        idleTimeoutMs: 0,
        connectAttempts: 1,
        highWaterMark,
        clientReads,
        clock: { now: () => 0 },
      });
      cleanup.push(() => proxy.close({ destroy: true }));
      return proxy;
    }

    it('reads clients through the path asked for (onread on this Node when auto)', async () => {
      const proxy = await proxyTo(net.createServer((s) => s.destroy()));
      assert.equal(proxy.clientReadPath, clientReads === 'auto' ? 'onread' : 'data');
    });

    it('echoes 8 MiB byte-exact while the client still writes, then passes the FIN on', async () => {
      const proxy = await proxyTo(net.createServer({ allowHalfOpen: true }, (s) => s.pipe(s)));
      const payload = randomBytes(8 << 20);
      const digest = await new Promise<string>((resolve, reject) => {
        const hash = createHash('sha256');
        const c = net.connect(proxy.port, '127.0.0.1');
        c.on('error', reject);
        c.on('data', (d: Buffer) => hash.update(d));
        c.on('end', () => resolve(hash.digest('hex')));
        c.end(payload);
      });
      assert.equal(digest, createHash('sha256').update(payload).digest('hex'));
    });

    it('answers after the client half-closes', async () => {
      const counter = net.createServer({ allowHalfOpen: true }, (s) => {
        let n = 0;
        s.on('data', (d: Buffer) => (n += d.length));
        s.on('end', () => s.end(`got ${n}`));
      });
      const proxy = await proxyTo(counter);
      const reply = await new Promise<string>((resolve, reject) => {
        const c = net.connect({ port: proxy.port, host: '127.0.0.1', allowHalfOpen: true });
        let text = '';
        c.on('error', reject);
        c.on('data', (d: Buffer) => (text += d.toString()));
        c.on('end', () => resolve(text));
        c.end(Buffer.alloc(300_000, 1));
      });
      assert.equal(reply, 'got 300000');
    });

    // Large reads go out from a buffer the direction reuses: a read into it while a queued
    // write still holds it would change bytes not yet sent, and the digests would differ.
    it('carries 24 MiB each way byte-exact to slow readers, each side half-closing while the other still sends', async () => {
      const upward = randomBytes(24 << 20);
      const downward = randomBytes(24 << 20);
      let endpointGot: Promise<string> | undefined;
      const endpoint = net.createServer({ allowHalfOpen: true }, (s) => {
        endpointGot = slowDigest(s);
        s.end(downward);
      });
      const proxy = await proxyTo(endpoint);
      const c = net.connect({ port: proxy.port, host: '127.0.0.1', allowHalfOpen: true });
      cleanup.push(() => void c.destroy());
      const clientGot = slowDigest(c);
      c.end(upward);
      // Each 'end' is the other side's FIN passed on by the proxy.
      assert.equal(await clientGot, sha(downward));
      assert.ok(endpointGot, 'the endpoint saw no connection');
      assert.equal(await endpointGot, sha(upward));
    });

    // The side that resets has sent nothing the proxy has not read: a reset right behind data
    // reaches Node as the end of the stream (libuv reports a hang-up after a short read as EOF
    // without reading the error), for the proxy as for any Node server.
    it('passes a reset on in either direction while the other side streams', async () => {
      /** Streams to `s` until it fails; resolves with the error's code. */
      const streamUntilFailed = (s: net.Socket): Promise<string> =>
        new Promise((resolve) => {
          const block = Buffer.alloc(1 << 20, 7);
          s.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
          s.on('close', () => resolve('closed without an error'));
          const pump = (): void => {
            while (!s.destroyed && s.write(block));
          };
          s.on('drain', pump);
          pump();
        });
      /** Reads 1 MiB from `s`, then resets it. */
      const resetAfterMiB = (s: net.Socket): void => {
        let got = 0;
        s.on('error', () => {});
        s.on('data', (d: Buffer) => {
          got += d.length;
          if (got >= 1 << 20 && !s.destroyed) s.resetAndDestroy();
        });
      };
      const reset = ['ECONNRESET', 'EPIPE'];
      let endpointSaw: Promise<string> | undefined;
      const endpoint = net.createServer((s) => {
        s.once('data', (first: Buffer) => {
          if (first[0] === 0x44 /* D: the endpoint streams down */) endpointSaw = streamUntilFailed(s);
          else resetAfterMiB(s);
        });
      });
      const proxy = await proxyTo(endpoint);

      const reader = net.connect(proxy.port, '127.0.0.1');
      cleanup.push(() => void reader.destroy());
      reader.write('D');
      resetAfterMiB(reader);
      await waitFor(() => endpointSaw !== undefined);
      assert.ok(reset.includes(await endpointSaw!), 'the client reset reaches the endpoint');

      const writer = net.connect(proxy.port, '127.0.0.1');
      cleanup.push(() => void writer.destroy());
      writer.write('U');
      assert.ok(reset.includes(await streamUntilFailed(writer)), 'the endpoint reset reaches the client');
    });

    it('stops reading the client while the endpoint does not read, and resumes when it does', async () => {
      let endpoint: net.Socket | undefined;
      let received = 0;
      const slow = net.createServer((s) => {
        endpoint = s;
        s.pause();
        s.on('data', (d: Buffer) => (received += d.length));
      });
      const proxy = await proxyTo(slow);
      const c = net.connect(proxy.port, '127.0.0.1');
      cleanup.push(() => void c.destroy());
      c.on('error', () => {});
      const block = Buffer.alloc(1 << 20, 3);
      const pump = (): void => {
        while (!c.destroyed && c.write(block));
      };
      c.on('drain', pump);
      c.on('connect', pump);
      // A proxy that kept reading would take the client's bytes for as long as it sends.
      const stalled = await settled(() => accepted(c));
      assert.ok(stalled > 0, 'the client sent nothing');
      assert.ok(stalled < 64 << 20, `the client never stalled: ${stalled} bytes taken`);

      endpoint!.resume();
      while (received < stalled + (16 << 20)) await new Promise((resolve) => setTimeout(resolve, 20));
    });
  });
}

describe('tcp proxy limits', () => {
  const cleanup: Array<() => Promise<void> | void> = [];
  let now = 0;
  beforeEach(() => {
    now = 0;
  });
  afterEach(async () => {
    for (const f of cleanup.splice(0).reverse()) await f();
  });

  async function proxyTo(
    endpoints: number[],
    extra: Partial<Parameters<typeof TcpProxy.listen>[0]> = {},
  ): Promise<TcpProxy> {
    const proxy = await TcpProxy.listen({
      log: silentLogger(),
      address: '127.0.0.1',
      port: 0,
      spec: { algorithm: 'round-robin', affinitySeconds: 0, seed: 0 },
      endpoints: endpoints.map((port) => ({ ip: '127.0.0.1', port })),
      idleTimeoutMs: 0,
      connectAttempts: 3,
      highWaterMark: 64 * 1024,
      clock: { now: () => now },
      ...extra,
    });
    cleanup.push(() => proxy.close({ destroy: true }));
    return proxy;
  }
  async function server(handler: (s: net.Socket) => void): Promise<number> {
    const s = net.createServer(handler);
    const port = await listen(s);
    cleanup.push(() => closeServer(s));
    return port;
  }
  async function stalled(): Promise<number> {
    const s = await stalledEndpoint();
    cleanup.push(s.close);
    return s.port;
  }
  /** Connects and resolves with what the server said before the end, or the error code. */
  function outcome(port: number): { done: Promise<string>; socket: net.Socket } {
    const c = net.connect(port, '127.0.0.1');
    cleanup.push(() => void c.destroy());
    const done = new Promise<string>((resolve) => {
      let text = '';
      c.on('data', (d: Buffer) => (text += d.toString()));
      c.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'));
      c.on('end', () => resolve(text));
    });
    return { done, socket: c };
  }

  it('a connect the endpoint never answers fails over to the next endpoint after connectTimeoutMs', async () => {
    const good = await server((s) => s.end('good'));
    const proxy = await proxyTo([await stalled(), good], { connectTimeoutMs: 5_000 });
    const { done } = outcome(proxy.port);
    await waitFor(() => proxy.connections === 1, { what: 'the client to be accepted' });
    now += 4_999;
    proxy.sweep();
    assert.equal(proxy.stats.connectTimeouts, 0, 'not yet');
    now += 1;
    proxy.sweep();
    assert.equal(await done, 'good');
    assert.deepEqual([proxy.stats.connectTimeouts, proxy.stats.connectFailures], [1, 1]);
  });

  it('a client whose every endpoint is dead is reset once the attempts are spent', async () => {
    const proxy = await proxyTo([await stalled(), await stalled()], {
      connectTimeoutMs: 5_000,
      connectAttempts: 2,
    });
    const { done } = outcome(proxy.port);
    await waitFor(() => proxy.connections === 1, { what: 'the client to be accepted' });
    now += 5_000;
    proxy.sweep();
    await waitFor(() => proxy.stats.connectFailures === 1, { what: 'the first attempt to fail' });
    now += 5_000;
    proxy.sweep();
    assert.equal(await done, 'ECONNRESET');
    assert.deepEqual([proxy.stats.connectTimeouts, proxy.stats.refused], [2, 1]);
  });

  it('at the connection cap, a new client ends the oldest idle connection, or is refused when none is idle', async () => {
    const echo = await server((s) => s.pipe(s));
    const proxy = await proxyTo([echo], { maxConnections: 2 });
    const exchange = async (c: net.Socket, text: string): Promise<string> =>
      new Promise((resolve) => {
        c.once('data', (d: Buffer) => resolve(d.toString()));
        c.write(text);
      });
    const a = outcome(proxy.port);
    const b = outcome(proxy.port);
    assert.equal(await exchange(a.socket, 'a'), 'a');
    assert.equal(await exchange(b.socket, 'b'), 'b');
    proxy.sweep(); // both idle from here
    assert.equal(await exchange(a.socket, 'a2'), 'a2'); // a busy again: b is the idle one
    const c = outcome(proxy.port);
    assert.equal(await exchange(c.socket, 'c'), 'c');
    assert.equal(await b.done, 'b', 'the idle connection was ended (after its echo)');
    assert.equal(proxy.stats.evicted, 1);
    const d = outcome(proxy.port);
    assert.equal(await d.done, 'ECONNRESET', 'a and c are busy: the new client is refused');
    assert.deepEqual([proxy.stats.evicted, proxy.stats.refused, proxy.connections], [1, 1, 2]);
    assert.equal(await exchange(a.socket, 'a3'), 'a3');
  });
});
