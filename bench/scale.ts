/**
 * scale: do our costs grow in proportion to Services? Our layout only, at 10,000, 30,000 and
 * 50,000 Services × 10 endpoints (ClusterIP and the realistic mix of bench/states.ts), each
 * size's figures printed with its ratio to the 10,000 measured in the same run: 3.0 and 5.0 are
 * linear. kube-proxy's layout never runs here (170 s at 10,000 and superlinear: nft-load).
 *
 * - nft: compile (a fresh Compiler), render, the full load with the real `nft -f` in a throwaway
 *   namespace (nft's user and system CPU and peak RSS apart), one change (nft -f), and the full
 *   load again at once. Each with its kernel time per page fault: on this VM it grows with the
 *   memory a load touches (3–4 µs at 10,000, 6–13 µs at 50,000, the second load too), so the
 *   50,000 ratios hold the machine's cost of a page as well as ours.
 * - daemon: the whole daemon against the test API server holding the same Services as objects
 *   (bench/daemon-latency.ts measureDaemon): initial full sync, one EndpointSlice change →
 *   commit (median), and the binary's RSS after a quiet minute.
 *
 * `--scale=30000,50000` picks the sizes past the 10,000 reference (`--scale=none`: only it),
 * `--scale-part=nft` or `=daemon` one half, `--scale-kind=clusterip` or `=mixed` one kind. The
 * daemon runs the mix only unless `--scale-kind=all` (its figures per size cost a quiet minute
 * and two full syncs each). `--quick`: 1,000 and 3,000, ratios to 1,000.
 */
import type { ProxyState } from '../src/model/types.js';
import { Compiler } from '../src/rules/compile.js';
import { fullTransaction, partialTransaction } from '../src/rules/diff.js';
import { createNft } from '../src/rules/nft/exec.js';
import { rulesetSize } from '../src/rules/ruleset.js';
import { type DaemonFigures, type DaemonWorkload, measureDaemon, scrapeText } from './daemon-latency.js';
import {
  median,
  missingRootOrTools,
  ms,
  IP,
  NFT,
  round,
  type Bench,
  type BenchContext,
  type BenchResult,
} from './harness.js';
import { withBenchNetns, type Netns, type NftStats, type ProcessCost, type TimedExec } from './nft-load.js';
import { objectsOf, sliceOf } from './state-objects.js';
import { BENCH_COMPILE_CONFIG, BENCH_NET, clusterIpState, mixedState, replaceOneEndpoint } from './states.js';

const ENDPOINTS = 10;
/** Issue 16's targets at 50,000 Services × 10 through the daemon. */
const TARGET = { initialRatio: 5.5, changeMs: 20, rssMb: 600 } as const;
const KINDS = ['clusterip', 'mixed'] as const;
type Kind = (typeof KINDS)[number];

const stateOf = (kind: Kind, n: number): ProxyState =>
  kind === 'clusterip' ? clusterIpState(n, ENDPOINTS) : mixedState(n, ENDPOINTS);

const fmt = (x: number): string => (x >= 10_000 ? `${round(x / 1000, 2)} s` : `${round(x, 1)} ms`);

interface Options {
  sizes: number[];
  parts: Array<'nft' | 'daemon'>;
  nftKinds: Kind[];
  daemonKinds: Kind[];
}

function options(ctx: BenchContext): Options {
  const arg = (name: string): string | undefined =>
    ctx.args?.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
  const base = ctx.quick ? 1_000 : 10_000;
  const scale = arg('scale');
  const more =
    scale === 'none' ? [] : scale ? scale.split(',').map(Number) : ctx.quick ? [3_000] : [30_000, 50_000];
  if (more.some((n) => !Number.isInteger(n) || n <= 0))
    throw new Error(`--scale=${scale}: sizes, e.g. 30000,50000`);
  const part = arg('scale-part');
  const kind = arg('scale-kind');
  const kinds = (all: Kind[]): Kind[] =>
    kind === 'all' || kind === undefined ? all : KINDS.filter((k) => k === kind);
  return {
    sizes: [base, ...more.filter((n) => n !== base)],
    parts: part === 'nft' || part === 'daemon' ? [part] : ['nft', 'daemon'],
    nftKinds: kinds([...KINDS]),
    daemonKinds: kind === undefined ? ['mixed'] : kinds([...KINDS]),
  };
}

