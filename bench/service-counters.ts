/**
 * service-counters: what --service-counters costs (issue #15). At 10,000 Services × 10
 * endpoints (the realistic mix of bench/states.ts), in a throwaway network namespace with the
 * real nft: the full load and one change with counters off and on (the same run, interleaved;
 * ratios printed), the other design measured beside it (a separate counter set keyed by
 * frontend, one more element per frontend, looked up by a rule of its own), and the scrape:
 * reading the counters from the kernel and rendering /metrics, and one change made while a
 * scrape runs. Each variant loads in a namespace of its own; changes go through one `nft -i`
 * session each, as the daemon's partial syncs do, off and on in turns.
 * `--quick`: 1,000 Services. Targets: on/off within 10 %, a scrape ≤ 1 s.
 */
import { createMetrics } from '../src/server/metrics.js';
import { COUNTERS_TIMEOUT_MS, CounterReader } from '../src/counters/counter-reader.js';
import { silentLogger } from '../src/log.js';
import { compile, Compiler } from '../src/rules/compile.js';
import { fullTransaction, partialTransaction } from '../src/rules/diff.js';
import { SYNTAX } from '../src/rules/layout.js';
import { createNft, type Nft } from '../src/rules/nft/exec.js';
import type { Element, NftSet } from '../src/rules/nft/types.js';
import { rulesetSize, setId, type Ruleset } from '../src/rules/ruleset.js';
import { systemClock } from '../src/util/clock.js';
import { median, missingRootOrTools, ms, round, type Bench, type BenchResult, IP, NFT } from './harness.js';
import { Netns, run, TimedExec } from './nft-load.js';
import { BENCH_COMPILE_CONFIG, mixedState, replaceOneEndpoint } from './states.js';

const ENDPOINTS = 10;
const TABLE = 'kube-nftproxy';
/** On/off within this ratio; a scrape within this long (issue #15). */
const TARGET = { ratio: 1.1, scrapeMs: 1000 } as const;

const fmtMs = (x: number): string => `${round(x, 1)} ms`;

/**
 * The other design: counters off, plus a set `frontend-counters` (counter on each element)
 * holding every frontend, looked up by a rule of its own before `service-ips`. Built from the
 * counters-off ruleset, for its cost only (the rules are not what the daemon would count with).
 */
