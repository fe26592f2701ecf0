/**
 * The userspace backend: where nftables is not available (and in tests), every service
 * port gets a TCP or UDP socket of its own that forwards to the endpoints. `sync` is a
 * reconcile against the last state: new frontends get sockets, removed ones stop
 * accepting (their open connections finish, as conntrack entries would), and endpoint
 * changes swap the picker without touching open connections.
 */
import net from 'node:net';
import { systemClock } from '../clock.js';
import { ErrorCodes, ProxyError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Endpoint, Family, ProxyState } from '../model/types.js';
import { planFrontends, type BindMode, type FrontendKind, type FrontendSpec } from './frontends.js';
import { noLocalAddresses, type LocalAddresses } from './local-address.js';
import { samePickerSpec, type Clock } from './pickers.js';
import { TcpProxy } from './tcp-proxy.js';
import { UdpProxy } from './udp-proxy.js';

export interface UserspaceBackendOptions {
  log: Logger;
  /** `service-ip`: bind the Service IPs themselves (root, NET_ADMIN). `loopback`: 127.0.0.1:0. */
  bindMode: BindMode;
  clock?: Clock;
  /** The cluster-wide Maglev seed (config `maglevSeed`). */
  maglevSeed?: number;
  /** Close TCP connections idle this long; 0: never. Default 1 hour. */
  tcpIdleTimeoutMs?: number;
  /** End UDP sessions idle this long. Default 30 s, the kernel's UDP conntrack timeout. */
  udpIdleTimeoutMs?: number;
  /** Endpoints tried per TCP connection before the client is reset. Default 3. */
  connectAttempts?: number;
  /** Bytes buffered per direction before the reader pauses. Default 256 KiB. */
  highWaterMark?: number;
  /** UDP sessions per frontend. Default 4096. */
  maxUdpSessions?: number;
  /** How service IPs become local in service-ip mode; default: nothing (pass ipLocalAddresses()). */
  localAddresses?: LocalAddresses;
  /** How often idle connections and sessions are looked for; 0: only when `sweepIdle` is called. */
  sweepIntervalMs?: number;
  random?: () => number;
}

export interface ListenerInfo {
  key: string;
  frontend: FrontendKind;
  address: string;
  port: number;
  protocol: 'TCP' | 'UDP';
  /** Open TCP connections or live UDP sessions. */
  active: number;
}

interface Listener {
  spec: FrontendSpec;
  proxy: TcpProxy<Endpoint> | UdpProxy<Endpoint>;
}

export class UserspaceBackend {
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly listening = new Map<string, Listener>();
  /** Closed frontends whose connections are still finishing, so close() can end them. */
  private readonly draining = new Set<TcpProxy<Endpoint>>();
  private readonly localIPs = new Set<string>();
  private readonly reported = new Set<string>();
  private unsupportedPorts: Array<{ key: string; reason: string }> = [];
  private failedFrontends: Array<{ key: string; reason: string }> = [];
  private queue: Promise<void> = Promise.resolve();
  private readonly sweeper: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(private readonly opts: UserspaceBackendOptions) {
    this.log = opts.log.child({ component: 'userspace' });
    this.clock = opts.clock ?? systemClock;
    const every = opts.sweepIntervalMs ?? 1000;
    if (every > 0) {
      this.sweeper = setInterval(() => this.sweepIdle(), every);
      this.sweeper.unref();
    }
  }

  /** Brings the sockets in line with `state`. Throws USERSPACE_LISTEN_FAILED after doing all it can. */
  sync(state: ProxyState, nodePortIPs?: Record<Family, string[]>): Promise<void> {
    const run = this.queue.then(() => this.reconcile(state, nodePortIPs));
    this.queue = run.catch(() => {});
    return run;
  }

