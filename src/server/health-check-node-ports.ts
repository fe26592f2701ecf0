import { createServer, type Server } from 'node:http';
import { isIPv6 } from 'node:net';
import type { ProxyConfig } from '../config-types.js';
import { ErrorCodes, ProxyError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Family, ProxyState } from '../model/types.js';
import { nodePortIPs } from '../node-addresses.js';

/**
 * One healthCheckNodePort to serve: a LoadBalancer Service with externalTrafficPolicy Local, in
 * one address family (kube-proxy runs one health server per family proxier, each counting its
 * own family's endpoints, so a dual-stack pod counts once on each).
 */
export interface HealthCheckService {
  /** `namespace/name/family`: one server set per key. */
  key: string;
  namespace: string;
  name: string;
  family: Family;
  port: number;
  /** Where to listen, sorted: this family's NodePort addresses, or its unspecified address. */
  addresses: string[];
  /** Distinct IPs of this node's ready endpoints of the Service, over all its ports. */
  localEndpoints: number;
}

const ANY: Record<Family, string> = { ipv4: '0.0.0.0', ipv6: '::' };
const ZERO_CIDR: Record<Family, string> = { ipv4: '0.0.0.0/0', ipv6: '::/0' };

/**
 * The health checks this node should serve, sorted by key: pure. Addresses follow
 * --nodeport-addresses as the NodePort rules do; like kube-proxy, a zero CIDR for a family, or
 * no matching address at all, means every address of the family. Only ready endpoints count
 * (kube-proxy's LocalReadyEndpoints): a node whose local pods are all terminating fails the
 * check, so load balancers drain it while those pods still finish their connections.
 */
export function desiredHealthChecks(
  state: ProxyState,
  nodePortAddresses: ProxyConfig['nodePortAddresses'],
  localAddresses: string[],
): HealthCheckService[] {
  const byKey = new Map<string, HealthCheckService & { ips: Set<string> }>();
  for (const sp of state.ports) {
    if (sp.healthCheckNodePort === 0 || !sp.externalPolicyLocal) continue;
    const key = `${sp.service}/${sp.family}`;
    let hc = byKey.get(key);
    if (!hc) {
      hc = {
        key,
        namespace: sp.namespace,
        name: sp.name,
        family: sp.family,
        port: sp.healthCheckNodePort,
        addresses: [],
        localEndpoints: 0,
        ips: new Set(),
      };
      byKey.set(key, hc);
    }
    for (const ep of sp.allEndpoints) if (ep.local && ep.ready) hc.ips.add(ep.ip);
  }
  const npa = nodePortIPs(state.node, nodePortAddresses, localAddresses);
  const out: HealthCheckService[] = [];
  for (const { ips, ...hc } of byKey.values()) {
    const matchAll = nodePortAddresses !== 'primary' && nodePortAddresses.includes(ZERO_CIDR[hc.family]);
    const chosen = npa[hc.family];
    out.push({
      ...hc,
      addresses: matchAll || chosen.length === 0 ? [ANY[hc.family]] : chosen,
      localEndpoints: ips.size,
    });
  }
  return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}

/** What one reconcile did, by key. */
export interface ReconcileResult {
  opened: string[];
  closed: string[];
  /** Could not listen (port in use, address gone): retried on the next reconcile. */
  failing: string[];
}

interface Instance {
  /** The desired entry it serves; localEndpoints is updated in place by each reconcile. */
  want: HealthCheckService;
  servers: Server[];
}

/**
 * The healthCheckNodePort servers, kube-proxy's ServiceHealthServer: one HTTP server per
 * Service, family and address, opened and closed as the desired list changes. Every request
 * (any path, any method) gets kube-proxy's answer: 200 with local ready endpoints and a healthy
 * proxy, else 503, with `X-Load-Balancing-Endpoint-Weight` and a JSON body in kube-proxy's exact
 * layout. A port that cannot be bound is not fatal: it is logged once per failure streak and
 * tried again on the next reconcile.
 */
export class HealthCheckNodePorts {
  readonly #instances = new Map<string, Instance>();
  /** Keys whose last attempt to listen failed (the streak's first failure was logged). */
  readonly #failing = new Set<string>();
  readonly #healthy: () => boolean;
  readonly #log: Logger;
  readonly #onListenFailed: ((hc: HealthCheckService, err: unknown) => void) | undefined;

  /**
   * `onListenFailed` hears of the first failure of each streak, as the log does (the daemon turns
   * it into a Warning Event on the Service).
   */
  constructor(opts: {
    healthy: () => boolean;
    log: Logger;
    onListenFailed?: (hc: HealthCheckService, err: unknown) => void;
  }) {
    this.#healthy = opts.healthy;
    this.#log = opts.log.child({ component: 'health-check-node-ports' });
    this.#onListenFailed = opts.onListenFailed;
  }

