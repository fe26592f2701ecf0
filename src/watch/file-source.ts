import { statSync, watch, type FSWatcher } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ErrorCodes, ProxyError } from '../errors.js';
import type { Logger } from '../log.js';
import { objectKey } from '../model/object-key.js';
import { envelopeProblem } from './object-envelope.js';
import { PARSE_LIMITS, parseDocumentsAsync, readBounded, type ParseLimits } from './parse-documents.js';
import { isClusterScoped, type Kind, type KubeObject, type Source, type SourceHandler } from './source.js';

const KINDS = new Map<unknown, Kind>([
  ['Service', 'Service'],
  ['EndpointSlice', 'EndpointSlice'],
  ['Node', 'Node'],
  ['ServiceCIDR', 'ServiceCIDR'],
]);
const EXTENSIONS = /\.(ya?ml|json)$/i;

interface Entry {
  kind: Kind;
  object: KubeObject;
  text: string;
}

interface Loaded {
  objects: Map<string, Entry>;
  problems: Array<{ file: string; reason: string }>;
}

/**
 * What is at a path, as inode and birth time (a folder removed and made again often gets the
 * same inode number back), or undefined when nothing is there.
 */
function inode(path: string): string | undefined {
  try {
    const info = statSync(path);
    return `${info.dev}:${info.ino}:${info.birthtimeMs}`;
  } catch {
    return undefined;
  }
}

const identity = (kind: Kind, o: KubeObject): string =>
  isClusterScoped(kind)
    ? `${kind}//${o.metadata?.name}`
    : `${kind}/${objectKey(o.metadata?.namespace, o.metadata?.name)}`;

/**
 * Every Service, EndpointSlice and Node in a file's text (Lists unpacked), parsed within
 * PARSE_LIMITS, and the problems: a file that does not parse is one problem and no objects;
 * an object whose envelope is unusable (a name that is not a string) is one problem and the
 * rest of the file counts.
 */
export async function objectsInFile(
  file: string,
  text: string,
  limits: ParseLimits = PARSE_LIMITS,
): Promise<{ objects: Array<{ kind: Kind; object: KubeObject }>; problems: string[] }> {
  // In slices: the daemon's servers keep answering while a large file is parsed.
  const parsed = await parseDocumentsAsync(file, text, limits);
  if (!parsed.ok) return { objects: [], problems: [parsed.reason] };
  const objects: Array<{ kind: Kind; object: KubeObject }> = [];
  const problems: string[] = [];
  // Depth is bounded by the parse limits, so this recursion is too.
  const visit = (value: unknown, where: string): void => {
    if (!value || typeof value !== 'object' || Array.isArray(value)) return;
    const v = value as Record<string, unknown>;
    if (typeof v.kind === 'string' && v.kind.endsWith('List') && Array.isArray(v.items)) {
      for (const [i, item] of v.items.entries()) visit(item, `${where}.items[${i}]`);
      return;
    }
    const kind = KINDS.get(v.kind);
    if (!kind) return;
    const problem = envelopeProblem(kind, v);
    if (problem) problems.push(`${where} (${kind}): ${problem}`);
    else objects.push({ kind, object: value as KubeObject });
  };
  // Numbered among the documents that hold a map or list: empty ones are not kept.
  for (const [i, doc] of parsed.documents.entries()) visit(doc, `object ${i + 1}`);
  return { objects, problems };
}

/**
 * Kubernetes objects from a file or a folder of YAML/JSON files, re-read when they change.
 * A file that does not parse (or is past PARSE_LIMITS) is reported and skipped as a whole; every
 * other file counts.
 * Emits the difference between reads, so downstream sees ordinary add/update/delete events.
 */
export class FileSource implements Source {
  readonly #path: string;
  readonly #log: Logger | undefined;
  readonly #limits: ParseLimits;
  #handler: SourceHandler | undefined;
  #current = new Map<string, Entry>();
  #watcher: FSWatcher | undefined;
  #timer: NodeJS.Timeout | undefined;
  #debounceMs = 100;
  /** The inode the watcher watches: another one at the path means it was replaced. */
  #watched: string | undefined;
  #stopped = false;
  #reading: Promise<void> = Promise.resolve();

