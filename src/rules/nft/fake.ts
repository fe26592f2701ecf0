/**
 * An in-memory nft, after knftables' fake.go: it applies a transaction to a copy of its
 * tables and commits all or nothing, with the kernel's answers to the mistakes a compiler
 * can make (missing objects, duplicates, dangling goto/jump/@set references). `dump()` is a
 * sorted, canonical `nft -f` script of the whole state that tests compare as text, and that
 * real nft loads as it is.
 */
import { ErrorCodes, ProxyError, type ErrorCode } from '../../errors.js';
import type { ListOptions, Nft } from './exec.js';
import {
  renderChain,
  renderElement,
  renderKey,
  renderOperation,
  renderPriority,
  renderRule,
  renderSet,
  renderTable,
  renderValue,
} from './render.js';
import type { Transaction } from './transaction.js';
import { compareStrings as byString } from '../../util/sorted-index.js';
import type { Chain, Element, NftFamily, NftMap, NftSet, Operation, Rule, Table } from './types.js';
import { durationMs } from './validate.js';

interface FakeChain {
  spec: Chain;
  rules: Rule[];
}

interface FakeSet {
  spec: NftSet | NftMap;
  /** Keyed by the rendered key, which is how nft tells elements apart. */
  elements: Map<string, Element>;
}

interface FakeTable {
  spec: Table;
  chains: Map<string, FakeChain>;
  /** Sets and maps share one namespace in nft (a map is a set with data). */
  sets: Map<string, FakeSet>;
}

type State = Map<string, FakeTable>;

const tableKey = (family: NftFamily, name: string): string => `${family} ${name}`;

function clone(state: State): State {
  const copy: State = new Map();
  for (const [key, t] of state) {
    const chains = new Map<string, FakeChain>();
    for (const [name, c] of t.chains) chains.set(name, { spec: c.spec, rules: [...c.rules] });
    const sets = new Map<string, FakeSet>();
    for (const [name, s] of t.sets) sets.set(name, { spec: s.spec, elements: new Map(s.elements) });
    copy.set(key, { spec: t.spec, chains, sets });
  }
  return copy;
}

const NAME = '[A-Za-z_][A-Za-z0-9_.-]*';

/** The chains and sets a rule or a map value names. Quoted strings (interface names) are skipped. */
export function references(text: string): { chains: string[]; sets: string[] } {
  const bare = text.replace(/"[^"]*"/g, '""');
  const chains = [...bare.matchAll(new RegExp(`\\b(?:goto|jump)\\s+(${NAME})`, 'g'))].map((m) => m[1] ?? '');
  const sets = [...bare.matchAll(new RegExp(`@(${NAME})`, 'g'))].map((m) => m[1] ?? '');
  return { chains, sets };
}

/** What distinguishes two definitions of the same set: re-adding it with another spec fails. */
function setSpec(s: NftSet | NftMap): string {
  const value = s.kind === 'map' ? `: ${s.valueTypeof ?? ''}|${(s.valueType ?? []).join('.')}` : '';
  const flags = [...(s.flags ?? [])].sort().join(',');
  return `${s.kind} ${s.typeof ?? ''}|${(s.type ?? []).join('.')} ${value} ${flags} ${s.timeout ?? ''}${s.counter === true ? ' counter' : ''}`;
}

function chainSpec(c: Chain): string {
  return c.hook === undefined ? '' : `${c.type} ${c.hook} ${renderPriority(c.priority ?? '')}`;
}

/** The fields of an element's key or value text. */
const fields = (text: string): string[] => text.split(' . ');

/** How many fields a key or value spec has, counting concatenation at the top level. */
function arity(types: string[] | undefined, typeofExpr: string | undefined): number | undefined {
  if (types !== undefined) return types.length;
  if (typeofExpr !== undefined) return typeofExpr.split(' . ').length;
  return undefined;
}

