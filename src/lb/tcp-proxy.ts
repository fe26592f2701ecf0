/**
 * One TCP frontend of the userspace proxy: accepts on an address, connects each client to an
 * endpoint the picker chooses and copies bytes both ways (`Pump`, one per direction).
 *
 * Both sockets of a connection read through `onread`, whose buffer can change after every
 * read. An idle socket reads into a buffer shared by the process, and a small read is copied
 * out into a buffer of its own size: for request/response traffic that costs less than a
 * stream's read (a 64 KiB allocation shrunk to fit, a push through the readable state, a
 * `data` event and a tick). A large read moves the direction onto a 64 KiB buffer of its own,
 * which later reads fill and which is written as it is: past its first read, a bulk stream is
 * copied only by the kernel, and nothing is allocated per read. Upstream sockets take `onread` from
 * `net.connect`; accepted sockets have no public way to it, so they get it through Node's
 * internals where those are as expected (`clientOnread`), and read through `data` events
 * otherwise.
 */
import net from 'node:net';
import type { Clock } from '../util/clock.js';
import type { Logger } from '../log.js';
import { allowed, frontendPickerOptions, type FrontendProxy, type FrontendStats } from './frontend-proxy.js';
import {
  createPicker,
  type Flow,
  type Picker,
  type PickerOptions,
  type PickerSpec,
  type Target,
  updatePicker,
} from './pickers.js';

export interface TcpProxyOptions<T extends Target> {
  log: Logger;
  address: string;
  /** 0: any free port (loopback mode); read the chosen one from `port` after listen. */
  port: number;
  spec: PickerSpec;
  endpoints: readonly T[];
  /** Close a connection with no bytes either way for this long; 0: never. */
  idleTimeoutMs: number;
  /** Endpoints tried per connection before the client is reset. */
  connectAttempts: number;
  /**
   * An endpoint that has not answered the connect this long counts as failed and the next one
   * is tried (a dead endpoint whose SYNs go unanswered would hold the client for the kernel's
   * two minutes of retries); 0: the kernel decides. Checked by `sweep`, so it fires up to one
   * sweep interval late and costs nothing per connection.
   */
  connectTimeoutMs?: number;
  /**
   * Connections at most. A new client beyond it ends the oldest connection idle since the
   * last sweep; when none of the oldest few is idle, the new client is reset: a working
   * connection is not traded for a new one.
   */
  maxConnections?: number;
  /** Clients a ClientIP-affinity picker remembers at most. */
  maxAffinityClients?: number;
  /**
   * Bytes of small (copied) reads a direction may buffer before its reader pauses; a direction
   * on a buffer of its own holds at most that one read (64 KiB).
   */
  highWaterMark: number;
  /**
   * How accepted sockets are read: 'auto' through `onread` where this Node allows it
   * (`clientOnread`), else through 'data' events; 'data' always through 'data' events (tests
   * cover both paths). Default 'auto'.
   */
  clientReads?: 'auto' | 'data';
  /** Client addresses allowed (loadBalancerSourceRanges); undefined: any. */
  allow?: net.BlockList | undefined;
  clock: Pick<Clock, 'now'>;
  random?: () => number;
}

export interface TcpProxyStats extends FrontendStats {
  accepted: number;
  /** Upstream connects that failed (refused, unreachable, timed out). */
  connectFailures: number;
  /** Of those, the ones ended by connectTimeoutMs. */
  connectTimeouts: number;
}

/** How many of the oldest connections are looked at for an idle one when the cap is reached. */
const EVICTION_SCAN = 16;

/**
 * Where idle sockets with `onread` read: every upstream socket into one buffer, every accepted
 * socket into another. One buffer can serve many sockets because a read callback runs to its
 * end before the next one starts, and what it read is copied out (or the direction moves to a
 * buffer of its own) before it returns: a write may still hold its buffer after write()
 * returns. Two, not one: with the upstreams' buffer also under every client handle
 * (useUserBuffer), a one-stream download cost 40 % more CPU per GB (npm run bench, userspace:
 * 1.07 s against 0.75 s; not understood, only measured).
 */
