/**
 * When nft refuses a sync, find the Services whose rules it refuses, so that they can be held
 * out and everything else applied: one bad Service costs only itself (issue #11). The search
 * only asks an injected `check` whether a transaction would commit (the daemon passes
 * `nft -c`, which touches nothing), so it runs the same against the Fake and the kernel.
 */
import { ErrorCodes, hasCode } from '../errors.js';
import { portIndex } from '../model/state-builder.js';
import type { ProxyState } from '../model/types.js';
import { compareStrings } from '../util/sorted-index.js';
import type { Transaction } from './nft/transaction.js';
import type { Element } from './nft/types.js';
import type { Ruleset } from './ruleset.js';

/** What nft answered to one check: undefined when it would commit, else why not. */
export type Verdict = string | undefined;

export interface Isolation {
  /** The Services to hold out, each with the refusal it met, in key order. */
  culprits: Map<string, string>;
  /**
   * Set when the transaction without any candidate is refused too: nothing here is a
   * Service's fault (the static part, or the kernel), and nothing is held out.
   */
  stuck?: string;
  /** How many checks the search ran. */
  checks: number;
}

/** The errors a Service's data can cause, and that a check can reproduce. */
const REFUSALS = [
  ErrorCodes.NFT_REJECTED,
  ErrorCodes.NFT_EXISTS,
  ErrorCodes.NFT_NO_SUCH_OBJECT,
  ErrorCodes.NFT_DANGLING_REFERENCE,
  ErrorCodes.NFT_INVALID_OBJECT,
];

/** nft refused a transaction (rather than could not run: missing binary, no privileges). */
export const isRefusal = (err: unknown): boolean => REFUSALS.some((code) => hasCode(err, code));

/** Longest reason kept: a refused line of 1,000 elements must not end up whole in a log. */
const MAX_REASON = 300;

/** One error nft printed: its message, and the text its carets point at (the refused element). */
interface NftErrorBlock {
  message: string;
  span?: string;
  /**
   * The set of the `add element` line the carets are on, as `family set`: the same key text can
   * be in two sets (a frontend `ip . port . slot` in backends-tcp and in backends-udp).
   */
  set?: string;
}

