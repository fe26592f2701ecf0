import jsYaml from 'js-yaml';

/**
 * A js-yaml schema that reads plain scalars as the `yaml` package's YAML 1.2 core schema does
 * (its default, and what the guarded parser in parse-documents.ts uses), so that the fast and
 * the guarded parser give the same objects. js-yaml's own CORE_SCHEMA differs where it matters:
 * it reads `0b101`, `1_000` and `+0x1F` as numbers and `0o17`-less octal forms differently; the
 * `yaml` package keeps those as strings. Each test and conversion below is the `yaml` package's
 * (yaml/dist/schema/core/*.js), in the same order. No timestamps, binaries, sets or merge keys:
 * YAML 1.2 core has none, and an explicit tag for one fails here, which sends the document to the
 * guarded parser.
 *
 * One difference is left: a null key (`~: v`) is named "null" here (as JSON.stringify of the
 * map would) and "" by the `yaml` package. No Kubernetes object has one.
 */
const { FAILSAFE_SCHEMA, Type } = jsYaml;

/**
 * What a plain scalar that some implicit type accepts can start with: every type's `first`, and
 * the null type's. resolvePlain turns the rest (most: names, addresses) away without asking.
 */
const ANY_FIRST = new Uint8Array(128);

/** Counts a type's first characters in ANY_FIRST. */
const mayStartWith = (first: string): void => {
  for (const c of first) ANY_FIRST[c.charCodeAt(0)] = 1;
};

/** A type's first characters as a table by character code, counted in ANY_FIRST too. */
const firstTable = (first: string): Uint8Array => {
  mayStartWith(first);
  const table = new Uint8Array(128);
  for (const c of first) table[c.charCodeAt(0)] = 1;
  return table;
};

/**
 * A scalar type. js-yaml asks every implicit type about every plain scalar (names, addresses,
 * ...), so `first` (what its first character can be) turns most of them away before the regex.
 */
const scalar = (
  tag: string,
  first: string,
  test: RegExp,
  construct: (s: string) => unknown,
): InstanceType<typeof Type> => {
  // By character code: a table lookup, not a one-character string searched in `first`.
  const starts = firstTable(first);
  return new Type(`tag:yaml.org,2002:${tag}`, {
    kind: 'scalar',
    resolve: (data: unknown) =>
      typeof data === 'string' && starts[data.charCodeAt(0)] === 1 && test.test(data),
    construct: (data: string) => construct(data),
  });
};

/**
 * js-yaml resolves an empty plain scalar (`key:`) through the null type with `null` as data. Its
 * test is short enough to need no table; only ANY_FIRST needs its first characters.
 */
mayStartWith('~nN');
const nullType = new Type('tag:yaml.org,2002:null', {
  kind: 'scalar',
  resolve: (data: unknown) =>
    data === null || (typeof data === 'string' && data.length <= 4 && /^(?:~|[Nn]ull|NULL)?$/.test(data)),
  construct: () => null,
});

const floatNaN = (s: string): number =>
  s.slice(-3).toLowerCase() === 'nan' ? NaN : s[0] === '-' ? -Infinity : Infinity;

/**
 * How many numbers JSON cannot carry (NaN, ±Infinity, -0) were read so far in this thread: the
 * parse worker sends documents back as JSON, and leaves any document that made one to the main
 * thread, which reads it itself.
 */
export const numberQuirks = { count: 0 };

const noted = (n: number): number => {
  if (!Number.isFinite(n) || Object.is(n, -0)) numberQuirks.count++;
  return n;
};

/** The implicit types in the order js-yaml tries them on a plain scalar. */
const IMPLICIT = [
  nullType,
  scalar('bool', 'tTfF', /^(?:[Tt]rue|TRUE|[Ff]alse|FALSE)$/, (s) => s[0] === 't' || s[0] === 'T'),
  // One int type: js-yaml keeps one type per tag, so the three forms share one test.
  scalar('int', '-+0123456789', /^(?:0o[0-7]+|[-+]?[0-9]+|0x[0-9a-fA-F]+)$/, (s) =>
    noted(
      s.startsWith('0o')
        ? parseInt(s.slice(2), 8)
        : s.startsWith('0x')
          ? parseInt(s.slice(2), 16)
          : parseInt(s, 10),
    ),
  ),
  scalar(
    'float',
    '-+.0123456789',
    /^(?:[-+]?\.(?:inf|Inf|INF)|\.nan|\.NaN|\.NAN|[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)[eE][-+]?[0-9]+|[-+]?(?:\.[0-9]+|[0-9]+\.[0-9]*))$/,
    (s) => noted(/[nN]/.test(s) ? floatNaN(s) : parseFloat(s)),
  ),
];

export const YAML_CORE_SCHEMA = FAILSAFE_SCHEMA.extend({ implicit: IMPLICIT });

/**
 * A plain scalar's value, as js-yaml makes it with YAML_CORE_SCHEMA: the first implicit type
 * that resolves the text constructs it (js-yaml's composeNode does the same, in the same
 * order), else the text itself. For readers of the same documents that are not js-yaml
 * (block-yaml.ts), so that both give the same values and count the same number quirks.
 */
export function resolvePlain(text: string): unknown {
  // Most scalars (names, addresses) start with a character no type accepts: none is asked.
  if (text.length > 0 && ANY_FIRST[text.charCodeAt(0)] !== 1) return text;
  for (const type of IMPLICIT) if (type.resolve(text)) return type.construct(text);
  return text;
}
