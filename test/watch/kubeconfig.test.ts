import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ErrorCodes, hasCode } from '../../src/errors.js';
import { silentLogger } from '../../src/log.js';
import { createKubeSource } from '../../src/watch/kube-source.js';
import { loadKubeConfig } from '../../src/watch/kubeconfig.js';
import type { SourceHandler } from '../../src/watch/source.js';
import { TestApiServer } from '../support/api-server.js';
import { waitFor } from '../support/wait-for.js';

function kubeconfigYaml(server: string, extra = ''): string {
  return `apiVersion: v1
kind: Config
clusters:
- name: c
  cluster:
    server: ${server}
${extra}users:
- name: u
  user:
    token: file-token
contexts:
- name: ctx
  context: {cluster: c, user: u}
current-context: ctx
`;
}

async function authorization(loaded: ReturnType<typeof loadKubeConfig>): Promise<string | null> {
  const init = await loaded.kubeConfig.applyToFetchOptions({});
  return (init.headers as unknown as { get(name: string): string | null }).get('authorization');
}

describe('loadKubeConfig', function () {
  let dir: string;
  let home: string;
  let sa: string;

  beforeEach(function () {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kubeconfig-test-'));
    home = path.join(dir, 'home');
    sa = path.join(dir, 'sa');
    fs.mkdirSync(home);
    fs.mkdirSync(sa);
  });

  afterEach(function () {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  function write(rel: string, text: string): string {
    const file = path.join(dir, rel);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, text);
    return file;
  }

  function serviceAccount(): void {
    write('sa/token', 'sa-token');
    write('sa/ca.crt', 'not really a certificate');
    write('sa/namespace', 'kube-system\n');
  }

  const inClusterEnv = { KUBERNETES_SERVICE_HOST: '192.168.10.5', KUBERNETES_SERVICE_PORT: '6443' };

  it('uses --kubeconfig first, even in a Pod', async function () {
    serviceAccount();
    const file = write('flag.yaml', kubeconfigYaml('https://flag.example:6443'));
    const loaded = loadKubeConfig({
      kubeconfigPath: file,
      env: inClusterEnv,
      homeDir: home,
      serviceAccountDir: sa,
    });
    assert.equal(loaded.source, 'flag');
    assert.equal(loaded.from, file);
    assert.equal(loaded.server, 'https://flag.example:6443');
    assert.equal(await authorization(loaded), 'Bearer file-token');
  });

  it('fails on a --kubeconfig it cannot read, without trying elsewhere', function () {
    serviceAccount();
    const missing = path.join(dir, 'missing.yaml');
    assert.throws(
      () =>
        loadKubeConfig({ kubeconfigPath: missing, env: inClusterEnv, homeDir: home, serviceAccountDir: sa }),
      (err: Error) => hasCode(err, ErrorCodes.KUBECONFIG_INVALID) && err.message.includes(missing),
    );
  });

  it('rejects a kubeconfig without a current context, naming the file', function () {
    const file = write('noctx.yaml', kubeconfigYaml('https://x:6443').replace('current-context: ctx\n', ''));
    assert.throws(
      () => loadKubeConfig({ kubeconfigPath: file, env: {}, homeDir: home }),
      (err: Error) => hasCode(err, ErrorCodes.KUBECONFIG_INVALID) && err.message.includes(file),
    );
  });

  it('rejects a plain http:// server without insecure-skip-tls-verify up front', function () {
    const file = write('http.yaml', kubeconfigYaml('http://127.0.0.1:8080'));
    assert.throws(
      () => loadKubeConfig({ kubeconfigPath: file, env: {}, homeDir: home }),
      (err: Error) => hasCode(err, ErrorCodes.KUBECONFIG_INVALID),
    );
  });

  it('in a Pod, talks to KUBERNETES_SERVICE_HOST/_PORT (the DaemonSet override) with the token', async function () {
    serviceAccount();
    write('home/.kube/config', kubeconfigYaml('https://home.example:6443'));
    const loaded = loadKubeConfig({
      env: { ...inClusterEnv, KUBECONFIG: write('env.yaml', kubeconfigYaml('https://env.example:6443')) },
      homeDir: home,
      serviceAccountDir: sa,
    });
    assert.equal(loaded.source, 'in-cluster');
    assert.equal(loaded.server, 'https://192.168.10.5:6443');
    assert.equal(loaded.kubeConfig.getCurrentCluster()?.caFile, path.join(sa, 'ca.crt'));
    assert.equal(loaded.kubeConfig.getContextObject('in-cluster')?.namespace, 'kube-system');
    assert.equal(await authorization(loaded), 'Bearer sa-token');
  });

  it('brackets an IPv6 API server address', function () {
    serviceAccount();
    const loaded = loadKubeConfig({
      env: { KUBERNETES_SERVICE_HOST: 'fd00::1', KUBERNETES_SERVICE_PORT: '443' },
      homeDir: home,
      serviceAccountDir: sa,
    });
    assert.equal(loaded.server, 'https://[fd00::1]:443');
  });

  it('without a token, skips in-cluster for $KUBECONFIG (first existing file of the list)', function () {
    const file = write('env.yaml', kubeconfigYaml('https://env.example:6443'));
    const loaded = loadKubeConfig({
      env: { ...inClusterEnv, KUBECONFIG: [path.join(dir, 'nope.yaml'), file].join(path.delimiter) },
      homeDir: home,
      serviceAccountDir: sa,
    });
    assert.equal(loaded.source, 'KUBECONFIG');
    assert.equal(loaded.from, file);
    assert.equal(loaded.server, 'https://env.example:6443');
  });

  it('falls back to ~/.kube/config', function () {
    const file = write('home/.kube/config', kubeconfigYaml('https://home.example:6443'));
    const loaded = loadKubeConfig({
      env: { KUBECONFIG: path.join(dir, 'nope.yaml') },
      homeDir: home,
      serviceAccountDir: sa,
    });
    assert.equal(loaded.source, 'home');
    assert.equal(loaded.from, file);
  });

  it('fails loudly on a broken ~/.kube/config rather than running without credentials', function () {
    write('home/.kube/config', 'clusters: [ {');
    assert.throws(
      () => loadKubeConfig({ env: {}, homeDir: home, serviceAccountDir: sa }),
      (err: Error) => hasCode(err, ErrorCodes.KUBECONFIG_INVALID),
    );
  });

  it('names every place it tried when none has credentials', function () {
    assert.throws(
      () =>
        loadKubeConfig({
          env: { KUBERNETES_SERVICE_HOST: '10.0.0.1', KUBERNETES_SERVICE_PORT: '443' },
          homeDir: home,
          serviceAccountDir: sa,
        }),
      (err: Error) =>
        hasCode(err, ErrorCodes.KUBECONFIG_INVALID) &&
        err.message.includes('--kubeconfig') &&
        err.message.includes(path.join(sa, 'token')) &&
        err.message.includes('$KUBECONFIG') &&
        err.message.includes(path.join(home, '.kube', 'config')),
    );
  });

  it('gives a config the kube source can use against an API server', async function () {
    const server = await TestApiServer.create();
    try {
      server.create('Service', {
        metadata: { namespace: 'default', name: 'web' },
        spec: { ports: [{ port: 80 }] },
      });
      const file = write('test.yaml', kubeconfigYaml(server.url, '    insecure-skip-tls-verify: true\n'));
      const { kubeConfig } = loadKubeConfig({ kubeconfigPath: file });
      const seen: string[] = [];
      let synced = false;
      const handler: SourceHandler = {
        upsert: (kind, o) => seen.push(`${kind} ${o.metadata?.name}`),
        remove: () => {},
        synced: () => (synced = true),
      };
      const source = createKubeSource({ kubeConfig, nodeName: 'n1', log: silentLogger() });
      await source.start(handler);
      try {
        await waitFor(() => synced, { what: 'synced' });
      } finally {
        await source.stop();
      }
      assert.deepEqual(seen, ['Service web']);
    } finally {
      await server.close();
    }
  });
});
