/**
 * A test Kubernetes API server: the real list/watch protocol over HTTP (or HTTPS, with `tls`) for
 * Services, EndpointSlices, Nodes and (when asked to serve them) ServiceCIDRs, plus knobs that make it misbehave the way real API servers
 * and networks do (expired resource versions, 5xx, dropped and stalled connections, restarts).
 *
 * The client under test is the real `@kubernetes/client-node`; nothing of it is mocked.
 */
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { KubeConfig } from '@kubernetes/client-node';
import { compareStrings } from '../../src/util/sorted-index.js';

export type ApiKind = 'Service' | 'EndpointSlice' | 'Node' | 'ServiceCIDR';

/** Any object the server stores: only `metadata` matters to it. */
export interface StoredObject {
  apiVersion?: string;
  kind?: string;
  metadata?: {
    name?: string;
    namespace?: string;
    resourceVersion?: string;
    labels?: Record<string, string>;
    uid?: string;
    creationTimestamp?: string | Date;
    [k: string]: unknown;
  };
  [k: string]: unknown;
}

type EventType = 'ADDED' | 'MODIFIED' | 'DELETED';

interface HistoryEvent {
  rv: number;
  kind: ApiKind;
  type: EventType;
  /** The object before the change (undefined for ADDED). */
  prev: StoredObject | undefined;
  /** The object after the change; for DELETED the last state with the deletion's resourceVersion. */
  object: StoredObject;
}

interface OpenWatch {
  kind: ApiKind;
  matches: (o: StoredObject) => boolean;
  bookmarks: boolean;
  /** Every history event up to this resourceVersion has been considered for this watch. */
  cursor: number;
  res: http.ServerResponse;
  closed: boolean;
}

interface KindInfo {
  apiVersion: string;
  namespaced: boolean;
  plural: string;
}

const KINDS: Record<ApiKind, KindInfo> = {
  Service: { apiVersion: 'v1', namespaced: true, plural: 'services' },
  EndpointSlice: { apiVersion: 'discovery.k8s.io/v1', namespaced: true, plural: 'endpointslices' },
  Node: { apiVersion: 'v1', namespaced: false, plural: 'nodes' },
  // Its apiVersion is the server's serviceCIDRVersion; not served at all without one.
  ServiceCIDR: { apiVersion: 'networking.k8s.io/v1', namespaced: false, plural: 'servicecidrs' },
};

export interface TestApiServerOptions {
  /** How often open watches that asked for bookmarks receive one. */
  bookmarkIntervalMs?: number;
  /**
   * Serve HTTPS with this key and certificate (PEM) instead of plain HTTP, as a real API server
   * does: what in-cluster clients need, since they verify the server against the service
   * account's ca.crt. The certificate must be valid for 127.0.0.1.
   */
  tls?: { key: string | Buffer; cert: string | Buffer };
  /**
   * Serve ServiceCIDRs as networking.k8s.io/<this>, as Kubernetes 1.33 does (v1) or 1.31 and
   * 1.32 (v1beta1); without it their paths are 404, as on an older API server.
   */
  serviceCIDRVersion?: 'v1' | 'v1beta1';
}

interface PlannedFailure {
  kind: ApiKind | undefined;
  status: number;
}

/** One list or watch request as it arrived: what a test checks the client asked for. */
export interface RecordedRequest {
  kind: ApiKind;
  verb: 'list' | 'watch';
  /** The query parameters, as sent. */
  query: Record<string, string>;
}

/** One Event request (events.k8s.io/v1) as it arrived, and what the server answered. */
export interface RecordedEventRequest {
  verb: 'create' | 'patch';
  namespace: string;
  /** The Event's name: from the body (create) or the path (patch). */
  name: string;
  contentType: string;
  /** The request body, parsed. */
  body: Record<string, unknown>;
  status: number;
}

