/**
 * source-once: the real built CLI, `--source DIR --once`, on issue #16's realistic mix (60 %
 * ClusterIP, 20 % NodePort, 15 % LoadBalancer with source ranges, 5 % eTP Local, 10 endpoints
 * each) at 10,000 and 30,000 Services in one YAML stream, in a throwaway network namespace.
 * Reported: wall and CPU time, the source read's share (the CLI's own `source read` debug line:
 * read and parse time), and the reference measured in the same run: `nft -f` of the same ruleset
 * (the CLI's `--dry-run` output) into the same, emptied namespace. The target is a `--once` within
 * twice that nft load at 10,000.
 *
 * 30,000 Services make 64 MB of YAML, past the 32 MiB a source file may have (PARSE_LIMITS): the
 * stream is then cut, at document boundaries, into as few files as fit, and the report says so.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PARSE_LIMITS } from '../src/watch/parse-documents.js';
import { CLUSTER_FLAGS, clusterFiles } from './cluster-yaml.js';
import { IP, missingRootOrTools, ms, NFT, round, type Bench, type BenchResult } from './harness.js';
import { withBenchNetns } from './nft-load.js';

const TARGET_RATIO = 2;
const TIME = '/usr/bin/time';
/** The built CLI: this file is dist/bench/source-once.js once built. */
const CLI = fileURLToPath(new URL('../src/cli.js', import.meta.url));

interface CliRun {
  wallMs: number;
  code: number;
  stdout: string;
  /** pino lines from stderr, parsed. */
  lines: Array<Record<string, unknown>>;
  userS: number | null;
  sysS: number | null;
}