/** `add element ip kube-nftproxy backends-tcp { ...`: its family and set. */
const ADD_ELEMENT = /^\s*add element (\S+) \S+ (\S+) \{/;

/** nft's errors in a refusal's message: `<where>: Error: <what>`, the source line, the carets. */
function errorBlocks(err: unknown): NftErrorBlock[] {
  const lines = (err instanceof Error ? err.message : String(err)).split('\n');
  const blocks: NftErrorBlock[] = [];
  lines.forEach((line, at) => {
    if (!line.includes('Error:')) return;
    const message = line.slice(line.indexOf('Error:') + 'Error:'.length).trim();
    const source = lines[at + 1];
    const carets = lines[at + 2];
    if (source === undefined || carets === undefined || !/^\s*[~^]+\s*$/.test(carets)) {
      blocks.push({ message });
      return;
    }
    const span = source.slice(carets.search(/[~^]/), carets.trimEnd().length).trim();
    const into = ADD_ELEMENT.exec(source);
    blocks.push(span ? { message, span, ...(into ? { set: `${into[1]} ${into[2]}` } : {}) } : { message });
  });
  return blocks;
}

/**
 * nft's first error line without its location, and the text its carets point at (the element
 * it refused), e.g. `Could not process rule: File exists: 192.0.2.1 . tcp . 80 . 10.1.0.0/16`.
 */
export function refusalReason(err: unknown): string {
  const first = errorBlocks(err)[0];
  const reason = first
    ? first.span
      ? `${first.message}: ${first.span}`
      : first.message
    : (err instanceof Error ? err.message : String(err)).split('\n')[0]!.replace(/^nft [^:]* failed: /, '');
  return reason.length > MAX_REASON ? `${reason.slice(0, MAX_REASON - 1)}…` : reason;
}

/**
 * The Services whose elements nft's carets point at: containRefusal tries holding out just
 * these first. nft marks an element's key; two Services can share a key (two claims on one
 * element, the later one refused), so each marked key names the last Service by port key that
 * has it, among the `suspects` if given (after a partial sync, the Services it changed; the
 * others were in the kernel before): fragments are sent in port-key order. Only a hint: the
 * sync without them has to commit.
 */
export function suspectsOf(
  err: unknown,
  rs: Ruleset,
  state: ProxyState,
  suspects?: ReadonlySet<string>,
): string[] {
  const blocks = errorBlocks(err);
  const spans = new Set(blocks.flatMap((b) => (b.span ? [b.span] : [])));
  if (spans.size === 0) return [];
  // A span on an `add element` line marks that set's element only; elsewhere, any element's key.
  const marked = new Set(blocks.flatMap((b) => (b.span && b.set ? [`${b.set} ${b.span}`] : [])));
  const anywhere = new Set(blocks.flatMap((b) => (b.span && !b.set ? [b.span] : [])));
  // `spans` first: it turns away nearly every element without making a string.
  const isMarked = (el: Element): boolean =>
    spans.has(el.key) && (anywhere.has(el.key) || marked.has(`${el.family} ${el.set} ${el.key}`));
  const serviceOf = (portKey: string): string | undefined => {
    const sp = state.ports[portIndex(state.ports, portKey)];
    return sp?.key === portKey ? sp.service : undefined;
  };
  const last = new Map<string, string>();
  for (const f of rs.fragments) {
    if (!f.elements.some(isMarked)) continue;
    const service = serviceOf(f.key);
    if (service === undefined || (suspects && !suspects.has(service))) continue;
    for (const el of f.elements) if (isMarked(el)) last.set(`${el.family} ${el.set} ${el.key}`, service);
  }
  return [...new Set(last.values())].sort(compareStrings);
}

/**
 * Which of `candidates` (Service keys, sorted) to hold out so that the rest commits. The
 * injected `verdict(excluded)` says whether the sync with those candidates held out would
 * commit; `refused` is the known refusal of the sync with none held out (skips that check).
 *
 * 1. Every candidate held out: if even that is refused, the node is stuck, not a Service.
 * 2. Candidates refused on their own: halve the refused groups, each half checked alone (every
 *    other candidate held out). One culprit among n costs about 2·log2(n) checks of shrinking
 *    size, about two full transactions' worth of nft work in all.
 * 3. If the rest is still refused, some candidates are refused only together (two Services
 *    claiming one element): accept groups in key order, halving the refused ones; each one
 *    refused against those accepted before it is held out. Key order makes every node hold
 *    out the same one.
 */
export async function findCulprits(
  candidates: readonly string[],
  verdict: (excluded: ReadonlySet<string>) => Promise<Verdict>,
  opts: { refused?: string } = {},
): Promise<Isolation> {
  let checks = 0;
  const ask = (excluded: ReadonlySet<string>): Promise<Verdict> => {
    checks++;
    return verdict(excluded);
  };
  const only = (kept: readonly string[]): Set<string> => {
    const keep = new Set(kept);
    return new Set(candidates.filter((k) => !keep.has(k)));
  };
  const culprits = new Map<string, string>();

  const stuck = await ask(new Set(candidates));
  if (stuck !== undefined) return { culprits, stuck, checks };

  const alone = async (group: readonly string[], known?: string): Promise<void> => {
    // A known refusal only saves the check of a group to be split: nft -c confirms a culprit.
    const refused = group.length > 1 && known !== undefined ? known : await ask(only(group));
    if (refused === undefined) return;
    if (group.length === 1) {
      culprits.set(group[0]!, refused);
      return;
    }
    const mid = group.length >> 1;
    await alone(group.slice(0, mid));
    await alone(group.slice(mid));
  };
  if (candidates.length > 0) await alone(candidates, opts.refused);

  const rest = candidates.filter((k) => !culprits.has(k));
  const restRefused = await ask(new Set(culprits.keys()));
  if (restRefused !== undefined) {
    const accepted: string[] = [];
    const groups: Array<readonly string[]> = [rest];
    while (groups.length > 0) {
      const group = groups.pop()!;
      const trial = [...accepted, ...group];
      // The whole rest is known refused; anything smaller is asked.
      const refused = trial.length === rest.length ? restRefused : await ask(only(trial));
      if (refused === undefined) accepted.push(...group);
      else if (group.length === 1) culprits.set(group[0]!, refused);
      else {
        const mid = group.length >> 1;
        groups.push(group.slice(mid), group.slice(0, mid));
      }
    }
  }
  const sorted = new Map([...culprits].sort(([a], [b]) => compareStrings(a, b)));
  return { culprits: sorted, checks };
}

/**
 * findCulprits over transactions: `transaction(excluded)` builds the sync's transaction with
 * those Services held out, and the injected `check` (nft -c, or the Fake's) rejects with nft's
 * refusal or resolves when it would commit.
 */
export function isolateRefusal(opts: {
  candidates: readonly string[];
  transaction: (excluded: ReadonlySet<string>) => Transaction;
  check: (tx: Transaction) => Promise<void>;
  refused?: string;
}): Promise<Isolation> {
  return findCulprits(
    opts.candidates,
    async (excluded) => {
      try {
        await opts.check(opts.transaction(excluded));
        return undefined;
      } catch (err) {
        if (!isRefusal(err)) throw err;
        return refusalReason(err);
      }
    },
    opts.refused === undefined ? {} : { refused: opts.refused },
  );
}
