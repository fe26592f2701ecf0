/**
 * What the parse limits cost and save: each hostile file (400,000 levels of nesting in YAML and
 * JSON, a "billion laughs" alias bomb) and a realistic large file (N Services with a
 * 10-endpoint slice each), parsed guarded and unguarded, each in a process of its own so that
 * the peak RSS is that parse's. The reference is the unguarded parse in the same run.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import type { Bench } from './harness.js';

interface Run {
  ms: number;
  peakRssMb: number;
  outcome: string;
}

function child(mode: 'guarded' | 'unguarded', file: string): Promise<Run> {
  const self = fileURLToPath(import.meta.url);
  const ts = self.endsWith('.ts');
  const script = path.join(path.dirname(self), `parse-child${ts ? '.ts' : '.js'}`);
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, [...(ts ? ['--import', 'tsx'] : []), script, mode, file], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    c.on('error', reject);
    c.on('close', (code) => {
      const line = out.trim().split('\n').pop();
      if (line?.startsWith('{')) resolve(JSON.parse(line) as Run);
      else resolve({ ms: NaN, peakRssMb: NaN, outcome: `died (exit ${code})` });
    });
  });
}

function aliasBomb(): string {
  const lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'];
  let prev = 'a';
  for (const c of 'bcdefghi') {
    lines.push(`${c}: &${c} [${Array(9).fill(`*${prev}`).join(',')}]`);
    prev = c;
  }
  return `${lines.join('\n')}\n`;
}

function services(n: number): string {
  const docs: string[] = [];
  for (let i = 0; i < n; i++) {
    const name = `s${i}`;
    const meta = { namespace: 'bench', name };
    docs.push(
      stringify({
        apiVersion: 'v1',
        kind: 'Service',
        metadata: meta,
        spec: {
          clusterIP: `10.96.${i >> 8}.${i & 255}`,
          ports: [{ name: 'http', port: 80, targetPort: 8080 }],
        },
      }),
      stringify({
        apiVersion: 'discovery.k8s.io/v1',
        kind: 'EndpointSlice',
        metadata: { namespace: 'bench', name: `${name}-a`, labels: { 'kubernetes.io/service-name': name } },
        addressType: 'IPv4',
        ports: [{ name: 'http', port: 8080 }],
        endpoints: Array.from({ length: 10 }, (_, j) => ({
          addresses: [`10.${100 + (i >> 16)}.${(i >> 8) & 255}.${j + 1}`],
          conditions: { ready: true },
          nodeName: 'node-a',
        })),
      }),
    );
  }
  return docs.join('---\n');
}

export const bench: Bench = {
  name: 'parse-limits',
  async run({ quick, say }) {
    const dir = await mkdtemp(path.join(tmpdir(), 'knp-bench-parse-'));
    const deep = 400_000;
    const n = quick ? 1000 : 10_000;
    const files: Array<[string, string]> = [
      ['deep.yaml', `${'- '.repeat(deep)}x\n`],
      ['deep.json', `${'['.repeat(deep)}${']'.repeat(deep)}`],
      ['bomb.yaml', aliasBomb()],
      [`services-${n}.yaml`, services(n)],
    ];
    const figures: Record<string, number | string | null> = {};
    const lines: string[] = [];
    try {
      for (const [name, text] of files) {
        const file = path.join(dir, name);
        await writeFile(file, text);
        const mb = (text.length / 1e6).toFixed(1);
        say(`${name} (${mb} MB): unguarded, then guarded`);
        const ref = await child('unguarded', file);
        const ours = await child('guarded', file);
        for (const [mode, r] of [
          ['unguarded', ref],
          ['guarded', ours],
        ] as const) {
          figures[`${mode}_ms@${name}`] = Number.isNaN(r.ms) ? null : r.ms;
          figures[`${mode}_peak_rss_mb@${name}`] = Number.isNaN(r.peakRssMb) ? null : r.peakRssMb;
          figures[`${mode}_outcome@${name}`] = r.outcome;
        }
        lines.push(
          `${name} (${mb} MB): unguarded ${ref.ms} ms, peak ${ref.peakRssMb} MB (${ref.outcome}); ` +
            `guarded ${ours.ms} ms, peak ${ours.peakRssMb} MB (${ours.outcome})`,
        );
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    return { figures, lines };
  },
};