export function counterSetDesign(off: Ruleset): Ruleset {
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

/** One variant's namespace: its own nft for timed full loads, and a session for changes. */
interface Variant {
  name: string;
  rs: Ruleset;
  ns: Netns;
  timed: TimedExec;
  loader: Nft;
  session: Nft;
}

/** A full load of the variant's ruleset into its emptied namespace: wall and nft's CPU, ms. */
async function fullLoad(v: Variant): Promise<{ wall: number; cpu: number | null }> {
  v.ns.flush();
  const tx = fullTransaction(v.rs);
  const start = process.hrtime.bigint();
  await v.loader.run(tx);
  const wall = ms(start);
  const { userS, sysS } = v.timed.last!;
  return { wall, cpu: userS === null || sysS === null ? null : (userS + sysS) * 1000 };
}

export const bench: Bench = {
  name: 'service-counters',

  async unavailable() {
    return missingRootOrTools('network namespaces and nftables need CAP_NET_ADMIN', [NFT, IP]);
  },

  async run(ctx): Promise<BenchResult> {
    const n = ctx.quick ? 1000 : 10_000;
    const rounds = ctx.quick ? 2 : 3;
    const changes = ctx.quick ? 6 : 15;
    const figures: BenchResult['figures'] = {};
    const lines: string[] = [];
    const f = (name: string, value: number | string): void => {
      figures[`${name}@${n}`] = typeof value === 'number' ? round(value, 2) : value;
    };
    const variants: Variant[] = [];
    const cleanup = (): void => {
      for (const v of variants) {
        v.session.close?.();
        v.ns.del();
        v.timed.cleanup();
      }
    };
    const onSignal = (signal: NodeJS.Signals): void => {
      cleanup();
      process.exit(signal === 'SIGINT' ? 130 : 143);
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    // The session is unref'd (it never keeps a daemon alive): this keeps the bench alive.
    const alive = setInterval(() => undefined, 1000);
    Netns.sweepStale();
    try {
      const version = run('nft', ['--version']).out.trim();
      figures.nft_version = version;
      ctx.say(`${n} Services × ${ENDPOINTS}: generating the state and compiling`);
      const state = mixedState(n, ENDPOINTS);
      const configs = {
        off: { ...BENCH_COMPILE_CONFIG, serviceCounters: false },
        on: { ...BENCH_COMPILE_CONFIG, serviceCounters: true },
      };
      const rsOff = compile(state, configs.off);
      for (const [name, rs] of [
        ['off', rsOff],
        ['on', compile(state, configs.on)],
        ['counter set', counterSetDesign(rsOff)],
      ] as const) {
        // One namespace each, so that off and on can be changed in turns.
        const ns = new Netns(`knp-bench-${process.pid}-${variants.length}`);
        ns.create();
        const timed = new TimedExec(ns.name);
        variants.push({
          name,
          rs,
          ns,
          timed,
          loader: createNft({ netns: ns.name, exec: timed.exec }),
          // The daemon's way: small transactions through one nft -i session.
          session: createNft({ netns: ns.name, session: true }),
        });
      }
      const [off, on, set] = variants as [Variant, Variant, Variant];

      // Full loads, interleaved, so that the machine's load at a moment weighs on all alike.
      const loads = new Map(variants.map((v) => [v.name, { wall: [] as number[], cpu: [] as number[] }]));
      for (let r = 0; r < rounds; r++)
        for (const v of variants) {
          const t = await fullLoad(v);
          loads.get(v.name)!.wall.push(t.wall);
          if (t.cpu !== null) loads.get(v.name)!.cpu.push(t.cpu);
          ctx.say(
            `  full load, counters ${v.name}: ${fmtMs(t.wall)} (nft CPU ${t.cpu === null ? '?' : fmtMs(t.cpu)})`,
          );
        }
      const wall = (v: Variant): number => median(loads.get(v.name)!.wall);
      const cpu = (v: Variant): number => {
        const xs = loads.get(v.name)!.cpu;
        return xs.length ? median(xs) : NaN;
      };

      // One change at a time, off then on, each in its own loaded namespace (off and on hold
      // the last full load above; the compilers start from the same state).
      const chain = {
        off: {
          compiler: new Compiler(configs.off),
          rs: undefined as Ruleset | undefined,
          times: [] as number[],
        },
        on: {
          compiler: new Compiler(configs.on),
          rs: undefined as Ruleset | undefined,
          times: [] as number[],
        },
      };
      for (const which of ['off', 'on'] as const)
        chain[which].rs = chain[which].compiler.compile(state).ruleset;
      let prev = state;
      let ops = 0;
      /** Changes whose transaction text was the same off and on. */
      let sameText = 0;
      for (let k = 0; k < changes; k++) {
        const texts: string[] = [];
        const next = replaceOneEndpoint(prev, (Math.floor(n / 3) + k * 7919) % n, 2000 + k);
        // Which goes first alternates: a turn's order must not favour one.
        const turn = [
          ['off', off],
          ['on', on],
        ] as const;
        for (const [which, v] of k % 2 === 0 ? turn : [...turn].reverse()) {
          const c = chain[which];
          const nextRs = c.compiler.compile(next).ruleset;
          const tx = partialTransaction(c.rs!, nextRs);
          texts.push(tx.toString());
          const start = process.hrtime.bigint();
          await v.session.run(tx);
          c.times.push(ms(start));
          ops = tx.size;
          c.rs = nextRs;
        }
        if (texts.length === 2 && texts[0] === texts[1]) sameText++;
        prev = next;
      }
      ctx.say(`  one change, off: ${chain.off.times.map(fmtMs).join(', ')}`);
      ctx.say(`  one change, on: ${chain.on.times.map(fmtMs).join(', ')}`);
      const changeOff = median(chain.off.times);
      const changeOn = median(chain.on.times);

      // The scrape, against the counters-on namespace as the changes left it.
      const last = prev;
      const reader = new CounterReader({
        nft: on.session,
        table: TABLE,
        log: silentLogger(),
        clock: systemClock,
        maxAgeMs: 0,
        // A bench measures the read whole: no answering early with the last one.
        timeoutMs: 60_000,
        rules: () => ({ state: last, nodePortIPs: BENCH_COMPILE_CONFIG.nodePortIPs, since: Date.now() }),
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
      // As the daemon serves it: each scrape starts a read, waits for it at most
      // COUNTERS_TIMEOUT_MS, and otherwise answers with the last read (after a first one landed).
      const served = new CounterReader({
        nft: on.session,
        table: TABLE,
        log: silentLogger(),
        clock: systemClock,
        maxAgeMs: 0,
        rules: () => ({ state: last, nodePortIPs: BENCH_COMPILE_CONFIG.nodePortIPs, since: Date.now() }),
      });
      while ((await served.read()) === undefined);
      const servedMetrics = createMetrics();
      servedMetrics.serviceCounters(async () => (await served.read())?.ports);
      const servedScrapes: number[] = [];
      for (let r = 0; r < 3; r++) {
        const start = process.hrtime.bigint();
        await servedMetrics.registry.metrics();
        servedScrapes.push(ms(start));
      }
      // A change while a scrape runs: nft processes of their own, one event loop shared.
      const during: number[] = [];
      for (let k = 0; k < 3; k++) {
        const next = replaceOneEndpoint(prev, (k * 4099 + 17) % n, 3000 + k);
        const nextRs = chain.on.compiler.compile(next).ruleset;
        const scrape = metrics.registry.metrics();
        const start = process.hrtime.bigint();
        await on.session.run(partialTransaction(chain.on.rs!, nextRs));
        during.push(ms(start));
        await scrape;
        chain.on.rs = nextRs;
        prev = next;
      }

      const elements = (rs: Ruleset): number => rulesetSize(rs).elements;
      f('full_load_off_ms', wall(off));
      f('full_load_on_ms', wall(on));
      f('full_load_counter_set_ms', wall(set));
      f('full_load_off_nft_cpu_ms', cpu(off));
      f('full_load_on_nft_cpu_ms', cpu(on));
      f('full_load_counter_set_nft_cpu_ms', cpu(set));
      f('ratio_full_load_on_off', wall(on) / wall(off));
      f('ratio_full_load_cpu_on_off', cpu(on) / cpu(off));
      f('ratio_full_load_cpu_counter_set_off', cpu(set) / cpu(off));
      f('change_off_ms', changeOff);
      f('change_on_ms', changeOn);
      f('ratio_change_on_off', changeOn / changeOff);
      f('change_operations', ops);
      f('change_same_text', sameText);
      f('counters_read_ms', median(reads));
      f('scrape_ms', median(scrapes));
      f('scrape_served_ms', median(servedScrapes));
      f('scrape_series', series);
      f('scrape_bytes', body.length);
      f('change_during_scrape_ms', median(during));
      const met = (ok: boolean): string => (ok ? 'met' : 'NOT met');
      const r3 = (x: number): number => round(x, 3);
      lines.push(
        `service-counters: ${version}; ${n} Services × ${ENDPOINTS} (mixed); medians of ${rounds} full loads (interleaved) and ${changes} changes (in turns)`,
        `  full load: off ${fmtMs(wall(off))} (nft CPU ${fmtMs(cpu(off))}, ${elements(rsOff)} elements), on ${fmtMs(wall(on))} (nft CPU ${fmtMs(cpu(on))}; counters on 4 maps' elements, no element more): ratio ${r3(wall(on) / wall(off))} wall, ${r3(cpu(on) / cpu(off))} CPU`,
        `  the other design, a counter set keyed by frontend: ${fmtMs(wall(set))} (nft CPU ${fmtMs(cpu(set))}, ${elements(set.rs)} elements): ratio ${r3(wall(set) / wall(off))} wall, ${r3(cpu(set) / cpu(off))} CPU`,
        `  one change (${ops} operations, nft session): off ${fmtMs(changeOff)}, on ${fmtMs(changeOn)}, ratio ${r3(changeOn / changeOff)}; the same nft text off and on in ${sameText} of ${changes} changes`,
        `  scrape: kernel read ${fmtMs(median(reads))} (nft -j -p list of the counted maps, parsed and mapped), whole /metrics ${fmtMs(median(scrapes))} (${series} counter series, ${round(body.length / 1e6, 2)} MB)`,
        `  scrape as the daemon serves it (waits ${COUNTERS_TIMEOUT_MS} ms for a read, else answers with the last): ${fmtMs(median(servedScrapes))}`,
        `  one change while a scrape runs: ${fmtMs(median(during))} (alone: ${fmtMs(changeOn)})`,
      );
      if (!ctx.quick)
        lines.push(
          `  target on/off ≤ ${TARGET.ratio}: full load ${met(cpu(on) / cpu(off) <= TARGET.ratio)} (CPU), one change ${met(changeOn / changeOff <= TARGET.ratio)}; target scrape ≤ ${TARGET.scrapeMs} ms: ${met(median(servedScrapes) <= TARGET.scrapeMs)} as served, ${met(median(scrapes) <= TARGET.scrapeMs)} waiting for the whole read`,
        );
      return { figures, lines };
    } finally {
      clearInterval(alive);
      cleanup();
      process.removeListener('SIGINT', onSignal);
      process.removeListener('SIGTERM', onSignal);
    }
  },
};
