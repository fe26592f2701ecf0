import type { ProxyConfig } from '../config-types.js';
import { ipLocalAddresses } from '../lb/local-address.js';
import { UserspaceBackend } from '../lb/userspace-backend.js';
import type { Logger } from '../log.js';
import type { Family, ProxyState } from '../model/types.js';
import type { Backend, BackendDescription, BackendSyncResult } from './backend.js';

export interface UserspaceProxyBackendOptions {
  log: Logger;
  config: Pick<ProxyConfig, 'userspaceBind' | 'maglevSeed' | 'serviceCIDRs'>;
  /** The NodePort addresses of a state, as the rules would use them (--nodeport-addresses). */
  nodePortIPs: (state: ProxyState) => Record<Family, string[]>;
}

/**
 * The userspace backend: the sockets of src/lb/ (UserspaceBackend reconciles them) behind the
 * Backend interface. It programs no rules, and every sync is a reconcile of its own.
 */
export class UserspaceProxyBackend implements Backend {
  readonly mode = 'userspace';
  /** No rules, no masquerading: nothing waits for the Node's pod CIDRs. */
  readonly needsPodCIDRs = false;
  readonly #opts: UserspaceProxyBackendOptions;
  #proxy: UserspaceBackend | undefined;

  constructor(opts: UserspaceProxyBackendOptions) {
    this.#opts = opts;
  }

  /** Chooses how frontends bind: `auto` binds the Service IPs themselves as root, loopback otherwise. */
  async start(): Promise<void> {
    const { config, log } = this.#opts;
    const root = typeof process.getuid === 'function' && process.getuid() === 0;
    const bind = config.userspaceBind;
    const bindMode = bind === 'auto' ? (root ? 'service-ip' : 'loopback') : bind;
    this.#proxy = new UserspaceBackend({
      log,
      bindMode,
      maglevSeed: config.maglevSeed,
      serviceCIDRs: config.serviceCIDRs,
      ...(bindMode === 'service-ip' ? { localAddresses: ipLocalAddresses() } : {}),
    });
    log.child({ component: 'userspace' }).info({ bindMode }, 'userspace proxy ready');
  }

  async sync(state: ProxyState): Promise<BackendSyncResult> {
    if (!this.#proxy) throw new Error('the userspace backend synced before it started');
    await this.#proxy.sync(state, this.#opts.nodePortIPs(state));
    return { programmed: state, full: false };
  }

  rules(): string {
    return '';
  }

  async liveRules(): Promise<string> {
    return '';
  }

  /** The state with the frontends the proxy could not serve listed among its skipped objects. */
  describe(state: ProxyState | undefined): BackendDescription {
    const listeners = this.#proxy?.listeners();
    const extra = this.#proxy?.skipped() ?? [];
    if (!state || extra.length === 0) return { state, listeners };
    return {
      state: {
        ...state,
        skipped: [
          ...state.skipped,
          ...extra.map((s) => ({ kind: 'Service' as const, name: s.service, reason: s.reason })),
        ],
      },
      listeners,
    };
  }

  scrape(): void {}

  async close(): Promise<void> {
    await this.#proxy?.close();
  }
}
