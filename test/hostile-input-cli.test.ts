import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { open, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Lab } from '../scripts/lab/index.js';
import { PARSE_LIMITS } from '../src/watch/parse-documents.js';
import { requireKernel } from './support/capabilities.js';
import { aliasBomb, deepJson, deepYaml } from './support/hostile-input.js';
import { service, slice, yamlDocs } from './support/objects.js';
import { logLines, runProxy, SourceDir, type RunResult } from './support/proxy.js';

/**
 * Input that is not a Service at all, beside good Services in one --source folder, through the
 * real command: each bad file or field is one log line and costs only itself; --dry-run and
 * --once exit 0 with every good Service programmed.
 */
describe('kube-nftproxy with hostile input beside good', function () {
  this.timeout(120_000);
  let src: SourceDir;
  const NS = 'hostile';

  const good = (name: string, clusterIP: string, spec: Record<string, unknown> = {}) => [
    { ...service(NS, name, { clusterIP, ports: [{ port: 80, targetPort: 8080 }] }), ...spec },
    slice(NS, `${name}-a`, name, [{ port: 8080 }], [{ ip: '10.244.1.11', nodeName: 'node-a' }]),
  ];
  const withSpec = (name: string, clusterIP: string, spec: Record<string, unknown>): object => ({
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { namespace: NS, name },
    spec: { clusterIP, ports: [{ port: 80 }], ...spec },
  });

  /** Bad files: name → what its one log line's reason says. */
  const badFiles: Record<string, RegExp> = {
    'bomb.yaml': /^YAML aliases expand past 100 nodes/,
    'deep.yaml': /^nested more than 100 levels deep at line 1, column \d{3}$/,
    'deep.json': /^nested more than 100 levels deep$/,
    'cycle.yaml': /^nested more than 100 levels deep \(through YAML aliases\)$/,
    'huge.yaml': new RegExp(
      `^${PARSE_LIMITS.maxBytes + 1} bytes is more than the ${PARSE_LIMITS.maxBytes} bytes`,
    ),
    'pipe.yaml': /^not a regular file$/,
  };
  /** Bad objects inside otherwise good files: object → its one log line's reason. */
  const badObjects: Array<{ object: RegExp; reason: RegExp }> = [
    { object: /envelopes\.json$/, reason: /items\[0\] \(Service\): metadata\.name is not a string/ },
    {
      object: /envelopes\.json$/,
      reason: /items\[1\] \(EndpointSlice\): metadata\.labels\[.*\] is not a string/,
    },
    { object: new RegExp(`^${NS}/zone-cluster-ip$`), reason: /^invalid clusterIP "fd00::1%eth0"$/ },
    {
      object: new RegExp(`^${NS}/zone-external$`),
      reason: /^ignoring invalid externalIP "fe80::1%eth0\.5"$/,
    },
    { object: new RegExp(`^${NS}/typed-wrong$`), reason: /^ignoring spec\.externalIPs: not a list$/ },
    { object: new RegExp(`^${NS}/ports-null$`), reason: /^spec\.ports\[0\] is not an object$/ },
  ];

  before(async () => {
    src = await SourceDir.create();
    await src.write({
      'good.yaml': [...good('web', '10.96.20.1'), ...good('other', '10.96.20.2')],
      'bomb.yaml': aliasBomb(),
      'deep.yaml': deepYaml(),
      'deep.json': deepJson(),
      'cycle.yaml': 'kind: Service\nmetadata: &m {name: cyc, self: *m}\n',
      'envelopes.json': JSON.stringify({
        kind: 'List',
        items: [
          { kind: 'Service', metadata: { name: { toString: 1 } }, spec: {} },
          { kind: 'EndpointSlice', metadata: { name: 'x', labels: { 'kubernetes.io/service-name': 7 } } },
          { kind: 'constructor', metadata: { name: 'proto' } },
          { kind: '__proto__', metadata: { name: 'proto' } },
          ...good('json-ok', '10.96.20.3'),
        ],
      }),
      'fields.yaml': yamlDocs([
        withSpec('zone-cluster-ip', 'fd00::1%eth0', {}),
        withSpec('zone-external', '10.96.20.4', { externalIPs: ['fe80::1%eth0.5', '192.0.2.44'] }),
        withSpec('typed-wrong', '10.96.20.5', { externalIPs: '192.0.2.45' }),
        withSpec('ports-null', '10.96.20.6', { ports: [null] }),
      ]),
    });
    // One byte over the limit, sparse: refused by its size before anything is read.
    const huge = await open(join(src.path, 'huge.yaml'), 'w');
    await huge.truncate(PARSE_LIMITS.maxBytes + 1);
    await huge.close();
    assert.equal(spawnSync('mkfifo', [join(src.path, 'pipe.yaml')]).status, 0);
  });

  after(async () => {
    await src?.remove();
  });

  const args = () => ['--hostname-override', 'node-a', '--node-ip', '172.30.0.1', '--source', src.path];

  /** Every log line about a skipped object or file, and the rules, checked the same for both modes. */
  function checkRun(run: RunResult, rules: () => string): void {
    it('exits 0', () => assert.equal(run.code, 0, run.stderr));

    const skipped = () =>
      logLines(run.stderr).filter((l) => l.msg === 'skipped invalid object' || l.msg === 'ignored');
    for (const [file, reason] of Object.entries(badFiles)) {
      it(`logs ${file} once, as a File: ${reason.source}`, () => {
        const lines = skipped().filter((l) => String(l.object).endsWith(`/${file}`));
        assert.equal(lines.length, 1, JSON.stringify(skipped(), null, 1));
        assert.equal(lines[0]!.kind, 'File');
        assert.match(String(lines[0]!.reason), reason);
      });
    }
    for (const b of badObjects) {
      it(`logs ${b.object.source} once: ${b.reason.source}`, () => {
        const lines = skipped().filter(
          (l) => b.object.test(String(l.object)) && b.reason.test(String(l.reason)),
        );
        assert.equal(lines.length, 1, JSON.stringify(skipped(), null, 1));
      });
    }
    it('logs nothing else', () => {
      const known = (l: Record<string, unknown>): boolean =>
        Object.keys(badFiles).some((f) => String(l.object).endsWith(`/${f}`)) ||
        badObjects.some((b) => b.object.test(String(l.object)) && b.reason.test(String(l.reason)));
      assert.deepEqual(
        skipped().filter((l) => !known(l)),
        [],
      );
    });
    it('programs every good Service, and the good parts of the half-good ones', () => {
      for (const ip of ['10.96.20.1', '10.96.20.2', '10.96.20.3', '10.96.20.4', '10.96.20.5', '192.0.2.44'])
        assert.match(rules(), new RegExp(ip.replace(/\./g, '\\.')), ip);
      for (const ip of ['10.96.20.6', '192.0.2.45'])
        assert.doesNotMatch(rules(), new RegExp(ip.replace(/\./g, '\\.')));
    });
  }

  describe('--dry-run', () => {
    const run: RunResult = { code: null, stdout: '', stderr: '' };
    before(async () => Object.assign(run, await runProxy(undefined, ['--dry-run', ...args()])));
    checkRun(run, () => run.stdout);
  });

  describe('--once (real nft in a network namespace)', () => {
    const run: RunResult = { code: null, stdout: '', stderr: '' };
    let lab: Lab | undefined;
    let rules = '';
    before(async function () {
      requireKernel(this);
      lab = await Lab.create();
      Object.assign(run, await runProxy(lab.nodeNs, ['--once', ...args()]));
      rules = await lab.nftList();
    });
    after(async () => {
      await lab?.destroy();
    });
    checkRun(run, () => rules);
  });
});

