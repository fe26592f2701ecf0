import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { createLogger, silentLogger } from '../../src/log.js';
import { allowListOf } from '../../src/lb/frontend-proxy.js';
import { UdpProxy } from '../../src/lb/udp-proxy.js';
import { udpClient } from './support.js';

/** A UDP endpoint that answers `ok:<msg>` and keeps every datagram it heard. */
async function recordingServer(): Promise<{ port: number; heard: string[]; socket: dgram.Socket }> {
  const heard: string[] = [];
  const socket = dgram.createSocket('udp4');
  socket.on('message', (msg, rinfo) => {
    heard.push(msg.toString());
    socket.send(`ok:${msg.toString()}`, rinfo.port, rinfo.address);
  });
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  return { port: socket.address().port, heard, socket };
}

describe('udp proxy', () => {
  const cleanup: Array<() => Promise<void> | void> = [];
  const now = 0;
  afterEach(async () => {
    for (const f of cleanup.splice(0).reverse()) await f();
  });

  async function proxy(
    extra: Partial<Parameters<typeof UdpProxy.bind>[0]> = {},
  ): Promise<{ proxy: UdpProxy; heard: string[] }> {
    const server = await recordingServer();
    cleanup.push(() => void server.socket.close());
    const p = await UdpProxy.bind({
      log: silentLogger(),
      address: '127.0.0.1',
      port: 0,
      spec: { algorithm: 'random', affinitySeconds: 0, seed: 0 },
      endpoints: [{ ip: '127.0.0.1', port: server.port }],
      idleTimeoutMs: 30_000,
      maxSessions: 100,
      clock: { now: () => now },
      ...extra,
    });
    cleanup.push(() => p.close({ destroy: true }));
    return { proxy: p, heard: server.heard };
  }

  async function client(address: string): Promise<dgram.Socket> {
    const c = await udpClient(address);
    cleanup.push(() => void c.close());
    return c;
  }

  /** Sends `msg` and resolves with the reply. */
  function ask(c: dgram.Socket, p: UdpProxy, msg: string): Promise<string> {
    return new Promise((resolve) => {
      c.once('message', (m) => resolve(m.toString()));
      c.send(msg, p.port, '127.0.0.1');
    });
  }

  it('serves clients inside the source ranges and drops the others; a range change ends their sessions', async () => {
    const { proxy: p, heard } = await proxy({ allow: allowListOf(['127.0.0.2/32']) });
    const inside = await client('127.0.0.2');
    const outside = await client('127.0.0.3');
    // The outside datagrams go first: by the time the inside reply is back, the proxy has read them.
    outside.send('out-1', p.port, '127.0.0.1');
    outside.send('out-2', p.port, '127.0.0.1');
    assert.equal(await ask(inside, p, 'in-1'), 'ok:in-1');
    assert.deepEqual(heard, ['in-1']);
    assert.equal(p.stats.refused, 2);
    assert.equal(p.active, 1);

    p.setAllow(allowListOf(['127.0.0.3/32']));
    assert.equal(p.active, 0, "the inside client's session ended with its range");
    inside.send('in-2', p.port, '127.0.0.1');
    assert.equal(await ask(outside, p, 'out-3'), 'ok:out-3');
    assert.deepEqual(heard, ['in-1', 'out-3']);
    assert.equal(p.stats.refused, 3);

    p.setAllow(undefined);
    assert.equal(await ask(inside, p, 'in-3'), 'ok:in-3');
  });

  it('at the session cap, a new client ends the oldest idle session', async () => {
    const lines: Array<{ msg: string; cap?: number }> = [];
    const log = createLogger({ destination: { write: (line: string) => void lines.push(JSON.parse(line)) } });
    const { proxy: p } = await proxy({ maxSessions: 2, log });
    const [c1, c2, c3] = [await client('127.0.0.1'), await client('127.0.0.1'), await client('127.0.0.1')];
    assert.equal(await ask(c1!, p, 'a'), 'ok:a');
    assert.equal(await ask(c2!, p, 'b'), 'ok:b');
    p.sweep(); // both idle from here
    assert.equal(await ask(c1!, p, 'c'), 'ok:c'); // c1 busy again: c2 is the idle one
    assert.equal(await ask(c3!, p, 'd'), 'ok:d');
    assert.equal(p.stats.evicted, 1);
    assert.equal(p.active, 2);
    assert.equal(p.stats.sessions, 3);
    assert.equal(await ask(c1!, p, 'e'), 'ok:e');
    assert.equal(p.stats.sessions, 3, "c1 kept its session: c2's went");
    assert.equal(await ask(c2!, p, 'f'), 'ok:f');
    assert.equal(p.stats.sessions, 4, 'c2 came back with a new session');
    assert.equal(p.stats.evicted, 2);
    assert.equal(p.active, 2);
    assert.deepEqual(
      lines.filter((l) => /cap reached/.test(l.msg)).map((l) => l.cap),
      [2],
      'one line when the cap first bites; the count is in the stats',
    );
  });
});
