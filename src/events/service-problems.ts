import type { Skipped } from '../model/types.js';
import { EventReasons, type EventReason } from './reasons.js';

/** Something wrong with one Service that its owner should hear of: one Warning Event. */
export interface ServiceProblem {
  /** `namespace/name`. */
  service: string;
  reason: EventReason;
  /** What, exactly: the skipped entry's reason, as /debug/services and the log say it. */
  note: string;
}

/**
 * The Service problems among the skipped entries of a sync, deduplicated and sorted: pure.
 * Entries ignored by design (headless, ExternalName, another proxy's) are no problem; other
 * kinds (EndpointSlice, Node, File) are not a Service's to hear of.
 */
export function serviceProblems(skipped: readonly Skipped[]): ServiceProblem[] {
  const byId = new Map<string, ServiceProblem>();
  for (const s of skipped) {
    if (s.kind !== 'Service' || s.ignored) continue;
    const reason: EventReason = s.contested
      ? EventReasons.FrontendContested
      : s.overBudget
        ? EventReasons.ElementBudgetExceeded
        : EventReasons.ServiceSkipped;
    const problem = { service: s.name, reason, note: s.reason };
    byId.set(problemId(problem), problem);
  }
  return [...byId.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, p]) => p);
}

/** One string per problem: the same Service, reason and note are the same problem. */
export const problemId = (p: ServiceProblem): string => `${p.service}\u0000${p.reason}\u0000${p.note}`;