  listeners(): ListenerInfo[] {
    return [...this.listening.values()]
      .map(({ spec, proxy }) => ({
        key: spec.key,
        frontend: spec.frontend,
        address: spec.address,
        port: proxy.port,
        protocol: spec.protocol,
        active: proxy instanceof TcpProxy ? proxy.connections : proxy.sessionCount,
      }))
      .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : a.address < b.address ? -1 : 1));
  }

  /** Service ports and frontends not served, with the reason (SCTP, bind failures). */
  skipped(): Array<{ key: string; reason: string }> {
    return [...this.unsupportedPorts, ...this.failedFrontends];
  }

  /** Ends idle TCP connections and UDP sessions by the injected clock. */
  sweepIdle(): void {
    for (const { proxy } of this.listening.values()) proxy.sweep();
    for (const proxy of this.draining) proxy.sweep();
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.sweeper) clearInterval(this.sweeper);
    await this.queue;
    const all: Array<Promise<void>> = [];
    for (const { proxy } of this.listening.values()) all.push(closeProxy(proxy, true));
    for (const proxy of this.draining) all.push(proxy.close({ destroy: true }));
    this.listening.clear();
    this.draining.clear();
    await Promise.all(all);
    const local = this.opts.localAddresses ?? noLocalAddresses;
    await Promise.all([...this.localIPs].map((ip) => local.remove(ip).catch(() => {})));
    this.localIPs.clear();
  }

  private async reconcile(state: ProxyState, nodePortIPs?: Record<Family, string[]>): Promise<void> {
    if (this.closed) return;
    const plan = planFrontends(state, this.opts.bindMode, this.opts.maglevSeed ?? 0, nodePortIPs);
    for (const u of plan.unsupported) {
      if (this.reported.has(u.key)) continue;
      this.reported.add(u.key);
      this.log.warn({ key: u.key, reason: u.reason }, 'service port not proxied');
    }
    this.unsupportedPorts = plan.unsupported;
    const desired = new Map(plan.frontends.map((f) => [f.id, f]));

    for (const [id, l] of this.listening) {
      if (desired.has(id)) continue;
      this.listening.delete(id);
      if (l.proxy instanceof TcpProxy) {
        const proxy = l.proxy;
        this.draining.add(proxy);
        void proxy.close({ destroy: false }).then(() => this.draining.delete(proxy));
      } else {
        await l.proxy.close();
      }
    }

    const local = this.opts.localAddresses ?? noLocalAddresses;
    const wantIPs = new Set(plan.frontends.flatMap((f) => (f.localAddress ? [f.localAddress] : [])));
    const failures: Array<{ key: string; reason: string }> = [];
    for (const ip of wantIPs) {
      if (this.localIPs.has(ip)) continue;
      try {
        await local.add(ip);
        this.localIPs.add(ip);
      } catch (err) {
        this.log.error({ err, ip }, 'cannot make service IP local');
      }
    }

    for (const f of plan.frontends) {
      const have = this.listening.get(f.id);
      if (have) {
        // The model keeps an unchanged service port as the same object, so its endpoint and
        // source-range arrays keep their identity: skip the picker rebuild (a Maglev table of
        // 16,381+ slots) and the BlockList for frontends this sync did not change.
        if (f.endpoints !== have.spec.endpoints || !samePickerSpec(f.picker, have.spec.picker))
          have.proxy.setEndpoints(f.endpoints, f.picker);
        if (have.proxy instanceof TcpProxy && f.sourceRanges !== have.spec.sourceRanges)
          have.proxy.setAllow(blockListOf(f.sourceRanges));
        have.spec = f;
        continue;
      }
      try {
        this.listening.set(f.id, { spec: f, proxy: await this.open(f) });
      } catch (err) {
        const reason = err instanceof Error ? err.message : String(err);
        failures.push({ key: f.key, reason: `${f.frontend} ${f.address}:${f.port}: ${reason}` });
        this.log.error(
          { err, key: f.key, frontend: f.frontend, address: f.address, port: f.port },
          'cannot listen',
        );
      }
    }

    for (const ip of [...this.localIPs]) {
      if (wantIPs.has(ip)) continue;
      this.localIPs.delete(ip);
      await local.remove(ip).catch((err: unknown) => this.log.warn({ err, ip }, 'cannot remove service IP'));
    }
    this.failedFrontends = failures;
    if (failures.length > 0) {
      throw new ProxyError(
        ErrorCodes.USERSPACE_LISTEN_FAILED,
        `cannot listen on ${failures.length} frontend(s); first: ${failures[0]!.key} ${failures[0]!.reason}`,
      );
    }
  }

  private open(f: FrontendSpec): Promise<TcpProxy<Endpoint> | UdpProxy<Endpoint>> {
    const common = {
      log: this.log.child({ key: f.key, frontend: f.frontend }),
      address: f.address,
      port: f.port,
      spec: f.picker,
      endpoints: f.endpoints,
      clock: this.clock,
      random: this.opts.random,
    };
    if (f.protocol === 'UDP') {
      return UdpProxy.bind({
        ...common,
        idleTimeoutMs: this.opts.udpIdleTimeoutMs ?? 30_000,
        maxSessions: this.opts.maxUdpSessions ?? 4096,
      });
    }
    return TcpProxy.listen({
      ...common,
      idleTimeoutMs: this.opts.tcpIdleTimeoutMs ?? 3_600_000,
      connectAttempts: this.opts.connectAttempts ?? 3,
      highWaterMark: this.opts.highWaterMark ?? 256 * 1024,
      allow: blockListOf(f.sourceRanges),
    });
  }
}

function closeProxy(proxy: TcpProxy<Endpoint> | UdpProxy<Endpoint>, destroy: boolean): Promise<void> {
  return proxy instanceof TcpProxy ? proxy.close({ destroy }) : proxy.close();
}

/** loadBalancerSourceRanges as a BlockList used as an allow list; undefined when any source may connect. */
function blockListOf(cidrs: string[]): net.BlockList | undefined {
  if (cidrs.length === 0) return undefined;
  const list = new net.BlockList();
  for (const cidr of cidrs) {
    const [ip, bits] = cidr.split('/');
    if (!ip) continue;
    const type = net.isIPv6(ip) ? 'ipv6' : 'ipv4';
    list.addSubnet(ip, bits === undefined ? (type === 'ipv6' ? 128 : 32) : Number(bits), type);
  }
  return list;
}