interface NftFigures {
  compileMs: number;
  renderMs: number;
  elements: number;
  textMb: number;
  /** The full load: what its nft process cost. */
  full: NftStats;
  /**
   * The same full load again at once, into the emptied namespace: nft then gets the pages the
   * first load just gave back. The same text, so the two differ only by what the machine makes
   * a page cost (costLine).
   */
  again: NftStats;
  changeNftMs: number;
}

/** One size of one kind through compile, render and the real nft. */
async function measureNft(timed: TimedExec, ns: Netns, state: ProxyState): Promise<NftFigures> {
  new Compiler(BENCH_COMPILE_CONFIG).compile(state); // warm-up: JIT, not measured
  const times: number[] = [];
  let compiler = new Compiler(BENCH_COMPILE_CONFIG);
  let rs = compiler.compile(state).ruleset;
  for (let i = 0; i < 3; i++) {
    compiler = new Compiler(BENCH_COMPILE_CONFIG);
    const start = process.hrtime.bigint();
    rs = compiler.compile(state).ruleset;
    times.push(ms(start));
  }
  const tx = fullTransaction(rs);
  const renderStart = process.hrtime.bigint();
  const text = tx.toString();
  const renderMs = ms(renderStart);
  const nft = createNft({ netns: ns.name, exec: timed.exec });
  ns.flush();
  await nft.run(tx);
  const full = timed.last!;
  const changes: number[] = [];
  let prevState = state;
  let prevRs = rs;
  for (let k = 0; k < 3; k++) {
    const next = replaceOneEndpoint(
      prevState,
      (Math.floor(state.ports.length / 2) + k * 7919) % state.ports.length,
      1000 + k,
    );
    const nextRs = compiler.compile(next).ruleset;
    await nft.run(partialTransaction(prevRs, nextRs));
    changes.push(timed.last!.wallMs);
    prevState = next;
    prevRs = nextRs;
  }
  ns.flush();
  await nft.run(tx);
  const again = timed.last!;
  ns.flush();
  return {
    compileMs: median(times),
    renderMs,
    elements: rulesetSize(rs).elements,
    textMb: round(text.length / 1e6, 1),
    full,
    again,
    changeNftMs: median(changes),
  };
}

/** The bench states as API objects; changes replace endpoint 0 of a Service by 100.64.x.y. */
function workload(kind: Kind, n: number): DaemonWorkload {
  const { ports } = stateOf(kind, n);
  return {
    services: n,
    nodeName: BENCH_NET.nodeName,
    nodeIP: BENCH_NET.nodeIP,
    serviceCIDR: BENCH_NET.serviceCIDR,
    clusterCIDR: BENCH_NET.clusterCIDR,
    fill(server) {
      const { services, slices } = objectsOf(ports);
      for (const s of services) server.create('Service', s);
      for (const s of slices) server.create('EndpointSlice', s);
    },
    change(c) {
      const sp = ports[(c * 997 + 13) % n]!;
      const fresh = `100.64.${(c >>> 8) & 255}.${c & 255}`;
      const eps = sp.allEndpoints.map((ep, j) => (j === 0 ? { ...ep, ip: fresh } : ep));
      return { name: `${sp.name}-a`, fresh, object: sliceOf(sp, eps) };
    },
  };
}

/** Kernel time per page fault in µs, '?' when unknown. */
const perFault = (sysS: number | null | undefined, faults: number | null | undefined): string =>
  sysS == null || !faults ? '?' : String(round((sysS * 1e6) / faults, 1));

/**
 * What a process cost during the initial sync: its CPU, and its page faults with the kernel
 * time per fault. The faults grow with the elements; what one costs depends on the machine (on
 * a VM that hands freed memory back to its host, a page not touched lately costs several times
 * more).
 */
function costLine(
  what: string,
  s: ProcessCost | undefined,
  ref: ProcessCost | undefined,
  r: (x: number, y: number) => string,
): string[] {
  if (!s || s.userS === null || s.sysS === null || !s.faults) return [];
  const of = (x: number, y: number | null | undefined): string => (y ? r(x, y) : '');
  return [
    `    ${what}: user ${s.userS} s${of(s.userS, ref?.userS)}, kernel ${s.sysS} s${of(s.sysS, ref?.sysS)}, ` +
      `${s.faults} page faults${of(s.faults, ref?.faults)}, ${perFault(s.sysS, s.faults)} µs of kernel time per fault` +
      (s.peakRssMb ? `; peak RSS ${s.peakRssMb} MB` : ''),
  ];
}

