/**
 * isolate: what one Service that nft refuses costs (issue #11). At 1,000 and 10,000 Services ×
 * 10 endpoints (the realistic mix), one LoadBalancer Service gets nested source ranges, which
 * the kernel refuses ("File exists"). Measured with the real nft in a throwaway namespace, as
 * the daemon does it (src/rules/contain.ts): the refused full sync, then the culprit held
 * out and the rest applied, once as the daemon finds it (nft's error names the element) and
 * once through the search with `nft -c` alone (isolate.ts: its fallback); against a clean full
 * sync of the same state in the same run. Then a refused partial sync that brings the Service.
 */
import type { ProxyState, ServicePort } from '../src/model/types.js';
import { ProxyError } from '../src/errors.js';
import { silentLogger } from '../src/log.js';
import type { StateDelta } from '../src/model/state-builder.js';
import { NftApplier } from '../src/rules/applier.js';
import { fullTransaction, partialTransaction } from '../src/rules/diff.js';
import { Compiler } from '../src/rules/compile.js';
import { containRefusal } from '../src/rules/contain.js';
import { HeldOut, withoutServices } from '../src/rules/held-out.js';
import { isRefusal, refusalReason } from '../src/rules/isolate.js';
import { createNft, type Nft } from '../src/rules/nft/exec.js';
import type { Ruleset } from '../src/rules/ruleset.js';
import { ms, round, type Bench, type BenchResult, missingRootOrTools, NFT, IP } from './harness.js';
import { withBenchNetns } from './nft-load.js';
import { BENCH_COMPILE_CONFIG, mixedState } from './states.js';

const ENDPOINTS = 10;
const NESTED = ['10.0.0.0/8', '10.1.0.0/16'];

/** The same state with the LoadBalancer port at `index` given nested source ranges. */
function withNestedRanges(state: ProxyState, index: number): ProxyState {
  const ports = state.ports.slice();
  ports[index] = { ...ports[index]!, sourceRanges: NESTED };
  return { ...state, ports };
}

/**
 * The daemon's containment (containRefusal) after `rs` was refused with `err`: timed, with the
 * Service it held out. Without carets in the error, it goes straight to the search.
 */
async function contain(
  nft: Nft,
  compiler: Compiler,
  state: ProxyState,
  rs: Ruleset,
  err: unknown,
  partial?: { before: Ruleset; delta: StateDelta },
): Promise<{ ms: number; checks: number; culprits: string[] }> {
  const applier = new NftApplier({ nft, log: silentLogger() });
  const t = process.hrtime.bigint();
  const c = await containRefusal(
    { nft, applier, compiler, heldOut: new HeldOut(), log: silentLogger() },
    { state, view: state, rules: rs, err, ...(partial ? { partial } : {}) },
  );
  return { ms: ms(t), checks: c.checks, culprits: [...c.heldOut.keys()] };
}

/** Runs what nft must refuse; its error. */
async function refusal(run: Promise<void>): Promise<unknown> {
  try {
    await run;
  } catch (err) {
    if (isRefusal(err)) return err;
    throw err;
  }
  throw new Error('nft took the transaction it should refuse: nested source ranges no longer collide');
}

/** The same refusal without the lines that point at the element. */
const withoutCarets = (err: unknown): ProxyError =>
  new ProxyError((err as ProxyError).code, (err as Error).message.split('\n')[0]!);

