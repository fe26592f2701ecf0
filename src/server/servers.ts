import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from '../log.js';
import { SERVICE_NAME } from '../model/object-key.js';
import { listen } from './bind-address.js';
import type { HealthStatus, ProxyHealth } from './health.js';
import type { ProxyMetrics } from './metrics.js';
import { ErrorCodes, hasCode } from '../errors.js';
import { LIVE_TRACE_DEFAULT_SECONDS, LIVE_TRACE_MAX_SECONDS } from '../trace/live-trace.js';
import { isTraceQueryError, parseLiveQuery, parseTraceQuery } from './trace-query.js';
import type { DaemonView } from './view.js';

export interface ServersOptions {
  /** host:port for /healthz and /livez, e.g. '0.0.0.0:10256'. */
  healthzAddress: string;
  /** host:port for /metrics, /configz, /debug/* and /proxyMode, e.g. '127.0.0.1:10249'. */
  metricsAddress: string;
  health: ProxyHealth;
  metrics: ProxyMetrics;
  view: DaemonView;
  log: Logger;
  /** Largest /debug/services and /debug/rules answer, in bytes; default DEBUG_MAX_BYTES. */
  debugMaxBytes?: number;
}

/**
 * The default cap on a /debug/services or /debug/rules answer. At 10,000 Services with 10
 * endpoints each, /debug/services is about 50 MB of JSON: a request would hold that (and the
 * object it is made from) in memory while a client reads it. 8 MiB shows about 1,500 such ports,
 * and ?service=namespace/name shows any one of them.
 */
export const DEBUG_MAX_BYTES = 8 * 1024 * 1024;

/**
 * The debug answers that grow with the cluster: one request at a time each. A second one gets
 * 429 at once rather than waiting: waiting requests would each hold a socket and then a large
 * answer, which is the memory the cap is there to bound, and a person or script retries.
 */
const ONE_AT_A_TIME = new Set(['/debug/services', '/debug/rules']);

export interface Servers {
  healthz: AddressInfo;
  metrics: AddressInfo;
  /** Stops both servers and drops their open connections; safe to call twice. */
  close(): Promise<void>;
}

interface Reply {
  status: number;
  contentType: string;
  body: string;
  headers?: Record<string, string>;
}

type Route = (query: URLSearchParams) => Reply | Promise<Reply>;

const JSON_TYPE = 'application/json; charset=utf-8';
const TEXT_TYPE = 'text/plain; charset=utf-8';

/**
 * The health server (/healthz, /livez: kube-proxy's paths and bodies, for probes and load
 * balancers) and the metrics server (/metrics, /configz, /debug/*, /proxyMode), on node:http
 * alone. Resolves once both listen; a bind failure closes whatever started and rejects with
 * SERVER_LISTEN_FAILED naming the address.
 */
