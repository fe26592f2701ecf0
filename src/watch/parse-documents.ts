import { setImmediate as nextTurn } from 'node:timers/promises';
import { closeSync, constants as fsConstants, fstatSync, openSync, readSync, type Stats } from 'node:fs';
import { open } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import { createRequire } from 'node:module';
import type { Document } from 'yaml';

type YamlPackage = typeof import('yaml');
let yamlPackage: YamlPackage | undefined;
/**
 * The `yaml` package, loaded at its first use (synchronously: parseYamlDocuments is): its 45 ms
 * of loading are start-up that a --source of ordinary documents never needs.
 */
const yaml = (): YamlPackage => (yamlPackage ??= createRequire(import.meta.url)('yaml') as YamlPackage);

/**
 * Bounds on one file of Kubernetes objects (the --source files, the --config file). Input past
 * them costs that file only: it is refused with a reason, never composed.
 */
export interface ParseLimits {
  /**
   * Largest file read. Measured with documents composed one at a time (below): 31.5 MB of YAML
   * (27,000 Services with a 10-endpoint slice each) peaks at 300 MB RSS, 30 MB of JSON at 200 MB.
   * 32 MiB keeps one file within the DaemonSet's 512 MiB memory limit, and is three times the
   * 10,000 × 10 cluster of the benchmarks (11.6 MB of YAML).
   */
  maxBytes: number;
  /**
   * Deepest nesting of collections. A Kubernetes object is under 20 deep even with
   * managedFields and inside a List; the composer and `toJS` recurse once per level, and a
   * 400,000-level file (800 KB of `[`) costs the parser 500 MB of syntax tree before the
   * composer's stack gives out.
   */
  maxDepth: number;
  /** YAML aliases: nodes resolved through aliases before the file is refused ("billion laughs"). */
  maxAliasCount: number;
}

export const PARSE_LIMITS: ParseLimits = { maxBytes: 32 * 1024 * 1024, maxDepth: 100, maxAliasCount: 100 };

/**
 * The documents that hold a map or a list, in file order; empty documents are dropped, and so
 * are scalar ones (counted in `scalars`, which no Kubernetes object is).
 */
export type ParseResult = { ok: true; documents: unknown[]; scalars: number } | { ok: false; reason: string };
export type ReadResult = { ok: true; text: string } | { ok: false; reason: string };

const refuse = (reason: string): { ok: false; reason: string } => ({ ok: false, reason });
const firstLine = (s: string): string => s.split('\n')[0]!.trim();
const tooLarge = (size: number, limits: ParseLimits): string =>
  `${size} bytes is more than the ${limits.maxBytes} bytes a source file may have`;
/** O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer. */
const READ_FLAGS = fsConstants.O_RDONLY | fsConstants.O_NONBLOCK;

/** What to do after a file's size is known: refuse it, or read into a buffer one byte larger. */
function bufferFor(info: Stats, limits: ParseLimits): Buffer | string {
  if (!info.isFile()) return 'not a regular file';
  if (info.size > limits.maxBytes) return tooLarge(info.size, limits);
  // One byte more than the size: filling it means the file grew while it was read.
  return Buffer.alloc(info.size + 1);
}

const GREW = 'the file grew while it was read; it is read again on its next change';

/**
 * The text of a regular file of at most `limits.maxBytes`. A FIFO, a device or a folder is
 * refused before anything is read from it (reading one could block or never end), and so is
 * a file that grows while it is read.
 */
export async function readBounded(path: string, limits: ParseLimits = PARSE_LIMITS): Promise<ReadResult> {
  let handle;
  try {
    handle = await open(path, READ_FLAGS);
  } catch (err) {
    return refuse((err as Error).message);
  }
  try {
    const buffer = bufferFor(await handle.stat(), limits);
    if (typeof buffer === 'string') return refuse(buffer);
    let length = 0;
    for (;;) {
      const { bytesRead } = await handle.read(buffer, length, buffer.length - length, null);
      if (bytesRead === 0) break;
      length += bytesRead;
      if (length === buffer.length) return refuse(GREW);
    }
    return { ok: true, text: buffer.toString('utf8', 0, length) };
  } catch (err) {
    return refuse((err as Error).message);
  } finally {
    await handle.close();
  }
}

