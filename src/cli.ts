#!/usr/bin/env node
import { readFileSync, writeFileSync } from 'node:fs';
import { buildConfig, usage } from './config.js';
import { setConntrackSysctls } from './conntrack-sysctls.js';
import { createConntrack } from './conntrack/exec.js';
import { ErrorCodes, hasCode, isNftMissing, isPermission, ProxyError } from './errors.js';
import { createLogger, type Logger } from './log.js';
import { logSkipped } from './log-skipped.js';
import { effectiveKubeProxyConfig } from './kube-proxy-config.js';
import { cleanupLeftovers, KUBE_PROXY_TABLES, spawnProgram } from './kube-proxy-leftovers.js';
import { hostAddresses } from './node-addresses.js';
import { compileConfig, rulesFor, stateFrom, type Environment } from './pipeline.js';
import { Compiler } from './rules/compile.js';
import { containRefusal } from './rules/contain.js';
import { HeldOut } from './rules/held-out.js';
import { isRefusal, refusalReason } from './rules/isolate.js';
import { awaitingPodCIDRs } from './model/local-traffic.js';
import { cleanupTables, NftApplier } from './rules/applier.js';
import { traceTables } from './trace/trace-table.js';
import { renderRuleset } from './rules/diff.js';
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
  /** nft is not installed, too old, or crashes (nft < 1.1 on a table a newer nft wrote). */
  NO_NFT: 3,
  /** Not allowed to change nftables (needs root / CAP_NET_ADMIN). */
  NO_PRIVILEGE: 4,
  /** --source cannot be read, or the API server credentials are unusable or refused (401/403). */
  NO_SOURCE: 5,
  /** `explain`: the daemon knows no such Service. */
  NOT_FOUND: 6,
} as const;

/** The subcommand's line in the daemon's --help. */
const EXPLAIN_HELP =
  'Subcommand: kube-nftproxy explain NAMESPACE/NAME [--address HOST:PORT]: how the daemon on this\n' +
  'node programs one Service, read from its /debug/services (kube-nftproxy explain --help)';

function exitCodeFor(err: unknown): number {
  if (hasCode(err, ErrorCodes.CONFIG_INVALID)) return EXIT.USAGE;
  if (hasCode(err, ErrorCodes.EXPLAIN_SERVICE_NOT_FOUND)) return EXIT.NOT_FOUND;
  if (isNftMissing(err) || hasCode(err, ErrorCodes.NFT_VERSION) || hasCode(err, ErrorCodes.NFT_CRASHED))
    return EXIT.NO_NFT;
  if (isPermission(err)) return EXIT.NO_PRIVILEGE;
  if (
    hasCode(err, ErrorCodes.SOURCE_UNREADABLE) ||
    hasCode(err, ErrorCodes.KUBECONFIG_INVALID) ||
    hasCode(err, ErrorCodes.API_REFUSED)
  )
    return EXIT.NO_SOURCE;
  return EXIT.FAILED;
}

/**
 * kube-proxy's --oom-score-adj: the kernel kills the proxy last. Lowering it needs
 * CAP_SYS_RESOURCE, which the DaemonSet does not grant: then it says so and goes on.
 */
function setOomScoreAdj(value: number, log: Logger): void {
  try {
    writeFileSync('/proc/self/oom_score_adj', String(value));
  } catch (err) {
    log.warn({ err, value }, 'could not set oom_score_adj (needs CAP_SYS_RESOURCE to lower it); going on');
  }
}

