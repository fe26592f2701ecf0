import { setImmediate as nextTurn } from 'node:timers/promises';
import { performance } from 'node:perf_hooks';
import {
  isJson,
  PARSE_LIMITS,
  parseJson,
  parseYamlDocumentsAsync,
  type ParseLimits,
  type ParseResult,
} from './parse-documents.js';
import { fastValues } from './fast-yaml.js';
import { readInParallel, type ParallelOptions } from './parallel-parse.js';

/** One document of a --source file that holds a map or a list. */
export interface SourceDocument {
  /** Its position among the file's documents, from 1 (a JSON file is one document). */
  index: number;
  value: object;
}

export interface SourceDocuments {
  documents: SourceDocument[];
  /**
   * Why a document was skipped, one line each: `document 3: not YAML: ... at line 57, column 3`
   * (the line is the file's). In a file of one document (and in a JSON file) the reason alone.
   */
  problems: string[];
  /** How many documents went through the guarded parser rather than the fast one. */
  guarded: number;
  /** How many documents the parse worker read (see readInParallel). */
  byWorker: number;
  /** Why the parse worker failed, when it did (its documents were read here instead). */
  workerError?: string;
}

/**
 * From this size on, a file's documents are read by a worker and this thread at once when they
 * need js-yaml (parallel-parse.ts). Below it, starting the worker (some 30 ms) costs more than it
 * saves.
 */
export const PARALLEL_FROM_BYTES = 1 << 20;

export interface SourceParseOptions extends ParallelOptions {
  /** The size from which a worker helps (PARALLEL_FROM_BYTES). */
  parallelFromBytes?: number;
}

/** What ends a line for `^` and `$` in a multiline regex: where a line starts after it. */
const isLineEnd = (c: number): boolean => c === 0x0a || c === 0x0d || c === 0x2028 || c === 0x2029;
const atLineStart = (text: string, at: number): boolean => at === 0 || isLineEnd(text.charCodeAt(at - 1));

/**
 * Directives (`%YAML`) belong to the document after them and `...` ends one early: a file with
 * either at column 0 (`...` followed by a space, a tab, a line end or the end) is read whole by
 * the guarded parser, as before this fast path existed. What `/^(?:%|\.\.\.(?=[ \t\r\n]|$))/m`
 * finds, by indexOf: that regex took 14 ms of a 20 MB file, of whose lines it tried each.
 */
export function unusualStream(text: string): boolean {
  for (let i = text.indexOf('%'); i !== -1; i = text.indexOf('%', i + 1))
    if (atLineStart(text, i)) return true;
  for (let i = text.indexOf('...'); i !== -1; i = text.indexOf('...', i + 1)) {
    if (!atLineStart(text, i)) continue;
    const next = text.charCodeAt(i + 3);
    if (Number.isNaN(next) || next === 0x20 || next === 0x09 || isLineEnd(next)) return true;
  }
  return false;
}

