import jsYaml from 'js-yaml';
import { blockValues } from './block-yaml.js';
import { YAML_CORE_SCHEMA } from './yaml-core-schema.js';

/**
 * Where an anchor or alias could start a node: after white space, a flow indicator or `:` (a
 * JSON-like key's adjacent value). A superset: `a & b` in a quoted string matches too, and only
 * costs that document the slower parser.
 */
const ANCHOR_OR_ALIAS = /(?:^|[\s,[{:])[&*]/m;

/**
 * One document's values as js-yaml reads them, or null when the guarded parser must decide it:
 * js-yaml refuses it (for any reason), or it may hold an anchor or alias (js-yaml shares an
 * alias's value instead of copying it, so an alias bomb would cost nothing here and explode
 * downstream). Most documents are in the plain block style, read several times faster without
 * js-yaml and with the same outcome (block-yaml.ts); only the others go to js-yaml.
 * The same in the main thread and in the parse worker. The document is `text` from `from` to
 * `to`: the block reader reads it in place.
 */
export function fastValues(text: string, maxDepth: number, from = 0, to = text.length): unknown[] | null {
  return blockValues(text, maxDepth, from, to) ?? jsYamlValues(text.slice(from, to), maxDepth);
}

/** fastValues without the block reader: js-yaml's values, or null for the guarded parser. */
export function jsYamlValues(chunk: string, maxDepth: number): unknown[] | null {
  if ((chunk.includes('&') || chunk.includes('*')) && ANCHOR_OR_ALIAS.test(chunk)) return null;
  const values: unknown[] = [];
  try {
    // maxDepth counts every node, scalars too: a document right at the limit goes to the
    // guarded parser, which counts collections.
    jsYaml.loadAll(chunk, (doc) => values.push(doc), {
      schema: YAML_CORE_SCHEMA,
      maxDepth,
    } as jsYaml.LoadOptions);
  } catch {
    return null;
  }
  return values;
}