const upstreamReads = Buffer.allocUnsafe(64 * 1024);
const clientReads = Buffer.allocUnsafe(64 * 1024);

/** The size of a direction's own buffer: as large as the shared ones, one read each. */
const OWN_SIZE = 64 * 1024;
/**
 * Reads below this are copied out of the shared buffer into a buffer of their size (from
 * Node's 8 KiB pool below 4 KiB); from this size on the direction takes a buffer of its own.
 */
const SMALL_READ = 8 * 1024;
/** Own buffers given back and not yet taken again, at most SPARE_MAX (1 MiB). */
const spare: Buffer[] = [];
const SPARE_MAX = 16;

function takeBuffer(): Buffer {
  return spare.pop() ?? Buffer.allocUnsafeSlow(OWN_SIZE);
}

function giveBack(b: Buffer): void {
  if (spare.length < SPARE_MAX) spare.push(b);
}

/**
 * One direction of a connection: what `from` reads goes to `to`. Its `next` and `onRead` are
 * the socket's `onread` buffer (asked for after every read) and callback.
 *
 * A large read moves the direction onto a buffer of its own (`own`), written without a copy.
 * While a write still holds it (the write did not complete within write(): `to` has bytes
 * queued), `from` reads nothing, and the write's callback starts it again: a later read would
 * overwrite bytes not yet sent. So a direction buffers at most one read (64 KiB) on its own
 * buffer, or highWaterMark + one read of small copied reads. A read that does not fill the
 * buffer (the socket had no more) gives the buffer back: an idle connection holds none, unless
 * its last read filled it.
 */
class Pump {
  own: Buffer | undefined;
  /** A queued write holds `own`: `from` is stopped until it completes. */
  held = false;
  /** The callback of writes from `own`; made on the first, as most directions never take one. */
  private flushed: (() => void) | undefined;
  from!: net.Socket;
  constructor(
    private readonly conn: Conn,
    private readonly to: net.Socket,
    private readonly shared: Buffer,
  ) {}

  readonly next = (): Buffer => this.own ?? this.shared;

  /** Forwards the `n` bytes just read into `buf`; false: stop reading (as pause() would). */
  readonly onRead = (n: number, buf: Uint8Array): boolean => {
    this.conn.active = true;
    let data = buf as Buffer;
    if (buf === this.shared) {
      if (n < SMALL_READ) {
        const chunk = Buffer.allocUnsafe(n);
        this.shared.copy(chunk, 0, 0, n);
        // False past highWaterMark: `to`'s 'drain' resumes.
        return this.to.write(chunk);
      }
      data = this.own = takeBuffer();
      this.shared.copy(data, 0, 0, n);
    }
    this.to.write(n === data.length ? data : data.subarray(0, n), (this.flushed ??= () => this.restart()));
    if (this.to.writableLength > 0) {
      this.held = true;
      return false;
    }
    if (n < data.length) {
      this.own = undefined;
      giveBack(data);
    }
    return true;
  };

  /** A write from `own` completed: restarts `from` if it waits for that. */
  private restart(): void {
    if (!this.held) return;
    this.held = false;
    if (!this.from.destroyed) this.from.resume();
  }
}

/**
 * Passes a FIN on to `to`. Once `to` has read its own peer's FIN and has nothing left to
 * send, close(2) sends the FIN that shutdown(2) would, and the socket is done: the shutdown,
 * its two epoll changes and the stream's finish are skipped.
 */
function passEnd(to: net.Socket): void {
  if (to.readableEnded && to.writableLength === 0) to.destroy();
  else to.end();
}

