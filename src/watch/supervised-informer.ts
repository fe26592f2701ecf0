import {
  ListWatch,
  type KubeConfig,
  type KubernetesListObject,
  type KubernetesObject,
} from '@kubernetes/client-node';
import type { Clock, ClockTimer } from '../util/clock.js';
import { Backoff, type BackoffOptions } from './backoff.js';
import { DeliveredObjects } from './delivered-objects.js';
import { isListStatus } from '../errors.js';
import { listJson } from './list-json.js';
import type { AccessProblem } from './source.js';
import { trimObject } from './trim-object.js';
import { ObservedWatch } from './observed-watch.js';

/** What to inform on: one kind, one API path and its selectors (for the list and the watch). */
export interface InformerSpec {
  /** The kind delivered (also the informer's name in logs). */
  kind: string;
  /** apiVersion stamped on delivered objects (list items come without one). */
  apiVersion: string;
  /** Watch path, e.g. `/api/v1/services`. */
  path: string;
  labelSelector?: string;
  fieldSelector?: string;
}

/** Where a supervised informer delivers; every call is already deduplicated. */
export interface InformerSink<T extends KubernetesObject> {
  upsert(obj: T): void;
  remove(namespace: string, name: string): void;
  /** A (re)list has been delivered in full. */
  listed(): void;
  /** A restart or relist worth one log line. */
  problem(what: string, err: unknown): void;
  /**
   * The API server refuses this informer's list or watch (401/403), or lets it through again
   * (undefined). Once per change, not at every retry: the refusal's restarts are not reported
   * through problem().
   */
  denied(problem: AccessProblem | undefined): void;
}

export interface SupervisorOptions {
  kubeConfig: KubeConfig;
  clock: Clock;
  /** Restart a watch that has sent nothing (no event, no bookmark) for this long; 0 disables. */
  watchdogMs: number;
  backoff: BackoffOptions;
  /** The backoff's jitter source, in [0, 1); default Math.random. */
  random?: () => number;
}

/** A list may legitimately take long on a big cluster: it gets at least this before the watchdog bites. */
const LIST_PATIENCE_MS = 60_000;

interface Run {
  listWatch: ListWatch<KubernetesObject>;
  watch: ObservedWatch;
  phase: 'listing' | 'watching';
  lastActivity: number;
  /** The backoff is reset on the first sign of a working watch. */
  healthy: boolean;
}

/**
 * One client-node ListWatch, kept alive. In 1.4 the informer stops for good on any error but
 * 410 Gone and has neither backoff nor watchdog, so this wraps it: on an error, or a watch that
 * goes silent, the informer is thrown away and a fresh one relists after an exponential backoff
 * (one restart at a time). Every delivery goes through a DeliveredObjects map, so a relist tells
 * the sink exactly what changed while we were away: upserts for new or changed objects, removes
 * for vanished ones, nothing twice.
 */
export class SupervisedInformer<T extends KubernetesObject> {
  private readonly delivered = new DeliveredObjects();
  private readonly backoff: Backoff;
  private state: 'idle' | 'running' | 'waiting' | 'stopped' = 'idle';
  private run: Run | undefined;
  private retryTimer: ClockTimer | undefined;
  private watchdogTimer: ClockTimer | undefined;
  /**
   * The newest resourceVersion seen (list, event or bookmark), as client-go's reflector keeps
   * it: a relist asks for a state at least this new, so it never goes back in time, and the API
   * server may answer it from its watch cache.
   */
  private lastSyncRv: string | undefined;
  /** The API server said lastSyncRv is too old (410 Gone): the next list must be a consistent read. */
  private rvUnavailable = false;
  /** The refusal reported to the sink, until the API server lets us through again. */
  private refusal: AccessProblem | undefined;

  constructor(
    private readonly spec: InformerSpec,
    private readonly sink: InformerSink<T>,
    private readonly opts: SupervisorOptions,
  ) {
    this.backoff = new Backoff(opts.backoff, opts.random);
  }

  start(): void {
    if (this.state !== 'idle') return;
    this.state = 'running';
    this.launch();
  }

  /** End the informer, its connections and timers. Idempotent. */
  stop(): void {
    this.state = 'stopped';
    if (this.retryTimer !== undefined) this.opts.clock.clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.teardown();
  }

