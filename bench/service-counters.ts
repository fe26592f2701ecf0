/**
 * service-counters: what --service-counters costs (issue #15). At 10,000 Services × 10
 * endpoints (the realistic mix of bench/states.ts), in a throwaway network namespace with the
 * real nft: the full load and one change with counters off and on (the same run, interleaved;
 * ratios printed), the other design measured beside it (a separate counter set keyed by
 * frontend, one more element per frontend, looked up by a rule of its own), and the scrape:
 * reading the counters from the kernel and rendering /metrics, and one change made while a
 * scrape runs. Changes go through one `nft -i` session, as the daemon's partial syncs do.
 * `--quick`: 1,000 Services. Targets: on/off within 10 %, a scrape ≤ 1 s.
 */
import { createMetrics } from '../src/server/metrics.js';
import { CounterReader } from '../src/counters/counter-reader.js';
import { silentLogger } from '../src/log.js';
import type { ProxyState } from '../src/model/types.js';
import { compile, Compiler, type CompileConfig } from '../src/rules/compile.js';
import { fullTransaction, partialTransaction } from '../src/rules/diff.js';
import { SYNTAX } from '../src/rules/layout.js';
import { createNft, type Nft } from '../src/rules/nft/exec.js';
import type { Element, NftSet } from '../src/rules/nft/types.js';
import { rulesetSize, setId, type Ruleset } from '../src/rules/ruleset.js';
import { systemClock } from '../src/util/clock.js';
import { median, missingRootOrTools, ms, round, type Bench, type BenchResult, IP, NFT } from './harness.js';
import { Netns, run } from './nft-load.js';
import { BENCH_NET, mixedState, replaceOneEndpoint } from './states.js';

const ENDPOINTS = 10;
const TABLE = 'kube-nftproxy';
/** On/off within this ratio; a scrape within this long (issue #15). */
const TARGET = { ratio: 1.1, scrapeMs: 1000 } as const;

const baseConfig: CompileConfig = {
  table: TABLE,
  clusterCIDRs: [BENCH_NET.clusterCIDR],
  masqueradeAll: false,
  serviceCIDRs: [BENCH_NET.serviceCIDR],
  nodePortIPs: { ipv4: [BENCH_NET.nodeIP], ipv6: [] },
};

const fmtMs = (x: number): string => `${round(x, 1)} ms`;

/**
 * The other design: counters off, plus a set `frontend-counters` (counter on each element)
 * holding every frontend, looked up by a rule of its own before `service-ips`. Built from the
 * counters-off ruleset, for its cost only (the rules are not what the daemon would count with).
 */
function counterSetDesign(off: Ruleset): Ruleset {
  const name = 'frontend-counters';
  const sets = [...off.sets];
  const chains = off.chains.map((c) => c);
  const elements = new Map(off.elements);
  for (const family of ['ipv4', 'ipv6'] as const) {
    const { nft, x, addr } = SYNTAX[family];
    const set: NftSet = {
      kind: 'set',
      family: nft,
      table: TABLE,
      name,
      type: [addr, 'inet_proto', 'inet_service'],
      counter: true,
    };
    sets.push(set);
    const i = chains.findIndex((c) => c.chain.family === nft && c.chain.name === 'services');
    const services = chains[i]!;
    chains[i] = {
      chain: services.chain,
      rules: [
        { ...services.rules[0]!, rule: `${x} daddr . meta l4proto . th dport @${name}` },
        ...services.rules,
      ],
    };
    const keys = new Set<string>();
    for (const f of off.fragments)
      for (const el of f.elements)
        if (el.family === nft && (el.set === 'service-ips' || el.set === 'no-endpoint-services'))
          keys.add(el.key);
    elements.set(
      setId(nft, TABLE, name),
      [...keys]
        .sort()
        .map((key): Element => ({ kind: 'element', family: nft, table: TABLE, set: name, key })),
    );
  }
  return { ...off, sets, chains, elements };
}

async function timedRun(nft: Nft, rs: Ruleset): Promise<number> {
  const tx = fullTransaction(rs);
  const start = process.hrtime.bigint();
  await nft.run(tx);
  return ms(start);
}