/**
 * Gives an accepted socket what `net.connect({ onread: { buffer: next, callback } })` gives a
 * new one, or returns false when this Node does not implement `onread` as Node 20 does:
 * net.Socket keeps the option in three symbol-keyed fields (the buffer, the function that
 * gives the next one, the callback), read by its stream-read callback and by pause()/resume(),
 * and points its handle at the buffer with `useUserBuffer`. The symbols are private, so they
 * are found once, on probe sockets, by the values they hold. Without them (another Node
 * version may move them) the client reads through 'data' events, the public path.
 */
const clientOnread: ((socket: net.Socket, pump: Pump) => boolean) | undefined = (() => {
  const buffer = Buffer.alloc(1);
  const next = (): Buffer => buffer;
  const callback = (): boolean => true;
  const keyOf = (buf: Buffer | (() => Buffer), value: unknown): symbol | undefined => {
    const probe = new net.Socket({ onread: { buffer: buf, callback } } as net.SocketConstructorOpts);
    const fields = probe as unknown as Record<symbol, unknown>;
    const key = Object.getOwnPropertySymbols(probe).find((k) => fields[k] === value);
    probe.destroy();
    return key;
  };
  const bufferKey = keyOf(buffer, buffer);
  const nextKey = keyOf(next, next);
  const callbackKey = keyOf(buffer, callback);
  if (!bufferKey || !nextKey || !callbackKey) return undefined;
  return (socket, pump) => {
    const handle = (socket as unknown as { _handle?: { useUserBuffer?: (b: Buffer) => void } })._handle;
    if (typeof handle?.useUserBuffer !== 'function') return false;
    const s = socket as unknown as Record<symbol, unknown>;
    s[bufferKey] = clientReads;
    s[nextKey] = pump.next;
    s[callbackKey] = pump.onRead;
    handle.useUserBuffer(clientReads);
    return true;
  };
})();

/**
 * The client side of a flow, read from the socket only when a picker or the source ranges
 * ask: each address costs a getpeername(2), and the default random picker asks for neither.
 * Read once and kept, so a retry sees the same flow even after the client is gone.
 */
class ClientFlow implements Flow {
  private peer: { ip: string; port: number } | undefined;
  constructor(private readonly socket: net.Socket) {}
  get ip(): string {
    return this.read().ip;
  }
  get port(): number {
    return this.read().port;
  }
  private read(): { ip: string; port: number } {
    this.peer ??= { ip: this.socket.remoteAddress ?? '', port: this.socket.remotePort ?? 0 };
    return this.peer;
  }
}

/** A client and its upstream; one object per connection and one read callback per upstream. */
class Conn {
  active = false;
  /** The upstream has connected: bytes flow. */
  connected = false;
  idleSince: number;
  /** When the current upstream connect started. */
  attemptSince: number;
  upstream: net.Socket | undefined;
  constructor(
    readonly client: net.Socket,
    now: number,
  ) {
    this.idleSince = now;
    this.attemptSince = now;
  }
  destroy(): void {
    this.client.destroy();
    this.upstream?.destroy();
  }
}

export class TcpProxy<T extends Target = Target> implements FrontendProxy<T> {
  readonly stats: TcpProxyStats = {
    accepted: 0,
    refused: 0,
    evicted: 0,
    affinityEvicted: 0,
    connectFailures: 0,
    connectTimeouts: 0,
  };
  private picker: Picker<T>;
  private spec: PickerSpec;
  private readonly conns = new Set<Conn>();
  private readonly server: net.Server;
  private readonly log: Logger;
  private boundPort = 0;
  private allow: net.BlockList | undefined;
  private readonly pickerOptions: PickerOptions;
  private readonly maxConnections: number;
  private capWarned = false;

