import type { ProxyConfig } from './config-types.js';
import { ErrorCodes, ProxyError } from './errors.js';
import type { Logger } from './log.js';
import type { Environment } from './pipeline.js';
import type { Nft } from './rules/nft/exec.js';

/** The long-running node daemon (issue 4). */
export async function runDaemon(
  _config: ProxyConfig,
  _deps: { log: Logger; env: Environment; nft: Nft },
): Promise<void> {
  throw new ProxyError(
    ErrorCodes.CONFIG_INVALID,
    'the daemon is not built yet: use --once, --dry-run or --cleanup',
  );
}