/** Loads `state` with `config`, then makes `changes` one-endpoint changes; their nft times. */
async function changeTimes(
  nft: Nft,
  ns: Netns,
  state: ProxyState,
  config: CompileConfig,
  changes: number,
): Promise<{ times: number[]; ops: number; last: ProxyState; compiler: Compiler; rs: Ruleset }> {
  ns.flush();
  const compiler = new Compiler(config);
  let rs = compiler.compile(state).ruleset;
  await nft.run(fullTransaction(rs));
  const times: number[] = [];
  let ops = 0;
  let prev = state;
  const n = state.ports.length;
  for (let k = 0; k < changes; k++) {
    const next = replaceOneEndpoint(prev, (Math.floor(n / 3) + k * 7919) % n, 2000 + k);
    const nextRs = compiler.compile(next).ruleset;
    const tx = partialTransaction(rs, nextRs);
    const start = process.hrtime.bigint();
    await nft.run(tx);
    times.push(ms(start));
    ops = tx.size;
    rs = nextRs;
    prev = next;
  }
  return { times, ops, last: prev, compiler, rs };
}

export const bench: Bench = {
  name: 'service-counters',

  async unavailable() {
    return missingRootOrTools('network namespaces and nftables need CAP_NET_ADMIN', [NFT, IP]);
  },

  async run(ctx): Promise<BenchResult> {
    const n = ctx.quick ? 1000 : 10_000;
    const rounds = ctx.quick ? 2 : 3;
    const changes = ctx.quick ? 5 : 10;
    const figures: BenchResult['figures'] = {};
    const lines: string[] = [];
    const f = (name: string, value: number | string): void => {
      figures[`${name}@${n}`] = typeof value === 'number' ? round(value, 2) : value;
    };
    const ns = new Netns(`knp-bench-${process.pid}`);
    const onSignal = (signal: NodeJS.Signals): void => {
      ns.del();
      process.exit(signal === 'SIGINT' ? 130 : 143);
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    Netns.sweepStale();
    ns.create();
    // The daemon's way: full loads through nft -f, small changes through one nft -i session.
    const nft = createNft({ netns: ns.name, session: true });
    // The session is unref'd (it never keeps a daemon alive): this keeps the bench alive.
    const alive = setInterval(() => undefined, 1000);
    try {
      const version = run('nft', ['--version']).out.trim();
      figures.nft_version = version;
      ctx.say(`${n} Services × ${ENDPOINTS}: generating the state and compiling`);
      const state = mixedState(n, ENDPOINTS);
      const offConfig = { ...baseConfig, serviceCounters: false };
      const onConfig = { ...baseConfig, serviceCounters: true };
      const rsOff = compile(state, offConfig);
      const variants: Array<[string, Ruleset]> = [
        ['off', rsOff],
        ['on', compile(state, onConfig)],
        ['counter set', counterSetDesign(rsOff)],
      ];
      const full = new Map<string, number[]>(variants.map(([name]) => [name, []]));
      // Interleaved, so that the machine's load at a moment weighs on all three alike.
      for (let r = 0; r < rounds; r++)
        for (const [name, rs] of variants) {
          ns.flush();
          const t = await timedRun(nft, rs);
          full.get(name)!.push(t);
          ctx.say(`  full load, counters ${name}: ${fmtMs(t)}`);
        }
      const fullOff = median(full.get('off')!);
      const fullOn = median(full.get('on')!);
      const fullSet = median(full.get('counter set')!);
      const elements = (rs: Ruleset): number => rulesetSize(rs).elements;

      // One change each, off and on, alternating a few times.
      const change = { off: [] as number[], on: [] as number[] };
      let ops = 0;
      for (let r = 0; r < (ctx.quick ? 1 : 2); r++)
        for (const [name, config] of [
          ['off', offConfig],
          ['on', onConfig],
        ] as const) {
          const got = await changeTimes(nft, ns, state, config, changes);
          change[name].push(...got.times);
          ops = got.ops;
          ctx.say(`  one change, counters ${name}: ${got.times.map(fmtMs).join(', ')}`);
        }
      const changeOff = median(change.off);
      const changeOn = median(change.on);

      // The scrape, against the counters-on ruleset the last changeTimes left loaded.
      const loaded = await changeTimes(nft, ns, state, onConfig, 1);
      const reader = new CounterReader({
        nft,
        table: TABLE,
        log: silentLogger(),
        clock: systemClock,
        maxAgeMs: 0,
        rules: () => ({ state: loaded.last, nodePortIPs: baseConfig.nodePortIPs, since: Date.now() }),
      });
      const metrics = createMetrics();
      metrics.serviceCounters(async () => (await reader.read())?.ports);
      const reads: number[] = [];
      const scrapes: number[] = [];
      let body = '';
      for (let r = 0; r < 3; r++) {
        let start = process.hrtime.bigint();
        await reader.read();
        reads.push(ms(start));
        start = process.hrtime.bigint();
        body = await metrics.registry.metrics();
        scrapes.push(ms(start));
      }
      const series = body.split('\n').filter((l) => l.startsWith('kube_nftproxy_service_')).length;
      // A change while a scrape runs: nft processes of their own, one event loop shared.
      let prevRs = loaded.rs;
      let prev = loaded.last;
      const during: number[] = [];
      for (let k = 0; k < 3; k++) {
        const next = replaceOneEndpoint(prev, (k * 4099 + 17) % n, 3000 + k);
        const nextRs = loaded.compiler.compile(next).ruleset;
        const scrape = metrics.registry.metrics();
        const start = process.hrtime.bigint();
        await nft.run(partialTransaction(prevRs, nextRs));
        during.push(ms(start));
        await scrape;
        prevRs = nextRs;
        prev = next;
      }

      f('full_load_off_ms', fullOff);
      f('full_load_on_ms', fullOn);
      f('full_load_counter_set_ms', fullSet);
      f('ratio_full_load_on_off', fullOn / fullOff);
      f('ratio_full_load_counter_set_off', fullSet / fullOff);
      f('change_off_ms', changeOff);
      f('change_on_ms', changeOn);
      f('ratio_change_on_off', changeOn / changeOff);
      f('change_operations', ops);
      f('counters_read_ms', median(reads));
      f('scrape_ms', median(scrapes));
      f('scrape_series', series);
      f('scrape_bytes', body.length);
      f('change_during_scrape_ms', median(during));
      const met = (ok: boolean): string => (ok ? 'met' : 'NOT met');
      lines.push(
        `service-counters: ${version}; ${n} Services × ${ENDPOINTS} (mixed); medians of ${rounds} full loads and ${change.on.length} changes each, interleaved`,
        `  full load: off ${fmtMs(fullOff)} (${elements(rsOff)} elements), on ${fmtMs(fullOn)} (counters on the elements of 4 maps: no element more), ratio ${round(fullOn / fullOff, 3)}`,
        `  the other design, a counter set keyed by frontend: ${fmtMs(fullSet)} (${elements(variants[2]![1])} elements), ratio ${round(fullSet / fullOff, 3)}`,
        `  one change (${ops} operations): off ${fmtMs(changeOff)}, on ${fmtMs(changeOn)}, ratio ${round(changeOn / changeOff, 3)}`,
        `  scrape: kernel read ${fmtMs(median(reads))} (nft -j list of the counted maps), whole /metrics ${fmtMs(median(scrapes))} (${series} counter series, ${round(body.length / 1e6, 2)} MB)`,
        `  one change while a scrape runs: ${fmtMs(median(during))} (alone: ${fmtMs(changeOn)})`,
      );
      if (!ctx.quick)
        lines.push(
          `  target on/off ≤ ${TARGET.ratio}: full load ${met(fullOn / fullOff <= TARGET.ratio)}, one change ${met(changeOn / changeOff <= TARGET.ratio)}; target scrape ≤ ${TARGET.scrapeMs} ms: ${met(median(scrapes) <= TARGET.scrapeMs)}`,
        );
      return { figures, lines };
    } finally {
      clearInterval(alive);
      nft.close?.();
      ns.del();
      process.removeListener('SIGINT', onSignal);
      process.removeListener('SIGTERM', onSignal);
    }
  },
};