describe('kube-nftproxy --config with hostile input', function () {
  this.timeout(60_000);
  let src: SourceDir;
  before(async () => {
    src = await SourceDir.create();
    await src.write({ 'bomb.yaml': aliasBomb(), 'deep.yaml': deepYaml(), 'empty.yaml': '' });
    assert.equal(spawnSync('mkfifo', [join(src.path, 'pipe.yaml')]).status, 0);
    await writeFile(
      join(src.path, 'two.yaml'),
      'kind: KubeProxyConfiguration\n---\nkind: KubeProxyConfiguration\n',
    );
  });
  after(async () => {
    await src?.remove();
  });

  for (const [file, reason] of [
    ['bomb.yaml', /YAML aliases expand past 100 nodes/],
    ['deep.yaml', /nested more than 100 levels deep/],
    ['pipe.yaml', /not a regular file/],
    ['two.yaml', /more than one YAML document/],
  ] as const) {
    it(`${file}: exit 2 with one line naming the file and why`, async () => {
      const path = join(src.path, file);
      const r = await runProxy(undefined, [
        '--config',
        path,
        '--dry-run',
        '--source',
        join(src.path, 'empty.yaml'),
      ]);
      assert.equal(r.code, 2, r.stderr);
      const lines = r.stderr.trim().split('\n');
      assert.equal(lines.length, 1, r.stderr);
      assert.ok(lines[0]!.startsWith(`kube-nftproxy: --config ${path}: `), lines[0]);
      assert.match(lines[0]!, reason);
    });
  }
});
