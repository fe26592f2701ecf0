import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SERVICE_ACCOUNT_DIR } from '../src/watch/kubeconfig.js';
import { TestApiServer, type StoredObject } from './support/api-server.js';
import { node, service, slice } from './support/objects.js';
import { REPO, runProxy, type RunResult } from './support/proxy.js';

/**
 * The real command (`node --import tsx src/cli.ts`) reading an API server that speaks the
 * list/watch protocol. --dry-run touches nothing, so no namespace is needed.
 *
 * In-cluster credentials are not exercised end to end here: the CLI always reads the service
 * account from SERVICE_ACCOUNT_DIR (no override). The in-cluster address override itself is
 * tested through loadKubeConfig (test/watch/kubeconfig.test.ts) and, with a Daemon syncing from
 * an HTTPS test server, in test/watch/in-cluster.test.ts.
 */
describe('kube-nftproxy --dry-run against an API server', function () {
  this.timeout(120_000);
  const VIP = '10.96.0.10';
  let server: TestApiServer;
  let dir: string;
  let kubeconfig: string;

  before(async () => {
    server = await TestApiServer.create();
    server.create('Node', stored(node('node-a', ['10.0.0.1'])));
    server.create('Service', stored(service('default', 'web', { clusterIP: VIP, ports: [{ port: 80 }] })));
    server.create(
      'EndpointSlice',
      stored(slice('default', 'web-a', 'web', [{ port: 8080 }], [{ ip: '10.244.1.11', nodeName: 'node-a' }])),
    );
    dir = await mkdtemp(join(tmpdir(), 'knp-cli-'));
    kubeconfig = join(dir, 'kubeconfig.yaml');
    await writeFile(
      kubeconfig,
      [
        'apiVersion: v1',
        'kind: Config',
        'clusters:',
        '- name: test',
        '  cluster:',
        `    server: ${server.url}`,
        '    insecure-skip-tls-verify: true',
        'users:',
        '- name: test',
        '  user: {}',
        'contexts:',
        '- name: test',
        '  context: { cluster: test, user: test }',
        'current-context: test',
        '',
      ].join('\n'),
    );
  });

  after(async () => {
    await server?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const dryRun = (args: string[], env: NodeJS.ProcessEnv) =>
    runProxy(undefined, ['--dry-run', '--hostname-override', 'node-a', ...args], {
      KUBECONFIG: '',
      HOME: dir,
      ...env,
    });

  it('lists through --kubeconfig even with KUBERNETES_SERVICE_HOST/_PORT pointing elsewhere', async () => {
    const lists = server.counters.list.Service;
    // A dead address: the flag wins, so nothing tries it.
    const r = await dryRun(['--kubeconfig', kubeconfig], {
      KUBERNETES_SERVICE_HOST: '127.0.0.1',
      KUBERNETES_SERVICE_PORT: '1',
    });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /10\.96\.0\.10/);
    assert.match(r.stdout, /10\.244\.1\.11/);
    assert.ok(server.counters.list.Service > lists, 'the Services came from the test server');
  });

  it('without a service account token, KUBERNETES_SERVICE_HOST/_PORT alone do not select in-cluster mode', async function () {
    skipInPod(this);
    const lists = server.counters.list.Service;
    const port = new URL(server.url).port;
    const r = await dryRun([], {
      KUBERNETES_SERVICE_HOST: '127.0.0.1',
      KUBERNETES_SERVICE_PORT: port,
      KUBECONFIG: kubeconfig,
    });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /10\.96\.0\.10/);
    assert.ok(server.counters.list.Service > lists);
  });

  it('fails with exit 5 and a clear line when no credentials exist anywhere', async function () {
    skipInPod(this);
    const r = await dryRun([], { KUBERNETES_SERVICE_HOST: '127.0.0.1', KUBERNETES_SERVICE_PORT: '6443' });
    assert.equal(r.code, 5, r.stderr);
    assert.match(r.stderr, /no API server credentials/);
    assert.equal(r.stdout, '');
  });

  it('fails with exit 5 and a line naming the refused resource when RBAC is missing', async () => {
    server.forbid('EndpointSlice');
    try {
      const r = await dryRun(['--kubeconfig', kubeconfig], {});
      assert.equal(r.code, 5, r.stderr);
      const plain = r.stderr.split('\n').filter((l) => l !== '' && !l.startsWith('{'));
      assert.equal(plain.length, 1, r.stderr);
      assert.match(
        plain[0]!,
        /^kube-nftproxy: EndpointSlice: the API server refuses to list endpointslices \(HTTP 403\); grant/,
      );
      assert.equal(r.stdout, '');
    } finally {
      server.allow();
    }
  });
});