/**
 * One of nft 1.0.6's known failures: it fails to add a rule that uses a data map whose value `typeof` mentions `th`
 * (e.g. `: ip daddr . th dport`) once that map exists in the kernel: it rebuilds the typeof
 * from the kernel's copy and answers "internal:0:0-0: Error: conflicting protocols specified:
 * ip vs. th". The same rule is fine in the transaction that creates the map, and a value
 * typeof of `ip daddr . tcp dport` (the same data types) is fine always.
 */
function hitsThValueQuirk(s: FakeSet): boolean {
  return (
    s.spec.kind === 'map' && s.spec.valueTypeof !== undefined && /(^|[\s.])th\s/.test(s.spec.valueTypeof)
  );
}

/** Applies one operation to a state, throwing the error nft would report. */
class Applier {
  /** Maps as they were before the transaction: what nft 1.0.6 reads back from the kernel. */
  private readonly preexisting = new Set<FakeSet>();

  constructor(
    private readonly state: State,
    private readonly quirks: boolean,
  ) {
    for (const t of state.values()) for (const s of t.sets.values()) this.preexisting.add(s);
  }

  fail(code: ErrorCode, why: string): never {
    throw new ProxyError(code, why);
  }

  table(family: NftFamily, name: string): FakeTable {
    return (
      this.state.get(tableKey(family, name)) ??
      this.fail(ErrorCodes.NFT_NO_SUCH_OBJECT, `table ${family} ${name} does not exist`)
    );
  }

  chain(t: FakeTable, name: string): FakeChain {
    return t.chains.get(name) ?? this.fail(ErrorCodes.NFT_NO_SUCH_OBJECT, `chain ${name} does not exist`);
  }

  set(t: FakeTable, name: string, kind?: 'set' | 'map'): FakeSet {
    const s = t.sets.get(name);
    // `flush set` on a map is "No such file or directory" in nft: the kind is part of the name.
    if (s === undefined || (kind !== undefined && s.spec.kind !== kind)) {
      this.fail(ErrorCodes.NFT_NO_SUCH_OBJECT, `${kind ?? 'set'} ${name} does not exist`);
    }
    return s;
  }

  /** Rules and map values must name chains and sets that exist already: nft resolves them in order. */
  checkRefs(t: FakeTable, text: string, what: string): void {
    const refs = references(text);
    for (const c of refs.chains) {
      if (!t.chains.has(c))
        this.fail(ErrorCodes.NFT_DANGLING_REFERENCE, `${what} jumps to missing chain ${c}`);
    }
    for (const s of refs.sets) {
      if (!t.sets.has(s))
        this.fail(ErrorCodes.NFT_DANGLING_REFERENCE, `${what} uses missing set or map @${s}`);
    }
  }

  checkThValueQuirk(t: FakeTable, rule: Rule): void {
    for (const name of references(rule.rule).sets) {
      const s = t.sets.get(name);
      if (s !== undefined && this.preexisting.has(s) && hitsThValueQuirk(s)) {
        this.fail(
          ErrorCodes.NFT_REJECTED,
          `nft 1.0.6 cannot add a rule using map ${name} (value typeof mentions th) once the map exists: ` +
            'conflicting protocols specified; create the map in the same transaction, or type its value with tcp dport',
        );
      }
    }
  }

  /** Who in the table refers to chain or set `name`, for the kernel's "Device or resource busy". */
  referrer(t: FakeTable, name: string, kind: 'chains' | 'sets'): string | undefined {
    for (const [chainName, c] of t.chains) {
      if (c.rules.some((r) => references(r.rule)[kind].includes(name))) return `a rule in chain ${chainName}`;
    }
    if (kind === 'chains') {
      for (const [setName, s] of t.sets) {
        if (s.spec.kind !== 'map') continue;
        for (const e of s.elements.values()) {
          if (references(e.value ?? '').chains.includes(name)) return `an element of map ${setName}`;
        }
      }
    }
    return undefined;
  }

