import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  jsonNestsDeeper,
  PARSE_LIMITS,
  parseDocuments,
  parseDocumentsAsync,
  parseJson,
  parseYamlDocuments,
  readBounded,
  readBoundedSync,
  valueNestsDeeper,
  type ParseResult,
} from '../../src/watch/parse-documents.js';
import { aliasBomb, DEEP, deepJson } from '../support/hostile-input.js';

const refused = (r: ParseResult): string => {
  assert.equal(r.ok, false, 'refused');
  return r.ok ? '' : r.reason;
};
const documents = (r: ParseResult): unknown[] => {
  assert.ok(r.ok, r.ok ? '' : r.reason);
  return r.ok ? r.documents : [];
};

describe('parseYamlDocuments: bounded YAML', () => {
  it('parses every document of a stream as plain values', () => {
    const docs = documents(parseYamlDocuments('kind: Service\n---\nkind: Node\n---\n'));
    assert.deepEqual(docs.slice(0, 2), [{ kind: 'Service' }, { kind: 'Node' }]);
  });

  it('refuses a syntax error with its line', () => {
    assert.match(
      refused(parseYamlDocuments('a: 1\nb: [unclosed\n')),
      /^not YAML: .* at line \d+, column \d+/,
    );
  });

  it('refuses an alias bomb without expanding it', () => {
    assert.match(refused(parseYamlDocuments(aliasBomb())), /YAML aliases expand past 100 nodes/);
  });

  it('keeps a few aliases, as kubectl does', () => {
    const [doc] = documents(parseYamlDocuments('a: &x {port: 80}\nb: *x\nc: *x\n'));
    assert.deepEqual(doc, { a: { port: 80 }, b: { port: 80 }, c: { port: 80 } });
  });

  it('refuses an alias to its own anchor (a cycle)', () => {
    assert.match(refused(parseYamlDocuments('a: &a [1, *a]\n')), /nested more than 100 levels deep/);
  });

  // Each 400,000 levels deep in well under a megabyte: unguarded, the parser builds 500 MB of
  // syntax tree before the composer's stack gives out. The column in the reason shows that the
  // guard stopped reading near the limit.
  for (const [what, text] of [
    ['flow sequences', `${'['.repeat(DEEP)}${']'.repeat(DEEP)}\n`],
    ['flow maps', `${'{a: '.repeat(DEEP)}1${'}'.repeat(DEEP)}\n`],
    ['compact block sequences on one line', `${'- '.repeat(DEEP)}x\n`],
    ['block maps', `${Array.from({ length: 2000 }, (_, i) => `${' '.repeat(i)}k:`).join('\n')} 1\n`],
  ] as const) {
    it(`refuses ${what} nested past the limit, having read only as far as the limit`, () => {
      const reason = refused(parseYamlDocuments(text));
      const m = /^nested more than 100 levels deep at line (\d+), column (\d+)$/.exec(reason);
      assert.ok(m, reason);
      assert.ok(Number(m[1]) <= 102 && Number(m[2]) <= 4 * 102, reason);
    });
  }

  it('accepts nesting right at the limit', () => {
    const depth = PARSE_LIMITS.maxDepth;
    let value: unknown = documents(parseYamlDocuments(`${'['.repeat(depth)}${']'.repeat(depth)}\n`))[0];
    let levels = 0;
    while (Array.isArray(value)) {
      levels++;
      value = value[0];
    }
    assert.equal(levels, depth);
  });

  it('keeps __proto__ as an ordinary key', () => {
    const [doc] = documents(parseYamlDocuments('__proto__: {polluted: yes}\nkind: Service\n'));
    assert.equal(Object.getPrototypeOf(doc), Object.prototype);
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
    assert.deepEqual(Object.keys(doc as object), ['__proto__', 'kind']);
  });

  it('refuses text past the size limit without parsing it', () => {
    const limits = { ...PARSE_LIMITS, maxBytes: 10 };
    assert.match(refused(parseYamlDocuments('kind: Service\n', limits)), /more than the 10 bytes/);
  });
});

