import type { ProxyConfig } from '../config-types.js';
import type { Logger } from '../log.js';
import { FileSource } from './file-source.js';
import { createKubeSource } from './kube-source.js';
import { loadKubeConfig } from './kubeconfig.js';
import { ObjectStore } from './object-store.js';
import type { SourceHandler } from './source.js';

/** Every object, read once from the configured source (for --once and --dry-run). */
export async function loadOnce(config: ProxyConfig, log: Logger): Promise<ObjectStore> {
  const store = new ObjectStore();
  if (config.source) {
    await new FileSource(config.source).start(store);
    return store;
  }
  const { kubeConfig } = loadKubeConfig({ kubeconfigPath: config.kubeconfig });
  const source = createKubeSource({ kubeConfig, nodeName: config.hostnameOverride, log });
  await new Promise<void>((resolve, reject) => {
    // The store as the handler, resolving once everything is listed.
    const handler: SourceHandler = {
      upsert: (kind, object) => store.upsert(kind, object),
      remove: (kind, namespace, name) => store.remove(kind, namespace, name),
      problem: (what, err) => store.problem(what, err),
      synced: () => {
        store.synced();
        resolve();
      },
    };
    source.start(handler).catch(reject);
  });
  await source.stop();
  return store;
}
