import assert from 'node:assert/strict';
import { mkdtemp, rename, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ErrorCodes, hasCode } from '../../src/errors.js';
import { createLogger } from '../../src/log.js';
import { FileSource, objectsInFile } from '../../src/watch/file-source.js';
import { ObjectStore } from '../../src/watch/object-store.js';
import type { SourceHandler } from '../../src/watch/source.js';
import { service, slice, yamlDocs } from '../support/objects.js';
import { aliasBomb, deepJson, deepYaml } from '../support/hostile-input.js';

/** FileSource over a real folder, read into a real ObjectStore. */
describe('FileSource with hostile files', () => {
  let dir: string;
  let store: ObjectStore;
  let source: FileSource;

  const good = yamlDocs([
    service('ns', 'web', { clusterIP: '10.96.0.10', ports: [{ port: 80 }] }),
    slice('ns', 'web-a', 'web', [{ port: 8080 }], [{ ip: '10.244.1.11' }]),
  ]);

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'knp-files-'));
    store = new ObjectStore();
    source = new FileSource(dir);
  });
  afterEach(async () => {
    await source.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('skips each bad file with its reason and keeps every other file', async () => {
    await writeFile(join(dir, 'good.yaml'), good);
    await writeFile(join(dir, 'bomb.yaml'), aliasBomb());
    await writeFile(join(dir, 'deep.yaml'), deepYaml());
    await writeFile(join(dir, 'deep.json'), deepJson());
    await writeFile(join(dir, 'cycle.yaml'), 'kind: Service\nmetadata: &m {name: x, self: *m}\n');
    await source.start(store);
    assert.deepEqual([...store.services.keys()], ['ns/web']);
    assert.deepEqual([...store.slices.keys()], ['ns/web-a']);
    assert.deepEqual(
      store.unreadableFiles.map((f) => [f.file.slice(dir.length + 1), f.reason.replace(/ at line.*/, '')]),
      [
        [
          'bomb.yaml',
          'YAML aliases expand past 100 nodes: Excessive alias count indicates a resource exhaustion attack',
        ],
        ['cycle.yaml', 'nested more than 100 levels deep (through YAML aliases)'],
        ['deep.json', 'nested more than 100 levels deep'],
        ['deep.yaml', 'nested more than 100 levels deep'],
      ],
    );
  });

  it('a failed read does not stop the next one: the folder gone, then back', async () => {
    await writeFile(join(dir, 'good.yaml'), good);
    await source.start(store);
    await rm(dir, { recursive: true });
    await assert.rejects(source.reload(), (err) => hasCode(err, ErrorCodes.SOURCE_UNREADABLE));
    // What was read before stays: a vanished folder is not "every Service deleted".
    assert.deepEqual([...store.services.keys()], ['ns/web']);
    await import('node:fs/promises').then((fs) => fs.mkdir(dir));
    await writeFile(
      join(dir, 'other.yaml'),
      yamlDocs([service('ns', 'api', { clusterIP: '10.96.0.11', ports: [{ port: 80 }] })]),
    );
    await source.reload();
    assert.deepEqual([...store.services.keys()], ['ns/api']);
  });

  it('a file mended leaves the skipped list', async () => {
    await writeFile(join(dir, 'a.yaml'), aliasBomb());
    await source.start(store);
    assert.equal(store.unreadableFiles.length, 1);
    await writeFile(join(dir, 'a.yaml'), good);
    await source.reload();
    assert.deepEqual(store.unreadableFiles, []);
    assert.deepEqual([...store.services.keys()], ['ns/web']);
  });
});

