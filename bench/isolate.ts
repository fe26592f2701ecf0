/**
 * isolate: what one Service that nft refuses costs (issue #11). At 1,000 and 10,000 Services ×
 * 10 endpoints (the realistic mix), one LoadBalancer Service gets nested source ranges, which
 * the kernel refuses ("File exists"). Measured with the real nft in a throwaway namespace, as
 * the daemon does it: the refused full sync, the search for the culprit with `nft -c`
 * (isolate.ts), and the full sync of everything else; against a clean full sync of the same
 * state in the same run. Then the same for a partial sync that brings a refused Service.
 */
import { spawnSync } from 'node:child_process';
import type { ProxyState, ServicePort } from '../src/model/types.js';
import { fullTransaction, partialTransaction } from '../src/rules/apply.js';
import { Compiler, type CompileConfig } from '../src/rules/compile.js';
import { withoutServices } from '../src/rules/held-out.js';
import { isolateRefusal, isRefusal, refusalReason, suspectsOf } from '../src/rules/isolate.js';
import { createNft, type Nft } from '../src/rules/nft/exec.js';
import type { Ruleset } from '../src/rules/ruleset.js';
import { processAlive } from '../src/process-alive.js';
import { ms, round, type Bench, type BenchResult } from './harness.js';
import { BENCH_NET, mixedState } from './states.js';

const ENDPOINTS = 10;
const NESTED = ['10.0.0.0/8', '10.1.0.0/16'];

const compileConfig: CompileConfig = {
  table: 'kube-nftproxy',
  clusterCIDRs: [BENCH_NET.clusterCIDR],
  masqueradeAll: false,
  serviceCIDRs: [BENCH_NET.serviceCIDR],
  nodePortIPs: { ipv4: [BENCH_NET.nodeIP], ipv6: [] },
};

function sh(program: string, args: string[]): { code: number; out: string } {
  const r = spawnSync(program, args, { encoding: 'utf8', timeout: 60_000 });
  return { code: r.error ? -1 : (r.status ?? -1), out: `${r.stdout ?? ''}${r.stderr ?? ''}` };
}

/** The same state with the LoadBalancer port at `index` given nested source ranges. */
function withNestedRanges(state: ProxyState, index: number): ProxyState {
  const ports = state.ports.slice();
  ports[index] = { ...ports[index]!, sourceRanges: NESTED };
  return { ...state, ports };
}

const services = (state: ProxyState): string[] => [...new Set(state.ports.map((sp) => sp.service))].sort();

/** The daemon's containment: the search with nft -c, then the full sync without the culprits. */
async function contain(
  nft: Nft,
  compiler: Compiler,
  state: ProxyState,
  candidates: string[],
  refused: { reason: string; suspects: string[] },
  before?: Ruleset,
): Promise<{ searchMs: number; applyMs: number; checks: number; culprits: string[] }> {
  const t0 = process.hrtime.bigint();
  const isolation = await isolateRefusal({
    candidates,
    transaction: (excluded) => {
      const rs = compiler.compile(withoutServices(state, excluded));
      return before ? partialTransaction(before, rs) : fullTransaction(rs);
    },
    check: (tx) => nft.check(tx),
    refused: refused.reason,
    ...(refused.suspects.length ? { suspects: refused.suspects } : {}),
  });
  const searchMs = ms(t0);
  if (isolation.stuck !== undefined) throw new Error(`stuck: ${isolation.stuck}`);
  const t1 = process.hrtime.bigint();
  await nft.run(
    fullTransaction(compiler.compile(withoutServices(state, new Set(isolation.culprits.keys())))),
  );
  return { searchMs, applyMs: ms(t1), checks: isolation.checks, culprits: [...isolation.culprits.keys()] };
}

/** Runs what nft must refuse; its reason and the Services its carets point at. */
async function refusal(
  run: Promise<void>,
  rs: Ruleset,
  state: ProxyState,
): Promise<{ reason: string; suspects: string[] }> {
  try {
    await run;
  } catch (err) {
    if (isRefusal(err)) return { reason: refusalReason(err), suspects: suspectsOf(err, rs, state) };
    throw err;
  }
  throw new Error('nft took the transaction it should refuse: nested source ranges no longer collide');
}

