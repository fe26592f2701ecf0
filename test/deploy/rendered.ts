import path from 'node:path';
import type {
  V1ClusterRole,
  V1ClusterRoleBinding,
  V1ConfigMap,
  V1Container,
  V1DaemonSet,
} from '@kubernetes/client-node';
import { repoRoot } from '../support/build-output.js';
import { renderKustomization, type KubeObject } from '../support/kustomize.js';

/** manifests/ as `kubectl apply -k manifests/` would send it, with typed access to its parts. */
export interface Rendered {
  objects: KubeObject[];
  daemonSet: V1DaemonSet;
  container: V1Container;
  clusterRole: V1ClusterRole;
  binding: V1ClusterRoleBinding;
  configMap: V1ConfigMap;
}

export const manifestsDir = path.join(repoRoot, 'manifests');

/** The one object of a kind; throws when there is none or more than one. */
export function only<T>(objects: KubeObject[], kind: string): T {
  const found = objects.filter((o) => o.kind === kind);
  if (found.length !== 1) throw new Error(`expected one ${kind} in manifests/, found ${found.length}`);
  return found[0] as unknown as T;
}

export function render(): Rendered {
  const objects = renderKustomization(manifestsDir);
  const daemonSet = only<V1DaemonSet>(objects, 'DaemonSet');
  const containers = daemonSet.spec?.template.spec?.containers ?? [];
  if (containers.length !== 1)
    throw new Error(`expected one container in the DaemonSet, found ${containers.length}`);
  return {
    objects,
    daemonSet,
    container: containers[0]!,
    clusterRole: only<V1ClusterRole>(objects, 'ClusterRole'),
    binding: only<V1ClusterRoleBinding>(objects, 'ClusterRoleBinding'),
    configMap: only<V1ConfigMap>(objects, 'ConfigMap'),
  };
}

/** `--name=value` args as a map; throws on an arg of another shape (a bare value, `--name value`). */
export function flagArgs(args: string[]): Map<string, string | true> {
  const flags = new Map<string, string | true>();
  for (const arg of args) {
    const m = /^(--[a-z0-9][a-z0-9-]*)(?:=(.*))?$/s.exec(arg);
    if (!m) throw new Error(`arg '${arg}' is not --flag or --flag=value`);
    flags.set(m[1]!, m[2] ?? true);
  }
  return flags;
}
