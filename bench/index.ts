import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Bench, BenchResult } from './harness.js';

// Each bench registers here; order is the order they run and print.
const loaders: Array<{ name: string; load: () => Promise<{ bench: Bench }> }> = [
  { name: 'userspace', load: () => import('./userspace.js') },
  { name: 'nft-load', load: () => import('./nft-load.js') },
  { name: 'daemon-latency', load: () => import('./daemon-latency.js') },
  { name: 'isolate', load: () => import('./isolate.js') },
  { name: 'conntrack-cleanup', load: () => import('./conntrack-cleanup.js') },
  { name: 'maglev-frontends', load: () => import('./maglev-frontends.js') },
  { name: 'parse-limits', load: () => import('./parse-limits.js') },
  { name: 'source-once', load: () => import('./source-once.js') },
  { name: 'service-counters', load: () => import('./service-counters.js') },
  { name: 'scale', load: () => import('./scale.js') },
];

type Figures = Record<string, BenchResult['figures'] | { skipped: string }>;

/** One bench in this process: its lines to stdout (or its figures, for --json). */
async function runOne(name: string, quick: boolean, json: boolean, args: string[]): Promise<Figures> {
  const entry = loaders.find((l) => l.name === name);
  if (!entry) throw new Error(`no bench named ${name}; there are ${loaders.map((l) => l.name).join(', ')}`);
  const { bench } = await entry.load();
  const say = (line: string): void => void process.stderr.write(`${line}\n`);
  const why = await bench.unavailable?.();
  if (why) {
    say(`${bench.name}: skipped: ${why}`);
    return { [bench.name]: { skipped: why } };
  }
  say(`== ${bench.name}`);
  const result = await bench.run({ quick, say, args });
  if (!json) for (const line of result.lines) process.stdout.write(`${line}\n`);
  return { [bench.name]: result.figures };
}

/**
 * Every bench in a process of its own, one after the other: memory figures (the daemon's RSS)
 * would otherwise include what earlier benches left committed in this process. The child
 * prints its report to our stdout and sends its figures over the IPC channel.
 */
function runChild(name: string, args: string[]): Promise<Figures> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [...process.execArgv, fileURLToPath(import.meta.url), `--only=${name}`, ...args],
      { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] },
    );
    let figures: Figures = {};
    child.on('message', (m) => (figures = m as Figures));
    child.on('error', reject);
    child.on('close', (code) =>
      code === 0 ? resolve(figures) : reject(new Error(`bench ${name} failed (exit ${code})`)),
    );
  });
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const json = args.includes('--json');
  const quick = args.includes('--quick');
  const only = args.find((a) => a.startsWith('--only='))?.slice('--only='.length);
  if (only) {
    const figures = await runOne(only, quick, json, args);
    if (process.send) process.send(figures);
    else if (json) process.stdout.write(`${JSON.stringify(figures)}\n`);
    return;
  }
  const out: Figures = {};
  const pass = [
    ...(quick ? ['--quick'] : []),
    ...(json ? ['--json'] : []),
    ...args.filter((a) => a.startsWith('--scale')),
  ];
  for (const { name } of loaders) Object.assign(out, await runChild(name, pass));
  if (json) process.stdout.write(`${JSON.stringify(out)}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
});