describe('FileSource re-reads', () => {
  let dir: string;
  let source: FileSource;
  let parsed: string[];
  let upserts: string[];
  let store: ObjectStore;
  const handler = (): SourceHandler => ({
    upsert: (kind, object) => {
      upserts.push(`${kind} ${object.metadata?.name}`);
      store.upsert(kind, object);
    },
    remove: (kind, ns, name) => store.remove(kind, ns, name),
    synced: () => store.synced(),
    unreadable: (files) => store.unreadable(files),
  });
  const svc = (name: string, ip: string) => service('ns', name, { clusterIP: ip, ports: [{ port: 80 }] });

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'knp-files-'));
    parsed = [];
    upserts = [];
    store = new ObjectStore();
    // The seam: every parse is counted, then done by the real parser.
    source = new FileSource(dir, {
      parse: (file, text, limits) => {
        parsed.push(file.slice(dir.length + 1));
        return objectsInFile(file, text, limits);
      },
    });
  });
  afterEach(async () => {
    await source.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('parses again only the files that changed, and emits only the objects that changed', async () => {
    await writeFile(join(dir, 'a.yaml'), yamlDocs([svc('a', '10.96.0.1')]));
    await writeFile(join(dir, 'b.yaml'), yamlDocs([svc('b', '10.96.0.2'), svc('c', '10.96.0.3')]));
    await source.start(handler());
    assert.deepEqual(parsed, ['a.yaml', 'b.yaml']);
    assert.deepEqual(upserts, ['Service a', 'Service b', 'Service c']);

    parsed = [];
    upserts = [];
    await writeFile(join(dir, 'b.yaml'), yamlDocs([svc('b', '10.96.0.2'), svc('c', '10.96.0.33')]));
    await source.reload();
    assert.deepEqual(parsed, ['b.yaml']);
    assert.deepEqual(upserts, ['Service c']);
    assert.equal(store.services.get('ns/c')?.spec?.clusterIP, '10.96.0.33');

    // Written again with the same text (a new modification time): read, not parsed.
    parsed = [];
    upserts = [];
    await writeFile(join(dir, 'a.yaml'), yamlDocs([svc('a', '10.96.0.1')]));
    await utimes(join(dir, 'a.yaml'), new Date(), new Date(Date.now() + 5000));
    await source.reload();
    assert.deepEqual(parsed, []);
    assert.deepEqual(upserts, []);
  });

  it('a source read once (rereads: false) hashes nothing, so a reload parses a rewritten file again', async () => {
    await source.stop();
    source = new FileSource(dir, {
      rereads: false,
      parse: (file, text, limits) => {
        parsed.push(file.slice(dir.length + 1));
        return objectsInFile(file, text, limits);
      },
    });
    await writeFile(join(dir, 'a.yaml'), yamlDocs([svc('a', '10.96.0.1')]));
    await source.start(handler());
    await writeFile(join(dir, 'a.yaml'), yamlDocs([svc('a', '10.96.0.1')]));
    await utimes(join(dir, 'a.yaml'), new Date(), new Date(Date.now() + 5000));
    await source.reload();
    assert.deepEqual(parsed, ['a.yaml', 'a.yaml']);
    assert.deepEqual(upserts, ['Service a']);
  });

  it('a file gone and back is parsed again; its objects go and come back', async () => {
    await writeFile(join(dir, 'a.yaml'), yamlDocs([svc('a', '10.96.0.1')]));
    await source.start(handler());
    await rename(join(dir, 'a.yaml'), join(dir, 'a.txt'));
    await source.reload();
    assert.deepEqual([...store.services.keys()], []);
    await rename(join(dir, 'a.txt'), join(dir, 'a.yaml'));
    await source.reload();
    assert.deepEqual(parsed, ['a.yaml', 'a.yaml']);
    assert.deepEqual([...store.services.keys()], ['ns/a']);
  });

  it('an unchanged file whose stamp is old is not even read again', async () => {
    const lines: Array<{ msg?: string; read?: number; parsed?: number; unchanged?: number }> = [];
    const log = createLogger({
      level: 'debug',
      destination: { write: (line: string) => void lines.push(JSON.parse(line)) },
    });
    await source.stop();
    source = new FileSource(dir, { log });
    await writeFile(join(dir, 'old.yaml'), yamlDocs([svc('a', '10.96.0.1')]));
    const old = new Date(Date.now() - 60_000);
    await utimes(join(dir, 'old.yaml'), old, old);
    // Just written: within the clock's resolution of the read, so read again every time.
    await writeFile(join(dir, 'new.yaml'), yamlDocs([svc('b', '10.96.0.2')]));
    await source.start(handler());
    await source.reload();
    const reads = lines
      .filter((l) => l.msg === 'source read')
      .map(({ read, parsed, unchanged }) => ({ read, parsed, unchanged }));
    assert.deepEqual(reads, [
      { read: 2, parsed: 2, unchanged: 0 },
      { read: 1, parsed: 0, unchanged: 2 },
    ]);
  });

  it('one bad document in a file of many costs only itself, named by its position', async () => {
    const docs = [
      yamlDocs([svc('a', '10.96.0.1')]),
      'kind: Service\nmetadata: {name: broken\n',
      yamlDocs([svc('b', '10.96.0.2')]),
    ];
    await writeFile(join(dir, 'all.yaml'), docs.join('---\n'));
    await source.start(handler());
    assert.deepEqual([...store.services.keys()], ['ns/a', 'ns/b']);
    assert.deepEqual(
      store.unreadableFiles.map((f) => [f.file.slice(dir.length + 1), f.reason.replace(/:.*/, '')]),
      [['all.yaml', 'document 2']],
    );
  });
});