  apply(op: Operation): void {
    const { verb, object: o } = op;
    const key = tableKey(o.family, o.table);
    if (o.kind === 'table') {
      const exists = this.state.has(key);
      if (verb === 'add' || verb === 'create') {
        if (exists && verb === 'create') this.fail(ErrorCodes.NFT_EXISTS, `table ${key} exists`);
        if (!exists) this.state.set(key, { spec: o, chains: new Map(), sets: new Map() });
      } else if (verb === 'delete' || verb === 'destroy') {
        if (!exists && verb === 'delete')
          this.fail(ErrorCodes.NFT_NO_SUCH_OBJECT, `table ${key} does not exist`);
        this.state.delete(key);
      }
      return;
    }
    const t = this.table(o.family, o.table);
    switch (o.kind) {
      case 'chain':
        return this.applyChain(verb, t, o);
      case 'rule':
        this.checkRefs(t, o.rule, `rule in chain ${o.chain}`);
        if (this.quirks) this.checkThValueQuirk(t, o);
        this.chain(t, o.chain).rules.push(o);
        return;
      case 'set':
      case 'map':
        return this.applySet(verb, t, o);
      case 'element':
        return this.applyElement(verb, t, o);
    }
  }

  applyChain(verb: Operation['verb'], t: FakeTable, o: Chain): void {
    const existing = t.chains.get(o.name);
    switch (verb) {
      case 'add':
      case 'create':
        if (existing === undefined) {
          t.chains.set(o.name, { spec: o, rules: [] });
        } else if (verb === 'create') {
          this.fail(ErrorCodes.NFT_EXISTS, `chain ${o.name} exists`);
        } else if (o.hook !== undefined && chainSpec(o) !== chainSpec(existing.spec)) {
          this.fail(ErrorCodes.NFT_EXISTS, `chain ${o.name} exists with another type, hook or priority`);
        }
        return;
      case 'flush':
        this.chain(t, o.name).rules = [];
        return;
      case 'delete':
      case 'destroy': {
        if (existing === undefined) {
          if (verb === 'delete') this.fail(ErrorCodes.NFT_NO_SUCH_OBJECT, `chain ${o.name} does not exist`);
          return;
        }
        if (existing.rules.length > 0)
          this.fail(ErrorCodes.NFT_REJECTED, `chain ${o.name} is busy: it has rules`);
        const by = this.referrer(t, o.name, 'chains');
        if (by !== undefined)
          this.fail(ErrorCodes.NFT_REJECTED, `chain ${o.name} is busy: ${by} jumps to it`);
        t.chains.delete(o.name);
        return;
      }
    }
  }

  applySet(verb: Operation['verb'], t: FakeTable, o: NftSet | NftMap): void {
    const existing = t.sets.get(o.name);
    switch (verb) {
      case 'add':
      case 'create':
        if (existing === undefined) {
          t.sets.set(o.name, { spec: o, elements: new Map() });
        } else if (verb === 'create') {
          this.fail(ErrorCodes.NFT_EXISTS, `${existing.spec.kind} ${o.name} exists`);
        } else if (setSpec(o) !== setSpec(existing.spec)) {
          this.fail(ErrorCodes.NFT_EXISTS, `${existing.spec.kind} ${o.name} exists with another definition`);
        }
        return;
      case 'flush':
        this.set(t, o.name, o.kind).elements = new Map();
        return;
      case 'delete':
      case 'destroy': {
        if (existing === undefined) {
          if (verb === 'delete')
            this.fail(ErrorCodes.NFT_NO_SUCH_OBJECT, `${o.kind} ${o.name} does not exist`);
          return;
        }
        if (verb === 'delete' && existing.spec.kind !== o.kind) {
          this.fail(ErrorCodes.NFT_NO_SUCH_OBJECT, `${o.kind} ${o.name} does not exist`);
        }
        // destroy is rendered `add` + `delete`: the add fails on another definition of the name.
        if (verb === 'destroy' && setSpec(o) !== setSpec(existing.spec)) {
          this.fail(ErrorCodes.NFT_EXISTS, `${existing.spec.kind} ${o.name} exists with another definition`);
        }
        const by = this.referrer(t, o.name, 'sets');
        if (by !== undefined)
          this.fail(ErrorCodes.NFT_REJECTED, `${o.kind} ${o.name} is busy: ${by} uses it`);
        t.sets.delete(o.name);
        return;
      }
    }
  }

