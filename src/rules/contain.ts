import type { Logger } from '../log.js';
import type { StateDelta } from '../model/state-builder.js';
import type { ProxyState } from '../model/types.js';
import type { NftApplier, SyncResult } from './applier.js';
import { fullTransaction, partialTransaction } from './diff.js';
import type { Compiler } from './compile.js';
import { withoutServices, type HeldOut } from './held-out.js';
import { isolateRefusal, isRefusal, refusalReason, suspectsOf } from './isolate.js';
import type { Nft } from './nft/exec.js';
import type { Ruleset } from './ruleset.js';

/** A sync nft refused: what it was made of, and what was in the kernel before it. */
export interface RefusedSync {
  /** The model's state, with nothing held out. */
  state: ProxyState;
  /** The state the refused rules were compiled from (held-out Services already left out). */
  view: ProxyState;
  rules: Ruleset;
  /** nft's refusal. */
  err: unknown;
  /**
   * For a refused partial sync: the rules in the kernel (a refused transaction left them as
   * they were) and the model's delta. Only the Services in it are suspects then.
   */
  partial?: { before: Ruleset; delta?: StateDelta };
}

export interface Contained {
  /** The state applied: `view` without the Services now held out. */
  view: ProxyState;
  result: SyncResult;
  /** The Services held out by this containment, with nft's reason. */
  heldOut: Map<string, string>;
  /** `nft -c` checks run (0 when the Service nft's error names was the culprit). */
  checks: number;
}

/**
 * Makes a refused sync cost only the Services nft refuses: they are held out (`heldOut`)
 * and everything else is applied as one full sync. First the Services nft's error points at
 * are held out and the rest applied at once (a refused run changes nothing, like a check, so
 * trying costs no more than checking would); if that is refused too, the search with `nft -c`
 * (isolate.ts) finds them. Throws nft's refusal when even the rules without any suspect are
 * refused (the node is stuck, not a Service), or when no suspect is refused on its own (the
 * refusal did not come back: the runner's retry is a full sync).
 */
export async function containRefusal(
  deps: { nft: Nft; applier: NftApplier; compiler: Compiler; heldOut: HeldOut; log: Logger },
  refused: RefusedSync,
): Promise<Contained> {
  const { nft, applier, compiler, heldOut, log } = deps;
  const { state, view, err, partial } = refused;
  const reason = refusalReason(err);
  const services = new Set<string>();
  const changed = partial?.delta?.ports;
  for (const sp of view.ports) if (!changed || changed.has(sp.key)) services.add(sp.service);

  const applyHolding = async (culprits: Map<string, string>, checks: number): Promise<Contained> => {
    for (const [service, why] of culprits) heldOut.hold(service, why);
    const next = heldOut.view(state);
    try {
      const result = await applier.sync(compiler.compile(next.state).ruleset, { full: true });
      return { view: next.state, result, heldOut: culprits, checks };
    } catch (e) {
      heldOut.release(culprits.keys());
      throw e;
    }
  };

  const suspects = suspectsOf(err, refused.rules, view, services);
  if (suspects.length > 0) {
    try {
      return await applyHolding(new Map(suspects.map((s) => [s, reason])), 0);
    } catch (e) {
      if (!isRefusal(e)) throw e;
      log.info(
        { suspects, refused: refusalReason(e) },
        'refused without the Services nft named too: searching',
      );
    }
  }

  const before = partial?.before;
  const isolation = await isolateRefusal({
    candidates: [...services].sort(),
    transaction: (excluded) => {
      const rs = compiler.compile(withoutServices(view, excluded)).ruleset;
      return before ? partialTransaction(before, rs) : fullTransaction(rs);
    },
    check: (tx) => nft.check(tx),
    refused: reason,
  });
  if (isolation.stuck !== undefined) {
    log.error(
      { refused: isolation.stuck, checks: isolation.checks },
      'nft refuses even the rules without any Service',
    );
    throw err;
  }
  if (isolation.culprits.size === 0) throw err;
  return applyHolding(isolation.culprits, isolation.checks);
}