/**
 * The daemon (no --once/--dry-run) failing at start: it must exit at once with the documented
 * code and one line, not linger with its probes answering. The child is killed if it lingers,
 * which fails the test (exit code null).
 */
describe('kube-nftproxy daemon: a fatal start-up error exits at once', function () {
  this.timeout(60_000);
  let dir: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'knp-cli-fatal-'));
  });

  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** The real CLI as the daemon; killed (code null) if still running after `lingerMs`. */
  const daemon = (args: string[], lingerMs = 20_000): Promise<RunResult> =>
    new Promise((resolve, reject) => {
      const child = spawn(
        process.execPath,
        [
          '--import',
          'tsx',
          join(REPO, 'src/cli.ts'),
          '--hostname-override',
          'node-a',
          '--healthz-bind-address',
          '127.0.0.1:0',
          '--metrics-bind-address',
          '127.0.0.1:0',
          ...args,
        ],
        {
          cwd: REPO,
          env: { ...process.env, LOG_LEVEL: 'info', KUBECONFIG: '', HOME: dir },
          timeout: lingerMs,
        },
      );
      let stdout = '';
      let stderr = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
      child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
      child.on('error', reject);
      child.on('close', (code) => resolve({ code, stdout, stderr }));
    });

  const lines = (text: string): string[] => text.split('\n').filter((l) => l !== '');

  it('an unusable --kubeconfig: exit 5 and one line naming the file, before anything starts', async () => {
    const kubeconfig = join(dir, 'broken.yaml');
    await writeFile(kubeconfig, 'clusters: [ {name: x\n');
    const r = await daemon(['--kubeconfig', kubeconfig]);
    assert.equal(r.code, 5, r.stderr);
    assert.deepEqual(lines(r.stderr).length, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`^kube-nftproxy: --kubeconfig ${kubeconfig.replace(/[.]/g, '\\.')}: `));
    assert.equal(r.stdout, '');
  });

  it('a kubeconfig without a current context: exit 5, one line saying so', async () => {
    const kubeconfig = join(dir, 'no-context.yaml');
    await writeFile(kubeconfig, 'apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n');
    const r = await daemon(['--kubeconfig', kubeconfig]);
    assert.equal(r.code, 5, r.stderr);
    assert.deepEqual(lines(r.stderr).length, 1, r.stderr);
    assert.match(r.stderr, /no current context/);
  });

  it('a --source that does not exist: exit 5, and no process left answering probes', async () => {
    const r = await daemon(['--source', join(dir, 'missing'), '--proxy-mode', 'userspace']);
    assert.equal(r.code, 5, r.stderr);
    const plain = lines(r.stderr).filter((l) => !l.startsWith('{'));
    assert.equal(plain.length, 1, r.stderr);
    assert.match(plain[0]!, /^kube-nftproxy: --source .*missing/);
  });
});

/** In a Pod the service account token exists and in-cluster credentials (rightly) win. */
function skipInPod(ctx: Mocha.Context): void {
  const token = join(SERVICE_ACCOUNT_DIR, 'token');
  if (!existsSync(token)) return;
  process.stderr.write(`  skipped: ${token} exists, so in-cluster credentials are used\n`);
  ctx.skip();
}

function stored(o: object): StoredObject {
  return o as StoredObject;
}

/**
 * --once probes nft while it reads the source: the verdicts keep their order (the source's
 * first), so a run with neither names the source, and a run with a good source names nft.
 * nft is made missing by a PATH without it.
 */
describe('kube-nftproxy --once: nft is probed while the source is read', function () {
  this.timeout(60_000);
  let dir: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'knp-cli-once-'));
    await writeFile(
      join(dir, 'web.yaml'),
      JSON.stringify(service('ns', 'web', { clusterIP: '10.96.0.10', ports: [{ port: 80 }] })),
    );
  });

  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  // PATH is only `dir`: no nft is found.
  const once = (source: string): Promise<RunResult> =>
    runProxy(undefined, ['--hostname-override', 'node-a', '--source', source, '--once'], { PATH: dir });

  it('a missing source and a missing nft: exit 5, the source named', async () => {
    const r = await once(join(dir, 'missing'));
    assert.equal(r.code, 5, r.stderr);
    assert.match(r.stderr, /^kube-nftproxy: --source .*missing/m);
    assert.doesNotMatch(r.stderr, /nft not found/);
  });

  it('a good source and a missing nft: exit 3, nft named', async () => {
    const r = await once(dir);
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, /^kube-nftproxy: nft not found/m);
  });
});