  applyElement(verb: Operation['verb'], t: FakeTable, o: Element): void {
    const s = this.set(t, o.set);
    const k = renderKey(o);
    const existing = s.elements.get(k);
    if (verb === 'delete') {
      if (existing === undefined)
        this.fail(ErrorCodes.NFT_NO_SUCH_OBJECT, `element { ${k} } of ${o.set} does not exist`);
      s.elements.delete(k);
      return;
    }
    const spec = s.spec;
    const keyArity = arity(spec.type, spec.typeof);
    const keyFields = fields(o.key).length;
    if (keyArity !== undefined && keyFields !== keyArity) {
      this.fail(
        ErrorCodes.NFT_REJECTED,
        `element { ${k} } has ${keyFields} key fields, ${o.set} has ${keyArity}`,
      );
    }
    if (spec.kind === 'map') {
      if (o.value === undefined)
        this.fail(ErrorCodes.NFT_REJECTED, `element { ${k} } of map ${o.set} has no value`);
      const valueArity = arity(spec.valueType, spec.valueTypeof);
      // A verdict such as `goto x` is one field however many words it has.
      const valueFields = fields(o.value).length;
      if (valueArity !== undefined && spec.valueType?.[0] !== 'verdict' && valueFields !== valueArity) {
        this.fail(
          ErrorCodes.NFT_REJECTED,
          `element { ${k} } has ${valueFields} value fields, ${o.set} has ${valueArity}`,
        );
      }
      this.checkRefs(t, o.value, `element { ${k} } of map ${o.set}`);
    } else if (o.value !== undefined) {
      this.fail(ErrorCodes.NFT_REJECTED, `element { ${k} } of set ${o.set} has a value`);
    }
    if (o.timeout !== undefined || o.expires !== undefined) {
      // The kernel: "Invalid argument" without the flag, "Numerical result out of range" for
      // an expiry beyond the element's (or else the set's) timeout.
      if (!spec.flags?.includes('timeout'))
        this.fail(ErrorCodes.NFT_REJECTED, `element { ${k} } has a timeout, ${o.set} has no flags timeout`);
      const limit = o.timeout ?? spec.timeout;
      if (o.expires !== undefined && (limit === undefined || durationMs(o.expires) > durationMs(limit)))
        this.fail(ErrorCodes.NFT_REJECTED, `element { ${k} } expires after its timeout`);
    }
    // nft 1.0.6 answers "File exists" to any `create element` into an interval set created in
    // the same transaction (its implicit interval ends collide); into an older set it works.
    if (this.quirks && verb === 'create' && spec.flags?.includes('interval') && !this.preexisting.has(s)) {
      this.fail(
        ErrorCodes.NFT_EXISTS,
        `nft 1.0.6 cannot create elements in interval set ${o.set} created in the same transaction`,
      );
    }
    if (existing === undefined) {
      // The kernel: "Too many open files in system" (ENFILE) past a set's size.
      if (spec.size !== undefined && s.elements.size >= spec.size)
        this.fail(ErrorCodes.NFT_SET_FULL, `element { ${k} } would take ${o.set} past its size ${spec.size}`);
      s.elements.set(k, o);
      return;
    }
    if (verb === 'create') this.fail(ErrorCodes.NFT_EXISTS, `element { ${k} } of ${o.set} exists`);
    // The kernel (6.x) answers "File exists" when an add would change an element's value.
    if (renderValue(existing) !== renderValue(o)) {
      this.fail(ErrorCodes.NFT_EXISTS, `element { ${k} } of ${o.set} exists with another value`);
    }
    // Kernel 6.18 takes the new timeout and expiry of an element added again.
    if (o.timeout !== undefined || o.expires !== undefined) s.elements.set(k, o);
  }

