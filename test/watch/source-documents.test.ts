import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import fc from 'fast-check';
import { stringify } from 'yaml';
import { parseDocuments, PARSE_LIMITS, type ParseResult } from '../../src/watch/parse-documents.js';
import {
  parseSourceDocuments,
  unusualStream,
  type SourceDocuments,
} from '../../src/watch/source-documents.js';
import { clusterArb, objectsOf } from '../support/arbitraries.js';
import { aliasBomb, deepYaml } from '../support/hostile-input.js';
import { service, slice, yamlDocs } from '../support/objects.js';

const values = (r: SourceDocuments): unknown[] => r.documents.map((d) => d.value);
const guardedReason = (text: string): string => {
  const r: ParseResult = parseDocuments('x.yaml', text);
  assert.equal(r.ok, false);
  return r.ok ? '' : r.reason;
};

/**
 * Both parsers on the same text of one document, or of several good ones: the same documents,
 * or the same refusal with the same reason.
 */
async function assertSame(file: string, text: string): Promise<void> {
  const fast = await parseSourceDocuments(file, text);
  const slow = parseDocuments(file, text);
  if (slow.ok) {
    assert.deepEqual(fast.problems, []);
    assert.deepEqual(values(fast), slow.documents);
  } else assert.deepEqual(fast.problems, [slow.reason]);
}

describe('parseSourceDocuments: the fast path', () => {
  const web = service('ns', 'web', { clusterIP: '10.96.0.10', ports: [{ port: 80 }] });
  const webSlice = slice('ns', 'web-a', 'web', [{ port: 8080 }], [{ ip: '10.244.1.11' }]);

  it('a bad document costs only itself: each named by its position, with the line in the file', async () => {
    const docs = [
      yamlDocs([web]),
      'kind: Service\nmetadata: {name: broken\n',
      aliasBomb(),
      deepYaml(),
      yamlDocs([webSlice]),
    ];
    const text = docs.join('---\n');
    const r = await parseSourceDocuments('x.yaml', text);
    assert.deepEqual(
      r.documents.map((d) => d.index),
      [1, 5],
    );
    assert.deepEqual(
      values(r),
      [web, webSlice].map((o) => JSON.parse(JSON.stringify(o)) as unknown),
    );
    assert.equal(r.problems.length, 3);
    // The line is the file's: what the guarded parser says of the whole file up to that document.
    assert.equal(r.problems[0], `document 2: ${guardedReason(docs.slice(0, 2).join('---\n'))}`);
    assert.match(r.problems[1]!, /^document 3: YAML aliases expand past 100 nodes/);
    const deepLine = text.split('\n').findIndex((l) => l.startsWith('- - -')) + 1;
    assert.match(
      r.problems[2]!,
      new RegExp(`^document 4: nested more than 100 levels deep at line ${deepLine},`),
    );
  });

  it('reads ordinary documents without the guarded parser, and aliases with it', async () => {
    const plain = await parseSourceDocuments('x.yaml', yamlDocs([web, webSlice]));
    assert.equal(plain.guarded, 0);
    const aliased = await parseSourceDocuments('x.yaml', 'a: &x {port: 80}\nb: *x\n---\nkind: Node\n');
    assert.equal(aliased.guarded, 1);
    assert.deepEqual(values(aliased), [{ a: { port: 80 }, b: { port: 80 } }, { kind: 'Node' }]);
  });

  it('does not name the document in a file of one', async () => {
    const r = await parseSourceDocuments('x.yaml', '# a comment\n---\nkind: [unclosed\n');
    assert.equal(r.problems.length, 1);
    assert.match(r.problems[0]!, /^not YAML: .* at line \d+, column \d+$/);
  });

  it('keeps a document at the depth limit (js-yaml counts scalars too: the guarded parser decides)', async () => {
    const depth = PARSE_LIMITS.maxDepth;
    const r = await parseSourceDocuments('x.yaml', `${'['.repeat(depth)}${']'.repeat(depth)}\n`);
    assert.deepEqual(r.problems, []);
    assert.equal(r.documents.length, 1);
  });

  it('refuses a cycle and a document with a duplicate key, as the guarded parser does', async () => {
    const r = await parseSourceDocuments('x.yaml', 'a: &a [1, *a]\n---\na: 1\na: 2\n---\nkind: Node\n');
    assert.deepEqual(values(r), [{ kind: 'Node' }]);
    assert.match(r.problems[0]!, /^document 1: nested more than 100 levels deep \(through YAML aliases\)$/);
    assert.match(r.problems[1]!, /^document 2: not YAML: Map keys must be unique/);
  });

  it('reads a file with directives whole, through the guarded parser', async () => {
    const r = await parseSourceDocuments('x.yaml', '%YAML 1.2\n---\nkind: Service\n...\n');
    assert.deepEqual(values(r), [{ kind: 'Service' }]);
    assert.equal(r.guarded, 1);
  });

  it('a marker that is not at the start of a line, or not followed by a space, cuts nothing', async () => {
    await assertSame('x.yaml', 'a: |\n  text\n  ---\nb: ---x\n---x: 1\n');
  });

  it('keeps __proto__ as an ordinary key', async () => {
    const [doc] = values(await parseSourceDocuments('x.yaml', '__proto__: {polluted: yes}\nkind: Service\n'));
    assert.equal(Object.getPrototypeOf(doc), Object.prototype);
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
    assert.deepEqual(Object.keys(doc as object), ['__proto__', 'kind']);
  });

  it('gives the event loop turns while a large stream is read', async () => {
    const stream = Array.from({ length: 500 }, (_, i) => `kind: Service\nmetadata: {name: s${i}}\n`).join(
      '---\n',
    );
    const order: string[] = [];
    setImmediate(() => order.push('other work'));
    await parseSourceDocuments('x.yaml', stream, PARSE_LIMITS, 0);
    order.push('parsed');
    assert.deepEqual(order, ['other work', 'parsed']);
  });
});

