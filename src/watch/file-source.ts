import { watch, type FSWatcher } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { ErrorCodes, ProxyError } from '../errors.js';
import { objectKey } from '../model/object-key.js';
import type { Kind, KubeObject, Source, SourceHandler } from './source.js';

const KINDS: Record<string, Kind> = { Service: 'Service', EndpointSlice: 'EndpointSlice', Node: 'Node' };
const EXTENSIONS = /\.(ya?ml|json)$/i;

interface Loaded {
  objects: Map<string, { kind: Kind; object: KubeObject; text: string }>;
  problems: Array<{ file: string; reason: string }>;
}

const identity = (kind: Kind, o: KubeObject): string =>
  kind === 'Node'
    ? `Node//${o.metadata?.name}`
    : `${kind}/${objectKey(o.metadata?.namespace, o.metadata?.name)}`;

/** Every Service, EndpointSlice and Node in the documents of one file's text (Lists unpacked). */
export function objectsInText(text: string): {
  objects: Array<{ kind: Kind; object: KubeObject }>;
  error?: string;
} {
  const docs = parseAllDocuments(text);
  const objects: Array<{ kind: Kind; object: KubeObject }> = [];
  const visit = (value: unknown): void => {
    if (!value || typeof value !== 'object') return;
    const v = value as { kind?: unknown; items?: unknown };
    if (typeof v.kind === 'string' && v.kind.endsWith('List') && Array.isArray(v.items)) {
      for (const item of v.items) visit(item);
      return;
    }
    const kind = typeof v.kind === 'string' ? KINDS[v.kind] : undefined;
    if (kind) objects.push({ kind, object: value as KubeObject });
  };
  for (const doc of Array.isArray(docs) ? docs : [docs]) {
    if (doc.errors.length > 0) return { objects: [], error: doc.errors[0]!.message.split('\n')[0]! };
    visit(doc.toJS());
  }
  return { objects };
}

/**
 * Kubernetes objects from a file or a folder of YAML/JSON files, re-read when they change.
 * A file that does not parse is reported and skipped as a whole; every other file counts.
 * Emits the difference between reads, so downstream sees ordinary add/update/delete events.
 */
export class FileSource implements Source {
  readonly #path: string;
  #handler: SourceHandler | undefined;
  #current = new Map<string, { kind: Kind; object: KubeObject; text: string }>();
  #watcher: FSWatcher | undefined;
  #timer: NodeJS.Timeout | undefined;
  #reading: Promise<void> = Promise.resolve();

  constructor(path: string) {
    this.#path = path;
  }

  async start(handler: SourceHandler): Promise<void> {
    this.#handler = handler;
    await this.reload();
    handler.synced();
  }

  /** Watch for changes (the daemon does; --once and --dry-run do not). */
  watch(debounceMs = 100): void {
    this.#watcher = watch(this.#path, { recursive: false }, () => {
      clearTimeout(this.#timer);
      this.#timer = setTimeout(() => void this.reload(), debounceMs);
    });
  }

  async stop(): Promise<void> {
    clearTimeout(this.#timer);
    this.#watcher?.close();
    await this.#reading;
  }

  /** Read everything again and emit what changed. */
  reload(): Promise<void> {
    this.#reading = this.#reading.then(async () => {
      const loaded = await this.#load();
      const handler = this.#handler!;
      handler.unreadable?.(loaded.problems);
      for (const [id, entry] of this.#current) {
        if (loaded.objects.has(id)) continue;
        handler.remove(
          entry.kind,
          entry.kind === 'Node' ? '' : entry.object.metadata?.namespace || 'default',
          entry.object.metadata?.name ?? '',
        );
      }
      for (const [id, entry] of loaded.objects) {
        if (this.#current.get(id)?.text === entry.text) continue;
        handler.upsert(entry.kind, entry.object);
      }
      this.#current = loaded.objects;
    });
    return this.#reading;
  }

  async #files(): Promise<string[]> {
    let info;
    try {
      info = await stat(this.#path);
    } catch (err) {
      throw new ProxyError(
        ErrorCodes.SOURCE_UNREADABLE,
        `--source ${this.#path}: ${(err as Error).message}`,
        { cause: err },
      );
    }
    if (!info.isDirectory()) return [this.#path];
    const names = (await readdir(this.#path)).filter((n) => EXTENSIONS.test(n) && !n.startsWith('.')).sort();
    return names.map((n) => join(this.#path, n));
  }

  async #load(): Promise<Loaded> {
    const objects: Loaded['objects'] = new Map();
    const problems: Loaded['problems'] = [];
    for (const file of await this.#files()) {
      let text: string;
      try {
        text = await readFile(file, 'utf8');
      } catch (err) {
        problems.push({ file, reason: (err as Error).message });
        continue;
      }
      const { objects: found, error } = objectsInText(text);
      if (error) {
        problems.push({ file, reason: `not YAML or JSON: ${error}` });
        continue;
      }
      for (const { kind, object } of found) {
        if (object.metadata?.namespace === undefined && kind !== 'Node')
          object.metadata = { ...object.metadata, namespace: 'default' };
        objects.set(identity(kind, object), { kind, object, text: JSON.stringify(object) });
      }
    }
    return { objects, problems };
  }
}