/** readBounded() for the start-up path (--config), which reads synchronously. */
export function readBoundedSync(path: string, limits: ParseLimits = PARSE_LIMITS): ReadResult {
  let fd: number;
  try {
    fd = openSync(path, READ_FLAGS);
  } catch (err) {
    return refuse((err as Error).message);
  }
  try {
    const buffer = bufferFor(fstatSync(fd), limits);
    if (typeof buffer === 'string') return refuse(buffer);
    let length = 0;
    for (;;) {
      const n = readSync(fd, buffer, length, buffer.length - length, null);
      if (n === 0) break;
      length += n;
      if (length === buffer.length) return refuse(GREW);
    }
    return { ok: true, text: buffer.toString('utf8', 0, length) };
  } catch (err) {
    return refuse((err as Error).message);
  } finally {
    closeSync(fd);
  }
}

/**
 * Whether JSON text nests deeper than `max`, by one pass over its characters: nothing is
 * allocated, so it is safe on any text (JSON.parse itself would build the whole tree first).
 */
export function jsonNestsDeeper(text: string, max: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c)
        i++; // backslash: the next character is escaped
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) return true;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return false;
}

/**
 * Whether a parsed value nests deeper than `max`. A YAML alias to its own anchor makes a cycle
 * (which JSON.stringify and every walk downstream would choke on): a cycle is infinitely deep,
 * and this walk, depth first, meets the limit on it after `max` steps. Iterative: it cannot
 * overflow the stack whatever it is given.
 */
export function valueNestsDeeper(value: unknown, max: number): boolean {
  const stack: Array<{ v: unknown; depth: number }> = [{ v: value, depth: 0 }];
  while (stack.length > 0) {
    const { v, depth } = stack.pop()!;
    if (v === null || typeof v !== 'object') continue;
    if (depth >= max) return true;
    for (const child of Array.isArray(v) ? v : Object.values(v as object))
      if (child !== null && typeof child === 'object') stack.push({ v: child, depth: depth + 1 });
  }
  return false;
}

/** The documents of a JSON file: one value, refused when it nests deeper than the limit. */
export function parseJson(text: string, limits: ParseLimits = PARSE_LIMITS): ParseResult {
  if (text.length > limits.maxBytes) return refuse(tooLarge(text.length, limits));
  if (jsonNestsDeeper(text, limits.maxDepth))
    return refuse(`nested more than ${limits.maxDepth} levels deep`);
  try {
    const value = JSON.parse(text) as unknown;
    return typeof value === 'object' && value !== null
      ? { ok: true, documents: [value], scalars: 0 }
      : { ok: true, documents: [], scalars: value === null ? 0 : 1 };
  } catch (err) {
    return refuse(`not JSON: ${firstLine((err as Error).message)}`);
  }
}

/**
 * The documents of a YAML stream as plain values, or why the text was refused: a syntax
 * error, nesting deeper than `maxDepth` (checked on the parser's stack after every token, so a
 * deep file is refused before its syntax tree grows), aliases that expand past
 * `maxAliasCount`, or an alias cycle. Documents are composed and converted one at a time, so
 * only one document's syntax tree is alive at once.
 */
export function parseYamlDocuments(text: string, limits: ParseLimits = PARSE_LIMITS): ParseResult {
  const steps = yamlSteps(text, limits);
  for (;;) {
    const step = steps.next();
    if (step.done) return step.value;
  }
}

/** Lexemes between two chances for the caller to yield the event loop. */
const LEXEMES_PER_STEP = 4096;

/**
 * parseYamlDocuments() in steps: it yields after each document and every LEXEMES_PER_STEP
 * lexemes, so an async caller can let the event loop run (health probes, metrics) while a
 * large file is read. A single document's composing is one step however large it is.
 */
