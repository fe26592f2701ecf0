import type { ProxyConfig } from '../config-types.js';
import { ErrorCodes, ProxyError } from '../errors.js';
import type { Logger } from '../log.js';
import { FileSource } from './file-source.js';
import { ObjectStore } from './object-store.js';
import type { SourceHandler } from './source.js';

/** Every object, read once from the configured source (for --once and --dry-run). */
export async function loadOnce(config: ProxyConfig, log: Logger): Promise<ObjectStore> {
  if (config.source) {
    const store = new ObjectStore();
    // Read once: no re-read will compare the files' hashes.
    await new FileSource(config.source, { log: log.child({ component: 'source' }), rereads: false }).start(
      store,
    );
    return store;
  }
  // Loaded only here: client-node costs about a second to import, which --source, --cleanup
  // and --help should not pay.
  const { loadKubeConfig } = await import('./kubeconfig.js');
  const { createKubeSource } = await import('./kube-source.js');
  const { kubeConfig } = loadKubeConfig({ kubeconfigPath: config.kubeconfig });
  const source = createKubeSource({ kubeConfig, nodeName: config.hostnameOverride, log });
  let listed = (): void => undefined;
  let refused = (_err: ProxyError): void => undefined;
  const synced = new Promise<void>((resolve, reject) => {
    listed = resolve;
    refused = reject;
  });
  const store: ObjectStore = new ObjectStore({ onChange: () => store.isSynced && listed() });
  // A refusal ends a one-shot read at once: retrying would wait forever for a role to appear.
  const handler: Required<SourceHandler> = {
    upsert: (kind, object) => store.upsert(kind, object),
    remove: (kind, namespace, name) => store.remove(kind, namespace, name),
    synced: () => store.synced(),
    unreadable: (files) => store.unreadable(files),
    problem: () => undefined,
    denied: (kind, problem) => {
      if (!problem) return;
      refused(
        new ProxyError(
          ErrorCodes.API_REFUSED,
          `${kind}: the API server refuses to ${problem.verb} ${problem.resource} (HTTP ${problem.status}); ${problem.action}`,
        ),
      );
    },
  };
  try {
    await Promise.all([synced, source.start(handler)]);
  } finally {
    await source.stop();
  }
  return store;
}
