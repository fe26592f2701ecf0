import { createHash } from 'node:crypto';
import { statSync, watch, type FSWatcher } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { ErrorCodes, ProxyError } from '../errors.js';
import type { Logger } from '../log.js';
import { objectKey } from '../model/object-key.js';
import { envelopeProblem } from './object-envelope.js';
import { PARSE_LIMITS, readBounded, type ParseLimits } from './parse-documents.js';
import { parseSourceDocuments } from './source-documents.js';
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
  /** The object as JSON, made only when it is compared with a newer read of it. */
  text?: string;
}

const textOf = (entry: Entry): string => (entry.text ??= JSON.stringify(entry.object));
/** Whether two reads of an object differ: the same object (its file was not read again) never does. */
const differ = (a: Entry, b: Entry): boolean => a.object !== b.object && textOf(a) !== textOf(b);

interface Loaded {
  objects: Map<string, Entry>;
  problems: Array<{ file: string; reason: string }>;
}

/** What a file's parse found: the objects (Lists unpacked) and the problems, one line each. */
export interface FileObjects {
  objects: Array<{ kind: Kind; object: KubeObject }>;
  problems: string[];
  /** How many of its documents the parse worker read, and why it failed if it did. */
  worker?: { documents: number; error?: string };
}

/** Parses one file's text: objectsInFile, or a test's counting wrapper around it. */
export type ParseFile = (file: string, text: string, limits: ParseLimits) => Promise<FileObjects>;

/** A file as last read: how to tell it has not changed since, and what its parse found. */
interface ReadFile {
  /** Size, modification time and inode: a change in any of them means the file is read again. */
  stamp: string;
  /** When it was read: a file modified within the clock's resolution of that is read again. */
  readAt: number;
  /** sha256 of its text: a file written again with the same text is not parsed again. */
  hash: string;
  found: FileObjects;
}

/**
 * Modification times are as coarse as the file system's clock (a second on some): a file
 * written in the same tick as it was read could change again without its stamp changing.
 */
const RACY_MS = 2000;

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
): Promise<FileObjects> {
  // In slices: the daemon's servers keep answering while a large file is parsed.
  const parsed = await parseSourceDocuments(file, text, limits);
  const objects: FileObjects['objects'] = [];
  const problems = parsed.problems;
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
  // Numbered by the document's position in the file.
  for (const doc of parsed.documents) visit(doc.value, `object ${doc.index}`);
  if (parsed.byWorker === 0 && parsed.workerError === undefined) return { objects, problems };
  const error = parsed.workerError === undefined ? {} : { error: parsed.workerError };
  return { objects, problems, worker: { documents: parsed.byWorker, ...error } };
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

  readonly #parse: ParseFile;
  /** Whether the files will be read again (reload): only then is each file's hash of use. */
  readonly #rereads: boolean;
  /** Every file as last read, by path: an unchanged file is neither read nor parsed again. */
  #read = new Map<string, ReadFile>();

  constructor(
    path: string,
    opts: { log?: Logger; limits?: ParseLimits; parse?: ParseFile; rereads?: boolean } = {},
  ) {
    this.#path = path;
    this.#rereads = opts.rereads ?? true;
    this.#log = opts.log;
    this.#limits = opts.limits ?? PARSE_LIMITS;
    this.#parse = opts.parse ?? objectsInFile;
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
        const before = this.#current.get(id);
        if (before && !differ(before, entry)) continue;
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
    const files = await this.#files();
    const known = new Map<string, ReadFile>();
    const counts = {
      files: files.length,
      read: 0,
      parsed: 0,
      unchanged: 0,
      readMs: 0,
      parseMs: 0,
      byWorker: 0,
    };
    for (const file of files) {
      const read = await this.#readFile(file, counts);
      if (typeof read === 'string') {
        problems.push({ file, reason: read });
        continue;
      }
      known.set(file, read);
      for (const reason of read.found.problems) problems.push({ file, reason });
      for (const { kind, object } of read.found.objects) {
        if (object.metadata?.namespace === undefined && !isClusterScoped(kind))
          object.metadata = { ...object.metadata, namespace: 'default' };
        // The same object again when the file was not parsed again: its text is already known.
        const id = identity(kind, object);
        const before = this.#current.get(id);
        objects.set(id, before?.object === object ? before : { kind, object });
      }
    }
    // Files gone (or unreadable now) are forgotten: they are parsed anew when they are back.
    this.#read = known;
    this.#log?.debug(
      {
        ...counts,
        readMs: Math.round(counts.readMs),
        parseMs: Math.round(counts.parseMs),
        objects: objects.size,
      },
      'source read',
    );
    return { objects, problems };
  }

  /**
   * A file as read now: the last read when its stamp and text are the same, else parsed anew;
   * or why it cannot be read.
   */
  async #readFile(
    file: string,
    counts: {
      read: number;
      parsed: number;
      unchanged: number;
      readMs: number;
      parseMs: number;
      byWorker: number;
    },
  ): Promise<ReadFile | string> {
    const last = this.#read.get(file);
    let stamp: string | undefined;
    try {
      const info = await stat(file);
      stamp = `${info.size}:${info.mtimeMs}:${info.ctimeMs}:${info.dev}:${info.ino}`;
      if (last && last.stamp === stamp && info.mtimeMs < last.readAt - RACY_MS) {
        counts.unchanged++;
        return last;
      }
    } catch {
      // readBounded says why.
    }
    const readAt = Date.now();
    const readStart = performance.now();
    const read = await readBounded(file, this.#limits);
    counts.readMs += performance.now() - readStart;
    counts.read++;
    if (!read.ok) return read.reason;
    // 25 ms for 20 MB: not for a source read once (--once, --dry-run).
    const hash = this.#rereads ? createHash('sha256').update(read.text).digest('base64') : '';
    if (this.#rereads && last && last.hash === hash) {
      counts.unchanged++;
      return { ...last, stamp: stamp ?? '', readAt };
    }
    const parseStart = performance.now();
    const found = await this.#parse(file, read.text, this.#limits);
    counts.parseMs += performance.now() - parseStart;
    counts.parsed++;
    counts.byWorker += found.worker?.documents ?? 0;
    // Costs only time: what the worker did not read was read here.
    if (found.worker?.error !== undefined)
      this.#log?.warn({ file, err: found.worker.error }, 'the parse worker failed; parsed without it');
    return { stamp: stamp ?? '', readAt, hash, found };
  }
}