function* yamlSteps(text: string, limits: ParseLimits, lineOffset = 0): Generator<undefined, ParseResult> {
  if (text.length > limits.maxBytes) return refuse(tooLarge(text.length, limits));
  const { Composer, Lexer, Parser } = yaml();
  const parser = new Parser();
  const composer = new Composer({ prettyErrors: false });
  const documents: unknown[] = [];
  let scalars = 0;
  const deep = `nested more than ${limits.maxDepth} levels deep`;
  // Counted only when there is an error to place: a LineCounter would keep a number per line.
  const at = (offset: number): string => {
    let line = 1 + lineOffset;
    let start = 0;
    for (let i = text.indexOf('\n'); i >= 0 && i < offset; i = text.indexOf('\n', i + 1)) {
      line++;
      start = i + 1;
    }
    return ` at line ${line}, column ${offset - start + 1}`;
  };
  const take = (doc: Document.Parsed): string | undefined => {
    const error = doc.errors[0];
    if (error) return `not YAML: ${firstLine(error.message)}${at(error.pos[0])}`;
    let value: unknown;
    try {
      value = doc.toJS({ maxAliasCount: limits.maxAliasCount });
    } catch (err) {
      return `YAML aliases expand past ${limits.maxAliasCount} nodes: ${firstLine((err as Error).message)}`;
    }
    if (valueNestsDeeper(value, limits.maxDepth)) return `${deep} (through YAML aliases)`;
    // Only objects can be Kubernetes objects: a stream of empty documents keeps nothing.
    if (typeof value === 'object' && value !== null) documents.push(value);
    else if (value !== null && value !== undefined) scalars++;
    return undefined;
  };
  try {
    let lexemes = 0;
    for (const lexeme of new Lexer().lex(text, false)) {
      for (const token of parser.next(lexeme))
        for (const doc of composer.next(token)) {
          const problem = take(doc);
          if (problem) return refuse(problem);
          yield;
        }
      if (++lexemes % LEXEMES_PER_STEP === 0) yield;
      // The stack holds the open collections (and the document): its length is the nesting.
      if (parser.stack.length > limits.maxDepth + 1) return refuse(`${deep}${at(parser.offset)}`);
    }
    for (const token of parser.end())
      for (const doc of composer.next(token)) {
        const problem = take(doc);
        if (problem) return refuse(problem);
      }
    for (const doc of composer.end()) {
      const problem = take(doc);
      if (problem) return refuse(problem);
    }
  } catch (err) {
    // The composer reports its own failures as errors; anything thrown is a bug in it or ours,
    // and still costs only this file.
    return refuse(`not YAML: ${firstLine((err as Error).message)}`);
  }
  return { ok: true, documents, scalars };
}

export const isJson = (file: string): boolean => /\.json$/i.test(file);

/** The documents of a file's text, parsed by its name: `.json` as JSON, anything else as YAML. */
export function parseDocuments(file: string, text: string, limits: ParseLimits = PARSE_LIMITS): ParseResult {
  return isJson(file) ? parseJson(text, limits) : parseYamlDocuments(text, limits);
}

/**
 * parseDocuments() that lets the event loop run at least every `sliceMs` of YAML work (JSON.parse
 * is one call, and fast: 30 MB in 1.4 s here). YAML composes at about 1.2 MB/s here, so a file
 * at the size limit would otherwise hold the daemon's health and metrics servers for half a
 * minute, long enough for a liveness probe to restart it.
 */
export async function parseDocumentsAsync(
  file: string,
  text: string,
  limits: ParseLimits = PARSE_LIMITS,
  sliceMs = 20,
): Promise<ParseResult> {
  if (isJson(file)) return parseJson(text, limits);
  return parseYamlDocumentsAsync(text, limits, sliceMs);
}

/**
 * parseYamlDocuments() that lets the event loop run at least every `sliceMs`. `lineOffset` is
 * the number of lines before `text` in its file, so that the lines in reasons are the file's.
 */
export async function parseYamlDocumentsAsync(
  text: string,
  limits: ParseLimits = PARSE_LIMITS,
  sliceMs = 20,
  lineOffset = 0,
): Promise<ParseResult> {
  const steps = yamlSteps(text, limits, lineOffset);
  let since = performance.now();
  for (;;) {
    const step = steps.next();
    if (step.done) return step.value;
    if (performance.now() - since >= sliceMs) {
      await nextTurn();
      since = performance.now();
    }
  }
}