/** Who the test server says is refused by forbid(): the DaemonSet's ServiceAccount. */
export const FORBIDDEN_USER = 'system:serviceaccount:kube-system:kube-nftproxy';

export class TestApiServer {
  /** Requests served (failed ones included), per kind. */
  readonly counters = {
    list: { Service: 0, EndpointSlice: 0, Node: 0, ServiceCIDR: 0 } as Record<ApiKind, number>,
    watch: { Service: 0, EndpointSlice: 0, Node: 0, ServiceCIDR: 0 } as Record<ApiKind, number>,
  };

  /**
   * The distinct Authorization headers of the requests served so far; `undefined` stands for
   * requests without one. Nothing is checked: the server answers everyone alike.
   */
  readonly authorizations = new Set<string | undefined>();

  /** Every list and watch request, in order (failed and forbidden ones included). */
  readonly requests: RecordedRequest[] = [];

  /** Every Event create and patch, in order (refused ones included). */
  readonly eventRequests: RecordedEventRequest[] = [];

  /** Events as stored, by `namespace/name`: created, then patched. */
  private readonly storedEvents = new Map<string, Record<string, unknown>>();
  /** Event requests answered with this status instead, while set (refuseEvents()). */
  private eventRefusal: number | undefined;

  /** Kinds whose list and watch requests are refused: 403 Forbidden, or 401 Unauthorized. */
  private readonly refused = new Map<ApiKind, 401 | 403>();

  private readonly server: http.Server | https.Server;
  private readonly tls: TestApiServerOptions['tls'];
  private readonly sockets = new Set<Socket>();
  private readonly store: Record<ApiKind, Map<string, StoredObject>> = {
    Service: new Map(),
    EndpointSlice: new Map(),
    Node: new Map(),
    ServiceCIDR: new Map(),
  };
  private history: HistoryEvent[] = [];
  private rv = 1;
  /** Watches from a resourceVersion older than this get 410 Gone. */
  private compactedRv = 0;
  private readonly watches = new Set<OpenWatch>();
  private readonly failures: PlannedFailure[] = [];
  private silenced = false;
  private bookmarkTimer: NodeJS.Timeout | undefined;
  private port = 0;
  private readonly bookmarkIntervalMs: number;
  private readonly serviceCIDRVersion: 'v1' | 'v1beta1' | undefined;

  /** A kind as this server serves it: ServiceCIDR's apiVersion is the one it was asked for. */
  private info(kind: ApiKind): KindInfo {
    const info = KINDS[kind];
    return kind === 'ServiceCIDR'
      ? { ...info, apiVersion: `networking.k8s.io/${this.serviceCIDRVersion}` }
      : info;
  }

  private constructor(opts: TestApiServerOptions) {
    this.bookmarkIntervalMs = opts.bookmarkIntervalMs ?? 100;
    this.serviceCIDRVersion = opts.serviceCIDRVersion;
    this.tls = opts.tls;
    const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
      this.authorizations.add(req.headers.authorization);
      this.handle(req, res);
    };
    this.server = this.tls
      ? https.createServer({ key: this.tls.key, cert: this.tls.cert }, handler)
      : http.createServer(handler);
    // Raw TCP sockets for HTTPS too: destroying one ends its TLS session with it.
    this.server.on('connection', (socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
  }

  static async create(opts: TestApiServerOptions = {}): Promise<TestApiServer> {
    const s = new TestApiServer(opts);
    await s.start();
    return s;
  }

  /** Base URL, e.g. http://127.0.0.1:41234 (https:// with `tls`). Stable across stop()/start(). */
  get url(): string {
    return `${this.tls ? 'https' : 'http'}://127.0.0.1:${this.port}`;
  }

  /** The port listened on (0 before the first start()). */
  get listenPort(): number {
    return this.port;
  }

  /**
   * A KubeConfig that points the real client at this server, without auth: plain HTTP, or with
   * `tls`, HTTPS verified against the server's own (self-signed) certificate.
   */
  kubeConfig(): KubeConfig {
    const kc = new KubeConfig();
    const cluster = this.tls
      ? {
          name: 'test',
          server: this.url,
          caData: Buffer.from(this.tls.cert).toString('base64'),
          skipTLSVerify: false,
        }
      : // client-node 1.4 refuses http:// servers unless skipTLSVerify is set.
        { name: 'test', server: this.url, skipTLSVerify: true };
    kc.loadFromClusterAndUser(cluster, { name: 'test-user' });
    return kc;
  }

  /** Listen (again, on the same port after stop()). */
  async start(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.port, '127.0.0.1', () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    this.port = (this.server.address() as AddressInfo).port;
    this.bookmarkTimer = setInterval(() => this.sendBookmarks(), this.bookmarkIntervalMs);
  }

  /** Kill the server: close the listener and every connection. Stored objects stay. */
  async stop(): Promise<void> {
    clearInterval(this.bookmarkTimer);
    this.bookmarkTimer = undefined;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const w of this.watches) w.closed = true;
    this.watches.clear();
    for (const s of this.sockets) s.destroy();
    await closed;
  }

