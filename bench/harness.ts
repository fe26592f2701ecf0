import { spawnSync } from 'node:child_process';
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
  /** The command line's bench options (`--scale=...`), for the benches that take some. */
  args?: readonly string[];
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

/** A tool a bench needs: how to ask it for its version, and the Debian package that has it. */
export interface NeededTool {
  program: string;
  args: string[];
  pkg: string;
}
export const NFT: NeededTool = { program: 'nft', args: ['--version'], pkg: 'nftables' };
export const IP: NeededTool = { program: 'ip', args: ['-V'], pkg: 'iproute2' };
export const CONNTRACK: NeededTool = { program: 'conntrack', args: ['--version'], pkg: 'conntrack' };

/**
 * Why a bench that works in network namespaces cannot run here, or undefined: root (`why`
 * says what for), then each tool answering its version.
 */
export function missingRootOrTools(why: string, tools: NeededTool[]): string | undefined {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return `needs root (${why})`;
  for (const t of tools) {
    const r = spawnSync(t.program, t.args, { stdio: 'ignore', timeout: 10_000 });
    if (r.error || r.status !== 0) return `needs ${t.program} (apt-get install ${t.pkg})`;
  }
  return undefined;
}