export const bench: Bench = {
  name: 'scale',

  async unavailable() {
    return missingRootOrTools('network namespaces and nftables need CAP_NET_ADMIN', [NFT, IP]);
  },

  async run(ctx): Promise<BenchResult> {
    const opt = options(ctx);
    const figures: BenchResult['figures'] = {};
    const lines: string[] = [];
    const base = opt.sizes[0]!;
    const ratio = (x: number, ref: number | undefined): string => (ref ? `${round(x / ref, 2)}×` : '');
    lines.push(
      `scale: our layout, ${opt.sizes.join(', ')} Services × ${ENDPOINTS} endpoints; ratios to ${base} in this run (linear: ${opt.sizes.map((n) => round(n / base, 1)).join(', ')})`,
    );

    if (opt.parts.includes('nft')) {
      await withBenchNetns(async (ns, timed) => {
        for (const kind of opt.nftKinds) {
          let ref: NftFigures | undefined;
          for (const n of opt.sizes) {
            ctx.say(`scale nft ${kind} ${n}`);
            const f = await measureNft(timed, ns, stateOf(kind, n));
            ref ??= f;
            const tag = `nft_${kind}`;
            figures[`${tag}_compile_ms@${n}`] = round(f.compileMs, 1);
            figures[`${tag}_render_ms@${n}`] = round(f.renderMs, 1);
            figures[`${tag}_full_load_ms@${n}`] = round(f.full.wallMs, 1);
            figures[`${tag}_nft_user_s@${n}`] = f.full.userS;
            figures[`${tag}_nft_sys_s@${n}`] = f.full.sysS;
            figures[`${tag}_nft_rss_mb@${n}`] = f.full.peakRssMb;
            figures[`${tag}_change_nft_ms@${n}`] = round(f.changeNftMs, 1);
            figures[`${tag}_full_load_again_ms@${n}`] = round(f.again.wallMs, 1);
            if (n !== base) {
              figures[`${tag}_full_load_ratio@${n}/${base}`] = round(f.full.wallMs / ref.full.wallMs, 2);
              figures[`${tag}_full_load_again_ratio@${n}/${base}`] = round(
                f.again.wallMs / ref.again.wallMs,
                2,
              );
            }
            const r = (x: number, y: number): string => (n === base ? '' : ` (${ratio(x, y)})`);
            const cpu = (x: number | null, y: number | null): string =>
              x === null ? '?' : `${x} s${y ? r(x, y) : ''}`;
            lines.push(
              `  nft ${kind} ${n}: ${f.elements} elements, ${f.textMb} MB of text; compile ${fmt(f.compileMs)}${r(f.compileMs, ref.compileMs)}, render ${fmt(f.renderMs)}${r(f.renderMs, ref.renderMs)}; ` +
                `full load (nft -f) ${fmt(f.full.wallMs)}${r(f.full.wallMs, ref.full.wallMs)}: user ${cpu(f.full.userS, ref.full.userS)}, kernel ${cpu(f.full.sysS, ref.full.sysS)}, ` +
                `nft peak RSS ${f.full.peakRssMb} MB${f.full.peakRssMb && ref.full.peakRssMb ? r(f.full.peakRssMb, ref.full.peakRssMb) : ''}; one change (nft -f) ${fmt(f.changeNftMs)}`,
              `    the same load again at once (the pages the first gave back): ${fmt(f.again.wallMs)}${r(f.again.wallMs, ref.again.wallMs)}, ` +
                `kernel ${cpu(f.again.sysS, ref.again.sysS)}; kernel time per page fault ${perFault(f.full.sysS, f.full.faults)} µs the first time, ${perFault(f.again.sysS, f.again.faults)} µs again`,
            );
          }
        }
      });
    }

    if (opt.parts.includes('daemon')) {
      for (const kind of opt.daemonKinds) {
        let ref: DaemonFigures | undefined;
        for (const n of opt.sizes) {
          ctx.say(`scale daemon ${kind} ${n}`);
          const f = await measureDaemon(ctx, workload(kind, n), {
            changes: ctx.quick ? 3 : 10,
            quietS: ctx.quick ? 5 : 60,
          });
          ref ??= f;
          const tag = `daemon_${kind}`;
          figures[`${tag}_initial_sync_ms@${n}`] = f.initial.totalMs;
          figures[`${tag}_initial_nft_ms@${n}`] = f.initial.nftMs;
          figures[`${tag}_initial_nft_user_s@${n}`] = f.initial.nft?.userS ?? null;
          figures[`${tag}_initial_nft_sys_s@${n}`] = f.initial.nft?.sysS ?? null;
          figures[`${tag}_initial_nft_page_faults@${n}`] = f.initial.nft?.faults ?? null;
          figures[`${tag}_initial_process_sys_s@${n}`] = f.initial.process.sysS;
          figures[`${tag}_initial_process_page_faults@${n}`] = f.initial.process.faults;
          figures[`${tag}_binary_initial_sync_ms@${n}`] = f.binaryInitialMs;
          figures[`${tag}_change_to_commit_ms_median@${n}`] = round(f.change.total, 1);
          figures[`${tag}_rss_mb_after_quiet@${n}`] = f.rss.afterQuiet;
          figures[`${tag}_rss_mb_peak_after_counters_scrape@${n}`] = f.scrape.counters
            ? f.scrape.peakAfter
            : null;
          figures[`${tag}_first_sync_cpu_s@${n}`] = f.cpu.ownS;
          figures[`${tag}_first_sync_nft_cpu_s@${n}`] = f.cpu.nftS;
          figures[`${tag}_rss_mb_peak@${n}`] = f.rss.peak;
          const r = (x: number, y: number): string => (n === base ? '' : ` (${ratio(x, y)})`);
          if (n !== base) {
            figures[`${tag}_initial_sync_ratio@${n}/${base}`] = round(
              f.initial.totalMs / ref.initial.totalMs,
              2,
            );
            figures[`${tag}_binary_initial_sync_ratio@${n}/${base}`] = round(
              f.binaryInitialMs / ref.binaryInitialMs,
              2,
            );
          }
          lines.push(
            `  daemon ${kind} ${n}: initial full sync ${fmt(f.initial.totalMs)}${r(f.initial.totalMs, ref.initial.totalMs)} = ` +
              `${fmt(f.initial.beforeNftMs)}${r(f.initial.beforeNftMs, ref.initial.beforeNftMs)} list+state+compile+render, ` +
              `${fmt(f.initial.nftMs)}${r(f.initial.nftMs, ref.initial.nftMs)} nft (${f.initial.operations} operations)`,
            ...costLine('its nft', f.initial.nft, ref.initial.nft, r),
            ...costLine(
              'this process (the daemon, idle while nft runs)',
              f.initial.process,
              ref.initial.process,
              r,
            ),
            `    the binary in its own process, over the rules the in-process daemon left (a restart), spawn → first sync committed: ${fmt(f.binaryInitialMs)}${r(f.binaryInitialMs, ref.binaryInitialMs)}`,
            `    one change → commit ${fmt(f.change.total)} median of ${f.changes} (max ${fmt(f.change.max)}): delivery ${fmt(f.change.delivery)}, sync CPU ${fmt(f.change.cpu)}, nft ${fmt(f.change.nft)}, ${f.change.ops} operations`,
            `    the binary, CPU to its first sync: ${f.cpu.ownS} s${r(f.cpu.ownS, ref.cpu.ownS)} its own (list, model, compile, render), ${f.cpu.nftS} s${r(f.cpu.nftS, ref.cpu.nftS)} its nft's`,
            `    RSS of the binary: ${f.rss.afterFull} MB after the full sync, ${f.rss.afterChanges} MB after ${f.changes} changes, ${f.rss.afterQuiet} MB after ${f.quietS} s quiet${r(f.rss.afterQuiet, ref.rss.afterQuiet)}; peak ${f.rss.peak} MB${r(f.rss.peak, ref.rss.peak)}`,
            `    then ${scrapeText(f.scrape)}: RSS ${f.scrape.rssAfter} MB after it, peak ${f.scrape.peakAfter} MB`,
          );
          if (n === 50_000) {
            const initialRatio = f.initial.totalMs / ref.initial.totalMs;
            const met = (ok: boolean): string => (ok ? 'met' : 'NOT met');
            lines.push(
              `    targets at 50,000: initial ≤ ${TARGET.initialRatio}× ${base}: ${met(base === 10_000 && initialRatio <= TARGET.initialRatio)} (${round(initialRatio, 2)}×); ` +
                `change → commit ≤ ${TARGET.changeMs} ms: ${met(f.change.total <= TARGET.changeMs)}; RSS after quiet ≤ ${TARGET.rssMb} MB: ${met(f.rss.afterQuiet <= TARGET.rssMb)}`,
            );
          }
        }
      }
    }
    return { figures, lines };
  },
};