  /** The current resourceVersion (the last one handed out). */
  get resourceVersion(): string {
    return String(this.rv);
  }

  create(kind: ApiKind, obj: StoredObject): StoredObject {
    const key = keyOf(obj);
    if (this.store[kind].has(key)) throw new Error(`${kind} ${key} exists`);
    return this.write(kind, obj);
  }

  update(kind: ApiKind, obj: StoredObject): StoredObject {
    const key = keyOf(obj);
    if (!this.store[kind].has(key)) throw new Error(`${kind} ${key} does not exist`);
    return this.write(kind, obj);
  }

  /** Create or update. */
  apply(kind: ApiKind, obj: StoredObject): StoredObject {
    return this.write(kind, obj);
  }

  delete(kind: ApiKind, namespace: string, name: string): void {
    const key = namespace ? `${namespace}/${name}` : name;
    const prev = this.store[kind].get(key);
    if (!prev) throw new Error(`${kind} ${key} does not exist`);
    this.store[kind].delete(key);
    const rv = ++this.rv;
    const object = structuredClone(prev);
    object.metadata = { ...object.metadata, resourceVersion: String(rv) };
    this.record({ rv, kind, type: 'DELETED', prev, object });
  }

  /** The objects stored now, sorted by namespace/name (copies). */
  objects(kind: ApiKind): StoredObject[] {
    return this.stored(kind).map((o) => structuredClone(o));
  }

  /** The objects stored now, sorted by namespace/name: the stored ones, for readers that copy. */
  private stored(kind: ApiKind): StoredObject[] {
    return [...this.store[kind].entries()].sort(([a], [b]) => compareStrings(a, b)).map(([, o]) => o);
  }

  /**
   * Forget the event history (etcd compaction): a watch from an older resourceVersion gets an
   * ERROR event with a 410 Status and is closed, including open watches that have not been sent
   * everything yet (silenced ones). Up-to-date open watches carry on.
   */
  expire(): void {
    this.compactedRv = this.rv;
    this.history = [];
    for (const w of this.watches) {
      if (w.cursor < this.compactedRv) this.gone(w);
    }
  }

  /** The next matching request (list or watch; of `kind`, or any) fails with `status`. */
  failNext(kind?: ApiKind, status = 500, times = 1): void {
    for (let i = 0; i < times; i++) this.failures.push({ kind, status });
  }

  /**
   * Refuse every list and watch of `kind` (every kind when undefined) the way a real API server
   * does without RBAC (403, with its Forbidden Status and message) or without valid credentials
   * (401), until allow(). Open watches carry on, as they do when a role is revoked.
   */
  forbid(kind?: ApiKind, status: 401 | 403 = 403): void {
    for (const k of kind ? [kind] : (Object.keys(KINDS) as ApiKind[])) this.refused.set(k, status);
  }

