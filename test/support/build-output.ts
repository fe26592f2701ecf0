import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** The repository root (this file is test/support/build-output.ts). */
export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

let built: Promise<string> | undefined;

/**
 * `npm run build` (tsc -p tsconfig.build.json) into a temporary outDir, once per test run: the
 * tests see exactly what the build produces without touching the shared dist/. Resolves to that
 * outDir (it holds src/, like dist/ does); rejects with tsc's output when the build fails, as
 * the image build would.
 */
export function buildOnce(): Promise<string> {
  built ??= (async () => {
    const outDir = mkdtempSync(path.join(tmpdir(), 'kube-nftproxy-build-'));
    process.once('exit', () => rmSync(outDir, { recursive: true, force: true }));
    const tsc = path.join(repoRoot, 'node_modules', '.bin', 'tsc');
    try {
      await run(tsc, ['-p', 'tsconfig.build.json', '--outDir', outDir], {
        cwd: repoRoot,
        maxBuffer: 16 << 20,
      });
    } catch (err) {
      const e = err as { stdout?: string; stderr?: string };
      throw new Error(`tsc -p tsconfig.build.json failed:\n${e.stdout ?? ''}${e.stderr ?? ''}`, {
        cause: err,
      });
    }
    return outDir;
  })();
  return built;
}