/** Only white space and comments: what comes before a stream's first `---`, if anything. */
const NO_CONTENT = /^(?:\s|#[^\n]*)*$/;

/** `---` ends there: a document marker when what follows is a space, a line break or the end. */
const markerEnds = (text: string, at: number): boolean => {
  const c = text.charCodeAt(at);
  return Number.isNaN(c) || c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d;
};

/**
 * Where each document starts: at 0 and at every `---` marker at the start of a line. YAML
 * forbids a marker inside any content at column 0 (block and quoted scalars included), so
 * cutting the text there never splits a document. (indexOf: a multiline regex over 20 MB costs
 * ten times more.)
 */
function starts(text: string): number[] {
  const at = [0];
  for (let i = text.indexOf('\n---'); i !== -1; i = text.indexOf('\n---', i + 4))
    if (markerEnds(text, i + 4)) at.push(i + 1);
  return at;
}

/**
 * The documents of a --source file, each on its own, so that a bad one costs only itself.
 *
 * The fast path reads each document with block-yaml.ts when it is in the plain block style, else
 * with js-yaml (several times faster than the `yaml` package's composer, which held 16 s of an
 * 18 s `--source --once` at 10,000 Services; the block reader takes half of js-yaml's time), and
 * a `.json` file, or a file whose text starts with `{` or `[` and is JSON, with JSON.parse. The
 * guarded parser of parse-documents.ts, with its alias and depth limits, still decides every
 * document that is unusual: one with anything that could be an anchor or alias (js-yaml shares
 * an alias's value instead of copying it, so an alias bomb would cost nothing here and explode
 * downstream), one js-yaml refuses for any reason (a syntax error, nesting past
 * `limits.maxDepth`, an unknown tag, a duplicate key), and files with directives. So what is
 * refused, and why, is the guarded parser's word; the fast one only saves time.
 *
 * The event loop gets a turn at least every `sliceMs` (the daemon's probes keep answering).
 * A file of PARALLEL_FROM_BYTES or more whose documents need js-yaml is read by a worker thread
 * and this one at once (parallel-parse.ts), with the same outcome.
 */
export async function parseSourceDocuments(
  file: string,
  text: string,
  limits: ParseLimits = PARSE_LIMITS,
  sliceMs = 20,
  opts: SourceParseOptions = {},
): Promise<SourceDocuments> {
  const whole = (r: ParseResult, guarded: number): SourceDocuments =>
    r.ok
      ? {
          documents: r.documents.map((value, i) => ({ index: i + 1, value: value as object })),
          problems: [],
          guarded,
          byWorker: 0,
        }
      : { documents: [], problems: [r.reason], guarded, byWorker: 0 };
  if (isJson(file)) return whole(parseJson(text, limits), 0);
  if (/^\s*[[{]/.test(text)) {
    // Otherwise it may still be YAML (flow style, several documents), read with YAML's limits.
    const r = parseJson(text, limits);
    if (r.ok) return whole(r, 0);
  }
  if (text.length > limits.maxBytes || unusualStream(text))
    return whole(await parseYamlDocumentsAsync(text, limits, sliceMs), 1);

  const cuts = starts(text);
  // Text before the first `---` is a document only if it has content.
  if (cuts.length > 1 && NO_CONTENT.test(text.slice(0, cuts[1]))) cuts.shift();
  const reads =
    text.length >= (opts.parallelFromBytes ?? PARALLEL_FROM_BYTES) && cuts.length > 1
      ? await readInParallel(text, cuts, limits.maxDepth, sliceMs, opts)
      : undefined;
  const documents: SourceDocument[] = [];
  const problems: Array<[number, string]> = [];
  let guarded = 0;
  let line = 0;
  let counted = 0;
  let since = performance.now();
  for (const [i, start] of cuts.entries()) {
    const end = cuts[i + 1] ?? text.length;
    const index = i + 1;
    const read = reads?.values[i];
    const fast = read === undefined ? fastValues(text, limits.maxDepth, start, end) : read;
    let values: unknown[];
    if (fast) values = fast;
    else {
      // Lines are counted only up to a document that needs them (its reasons name them).
      for (let at = text.indexOf('\n', counted); at !== -1 && at < start; at = text.indexOf('\n', at + 1))
        line++;
      counted = start;
      guarded++;
      const r = await parseYamlDocumentsAsync(text.slice(start, end), limits, sliceMs, line);
      if (!r.ok) {
        problems.push([index, r.reason]);
        continue;
      }
      values = r.documents;
    }
    for (const value of values)
      if (typeof value === 'object' && value !== null) documents.push({ index, value });
    if (performance.now() - since >= sliceMs) {
      await nextTurn();
      since = performance.now();
    }
  }
  const named = cuts.length > 1;
  return {
    documents,
    problems: problems.map(([index, reason]) => (named ? `document ${index}: ${reason}` : reason)),
    guarded,
    byWorker: reads?.byWorker ?? 0,
    ...(reads?.workerError === undefined ? {} : { workerError: reads.workerError }),
  };
}
