import { spawnSync } from 'node:child_process';

/**
 * What a kernel test needs and this machine lacks, each with what to do about it; empty
 * when everything is there. Computed once per process.
 */
export function missingKernelCapabilities(): string[] {
  if (cached) return cached;
  const missing: string[] = [];
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) {
    missing.push('root (network namespaces and nftables need CAP_NET_ADMIN: run the tests as root)');
  }
  if (!runs('nft', ['--version'])) missing.push('nft (apt-get install nftables)');
  if (!runs('ip', ['-V'])) missing.push('ip (apt-get install iproute2)');
  cached = missing;
  return missing;
}

let cached: string[] | undefined;

function runs(cmd: string, args: string[]): boolean {
  const r = spawnSync(cmd, args, { stdio: 'ignore', timeout: 10_000 });
  return r.error === undefined && r.status === 0;
}

/**
 * Skips the calling test or suite (call it from `before`/`it` with `this`) when the machine
 * cannot run kernel tests, saying what is missing. Under CI=true a missing capability is a
 * failure, not a skip: CI must run the kernel tests.
 */
export function requireKernel(ctx: Mocha.Context): void {
  const missing = missingKernelCapabilities();
  if (missing.length === 0) return;
  const why = `kernel test needs: ${missing.join(', ')}`;
  if (process.env.CI === 'true') throw new Error(`${why} (CI=true: a required capability is missing)`);
  process.stderr.write(`  skipped: ${why}\n`);
  ctx.skip();
}

/**
 * Skips the calling test or suite when the `conntrack` program (conntrack-tools) is missing,
 * saying what to install; under CI=true that is a failure, as for requireKernel.
 */
export function requireConntrack(ctx: Mocha.Context): void {
  conntrackMissing ??= !runs('conntrack', ['--version']);
  if (!conntrackMissing) return;
  const why = 'kernel test needs: conntrack (apt-get install conntrack)';
  if (process.env.CI === 'true') throw new Error(`${why} (CI=true: a required capability is missing)`);
  process.stderr.write(`  skipped: ${why}\n`);
  ctx.skip();
}

let conntrackMissing: boolean | undefined;