  /** Lift forbid() for `kind`, or for every kind. */
  allow(kind?: ApiKind): void {
    if (kind) this.refused.delete(kind);
    else this.refused.clear();
  }

  /** The Events stored now, sorted by namespace/name (copies). */
  events(): Array<Record<string, unknown>> {
    return [...this.storedEvents.entries()]
      .sort(([a], [b]) => compareStrings(a, b))
      .map(([, e]) => structuredClone(e));
  }

  /** Forget every stored Event (as their TTL would): later patches of them get 404. */
  expireEvents(): void {
    this.storedEvents.clear();
  }

  /**
   * Answer every Event create and patch with `status` (403: RBAC without events; 500) until
   * called with undefined.
   */
  refuseEvents(status: number | undefined): void {
    this.eventRefusal = status;
  }

  /** Destroy every watch connection abruptly (no clean end of the chunked response). */
  dropWatches(): void {
    for (const w of this.watches) {
      w.closed = true;
      w.res.socket?.destroy();
    }
    this.watches.clear();
  }

  /**
   * Stall every watch, open and future: connections stay open but receive nothing, not even
   * bookmarks, while changes keep being stored. `silence(false)` resumes them where they stopped.
   */
  silence(on = true): void {
    this.silenced = on;
    if (!on) for (const w of this.watches) this.pump(w);
  }

  /** Open watch connections now. */
  get openWatches(): number {
    return this.watches.size;
  }

  /** Stop for good (end of a test). */
  async close(): Promise<void> {
    if (this.server.listening) await this.stop();
  }

  private write(kind: ApiKind, input: StoredObject): StoredObject {
    const key = keyOf(input);
    const prev = this.store[kind].get(key);
    const rv = ++this.rv;
    const info = this.info(kind);
    const object: StoredObject = structuredClone(input);
    object.apiVersion = info.apiVersion;
    object.kind = kind;
    object.metadata = {
      ...object.metadata,
      resourceVersion: String(rv),
      uid: prev?.metadata?.uid ?? `uid-${kind}-${key}-${rv}`,
      creationTimestamp:
        prev?.metadata?.creationTimestamp ?? new Date(1_700_000_000_000 + rv * 1000).toISOString(),
    };
    this.store[kind].set(key, object);
    this.record({ rv, kind, type: prev ? 'MODIFIED' : 'ADDED', prev, object });
    return structuredClone(object);
  }

  private record(ev: HistoryEvent): void {
    this.history.push(ev);
    for (const w of this.watches) this.pump(w);
  }

