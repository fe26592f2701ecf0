/**
 * The userspace backend: where nftables is not available (and in tests), every service
 * port gets a TCP or UDP socket of its own that forwards to the endpoints. `sync` is a
 * reconcile against the last state: new frontends get sockets, removed ones stop
 * accepting (their open connections finish, as conntrack entries would), and endpoint
 * changes swap the picker without touching open connections.
 */
import { systemClock, type Clock } from '../util/clock.js';
import type { Logger } from '../log.js';
import { parseCidr, type Cidr } from '../model/ip.js';
import type { Endpoint, Family, ProxyState } from '../model/types.js';
import { decideAddress, reservedAddresses, unbindable, type AddressRule } from './address-rule.js';
import { allowListOf, type FrontendProxy } from './frontend-proxy.js';
import type { FrontendKind } from '../model/frontends.js';
import { planFrontends, type BindMode, type FrontendSpec } from './frontends.js';
import { noLocalAddresses, type LocalAddresses } from './local-address.js';
import { samePickerSpec } from './pickers.js';
import { TcpProxy } from './tcp-proxy.js';
import { UdpProxy } from './udp-proxy.js';

export interface UserspaceBackendOptions {
  log: Logger;
  /** `service-ip`: bind the Service IPs themselves (root, NET_ADMIN). `loopback`: 127.0.0.1:0. */
  bindMode: BindMode;
  /**
   * --service-cidr: in service-ip mode, the only addresses made local (address-rule.ts);
   * without it, ClusterIPs only.
   */
  serviceCIDRs?: string[];
  clock?: Pick<Clock, 'now'>;
  /** The cluster-wide Maglev seed (config `maglevSeed`). */
  maglevSeed?: number;
  /** Close TCP connections idle this long; 0: never. Default 1 hour. */
  tcpIdleTimeoutMs?: number;
  /** End UDP sessions idle this long. Default 30 s, the kernel's UDP conntrack timeout. */
  udpIdleTimeoutMs?: number;
  /** Endpoints tried per TCP connection before the client is reset. Default 3. */
  connectAttempts?: number;
  /** An endpoint connect older than this fails over to the next endpoint; 0: the kernel's. Default 5 s. */
  connectTimeoutMs?: number;
  /** Bytes buffered per direction before the reader pauses. Default 256 KiB. */
  highWaterMark?: number;
  /** UDP sessions per frontend; the oldest idle one makes room. Default 4096. */
  maxUdpSessions?: number;
  /** TCP connections per frontend; the oldest idle one makes room, else a new one is refused. Default 16384. */
  maxTcpConnections?: number;
  /** ClientIP-affinity clients remembered per frontend; the oldest is forgotten. Default 65536. */
  maxAffinityClients?: number;
  /** How service IPs become local in service-ip mode; default: nothing (pass ipLocalAddresses()). */
  localAddresses?: LocalAddresses;
  /** How often idle connections and sessions are looked for; 0: only when `sweepIdle` is called. */
  sweepIntervalMs?: number;
  random?: () => number;
}

/** A service port, or one frontend of it, that is not served, and why. */
export interface SkippedFrontend {
  key: string;
  /** `namespace/name`. */
  service: string;
  reason: string;
}

/** What one sync produced. */
export interface UserspaceSyncResult {
  /** Frontends listening after it. */
  listening: number;
  /** Service ports and frontends not served; retried on every sync. */
  skipped: SkippedFrontend[];
}

export interface ListenerInfo {
  key: string;
  frontend: FrontendKind;
  address: string;
  port: number;
  protocol: 'TCP' | 'UDP';
  /** Open TCP connections or live UDP sessions. */
  active: number;
  /** Clients turned away, connections or sessions evicted under the cap, affinity pins evicted. */
  refused: number;
  evicted: number;
  affinityEvicted: number;
}

interface Listener {
  spec: FrontendSpec;
  proxy: FrontendProxy<Endpoint>;
}

/** Why `open` failed, and whether making the address local could help. */
interface OpenFailure {
  reason: string;
  addressNotLocal: boolean;
}

