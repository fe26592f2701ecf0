import type { ProxyConfig } from '../config-types.js';
import type { Logger } from '../log.js';
import { FileSource } from './file-source.js';
import { ObjectStore } from './object-store.js';

/** Every object, read once from the configured source (for --once and --dry-run). */
export async function loadOnce(config: ProxyConfig, log: Logger): Promise<ObjectStore> {
  if (config.source) {
    const store = new ObjectStore();
    await new FileSource(config.source).start(store);
    return store;
  }
  // Loaded only here: client-node costs about a second to import, which --source, --cleanup
  // and --help should not pay.
  const { loadKubeConfig } = await import('./kubeconfig.js');
  const { createKubeSource } = await import('./kube-source.js');
  const { kubeConfig } = loadKubeConfig({ kubeconfigPath: config.kubeconfig });
  const source = createKubeSource({ kubeConfig, nodeName: config.hostnameOverride, log });
  let listed = (): void => undefined;
  const synced = new Promise<void>((resolve) => (listed = resolve));
  const store: ObjectStore = new ObjectStore({ onChange: () => store.isSynced && listed() });
  await Promise.all([synced, source.start(store)]);
  await source.stop();
  return store;
}
