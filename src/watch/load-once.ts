import type { ProxyConfig } from '../config-types.js';
import type { Logger } from '../log.js';
import { FileSource } from './file-source.js';
import { createKubeSource } from './kube-source.js';
import { loadKubeConfig } from './kubeconfig.js';
import { ObjectStore } from './object-store.js';

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
    const synced = store.synced.bind(store);
    store.synced = () => {
      synced();
      resolve();
    };
    source.start(store).catch(reject);
  });
  await source.stop();
  return store;
}