describe('objectsInFile: object envelopes', () => {
  const objects = async (docs: object[]) =>
    objectsInFile('x.json', JSON.stringify({ kind: 'List', items: docs }));

  it('a kind that names an Object.prototype member is no kind', async () => {
    const r = await objects([
      { kind: 'constructor', metadata: { name: 'a' } },
      { kind: '__proto__', metadata: { name: 'b' } },
      { kind: 'toString', metadata: { name: 'c' } },
    ]);
    assert.deepEqual(r, { objects: [], problems: [] });
  });

  it('an object with fields of the wrong type is one problem; the rest of the file counts', async () => {
    const ok = { kind: 'Service', metadata: { name: 'ok', namespace: 'ns' }, spec: {} };
    const r = await objects([
      { kind: 'Service', metadata: { name: { toString: 1 } } },
      { kind: 'Service', metadata: { name: 'a', namespace: 7 } },
      { kind: 'EndpointSlice', metadata: { name: 'b', labels: { 'kubernetes.io/service-name': ['x'] } } },
      { kind: 'Service', metadata: 'text' },
      { kind: 'Service', metadata: { name: 'x'.repeat(300) } },
      { kind: 'Node', metadata: { name: 'n' }, status: { addresses: 'not a list' } },
      { kind: 'Node', metadata: { name: 'n' }, spec: { taints: [null] } },
      { kind: 'Service', metadata: { name: 'c' }, spec: ['a list'] },
      { kind: 'Service', metadata: { name: 'c', namespace: 'a/b' } },
      { kind: 'Service', metadata: { name: 'B_c' } },
      { kind: 'Service', metadata: { name: 'c', creationTimestamp: { toString: 1 } } },
      { kind: 'Service', metadata: { name: 'c', creationTimestamp: 'yesterday' } },
      ok,
    ]);
    assert.deepEqual(r.objects, [{ kind: 'Service', object: ok }]);
    assert.deepEqual(r.problems, [
      'object 1.items[0] (Service): metadata.name is not a string',
      'object 1.items[1] (Service): metadata.namespace is not a string',
      'object 1.items[2] (EndpointSlice): metadata.labels["kubernetes.io/service-name"] is not a string',
      'object 1.items[3] (Service): metadata is not an object',
      'object 1.items[4] (Service): metadata.name "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx" is not a DNS subdomain',
      'object 1.items[5] (Node): status.addresses is not a list',
      'object 1.items[6] (Node): spec.taints[0] is not an object',
      'object 1.items[7] (Service): spec is not an object',
      'object 1.items[8] (Service): metadata.namespace "a/b" is not a DNS label',
      'object 1.items[9] (Service): metadata.name "B_c" is not a DNS subdomain',
      'object 1.items[10] (Service): metadata.creationTimestamp is not a time',
      'object 1.items[11] (Service): metadata.creationTimestamp is not a time',
    ]);
  });
});
