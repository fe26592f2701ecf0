/**
 * Checks an operation before it is queued, so that no object can change the meaning of the
 * script it is rendered into (STYLE.md, habit 6) and nft's parse errors surface as a coded
 * error with the object's name instead of a caret under line 40,000 of stdin.
 */
import type { Chain, Element, NftMap, NftObject, NftSet, Rule, Verb } from './types.js';

/**
 * A name nft 1.0.6 parses as one identifier: a letter or `_` first, then letters, digits,
 * `_`, `.` and `-`. A leading digit is read as a number. 255 bytes is the kernel's limit.
 */
export const NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_.-]{0,254}$/;

/**
 * Words nft 1.0.6 reads as keywords where a chain, set or table name is expected (found by
 * `nft -c` of `add chain ip t WORD`; `filter`, `nat`, `daddr` and `prerouting` are fine).
 * Not exhaustive: nft has hundreds of keywords; these are the ones a name could plausibly be.
 */
export const RESERVED_NAMES: ReadonlySet<string> = new Set(
  (
    'table chain rule set map element elements flowtable counter quota limit log ct meta ip ip6 inet arp ' +
    'bridge netdev tcp udp udplite sctp dccp icmp icmpv6 igmp ah esp comp th ether vlan accept drop ' +
    'continue return jump goto queue reject dnat snat masquerade redirect notrack type typeof hook ' +
    'priority policy flags timeout comment add create delete insert replace flush list reset rename ' +
    'define redefine undefine include describe export import monitor handle index position vmap random ' +
    'numgen jhash symhash fib rt socket osf tproxy synproxy secmark mark iifname oifname iif oif and or ' +
    'xor lshift rshift not exists missing interval constant dynamic size ruleset auto-merge devices device ' +
    'offload dup fwd flow ipsec ecn frag hbh rt0 mh dst srh exthdr time day hour cpu pkttype skuid skgid ' +
    'rtclassid ibrname obrname iiftype oiftype iifgroup oifgroup all destroy'
  ).split(' '),
);

const FAMILIES = new Set(['ip', 'ip6', 'inet']);
const CHAIN_TYPES = new Set(['filter', 'nat', 'route']);
const HOOKS = new Set(['prerouting', 'input', 'forward', 'output', 'postrouting']);
const SET_FLAGS = new Set(['constant', 'interval', 'timeout', 'dynamic']);
/** A standard priority name with an optional offset, or a plain integer. */
const PRIORITY = /^(?:(?:raw|mangle|dstnat|filter|security|srcnat|out)(?:\s*[+-]\s*\d+)?|-?\d+)$/;
/** nft refuses longer comments: "comment too long, 128 characters maximum allowed". */
export const MAX_COMMENT = 128;
/** A data type name such as `ipv4_addr`, `inet_service`, `verdict`. */
const TYPE_NAME = /^[a-z][a-z0-9_]*$/;
/** Duration such as `3h`, `10800s`, `1h30m`. */
const DURATION = /^(?:\d+(?:ms|s|m|h|d))+$/;
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Milliseconds in a duration that matches DURATION (`1h30m` → 5,400,000). */
export function durationMs(text: string): number {
  let ms = 0;
  for (const [, n, unit] of text.matchAll(/(\d+)(ms|s|m|h|d)/g)) ms += Number(n) * UNIT_MS[unit!]!;
  return ms;
}

/**
 * Characters that would end an object line or open another command: a newline ends the
 * command, `;` separates commands, `#` starts a comment, and `"` would close a string early.
 * Rule text may quote interface names, so it is allowed `"`; `{ } ,` are allowed there too.
 */