  private constructor(private readonly opts: TcpProxyOptions<T>) {
    this.log = opts.log;
    this.allow = opts.allow;
    this.spec = opts.spec;
    this.maxConnections = opts.maxConnections ?? Infinity;
    this.pickerOptions = frontendPickerOptions(opts, this.stats);
    this.picker = createPicker(opts.spec, opts.endpoints, this.pickerOptions);
    this.server = net.createServer(
      {
        // Nothing is read from a client before its upstream is connected: no buffering, and a
        // connect retry never has to replay bytes.
        pauseOnConnect: true,
        allowHalfOpen: true,
        noDelay: true,
        highWaterMark: opts.highWaterMark,
      },
      (client) => this.accept(client),
    );
  }

  static async listen<T extends Target>(opts: TcpProxyOptions<T>): Promise<TcpProxy<T>> {
    const proxy = new TcpProxy(opts);
    await new Promise<void>((resolve, reject) => {
      proxy.server.once('error', reject);
      proxy.server.listen({ host: opts.address, port: opts.port, backlog: 4096 }, () => {
        proxy.server.off('error', reject);
        resolve();
      });
    });
    proxy.server.on('error', (err) => proxy.log.error({ err }, 'tcp listener error'));
    proxy.boundPort = (proxy.server.address() as net.AddressInfo).port;
    return proxy;
  }

  get port(): number {
    return this.boundPort;
  }
  get address(): string {
    return this.opts.address;
  }
  get connections(): number {
    return this.conns.size;
  }
  get active(): number {
    return this.conns.size;
  }
  /** How accepted sockets are read (`clientReads`, and whether this Node allows `onread`). */
  get clientReadPath(): 'onread' | 'data' {
    return this.opts.clientReads !== 'data' && clientOnread ? 'onread' : 'data';
  }

  /** New flows use the new endpoints; open connections keep the endpoint they have. */
  setEndpoints(endpoints: readonly T[], spec: PickerSpec): void {
    this.picker = updatePicker(this.picker, this.spec, spec, endpoints, this.pickerOptions);
    this.spec = spec;
  }

  /** Replaces the allowed client ranges (undefined: any) for new connections. */
  setAllow(allow: net.BlockList | undefined): void {
    this.allow = allow;
  }

  /**
   * Closes connections idle for idleTimeoutMs and fails connects older than connectTimeoutMs
   * over to the next endpoint; the backend calls it periodically.
   */
  sweep(): void {
    const idleMs = this.opts.idleTimeoutMs;
    const connectMs = this.opts.connectTimeoutMs ?? 0;
    // Runs even without timeouts: the connection cap evicts what it marks idle.
    const now = this.opts.clock.now();
    for (const c of this.conns) {
      if (!c.connected) {
        const up = c.upstream;
        if (connectMs > 0 && up && !up.destroyed && now - c.attemptSince >= connectMs) {
          this.stats.connectTimeouts++;
          // Through the socket's 'error' path: counted as a failed attempt, the next endpoint tried.
          up.destroy(new Error(`connect timeout after ${connectMs} ms`));
        }
        continue;
      }
      if (c.active) {
        c.active = false;
        c.idleSince = now;
      } else if (idleMs > 0 && now - c.idleSince >= idleMs) {
        c.destroy();
      }
    }
  }