  /** Send a watch every stored event after its cursor, translated through its selectors. */
  private pump(w: OpenWatch): void {
    if (this.silenced || w.closed) return;
    // The history is in resourceVersion order: start after the cursor, not at the beginning
    // (a walk of the whole history per event grows with the objects stored: 100,000 at 50,000
    // Services, which the daemon benches would count as watch delivery).
    let lo = 0;
    let hi = this.history.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.history[mid]!.rv <= w.cursor) lo = mid + 1;
      else hi = mid;
    }
    for (let i = lo; i < this.history.length; i++) {
      const ev = this.history[i]!;
      w.cursor = ev.rv;
      if (ev.kind !== w.kind) continue;
      const type = translate(ev, w.matches);
      if (type) send(w, type, ev.object);
    }
    w.cursor = Math.max(w.cursor, this.rv);
  }

  private sendBookmarks(): void {
    if (this.silenced) return;
    for (const w of this.watches) {
      if (!w.bookmarks || w.closed) continue;
      const info = this.info(w.kind);
      send(w, 'BOOKMARK', {
        kind: w.kind,
        apiVersion: info.apiVersion,
        metadata: { resourceVersion: String(w.cursor) },
      });
    }
  }

  private gone(w: OpenWatch): void {
    send(w, 'ERROR', status(410, 'Expired', 'too old resource version'));
    this.endWatch(w);
  }

  private endWatch(w: OpenWatch): void {
    w.closed = true;
    this.watches.delete(w);
    w.res.end();
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const eventsPath = /^\/apis\/events\.k8s\.io\/v1\/namespaces\/([^/]+)\/events(?:\/([^/]+))?$/.exec(
      url.pathname,
    );
    if (eventsPath) {
      void this.handleEvent(req, res, eventsPath[1]!, eventsPath[2]);
      return;
    }
    if (req.method !== 'GET')
      return reply(res, 405, status(405, 'MethodNotAllowed', 'read-only test server'));
    if (url.pathname === '/version') {
      return reply(res, 200, {
        major: '1',
        minor: '31',
        gitVersion: 'v1.31.0-test',
        platform: 'linux/amd64',
      });
    }
    if (url.pathname === '/api') {
      return reply(res, 200, { kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: [] });
    }
    if (url.pathname === '/apis') {
      const gv = { groupVersion: 'discovery.k8s.io/v1', version: 'v1' };
      return reply(res, 200, {
        kind: 'APIGroupList',
        apiVersion: 'v1',
        groups: [{ name: 'discovery.k8s.io', versions: [gv], preferredVersion: gv }],
      });
    }
    const route = parseRoute(url.pathname, this.serviceCIDRVersion);
    if (!route) return reply(res, 404, status(404, 'NotFound', `no route for ${url.pathname}`));
    const watching = url.searchParams.get('watch') === 'true' || url.searchParams.get('watch') === '1';
    this.counters[watching ? 'watch' : 'list'][route.kind]++;
    this.requests.push({
      kind: route.kind,
      verb: watching ? 'watch' : 'list',
      query: Object.fromEntries(url.searchParams),
    });

    const refusal = this.refused.get(route.kind);
    if (refusal === 401) return reply(res, 401, status(401, 'Unauthorized', 'Unauthorized'));
    if (refusal === 403) {
      const info = this.info(route.kind);
      const group = info.apiVersion.includes('/') ? info.apiVersion.split('/')[0]! : '';
      return reply(
        res,
        403,
        status(
          403,
          'Forbidden',
          `${info.plural}${group ? `.${group}` : ''} is forbidden: User "${FORBIDDEN_USER}" cannot ` +
            `${watching ? 'watch' : 'list'} resource "${info.plural}" in API group "${group}" at the cluster scope`,
        ),
      );
    }

    const failure = this.failures.findIndex((f) => f.kind === undefined || f.kind === route.kind);
    if (failure >= 0) {
      const [f] = this.failures.splice(failure, 1);
      const code = f?.status ?? 500;
      return reply(res, code, status(code, 'InternalError', 'planned failure'));
    }

    let matches: (o: StoredObject) => boolean;
    try {
      const labels = parseLabelSelector(url.searchParams.get('labelSelector') ?? '');
      const fields = parseFieldSelector(url.searchParams.get('fieldSelector') ?? '');
      const name = route.name;
      matches = (o) =>
        (route.namespace === undefined || o.metadata?.namespace === route.namespace) &&
        (name === undefined || o.metadata?.name === name) &&
        labels(o.metadata?.labels ?? {}) &&
        fields(o);
    } catch (err) {
      return reply(res, 400, status(400, 'BadRequest', (err as Error).message));
    }

    if (watching) return this.serveWatch(route.kind, matches, url.searchParams, res);
    if (route.name !== undefined && url.searchParams.get('watch') === null) {
      const found = [...this.store[route.kind].values()].find(matches);
      if (!found) return reply(res, 404, status(404, 'NotFound', `${route.kind} ${route.name} not found`));
      return reply(res, 200, found);
    }
    // The stored objects themselves, not copies (objects()): the reply serializes them before
    // anything can change them, and cloning 50,000 EndpointSlices took most of a list's time
    // (3.1 s of a 74 MB list), on the thread an in-process daemon measured in a bench shares.
    const items = this.stored(route.kind)
      .filter(matches)
      .map((o) => {
        // A real API server leaves kind and apiVersion off list items.
        const { kind: _k, apiVersion: _a, ...rest } = o;
        return rest;
      });
    return reply(res, 200, {
      kind: `${route.kind}List`,
      apiVersion: this.info(route.kind).apiVersion,
      metadata: { resourceVersion: String(this.rv) },
      items,
    });
  }

  /**
   * events.k8s.io/v1 create (POST) and patch (PATCH, strategic or JSON merge) of Events, with
   * the API server's checks that a client gets wrong most easily: the fields a v1 Event needs,
   * eventTime as a MicroTime (six fractional digits), the namespace of its object, a note of at
   * most 1 kB; 409 for a name that exists, 404 for a patch of one that does not.
   */
  private async handleEvent(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    namespace: string,
    name: string | undefined,
  ): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const contentType = String(req.headers['content-type'] ?? '')
      .split(';')[0]!
      .trim();
    let body: Record<string, unknown>;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as Record<string, unknown>;
    } catch {
      return reply(res, 400, status(400, 'BadRequest', 'body is not JSON'));
    }
    const verb =
      req.method === 'POST' && !name ? 'create' : req.method === 'PATCH' && name ? 'patch' : undefined;
    if (!verb) return reply(res, 405, status(405, 'MethodNotAllowed', 'Events: POST or PATCH only'));
    const metadata = (body.metadata ?? {}) as { name?: string };
    const recorded: RecordedEventRequest = {
      verb,
      namespace,
      name: name ?? metadata.name ?? '',
      contentType,
      body,
      status: 0,
    };
    this.eventRequests.push(recorded);
    const answer = (code: number, out: unknown): void => {
      recorded.status = code;
      reply(res, code, out);
    };
    if (this.eventRefusal !== undefined)
      return answer(this.eventRefusal, status(this.eventRefusal, 'Forbidden', 'events refused by the test'));
    const key = `${namespace}/${recorded.name}`;
    if (verb === 'patch') {
      if (!['application/strategic-merge-patch+json', 'application/merge-patch+json'].includes(contentType))
        return answer(415, status(415, 'UnsupportedMediaType', `patch type ${contentType}`));
      const stored = this.storedEvents.get(key);
      if (!stored)
        return answer(404, status(404, 'NotFound', `events.events.k8s.io "${recorded.name}" not found`));
      const merged = mergePatch(stored, body) as Record<string, unknown>;
      const problem = eventProblem(merged, namespace);
      if (problem) return answer(422, status(422, 'Invalid', problem));
      (merged.metadata as Record<string, unknown>).resourceVersion = String(++this.rv);
      this.storedEvents.set(key, merged);
      return answer(200, merged);
    }
    if (contentType !== 'application/json')
      return answer(415, status(415, 'UnsupportedMediaType', contentType));
    const problem = eventProblem(body, namespace);
    if (problem) return answer(422, status(422, 'Invalid', problem));
    if (this.storedEvents.has(key))
      return answer(
        409,
        status(409, 'AlreadyExists', `events.events.k8s.io "${recorded.name}" already exists`),
      );
    const stored = structuredClone(body);
    stored.metadata = { ...(stored.metadata as object), namespace, resourceVersion: String(++this.rv) };
    this.storedEvents.set(key, stored);
    return answer(201, stored);
  }

  private serveWatch(
    kind: ApiKind,
    matches: (o: StoredObject) => boolean,
    params: URLSearchParams,
    res: http.ServerResponse,
  ): void {
    const rvParam = params.get('resourceVersion') ?? '';
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    res.flushHeaders();
    const w: OpenWatch = {
      kind,
      matches,
      bookmarks: params.get('allowWatchBookmarks') === 'true',
      cursor: 0,
      res,
      closed: false,
    };
    res.on('close', () => {
      w.closed = true;
      this.watches.delete(w);
    });
    if (rvParam === '' || rvParam === '0') {
      // "Any" resourceVersion: the current state as synthetic ADDED events, then changes.
      for (const o of this.objects(kind).filter(matches)) send(w, 'ADDED', o);
      w.cursor = this.rv;
    } else {
      const from = Number(rvParam);
      if (!Number.isInteger(from) || from < this.compactedRv) {
        send(
          w,
          'ERROR',
          status(410, 'Expired', `too old resource version: ${rvParam} (${this.compactedRv})`),
        );
        res.end();
        return;
      }
      w.cursor = from;
    }
    this.watches.add(w);
    this.pump(w);
  }
}