export class UserspaceBackend {
  private readonly log: Logger;
  private readonly clock: Pick<Clock, 'now'>;
  private readonly local: LocalAddresses;
  private readonly serviceCIDRs: Cidr[];
  private readonly listening = new Map<string, Listener>();
  /** Closed frontends whose connections are still finishing, so close() can end them. */
  private readonly draining = new Set<FrontendProxy<Endpoint>>();
  /** Addresses this process added (and only these are ever removed). */
  private readonly localIPs = new Set<string>();
  /** Unsupported service ports after the last sync, so each is logged once. */
  private reported = new Set<string>();
  private unsupportedPorts: SkippedFrontend[] = [];
  /** Frontends not served after the last sync, by id: logged when they first fail or their reason changes. */
  private failedFrontends = new Map<string, SkippedFrontend>();
  private queue: Promise<unknown> = Promise.resolve();
  private readonly sweeper: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(private readonly opts: UserspaceBackendOptions) {
    this.log = opts.log.child({ component: 'userspace' });
    this.clock = opts.clock ?? systemClock;
    this.local = opts.localAddresses ?? noLocalAddresses;
    this.serviceCIDRs = (opts.serviceCIDRs ?? []).flatMap((c) => parseCidr(c) ?? []);
    const every = opts.sweepIntervalMs ?? 1000;
    if (every > 0) {
      this.sweeper = setInterval(() => this.sweepIdle(), every);
      this.sweeper.unref();
    }
  }

