import { systemClock, wallTime, type Clock } from '../util/clock.js';
import { ErrorCodes, ProxyError } from '../errors.js';
import type { AccessProblem } from '../watch/source.js';

/** The taint the Cluster Autoscaler puts on a node before deleting it (kube-proxy's ToBeDeletedTaint). */
export const TO_BE_DELETED_TAINT = 'ToBeDeletedByClusterAutoscaler';

/** What /healthz and /livez report; times are RFC 3339. */
export interface HealthStatus {
  /** The proxy's own health (what /livez answers): no queued change is older than healthTimeout. */
  healthy: boolean;
  /** `currentTime` while healthy (kube-proxy's compatibility rule), else the last successful sync. */
  lastUpdated: string;
  currentTime: string;
  /** False once the node is being deleted or tainted for deletion: /healthz (not /livez) fails. */
  nodeEligible: boolean;
  /**
   * kube-proxy's per-proxier health, by IP family. One sync programs both families' tables in
   * one transaction here, so the two always agree: `healthy` as above, `lastUpdated` the last
   * successful sync (Go's zero time before the first), never `currentTime`.
   */
  status: Record<'IPv4' | 'IPv6', FamilyHealth>;
  /** Why the proxy is unhealthy; absent while it is healthy. */
  reason?: string;
  /** The kinds the API server refuses to list or watch now (RBAC, credentials); absent if none. */
  apiErrors?: ApiError[];
}

/** One IP family's health, as kube-proxy's ProxierHealth. */
export interface FamilyHealth {
  lastUpdated: string;
  healthy: boolean;
}

/** An AccessProblem of one kind, as /healthz shows it. */
export interface ApiError extends AccessProblem {
  kind: string;
}

/** Go's zero time, which kube-proxy reports as lastUpdated before the first successful sync. */
const ZERO_TIME = Date.parse('0001-01-01T00:00:00Z');

/**
 * Proxy health with kube-proxy's semantics (pkg/proxy/healthcheck): healthy while fully synced,
 * and while the oldest queued change is younger than healthTimeout; unhealthy once a queued
 * change has waited that long without a successful sync.
 *
 * One departure, at start-up (started()): kube-proxy is healthy "while it's starting up" for as
 * long as that takes, because its first queued change comes only after its informers synced; a
 * kube-proxy whose lists are all refused (RBAC) or never answered stays green forever while
 * programming nothing. Here the start itself counts as a queued change, so a daemon that has not
 * applied its first sync within healthTimeout fails /healthz and /livez alike, as it would for
 * any change it cannot apply. The API server's refusals are named in the status either way.
 */
export class ProxyHealth {
  private readonly clock: Clock;
  private readonly wallNow: () => number;
  private readonly healthTimeoutMs: number;
  /** clock.now() of the oldest change not yet applied. */
  private oldestPending: number | undefined;
  /** Wall time of the last successful sync. */
  private lastUpdatedWall: number | undefined;
  // Eligible while starting up, until the first Node event says otherwise (as kube-proxy).
  private eligible = true;
  /** clock.now() of started(), until the first successful sync. */
  private startedAt: number | undefined;
  private readonly refused = new Map<string, AccessProblem>();

  constructor(opts: { healthTimeoutMs: number; clock?: Clock }) {
    if (!(opts.healthTimeoutMs > 0)) {
      throw new ProxyError(
        ErrorCodes.CONFIG_INVALID,
        `healthTimeoutMs must be > 0 (got ${opts.healthTimeoutMs})`,
      );
    }
    this.healthTimeoutMs = opts.healthTimeoutMs;
    this.clock = opts.clock ?? systemClock;
    this.wallNow = wallTime(this.clock);
  }

  /**
   * The daemon starts: until its first successful sync, the start counts as a change queued now
   * (see the class comment).
   */
  started(): void {
    if (this.lastUpdatedWall !== undefined) return;
    this.startedAt = this.clock.now();
    this.queued();
  }

  /** The API server refuses a kind (`problem`), or no longer does (undefined). */
  apiAccess(kind: string, problem: AccessProblem | undefined): void {
    if (problem) this.refused.set(kind, problem);
    else this.refused.delete(kind);
  }

  /** A change was queued; only the oldest unapplied one counts. */
  queued(): void {
    this.oldestPending ??= this.clock.now();
  }

  /** A sync succeeded: everything queued so far is applied. */
  updated(): void {
    this.oldestPending = undefined;
    this.startedAt = undefined;
    this.lastUpdatedWall = this.wallNow();
  }

  /** From this node's Node object: see isNodeEligible(). */
  nodeEligible(eligible: boolean): void {
    this.eligible = eligible;
  }

  status(): HealthStatus {
    const waited = this.oldestPending === undefined ? 0 : this.clock.now() - this.oldestPending;
    const healthy = waited < this.healthTimeoutMs;
    const now = this.wallNow();
    const apiErrors = [...this.refused]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([kind, problem]) => ({ kind, ...problem }));
    const lastSynced = rfc3339(this.lastUpdatedWall ?? ZERO_TIME);
    const status: HealthStatus = {
      healthy,
      lastUpdated: healthy ? rfc3339(now) : lastSynced,
      currentTime: rfc3339(now),
      nodeEligible: this.eligible,
      status: {
        IPv4: { lastUpdated: lastSynced, healthy },
        IPv6: { lastUpdated: lastSynced, healthy },
      },
    };
    if (!healthy) {
      const seconds = Math.round(waited / 1000);
      let reason =
        this.startedAt !== undefined
          ? `no rules applied yet, ${seconds} s after start`
          : `a change queued ${seconds} s ago is not applied yet`;
      if (apiErrors.length > 0) {
        reason += `; the API server refuses to ${apiErrors
          .map((e) => `${e.verb} ${e.resource} (HTTP ${e.status})`)
          .join(', ')}`;
      }
      status.reason = reason;
    }
    if (apiErrors.length > 0) status.apiErrors = apiErrors;
    return status;
  }
}

/** The parts of a Node that decide eligibility. */
export interface NodeLike {
  metadata?: { deletionTimestamp?: unknown } | undefined;
  spec?: { taints?: ReadonlyArray<{ key?: string }> | undefined } | undefined;
}

/**
 * kube-proxy's rule: a node is eligible unless it is being deleted or carries the Cluster
 * Autoscaler's ToBeDeletedByClusterAutoscaler taint, so load balancers drain it early.
 */
export function isNodeEligible(node: NodeLike): boolean {
  const deletion = node.metadata?.deletionTimestamp;
  if (deletion !== undefined && deletion !== null && deletion !== '') return false;
  return !(node.spec?.taints ?? []).some((t) => t.key === TO_BE_DELETED_TAINT);
}

function rfc3339(ms: number): string {
  return new Date(ms).toISOString();
}