const LINE_BREAKERS = /[\n\r;#]/;
/** Element keys and values sit inside `{ ... }`, where `,` and `}` end the element. */
const FIELD_BREAKERS = /[\n\r;#"{},]/;

function checkName(what: string, name: unknown): string | undefined {
  if (typeof name !== 'string' || !NAME_PATTERN.test(name)) {
    return `${what} ${JSON.stringify(name)} is not a valid nft name (letters, digits, _ . -; a letter or _ first)`;
  }
  if (RESERVED_NAMES.has(name)) return `${what} ${JSON.stringify(name)} is an nft keyword`;
  return undefined;
}

function checkComment(comment: unknown): string | undefined {
  if (comment === undefined) return undefined;
  if (typeof comment !== 'string') return 'comment must be a string';
  if (/["\n\r\\]/.test(comment))
    return `comment ${JSON.stringify(comment)} contains a quote, backslash or newline`;
  if (Buffer.byteLength(comment) > MAX_COMMENT) return `comment is longer than ${MAX_COMMENT} bytes`;
  return undefined;
}

function checkChain(verb: Verb, chain: Chain): string | undefined {
  const spec = [chain.type, chain.hook, chain.priority].filter((v) => v !== undefined).length;
  if (spec !== 0 && spec !== 3)
    return `chain ${chain.name}: type, hook and priority go together (all or none)`;
  if (chain.type !== undefined && !CHAIN_TYPES.has(chain.type))
    return `chain ${chain.name}: bad type ${chain.type}`;
  if (chain.hook !== undefined && !HOOKS.has(chain.hook))
    return `chain ${chain.name}: bad hook ${chain.hook}`;
  if (chain.priority !== undefined) {
    const p = chain.priority;
    const ok = typeof p === 'number' ? Number.isInteger(p) : PRIORITY.test(p.trim());
    if (!ok) return `chain ${chain.name}: bad priority ${JSON.stringify(p)}`;
  }
  if (verb === 'flush' || verb === 'delete' || verb === 'destroy') return undefined;
  return checkComment(chain.comment);
}

function checkRule(verb: Verb, rule: Rule): string | undefined {
  if (verb !== 'add') return `rules can only be added (chains are flushed, not edited): ${verb} rule`;
  const bad = checkName('chain', rule.chain);
  if (bad) return bad;
  if (typeof rule.rule !== 'string' || rule.rule.trim() === '') return `rule in chain ${rule.chain} is empty`;
  if (LINE_BREAKERS.test(rule.rule)) return `rule ${JSON.stringify(rule.rule)} contains a newline, ; or #`;
  return checkComment(rule.comment);
}

function checkTypeList(what: string, types: string[] | undefined): string | undefined {
  if (types === undefined) return undefined;
  if (!Array.isArray(types) || types.length === 0) return `${what} is empty`;
  const bad = types.find((t) => typeof t !== 'string' || !TYPE_NAME.test(t));
  return bad === undefined ? undefined : `${what} has a bad type name ${JSON.stringify(bad)}`;
}

function checkTypeof(what: string, expr: string | undefined): string | undefined {
  if (expr === undefined) return undefined;
  if (typeof expr !== 'string' || expr.trim() === '' || /[\n\r;#"{}:,]/.test(expr)) {
    return `${what} ${JSON.stringify(expr)} is not a typeof expression`;
  }
  return undefined;
}

function checkSet(verb: Verb, set: NftSet | NftMap): string | undefined {
  const bad = checkName(set.kind, set.name);
  if (bad) return bad;
  // delete and flush name the set only; add, create and destroy (rendered as add + delete) define it.
  if (verb === 'delete' || verb === 'flush') return undefined;
  const id = `${set.kind} ${set.name}`;
  if ((set.type === undefined) === (set.typeof === undefined)) return `${id}: exactly one of type and typeof`;
  const key = checkTypeList(`${id} type`, set.type) ?? checkTypeof(`${id} typeof`, set.typeof);
  if (key) return key;
  if (set.kind === 'map') {
    if ((set.valueType === undefined) === (set.valueTypeof === undefined)) {
      return `${id}: exactly one of valueType and valueTypeof`;
    }
    const value =
      checkTypeList(`${id} valueType`, set.valueType) ?? checkTypeof(`${id} valueTypeof`, set.valueTypeof);
    if (value) return value;
  } else if ('valueType' in set || 'valueTypeof' in set) {
    return `${id}: a set has no value type (use kind 'map')`;
  }
  if (set.flags !== undefined) {
    const flag = set.flags.find((f) => !SET_FLAGS.has(f));
    if (flag !== undefined) return `${id}: bad flag ${JSON.stringify(flag)}`;
  }
  if (set.timeout !== undefined && !DURATION.test(set.timeout)) {
    return `${id}: bad timeout ${JSON.stringify(set.timeout)}`;
  }
  if (set.counter !== undefined && typeof set.counter !== 'boolean')
    return `${id}: counter must be a boolean`;
  // The kernel's size is a u32; 0 would read as "no size" and is never meant.
  if (set.size !== undefined && !(Number.isInteger(set.size) && set.size > 0 && set.size <= 0xffff_ffff))
    return `${id}: bad size ${JSON.stringify(set.size)}`;
  return checkComment(set.comment);
}

/**
 * A blank field in a key or value text: blank at the start, between two ' . ' separators or
 * at the end ('', 'a . ', 'a .  . b'), which nft would reject as a syntax error far from its cause.
 */
const BLANK_FIELD = /(?:^| \. )\s*(?: \. |$)/;

/** Checks a key or value text: its fields joined with ' . ', none blank, none with a breaker. */
function checkFields(set: string, part: 'key' | 'value', text: unknown): string | undefined {
  if (typeof text !== 'string' || text.trim() === '') return `element of ${set}: ${part} is empty`;
  if (FIELD_BREAKERS.test(text) || BLANK_FIELD.test(text)) {
    return `element of ${set}: ${part} ${JSON.stringify(text)} has an empty field or contains one of newline ; # " { } ,`;
  }
  return undefined;
}

/**
 * Set names already found valid. Every element names its set, a full sync queues 100,000s of
 * elements of a few dozen sets: the name is checked once per set, not once per element.
 */
const goodSetNames = new Set<string>();

/** A duration an element may carry: nft reads 0 as "not given" (the set's full timeout). */
function checkDuration(where: string, what: string, d: unknown): string | undefined {
  if (typeof d !== 'string' || !DURATION.test(d) || durationMs(d) === 0)
    return `${where}: bad ${what} ${JSON.stringify(d)} (a positive duration such as 600s)`;
  return undefined;
}

function checkElement(verb: Verb, element: Element): string | undefined {
  if (verb !== 'add' && verb !== 'create' && verb !== 'delete') return `elements cannot be ${verb}ed`;
  if (!goodSetNames.has(element.set)) {
    const bad = checkName('set', element.set);
    if (bad) return bad;
    goodSetNames.add(element.set);
  }
  // Messages are made only for a failure: this runs once per element of a full sync.
  const key = checkFields(element.set, 'key', element.key);
  if (key) return key;
  // A delete names the key only; a value given with it is ignored by render.
  if (verb === 'delete') return undefined;
  if (element.value !== undefined) {
    const value = checkFields(element.set, 'value', element.value);
    if (value) return value;
  }
  if (element.timeout === undefined && element.expires === undefined) return checkComment(element.comment);
  const where = `element of ${element.set}`;
  if (element.timeout !== undefined) {
    const bad = checkDuration(where, 'timeout', element.timeout);
    if (bad) return bad;
  }
  if (element.expires !== undefined) {
    const bad = checkDuration(where, 'expires', element.expires);
    if (bad) return bad;
  }
  // The kernel answers "Numerical result out of range".
  if (element.timeout !== undefined && element.expires !== undefined) {
    if (durationMs(element.expires) > durationMs(element.timeout))
      return `${where}: expires ${element.expires} is longer than its timeout ${element.timeout}`;
  }
  return checkComment(element.comment);
}

/** Returns why `verb object` cannot be queued, or undefined when it can. */
export function validateOperation(verb: Verb, obj: NftObject): string | undefined {
  if (obj === null || typeof obj !== 'object') return 'object is not an object';
  if (!FAMILIES.has(obj.family)) return `family ${JSON.stringify(obj.family)} is not ip, ip6 or inet`;
  const table = checkName('table', obj.table);
  if (table) return table;
  if (verb === 'flush' && obj.kind !== 'chain' && obj.kind !== 'set' && obj.kind !== 'map') {
    return `flush applies to chains, sets and maps, not ${obj.kind}`;
  }
  switch (obj.kind) {
    case 'table':
      return verb === 'add' || verb === 'create' ? checkComment(obj.comment) : undefined;
    case 'chain':
      return checkName('chain', obj.name) ?? checkChain(verb, obj);
    case 'rule':
      return checkRule(verb, obj);
    case 'set':
    case 'map':
      return checkSet(verb, obj);
    case 'element':
      return checkElement(verb, obj);
    default:
      return `unknown object kind ${JSON.stringify((obj as { kind?: unknown }).kind)}`;
  }
}
