import type { ListenerInfo } from '../lb/userspace-backend.js';
import type { StateDelta } from '../model/state-builder.js';
import type { ProxyState } from '../model/types.js';

/** A full resync (atomic replacement of what a backend programmed) at least this often, as kube-proxy does. */
export const FULL_SYNC_PERIOD_MS = 60 * 60 * 1000;

/** What the daemon hands a backend besides the state, per sync. */
export interface BackendSyncOptions {
  /** The Services whose objects changed since the last sync (`namespace/name`). */
  changedServices: Iterable<string>;
  /** The injected clock's time at the start of the sync. */
  now: number;
}

/** What one sync programmed. */
export interface BackendSyncResult {
  /**
   * The state as programmed: what the backend left out (Services nft refused, Services over
   * the element budget) is among its skipped, and none of their ports is listed.
   */
  programmed: ProxyState;
  /** Everything was replaced, not just what changed. */
  full: boolean;
}

/** What /debug/services shows of the backend. */
export interface BackendDescription {
  /** The state as served (the userspace proxy lists the frontends it could not serve as skipped). */
  state: ProxyState | undefined;
  /** The userspace proxy's sockets; none in nftables mode. */
  listeners?: ListenerInfo[];
}

/**
 * One way of programming the data plane: the daemon builds the ProxyState and hands it here,
 * whatever the mode. Implemented over src/rules/ (NftBackend) and src/lb/ (UserspaceProxyBackend).
 */
export interface Backend {
  readonly mode: 'nftables' | 'userspace';
  /**
   * Its rules masquerade by --detect-local-mode: under NodeCIDR, nothing may be programmed
   * before the Node's pod CIDRs are known.
   */
  readonly needsPodCIDRs: boolean;
  /** Checks what it needs (nft works, the node is prepared) before the first sync; throws if it cannot run. */
  start(): Promise<void>;
  /** Programs `state`; `delta` is the model's change since the state of the previous sync. */
  sync(
    state: ProxyState,
    delta: StateDelta | undefined,
    opts: BackendSyncOptions,
  ): Promise<BackendSyncResult>;
  /**
   * The last applied rules in `nft -f` syntax ('' when there are none); with `service`
   * (`namespace/name`), only that Service's.
   */
  rules(service?: string): string;
  /** The rules read back from the kernel ('' when it programs none). */
  liveRules(): Promise<string>;
  /** `state` (the last programmed) as /debug/services shows it, with what only the backend knows. */
  describe(state: ProxyState | undefined): BackendDescription;
  /** Its own /metrics figures that walk everything it programmed: called at scrape, at most once per sync. */
  scrape(): void;
  /** Stops serving; an nftables backend leaves its rules in place. */
  close(): Promise<void>;
}
