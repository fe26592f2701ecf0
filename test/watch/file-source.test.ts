import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ErrorCodes, hasCode } from '../../src/errors.js';
import { FileSource, objectsInFile } from '../../src/watch/file-source.js';
import { ObjectStore } from '../../src/watch/object-store.js';
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
