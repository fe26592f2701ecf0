import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { repoRoot } from './build-output.js';

/** One row of DESIGN.md's command-line table. */
export interface DesignFlag {
  /** Every name of the flag, the primary first: `--hostname-override`, `--node-name`. */
  names: string[];
  /** The default column as written, backticks removed. */
  default: string;
}

/** Where the shared design page lives: shared/ beside the repository (as CI lays it out). */
export const designPath = path.resolve(repoRoot, '..', 'shared', 'DESIGN.md');

/**
 * The flags of DESIGN.md's "Command line" table, or undefined when the page is not beside the
 * repository. A row like `` `--sync-period`, `--min-sync-period` `` names two flags.
 */
export function designFlags(): DesignFlag[] | undefined {
  if (!existsSync(designPath)) return undefined;
  const text = readFileSync(designPath, 'utf8');
  const start = text.indexOf('### Command line');
  if (start < 0) throw new Error(`${designPath}: no "### Command line" section`);
  const section = text.slice(start, text.indexOf('\n### ', start + 1));
  const flags: DesignFlag[] = [];
  for (const line of section.split('\n')) {
    const cells = line.split(/(?<!\\)\|/).map((c) => c.trim());
    // | flag | meaning | default |  -> ['', flag, meaning, default, '']
    if (cells.length < 5 || !cells[1]!.startsWith('`--')) continue;
    const names = [...cells[1]!.matchAll(/`(--[a-z0-9-]+)/g)].map((m) => m[1]!);
    const dflt = cells[3]!.replace(/`/g, '');
    if (names.length === 2 && cells[1]!.includes('`, `')) {
      // two flags sharing a row, each its own default ("30s, 1s")
      const defaults = dflt.split(',').map((d) => d.trim());
      names.forEach((n, i) => flags.push({ names: [n], default: defaults[i] ?? '' }));
    } else {
      flags.push({ names, default: dflt });
    }
  }
  if (flags.length === 0) throw new Error(`${designPath}: the command-line table has no flags`);
  return flags;
}