export async function createServers(opts: ServersOptions): Promise<Servers> {
  const log = opts.log.child({ component: 'server' });
  const { health, metrics, view } = opts;
  const maxBytes = opts.debugMaxBytes ?? DEBUG_MAX_BYTES;

  const healthRoutes = new Map<string, Route>([
    [
      '/healthz',
      () => {
        const s = health.status();
        const code = s.healthy && s.nodeEligible ? 200 : 503;
        metrics.probe('healthz', code);
        // kube-proxy's fields in its order, then ours only when they have something to say.
        return json(code, {
          lastUpdated: s.lastUpdated,
          currentTime: s.currentTime,
          nodeEligible: s.nodeEligible,
          healthy: s.healthy,
          status: s.status,
          ...explained(s),
        });
      },
    ],
    [
      '/livez',
      () => {
        // Liveness is the proxy's own health only: a node being drained is still alive.
        const s = health.status();
        const code = s.healthy ? 200 : 503;
        metrics.probe('livez', code);
        return json(code, {
          lastUpdated: s.lastUpdated,
          currentTime: s.currentTime,
          healthy: s.healthy,
          status: s.status,
          ...explained(s),
        });
      },
    ],
  ]);

  const metricsRoutes = new Map<string, Route>([
    [
      '/metrics',
      async () => ({
        status: 200,
        contentType: metrics.registry.contentType,
        body: await metrics.registry.metrics(),
      }),
    ],
    // kube-proxy's configz: the running configuration, under its API group's name.
    ['/configz', () => json(200, { 'kubeproxy.config.k8s.io': view.config() })],
    [
      '/debug/rules',
      async (query) => {
        const live = query.get('live');
        if (live !== null && !['0', '1', 'true', 'false'].includes(live)) {
          return json(400, { error: 'live: expected 1 or 0', parameter: 'live' });
        }
        const service = serviceParam(query);
        if (typeof service === 'object') return json(400, service);
        const isLive = live === '1' || live === 'true';
        if (isLive && service !== undefined)
          return json(400, {
            error: 'service: not with live=1 (the kernel is read whole)',
            parameter: 'service',
          });
        const text = isLive ? await view.liveRules() : view.rules(service);
        return truncateText(text, maxBytes);
      },
    ],
    [
      '/debug/services',
      async (query) => {
        const service = serviceParam(query);
        if (typeof service === 'object') return json(400, service);
        const answer = await view.services({ ...(service !== undefined ? { service } : {}), maxBytes });
        const truncated = typeof answer === 'object' && answer !== null && 'truncated' in answer;
        return { ...json(200, answer, true), ...(truncated ? { headers: { 'x-truncated': 'true' } } : {}) };
      },
    ],
    [
      '/debug/trace',
      async (query) => {
        const q = parseTraceQuery(query);
        if (isTraceQueryError(q)) return json(400, q);
        const live = parseLiveQuery(query, LIVE_TRACE_DEFAULT_SECONDS, LIVE_TRACE_MAX_SECONDS);
        if (isTraceQueryError(live)) return json(400, live);
        if (!live) return json(200, await view.trace(q), true);
        if (!view.liveTrace)
          return json(400, { error: `live: no live traces in ${view.mode} mode`, parameter: 'live' });
        try {
          return json(200, await view.liveTrace(q, live.seconds), true);
        } catch (err) {
          // One at a time: the trace table marks one tuple, and nft's trace events are shared.
          if (hasCode(err, ErrorCodes.LIVE_TRACE_BUSY)) return json(409, { error: (err as Error).message });
          if (hasCode(err, ErrorCodes.LIVE_TRACE_UNAVAILABLE))
            return json(400, { error: `live: ${(err as Error).message}`, parameter: 'live' });
          throw err;
        }
      },
    ],
    ['/debug/trace/live', () => json(200, view.liveTraceStatus?.() ?? { state: 'idle' }, true)],
    // kube-proxy answers the bare mode name, no newline; scripts compare it as is.
    ['/proxyMode', () => ({ status: 200, contentType: TEXT_TYPE, body: view.mode })],
  ]);

  const healthzServer = createServer(handler(healthRoutes, log));
  const metricsServer = createServer(handler(metricsRoutes, log));
  for (const [server, what] of [
    [healthzServer, 'healthz'],
    [metricsServer, 'metrics'],
  ] as const) {
    server.on('error', (err) => log.error({ err, server: what }, 'server error'));
  }

  let healthz: AddressInfo;
  let metricsAddr: AddressInfo;
  try {
    healthz = await listen(healthzServer, opts.healthzAddress, 'healthz');
    metricsAddr = await listen(metricsServer, opts.metricsAddress, 'metrics');
  } catch (err) {
    await Promise.all([stopServer(healthzServer), stopServer(metricsServer)]);
    throw err;
  }
  log.info({ healthz: opts.healthzAddress, metrics: opts.metricsAddress }, 'servers listening');

  let closing: Promise<void> | undefined;
  return {
    healthz,
    metrics: metricsAddr,
    close() {
      closing ??= Promise.all([stopServer(healthzServer), stopServer(metricsServer)]).then(() => undefined);
      return closing;
    },
  };
}

/** The health status's reason and apiErrors, present only when set. */
function explained(s: HealthStatus): Pick<HealthStatus, 'reason' | 'apiErrors'> {
  return {
    ...(s.reason !== undefined ? { reason: s.reason } : {}),
    ...(s.apiErrors !== undefined ? { apiErrors: s.apiErrors } : {}),
  };
}

