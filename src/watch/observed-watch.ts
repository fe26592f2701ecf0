import { Watch, type KubeConfig } from '@kubernetes/client-node';
import { ErrorCodes, ProxyError } from '../errors.js';
import { trimObject } from './trim-object.js';

export interface WatchObserver {
  /** A watch request is about to be sent (the informer has listed and now watches). */
  onWatchStart(): void;
  /** Every line the server sent, BOOKMARK and ERROR included, before the informer sees it. */
  onLine(type: string, object: unknown): void;
}

/** The watch ended cleanly without sending a single line. */
export function emptyWatchError(): ProxyError {
  return new ProxyError(
    ErrorCodes.API_WATCH_EMPTY,
    'watch closed by the server before any event or bookmark',
  );
}

/**
 * client-node 1.4's Watch, with what its ListWatch needs to be supervised:
 * - it asks for bookmarks, so a quiet but healthy watch still shows signs of life (1.4 never
 *   sets allowWatchBookmarks);
 * - it reports every line to an observer: ListWatch swallows BOOKMARK and ERROR events, and a
 *   watchdog needs to see them;
 * - close() ends it at any time. Watch.watch() hands out its AbortController only once the
 *   response headers have arrived, so ListWatch.stop() before that leaves the watch running;
 * - watch objects are trimmed (trimObject) before the informer caches them; they stay plain
 *   JSON, as the lists (listJson) are, so a consumer sees one shape however an object arrived;
 * - a watch that ends cleanly without a line is reported as an error: ListWatch would reconnect
 *   at once, and a server that keeps doing that would be hammered without backoff.
 */
export class ObservedWatch extends Watch {
  private closed = false;
  private readonly controllers = new Set<AbortController>();

  constructor(
    config: KubeConfig,
    private readonly observer: WatchObserver,
  ) {
    super(config);
  }

  override async watch(
    path: string,
    queryParams: Record<string, string | number | boolean | undefined>,
    callback: (phase: string, apiObj: unknown, watchObj?: unknown) => void,
    done: (err: unknown) => void,
  ): Promise<AbortController> {
    // A list that finished after close(): the informer is over, never call back.
    if (this.closed) return new AbortController();
    this.observer.onWatchStart();
    let lines = 0;
    let finished = false;
    const onLine = (phase: string, obj: unknown, raw?: unknown): void => {
      if (this.closed) return;
      lines++;
      this.observer.onLine(phase, obj);
      callback(
        phase,
        phase === 'ADDED' || phase === 'MODIFIED' || phase === 'DELETED' ? trimObject(obj) : obj,
        raw,
      );
    };
    const onDone = (err: unknown): void => {
      finished = true;
      if (this.closed) return;
      done(err ?? (lines === 0 ? emptyWatchError() : null));
    };
    let controller: AbortController;
    try {
      controller = await super.watch(path, { ...queryParams, allowWatchBookmarks: true }, onLine, onDone);
    } catch (err) {
      // Watch.watch throws before its own error handling when the config has no cluster or the
      // credentials fail (a token file gone missing). ListWatch calls watch() from a callback
      // nobody awaits, so a throw would be an unhandled rejection: report it as the watch's end.
      onDone(err);
      return new AbortController();
    }
    if (this.closed) controller.abort();
    else if (!finished) {
      this.controllers.add(controller);
      controller.signal.addEventListener('abort', () => this.controllers.delete(controller), { once: true });
    }
    return controller;
  }

  /** End every connection now and any this watch would open later; no callback runs after this. */
  close(): void {
    this.closed = true;
    for (const c of this.controllers) c.abort();
    this.controllers.clear();
  }
}
