import { resolvePlain } from './yaml-core-schema.js';

/**
 * A reader for the plain block style that `kubectl get -o yaml` and most hand-written manifests
 * use, several times faster than js-yaml (which held most of `--source --once`'s parse at 10,000
 * Services): maps and lists in block style, one-line plain, single- and double-quoted scalars
 * without escapes, `{}` and `[]`, comment and blank lines, printable ASCII only. It gives exactly
 * what js-yaml gives with YAML_CORE_SCHEMA (plain scalars are resolved by the same types, in the
 * same order: resolvePlain), or `undefined` as soon as anything is outside that subset (a tab,
 * an anchor, a tag, a block or multi-line scalar, an escape, a duplicate key, `__proto__`, any
 * structure it is not sure of): the caller then asks js-yaml (fastValues), which asks the guarded
 * parser in turn. It never refuses a document itself, so what is refused, and why, stays theirs.
 */

/** Thrown inside the reader when the text is outside the subset; never escapes it. */
const OUTSIDE = Symbol('outside the block subset');
const outside = (): never => {
  throw OUTSIDE;
};

const SPACE = 0x20;
const NL = 0x0a;
const HASH = 0x23;
const DASH = 0x2d;
const COLON = 0x3a;
const DQUOTE = 0x22;
const SQUOTE = 0x27;
const BACKSLASH = 0x5c;

