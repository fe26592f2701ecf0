/**
 * The benchmark contract: each bench module exports `bench: Bench`; bench/index.ts runs them
 * in order and prints figures (human) or one JSON object (`--json`). Ratios compare against a
 * reference measured in the same run, never against a number written down somewhere.
 */
export interface BenchContext {
  /** `--quick`: smaller sizes, for a smoke run. */
  quick: boolean;
  /** Progress lines go here (stderr), so `--json` stdout stays one object. */
  say(line: string): void;
}

export interface BenchResult {
  /** Figures by name: `{ 'compile_ms@10000': 123.4, ... }`. Units in the name. */
  figures: Record<string, number | string | null>;
  /** Lines for the human report (ratios, targets met or not). */
  lines: string[];
}

export interface Bench {
  name: string;
  /** Why this bench cannot run here (missing root, nft, haproxy), or undefined when it can. */
  unavailable?(): Promise<string | undefined>;
  run(ctx: BenchContext): Promise<BenchResult>;
}

export function ms(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e6;
}

export function peakRssMb(): number {
  return Math.round((process.resourceUsage().maxRSS / 1024) * 10) / 10;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

export function round(x: number, digits = 1): number {
  return Math.round(x * 10 ** digits) / 10 ** digits;
}
