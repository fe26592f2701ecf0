import type { ProxyConfig } from '../config-types.js';
import { ErrorCodes, ProxyError } from '../errors.js';
import type { Logger } from '../log.js';
import { FileSource } from './file-source.js';
import { ObjectStore } from './object-store.js';

/** Every object, read once from the configured source (for --once and --dry-run). */
export async function loadOnce(config: ProxyConfig, _log: Logger): Promise<ObjectStore> {
  const store = new ObjectStore();
  if (!config.source)
    throw new ProxyError(
      ErrorCodes.CONFIG_INVALID,
      '--once and --dry-run need --source until the API source lands',
    );
  await new FileSource(config.source).start(store);
  return store;
}
