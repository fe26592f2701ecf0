import assert from 'node:assert/strict';
import fc from 'fast-check';
import jsYaml from 'js-yaml';
import { blockValues } from '../../src/watch/block-yaml.js';
import { YAML_CORE_SCHEMA } from '../../src/watch/yaml-core-schema.js';

const MAX_DEPTH = 100;

/** What js-yaml (the reader block-yaml.ts stands in for) makes of a document, or 'refused'. */
function jsYamlValues(text: string): unknown[] | 'refused' {
  const values: unknown[] = [];
  try {
    jsYaml.loadAll(text, (doc) => values.push(doc), {
      schema: YAML_CORE_SCHEMA,
      maxDepth: MAX_DEPTH,
    } as jsYaml.LoadOptions);
  } catch {
    return 'refused';
  }
  return values;
}

/** The contract: block-yaml reads a text as js-yaml does, or leaves it to js-yaml. */
function assertAgrees(text: string): 'read' | 'left' {
  const block = blockValues(text, MAX_DEPTH);
  if (block === undefined) return 'left';
  const reference = jsYamlValues(text);
  assert.notEqual(reference, 'refused', `block-yaml read what js-yaml refuses:\n${text}`);
  // Object.is on numbers too (-0, NaN): deepEqual in strict mode compares with Object.is.
  assert.deepEqual(block, reference, text);
  return 'read';
}

const read = (text: string): unknown => {
  const values = blockValues(text, MAX_DEPTH);
  assert.notEqual(values, undefined, `not read:\n${text}`);
  assert.equal(assertAgrees(text), 'read');
  return values![0];
};
const left = (text: string): void => assert.equal(blockValues(text, MAX_DEPTH), undefined, text);

describe('blockValues: the block subset', () => {
  it('reads what kubectl prints: maps, lists at and past their key, lists of maps, quoted and empty values', () => {
    const text = [
      'apiVersion: v1',
      'kind: Service',
      'metadata:',
      '  creationTimestamp: "2026-01-01T10:00:00Z"',
      '  labels:',
      '    app.kubernetes.io/name: web',
      "  name: 'web'",
      '  uid: 00000001-0000-4000-8001-000000010000',
      'spec:',
      '  clusterIPs:',
      '  - 10.96.0.1',
      '  ports:',
      '    - name: http',
      '      port: 80',
      '      targetPort: 8080',
      '    - port: -1',
      '  selector: {}',
      '  extra: []',
      '  none:',
      'status:',
      '  loadBalancer: {}',
      '',
    ].join('\n');
    assert.deepEqual(read(text), {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: {
        creationTimestamp: '2026-01-01T10:00:00Z',
        labels: { 'app.kubernetes.io/name': 'web' },
        name: 'web',
        uid: '00000001-0000-4000-8001-000000010000',
      },
      spec: {
        clusterIPs: ['10.96.0.1'],
        ports: [{ name: 'http', port: 80, targetPort: 8080 }, { port: -1 }],
        selector: {},
        extra: [],
        none: null,
      },
      status: { loadBalancer: {} },
    });
  });

  it('reads a document after its --- line, with comment and blank lines anywhere', () => {
    assert.deepEqual(
      read('---\n# a comment\nkind: Node\n\n  # indented comment\nmetadata:\n\n  name: n1\n'),
      {
        kind: 'Node',
        metadata: { name: 'n1' },
      },
    );
  });

  it('resolves plain scalars and keys as the core schema does', () => {
    assert.deepEqual(read('a: true\nb: 0x1F\nc: ~\nd: 1.5\ne: "80"\nf: 0o17\ng: yes\ntrue: 1\n0x10: x\n'), {
      a: true,
      b: 31,
      c: null,
      d: 1.5,
      e: '80',
      f: 15,
      g: 'yes',
      true: 1,
      16: 'x',
    });
    assert.ok(Number.isNaN((read('n: .nan\n') as { n: number }).n));
  });

  it('leaves everything else to js-yaml', () => {
    for (const text of [
      'a:\tb\n', // a tab
      'a: b\r\n', // CR
      'a: é\n', // past ASCII
      'a: &x 1\nb: *x\n', // anchor, alias
      'a: !!str 1\n', // tag
      'a: |\n  text\n', // block scalar
      'a: >\n  text\n',
      'a: one\n  two\n', // a plain scalar on two lines
      'a: "one\n  two"\n',
      'a: "x\\ny"\n', // an escape
      "a: 'it''s'\n", // a doubled quote
      'a: 1\na: 2\n', // a duplicate key
      '__proto__: {}\n',
      'a: b # comment\n',
      'a: b: c\n',
      'a: b:\n',
      'a: [1, 2]\n', // flow collections with content
      'a: {b: 1}\n',
      '"a": 1\n', // quoted key
      'a b: 1\n', // key with a space
      '- 1\n- 2\n', // top-level list
      'just text\n',
      '--- \na: 1\n', // marker with more on its line
      '--- a: 1\n',
      '\n---a: web\n', // js-yaml: a marker, then `a: web`
      '# c\n---a: web\n',
      'a: 1\n...b: 2\n',
      '  a: 1\n', // indented document
      'a:\n    b: 1\n  c: 2\n', // bad indentation
      'a:\n  - 1\n  b: 2\n',
      'a: 1\n- 2\n',
      'a:\n- - 1\n', // list in a list
      'a:\n-\n  b: 1\n', // `-` alone
      'a: - 1\n',
      'a: ?x\n',
      '',
      '# only a comment\n',
    ])
      left(text);
  });

  it('reads a document in place in a stream, as the same text cut out, and nothing past its end', () => {
    const docs = [
      'kind: Service\nmetadata:\n  name: a\n',
      '---\nkind: Node\nspec:\n',
      '---\nkind: List\nitems: []',
    ];
    const text = docs.join('');
    let from = 0;
    for (const doc of docs) {
      assert.deepEqual(blockValues(text, MAX_DEPTH, from, from + doc.length), blockValues(doc, MAX_DEPTH));
      from += doc.length;
    }
    // `spec:` ends its document: null, not the next document's map.
    assert.deepEqual(blockValues(text, MAX_DEPTH, docs[0]!.length, docs[0]!.length + docs[1]!.length), [
      { kind: 'Node', spec: null },
    ]);
    // A cut that is not a `---` line alone is not read.
    assert.equal(blockValues('---x\nkind: Node\n', MAX_DEPTH), undefined);
  });

  it('reads a document of 200,000 lines, and the next one after it', () => {
    const big = `items:\n${'- a: 1\n  b: x\n'.repeat(100_000)}`;
    const value = read(big) as { items: unknown[] };
    assert.equal(value.items.length, 100_000);
    assert.deepEqual(read('kind: Node\n'), { kind: 'Node' });
  });

  it('leaves documents near the depth limit to js-yaml', () => {
    const nested = (depth: number): string =>
      Array.from({ length: depth }, (_, i) => `${'  '.repeat(i)}k:`).join('\n') + ' 1\n';
    assert.equal(assertAgrees(nested(10)), 'read');
    left(nested(MAX_DEPTH));
  });
});