describe('parseJson: bounded JSON', () => {
  it('parses one value', () => {
    assert.deepEqual(documents(parseJson('{"kind":"List","items":[]}')), [{ kind: 'List', items: [] }]);
  });

  it('refuses JSON nested 400,000 levels deep before parsing it', () => {
    assert.match(refused(parseJson(deepJson())), /^nested more than 100 levels deep$/);
  });

  it('counts no bracket inside a string, escaped quotes included', () => {
    const text = JSON.stringify({ a: '[[[[\\"[[[[', b: ['x'] });
    assert.equal(jsonNestsDeeper(text, 2), false);
    assert.equal(jsonNestsDeeper(text, 1), true);
  });

  it('refuses what is not JSON, with the parser reason', () => {
    assert.match(refused(parseJson('{"a": ')), /^not JSON: /);
  });

  it('keeps __proto__ as an ordinary key', () => {
    const [doc] = documents(parseJson('{"__proto__": {"polluted": true}}'));
    assert.equal(Object.getPrototypeOf(doc), Object.prototype);
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
  });

  it('is chosen by file name: .json as JSON, anything else as YAML', () => {
    assert.match(refused(parseDocuments('x.json', 'kind: Service')), /^not JSON/);
    assert.deepEqual(documents(parseDocuments('x.yaml', '{"kind": "Service"}')), [{ kind: 'Service' }]);
  });
});

describe('parseDocumentsAsync', () => {
  const stream = Array.from({ length: 500 }, (_, i) => `kind: Service\nmetadata: {name: s${i}}\n`).join(
    '---\n',
  );

  it('gives the event loop turns while a YAML stream is parsed', async () => {
    const order: string[] = [];
    setImmediate(() => order.push('other work'));
    await parseDocumentsAsync('x.yaml', stream, PARSE_LIMITS, 0);
    order.push('parsed');
    assert.deepEqual(order, ['other work', 'parsed']);
  });

  it('answers what parseDocuments answers', async () => {
    for (const [file, text] of [
      ['x.yaml', stream],
      ['x.yaml', aliasBomb()],
      ['x.yaml', `${'['.repeat(DEEP)}`],
      ['x.json', deepJson()],
      ['x.json', '{"kind": "Service"}'],
    ] as const)
      assert.deepEqual(await parseDocumentsAsync(file, text, PARSE_LIMITS, 0), parseDocuments(file, text));
  });
});

describe('valueNestsDeeper', () => {
  it('finds a cycle without recursing', () => {
    const a: unknown[] = [];
    a.push(a, a);
    assert.equal(valueNestsDeeper(a, 100), true);
  });

  it('measures nesting exactly', () => {
    assert.equal(valueNestsDeeper({ a: [{}] }, 3), false);
    assert.equal(valueNestsDeeper({ a: [{}] }, 2), true);
    assert.equal(valueNestsDeeper('scalar', 0), false);
  });
});

describe('readBounded', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'knp-read-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('reads a regular file within the limit, sync and async', async () => {
    await writeFile(join(dir, 'ok.yaml'), 'kind: Service\n');
    assert.deepEqual(await readBounded(join(dir, 'ok.yaml')), { ok: true, text: 'kind: Service\n' });
    assert.deepEqual(readBoundedSync(join(dir, 'ok.yaml')), { ok: true, text: 'kind: Service\n' });
  });

  it('refuses a file past the limit by its size, before reading it', async () => {
    await writeFile(join(dir, 'big.yaml'), 'x'.repeat(11));
    const limits = { ...PARSE_LIMITS, maxBytes: 10 };
    for (const r of [
      await readBounded(join(dir, 'big.yaml'), limits),
      readBoundedSync(join(dir, 'big.yaml'), limits),
    ])
      assert.deepEqual(r, { ok: false, reason: '11 bytes is more than the 10 bytes a source file may have' });
  });

  it('refuses a FIFO without waiting for a writer, and a folder', async () => {
    const fifo = join(dir, 'pipe.yaml');
    assert.equal(spawnSync('mkfifo', [fifo]).status, 0);
    await mkdir(join(dir, 'folder.yaml'));
    for (const path of [fifo, join(dir, 'folder.yaml')]) {
      const r = await readBounded(path);
      assert.equal(r.ok, false);
      assert.equal(readBoundedSync(path).ok, false);
    }
    assert.deepEqual(await readBounded(fifo), { ok: false, reason: 'not a regular file' });
  });

  it('reports a missing file as a reason, not a throw', async () => {
    const r = await readBounded(join(dir, 'missing.yaml'));
    assert.equal(r.ok, false);
    assert.match(r.ok ? '' : r.reason, /ENOENT/);
  });
});
