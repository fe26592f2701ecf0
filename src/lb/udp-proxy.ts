/**
 * One UDP frontend of the userspace proxy. Each client address:port is a session with its
 * own upstream socket, so replies can be told apart and sent back to the right client from
 * the service socket (the client sees the service address answer, as with DNAT). Sessions
 * end after idleTimeoutMs without packets, or when their endpoint leaves the list (the
 * conntrack flush kube-proxy does for removed UDP endpoints).
 */
import dgram from 'node:dgram';
import net from 'node:net';
import type { Logger } from '../log.js';
import { endpointName } from './maglev.js';
import {
  createPicker,
  type Clock,
  type Picker,
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
  /** New clients beyond this many sessions are dropped: each session holds a socket. */
  maxSessions: number;
  clock: Clock;
  random?: () => number;
}

export interface UdpProxyStats {
  /** Datagrams from clients dropped: no endpoint, or the session limit reached. */
  dropped: number;
  sessions: number;
}

class Session<T extends Target> {
  active = false;
  idleSince: number;
  constructor(
    readonly key: string,
    readonly endpoint: T,
    readonly upstream: dgram.Socket,
    now: number,
  ) {
    this.idleSince = now;
  }
}

export class UdpProxy<T extends Target = Target> {
  readonly stats: UdpProxyStats = { dropped: 0, sessions: 0 };
  private picker: Picker<T>;
  private spec: PickerSpec;
  private readonly sessions = new Map<string, Session<T>>();
  private readonly socket: dgram.Socket;
  private boundPort = 0;

  private constructor(private readonly opts: UdpProxyOptions<T>) {
    this.spec = opts.spec;
    this.picker = createPicker(opts.spec, opts.endpoints, opts);
    this.socket = dgram.createSocket(net.isIPv6(opts.address) ? 'udp6' : 'udp4');
    this.socket.on('message', (msg, rinfo) => this.fromClient(msg, rinfo));
  }

  static async bind<T extends Target>(opts: UdpProxyOptions<T>): Promise<UdpProxy<T>> {
    const proxy = new UdpProxy(opts);
    await new Promise<void>((resolve, reject) => {
      proxy.socket.once('error', reject);
      proxy.socket.bind({ address: opts.address, port: opts.port, exclusive: true }, () => {
        proxy.socket.off('error', reject);
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
  get sessionCount(): number {
    return this.sessions.size;
  }

  setEndpoints(endpoints: readonly T[], spec: PickerSpec): void {
    this.picker = updatePicker(this.picker, this.spec, spec, endpoints, this.opts);
    this.spec = spec;
    const live = new Set(endpoints.map(endpointName));
    for (const s of this.sessions.values()) if (!live.has(endpointName(s.endpoint))) this.end(s);
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

  async close(): Promise<void> {
    for (const s of this.sessions.values()) this.end(s);
    await new Promise<void>((resolve) => this.socket.close(() => resolve()));
  }

  private fromClient(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    const key = `${rinfo.address}|${rinfo.port}`;
    let s = this.sessions.get(key);
    if (!s) {
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
    if (this.sessions.size >= this.opts.maxSessions) return undefined;
    const ep = this.picker.pick({ ip: client.address, port: client.port });
    if (!ep) return undefined;
    const upstream = dgram.createSocket(net.isIPv6(ep.ip) ? 'udp6' : 'udp4');
    const s = new Session(key, ep, upstream, this.opts.clock.now());
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

  private end(s: Session<T>): void {
    if (this.sessions.get(s.key) !== s) return;
    this.sessions.delete(s.key);
    s.upstream.close();
  }
}