  /**
   * Brings the sockets in line with `state`. A frontend that cannot listen (port in use, an
   * address that may not be made local, no privilege) costs only itself: it is skipped with
   * its reason, logged once, and tried again on the next sync.
   */
  sync(state: ProxyState, nodePortIPs?: Record<Family, string[]>): Promise<UserspaceSyncResult> {
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
        active: proxy.active,
        refused: proxy.stats.refused,
        evicted: proxy.stats.evicted,
        affinityEvicted: proxy.stats.affinityEvicted,
      }))
      .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : a.address < b.address ? -1 : 1));
  }

  /** Service ports and frontends not served, with the reason (SCTP, bind failures, refused addresses). */
  skipped(): SkippedFrontend[] {
    return [...this.unsupportedPorts, ...this.failedFrontends.values()];
  }

  /** Ends idle TCP connections and UDP sessions, and slow connects, by the injected clock. */
  sweepIdle(): void {
    for (const { proxy } of this.listening.values()) proxy.sweep();
    for (const proxy of this.draining) proxy.sweep();
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.sweeper) clearInterval(this.sweeper);
    await this.queue;
    const all: Array<Promise<void>> = [];
    for (const { proxy } of this.listening.values()) all.push(proxy.close({ destroy: true }));
    for (const proxy of this.draining) all.push(proxy.close({ destroy: true }));
    this.listening.clear();
    this.draining.clear();
    await Promise.all(all);
    await Promise.all([...this.localIPs].map((ip) => this.local.remove(ip).catch(() => {})));
    this.localIPs.clear();
  }

  private async reconcile(
    state: ProxyState,
    nodePortIPs?: Record<Family, string[]>,
  ): Promise<UserspaceSyncResult> {
    if (this.closed) return { listening: 0, skipped: [] };
    const plan = planFrontends(state, this.opts.bindMode, this.opts.maglevSeed ?? 0, nodePortIPs);
    // Built only when something is skipped: a quiet sync stays O(changed frontends) in allocations.
    let services: Map<string, string> | undefined;
    const serviceOf = (key: string): string =>
      (services ??= new Map(state.ports.map((sp) => [sp.key, sp.service]))).get(key) ?? '';
    for (const u of plan.unsupported)
      if (!this.reported.has(u.key))
        this.log.warn({ key: u.key, reason: u.reason }, 'service port not proxied');
    // Only the ports unsupported now: the set does not grow with every Service ever seen.
    this.reported = new Set(plan.unsupported.map((u) => u.key));
    this.unsupportedPorts = plan.unsupported.map((u) => ({ ...u, service: serviceOf(u.key) }));
    const desired = new Map(plan.frontends.map((f) => [f.id, f]));

    for (const [id, l] of this.listening) {
      if (desired.has(id)) continue;
      this.listening.delete(id);
      // Not awaited: the listening socket closes at once (its port is free for a frontend
      // opened below); TCP connections finish on their own.
      const proxy = l.proxy;
      this.draining.add(proxy);
      void proxy.close({ destroy: false }).then(() => this.draining.delete(proxy));
    }

    const failed = new Map<string, SkippedFrontend>();
    const skip = (f: FrontendSpec, reason: string): void => {
      failed.set(f.id, {
        key: f.key,
        service: serviceOf(f.key),
        reason: `${f.frontend} ${f.address}:${f.port}/${f.protocol}: ${reason}`,
      });
    };
    /** Frontends whose address is not local yet and may become so. */
    const notLocal: FrontendSpec[] = [];
    for (const f of plan.frontends) {
      const have = this.listening.get(f.id);
      if (have) {
        // The model keeps an unchanged service port as the same object, so its endpoint and
        // source-range arrays keep their identity: skip the picker rebuild (a Maglev table of
        // 16,381+ slots) and the BlockList for frontends this sync did not change.
        if (f.endpoints !== have.spec.endpoints || !samePickerSpec(f.picker, have.spec.picker))
          have.proxy.setEndpoints(f.endpoints, f.picker);
        if (f.sourceRanges !== have.spec.sourceRanges) have.proxy.setAllow(allowListOf(f.sourceRanges));
        have.spec = f;
        continue;
      }
      const never = unbindable(f.address);
      if (never) {
        skip(f, never);
        continue;
      }
      const failure = await this.tryOpen(f);
      if (!failure) continue;
      if (failure.addressNotLocal && f.localAddress && !this.localIPs.has(f.localAddress)) notLocal.push(f);
      else skip(f, failure.reason);
    }
    if (notLocal.length > 0) await this.makeLocalAndOpen(state, notLocal, skip);

    const wantIPs = new Set(plan.frontends.flatMap((f) => (f.localAddress ? [f.localAddress] : [])));
    for (const ip of [...this.localIPs]) {
      if (wantIPs.has(ip)) continue;
      this.localIPs.delete(ip);
      await this.local
        .remove(ip)
        .catch((err: unknown) => this.log.warn({ err, ip }, 'cannot remove service IP'));
    }
    this.report(failed, desired);
    return { listening: this.listening.size, skipped: this.skipped() };
  }

  /**
   * Service-ip mode: adds the addresses address-rule.ts allows, then opens their frontends
   * again. The rule's reserved addresses (gateways: an `ip route` call; every endpoint) are
   * gathered only when some address passes the --service-cidr part of the rule.
   */
  private async makeLocalAndOpen(
    state: ProxyState,
    frontends: FrontendSpec[],
    skip: (f: FrontendSpec, reason: string) => void,
  ): Promise<void> {
    const byCidr: AddressRule = { serviceCIDRs: this.serviceCIDRs, reserved: new Map() };
    const candidates: FrontendSpec[] = [];
    for (const f of frontends) {
      const d = decideAddress(f.frontend, f.address, byCidr);
      if (d.add) candidates.push(f);
      else skip(f, d.reason);
    }
    if (candidates.length === 0) return;
    let rule: AddressRule;
    try {
      rule = {
        serviceCIDRs: this.serviceCIDRs,
        reserved: reservedAddresses(state, await this.local.gateways()),
      };
    } catch (err) {
      const reason = `not made local: this node's gateways are unknown (${err instanceof Error ? err.message : String(err)})`;
      for (const f of candidates) skip(f, reason);
      return;
    }
    for (const f of candidates) {
      const ip = f.address;
      const d = decideAddress(f.frontend, ip, rule);
      if (!d.add) {
        skip(f, d.reason);
        continue;
      }
      if (!this.localIPs.has(ip)) {
        try {
          await this.local.add(ip);
          this.localIPs.add(ip);
          this.log.info({ ip }, 'service IP made local');
        } catch (err) {
          skip(f, `cannot make ${ip} local: ${err instanceof Error ? err.message : String(err)}`);
          continue;
        }
      }
      const failure = await this.tryOpen(f);
      if (failure) skip(f, failure.reason);
    }
  }

  /** Opens `f` and lists it; a failure is returned, not thrown. */
  private async tryOpen(f: FrontendSpec): Promise<OpenFailure | undefined> {
    try {
      this.listening.set(f.id, { spec: f, proxy: await this.open(f) });
      return undefined;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const reason = err instanceof Error ? err.message : String(err);
      return { reason, addressNotLocal: code === 'EADDRNOTAVAIL' };
    }
  }

  /** Logs a frontend the first time it is skipped (or its reason changes), and when it serves again. */
  private report(failed: Map<string, SkippedFrontend>, specs: Map<string, FrontendSpec>): void {
    for (const [id, s] of failed) {
      if (this.failedFrontends.get(id)?.reason === s.reason) continue;
      const f = specs.get(id)!;
      this.log.warn(
        { key: s.key, frontend: f.frontend, address: f.address, port: f.port, reason: s.reason },
        'frontend skipped; retried on the next sync',
      );
    }
    for (const [id, s] of this.failedFrontends)
      if (!failed.has(id) && this.listening.has(id))
        this.log.info({ key: s.key, id }, 'skipped frontend now listens');
    this.failedFrontends = failed;
  }

  private open(f: FrontendSpec): Promise<FrontendProxy<Endpoint>> {
    const common = {
      log: this.log.child({ key: f.key, frontend: f.frontend }),
      address: f.address,
      port: f.port,
      spec: f.picker,
      endpoints: f.endpoints,
      clock: this.clock,
      random: this.opts.random,
      allow: allowListOf(f.sourceRanges),
      maxAffinityClients: this.opts.maxAffinityClients,
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
      connectTimeoutMs: this.opts.connectTimeoutMs ?? 5_000,
      maxConnections: this.opts.maxTcpConnections ?? 16_384,
      highWaterMark: this.opts.highWaterMark ?? 256 * 1024,
    });
  }
}