  /** After the whole transaction: nothing may point at a chain or set that is gone. */
  checkAll(): void {
    for (const t of this.state.values()) {
      for (const [name, c] of t.chains) {
        for (const r of c.rules) this.checkRefs(t, r.rule, `rule in chain ${name}`);
      }
      for (const [name, s] of t.sets) {
        if (s.spec.kind !== 'map') continue;
        for (const e of s.elements.values()) this.checkRefs(t, e.value ?? '', `element of map ${name}`);
      }
    }
  }
}

/**
 * A set as the dump shows it: without its size, which is the capacity the sync that created it
 * chose (set-capacity.ts: full syncs size large sets, partial syncs do not), not its content.
 */
function withoutSize(spec: NftSet | NftMap): NftSet | NftMap {
  if (spec.size === undefined) return spec;
  const copy = { ...spec };
  delete copy.size;
  return copy;
}

function dumpTable(t: FakeTable): string {
  const lines = [renderTable('add', t.spec)];
  const chains = [...t.chains.keys()].sort(byString);
  const sets = [...t.sets.keys()].sort(byString);
  // Definitions first, then rules and elements, so that the dump loads with `nft -f` as it is.
  for (const name of chains) lines.push(renderChain('add', t.chains.get(name)!.spec));
  for (const name of sets) lines.push(renderSet('add', withoutSize(t.sets.get(name)!.spec)));
  for (const name of chains) for (const r of t.chains.get(name)!.rules) lines.push(renderRule('add', r));
  for (const name of sets) {
    const elements = t.sets.get(name)!.elements;
    for (const k of [...elements.keys()].sort(byString)) lines.push(renderElement('add', elements.get(k)!));
  }
  return lines.map((l) => `${l}\n`).join('');
}

/** nft's JSON prints durations in whole seconds. */
const seconds = (d: string): number => Math.floor(durationMs(d) / 1000);

/** A key or value as nft's JSON has it: numbers as numbers, several fields as a concat. */
function jsonData(fields: readonly string[]): unknown {
  const data = fields.map((f) => {
    const verdict = /^(goto|jump) (\S+)$/.exec(f);
    if (verdict) return { [verdict[1]!]: { target: verdict[2] } };
    return /^\d+$/.test(f) ? Number(f) : f;
  });
  return data.length === 1 ? data[0] : { concat: data };
}

/** One `[key, value]` of a map listing; a key with an expiry or comment is wrapped in `elem`. */
function jsonElement(spec: NftSet | NftMap, el: Element): [unknown, unknown] {
  const val = jsonData(fields(el.key));
  // An element given no timeout has the set's, which nft does not print; it expires all the same.
  const expires = el.expires ?? el.timeout ?? (spec.flags?.includes('timeout') ? spec.timeout : undefined);
  const key =
    expires === undefined && el.comment === undefined
      ? val
      : {
          elem: {
            val,
            ...(el.timeout === undefined ? {} : { timeout: seconds(el.timeout) }),
            ...(expires === undefined ? {} : { expires: seconds(expires) }),
            ...(el.comment === undefined ? {} : { comment: el.comment }),
          },
        };
  return [key, jsonData(el.value === undefined ? [] : fields(el.value))];
}

/** Options for FakeNft. */
export interface FakeNftOptions {
  /** What `version()` reports; default '1.0.6'. */
  version?: string;
  /**
   * Reproduce nft 1.0.6's known failures (see hitsThValueQuirk), so that code tested
   * against the Fake does not fail on this machine's nft; default true.
   */
  nft106Quirks?: boolean;
}

