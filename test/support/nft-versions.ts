import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseVersion } from '../../src/rules/nft/exec.js';
import { compareVersions } from '../../src/rules/nft/probe.js';

/**
 * Where `.ci/run` puts Debian trixie's nft 1.1.3 (scripts/nft-trixie.sh); `KNP_NEW_NFT` names
 * another nft >= 1.1.
 */
export const NEW_NFT_DEFAULT = '/var/tmp/kube-nftproxy-nft-trixie/bin/nft';

/** One nft binary, and a folder holding only it as `nft`, to put first on a command's PATH. */
export interface NftBinary {
  path: string;
  version: string;
  bin: string;
}

function binary(path: string): NftBinary | undefined {
  const r = spawnSync(path, ['--version'], { encoding: 'utf8', timeout: 10_000 });
  const version = r.status === 0 ? parseVersion(r.stdout) : undefined;
  if (version === undefined) return undefined;
  const bin = mkdtempSync(join(tmpdir(), 'knp-nft-bin-'));
  process.on('exit', () => rmSync(bin, { recursive: true, force: true }));
  symlinkSync(path, join(bin, 'nft'));
  return { path, version, bin };
}

/** An nft >= 1.1: `KNP_NEW_NFT`, else trixie's where .ci/run puts it. */
export function newNft(): NftBinary | undefined {
  const found = binary(process.env.KNP_NEW_NFT ?? NEW_NFT_DEFAULT);
  return found && compareVersions(found.version, '1.1') >= 0 ? found : undefined;
}

/** The system's nft when it is older than 1.1 (Debian bookworm's 1.0.6), the one that crashes. */
export function oldNft(): NftBinary | undefined {
  for (const path of ['/usr/sbin/nft', '/sbin/nft', '/usr/bin/nft']) {
    const found = binary(path);
    if (found) return compareVersions(found.version, '1.1') < 0 ? found : undefined;
  }
  return undefined;
}

/**
 * An nft >= 1.1 for a kernel test, or a skip that says how to get one; under CI=true a
 * failure, as .ci/run provides it.
 */
export function requireNewNft(ctx: Mocha.Context): NftBinary {
  const found = newNft();
  if (found) return found;
  const why = `this test needs an nft >= 1.1: run scripts/nft-trixie.sh ${NEW_NFT_DEFAULT.replace(/\/bin\/nft$/, '')}, or set KNP_NEW_NFT`;
  if (process.env.CI === 'true') throw new Error(`${why} (CI=true)`);
  process.stderr.write(`  skipped: ${why}\n`);
  ctx.skip();
}