  /** Makes the open servers match `desired`; never throws. */
  async reconcile(desired: readonly HealthCheckService[]): Promise<ReconcileResult> {
    const want = new Map(desired.map((d) => [d.key, d]));
    const result: ReconcileResult = { opened: [], closed: [], failing: [] };
    // Close first: a port handed from one Service to another in the same sync is free again.
    for (const [key, inst] of this.#instances) {
      const d = want.get(key);
      if (d && d.port === inst.want.port && sameList(d.addresses, inst.want.addresses)) continue;
      this.#instances.delete(key);
      await Promise.all(inst.servers.map(stop));
      result.closed.push(key);
      this.#log.info({ service: key, port: inst.want.port }, 'closed health check node port');
    }
    for (const key of this.#failing) if (!want.has(key)) this.#failing.delete(key);
    for (const d of desired) {
      const inst = this.#instances.get(d.key);
      if (inst) {
        inst.want.localEndpoints = d.localEndpoints;
        continue;
      }
      const entry: HealthCheckService = { ...d, addresses: [...d.addresses] };
      try {
        const servers = await this.#open(entry);
        this.#instances.set(d.key, { want: entry, servers });
        this.#failing.delete(d.key);
        result.opened.push(d.key);
        this.#log.info(
          { service: d.key, port: d.port, addresses: d.addresses },
          'serving health check node port',
        );
      } catch (err) {
        result.failing.push(d.key);
        if (!this.#failing.has(d.key)) {
          this.#failing.add(d.key);
          this.#log.error(
            { err, service: d.key, port: d.port },
            'cannot serve health check node port; retrying on every sync',
          );
          this.#onListenFailed?.(d, err);
        }
      }
    }
    return result;
  }

  /** The open health checks, sorted by key (tests and debugging). */
  serving(): Array<{ key: string; port: number; addresses: string[]; localEndpoints: number }> {
    return [...this.#instances.values()]
      .map(({ want: w }) => ({
        key: w.key,
        port: w.port,
        addresses: w.addresses,
        localEndpoints: w.localEndpoints,
      }))
      .sort((a, b) => (a.key < b.key ? -1 : 1));
  }

  /** Closes every server and drops open connections. */
  async close(): Promise<void> {
    const all = [...this.#instances.values()];
    this.#instances.clear();
    this.#failing.clear();
    await Promise.all(all.flatMap((i) => i.servers.map(stop)));
  }

  /** Listens on every address of `entry`, or on none: a partial set is closed again. */
  async #open(entry: HealthCheckService): Promise<Server[]> {
    const servers: Server[] = [];
    try {
      for (const host of entry.addresses) {
        const server = createServer((req, res) => {
          const n = entry.localEndpoints;
          const healthy = this.#healthy();
          // kube-proxy's body, byte for byte: Go's tab-indented template, no trailing newline.
          const body = JSON.stringify(
            {
              service: { namespace: entry.namespace, name: entry.name },
              localEndpoints: n,
              serviceProxyHealthy: healthy,
            },
            null,
            '\t',
          );
          res.writeHead(n > 0 && healthy ? 200 : 503, {
            'Content-Type': 'application/json',
            'X-Content-Type-Options': 'nosniff',
            'X-Load-Balancing-Endpoint-Weight': String(n),
            'Content-Length': Buffer.byteLength(body),
          });
          res.end(body);
        });
        await listenOn(server, host, entry.port);
        server.on('error', (err) =>
          this.#log.error({ err, service: entry.key }, 'health check server error'),
        );
        servers.push(server);
      }
    } catch (err) {
      await Promise.all(servers.map(stop));
      throw err;
    }
    return servers;
  }
}

function listenOn(server: Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      server.off('listening', onListening);
      const where = isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;
      reject(
        new ProxyError(
          ErrorCodes.SERVER_LISTEN_FAILED,
          `cannot listen on ${where}: ${err.code ?? err.message}`,
          {
            cause: err,
          },
        ),
      );
    };
    const onListening = (): void => {
      server.off('error', onError);
      resolve();
    };
    server.once('error', onError);
    server.once('listening', onListening);
    // ipv6Only: `::` must not take the IPv4 port the ipv4 family's server listens on.
    server.listen({ host, port, ipv6Only: isIPv6(host) });
  });
}

function stop(server: Server): Promise<void> {
  if (!server.listening) return Promise.resolve();
  return new Promise((resolve) => {
    server.close(() => resolve());
    // A load balancer's keep-alive connection would hold close() open.
    server.closeAllConnections();
  });
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