  private launch(): void {
    const watch = new ObservedWatch(this.opts.kubeConfig, {
      onWatchStart: () => {
        if (this.run !== run) return;
        run.phase = 'watching';
        run.lastActivity = this.opts.clock.now();
        // The timer may be set for the list's longer patience: start counting silence now.
        this.armWatchdog(run);
      },
      onLine: (type, obj) => this.onLine(run, type, obj),
    });
    const listWatch = new ListWatch<KubernetesObject>(
      this.spec.path,
      watch,
      () => this.list(run),
      false,
      this.spec.labelSelector,
      this.spec.fieldSelector,
    );
    const run: Run = {
      listWatch,
      watch,
      phase: 'listing',
      lastActivity: this.opts.clock.now(),
      healthy: false,
    };
    this.run = run;
    const current = (): boolean => this.run === run;
    listWatch.on('add', (o) => current() && this.deliverUpsert(o as T));
    listWatch.on('update', (o) => current() && this.deliverUpsert(o as T));
    listWatch.on(
      'delete',
      (o) => current() && this.deliverRemove(o.metadata?.namespace ?? '', o.metadata?.name ?? ''),
    );
    listWatch.on('error', (err) => current() && this.restart(describe(err), err));
    this.armWatchdog(run);
    listWatch.start().catch((err: unknown) => current() && this.restart(describe(err), err));
  }

  private async list(run: Run): Promise<KubernetesListObject<KubernetesObject>> {
    run.phase = 'listing';
    run.lastActivity = this.opts.clock.now();
    let list: KubernetesListObject<T>;
    try {
      list = await listJson<T>(this.opts.kubeConfig, this.spec.path, {
        labelSelector: this.spec.labelSelector,
        fieldSelector: this.spec.fieldSelector,
        resourceVersion: this.listResourceVersion(),
      });
    } catch (err) {
      // A list at a resourceVersion the server no longer has: the retry reads the current state.
      if (isListStatus(err, 410)) this.rvUnavailable = true;
      throw err;
    }
    for (const item of list.items) trimObject(item);
    if (this.run === run) {
      run.lastActivity = this.opts.clock.now();
      this.rvUnavailable = false;
      this.seen(list.metadata?.resourceVersion);
      if (this.refusal?.verb === 'list') this.allowed();
      // Upserts before removes: an endpoint moving from a vanished slice to a new one is never
      // missing in between.
      for (const item of list.items) this.deliverUpsert(item);
      for (const [ns, name] of this.delivered.vanished(list.items)) this.deliverRemove(ns, name);
      this.guarded('(list)', () => this.sink.listed());
    }
    // ListWatch replays these as add/update callbacks; the delivered map drops the repeats.
    return list;
  }

  /**
   * The resourceVersion of the next list, with client-go's reflector's semantics: "0" for the
   * first list (any state the API server has, served from its watch cache rather than etcd, so a
   * DaemonSet's start costs the API server little); after that the newest version seen (not
   * older than that, so never back in time, and still servable from the cache); after a 410 Gone
   * none at all, a consistent read: "0" could then return a state older than what we have seen.
   */
  private listResourceVersion(): string | undefined {
    if (this.rvUnavailable) return undefined;
    return this.lastSyncRv ?? '0';
  }

  private seen(rv: unknown): void {
    if (typeof rv === 'string' && rv !== '') this.lastSyncRv = rv;
  }

  private onLine(run: Run, type: string, obj: unknown): void {
    if (this.run !== run) return;
    run.lastActivity = this.opts.clock.now();
    if (!run.healthy) {
      run.healthy = true;
      this.backoff.reset();
      if (this.refusal) this.allowed();
    }
    if (type !== 'ERROR') {
      this.seen((obj as { metadata?: { resourceVersion?: unknown } } | undefined)?.metadata?.resourceVersion);
      return;
    }
    const code = (obj as { code?: unknown } | undefined)?.code;
    if (code === 410) {
      this.rvUnavailable = true;
      // ListWatch relists by itself once the server closes this watch; list() reconciles.
      this.sink.problem(`${this.spec.kind} watch expired (410 Gone): relisting`, obj);
    } else {
      this.restart(`watch error event ${String(code ?? '')}`.trim(), obj);
    }
  }

  private deliverUpsert(obj: T): void {
    if (!this.delivered.upsert(obj)) return;
    const name = `${obj.metadata?.namespace ?? ''}/${obj.metadata?.name ?? ''}`;
    // Stamped in place (list items come without them): a copy per object would be a second
    // top-level object for each of the 20,000 the informer caches at 10,000 Services.
    obj.kind = this.spec.kind;
    obj.apiVersion = this.spec.apiVersion;
    this.guarded(name, () => this.sink.upsert(obj));
  }

  private deliverRemove(namespace: string, name: string): void {
    if (this.delivered.remove(namespace, name))
      this.guarded(`${namespace}/${name}`, () => this.sink.remove(namespace, name));
  }

  /**
   * A consumer that throws must not go unnoticed: client-node's Watch swallows whatever its
   * callbacks throw (it takes it for a JSON parse error), and on the list path it would pass for
   * a list failure and restart the informer forever.
   */
  private guarded(name: string, deliver: () => void): void {
    try {
      deliver();
    } catch (err) {
      this.sink.problem(`${this.spec.kind} ${name}: the consumer failed on it`, err);
    }
  }