describe('unusualStream', () => {
  /** The regex it replaces: a directive, or `...` ending a document, at the start of a line. */
  const REFERENCE = /^(?:%|\.\.\.(?=[ \t\r\n]|$))/m;

  it('finds directives and document ends at the start of any line, and nothing else', () => {
    for (const text of ['%YAML 1.2\n', 'a: 1\n...\n', 'a: 1\r...', 'a\u2028%', 'a\n... b', 'x\n...\t'])
      assert.equal(unusualStream(text), true, JSON.stringify(text));
    for (const text of ['a: 50%\n', ' %x', 'a: ...\n', '....\n', 'a\n...b', '', 'a: 1\n'])
      assert.equal(unusualStream(text), false, JSON.stringify(text));
  });

  it('agrees with the multiline regex it replaces on any text of the characters that matter', () => {
    const text = fc
      .array(fc.constantFrom('%', '.', '...', '\n', '\r', '\u2028', '\u2029', ' ', '\t', 'a', '#'), {
        maxLength: 24,
      })
      .map((parts) => parts.join(''));
    fc.assert(
      fc.property(text, (t) => unusualStream(t) === REFERENCE.test(t)),
      { numRuns: 2000 },
    );
  });
});

describe('parseSourceDocuments: JSON', () => {
  it('reads a .json file with JSON.parse, as one document', async () => {
    const r = await parseSourceDocuments('x.json', '{"kind": "List", "items": [{"kind": "Service"}]}');
    assert.deepEqual(r, {
      documents: [{ index: 1, value: { kind: 'List', items: [{ kind: 'Service' }] } }],
      problems: [],
      guarded: 0,
      byWorker: 0,
    });
  });

  it('refuses deep JSON, and text that is not JSON, in a .json file', async () => {
    assert.deepEqual(
      (await parseSourceDocuments('x.json', `${'['.repeat(200)}${']'.repeat(200)}`)).problems,
      ['nested more than 100 levels deep'],
    );
    assert.match((await parseSourceDocuments('x.json', 'kind: Service')).problems[0]!, /^not JSON/);
  });

  it('reads JSON in a .yaml file as JSON, and flow-style YAML that is not JSON as YAML', async () => {
    assert.deepEqual(values(await parseSourceDocuments('x.yaml', ' {"kind": "Service"}')), [
      { kind: 'Service' },
    ]);
    assert.deepEqual(values(await parseSourceDocuments('x.yaml', '{kind: Service}\n---\n{kind: Node}\n')), [
      { kind: 'Service' },
      { kind: 'Node' },
    ]);
  });
});

