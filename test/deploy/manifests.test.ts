import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { DaemonSet } from 'kubernetes-models/apps/v1';
import { ClusterRole, ClusterRoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1';
import { ConfigMap, ServiceAccount } from 'kubernetes-models/v1';
import { parse, parseAllDocuments, stringify } from 'yaml';
import type { V1DaemonSet } from '@kubernetes/client-node';
import { buildConfig, configFileFlags, parseArgs } from '../../src/config.js';
import { repoRoot } from '../support/build-output.js';
import { isClusterScoped, renderKustomization, type KubeObject } from '../support/kustomize.js';
import { unknownFields } from '../support/unknown-fields.js';
import { flagArgs, manifestsDir, render } from './rendered.js';

const run = promisify(execFile);

/** Schema validation (kubernetes-models) per kind; a kind not listed here fails the test. */
const MODELS: Record<string, (o: KubeObject) => { validate(): void }> = {
  ServiceAccount: (o) => new ServiceAccount(o as never),
  ClusterRole: (o) => new ClusterRole(o as never),
  ClusterRoleBinding: (o) => new ClusterRoleBinding(o as never),
  ConfigMap: (o) => new ConfigMap(o as never),
  DaemonSet: (o) => new DaemonSet(o as never),
};

/** `kubectl kustomize dir`, parsed; undefined when kubectl is not installed. */
async function kubectlKustomize(dir: string): Promise<KubeObject[] | undefined> {
  try {
    const { stdout } = await run('kubectl', ['kustomize', dir], { maxBuffer: 16 << 20 });
    return parseAllDocuments(stdout).map((d) => d.toJS() as KubeObject);
  } catch (err) {
    if ((err as { code?: unknown }).code === 'ENOENT') return undefined;
    throw err;
  }
}

const byId = (o: KubeObject): string => `${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`;
const sortById = (objects: KubeObject[]): KubeObject[] =>
  [...objects].sort((a, b) => (byId(a) < byId(b) ? -1 : 1));

describe('manifests/ (kubectl apply -k)', function () {
  const { objects, daemonSet, container, configMap } = render();
  const pod = daemonSet.spec!.template.spec!;

  it('holds a ServiceAccount, a ClusterRole and its binding, a ConfigMap and a DaemonSet, nothing else', function () {
    assert.deepEqual(objects.map((o) => o.kind).sort(), [
      'ClusterRole',
      'ClusterRoleBinding',
      'ConfigMap',
      'DaemonSet',
      'ServiceAccount',
    ]);
    for (const o of objects) assert.equal(o.metadata.name, 'kube-nftproxy', byId(o));
  });

  it('every object is valid against the Kubernetes schema', function () {
    for (const o of objects) {
      const model = MODELS[o.kind];
      assert.ok(model, `no schema for ${o.kind}: add it to MODELS`);
      assert.doesNotThrow(() => model(o).validate(), byId(o));
    }
  });

  it('no object has a field the Kubernetes API does not define (a typo would be dropped silently)', function () {
    for (const o of objects) assert.deepEqual(unknownFields(o, `V1${o.kind}`), [], byId(o));
  });

  it('renders as kubectl kustomize does', async function () {
    this.timeout(30_000);
    let out: string;
    try {
      ({ stdout: out } = await run('kubectl', ['kustomize', manifestsDir], { maxBuffer: 16 << 20 }));
    } catch (err) {
      if ((err as { code?: unknown }).code === 'ENOENT') {
        process.stderr.write(
          '    skipped: kubectl is not installed; the renderer is checked on machines that have it\n',
        );
        this.skip();
      }
      throw err;
    }
    const real = parseAllDocuments(out).map((d) => d.toJS() as KubeObject);
    assert.deepEqual(sortById(objects), sortById(real));
  });

  it('namespaced objects land in kube-system, cluster-scoped ones have no namespace', function () {
    for (const o of objects) {
      assert.equal(o.metadata.namespace, isClusterScoped(o.kind) ? undefined : 'kube-system', byId(o));
    }
  });

  it("the DaemonSet's references resolve: ServiceAccount, ConfigMap, and the --config file in it", function () {
    assert.equal(pod.serviceAccountName, 'kube-nftproxy');
    assert.ok(objects.some((o) => o.kind === 'ServiceAccount' && o.metadata.name === pod.serviceAccountName));

    const configVolume = pod.volumes?.find((v) => v.configMap);
    assert.equal(configVolume?.configMap?.name, configMap.metadata!.name);
    const mount = container.volumeMounts?.find((m) => m.name === configVolume!.name);
    assert.ok(mount, 'the ConfigMap volume is mounted');
    assert.equal(mount.readOnly, true);
    const configFlag = flagArgs(container.args ?? []).get('--config');
    assert.equal(typeof configFlag, 'string', '--config=FILE is passed');
    const file = configFlag as string;
    assert.equal(path.posix.dirname(file), mount.mountPath);
    assert.ok(
      configMap.data?.[path.posix.basename(file)],
      `the ConfigMap has a key ${path.posix.basename(file)}`,
    );
  });

  it('runs on every node, in the host network namespace, as a node-critical pod', function () {
    assert.equal(pod.hostNetwork, true);
    assert.equal(pod.priorityClassName, 'system-node-critical');
    assert.deepEqual(pod.tolerations, [{ operator: 'Exists' }]);
    assert.deepEqual(daemonSet.spec!.updateStrategy, {
      type: 'RollingUpdate',
      rollingUpdate: { maxUnavailable: 1 },
    });
    assert.deepEqual(daemonSet.spec!.selector.matchLabels, daemonSet.spec!.template.metadata!.labels);
  });

  it('is not privileged: root with NET_ADMIN only, read-only root filesystem', function () {
    const sc = container.securityContext!;
    assert.equal(sc.privileged, false);
    assert.equal(sc.allowPrivilegeEscalation, false);
    assert.equal(sc.readOnlyRootFilesystem, true);
    assert.deepEqual(sc.capabilities, { drop: ['ALL'], add: ['NET_ADMIN'] });
    assert.equal(pod.hostPID, undefined);
    assert.equal(pod.hostIPC, undefined);
  });

  it('sets the conntrack sysctls in a privileged --init-only init container, from the same image and config', function () {
    const init = pod.initContainers ?? [];
    assert.equal(init.length, 1);
    const c = init[0]!;
    assert.equal(c.image, container.image);
    assert.equal(c.command, undefined, 'the image ENTRYPOINT runs it');
    const flags = flagArgs(c.args ?? []);
    assert.deepEqual([...flags.keys()].sort(), ['--config', '--init-only']);
    assert.equal(parseArgs(c.args!).get('init-only'), 'true');
    // The same file as the daemon's: it finds every value set and needs no privilege.
    assert.equal(flags.get('--config'), flagArgs(container.args ?? []).get('--config'));
    const configMount = (m: { name: string }) => m.name === pod.volumes?.find((v) => v.configMap)?.name;
    assert.deepEqual(c.volumeMounts?.find(configMount), container.volumeMounts?.find(configMount));
    assert.deepEqual(c.securityContext, { privileged: true });
  });

  it('mounts the host read-only, /lib/modules only, and no xtables lock', function () {
    const hostPaths = (pod.volumes ?? []).filter((v) => v.hostPath);
    assert.deepEqual(
      hostPaths.map((v) => v.hostPath!.path),
      ['/lib/modules'],
    );
    for (const v of hostPaths) {
      const mounts = (container.volumeMounts ?? []).filter((m) => m.name === v.name);
      assert.ok(mounts.length > 0, `${v.name} is mounted`);
      for (const m of mounts) assert.equal(m.readOnly, true, `${v.name} at ${m.mountPath}`);
    }
    assert.equal(container.volumeMounts?.find((m) => m.name === 'lib-modules')?.mountPath, '/lib/modules');
  });

  it('knows its node by name from the downward API', function () {
    const env = container.env ?? [];
    const nodeName = env.find((e) => e.name === 'NODE_NAME');
    assert.deepEqual(nodeName?.valueFrom, { fieldRef: { fieldPath: 'spec.nodeName' } });
    assert.equal(flagArgs(container.args ?? []).get('--hostname-override'), '$(NODE_NAME)');
  });

  it('documents the API server address (KUBERNETES_SERVICE_HOST/_PORT) instead of guessing one', function () {
    const env = (container.env ?? []).map((e) => e.name);
    assert.ok(!env.includes('KUBERNETES_SERVICE_HOST'), 'no cluster-specific address is baked in');
    const text = readFileSync(path.join(manifestsDir, 'daemonset.yaml'), 'utf8');
    const docs = readFileSync(path.join(repoRoot, 'docs', 'deploy.md'), 'utf8');
    for (const name of ['KUBERNETES_SERVICE_HOST', 'KUBERNETES_SERVICE_PORT']) {
      assert.match(text, new RegExp(`#.*${name}`), `daemonset.yaml shows ${name}`);
      assert.match(docs, new RegExp(name), `docs/deploy.md explains ${name}`);
    }
  });

  it('requests 100m CPU and 64Mi, and has a memory limit', function () {
    assert.deepEqual(container.resources?.requests, { cpu: '100m', memory: '64Mi' });
    const limit = container.resources?.limits?.memory;
    assert.ok(typeof limit === 'string' && mebibytes(limit) >= 64, `memory limit ${limit}`);
    const heap = (container.env ?? []).find((e) => e.name === 'NODE_OPTIONS')?.value;
    const maxOld = /--max-old-space-size=(\d+)/.exec(heap ?? '');
    if (maxOld) assert.ok(Number(maxOld[1]) < mebibytes(limit), 'the V8 heap cap is below the memory limit');
  });

  it("runs this release's image, pinned by tag", function () {
    const pkg = JSON.parse(readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as { version: string };
    assert.equal(container.image, `kube-nftproxy:${pkg.version}`);
  });
});

describe('manifests/cleanup/ (rollback: kube-nftproxy --cleanup on every node)', function () {
  const dir = path.join(manifestsDir, 'cleanup');
  const objects = renderKustomization(dir);
  const main = render();
  const ds = objects.find((o) => o.kind === 'DaemonSet') as unknown as V1DaemonSet;

  it('is one DaemonSet, valid, with no unknown field, rendered as kubectl kustomize does', async function () {
    this.timeout(30_000);
    assert.deepEqual(
      objects.map((o) => o.kind),
      ['DaemonSet'],
    );
    assert.doesNotThrow(() => new DaemonSet(objects[0] as never).validate());
    assert.deepEqual(unknownFields(objects[0], 'V1DaemonSet'), []);
    const real = await kubectlKustomize(dir);
    if (real === undefined) return; // compared where kubectl is installed; the checks above stand alone
    assert.deepEqual(sortById(objects), sortById(real));
  });

  it('runs --cleanup, a flag the CLI accepts, from the same image, on every node, with NET_ADMIN only', function () {
    const pod = ds.spec!.template.spec!;
    const init = pod.initContainers ?? [];
    assert.equal(init.length, 1);
    assert.deepEqual(init[0]!.args, ['--cleanup']);
    assert.equal(parseArgs(init[0]!.args!).get('cleanup'), 'true');
    assert.equal(init[0]!.command, undefined, 'the image ENTRYPOINT runs it');
    assert.equal(init[0]!.image, main.container.image);
    assert.deepEqual(init[0]!.securityContext?.capabilities, { drop: ['ALL'], add: ['NET_ADMIN'] });
    assert.equal(pod.hostNetwork, true);
    assert.deepEqual(pod.tolerations, [{ operator: 'Exists' }]);
    assert.equal(pod.automountServiceAccountToken, false);
    for (const c of pod.containers) assert.equal(c.securityContext?.capabilities?.add, undefined, c.name);
  });
});

describe('manifests/configmap.yaml: the KubeProxyConfiguration', function () {
  const { configMap, container } = render();
  const configPath = flagArgs(container.args ?? []).get('--config') as string;
  const text = configMap.data![path.posix.basename(configPath)]!;
  const config = parse(text) as Record<string, unknown>;
  const flagsFrom = (doc: unknown): Map<string, string> => configFileFlags(configPath, () => stringify(doc));

  it('is a kubeproxy.config.k8s.io/v1alpha1 KubeProxyConfiguration', function () {
    assert.equal(config.apiVersion, 'kubeproxy.config.k8s.io/v1alpha1');
    assert.equal(config.kind, 'KubeProxyConfiguration');
  });

  it('sets only fields the daemon reads (src/config.ts ignores the others without a word)', function () {
    const base = flagsFrom(config);
    for (const key of leafPaths(config)) {
      if (key === 'apiVersion' || key === 'kind') continue;
      const value = getPath(config, key);
      // read = removing it, or (a boolean) flipping it, changes what the daemon takes from the file
      const without = flagsFrom(setPath(structuredClone(config), key, undefined));
      const flipped =
        typeof value === 'boolean' ? flagsFrom(setPath(structuredClone(config), key, !value)) : base;
      const read = !sameMap(base, without) || !sameMap(base, flipped);
      assert.ok(read, `${key} is not read by kube-nftproxy (or another field overrides it)`);
    }
  });

  it('loads, with the DaemonSet args, into the configuration the manifests expect', function () {
    const dir = mkdtempSync(path.join(tmpdir(), 'kube-nftproxy-config-'));
    try {
      const file = path.join(dir, 'config.yaml');
      writeFileSync(file, text);
      const args = (container.args ?? []).map((a) =>
        a.replace('$(NODE_NAME)', 'node-a').replace(`--config=${configPath}`, `--config=${file}`),
      );
      const resolved = buildConfig(args, {});
      const port = container.ports?.find((p) => p.name === 'healthz')?.containerPort;
      assert.equal(resolved.hostnameOverride, 'node-a');
      assert.equal(resolved.proxyMode, 'nftables');
      assert.equal(resolved.healthzBindAddress, `0.0.0.0:${port}`);
      assert.equal(resolved.metricsBindAddress, '127.0.0.1:10249');
      assert.deepEqual(resolved.clusterCIDRs, ['10.244.0.0/16']);
      assert.equal(resolved.nodePortAddresses, 'primary');
      assert.equal(resolved.masqueradeAll, false);
      assert.equal(resolved.syncPeriodMs, 30_000);
      assert.equal(resolved.minSyncPeriodMs, 1_000);
      // kube-proxy's conntrack defaults, spelled out.
      assert.deepEqual(resolved.conntrack, buildConfig([], {}).conntrack);
      assert.equal(resolved.initOnly, false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

function leafPaths(o: Record<string, unknown>, prefix = ''): string[] {
  return Object.entries(o).flatMap(([k, v]) =>
    typeof v === 'object' && v !== null && !Array.isArray(v)
      ? leafPaths(v as Record<string, unknown>, `${prefix}${k}.`)
      : [`${prefix}${k}`],
  );
}

function getPath(o: Record<string, unknown>, key: string): unknown {
  return key.split('.').reduce<unknown>((at, k) => (at as Record<string, unknown>)[k], o);
}

function setPath(o: Record<string, unknown>, key: string, value: unknown): Record<string, unknown> {
  const keys = key.split('.');
  const parent = keys
    .slice(0, -1)
    .reduce<Record<string, unknown>>((at, k) => at[k] as Record<string, unknown>, o);
  if (value === undefined) delete parent[keys[keys.length - 1]!];
  else parent[keys[keys.length - 1]!] = value;
  return o;
}

function sameMap(a: Map<string, string>, b: Map<string, string>): boolean {
  return a.size === b.size && [...a].every(([k, v]) => b.get(k) === v);
}

function mebibytes(q: string): number {
  const m = /^(\d+)(Mi|Gi)$/.exec(q);
  if (!m) throw new Error(`memory quantity ${q}: write it in Mi or Gi`);
  return Number(m[1]) * (m[2] === 'Gi' ? 1024 : 1);
}
