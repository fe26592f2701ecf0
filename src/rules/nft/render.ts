/**
 * Renders transaction operations as `nft -f` lines in nft 1.0.6 syntax. One function per
 * object kind; every operation renders to one line, except `destroy` (see renderOperation).
 * Rendering trusts its input: Transaction validates objects when they are queued.
 */
import type { Chain, Element, NftMap, NftObject, NftSet, Operation, Rule, Table, Verb } from './types.js';

/** `family table`, the address every object line starts with. */
function where(obj: NftObject): string {
  return `${obj.family} ${obj.table}`;
}

function comment(text: string | undefined): string {
  return text === undefined ? '' : `comment "${text}" ; `;
}

export function renderTable(verb: Verb, table: Table): string {
  const head = `${verb} table ${where(table)}`;
  if (verb !== 'add' && verb !== 'create') return head;
  return table.comment === undefined ? head : `${head} { ${comment(table.comment)}}`;
}

/** Renders a chain priority: numbers as they are, names with an offset normalised to `name - 10`. */
export function renderPriority(priority: string | number): string {
  if (typeof priority === 'number') return String(priority);
  const p = priority.trim();
  const named = /^([a-z]+)\s*([+-])\s*(\d+)$/.exec(p);
  return named ? `${named[1]} ${named[2]} ${named[3]}` : p;
}

export function renderChain(verb: Verb, chain: Chain): string {
  const head = `${verb} chain ${where(chain)} ${chain.name}`;
  if (verb !== 'add' && verb !== 'create') return head;
  let spec = '';
  if (chain.type !== undefined && chain.hook !== undefined && chain.priority !== undefined) {
    spec += `type ${chain.type} hook ${chain.hook} priority ${renderPriority(chain.priority)} ; `;
  }
  spec += comment(chain.comment);
  return spec === '' ? head : `${head} { ${spec}}`;
}

export function renderRule(verb: Verb, rule: Rule): string {
  const tail = rule.comment === undefined ? '' : ` comment "${rule.comment}"`;
  return `${verb} rule ${where(rule)} ${rule.chain} ${rule.rule.trim()}${tail}`;
}

/**
 * The body of a set or map: size, key (and value) type, flags, timeout and comment. Without
 * the comment (destroy's `add`), it has no size either: an `add` that matches an existing set
 * needs its type only.
 */
function setBody(set: NftSet | NftMap, withComment: boolean): string {
  // nft takes `size` anywhere in the body; first, so the line reads as nft lists it.
  const size = withComment && set.size !== undefined ? `size ${set.size} ; ` : '';
  let key = set.typeof !== undefined ? `typeof ${set.typeof}` : `type ${(set.type ?? []).join(' . ')}`;
  if (set.kind === 'map') {
    key +=
      set.valueTypeof !== undefined ? ` : ${set.valueTypeof}` : ` : ${(set.valueType ?? []).join(' . ')}`;
  }
  let body = `${size}${key} ; `;
  if (set.flags !== undefined && set.flags.length > 0) body += `flags ${set.flags.join(',')} ; `;
  if (set.timeout !== undefined) body += `timeout ${set.timeout} ; `;
  if (set.counter === true) body += 'counter ; ';
  if (withComment) body += comment(set.comment);
  return `{ ${body}}`;
}

export function renderSet(verb: Verb, set: NftSet | NftMap): string {
  const head = `${verb} ${set.kind} ${where(set)} ${set.name}`;
  if (verb !== 'add' && verb !== 'create') return head;
  return `${head} ${setBody(set, true)}`;
}

/** The element's key as nft prints it; the Fake uses it as the element's identity. */
export function renderKey(element: Pick<Element, 'key'>): string {
  return element.key;
}

/** The element's value as nft prints it; '' for a set element. */
export function renderValue(element: Pick<Element, 'value'>): string {
  return element.value ?? '';
}

/** One element inside the braces of an `element` command: key, timeout, expiry, comment and value. */
export function renderElementItem(verb: Verb, element: Element): string {
  let item = renderKey(element);
  if (verb === 'delete') return item;
  // nft 1.0.6 wants an element's options between key and value: `{ k timeout 1s comment "c" : v }`.
  if (element.timeout !== undefined) item += ` timeout ${element.timeout}`;
  if (element.expires !== undefined) item += ` expires ${element.expires}`;
  if (element.comment !== undefined) item += ` comment "${element.comment}"`;
  if (element.value !== undefined) item += ` : ${renderValue(element)}`;
  return item;
}

export function renderElement(verb: Verb, element: Element): string {
  return `${verb} element ${where(element)} ${element.set} { ${renderElementItem(verb, element)} }`;
}

/** Several elements of one set under one verb: one nft command, as nft parses them far faster. */
export function renderElements(verb: Verb, elements: readonly Element[]): string {
  const first = elements[0]!;
  return `${verb} element ${where(first)} ${first.set} { ${elements.map((e) => renderElementItem(verb, e)).join(', ')} }`;
}

/** Renders one object under one verb; `destroy` is not handled here (see renderOperation). */
export function renderObject(verb: Verb, obj: NftObject): string {
  switch (obj.kind) {
    case 'table':
      return renderTable(verb, obj);
    case 'chain':
      return renderChain(verb, obj);
    case 'rule':
      return renderRule(verb, obj);
    case 'set':
    case 'map':
      return renderSet(verb, obj);
    case 'element':
      return renderElement(verb, obj);
  }
}

/**
 * Renders one operation as the lines nft reads. nft 1.0.6 has no `destroy` command, so
 * destroy is `add` (a no-op when the object exists) then `delete`, which removes it either
 * way within the same atomic transaction. The `add` carries no comment and no base-chain
 * spec, so it matches the existing object whatever those are; a set or map needs its key
 * type to be created, and an existing one with a different type fails with "File exists".
 */
export function renderOperation(op: Operation): string[] {
  const { verb, object } = op;
  if (verb !== 'destroy') return [renderObject(verb, object)];
  let add: string;
  switch (object.kind) {
    case 'table':
      add = `add table ${where(object)}`;
      break;
    case 'chain':
      add = `add chain ${where(object)} ${object.name}`;
      break;
    case 'set':
    case 'map':
      add = `add ${object.kind} ${where(object)} ${object.name} ${setBody(object, false)}`;
      break;
    default:
      // Transaction refuses to queue these; rendering them would be a lie.
      throw new Error(`destroy is not supported for ${object.kind}`);
  }
  return [add, renderObject('delete', object)];
}
