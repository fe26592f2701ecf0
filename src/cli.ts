#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { buildConfig, usage } from './config.js';
import { ErrorCodes, hasCode, isNftMissing, isPermission, ProxyError } from './errors.js';
import { createLogger } from './log.js';
import { logSkipped } from './log-skipped.js';
import { hostAddresses } from './node-addresses.js';
import { rulesFor, stateFrom, type Environment } from './pipeline.js';
import { cleanupTables, NftApplier, renderRuleset } from './rules/apply.js';
import { createNft } from './rules/nft/exec.js';
import { probeNft } from './rules/nft/probe.js';
import { loadOnce } from './watch/load-once.js';

/** Exit codes: part of the command-line contract (README). */
export const EXIT = {
  OK: 0,
  /** A sync failed (nft rejected the transaction, the API server could not be read). */
  FAILED: 1,
  /** An invalid flag or config file. */
  USAGE: 2,
  /** nft is not installed. */
  NO_NFT: 3,
  /** Not allowed to change nftables (needs root / CAP_NET_ADMIN). */
  NO_PRIVILEGE: 4,
  /** --source cannot be read, or the API server credentials are unusable. */
  NO_SOURCE: 5,
} as const;

function exitCodeFor(err: unknown): number {
  if (hasCode(err, ErrorCodes.CONFIG_INVALID)) return EXIT.USAGE;
  if (isNftMissing(err) || hasCode(err, ErrorCodes.NFT_VERSION)) return EXIT.NO_NFT;
  if (isPermission(err)) return EXIT.NO_PRIVILEGE;
  if (hasCode(err, ErrorCodes.SOURCE_UNREADABLE) || hasCode(err, ErrorCodes.KUBECONFIG_INVALID))
    return EXIT.NO_SOURCE;
  return EXIT.FAILED;
}

async function main(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(`${usage()}\n`);
    return EXIT.OK;
  }
  if (argv.includes('--version')) {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
      version: string;
    };
    process.stdout.write(`kube-nftproxy ${pkg.version}\n`);
    return EXIT.OK;
  }
  const config = buildConfig(argv);
  const log = createLogger();
  const env: Environment = { localAddresses: hostAddresses() };
  const nft = createNft();

  if (config.cleanup) {
    await probeNft(nft);
    await cleanupTables(nft, config.tableName);
    log.info({ table: config.tableName }, 'deleted kube-nftproxy tables');
    return EXIT.OK;
  }
  if (config.dryRun || config.once) {
    // Refused before the whole cluster is read.
    if (config.proxyMode === 'userspace')
      throw new ProxyError(
        ErrorCodes.CONFIG_INVALID,
        '--once and --dry-run apply to --proxy-mode nftables only',
      );
    const store = await loadOnce(config, log);
    const state = stateFrom(store, config, env);
    logSkipped(log, state.skipped);
    const rules = rulesFor(state, config, env);
    logSkipped(log, rules.skipped);
    if (config.dryRun) {
      process.stdout.write(renderRuleset(rules));
      return EXIT.OK;
    }
    const { version } = await probeNft(nft);
    const result = await new NftApplier({ nft, log }).sync(rules, { full: true });
    log.info({ nft: version, ports: state.ports.length, operations: result.operations }, 'rules applied');
    return EXIT.OK;
  }
  const { runDaemon } = await import('./daemon.js');
  // The daemon's partial syncs go through one long-lived nft (NftSession): no process per sync.
  await runDaemon(config, { log, env, nft: createNft({ session: true }) });
  return EXIT.OK;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    const message = err instanceof Error ? err.message : String(err);
    process.stderr.write(`kube-nftproxy: ${message}\n`);
    process.exitCode = exitCodeFor(err);
  },
);