/** Scalars as they may appear in a value, quoted or not: ordinary, tricky for the schema, and odd. */
const scalarText = fc.oneof(
  {
    arbitrary: fc.constantFrom('web', 'svc-1', '10.96.0.1', '8080', '"2026-01-01T10:00:00Z"', 'TCP'),
    weight: 3,
  },
  fc.constantFrom(
    'web',
    '10.96.0.1',
    '80',
    '-1',
    '-.5',
    '0x1F',
    '+12',
    '.inf',
    '.nan',
    '-0',
    '1e3',
    'true',
    'False',
    'null',
    '~',
    'yes',
    '2026-01-01',
    '"quoted"',
    '"with # hash"',
    "'single'",
    '""',
    "''",
    '{}',
    '[]',
    'a:b',
    'http://x:80/p',
    'a #b',
    'a#b',
    'x, y',
    '- x',
    '-x',
    '[x]',
    '{x}',
    '&a x',
    '*a',
    '!x',
    '|',
    '>',
    '%x',
    '@x',
    '`x',
    'a: b',
    'ends:',
    '"half',
    "'half",
    '"a"b"',
    '"a\\"b"',
  ),
  fc.stringMatching(/^[-a-zA-Z0-9 .:#'"_/~+]{1,10}$/),
);
const keyText = fc.oneof(
  fc.constantFrom('kind', 'name', 'app.kubernetes.io/name', 'true', 'null', '0x10', '1', '.5', '__proto__'),
  fc.stringMatching(/^[-a-zA-Z0-9_./]{1,8}$/),
);

type Tree = { map: Array<[string, Tree]> } | { list: Tree[] } | { scalar: string } | { empty: true };
const treeArb: fc.Arbitrary<Tree> = fc.letrec<{ tree: Tree }>((tie) => ({
  tree: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.record({ scalar: scalarText }),
    fc.record({ empty: fc.constant(true as const) }),
    fc.record({ map: fc.array(fc.tuple(keyText, tie('tree')), { minLength: 1, maxLength: 4 }) }),
    fc.record({ list: fc.array(tie('tree'), { minLength: 1, maxLength: 3 }) }),
  ),
})).tree;
/** A document: a map at the top, as every Kubernetes object is. */
const documentArb: fc.Arbitrary<Tree> = fc
  .array(fc.tuple(keyText, treeArb), { minLength: 1, maxLength: 5 })
  .map((map) => ({ map }));

/** How a tree is laid out: lists at their key's indentation or past it, the indentation step, the gap after `-`. */
interface Layout {
  compact: boolean;
  step: number;
  gap: number;
}
const layoutArb: fc.Arbitrary<Layout> = fc.record({
  compact: fc.boolean(),
  step: fc.integer({ min: 1, max: 4 }),
  gap: fc.integer({ min: 1, max: 3 }),
});

/**
 * A tree rendered in block style, as people and kubectl write it: lists at their key's
 * indentation or past it, a list item's map on the `-` line.
 */
function render(tree: Tree, indent: number, layout: Layout): string[] {
  const pad = ' '.repeat(indent);
  const { compact, step, gap } = layout;
  const dash = `-${' '.repeat(gap)}`;
  if ('map' in tree) {
    const lines: string[] = [];
    for (const [key, value] of tree.map) {
      if ('scalar' in value) lines.push(`${pad}${key}: ${value.scalar}`);
      else if ('empty' in value) lines.push(`${pad}${key}:`);
      else {
        lines.push(`${pad}${key}:`);
        lines.push(...render(value, 'list' in value && compact ? indent : indent + step, layout));
      }
    }
    return lines;
  }
  if ('list' in tree) {
    const lines: string[] = [];
    for (const item of tree.list) {
      if ('scalar' in item) lines.push(`${pad}${dash}${item.scalar}`);
      else if ('empty' in item) lines.push(`${pad}-`);
      else {
        const inner = render(item, indent + 1 + gap, layout);
        lines.push(`${pad}${dash}${inner[0]!.trimStart()}`, ...inner.slice(1));
      }
    }
    return lines;
  }
  return 'scalar' in tree ? [`${pad}${tree.scalar}`] : [];
}

describe('blockValues reads as js-yaml does, or leaves the text to it', () => {
  it('on generated block documents', () => {
    let count = 0;
    fc.assert(
      fc.property(documentArb, layoutArb, fc.boolean(), (tree, layout, marker) => {
        const text = `${marker ? '---\n' : ''}${render(tree, 0, layout).join('\n')}\n`;
        if (assertAgrees(text) === 'read') count++;
      }),
      { numRuns: 3000 },
    );
    // The generator must reach the reader, not only its refusals.
    assert.ok(count > 250, `only ${count} read`);
  });

  it('on generated documents with one line broken (indented, cut, joined, a character added) or added (a comment, a blank line, a marker)', () => {
    const edit = fc.record({
      line: fc.nat(),
      how: fc.constantFrom('indent', 'outdent', 'cut', 'join', 'insert', 'comment', 'blank', 'marker'),
      char: fc.constantFrom(' ', '-', ':', '#', '"', "'", '&', '*', '!', '|', '{', '[', 'x', '1', '\t'),
      at: fc.nat(),
    });
    let count = 0;
    fc.assert(
      fc.property(documentArb, layoutArb, edit, (tree, layout, e) => {
        const lines = render(tree, 0, layout);
        if (lines.length === 0) return;
        const i = e.line % lines.length;
        const line = lines[i]!;
        if (e.how === 'indent') lines[i] = ` ${line}`;
        if (e.how === 'outdent') lines[i] = line.replace(/^ /, '');
        if (e.how === 'cut') lines[i] = line.slice(0, e.at % (line.length + 1));
        if (e.how === 'join' && i + 1 < lines.length) lines.splice(i, 2, `${line} ${lines[i + 1]!.trim()}`);
        // A line of its own: a comment, a blank line, a document marker (at any indentation).
        const pad = ' '.repeat(e.at % 6);
        if (e.how === 'comment') lines.splice(i, 0, `${pad}# ${e.char}`);
        if (e.how === 'blank') lines.splice(i, 0, pad);
        if (e.how === 'marker') lines.splice(i, 0, `${pad}---`);
        if (e.how === 'insert') {
          const at = e.at % (line.length + 1);
          lines[i] = line.slice(0, at) + e.char + line.slice(at);
        }
        if (assertAgrees(`${lines.join('\n')}\n`) === 'read') count++;
      }),
      { numRuns: 5000 },
    );
    assert.ok(count > 250, `only ${count} read`);
  });
});
