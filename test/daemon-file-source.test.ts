import assert from 'node:assert/strict';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Daemon } from '../src/daemon.js';
import { createLogger } from '../src/log.js';
import { FakeNft } from '../src/rules/nft/fake.js';
import { aliasBomb, deepJson, deepYaml } from './support/hostile-input.js';
import { service, slice, yamlDocs } from './support/objects.js';
import { SourceDir } from './support/proxy.js';
import { waitFor } from './support/wait-for.js';
import { testDaemonConfig } from './support/daemon-harness.js';

/**
 * The daemon on its own file source (a real folder, watched), its servers on real sockets:
 * hostile files dropped into the folder while it runs cost only themselves.
 */
describe('Daemon with a --source folder: hostile files while it runs', function () {
  this.timeout(60_000);
  const NODE = 'node-a';
  let src: SourceDir;
  let daemon: Daemon;
  let nft: FakeNft;
  let logs: Array<Record<string, unknown>>;
  const rejections: unknown[] = [];
  const onRejection = (reason: unknown): void => void rejections.push(reason);

  /** Services from ClusterIP 10.96.0.<first>: files in one folder take apart ranges, as the API server would. */
  const objects = (names: string[], first = 10) =>
    names.flatMap((name, i) => [
      service('default', name, {
        clusterIP: `10.96.0.${first + i}`,
        ports: [{ port: 80, targetPort: 8080 }],
      }),
      slice(
        'default',
        `${name}-a`,
        name,
        [{ port: 8080 }],
        [{ ip: `10.244.1.${first + i}`, nodeName: NODE }],
      ),
    ]);

  const get = async (path: string): Promise<{ status: number; body: string }> => {
    const res = await fetch(`http://127.0.0.1:${daemon.servers!.metrics.port}${path}`);
    return { status: res.status, body: await res.text() };
  };
  const skippedFiles = (): string[] =>
    (daemon.state?.skipped ?? [])
      .filter((s) => s.kind === 'File')
      .map((s) => s.name.slice(src.path.length + 1));
  const fileLines = (file: string) =>
    logs.filter((l) => l.msg === 'skipped invalid object' && String(l.object).endsWith(`/${file}`));

  before(async () => {
    process.on('unhandledRejection', onRejection);
    src = await SourceDir.create();
    await src.write({ 'good.yaml': objects(['web', 'api']) });
    nft = new FakeNft();
    logs = [];
    const config = testDaemonConfig(NODE, ['--source', src.path, '--node-ip', '10.0.0.1']);
    daemon = new Daemon(config, {
      log: createLogger({
        level: 'debug',
        destination: { write: (l: string) => void logs.push(JSON.parse(l)) },
      }),
      env: { localAddresses: ['10.0.0.1'] },
      nft,
    });
    await daemon.start();
    await waitFor(() => daemon.syncs >= 1, { what: 'the first sync' });
  });

  after(async () => {
    await daemon?.stop();
    await src?.remove();
    process.off('unhandledRejection', onRejection);
  });

  it('programs the good file', () => {
    assert.match(nft.dump(), /10\.96\.0\.10/);
    assert.match(nft.dump(), /10\.96\.0\.11/);
  });

  it('an alias bomb, a 400k-deep YAML and JSON file dropped in: each listed under /debug/services and logged once', async () => {
    await writeFile(join(src.path, 'bomb.yaml'), aliasBomb());
    await writeFile(join(src.path, 'deep.yaml'), deepYaml());
    await writeFile(join(src.path, 'deep.json'), deepJson());
    await waitFor(() => skippedFiles().length === 3, { what: 'the three files in the skipped list' });
    assert.deepEqual(skippedFiles(), ['bomb.yaml', 'deep.json', 'deep.yaml']);

    const r = await get('/debug/services');
    assert.equal(r.status, 200);
    const body = JSON.parse(r.body) as { skipped: Array<{ kind: string; name: string; reason: string }> };
    const files = body.skipped.filter((s) => s.kind === 'File');
    assert.deepEqual(
      files.map((s) => [s.name.slice(src.path.length + 1), s.reason.replace(/ at line.*/, '')]),
      [
        [
          'bomb.yaml',
          'YAML aliases expand past 100 nodes: Excessive alias count indicates a resource exhaustion attack',
        ],
        ['deep.json', 'nested more than 100 levels deep'],
        ['deep.yaml', 'nested more than 100 levels deep'],
      ],
    );
    for (const f of ['bomb.yaml', 'deep.yaml', 'deep.json']) assert.equal(fileLines(f).length, 1, f);
  });

  it('stays up: other Services keep their rules, and a later change still applies', async () => {
    assert.deepEqual(rejections, []);
    assert.match(nft.dump(), /10\.96\.0\.10/);
    assert.match(nft.dump(), /10\.96\.0\.11/);
    // Written in place: SourceDir.write() would replace the watched folder itself.
    await rm(join(src.path, 'deep.yaml'));
    await rm(join(src.path, 'deep.json'));
    await writeFile(join(src.path, 'good.yaml'), yamlDocs(objects(['web', 'api', 'late'])));
    await waitFor(() => /10\.96\.0\.12/.test(nft.dump()), { what: 'the late Service' });
    assert.match((await get('/debug/services?service=default/late')).body, /10\.244\.1\.12/);
    // The bomb is still there and still skipped, and still logged only once.
    assert.deepEqual(skippedFiles(), ['bomb.yaml']);
    assert.equal(fileLines('bomb.yaml').length, 1);
    assert.deepEqual(rejections, []);
  });

  it('a file mended and broken again is logged again (the daemon forgets mended entries)', async () => {
    await rm(join(src.path, 'bomb.yaml'));
    await waitFor(() => skippedFiles().length === 0, { what: 'the skipped list to empty' });
    await writeFile(join(src.path, 'bomb.yaml'), aliasBomb());
    await waitFor(() => skippedFiles().length === 1, { what: 'the bomb again' });
    assert.equal(fileLines('bomb.yaml').length, 2);
  });

  it('a folder replaced as a whole is read, and then watched in its place', async () => {
    await src.write({ 'good.yaml': objects(['web', 'api', 'late', 'moved']) });
    await waitFor(() => /10\.96\.0\.13/.test(nft.dump()), { what: 'the Service of the new folder' });
    await writeFile(join(src.path, 'more.yaml'), yamlDocs(objects(['a', 'b', 'c', 'd', 'e'], 20)));
    await waitFor(() => /10\.96\.0\.24/.test(nft.dump()), { what: 'a file written into the new folder' });
    assert.deepEqual(skippedFiles(), []);
    assert.deepEqual(rejections, []);
  });

  it('/debug/services and /debug/rules ?service= show one Service', async () => {
    const services = JSON.parse((await get('/debug/services?service=default/web')).body) as {
      ports: Array<{ service: string }>;
    };
    assert.deepEqual(
      services.ports.map((p) => p.service),
      ['default/web'],
    );
    const rules = (await get('/debug/rules?service=default/web')).body;
    assert.match(rules, /10\.96\.0\.10/);
    assert.doesNotMatch(rules, /10\.96\.0\.11|10\.96\.0\.12/);
    assert.doesNotMatch(rules, /^add chain/m);
    assert.equal((await get('/debug/rules?service=default/nothing')).body, '');
  });
});