  /** Stops accepting. Open connections finish on their own unless `destroy`. */
  async close(opts: { destroy: boolean }): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    if (opts.destroy) for (const c of this.conns) c.destroy();
    await closed;
  }

  private accept(client: net.Socket): void {
    this.stats.accepted++;
    const flow = new ClientFlow(client);
    if (this.allow && !allowed(this.allow, flow.ip)) {
      this.refuse(client);
      return;
    }
    const first = this.picker.pick(flow);
    if (!first || (this.conns.size >= this.maxConnections && !this.evictIdle())) {
      this.refuse(client);
      return;
    }
    const conn = new Conn(client, this.opts.clock.now());
    this.conns.add(conn);
    client.on('error', () => {
      // Reported through 'close'; a client reset is passed on to the upstream as a reset.
      if (conn.upstream && !conn.upstream.destroyed) conn.upstream.resetAndDestroy();
    });
    client.on('close', () => {
      this.conns.delete(conn);
      const up = conn.upstream;
      if (up && !up.destroyed && !up.writableEnded) up.destroy();
    });
    this.connect(conn, flow, first, 1, undefined);
  }

  /** Ends the oldest connection idle since the last sweep among the oldest few; false: none is. */
  private evictIdle(): boolean {
    if (!this.capWarned) {
      this.capWarned = true;
      this.log.warn(
        { cap: this.maxConnections },
        'tcp connection cap reached: ending the oldest idle connection, else refusing the new one',
      );
    }
    let n = 0;
    for (const c of this.conns) {
      if (c.connected && !c.active) {
        this.stats.evicted++;
        // Out of the set now: its 'close' comes later, and the next client must not pick it again.
        this.conns.delete(c);
        c.destroy();
        return true;
      }
      if (++n >= EVICTION_SCAN) break;
    }
    return false;
  }

  private refuse(client: net.Socket): void {
    this.stats.refused++;
    client.on('error', () => {});
    // An RST right away, like a REJECT rule: the client learns at once instead of hanging.
    client.resetAndDestroy();
  }

  private connect(conn: Conn, flow: Flow, ep: T, attempt: number, avoid: Set<T> | undefined): void {
    const client = conn.client;
    const pump = new Pump(conn, client, upstreamReads);
    const up = net.connect({
      host: ep.ip,
      port: ep.port,
      noDelay: true,
      allowHalfOpen: true,
      highWaterMark: this.opts.highWaterMark,
      // The values net.Socket sets on its `{ ...options }` copy anyway. Present here, the copy
      // keeps one map; added to the copy, they made new maps for every socket (V8 11.3 records
      // no transition from a spread copy's detached map) and every option read missed its
      // inline cache. Accepted sockets still pay it: Node builds their options.
      emitClose: false,
      autoDestroy: true,
      decodeStrings: false,
      onread: { buffer: pump.next, callback: pump.onRead },
    } as net.NetConnectOpts);
    pump.from = up;
    conn.upstream = up;
    // One 'error' listener for the socket's life: before 'connect' an error moves on to the
    // next endpoint, after it the client is reset.
    let connected = false;
    up.on('error', () => {
      if (connected) {
        if (!client.destroyed) client.resetAndDestroy();
        return;
      }
      up.destroy();
      if (client.destroyed) return;
      this.stats.connectFailures++;
      const tried = avoid ?? new Set<T>();
      tried.add(ep);
      const next = attempt < this.opts.connectAttempts ? this.picker.pick(flow, tried) : undefined;
      if (next) {
        conn.attemptSince = this.opts.clock.now();
        this.connect(conn, flow, next, attempt + 1, tried);
      } else {
        this.stats.refused++;
        client.resetAndDestroy();
      }
    });
    up.on('connect', () => {
      connected = true;
      conn.connected = true;
      conn.active = true;
      if (client.destroyed) up.destroy();
      else this.splice(conn, up);
    });
  }

  /**
   * Copies both ways with backpressure; FIN and RST pass through in either direction. Bytes
   * from upstream go through the read callback given to the upstream socket in `connect`,
   * bytes from the client through the one set here (or its 'data' events).
   */
  private splice(conn: Conn, up: net.Socket): void {
    const client = conn.client;
    // Set before the first read: the client is paused since accept.
    const pump = new Pump(conn, up, clientReads);
    pump.from = client;
    const onread = this.opts.clientReads !== 'data' && clientOnread?.(client, pump);
    if (!onread) {
      client.on('data', (chunk: Buffer) => {
        conn.active = true;
        if (!up.write(chunk)) client.pause();
      });
    }
    up.on('drain', () => client.resume());
    client.on('drain', () => up.resume());
    client.on('end', () => passEnd(up));
    up.on('end', () => passEnd(client));
    up.on('close', () => {
      if (!client.destroyed && !client.writableEnded) client.destroy();
    });
    client.resume();
  }
}