  constructor(path: string, opts: { log?: Logger; limits?: ParseLimits } = {}) {
    this.#path = path;
    this.#log = opts.log;
    this.#limits = opts.limits ?? PARSE_LIMITS;
  }

  async start(handler: SourceHandler): Promise<void> {
    this.#handler = handler;
    await this.reload();
    handler.synced();
  }

  /** Watch for changes (the daemon does; --once and --dry-run do not). */
  watch(debounceMs = 100): void {
    this.#debounceMs = debounceMs;
    this.#watch();
  }

  #watch(): void {
    this.#watcher?.close();
    this.#watched = inode(this.#path);
    try {
      this.#watcher = watch(this.#path, { recursive: false }, () => {
        clearTimeout(this.#timer);
        this.#timer = setTimeout(() => void this.#reloadWatched(), this.#debounceMs);
      });
    } catch (err) {
      this.#log?.error({ err, source: this.#path }, 'cannot watch the source; changes are not seen');
      return;
    }
    // An FSWatcher without an error listener would take the process down with it.
    this.#watcher.on('error', (err) =>
      this.#log?.error({ err, source: this.#path }, 'cannot watch the source; changes are not seen'),
    );
  }

  /** A reload on a change: never rejects, and follows the path when it is replaced. */
  async #reloadWatched(): Promise<void> {
    try {
      await this.reload();
    } catch (err) {
      this.#log?.error({ err, source: this.#path }, 'cannot read the source; keeping what was read before');
    }
    // A folder replaced as a whole (moved aside, written anew) leaves the watcher on the old
    // one, which sees nothing more: watch the one the path names now.
    const now = inode(this.#path);
    if (!this.#stopped && now !== undefined && now !== this.#watched) {
      this.#log?.info({ source: this.#path }, 'the source was replaced; watching the new one');
      this.#watch();
      await this.reload().catch(() => undefined);
    }
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#watcher?.close();
    await this.#reading;
  }

  /**
   * Read everything again and emit what changed. Rejects only when the source itself cannot
   * be read (SOURCE_UNREADABLE), and then emits nothing: what was read before stays. A failed
   * read never blocks the next one.
   */
  reload(): Promise<void> {
    const run = this.#reading.then(async () => {
      const loaded = await this.#load();
      const handler = this.#handler!;
      handler.unreadable?.(loaded.problems);
      for (const [id, entry] of this.#current) {
        if (loaded.objects.has(id)) continue;
        handler.remove(
          entry.kind,
          isClusterScoped(entry.kind) ? '' : entry.object.metadata?.namespace || 'default',
          entry.object.metadata?.name ?? '',
        );
      }
      for (const [id, entry] of loaded.objects) {
        if (this.#current.get(id)?.text === entry.text) continue;
        handler.upsert(entry.kind, entry.object);
      }
      this.#current = loaded.objects;
    });
    this.#reading = run.catch(() => undefined);
    return run;
  }

  async #files(): Promise<string[]> {
    const unreadable = (err: unknown): ProxyError =>
      new ProxyError(ErrorCodes.SOURCE_UNREADABLE, `--source ${this.#path}: ${(err as Error).message}`, {
        cause: err,
      });
    let info;
    try {
      info = await stat(this.#path);
    } catch (err) {
      throw unreadable(err);
    }
    if (!info.isDirectory()) return [this.#path];
    let names;
    try {
      names = await readdir(this.#path);
    } catch (err) {
      throw unreadable(err);
    }
    return names
      .filter((n) => EXTENSIONS.test(n) && !n.startsWith('.'))
      .sort()
      .map((n) => join(this.#path, n));
  }

  async #load(): Promise<Loaded> {
    const objects: Loaded['objects'] = new Map();
    const problems: Loaded['problems'] = [];
    for (const file of await this.#files()) {
      const read = await readBounded(file, this.#limits);
      if (!read.ok) {
        problems.push({ file, reason: read.reason });
        continue;
      }
      const { objects: found, problems: bad } = await objectsInFile(file, read.text, this.#limits);
      for (const reason of bad) problems.push({ file, reason });
      for (const { kind, object } of found) {
        if (object.metadata?.namespace === undefined && !isClusterScoped(kind))
          object.metadata = { ...object.metadata, namespace: 'default' };
        objects.set(identity(kind, object), { kind, object, text: JSON.stringify(object) });
      }
    }
    return { objects, problems };
  }
}