function handler(
  routes: Map<string, Route>,
  log: Logger,
): (req: IncomingMessage, res: ServerResponse) => void {
  const busy = new Set<string>();
  return (req, res) => {
    const { path } = splitTarget(req.url);
    if (ONE_AT_A_TIME.has(path) && routes.has(path)) {
      if (busy.has(path)) {
        send(res, {
          ...json(429, { error: `one ${path} request at a time: retry once the other is answered` }),
          headers: { 'retry-after': '1' },
        });
        return;
      }
      busy.add(path);
      // Released once the answer is out (or the client went away), not when it is built: a
      // slow reader holds the answer in memory until then.
      res.once('close', () => busy.delete(path));
    }
    serve(routes, log, req)
      .then((reply) => send(res, reply))
      .catch((err: unknown) => {
        log.error({ err, path: req.url }, 'cannot send the reply');
        res.destroy();
      });
  };
}

/** Never rejects: a throwing route becomes a 500 and a log line, and the server keeps serving. */
async function serve(routes: Map<string, Route>, log: Logger, req: IncomingMessage): Promise<Reply> {
  const { path, query } = splitTarget(req.url);
  const route = routes.get(path);
  if (!route) return json(404, { error: `not found: ${path}` });
  // HEAD is GET without the body (node:http drops it); probes sometimes use it.
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    return {
      ...json(405, { error: `method ${req.method ?? ''} not allowed: use GET` }),
      headers: { allow: 'GET, HEAD' },
    };
  }
  try {
    return await route(query);
  } catch (err) {
    log.error({ err, path }, 'request failed');
    return json(500, { error: err instanceof Error ? err.message : String(err) });
  }
}

/**
 * A request target's path and query. Split by hand: new URL() would read `//host/path` as a
 * host and normalise dot segments, and a path here must match a route exactly.
 */
function splitTarget(url: string | undefined): { path: string; query: URLSearchParams } {
  const target = url ?? '/';
  const q = target.indexOf('?');
  return {
    path: q < 0 ? target : target.slice(0, q),
    query: new URLSearchParams(q < 0 ? '' : target.slice(q + 1)),
  };
}

/** ?service=namespace/name: the value, undefined when absent, or the 400 body when malformed. */
function serviceParam(query: URLSearchParams): string | undefined | { error: string; parameter: string } {
  const service = query.get('service');
  if (service === null) return undefined;
  if (!SERVICE_NAME.test(service)) return { error: 'service: expected namespace/name', parameter: 'service' };
  return service;
}

/**
 * Text cut at a line end within `maxBytes`, with an nft comment line that says so: the answer
 * stays valid `nft -f` input, short of the elements it leaves out.
 */
function truncateText(text: string, maxBytes: number): Reply {
  const MARKER_ROOM = 200;
  const total = Buffer.byteLength(text);
  if (total <= maxBytes) return { status: 200, contentType: TEXT_TYPE, body: text };
  // The rules are ASCII (names are validated or hashed), so characters are bytes here; the
  // marker line fits in the room kept for it.
  const end = text.lastIndexOf('\n', maxBytes - MARKER_ROOM - 1) + 1;
  const body =
    `${text.slice(0, end)}# truncated: ${end} of ${total} bytes shown; ` +
    '?service=namespace/name shows one Service\n';
  return { status: 200, contentType: TEXT_TYPE, body, headers: { 'x-truncated': 'true' } };
}

function send(res: ServerResponse, reply: Reply): void {
  res.writeHead(reply.status, {
    'content-type': reply.contentType,
    'content-length': Buffer.byteLength(reply.body),
    'x-content-type-options': 'nosniff',
    ...reply.headers,
  });
  res.end(reply.body);
}

/** JSON reply; debug answers are indented for people reading them with curl. */
function json(status: number, value: unknown, pretty = false): Reply {
  // JSON.stringify(undefined) is undefined, not text: a view with nothing to say answers null.
  const v = value ?? null;
  const body = pretty ? `${JSON.stringify(v, null, 2)}\n` : JSON.stringify(v);
  return { status, contentType: JSON_TYPE, body };
}

function stopServer(server: Server): Promise<void> {
  if (!server.listening) return Promise.resolve();
  return new Promise((resolve) => {
    server.close(() => resolve());
    // Keep-alive connections would hold close() open until they time out.
    server.closeAllConnections();
  });
}