describe('parseSourceDocuments: JSON-looking YAML', () => {
  it('text in a .yaml file that JSON refuses is YAML, with YAML limits and reasons', async () => {
    const deep = `${'['.repeat(200)}${']'.repeat(200)}\n`;
    assert.deepEqual((await parseSourceDocuments('x.yaml', deep)).problems, [guardedReason(deep)]);
    assert.deepEqual(values(await parseSourceDocuments('x.yaml', "{a: 'x[[['}\n")), [{ a: 'x[[[' }]);
  });
});

describe('parseSourceDocuments and the guarded parser read the same objects', () => {
  it('on the repository examples, manifests and fixtures', async () => {
    for (const file of [
      'examples/demo/web.yaml',
      'examples/demo/node.yaml',
      'manifests/configmap.yaml',
      'manifests/daemonset.yaml',
      'manifests/clusterrole.yaml',
      'manifests/clusterrolebinding.yaml',
      'manifests/serviceaccount.yaml',
      'manifests/kustomization.yaml',
      'test/fixtures/kubeadm-kube-proxy-config.yaml',
    ])
      await assertSame(file, await readFile(file, 'utf8'));
  });

  it('on generated clusters of every Service type, in block and in flow style', async () => {
    await fc.assert(
      fc.asyncProperty(clusterArb, fc.boolean(), async (spec, flow) => {
        const { services, slices } = objectsOf(spec);
        const text = [...services, ...slices]
          .map((o) => stringify(o, flow ? { collectionStyle: 'flow' } : {}))
          .join('---\n');
        await assertSame('x.yaml', text);
      }),
      { numRuns: 50 },
    );
  });

  // Plain scalars are where YAML parsers disagree: js-yaml's own core schema reads 0b101 and
  // 1_000 as numbers, YAML 1.1 reads yes and 012 differently again.
  const tricky = [
    ...['0b101', '1_000', '0o17', '0O17', '0x1F', '0X1F', '+0x1F', '-0x1F', '+12', '-0', '012', '09', '1:30'],
    ...['.inf', '-.Inf', '+.INF', '.nan', '.NaN', '.NAN', 'nan', 'inf', '1e3', '1E-3', '-1.5e+3', '1.', '.5'],
    ...['+.5', '1.0', '1.50', '123456789012345678901234567890', '0.1e', 'e3', '1e', '.', '-', '+', '-.5'],
    ...['null', 'Null', 'NULL', 'nULL', '~', 'true', 'True', 'TRUE', 'tRUE', 'false', 'yes', 'No', 'on'],
    ...['off', 'y', 'n', '2026-01-01', '2026-01-01T10:00:00Z', '10.96.0.1', 'fd00::1', '80/TCP', '0', '00'],
  ];
  it('on tricky plain scalars, as values and as keys', async () => {
    for (const s of tricky) {
      await assertSame('x.yaml', `v: ${s}\nl: [${s}]\n`);
      // One known difference: js-yaml names a null key "null", the yaml package "" (no
      // Kubernetes object has one; see yaml-core-schema.ts).
      if (!/^(?:~|null|Null|NULL)$/.test(s)) await assertSame('x.yaml', `${s}: v\n`);
    }
    await assertSame('x.yaml', 'empty:\nlist: [a, ~, ""]\n');
  });

  it('on arbitrary plain and quoted scalars', async () => {
    const scalarArb = fc.oneof(
      fc.constantFrom(...tricky),
      fc.stringMatching(/^[-+.0-9eEoxXa-fA-F_:]{1,8}$/),
      fc.string({ maxLength: 12 }),
    );
    await fc.assert(
      fc.asyncProperty(fc.dictionary(fc.string({ minLength: 1, maxLength: 6 }), scalarArb), async (dict) => {
        // Rendered by a serializer (quoting what needs it) and as bare plain scalars where the
        // text allows: either way the two parsers must agree or both refuse.
        await assertSame('x.yaml', stringify(dict));
        const bare = Object.values(dict)
          .filter((v) => /^[-+.0-9eEoxXa-fA-F_:~]+$/.test(v) && !v.includes(': ') && !v.endsWith(':'))
          .map((v, i) => `k${i}: ${v}`)
          .join('\n');
        await assertSame('x.yaml', `${bare}\n`);
      }),
      { numRuns: 200 },
    );
  });
});
