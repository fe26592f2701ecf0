import type { Bench, BenchResult } from './harness.js';

// Each bench registers here; order is the order they run and print.
const loaders: Array<() => Promise<{ bench: Bench }>> = [
  () => import('./userspace.js'),
  () => import('./nft-load.js'),
  () => import('./daemon-latency.js'),
];

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const json = args.includes('--json');
  const quick = args.includes('--quick');
  const only = args.find((a) => a.startsWith('--only='))?.slice('--only='.length);
  const out: Record<string, BenchResult['figures'] | { skipped: string }> = {};
  const say = (line: string): void => void process.stderr.write(`${line}\n`);
  for (const load of loaders) {
    const { bench } = await load();
    if (only && bench.name !== only) continue;
    const why = await bench.unavailable?.();
    if (why) {
      say(`${bench.name}: skipped: ${why}`);
      out[bench.name] = { skipped: why };
      continue;
    }
    say(`== ${bench.name}`);
    const result = await bench.run({ quick, say });
    out[bench.name] = result.figures;
    if (!json) for (const line of result.lines) process.stdout.write(`${line}\n`);
  }
  if (json) process.stdout.write(`${JSON.stringify(out)}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
});
