import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CoreV1Api } from '@kubernetes/client-node';
import { buildConfig } from '../../src/config.js';
import { Daemon } from '../../src/daemon.js';
import { silentLogger } from '../../src/log.js';
import { FakeNft } from '../../src/rules/nft/fake.js';
import { createKubeSource } from '../../src/watch/kube-source.js';
import { loadKubeConfig } from '../../src/watch/kubeconfig.js';
import { TestApiServer, type StoredObject } from '../support/api-server.js';
import { node, service, slice } from '../support/objects.js';
import { hasOpenssl, selfSignedCert, type SelfSigned } from '../support/self-signed.js';
import { waitFor } from '../support/wait-for.js';

/**
 * Issue 6: the API server address override. In a Pod with kube-proxy off, the DaemonSet sets
 * KUBERNETES_SERVICE_HOST/_PORT to the real API server (manifests/daemonset.yaml, docs/deploy.md).
 * Here they point at an HTTPS test API server whose self-signed certificate is the service
 * account's ca.crt, and the daemon syncs from it: the client verifies the server against ca.crt
 * and sends the service account token.
 *
 * The daemon gets its source injected (deps.source), built from loadKubeConfig's in-cluster
 * config exactly as Daemon#defaultSource builds it: the CLI itself always reads the service
 * account from SERVICE_ACCOUNT_DIR, and a test cannot put one there.
 */
describe('in-cluster: KUBERNETES_SERVICE_HOST/_PORT pointing at the API server (HTTPS, token)', function () {
  const NODE = 'n1';
  const VIP = '10.96.0.10';
  const TOKEN = 'in-cluster-sa-token';
  let dir: string;
  let sa: string;
  let home: string;
  let tls: SelfSigned;
  let server: TestApiServer;

  before(async function () {
    if (!hasOpenssl()) {
      process.stderr.write('  skipped: no openssl command to make a test certificate with\n');
      this.skip();
    }
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'knp-in-cluster-'));
    const certs = path.join(dir, 'certs');
    sa = path.join(dir, 'sa');
    home = path.join(dir, 'home');
    for (const d of [certs, sa, home]) fs.mkdirSync(d);
    tls = selfSignedCert(certs);
    // As the kubelet mounts it: the token (no trailing newline), the cluster CA, the namespace.
    fs.writeFileSync(path.join(sa, 'token'), TOKEN);
    fs.writeFileSync(path.join(sa, 'ca.crt'), tls.cert);
    fs.writeFileSync(path.join(sa, 'namespace'), 'kube-system\n');
    server = await TestApiServer.create({ tls: { key: tls.key, cert: tls.cert } });
  });

  after(async function () {
    await server?.close();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  /** The env the DaemonSet's override gives the pod, here aimed at the test server. */
  const overrideEnv = () => ({
    KUBERNETES_SERVICE_HOST: '127.0.0.1',
    KUBERNETES_SERVICE_PORT: String(server.listenPort),
  });

  const inCluster = (saDir = sa) =>
    loadKubeConfig({ env: overrideEnv(), serviceAccountDir: saDir, homeDir: home });

  it('loads in-cluster credentials that name the overridden address over https', function () {
    const loaded = inCluster();
    assert.equal(loaded.source, 'in-cluster');
    assert.equal(loaded.from, sa);
    assert.equal(loaded.server, `https://127.0.0.1:${server.listenPort}`);
    assert.equal(loaded.server, server.url);
    assert.equal(loaded.kubeConfig.getCurrentCluster()?.caFile, path.join(sa, 'ca.crt'));
  });

  it('the daemon syncs Services and EndpointSlices from there, sending the service account token', async function () {
    server.apply('Node', stored(node(NODE, ['10.0.0.1'])));
    server.apply(
      'Service',
      stored(
        service('default', 'web', { clusterIP: VIP, ports: [{ name: 'http', port: 80, targetPort: 8080 }] }),
      ),
    );
    const webSlice = (ips: string[]) =>
      stored(
        slice(
          'default',
          'web-a',
          'web',
          [{ name: 'http', port: 8080 }],
          ips.map((ip) => ({ ip, nodeName: NODE })),
        ),
      );
    server.apply('EndpointSlice', webSlice(['10.244.1.11']));
    server.authorizations.clear();

    const { kubeConfig, source } = inCluster();
    assert.equal(source, 'in-cluster');
    const log = silentLogger();
    const nft = new FakeNft();
    const config = buildConfig([
      '--healthz-bind-address',
      '127.0.0.1:0',
      '--metrics-bind-address',
      '127.0.0.1:0',
      '--min-sync-period',
      '0s',
      '--hostname-override',
      NODE,
    ]);
    const daemon = new Daemon(config, {
      log,
      env: { localAddresses: ['10.0.0.1'] },
      nft,
      source: createKubeSource({ kubeConfig, nodeName: NODE, log }),
    });
    await daemon.start();
    try {
      await waitFor(() => daemon.syncs >= 1, { what: 'the first sync' });
      assert.deepEqual(serviceIps(nft.dump()), [`${VIP} . tcp . 80 : goto clusterip-1`]);
      assert.match(nft.dump(), /10\.244\.1\.11/);

      // The watches run over TLS too: a change arrives.
      server.apply('EndpointSlice', webSlice(['10.244.1.11', '10.244.1.12']));
      await waitFor(() => nft.dump().includes('10.244.1.12'), { what: 'the new endpoint in the rules' });
    } finally {
      await daemon.stop();
    }
    assert.ok(server.counters.list.Service > 0 && server.counters.watch.EndpointSlice > 0);
    // Every request, lists and watches alike, carried the service account token.
    assert.deepEqual([...server.authorizations], [`Bearer ${TOKEN}`]);
  });

  it("the TLS test server's own kubeConfig() trusts its certificate (and sends no token)", async function () {
    server.authorizations.clear();
    const core = server.kubeConfig().makeApiClient(CoreV1Api);
    const list = await core.listNamespacedService({ namespace: 'default' });
    assert.ok(Array.isArray(list.items));
    assert.deepEqual([...server.authorizations], [undefined]);
  });

  it('verifies the server against ca.crt: with another CA it fails and sends nothing', async function () {
    const otherSa = path.join(dir, 'other-sa');
    const otherCerts = path.join(dir, 'other-certs');
    fs.mkdirSync(otherSa);
    fs.mkdirSync(otherCerts);
    fs.writeFileSync(path.join(otherSa, 'token'), TOKEN);
    fs.writeFileSync(path.join(otherSa, 'ca.crt'), selfSignedCert(otherCerts).cert);
    server.authorizations.clear();
    const requests = server.counters.list.Service;

    const { kubeConfig } = inCluster(otherSa);
    const core = kubeConfig.makeApiClient(CoreV1Api);
    await assert.rejects(core.listNamespacedService({ namespace: 'default' }), (err: Error) => {
      const text = `${err.message} ${String((err as { cause?: unknown }).cause ?? '')}`;
      assert.match(text, /certificate|self[- ]signed|SELF_SIGNED|unable to verify/i);
      return true;
    });
    assert.equal(server.counters.list.Service, requests, 'no request reached the server');
    assert.equal(server.authorizations.size, 0, 'the token went nowhere');
  });
});

/** The elements of the IPv4 service-ips map in a FakeNft dump (`add element ip <table> service-ips { … }`). */
function serviceIps(dump: string): string[] {
  return dump
    .split('\n')
    .flatMap((line) => /^add element ip \S+ service-ips \{ (.*) \}$/.exec(line)?.slice(1) ?? []);
}

function stored(o: object): StoredObject {
  return o as StoredObject;
}
