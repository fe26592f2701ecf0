/**
 * Every error kube-nftproxy raises carries a stable `code`. Callers test codes with the
 * predicates below, never message text (STYLE.md, habit 7).
 */
export const ErrorCodes = {
  /** `nft` is not installed or not on PATH. */
  NFT_BINARY_MISSING: 'NFT_BINARY_MISSING',
  /** nft ran but lacks CAP_NET_ADMIN (operation not permitted). */
  NFT_PERMISSION: 'NFT_PERMISSION',
  /** nft rejected the transaction (syntax, missing object, kernel refusal). */
  NFT_REJECTED: 'NFT_REJECTED',
  /** nft is older than we support or its version could not be read. */
  NFT_VERSION: 'NFT_VERSION',
  /** A transaction object failed validation while it was queued. */
  NFT_INVALID_OBJECT: 'NFT_INVALID_OBJECT',
  /** The Fake found a goto/jump/@set reference to an object that does not exist. */
  NFT_DANGLING_REFERENCE: 'NFT_DANGLING_REFERENCE',
  /** The object does not exist (delete of a missing element, chain, ...). */
  NFT_NO_SUCH_OBJECT: 'NFT_NO_SUCH_OBJECT',
  /** The object exists already (create of an existing object). */
  NFT_EXISTS: 'NFT_EXISTS',
  /** A command-line flag or config field is invalid. */
  CONFIG_INVALID: 'CONFIG_INVALID',
  /** The --source path cannot be read. */
  SOURCE_UNREADABLE: 'SOURCE_UNREADABLE',
  /** No usable API server credentials. */
  KUBECONFIG_INVALID: 'KUBECONFIG_INVALID',
  /** The userspace proxy could not listen on a frontend (address in use, not local, ...). */
  USERSPACE_LISTEN_FAILED: 'USERSPACE_LISTEN_FAILED',
  /** A health, metrics or debug server could not listen on its address (in use, not local, ...). */
  SERVER_LISTEN_FAILED: 'SERVER_LISTEN_FAILED',
  /** The API server refuses to list or watch a kind: RBAC (403) or credentials (401). */
  API_REFUSED: 'API_REFUSED',
  /** The `conntrack` program (conntrack-tools) is not installed or not on PATH. */
  CONNTRACK_BINARY_MISSING: 'CONNTRACK_BINARY_MISSING',
  /** conntrack ran and failed (no privileges, a kernel without conntrack, a refused command). */
  CONNTRACK_FAILED: 'CONNTRACK_FAILED',
  /**
   * nft died by a signal (SIGSEGV: nft before 1.1 crashes on tables a newer nft wrote). Not a
   * verdict on our transaction: a newer nft is the fix.
   */
  NFT_CRASHED: 'NFT_CRASHED',
  /** nft did not finish in time and was killed (SIGKILL); whether it committed is unknown. */
  NFT_TIMEOUT: 'NFT_TIMEOUT',
  /**
   * --detect-local-mode NodeCIDR and this node's Node has no spec.podCIDRs: pod traffic cannot
   * be told apart, so no rules are written (--once, --dry-run; the daemon waits for them).
   */
  NODE_POD_CIDRS_MISSING: 'NODE_POD_CIDRS_MISSING',
  /** The API server answered a list request with an error status (its `statusCode` says which). */
  API_LIST_STATUS: 'API_LIST_STATUS',
  /**
   * A watch ended cleanly without a single event or bookmark; reported as an error so the
   * informer backs off instead of reconnecting at once.
   */
  API_WATCH_EMPTY: 'API_WATCH_EMPTY',
  /**
   * `explain` cannot read the local daemon's /debug/services: nothing listens on the address, it
   * did not answer in time, answered an error or something else, or has not synced yet.
   */
  EXPLAIN_DAEMON_UNAVAILABLE: 'EXPLAIN_DAEMON_UNAVAILABLE',
  /** `explain`: the daemon knows no port and no skipped entry of that Service. */
  EXPLAIN_SERVICE_NOT_FOUND: 'EXPLAIN_SERVICE_NOT_FOUND',
  /**
   * The API server answered an Event create or patch (events.k8s.io/v1) with an error status
   * (its `statusCode` says which: 403 without RBAC, 404 for a series whose Event is gone).
   */
  EVENT_STATUS: 'EVENT_STATUS',
  /** A live trace (/debug/trace?live=1) is already running: one at a time. */
  LIVE_TRACE_BUSY: 'LIVE_TRACE_BUSY',
  /** A live trace cannot run here: userspace mode, or an nft that cannot be monitored. */
  LIVE_TRACE_UNAVAILABLE: 'LIVE_TRACE_UNAVAILABLE',
  /** `nft monitor trace` could not start or listen, or the trace table could not be armed. */
  LIVE_TRACE_FAILED: 'LIVE_TRACE_FAILED',
  /**
   * An element would take a set past its `size` (the kernel's "Too many open files in system"):
   * says nothing about any Service; a full sync recreates the set larger (set-capacity.ts).
   */
  NFT_SET_FULL: 'NFT_SET_FULL',
} as const;

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

export class ProxyError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = 'ProxyError';
  }
}

export function hasCode(err: unknown, code: ErrorCode): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === code;
}

/** A list request the API server answered with one of `statuses` (HTTP status codes). */
export function isListStatus(err: unknown, ...statuses: number[]): boolean {
  if (!hasCode(err, ErrorCodes.API_LIST_STATUS)) return false;
  const status = (err as { statusCode?: unknown }).statusCode;
  return typeof status === 'number' && statuses.includes(status);
}

export const isNoSuchObject = (err: unknown): boolean => hasCode(err, ErrorCodes.NFT_NO_SUCH_OBJECT);
export const isNftMissing = (err: unknown): boolean => hasCode(err, ErrorCodes.NFT_BINARY_MISSING);
export const isPermission = (err: unknown): boolean => hasCode(err, ErrorCodes.NFT_PERMISSION);
export const isNftCrashed = (err: unknown): boolean => hasCode(err, ErrorCodes.NFT_CRASHED);
export const isSetFull = (err: unknown): boolean => hasCode(err, ErrorCodes.NFT_SET_FULL);

/** An Event request the API server answered with one of `statuses` (HTTP status codes). */
export function isEventStatus(err: unknown, ...statuses: number[]): boolean {
  if (!hasCode(err, ErrorCodes.EVENT_STATUS)) return false;
  const status = (err as { statusCode?: unknown }).statusCode;
  return typeof status === 'number' && statuses.includes(status);
}
