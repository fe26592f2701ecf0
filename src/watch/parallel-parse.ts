import { setImmediate as nextTurn } from 'node:timers/promises';
import { performance } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import { claim, newClaims } from './document-claims.js';
import { blockValues } from './block-yaml.js';
import { fastValues, jsYamlValues } from './fast-yaml.js';
import { MAIN_READS, type WorkerInput, type WorkerMessage } from './parse-worker.js';

/** Documents per claim: a message's worth for the worker, one yield's worth at most for the main thread. */
const BATCH = 32;

/** This file's worker: parse-worker.js once built, parse-worker.ts under tsx (tests). */
const WORKER_URL = new URL(
  `./parse-worker${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`,
  import.meta.url,
);

export interface ParallelOptions {
  /** Whether the main thread reads documents too (tests turn it off to see what the worker reads). */
  mainReads?: boolean;
  /** The worker's module (tests give one that cannot start). */
  workerUrl?: URL;
}

export interface FastReads {
  /**
   * Per document: its values by js-yaml, null when the guarded parser must decide it (as
   * fastValues says), or undefined when nobody read it (the worker failed, or left it to the
   * main thread): the caller reads those itself.
   */
  values: Array<unknown[] | null | undefined>;
  /** How many documents the worker read. */
  byWorker: number;
  /** Why the worker failed, when it did. */
  workerError?: string;
}

function startWorker(url: URL, input: WorkerInput): Worker {
  if (!url.pathname.endsWith('.ts')) return new Worker(url, { workerData: input });
  // A worker does not inherit its parent's --import hooks (Node 20): under tsx it registers tsx
  // itself before loading the TypeScript module.
  const boot = `import('tsx/esm/api').then((tsx) => { tsx.register(); return import(${JSON.stringify(url.href)}); })`;
  return new Worker(boot, { eval: true, workerData: input });
}

/**
 * The fast reads of a file's documents (text cut at `cuts`) by two threads at once, when a
 * second thread helps: this thread reads a first batch from the back, and if every document in
 * it is in the block style that block-yaml.ts reads (kubectl's, most files'), no worker starts
 * and the caller reads the rest itself. A worker saves at most half of that read (measured at
 * 10,000 Services: 0.4 s alone), and costs its start, its JSON and this thread's JSON.parse of
 * it (0.3 s of CPU in all): on a busy 2-core machine the parse took 0.25 s longer with it. What
 * js-yaml must read is several times slower, and worth it. With the worker, a worker
 * reads from the front and sends its documents back as JSON (parsed here several times faster
 * than YAML), while this thread reads from the back, giving the event loop a turn every
 * `sliceMs`. Which thread reads a document changes nothing in what it reads as: the same
 * js-yaml call on the same text, and JSON carries every value it makes but NaN, ±Infinity and
 * -0, which the worker leaves to this thread. A worker that cannot start or fails costs only
 * time: what it did not send back is undefined, for the caller to read.
 */
export async function readInParallel(
  text: string,
  cuts: number[],
  maxDepth: number,
  sliceMs: number,
  opts: ParallelOptions = {},
): Promise<FastReads> {
  const values = new Array<unknown[] | null | undefined>(cuts.length).fill(undefined);
  const word = newClaims(cuts.length);
  const out: FastReads = { values, byWorker: 0 };
  const end = (i: number): number => cuts[i + 1] ?? text.length;
  let since = performance.now();
  const turn = async (): Promise<void> => {
    if (performance.now() - since < sliceMs) return;
    await nextTurn();
    since = performance.now();
  };
  if (opts.mainReads !== false) {
    const first = claim(word, 'back', BATCH);
    let slow = 0;
    for (let i = first?.[0] ?? 0; i < (first?.[1] ?? 0); i++) {
      const block = blockValues(text, maxDepth, cuts[i], end(i));
      if (block === undefined) slow++;
      values[i] = block ?? jsYamlValues(text.slice(cuts[i], end(i)), maxDepth);
      await turn();
    }
    if (slow === 0) return out;
  }
  let worker: Worker | undefined;
  const finished = new Promise<void>((resolve) => {
    try {
      worker = startWorker(opts.workerUrl ?? WORKER_URL, {
        role: 'source-documents',
        text,
        cuts,
        maxDepth,
        shared: word.buffer as SharedArrayBuffer,
        batch: BATCH,
      });
    } catch (err) {
      out.workerError = (err as Error).message;
      resolve();
      return;
    }
    worker.on('message', (m: WorkerMessage) => {
      if ('done' in m) return resolve();
      const batch = JSON.parse(m.json) as Array<unknown[] | null | typeof MAIN_READS>;
      for (const [k, v] of batch.entries()) {
        if (v === MAIN_READS) continue;
        values[m.from + k] = v;
        out.byWorker++;
      }
    });
    worker.on('error', (err) => {
      out.workerError = err.message;
    });
    worker.on('exit', () => resolve());
  });
  if (opts.mainReads !== false) {
    for (let r = claim(word, 'back', BATCH); r; r = claim(word, 'back', BATCH)) {
      for (let i = r[0]; i < r[1]; i++) values[i] = fastValues(text, maxDepth, cuts[i], end(i));
      await turn();
    }
  }
  await finished;
  // Its work is done: not waited for.
  void worker?.terminate();
  return out;
}
