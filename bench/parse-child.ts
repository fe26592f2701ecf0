/**
 * One parse of one file in a process of its own, so that its peak RSS is its own: `guarded`
 * through src/watch/parse-documents.ts, `unguarded` the way the file source read files before
 * (yaml's parseAllDocuments, every document's toJS; JSON.parse). Prints one JSON line.
 */
import { readFileSync } from 'node:fs';
import { parseAllDocuments } from 'yaml';
import { parseDocuments } from '../src/watch/parse-documents.js';

const [mode, file] = process.argv.slice(2) as [string, string];
const text = readFileSync(file, 'utf8');
const start = process.hrtime.bigint();
let outcome: string;
try {
  if (mode === 'guarded') {
    const r = parseDocuments(file, text);
    outcome = r.ok ? `${r.documents.length} documents` : `refused: ${r.reason.slice(0, 60)}`;
  } else if (file.endsWith('.json')) {
    JSON.parse(text);
    outcome = 'parsed';
  } else {
    const docs = parseAllDocuments(text);
    const list = Array.isArray(docs) ? docs : [docs];
    const error = list.find((d) => d.errors.length > 0)?.errors[0];
    if (error) outcome = `error: ${error.message.split('\n')[0]!.slice(0, 60)}`;
    else outcome = `${list.map((d) => d.toJS()).length} documents`;
  }
} catch (err) {
  outcome = `threw: ${(err as Error).message.slice(0, 60)}`;
}
const ms = Number(process.hrtime.bigint() - start) / 1e6;
const peakRssMb = Math.round(process.resourceUsage().maxRSS / 1024);
process.stdout.write(`${JSON.stringify({ ms: Math.round(ms), peakRssMb, outcome })}\n`);
