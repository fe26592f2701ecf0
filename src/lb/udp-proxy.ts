/**
 * One UDP frontend of the userspace proxy. Each client address:port is a session with its
 * own upstream socket, so replies can be told apart and sent back to the right client from
 * the service socket (the client sees the service address answer, as with DNAT). Sessions
 * end after idleTimeoutMs without packets, or when their endpoint leaves the list (the
 * conntrack flush kube-proxy does for removed UDP endpoints).
 */
import dgram from 'node:dgram';
import net from 'node:net';
import type { Clock } from '../util/clock.js';
import type { Logger } from '../log.js';
import { allowed, frontendPickerOptions, type FrontendProxy, type FrontendStats } from './frontend-proxy.js';
import { endpointName } from './maglev.js';
import {
  createPicker,
  type Picker,
  type PickerOptions,
  type PickerSpec,
  type Target,
  updatePicker,
} from './pickers.js';

export interface UdpProxyOptions<T extends Target> {
  log: Logger;
  address: string;
  /** 0: any free port (loopback mode). */
  port: number;
  spec: PickerSpec;
  endpoints: readonly T[];
  idleTimeoutMs: number;
  /**
   * Sessions at most: each holds a socket, and clients come from outside. A new client beyond
   * it ends the oldest idle session (else the oldest): a UDP session is soft, its client's
   * next datagram opens a new one.
   */
  maxSessions: number;
  /** Client addresses allowed (loadBalancerSourceRanges); undefined: any. */
  allow?: net.BlockList | undefined;
  /** Clients a ClientIP-affinity picker remembers at most. */
  maxAffinityClients?: number;
  clock: Pick<Clock, 'now'>;
  random?: () => number;
}

export interface UdpProxyStats extends FrontendStats {
  /** Datagrams from allowed clients dropped because there is no endpoint. */
  dropped: number;
  /** Sessions opened. */
  sessions: number;
}

/** How many of the oldest sessions are looked at for an idle one when the cap is reached. */
const EVICTION_SCAN = 16;

class Session<T extends Target> {
  active = false;
  idleSince: number;
  constructor(
    readonly key: string,
    readonly client: string,
    readonly endpoint: T,
    readonly upstream: dgram.Socket,
    now: number,
  ) {
    this.idleSince = now;
  }
}

export class UdpProxy<T extends Target = Target> implements FrontendProxy<T> {
  readonly stats: UdpProxyStats = { dropped: 0, sessions: 0, refused: 0, evicted: 0, affinityEvicted: 0 };
  private picker: Picker<T>;
  private spec: PickerSpec;
  private readonly sessions = new Map<string, Session<T>>();
  private readonly socket: dgram.Socket;
  private boundPort = 0;
  private allow: net.BlockList | undefined;
  private readonly pickerOptions: PickerOptions;

  private constructor(private readonly opts: UdpProxyOptions<T>) {
    this.spec = opts.spec;
    this.allow = opts.allow;
    this.pickerOptions = frontendPickerOptions(opts, this.stats);
    this.picker = createPicker(opts.spec, opts.endpoints, this.pickerOptions);
    this.socket = dgram.createSocket(net.isIPv6(opts.address) ? 'udp6' : 'udp4');
    this.socket.on('message', (msg, rinfo) => this.fromClient(msg, rinfo));
  }

  static async bind<T extends Target>(opts: UdpProxyOptions<T>): Promise<UdpProxy<T>> {
    const proxy = new UdpProxy(opts);
    await new Promise<void>((resolve, reject) => {
      proxy.socket.once('error', (err) => {
        // A failed bind leaves the socket open; the backend tries again on every sync.
        proxy.socket.close();
        reject(err);
      });
      proxy.socket.bind({ address: opts.address, port: opts.port, exclusive: true }, () => {
        proxy.socket.removeAllListeners('error');
        resolve();
      });
    });
    proxy.socket.on('error', (err) => opts.log.error({ err }, 'udp socket error'));
    proxy.boundPort = proxy.socket.address().port;
    return proxy;
  }

