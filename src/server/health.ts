import { systemClock, wallTime, type Clock } from '../clock.js';
import { ErrorCodes, ProxyError } from '../errors.js';

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
}

/** Go's zero time, which kube-proxy reports as lastUpdated before the first successful sync. */
const ZERO_TIME = Date.parse('0001-01-01T00:00:00Z');

/**
 * Proxy health with kube-proxy's semantics (pkg/proxy/healthcheck): healthy while starting up
 * or fully synced, and while the oldest queued change is younger than healthTimeout; unhealthy
 * once a queued change has waited that long without a successful sync.
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

  /** A change was queued; only the oldest unapplied one counts. */
  queued(): void {
    this.oldestPending ??= this.clock.now();
  }

  /** A sync succeeded: everything queued so far is applied. */
  updated(): void {
    this.oldestPending = undefined;
    this.lastUpdatedWall = this.wallNow();
  }

  /** From this node's Node object: see isNodeEligible(). */
  nodeEligible(eligible: boolean): void {
    this.eligible = eligible;
  }

  status(): HealthStatus {
    const healthy =
      this.oldestPending === undefined || this.clock.now() - this.oldestPending < this.healthTimeoutMs;
    const now = this.wallNow();
    return {
      healthy,
      lastUpdated: rfc3339(healthy ? now : (this.lastUpdatedWall ?? ZERO_TIME)),
      currentTime: rfc3339(now),
      nodeEligible: this.eligible,
    };
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
