import type { Logger } from './log.js';
import type { Skipped } from './model/types.js';

/** What makes two skipped entries the same log line. */
export const skippedId = (s: Skipped): string => `${s.kind} ${s.name} ${s.reason}`;

/** One log line per skipped object (once per `seen`); ignored-by-design ones only at debug. */
export function logSkipped(log: Logger, skipped: Skipped[], seen = new Set<string>()): void {
  for (const s of skipped) {
    const id = skippedId(s);
    if (seen.has(id)) continue;
    seen.add(id);
    if (s.ignored) log.debug({ kind: s.kind, object: s.name, reason: s.reason }, 'ignored');
    else log.warn({ kind: s.kind, object: s.name, reason: s.reason }, 'skipped invalid object');
  }
}
