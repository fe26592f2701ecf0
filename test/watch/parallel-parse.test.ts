import assert from 'node:assert/strict';
import fc from 'fast-check';
import { stringify } from 'yaml';
import { claim, newClaims } from '../../src/watch/document-claims.js';
import { readInParallel } from '../../src/watch/parallel-parse.js';
import { PARSE_LIMITS } from '../../src/watch/parse-documents.js';
import {
  parseSourceDocuments,
  type SourceDocuments,
  type SourceParseOptions,
} from '../../src/watch/source-documents.js';
import { clusterArb, objectsOf } from '../support/arbitraries.js';
import { aliasBomb, deepYaml } from '../support/hostile-input.js';
import { service, slice, yamlDocs } from '../support/objects.js';

const alone: SourceParseOptions = { parallelFromBytes: Infinity };
/** The worker reads every document it can: nothing is left to chance in who reads what. */
const workerOnly: SourceParseOptions = { parallelFromBytes: 0, mainReads: false };
const both: SourceParseOptions = { parallelFromBytes: 0 };

const parse = (text: string, opts: SourceParseOptions): Promise<SourceDocuments> =>
  parseSourceDocuments('x.yaml', text, PARSE_LIMITS, 20, opts);

/** What a parse found, apart from who read it. */
const outcome = (r: SourceDocuments): unknown => ({
  documents: r.documents,
  problems: r.problems,
  guarded: r.guarded,
});

describe('parseSourceDocuments with the parse worker', () => {
  const web = service('ns', 'web', { clusterIP: '10.96.0.10', ports: [{ port: 80 }] });
  const webSlice = slice('ns', 'web-a', 'web', [{ port: 8080 }], [{ ip: '10.244.1.11' }]);
  // Every kind of document: good ones, bad ones (each costs only itself, with the guarded
  // parser's reason), one for the guarded parser (an alias), and numbers JSON cannot carry.
  const docs = [
    yamlDocs([web]),
    'kind: Service\nmetadata: {name: broken\n',
    aliasBomb(),
    deepYaml(),
    'a: &x {port: 80}\nb: *x\n',
    'n: .nan\ni: -.inf\nz: -0\nf: -0.0\nbig: 123456789012345678901234567890\nh: 0x1F\n',
    '__proto__: {polluted: yes}\nkind: Service\n',
    'text: |\n  a block\n  ---\n  scalar\nempty:\nlist: [a, ~, ""]\n',
    yamlDocs([webSlice]),
  ];
  const text = docs.join('---\n');

  it('reads every document as the main thread alone does, bad ones with the same reasons', async () => {
    const mine = await parse(text, alone);
    const theirs = await parse(text, workerOnly);
    assert.deepStrictEqual(outcome(theirs), outcome(mine));
    assert.equal(mine.byWorker, 0);
    // All but the one with NaN, -Infinity and -0, which the worker leaves to this thread.
    assert.equal(theirs.byWorker, docs.length - 1);
    assert.equal(theirs.workerError, undefined);
    const quirky = theirs.documents.find((d) => d.index === 6)!.value as Record<string, number>;
    assert.ok(Number.isNaN(quirky.n) && quirky.i === -Infinity && Object.is(quirky.z, -0));
    assert.equal(Object.getPrototypeOf(theirs.documents.find((d) => d.index === 7)!.value), Object.prototype);
  });

  it('with both threads reading, on generated clusters: the same documents in the same order', async () => {
    await fc.assert(
      fc.asyncProperty(clusterArb, async (spec) => {
        const { services, slices } = objectsOf(spec);
        // Enough documents for several claims from each end, in flow style: what js-yaml
        // reads, for which the worker starts.
        const stream = [...services, ...slices, ...services, ...slices]
          .map((o) => stringify(o, { collectionStyle: 'flow' }))
          .join('---\n');
        assert.deepStrictEqual(outcome(await parse(stream, both)), outcome(await parse(stream, alone)));
      }),
      { numRuns: 10 },
    );
  });

  it('a worker that cannot start costs only time: this thread reads everything, and says why', async () => {
    const r = await parse(text, { ...workerOnly, workerUrl: new URL('file:///nonexistent/parse-worker.js') });
    assert.deepStrictEqual(outcome(r), outcome(await parse(text, alone)));
    assert.equal(r.byWorker, 0);
    assert.match(r.workerError ?? '', /nonexistent/);
  });

  it('starts only for what js-yaml must read: not for a stream in block style', async () => {
    // A worker that cannot start says so when it was asked to.
    const nowhere = { ...both, workerUrl: new URL('file:///nonexistent/parse-worker.js') };
    const objects = Array.from({ length: 40 }, (_, i) => service('ns', `s${i}`, { ports: [{ port: 80 }] }));
    const block = objects.map((o) => stringify(o)).join('---\n');
    const flow = objects.map((o) => stringify(o, { collectionStyle: 'flow' })).join('---\n');
    const blockRead = await parse(block, nowhere);
    assert.equal(blockRead.workerError, undefined);
    assert.deepStrictEqual(outcome(blockRead), outcome(await parse(block, alone)));
    const flowRead = await parse(flow, nowhere);
    assert.match(flowRead.workerError ?? '', /nonexistent/);
    assert.deepStrictEqual(outcome(flowRead), outcome(await parse(flow, alone)));
    assert.equal(flowRead.documents.length, objects.length);
  });

  it('gives the event loop turns while it reads the first batch (which decides on the worker)', async () => {
    const docs = Array.from({ length: 10 }, (_, i) => `kind: Service\nmetadata:\n  name: s${i}\n`);
    const cuts = docs.map((_, i) => docs.slice(0, i).join('').length);
    const order: string[] = [];
    setImmediate(() => order.push('other work'));
    const r = await readInParallel(docs.join(''), cuts, PARSE_LIMITS.maxDepth, 0);
    order.push('read');
    assert.deepEqual(order, ['other work', 'read']);
    assert.equal(r.values.filter((v) => v !== undefined).length, docs.length);
  });

  it('is not used below parallelFromBytes', async () => {
    const r = await parse(text, { parallelFromBytes: text.length + 1, mainReads: false });
    assert.equal(r.byWorker, 0);
    assert.deepStrictEqual(outcome(r), outcome(await parse(text, alone)));
  });
});

describe('document claims', () => {
  it('give every document out once, from both ends, until they meet', () => {
    fc.assert(
      fc.property(
        fc.nat(500),
        fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 1, max: 40 })), { minLength: 1 }),
        (n, steps) => {
          const word = newClaims(n);
          const seen = new Array<number>(n).fill(0);
          let front = 0;
          for (let i = 0; ; i++) {
            const [fromFront, batch] = steps[i % steps.length]!;
            const r = claim(word, fromFront ? 'front' : 'back', batch);
            if (!r) break;
            const [from, to] = r;
            assert.ok(from < to && to - from <= batch);
            if (fromFront) {
              assert.equal(from, front);
              front = to;
            }
            for (let k = from; k < to; k++) seen[k]!++;
          }
          assert.ok(seen.every((c) => c === 1));
        },
      ),
    );
  });
});
