/**
 * One TCP frontend of the userspace proxy: accepts on an address, connects each client to an
 * endpoint the picker chooses and copies bytes both ways. A direction pauses its reader when
 * the writer's buffer passes its high-water mark, so a slow side buffers at most
 * highWaterMark + one read per direction.
 *
 * Upstream sockets read through `onread` into one buffer shared by the process, and each read
 * is copied out into a buffer of its own size: for the small reads of request/response
 * traffic that costs less than a stream's read (a 64 KiB allocation shrunk to fit, a push
 * through the readable state, a `data` event and a tick). Accepted sockets cannot take
 * `onread`, so the client side reads through `data` events.
 */
import net from 'node:net';
import type { Logger } from '../log.js';
import {
  createPicker,
  type Clock,
  type Flow,
  type Picker,
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
  /** Bytes a direction may buffer before its reader pauses. */
  highWaterMark: number;
  /** Client addresses allowed (loadBalancerSourceRanges); undefined: any. */
  allow?: net.BlockList | undefined;
  clock: Clock;
  random?: () => number;
}

export interface TcpProxyStats {
  accepted: number;
  /** Reset at once: no endpoint, a source outside the allowed ranges, or every attempt failed. */
  refused: number;
  /** Upstream connects that failed and moved on to another endpoint. */
  connectFailures: number;
}

/**
 * Where every upstream socket reads. One buffer serves all of them because a read callback
 * runs to its end before the next one starts, and it copies what it read out before it
 * returns: a write may still hold its buffer after write() returns.
 */
const upstreamReads = Buffer.allocUnsafe(64 * 1024);

/** A client and its upstream; one object per connection and one read callback per upstream. */
class Conn {
  active = false;
  idleSince: number;
  upstream: net.Socket | undefined;
  constructor(
    readonly client: net.Socket,
    now: number,
  ) {
    this.idleSince = now;
  }
  destroy(): void {
    this.client.destroy();
    this.upstream?.destroy();
  }
}

export class TcpProxy<T extends Target = Target> {
  readonly stats: TcpProxyStats = { accepted: 0, refused: 0, connectFailures: 0 };
  private picker: Picker<T>;
  private spec: PickerSpec;
  private readonly conns = new Set<Conn>();
  private readonly server: net.Server;
  private readonly log: Logger;
  private boundPort = 0;
  private allow: net.BlockList | undefined;

  private constructor(private readonly opts: TcpProxyOptions<T>) {
    this.log = opts.log;
    this.allow = opts.allow;
    this.spec = opts.spec;
    this.picker = createPicker(opts.spec, opts.endpoints, opts);
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

  /** New flows use the new endpoints; open connections keep the endpoint they have. */
  setEndpoints(endpoints: readonly T[], spec: PickerSpec): void {
    this.picker = updatePicker(this.picker, this.spec, spec, endpoints, this.opts);
    this.spec = spec;
  }

  /** Replaces the allowed client ranges (undefined: any) for new connections. */
  setAllow(allow: net.BlockList | undefined): void {
    this.allow = allow;
  }

  /** Closes connections idle for idleTimeoutMs; the backend calls it periodically. */
  sweep(): void {
    if (this.opts.idleTimeoutMs <= 0) return;
    const now = this.opts.clock.now();
    for (const c of this.conns) {
      if (c.active) {
        c.active = false;
        c.idleSince = now;
      } else if (now - c.idleSince >= this.opts.idleTimeoutMs) {
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
    const flow: Flow = { ip: client.remoteAddress ?? '', port: client.remotePort ?? 0 };
    if (this.allow && !this.allow.check(flow.ip, net.isIPv6(flow.ip) ? 'ipv6' : 'ipv4')) {
      this.refuse(client);
      return;
    }
    const first = this.picker.pick(flow);
    if (!first) {
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

  private refuse(client: net.Socket): void {
    this.stats.refused++;
    client.on('error', () => {});
    // An RST right away, like a REJECT rule: the client learns at once instead of hanging.
    client.resetAndDestroy();
  }

  private connect(conn: Conn, flow: Flow, ep: T, attempt: number, avoid: Set<T> | undefined): void {
    const client = conn.client;
    const up = net.connect({
      host: ep.ip,
      port: ep.port,
      noDelay: true,
      allowHalfOpen: true,
      highWaterMark: this.opts.highWaterMark,
      onread: {
        buffer: upstreamReads,
        // Returning false stops reading, as pause() would; the client's 'drain' resumes it.
        callback: (n: number): boolean => {
          conn.active = true;
          const chunk = Buffer.allocUnsafe(n);
          upstreamReads.copy(chunk, 0, 0, n);
          return client.write(chunk);
        },
      },
    } as net.NetConnectOpts);
    conn.upstream = up;
    const onConnectError = (): void => {
      up.destroy();
      if (conn.client.destroyed) return;
      this.stats.connectFailures++;
      const tried = avoid ?? new Set<T>();
      tried.add(ep);
      const next = attempt < this.opts.connectAttempts ? this.picker.pick(flow, tried) : undefined;
      if (next) this.connect(conn, flow, next, attempt + 1, tried);
      else {
        this.stats.refused++;
        conn.client.resetAndDestroy();
      }
    };
    up.once('error', onConnectError);
    up.once('connect', () => {
      up.off('error', onConnectError);
      if (conn.client.destroyed) {
        up.destroy();
        return;
      }
      this.splice(conn, up);
    });
  }

  /**
   * Copies both ways with backpressure; FIN and RST pass through in either direction. Bytes
   * from upstream go through the read callback given to the upstream socket in `connect`.
   */
  private splice(conn: Conn, up: net.Socket): void {
    const client = conn.client;
    client.on('data', (chunk: Buffer) => {
      conn.active = true;
      if (!up.write(chunk)) client.pause();
    });
    up.on('drain', () => client.resume());
    client.on('drain', () => up.resume());
    client.on('end', () => up.end());
    up.on('end', () => client.end());
    up.on('error', () => {
      if (!client.destroyed) client.resetAndDestroy();
    });
    up.on('close', () => {
      if (!client.destroyed && !client.writableEnded) client.destroy();
    });
    client.resume();
  }
}