/** Characters a key may have here: letters, digits and `_ . / -` (Kubernetes names and label keys). */
const KEY_CHAR = new Uint8Array(128);
for (const c of 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./-')
  KEY_CHAR[c.charCodeAt(0)] = 1;

/**
 * Characters a plain scalar may not start with here: YAML's indicators (`-` is allowed before a
 * digit or a dot: a negative number).
 */
const NOT_FIRST = new Uint8Array(128);
for (const c of '-?:,[]{}#&*!|>\'"%@`') NOT_FIRST[c.charCodeAt(0)] = 1;

/**
 * The lines with content of the text being read, one slot each in these arrays (grown as
 * needed and reused from document to document: a 20 MB file has a million lines): where the
 * line starts, its indentation, where its content starts (after the indentation, or after `- `
 * once a list item's first key is read as a map's) and ends (after its last non-space
 * character), and whether it is a list item (`- ` or `-` alone).
 */
let lineStart = new Int32Array(256);
let lineIndent = new Int32Array(256);
let lineAt = new Int32Array(256);
let lineEnd = new Int32Array(256);
let lineItem = new Uint8Array(256);

/** Line slots kept between documents: a huge document's (17 bytes a line) are let go after it. */
const KEPT_LINES = 1 << 16;

function grow(): void {
  const size = lineStart.length * 2;
  const more = <T extends Int32Array | Uint8Array>(a: T): T => {
    const b = new (a.constructor as new (n: number) => T)(size);
    b.set(a);
    return b;
  };
  lineStart = more(lineStart);
  lineIndent = more(lineIndent);
  lineAt = more(lineAt);
  lineEnd = more(lineEnd);
  lineItem = more(lineItem);
}

/** Fills the line arrays; the number of lines, or -1 when the text is not printable ASCII without tabs. */
function linesOf(text: string, from: number, to: number): number {
  let count = 0;
  let i = from;
  const n = to;
  while (i < n) {
    const start = i;
    while (i < n && text.charCodeAt(i) === SPACE) i++;
    const at = i;
    let end = at;
    for (; i < n; i++) {
      const c = text.charCodeAt(i);
      if (c === NL) break;
      // Control characters (tab and CR among them) and anything past ASCII: js-yaml decides.
      if (c < SPACE || c > 0x7e) return -1;
      if (c !== SPACE) end = i + 1;
    }
    i++;
    // Blank lines and comment lines carry nothing in block context.
    if (end === at || text.charCodeAt(at) === HASH) continue;
    // `---` or `...` at the start of a line, whatever follows: js-yaml takes `---a: 1` for a
    // marker and `a: 1` when it starts a document, so any such line is js-yaml's to read.
    if (at === start && (text.startsWith('---', at) || text.startsWith('...', at))) return -1;
    if (count === lineStart.length) grow();
    lineStart[count] = start;
    lineIndent[count] = at - start;
    lineAt[count] = at;
    lineEnd[count] = end;
    lineItem[count] =
      text.charCodeAt(at) === DASH && (end === at + 1 || text.charCodeAt(at + 1) === SPACE) ? 1 : 0;
    count++;
  }
  return count;
}

/** A one-line scalar from `at` to `end` (its last non-space character); outside() if not one. */
function scalar(text: string, at: number, end: number): unknown {
  const first = text.charCodeAt(at);
  if (first === DQUOTE || first === SQUOTE) {
    // Quoted: the closing quote must end the line, with nothing to escape or double in between.
    if (end - at < 2 || text.charCodeAt(end - 1) !== first) outside();
    for (let i = at + 1; i < end - 1; i++) {
      const c = text.charCodeAt(i);
      if (c === first || c === BACKSLASH) outside();
    }
    return text.slice(at + 1, end - 1);
  }
  if (first === 0x7b || first === 0x5b) {
    // `{}` and `[]` only.
    if (end - at !== 2 || text.charCodeAt(at + 1) !== first + 2) outside();
    return first === 0x7b ? {} : [];
  }
  if (NOT_FIRST[first] === 1) {
    const next = text.charCodeAt(at + 1);
    if (first !== DASH || !((next >= 0x30 && next <= 0x39) || next === 0x2e)) outside();
  }
  // `: ` would be a map on this line, ` #` a comment, a trailing `:` a map too.
  for (let i = at; i < end; i++) {
    const c = text.charCodeAt(i);
    if (c === COLON && (i + 1 === end || text.charCodeAt(i + 1) === SPACE)) outside();
    if (c === HASH && text.charCodeAt(i - 1) === SPACE) outside();
  }
  return resolvePlain(text.slice(at, end));
}

class Reader {
  #pos = 0;
  constructor(
    readonly text: string,
    readonly count: number,
    readonly maxDepth: number,
  ) {}

  /** The whole document: one map at indentation 0. */
  document(): object {
    if (lineIndent[0] !== 0 || lineItem[0] === 1) outside();
    const value = this.#map(0, 1);
    if (this.#pos !== this.count) outside();
    return value;
  }

  /** The indentation of the next line, -1 at the end. */
  #nextIndent(): number {
    return this.#pos < this.count ? lineIndent[this.#pos]! : -1;
  }

  /** A map whose keys are at indentation `indent`, from the current line on. */
  #map(indent: number, depth: number): Record<string, unknown> {
    if (depth >= this.maxDepth) outside();
    const { text } = this;
    const out: Record<string, unknown> = {};
    for (;;) {
      const at = lineAt[this.#pos]!;
      const end = lineEnd[this.#pos]!;
      let i = at;
      let hash = 0;
      for (let c = text.charCodeAt(i); i < end && KEY_CHAR[c] === 1; c = text.charCodeAt(++i))
        hash = (Math.imul(hash, 31) + c) | 0;
      if (i === at || text.charCodeAt(i) !== COLON) outside();
      const key = keyAt(text, at, i, hash);
      i++;
      if (i < end && text.charCodeAt(i) !== SPACE) outside();
      if (key === '__proto__' || out[key] !== undefined) outside();
      while (i < end && text.charCodeAt(i) === SPACE) i++;
      this.#pos++;
      let next = this.#nextIndent();
      if (i < end) out[key] = scalar(text, i, end);
      else if (next > indent)
        // Nothing after the colon: what follows, more indented, or a list at the same indentation.
        out[key] = lineItem[this.#pos] === 1 ? this.#list(next, depth + 1) : this.#map(next, depth + 1);
      else if (next === indent && lineItem[this.#pos] === 1) out[key] = this.#list(indent, depth + 1);
      else out[key] = null;
      next = this.#nextIndent();
      if (next < indent) return out;
      // More indented (a continued scalar, a bad indentation) or a list item here: not ours.
      if (next > indent || lineItem[this.#pos] === 1) outside();
    }
  }

  /** A list whose `-` are at indentation `indent`, from the current line on. */
  #list(indent: number, depth: number): unknown[] {
    if (depth >= this.maxDepth) outside();
    const { text } = this;
    const out: unknown[] = [];
    for (;;) {
      const end = lineEnd[this.#pos]!;
      let i = lineAt[this.#pos]! + 1;
      while (i < end && text.charCodeAt(i) === SPACE) i++;
      // `-` alone, or a list right in a list: not ours.
      if (i === end || (text.charCodeAt(i) === DASH && (i + 1 === end || text.charCodeAt(i + 1) === SPACE)))
        outside();
      if (isKeyLine(text, i, end)) {
        // `- key: value`: a map whose keys are at the column of this first one.
        const column = i - lineStart[this.#pos]!;
        lineIndent[this.#pos] = column;
        lineAt[this.#pos] = i;
        lineItem[this.#pos] = 0;
        out.push(this.#map(column, depth + 1));
      } else {
        out.push(scalar(text, i, end));
        this.#pos++;
      }
      const next = this.#nextIndent();
      if (next < indent) return out;
      if (next === indent && lineItem[this.#pos] === 1) continue;
      // At the same indentation without `-`: the end of a list that shares its map's indentation.
      if (next === indent) return out;
      outside();
    }
  }
}

/**
 * The keys read lately, by a hash of their text: a file has thousands of objects with the same
 * few dozen keys, and a key taken from here is neither cut out of the text again nor looked up
 * among V8's internalized strings when it names a property.
 */
const KEYS = new Array<string | undefined>(4096).fill(undefined);

/** The key from `at` to `end` (hash: of its characters), as js-yaml names the property. */
function keyAt(text: string, at: number, end: number, hash: number): string {
  const slot = hash & (KEYS.length - 1);
  const known = KEYS[slot];
  if (known !== undefined && known.length === end - at && text.startsWith(known, at)) return known;
  const raw = text.slice(at, end);
  // The key is a plain scalar too (`true`, `0x1F`): js-yaml names the property after its value.
  // Only keys that are their own text are kept.
  const key = String(resolvePlain(raw));
  if (key === raw) KEYS[slot] = key;
  return key;
}

/** Whether the content from `at` starts with a key and its colon (`key:` then a space or the end). */
function isKeyLine(text: string, at: number, end: number): boolean {
  let i = at;
  while (i < end && KEY_CHAR[text.charCodeAt(i)] === 1) i++;
  return i > at && text.charCodeAt(i) === COLON && (i + 1 === end || text.charCodeAt(i + 1) === SPACE);
}

/**
 * A document's values (one map) if all of `text` from `from` to `to` is in the block subset,
 * else undefined. That is one document of a stream as source-documents.ts cuts it: it may start
 * with a `---` line (alone on it). It is read in place: a document cut out of a 20 MB text is a
 * sliced string, every character of which costs more to read. Collections deeper than
 * `maxDepth` - 1 are left to js-yaml, which counts scalars too.
 */
export function blockValues(
  text: string,
  maxDepth: number,
  from = 0,
  to = text.length,
): unknown[] | undefined {
  let start = from;
  if (text.startsWith('---', from)) {
    if (text.indexOf('\n', from) !== from + 3) return undefined;
    start = from + 4;
  }
  try {
    const count = linesOf(text, start, to);
    if (count <= 0) return undefined;
    return [new Reader(text, count, maxDepth - 1).document()];
  } catch (err) {
    if (err === OUTSIDE) return undefined;
    throw err;
  } finally {
    if (lineStart.length > KEPT_LINES) {
      lineStart = new Int32Array(256);
      lineIndent = new Int32Array(256);
      lineAt = new Int32Array(256);
      lineEnd = new Int32Array(256);
      lineItem = new Uint8Array(256);
    }
  }
}