/** Runs the CLI (in `ns` when given) and waits for it; stdout is kept, stderr parsed as pino lines. */
function runCli(args: string[], ns: string | undefined, statsDir: string): Promise<CliRun> {
  const stats = join(statsDir, 'cli-time');
  rmSync(stats, { force: true });
  const time = existsSync(TIME) ? [TIME, '-f', '%U %S', '-o', stats] : [];
  const argv = [...time, process.execPath, CLI, ...args];
  const [program, ...rest] = ns ? ['ip', 'netns', 'exec', ns, ...argv] : argv;
  return new Promise((resolve, reject) => {
    const start = process.hrtime.bigint();
    const child = spawn(program!, rest, {
      env: { ...process.env, LOG_LEVEL: 'debug' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', reject);
    child.on('close', (code) => {
      const wallMs = ms(start);
      const lines = Buffer.concat(err)
        .toString('utf8')
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      let userS: number | null = null;
      let sysS: number | null = null;
      if (existsSync(stats)) {
        const [u, s] = readFileSync(stats, 'utf8').trim().split('\n').pop()!.split(' ');
        userS = Number(u);
        sysS = Number(s);
      }
      resolve({ wallMs, code: code ?? -1, stdout: Buffer.concat(out).toString('utf8'), lines, userS, sysS });
    });
  });
}

const fmt = (x: number): string => (x >= 10_000 ? `${round(x / 1000, 1)} s` : `${Math.round(x)} ms`);

export const bench: Bench = {
  name: 'source-once',

  async unavailable() {
    if (!existsSync(CLI)) return `needs the built CLI (${CLI}): npm run build`;
    return missingRootOrTools('network namespaces and nftables need CAP_NET_ADMIN', [NFT, IP]);
  },

  async run(ctx): Promise<BenchResult> {
    const figures: BenchResult['figures'] = {};
    const lines: string[] = [];
    const sizes = ctx.quick ? [1000, 3000] : [10_000, 30_000];
    const work = mkdtempSync(join(tmpdir(), 'knp-bench-source-'));
    const wall: Record<number, number> = {};
    return withBenchNetns(
      async (ns, timed) => {
        for (const n of sizes) {
          const dir = join(work, String(n));
          rmSync(dir, { recursive: true, force: true });
          ctx.say(`${n}: generating the YAML`);
          // A little under the limit: the limit counts bytes, the generator characters (ASCII here).
          const files = clusterFiles(n, Math.floor(PARSE_LIMITS.maxBytes * 0.98));
          mkdirSync(dir);
          for (const [i, text] of files.entries()) writeFileSync(join(dir, `cluster-${i}.yaml`), text);
          const mb = files.reduce((sum, t) => sum + t.length, 0) / 1e6;
          const args = ['--source', dir, ...CLUSTER_FLAGS];

          ctx.say(`${n}: --source --once (${round(mb)} MB of YAML in ${files.length} file(s))`);
          ns.flush();
          const once = await runCli([...args, '--once'], ns.name, work);
          if (once.code !== 0)
            throw new Error(`--once at ${n} exited ${once.code}: ${JSON.stringify(once.lines.slice(-3))}`);
          const read = once.lines.find((l) => l.msg === 'source read') ?? {};
          const applied = once.lines.find((l) => l.msg === 'rules applied') ?? {};
          const parseMs = Number(read.parseMs ?? NaN);
          const readMs = Number(read.readMs ?? NaN);
          const byWorker = Number(read.byWorker ?? 0);

          ctx.say(`${n}: the same ruleset (--dry-run) through nft -f into the emptied namespace`);
          const dry = await runCli([...args, '--dry-run'], undefined, work);
          if (dry.code !== 0) throw new Error(`--dry-run at ${n} exited ${dry.code}`);
          ns.flush();
          const nft = await timed.load(dry.stdout, `the --dry-run ruleset at ${n}`);
          ns.flush();

          const ratio = once.wallMs / nft.wallMs;
          // What is not nft's: reading, parsing, the model, compiling, rendering, starting.
          const ownMs = once.wallMs - nft.wallMs;
          wall[n] = once.wallMs;
          const f = (name: string, value: number | string | null): void => {
            figures[`${name}@${n}`] = typeof value === 'number' ? round(value, 3) : value;
          };
          f('yaml_mb', round(mb));
          f('files', files.length);
          f('once_wall_ms', once.wallMs);
          f('once_user_s', once.userS);
          f('once_sys_s', once.sysS);
          f('read_ms', readMs);
          f('parse_ms', parseMs);
          f('parse_share', parseMs / once.wallMs);
          f('documents_by_worker', byWorker);
          f('load_average', loadavg()[0]!);
          f('nft_load_ms', nft.wallMs);
          f('ratio_once_to_nft_load', ratio);
          f('own_ms', ownMs);
          f('operations', Number(applied.operations ?? NaN));
          lines.push(
            `${n} Services × 10 endpoints (${round(mb)} MB of YAML${files.length > 1 ? `, cut into ${files.length} files by the ${PARSE_LIMITS.maxBytes / 2 ** 20} MiB file limit` : ', one file'}):`,
            `  --source --once: ${fmt(once.wallMs)} wall (CPU user ${once.userS} s, sys ${once.sysS} s; ${String(applied.operations)} operations)`,
            `  source read: parse ${fmt(parseMs)} (${round((100 * parseMs) / once.wallMs)} % of the wall; ${byWorker} documents read by the parse worker), read ${fmt(readMs)}`,
            `  load average: ${loadavg()
              .map((x) => round(x, 2))
              .join(', ')}`,
            `  reference, nft -f of the same ruleset (${round(dry.stdout.length / 1e6)} MB) in the same run: ${fmt(nft.wallMs)} (user ${nft.userS} s, sys ${nft.sysS} s)`,
            `  ratio --once / nft load: ${round(ratio, 2)} (--once's own part, the wall less the nft load: ${fmt(ownMs)})`,
          );
          if (n === 10_000) {
            const verdict = ratio <= TARGET_RATIO ? 'met' : 'NOT met';
            lines.push(`  target --once ≤ ${TARGET_RATIO}× the nft load: ${verdict}`);
            figures['target_once_vs_nft@10000'] = verdict;
          }
        }
        const [small, large] = sizes as [number, number];
        if (wall[small] && wall[large]) {
          const r = wall[large] / wall[small];
          figures[`ratio_once_${large}_to_${small}`] = round(r, 2);
          lines.push(`  --once ${large} / ${small}: ${round(r, 2)} (for ${large / small}× the Services)`);
        }
        return { figures, lines };
      },
      () => rmSync(work, { recursive: true, force: true }),
    );
  },
};