export const bench: Bench = {
  name: 'isolate',

  async unavailable() {
    return missingRootOrTools('network namespaces and nftables need CAP_NET_ADMIN', [NFT, IP]);
  },

  async run(ctx): Promise<BenchResult> {
    const figures: BenchResult['figures'] = {};
    const lines: string[] = [];
    const sizes = ctx.quick ? [1000] : [1000, 10_000];
    // nft-load's namespaces: either bench sweeps the other's leftovers.
    await withBenchNetns(async (netns) => {
      const ns = netns.name;
      const nft = createNft({ netns: ns });
      const flush = (): void => netns.flush();
      lines.push(
        `isolate: one Service nft refuses (nested source ranges) among n, ${ENDPOINTS} endpoints each`,
      );
      for (const n of sizes) {
        const clean = mixedState(n, ENDPOINTS);
        // A LoadBalancer with source ranges in the second half of the key order.
        const badIndex = clean.ports.findIndex(
          (sp: ServicePort, i) => i >= clean.ports.length / 2 && sp.sourceRanges.length > 0,
        );
        const bad = withNestedRanges(clean, badIndex);
        const badService = bad.ports[badIndex]!.service;

        ctx.say(`${n}: clean full sync`);
        flush();
        let t = process.hrtime.bigint();
        await nft.run(fullTransaction(new Compiler(BENCH_COMPILE_CONFIG).compile(clean).ruleset));
        const cleanMs = ms(t);

        // As the daemon does it (nft's carets name the suspect), and by the search alone (the
        // fallback when they do not).
        const runs = {} as Record<'hint' | 'search', { refusedMs: number; ms: number; checks: number }>;
        let reason = '';
        for (const mode of ['hint', 'search'] as const) {
          ctx.say(`${n}: refused full sync, contained (${mode})`);
          flush();
          const compiler = new Compiler(BENCH_COMPILE_CONFIG);
          const rs = compiler.compile(bad).ruleset;
          t = process.hrtime.bigint();
          const err = await refusal(nft.run(fullTransaction(rs)));
          const refusedMs = ms(t);
          reason = refusalReason(err);
          const r = await contain(nft, compiler, bad, rs, mode === 'hint' ? err : withoutCarets(err));
          if (r.culprits.join() !== badService)
            throw new Error(`held out ${r.culprits.join()}, not ${badService}`);
          runs[mode] = { refusedMs, ms: r.ms, checks: r.checks };
        }

        // A partial sync that brings the bad Service into a kernel holding the rest.
        ctx.say(`${n}: refused partial sync, contained`);
        flush();
        const pc = new Compiler(BENCH_COMPILE_CONFIG);
        const without = withoutServices(bad, new Set([badService]));
        const applied = pc.compile(without).ruleset;
        await nft.run(fullTransaction(applied));
        const prs = pc.compile(bad).ruleset;
        t = process.hrtime.bigint();
        const perr = await refusal(nft.run(partialTransaction(applied, prs)));
        const partialRefusedMs = ms(t);
        const badPorts = new Set(bad.ports.filter((sp) => sp.service === badService).map((sp) => sp.key));
        const partial = await contain(nft, pc, bad, prs, withoutCarets(perr), {
          before: applied,
          delta: { base: without, ports: badPorts },
        });

        if (n === sizes[0]) {
          figures.reason = reason;
          lines.push(`  nft's refusal: ${reason}`);
        }
        const f = (name: string, v: number): void => {
          figures[`${name}@${n}`] = round(v, 1);
        };
        f('clean_full_sync_ms', cleanMs);
        lines.push(`  ${n} Services: clean full sync ${round(cleanMs)} ms`);
        for (const mode of ['hint', 'search'] as const) {
          const r = runs[mode];
          const total = r.refusedMs + r.ms;
          f(`${mode}_refused_full_sync_ms`, r.refusedMs);
          f(`${mode}_contain_ms`, r.ms);
          f(`${mode}_checks`, r.checks);
          f(`${mode}_total_ms`, total);
          lines.push(
            `    one refused, ${mode === 'hint' ? "named by nft's error" : 'found by the search'}: refused sync ${round(r.refusedMs)} ms` +
              ` + held out and the rest applied ${round(r.ms)} ms (${r.checks} checks)` +
              ` = ${round(total)} ms (${round(total / cleanMs, 1)}× the clean sync)`,
          );
        }
        f('partial_refused_ms', partialRefusedMs);
        f('partial_contain_ms', partial.ms);
        f('partial_checks', partial.checks);
        lines.push(
          `    one refused in a partial sync (found by the search): refused ${round(partialRefusedMs)} ms` +
            ` + held out and the rest applied as a full sync ${round(partial.ms)} ms (${partial.checks} checks)`,
        );
      }
    });
    return { figures, lines };
  },
};