  get port(): number {
    return this.boundPort;
  }
  get address(): string {
    return this.opts.address;
  }
  get active(): number {
    return this.sessions.size;
  }

  setEndpoints(endpoints: readonly T[], spec: PickerSpec): void {
    this.picker = updatePicker(this.picker, this.spec, spec, endpoints, this.pickerOptions);
    this.spec = spec;
    const live = new Set(endpoints.map(endpointName));
    for (const s of this.sessions.values()) if (!live.has(endpointName(s.endpoint))) this.end(s);
  }

  /**
   * Replaces the allowed client ranges and ends the sessions of clients now outside them: a
   * client that keeps sending would otherwise keep its session, and its way in, forever.
   */
  setAllow(allow: net.BlockList | undefined): void {
    this.allow = allow;
    if (allow) for (const s of this.sessions.values()) if (!allowed(allow, s.client)) this.end(s);
  }

  /** Ends sessions idle for idleTimeoutMs; the backend calls it periodically. */
  sweep(): void {
    const now = this.opts.clock.now();
    for (const s of this.sessions.values()) {
      if (s.active) {
        s.active = false;
        s.idleSince = now;
      } else if (now - s.idleSince >= this.opts.idleTimeoutMs) {
        this.end(s);
      }
    }
  }

  /** A UDP frontend has nothing to drain: its sessions end with it either way. */
  async close(_opts: { destroy: boolean } = { destroy: true }): Promise<void> {
    for (const s of this.sessions.values()) this.end(s);
    await new Promise<void>((resolve) => this.socket.close(() => resolve()));
  }

  private fromClient(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    const key = `${rinfo.address}|${rinfo.port}`;
    let s = this.sessions.get(key);
    if (!s) {
      // Checked once per session, not per datagram: an admitted client's packets cost nothing more.
      if (!allowed(this.allow, rinfo.address)) {
        this.stats.refused++;
        return;
      }
      s = this.open(key, rinfo);
      if (!s) {
        this.stats.dropped++;
        return;
      }
    }
    s.active = true;
    s.upstream.send(msg, s.endpoint.port, s.endpoint.ip);
  }

  private open(key: string, client: dgram.RemoteInfo): Session<T> | undefined {
    const ep = this.picker.pick({ ip: client.address, port: client.port });
    if (!ep) return undefined;
    if (this.sessions.size >= this.opts.maxSessions) this.evict();
    const upstream = dgram.createSocket(net.isIPv6(ep.ip) ? 'udp6' : 'udp4');
    const s = new Session(key, client.address, ep, upstream, this.opts.clock.now());
    const clientPort = client.port;
    const clientAddress = client.address;
    upstream.on('message', (reply, from) => {
      // The upstream socket is not connected, so anyone could write to it: only the endpoint's
      // packets are replies.
      if (from.port !== ep.port || from.address !== ep.ip) return;
      s.active = true;
      this.socket.send(reply, clientPort, clientAddress);
    });
    upstream.on('error', (err) => {
      this.opts.log.debug({ err, endpoint: endpointName(ep) }, 'udp session error');
      this.end(s);
    });
    this.sessions.set(key, s);
    this.stats.sessions++;
    return s;
  }

  /** Ends the oldest session idle since the last sweep among the oldest few, else the oldest. */
  private evict(): void {
    let victim: Session<T> | undefined;
    let n = 0;
    for (const s of this.sessions.values()) {
      victim ??= s;
      if (!s.active) {
        victim = s;
        break;
      }
      if (++n >= EVICTION_SCAN) break;
    }
    if (!victim) return;
    if (this.stats.evicted++ === 0)
      this.opts.log.warn(
        { cap: this.opts.maxSessions },
        'udp session cap reached: ending the oldest sessions',
      );
    this.end(victim);
  }

  private end(s: Session<T>): void {
    if (this.sessions.get(s.key) !== s) return;
    this.sessions.delete(s.key);
    s.upstream.close();
  }
}