export const bench: Bench = {
  name: 'isolate',

  async unavailable() {
    if (typeof process.getuid !== 'function' || process.getuid() !== 0)
      return 'needs root (network namespaces and nftables need CAP_NET_ADMIN)';
    if (sh('nft', ['--version']).code !== 0) return 'needs nft (apt-get install nftables)';
    if (sh('ip', ['-V']).code !== 0) return 'needs ip (apt-get install iproute2)';
    return undefined;
  },

  async run(ctx): Promise<BenchResult> {
    const figures: BenchResult['figures'] = {};
    const lines: string[] = [];
    const sizes = ctx.quick ? [1000] : [1000, 10_000];
    // Named like nft-load's namespaces, so either bench sweeps the other's leftovers.
    for (const line of sh('ip', ['netns', 'list']).out.split('\n')) {
      const m = /^knp-bench-(\d+)\b/.exec(line);
      if (m && Number(m[1]) !== process.pid && !processAlive(Number(m[1])))
        sh('ip', ['netns', 'del', line.split(' ')[0]!]);
    }
    const ns = `knp-bench-${process.pid}-isolate`;
    const del = (): void => void sh('ip', ['netns', 'del', ns]);
    const onSignal = (signal: NodeJS.Signals): void => {
      del();
      process.exit(signal === 'SIGINT' ? 130 : 143);
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    if (sh('ip', ['netns', 'add', ns]).code !== 0) throw new Error(`ip netns add ${ns} failed`);
    const nft = createNft({ netns: ns });
    const flush = (): void => void sh('ip', ['netns', 'exec', ns, 'nft', 'flush', 'ruleset']);
    try {
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
        await nft.run(fullTransaction(new Compiler(compileConfig).compile(clean)));
        const cleanMs = ms(t);

        // As the daemon does it (nft's carets name the suspect), and by bisection alone (the
        // fallback when they do not).
        const runs: Record<
          'hint' | 'bisect',
          { refusedMs: number; searchMs: number; applyMs: number; checks: number }
        > = {} as never;
        let reason = '';
        for (const mode of ['hint', 'bisect'] as const) {
          ctx.say(`${n}: refused full sync, search (${mode}), the rest`);
          flush();
          const compiler = new Compiler(compileConfig);
          const rs = compiler.compile(bad);
          t = process.hrtime.bigint();
          const refused = await refusal(nft.run(fullTransaction(rs)), rs, bad);
          const refusedMs = ms(t);
          reason = refused.reason;
          if (mode === 'bisect') refused.suspects = [];
          const r = await contain(nft, compiler, bad, services(bad), refused);
          if (r.culprits.join() !== badService)
            throw new Error(`found ${r.culprits.join()}, not ${badService}`);
          runs[mode] = { refusedMs, ...r };
        }

        // A partial sync that brings the bad Service into a clean kernel: only it is a suspect.
        ctx.say(`${n}: refused partial sync, search, the rest`);
        flush();
        const pc = new Compiler(compileConfig);
        const applied = pc.compile(withoutServices(bad, new Set([badService])));
        await nft.run(fullTransaction(applied));
        const prs = pc.compile(bad);
        t = process.hrtime.bigint();
        const partialRefused = await refusal(nft.run(partialTransaction(applied, prs)), prs, bad);
        const partialRefusedMs = ms(t);
        const partial = await contain(nft, pc, bad, [badService], partialRefused, applied);

        if (n === sizes[0]) {
          figures.reason = reason;
          lines.push(`  nft's refusal: ${reason}`);
        }
        const f = (name: string, v: number): void => {
          figures[`${name}@${n}`] = round(v, 1);
        };
        f('clean_full_sync_ms', cleanMs);
        lines.push(`  ${n} Services: clean full sync ${round(cleanMs)} ms`);
        for (const mode of ['hint', 'bisect'] as const) {
          const r = runs[mode];
          const total = r.refusedMs + r.searchMs + r.applyMs;
          f(`${mode}_refused_full_sync_ms`, r.refusedMs);
          f(`${mode}_search_ms`, r.searchMs);
          f(`${mode}_search_checks`, r.checks);
          f(`${mode}_apply_rest_ms`, r.applyMs);
          f(`${mode}_contained_total_ms`, total);
          lines.push(
            `    one refused, ${mode === 'hint' ? "found from nft's error" : 'found by bisection'}: refused sync ${round(r.refusedMs)} ms` +
              ` + search ${round(r.searchMs)} ms (${r.checks} checks) + the rest ${round(r.applyMs)} ms` +
              ` = ${round(total)} ms (${round(total / cleanMs, 1)}× clean)`,
          );
        }
        f('partial_refused_ms', partialRefusedMs);
        f('partial_search_ms', partial.searchMs);
        f('partial_search_checks', partial.checks);
        f('partial_apply_rest_ms', partial.applyMs);
        lines.push(
          `    one refused in a partial sync: refused ${round(partialRefusedMs)} ms` +
            ` + search ${round(partial.searchMs)} ms (${partial.checks} checks) + full sync of the rest ${round(partial.applyMs)} ms`,
        );
      }
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      del();
    }
    return { figures, lines };
  },
};