  /** Throw the informer away and start a fresh one after the backoff; one restart at a time. */
  private restart(reason: string, err: unknown): void {
    if (this.state !== 'running') return;
    this.state = 'waiting';
    const delayMs = this.backoff.next();
    const refusal = accessProblem(this.spec.path, this.run?.phase === 'watching' ? 'watch' : 'list', err);
    this.teardown();
    if (refusal) this.refused(refusal);
    else this.sink.problem(`${this.spec.kind} informer restarts in ${delayMs} ms: ${reason}`, err);
    this.retryTimer = this.opts.clock.setTimeout(() => {
      this.retryTimer = undefined;
      if (this.state !== 'waiting') return;
      this.state = 'running';
      this.launch();
    }, delayMs);
  }

  /** Tell the sink about a refusal unless it is the one already told (a retry refused alike). */
  private refused(problem: AccessProblem): void {
    const told = this.refusal;
    if (told?.verb === problem.verb && told.status === problem.status) return;
    this.refusal = problem;
    this.sink.denied(problem);
  }

  private allowed(): void {
    this.refusal = undefined;
    this.sink.denied(undefined);
  }

  private teardown(): void {
    if (this.watchdogTimer !== undefined) this.opts.clock.clearTimeout(this.watchdogTimer);
    this.watchdogTimer = undefined;
    const run = this.run;
    this.run = undefined;
    if (!run) return;
    run.watch.close();
    void run.listWatch.stop();
  }

  private armWatchdog(run: Run, ms = this.limit(run)): void {
    if (this.opts.watchdogMs <= 0) return;
    if (this.watchdogTimer !== undefined) this.opts.clock.clearTimeout(this.watchdogTimer);
    this.watchdogTimer = this.opts.clock.setTimeout(() => {
      this.watchdogTimer = undefined;
      if (this.run !== run) return;
      const idle = this.opts.clock.now() - run.lastActivity;
      const limit = this.limit(run);
      if (idle >= limit) {
        this.restart(
          `${run.phase === 'listing' ? 'list' : 'watch'} silent for ${Math.round(idle)} ms`,
          undefined,
        );
      } else {
        this.armWatchdog(run, limit - idle);
      }
    }, ms);
  }

  private limit(run: Run): number {
    return run.phase === 'listing' ? Math.max(this.opts.watchdogMs, LIST_PATIENCE_MS) : this.opts.watchdogMs;
  }
}

/**
 * What a 401 or 403 answer to `verb` on `path` means and what to do about it; undefined for any
 * other error. Lists fail with a ListStatusError (the Status message), watches with client-node's
 * Error carrying statusCode, and a watch stream may carry an ERROR event with a Status.
 */
export function accessProblem(path: string, verb: 'list' | 'watch', err: unknown): AccessProblem | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const e = err as { statusCode?: unknown; code?: unknown; message?: unknown };
  const status = typeof e.statusCode === 'number' ? e.statusCode : e.code;
  if (status !== 401 && status !== 403) return undefined;
  const { group, resource } = resourceOfPath(path);
  const message = typeof e.message === 'string' && e.message !== '' ? e.message : String(status);
  const action =
    status === 403
      ? `grant kube-nftproxy's ServiceAccount get, list and watch on ${resource} in API group "${group}" ` +
        '(manifests/clusterrole.yaml and its binding: kubectl apply -k manifests/)'
      : 'the API server rejects these credentials: check the token of --kubeconfig or of the ' +
        'service account (expired, revoked, or for another cluster)';
  return { verb, group, resource, status, message, action };
}

/** RBAC's group and resource of an informer path: /api/v1/nodes, /apis/<group>/<version>/<resource>. */
function resourceOfPath(path: string): { group: string; resource: string } {
  const parts = path.split('/').filter((p) => p !== '');
  if (parts[0] === 'apis') return { group: parts[1] ?? '', resource: parts[parts.length - 1] ?? '' };
  return { group: '', resource: parts[parts.length - 1] ?? '' };
}

/** A short reason for a log line: HTTP status, socket error code, or the first line of the message. */
export function describe(err: unknown): string {
  if (typeof err !== 'object' || err === null) return String(err);
  const e = err as { statusCode?: unknown; code?: unknown; message?: unknown; name?: unknown };
  if (typeof e.statusCode === 'number') return `HTTP ${e.statusCode}`;
  // ApiException (list calls) carries the HTTP status as a numeric code; system errors a string one.
  if (typeof e.code === 'number') return `HTTP ${e.code}`;
  const message = typeof e.message === 'string' ? (e.message.split('\n')[0] ?? '') : '';
  if (typeof e.code === 'string') return message ? `${e.code}: ${message}` : e.code;
  return message || String(e.name ?? 'unknown error');
}