async function main(argv: string[]): Promise<number> {
  // A subcommand is the first word; the daemon's flags never start with one, so they stay as
  // they were.
  if (argv[0] === 'explain') {
    const { runExplain } = await import('./explain/command.js');
    await runExplain(argv.slice(1), { write: (line) => process.stdout.write(`${line}\n`) });
    return EXIT.OK;
  }
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(`${usage()}\n\n${EXPLAIN_HELP}\n`);
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
  const log = createLogger({ level: process.env.LOG_LEVEL ?? config.logLevel });
  // kube-proxy's flags and config fields that do not act here: once each, before anything runs.
  for (const warning of config.warnings) log.warn(warning);
  if (config.writeConfigTo) {
    // Loaded here: the `yaml` package is start-up time every other run does without.
    const { stringify: stringifyYaml } = await import('yaml');
    writeFileSync(config.writeConfigTo, stringifyYaml(effectiveKubeProxyConfig(config)));
    log.info({ path: config.writeConfigTo }, 'wrote the effective configuration');
    return EXIT.OK;
  }
  if (config.oomScoreAdj !== undefined) setOomScoreAdj(config.oomScoreAdj, log);
  const env: Environment = { localAddresses: hostAddresses(), readLocalAddresses: () => hostAddresses() };
  const nft = createNft();

  if (config.cleanup) {
    await probeNft(nft);
    await cleanupTables(nft, config.tableName, [...KUBE_PROXY_TABLES, ...traceTables(config.tableName)]);
    log.info({ table: config.tableName }, "deleted kube-nftproxy's and kube-proxy's tables");
    const report = await cleanupLeftovers(spawnProgram(), log);
    log.info(report, "removed kube-proxy's iptables and IPVS leftovers");
    if (report.errors.length > 0) {
      log.error({ errors: report.errors }, 'some leftovers could not be removed');
      return EXIT.FAILED;
    }
    return EXIT.OK;
  }
  if (config.initOnly) {
    // kube-proxy's --init-only: the privileged steps, then exit; the daemon then needs only
    // CAP_NET_ADMIN. Its own run of the same steps finds everything set and writes nothing.
    const outcomes = await setConntrackSysctls(config.conntrack, { log });
    const count = (r: string): number => outcomes.filter((o) => o.result === r).length;
    log.info(
      { written: count('written'), unchanged: count('unchanged'), skipped: count('skipped') },
      'initialized (--init-only); exiting',
    );
    return EXIT.OK;
  }
  if (config.dryRun || config.once) {
    // Refused before the whole cluster is read.
    if (config.proxyMode === 'userspace')
      throw new ProxyError(
        ErrorCodes.CONFIG_INVALID,
        '--once and --dry-run apply to --proxy-mode nftables only',
      );
    // --once: nft is probed while the source is read (two short nft runs, 20-40 ms, that need
    // nothing of ours); its verdict is heard after the source's, in the same order as before.
    const probed = config.once ? probeNft(nft) : undefined;
    probed?.catch(() => undefined);
    const store = await loadOnce(config, log);
    const { state } = stateFrom(store, config, env);
    logSkipped(log, state.skipped);
    if (awaitingPodCIDRs(config.detectLocal, state.node))
      throw new ProxyError(
        ErrorCodes.NODE_POD_CIDRS_MISSING,
        `--detect-local-mode NodeCIDR: Node ${JSON.stringify(config.hostnameOverride)} has no spec.podCIDRs, so pod traffic cannot be told apart; give the Node with its podCIDRs (or check --hostname-override), or choose another --detect-local-mode`,
      );
    const rules = rulesFor(state, config, env);
    logSkipped(log, rules.skipped);
    if (config.dryRun) {
      process.stdout.write(renderRuleset(rules));
      return EXIT.OK;
    }
    const { version } = await probed!;
    const applier = new NftApplier({ nft, log, takeOver: KUBE_PROXY_TABLES });
    let operations: number;
    try {
      operations = (await applier.sync(rules, { full: true })).operations;
    } catch (err) {
      if (!isRefusal(err)) throw err;
      // As in the daemon: a Service nft refuses costs only itself (src/rules/contain.ts); it is
      // named with nft's reason, and everything else is applied.
      const compiler = new Compiler(compileConfig(state, config, env));
      const contained = await containRefusal(
        { nft, applier, compiler, heldOut: new HeldOut(), log },
        { state, view: state, rules, err },
      );
      logSkipped(
        log,
        contained.view.skipped.filter((s) => s.kind === 'Service' && contained.heldOut.has(s.name)),
      );
      log.warn(
        { refused: refusalReason(err), heldOut: [...contained.heldOut.keys()], checks: contained.checks },
        'nft refused some Services: applied everything else without them',
      );
      operations = contained.result.operations;
    }
    log.info({ nft: version, ports: state.ports.length, operations }, 'rules applied');
    return EXIT.OK;
  }
  const { runDaemon } = await import('./daemon.js');
  // The daemon's partial syncs go through one long-lived nft (NftSession): no process per sync.
  await runDaemon(config, {
    log,
    env,
    nft: createNft({ session: true }),
    leftovers: spawnProgram(),
    // Stale UDP conntrack entries are deleted with the host's conntrack (conntrack-tools).
    conntrack: createConntrack(),
    // nftables mode only (the daemon decides): the userspace proxy does not NAT through
    // conntrack, and runs on developer machines (tests, the demo) it has no business tuning.
    prepareNode: async () => {
      await setConntrackSysctls(config.conntrack, { log });
    },
  });
  return EXIT.OK;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    const message = err instanceof Error ? err.message : String(err);
    // Written synchronously (stderr is a file, pipe or terminal), so nothing is lost by exiting.
    process.stderr.write(`kube-nftproxy: ${message}\n`);
    // At once: a fatal error must not leave a process behind that answers probes while doing
    // nothing, whatever handle (a server, the nft session, a timer) would still keep it alive.
    process.exit(exitCodeFor(err));
  },
);