/** An Nft that keeps its tables in memory; see the file comment for the semantics. */
export class FakeNft implements Nft {
  #state: State = new Map();
  #failNext: ProxyError | undefined;
  #refuse: ((op: Operation) => string | undefined) | undefined;
  readonly #version: string;
  readonly #quirks: boolean;
  /** Every transaction passed to `run` (valid ones, whether they committed or not), in order. */
  readonly transactions: Transaction[] = [];

  constructor(opts: FakeNftOptions = {}) {
    this.#version = opts.version ?? '1.0.6';
    this.#quirks = opts.nft106Quirks ?? true;
  }

  /** Makes the next `run` fail with `err` and change nothing, as a kernel refusal would. */
  failNext(err: ProxyError = new ProxyError(ErrorCodes.NFT_REJECTED, 'injected failure')): void {
    this.#failNext = err;
  }

  /**
   * From now on, every transaction (run or check) with an operation for which `why` returns a
   * reason is refused with it, changing nothing: a stand-in for what the kernel refuses and the
   * Fake does not model (e.g. overlapping intervals). `undefined` stops refusing.
   */
  refuse(why: ((op: Operation) => string | undefined) | undefined): void {
    this.#refuse = why;
  }

  async run(tx: Transaction): Promise<void> {
    if (tx.err !== undefined) throw tx.err;
    this.transactions.push(tx);
    if (this.#failNext !== undefined) {
      const err = this.#failNext;
      this.#failNext = undefined;
      throw err;
    }
    this.#state = this.#apply(tx);
  }

  async check(tx: Transaction): Promise<void> {
    if (tx.err !== undefined) throw tx.err;
    this.#apply(tx);
  }

  async list(family: NftFamily, table: string): Promise<string> {
    const t = this.#state.get(tableKey(family, table));
    return t === undefined ? '' : dumpTable(t);
  }

  /**
   * The map's elements as `nft -j list map` shows them. The Fake's clock stands still: an
   * element expires in its `expires`, else its full timeout. The packet path fills no map here;
   * a test stands in for it by adding elements with a timeout.
   */
  async listMapJson(
    family: NftFamily,
    table: string,
    map: string,
    { kind = 'map' }: ListOptions = {},
  ): Promise<string> {
    const s = this.#state.get(tableKey(family, table))?.sets.get(map);
    if (s === undefined || s.spec.kind !== kind) return '';
    const { spec } = s;
    const elem = [...s.elements.keys()]
      .sort(byString)
      .map((k) => jsonElement(spec, s.elements.get(k)!))
      // A set's element is its key alone.
      .map((pair) => (kind === 'set' ? pair[0] : pair));
    const timeout = spec.timeout === undefined ? {} : { timeout: seconds(spec.timeout) };
    return JSON.stringify({
      nftables: [
        { metainfo: { version: this.#version } },
        { [kind]: { family, name: map, table, ...timeout, elem } },
      ],
    });
  }

  async version(): Promise<string> {
    return this.#version;
  }

  /** The whole state as a canonical script: tables by family and name, objects by name, elements by key. */
  dump(): string {
    return [...this.#state.keys()]
      .sort(byString)
      .map((k) => dumpTable(this.#state.get(k)!))
      .join('');
  }

  /** Applies tx to a copy and returns it; the live state is untouched if anything fails. */
  #apply(tx: Transaction): State {
    const next = clone(this.#state);
    const applier = new Applier(next, this.#quirks);
    let line = 1;
    for (const op of tx.operations) {
      try {
        const refused = this.#refuse?.(op);
        if (refused !== undefined) throw new ProxyError(ErrorCodes.NFT_REJECTED, refused);
        applier.apply(op);
      } catch (err) {
        if (!(err instanceof ProxyError)) throw err;
        const text = renderOperation(op).join(' / ');
        throw new ProxyError(err.code, `line ${line}: ${text}: ${err.message}`);
      }
      line += op.verb === 'destroy' ? 2 : 1;
    }
    applier.checkAll();
    return next;
  }
}
