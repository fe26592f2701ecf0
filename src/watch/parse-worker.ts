/**
 * The parse worker (started by parallel-parse.ts): reads a --source file's documents with
 * js-yaml from the front while the main thread reads them from the back, and sends each batch
 * back as JSON text, which the main thread parses several times faster than YAML.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { claim, sharedClaims } from './document-claims.js';
import { fastValues } from './fast-yaml.js';
import { numberQuirks } from './yaml-core-schema.js';

export interface WorkerInput {
  /** Marks the worker data as this module's: the module only runs in a worker started for it. */
  role: 'source-documents';
  text: string;
  /** Where each document starts in text. */
  cuts: number[];
  maxDepth: number;
  shared: SharedArrayBuffer;
  batch: number;
}

/**
 * A batch's documents, from `from` on, as JSON: an array with, per document, its values, null
 * when the guarded parser must decide it, or 0 when the main thread must read it itself (it has
 * a number JSON cannot carry).
 */
export type WorkerMessage = { from: number; json: string } | { done: true };

export const MAIN_READS = 0;

function run(port: NonNullable<typeof parentPort>, input: WorkerInput): void {
  const { text, cuts, maxDepth, batch } = input;
  const word = sharedClaims(input.shared);
  for (let range = claim(word, 'front', batch); range; range = claim(word, 'front', batch)) {
    const [from, to] = range;
    const out: Array<unknown[] | null | typeof MAIN_READS> = [];
    for (let i = from; i < to; i++) {
      const quirks = numberQuirks.count;
      const values = fastValues(text, maxDepth, cuts[i], cuts[i + 1] ?? text.length);
      out.push(numberQuirks.count === quirks ? values : MAIN_READS);
    }
    port.postMessage({ from, json: JSON.stringify(out) } satisfies WorkerMessage);
  }
  port.postMessage({ done: true } satisfies WorkerMessage);
}

const input = workerData as Partial<WorkerInput> | null;
if (parentPort && input?.role === 'source-documents') run(parentPort, input as WorkerInput);