/** JSON merge patch (RFC 7386): what a strategic merge patch of an Event's series amounts to. */
function mergePatch(target: unknown, patch: unknown): unknown {
  if (typeof patch !== 'object' || patch === null || Array.isArray(patch)) return structuredClone(patch);
  const out: Record<string, unknown> =
    typeof target === 'object' && target !== null && !Array.isArray(target)
      ? structuredClone(target as Record<string, unknown>)
      : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

const MICRO_TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/;

/** What the API server's validation of a new-style (events.k8s.io/v1) Event would refuse. */
function eventProblem(e: Record<string, unknown>, namespace: string): string | undefined {
  for (const field of ['reportingController', 'reportingInstance', 'action', 'reason'] as const) {
    const v = e[field];
    if (typeof v !== 'string' || v === '') return `${field}: Required value`;
    if (v.length > 128) return `${field}: Too long: may not be more than 128`;
  }
  if (e.type !== 'Normal' && e.type !== 'Warning') return `type: Unsupported value: ${String(e.type)}`;
  if (typeof e.eventTime !== 'string' || !MICRO_TIME.test(e.eventTime))
    return `eventTime: not a MicroTime: ${String(e.eventTime)}`;
  if (typeof e.note === 'string' && Buffer.byteLength(e.note) > 1024) return 'note: Too long';
  const regarding = e.regarding as { kind?: string; namespace?: string; name?: string } | undefined;
  if (!regarding?.kind || !regarding.name) return 'regarding: Required value';
  const wanted = regarding.namespace || 'default';
  if (wanted !== namespace) return `metadata.namespace: does not match regarding.namespace ${wanted}`;
  const series = e.series as { count?: unknown; lastObservedTime?: unknown } | undefined;
  if (series !== undefined) {
    if (typeof series.count !== 'number' || series.count < 2) return 'series.count: must be at least 2';
    if (typeof series.lastObservedTime !== 'string' || !MICRO_TIME.test(series.lastObservedTime))
      return 'series.lastObservedTime: not a MicroTime';
  }
  const name = (e.metadata as { name?: unknown } | undefined)?.name;
  if (typeof name !== 'string' || name === '' || name.length > 253) return 'metadata.name: invalid';
  return undefined;
}

function keyOf(o: StoredObject): string {
  const name = o.metadata?.name;
  if (!name) throw new Error('object without metadata.name');
  const ns = o.metadata?.namespace;
  return ns ? `${ns}/${name}` : name;
}

/** What a watch with this filter sees of a change: an object leaving the selection is DELETED. */
function translate(ev: HistoryEvent, matches: (o: StoredObject) => boolean): EventType | undefined {
  const before = ev.prev !== undefined && matches(ev.prev);
  const after = ev.type !== 'DELETED' && matches(ev.object);
  if (ev.type === 'DELETED') return before ? 'DELETED' : undefined;
  if (before && after) return 'MODIFIED';
  if (after) return 'ADDED';
  if (before) return 'DELETED';
  return undefined;
}

function send(w: OpenWatch, type: string, object: unknown): void {
  if (w.closed) return;
  w.res.write(JSON.stringify({ type, object }) + '\n');
}

function reply(res: http.ServerResponse, code: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(code, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function status(code: number, reason: string, message: string): object {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code };
}

interface Route {
  kind: ApiKind;
  namespace: string | undefined;
  name: string | undefined;
}

function parseRoute(pathname: string, serviceCIDRVersion: string | undefined): Route | undefined {
  const parts = pathname.split('/').filter((p) => p !== '');
  if (parts[0] === 'apis' && parts[1] === 'networking.k8s.io') {
    if (parts[2] !== serviceCIDRVersion || parts[3] !== 'servicecidrs' || parts.length > 5) return undefined;
    return { kind: 'ServiceCIDR', namespace: undefined, name: parts[4] };
  }
  let rest: string[];
  if (parts[0] === 'api' && parts[1] === 'v1') rest = parts.slice(2);
  else if (parts[0] === 'apis' && parts[1] === 'discovery.k8s.io' && parts[2] === 'v1') rest = parts.slice(3);
  else return undefined;
  const group = parts[0] === 'api' ? 'v1' : 'discovery.k8s.io/v1';
  let namespace: string | undefined;
  if (rest[0] === 'namespaces' && rest.length >= 3) {
    namespace = rest[1];
    rest = rest.slice(2);
  }
  const kind = (Object.keys(KINDS) as ApiKind[]).find(
    (k) => KINDS[k].plural === rest[0] && KINDS[k].apiVersion === group,
  );
  if (!kind || rest.length > 2) return undefined;
  if (namespace !== undefined && !KINDS[kind].namespaced) return undefined;
  return { kind, namespace, name: rest[1] };
}

/** `!key`, `key`, `key=value`, `key==value`, `key!=value`, comma-joined (all must hold). */
export function parseLabelSelector(selector: string): (labels: Record<string, string>) => boolean {
  const terms = selector
    .split(',')
    .map((t) => t.trim())
    .filter((t) => t !== '')
    .map((term): ((l: Record<string, string>) => boolean) => {
      let m: RegExpExecArray | null;
      if ((m = /^!\s*([\w./-]+)$/.exec(term))) {
        const key = m[1] as string;
        return (l) => !(key in l);
      }
      if ((m = /^([\w./-]+)\s*!=\s*([\w.-]*)$/.exec(term))) {
        const [, key, value] = m as unknown as [string, string, string];
        return (l) => l[key] !== value;
      }
      if ((m = /^([\w./-]+)\s*==?\s*([\w.-]*)$/.exec(term))) {
        const [, key, value] = m as unknown as [string, string, string];
        return (l) => l[key] === value;
      }
      if ((m = /^([\w./-]+)$/.exec(term))) {
        const key = m[1] as string;
        return (l) => key in l;
      }
      throw new Error(`unsupported label selector term: ${term}`);
    });
  return (labels) => terms.every((t) => t(labels));
}

/** `metadata.name=X`, `metadata.namespace=X` (and `!=`), comma-joined. */
function parseFieldSelector(selector: string): (o: StoredObject) => boolean {
  const terms = selector
    .split(',')
    .map((t) => t.trim())
    .filter((t) => t !== '')
    .map((term): ((o: StoredObject) => boolean) => {
      const m = /^(metadata\.name|metadata\.namespace)\s*(!=|==|=)\s*(.*)$/.exec(term);
      if (!m) throw new Error(`unsupported field selector term: ${term}`);
      const [, field, op, value] = m as unknown as [string, string, string, string];
      const get = (o: StoredObject): string =>
        (field === 'metadata.name' ? o.metadata?.name : o.metadata?.namespace) ?? '';
      return op === '!=' ? (o) => get(o) !== value : (o) => get(o) === value;
    });
  return (o) => terms.every((t) => t(o));
}
