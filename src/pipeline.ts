import type { ProxyConfig } from './config-types.js';
import { localTraffic } from './model/local-traffic.js';
import { StateBuilder, type ModelConfig, type StateUpdate } from './model/state-builder.js';
import type { Family, ProxyState } from './model/types.js';
import { nodePortIPs } from './node-addresses.js';
import { compile, type CompileConfig } from './rules/compile.js';
import type { Ruleset } from './rules/ruleset.js';
import type { ObjectStore } from './watch/object-store.js';

/** Everything the pure stages need from the outside world. */
export interface Environment {
  /** This host's own addresses (node IP fallback, --nodeport-addresses CIDRs), as last read. */
  localAddresses: string[];
  /**
   * Reads the host's addresses again. The daemon calls it at every full sync (hourly, and after
   * a failure) and when the Node object changes, so an address added later serves NodePorts;
   * absent: `localAddresses` never changes (tests, --once).
   */
  readLocalAddresses?: () => string[];
}

export function modelConfig(config: ProxyConfig, env: Environment): ModelConfig {
  return {
    nodeName: config.hostnameOverride,
    nodeIPs: config.nodeIPs,
    hostIPs: env.localAddresses,
    lbAlgorithm: config.lbAlgorithm,
    nodePortAddresses: config.nodePortAddresses,
    serviceCIDRs: config.serviceCIDRs,
  };
}

/**
 * Objects → ProxyState: pure. With the `builder` of the previous sync and the Service keys
 * `changed` since, only those Services are joined again (the daemon), and the delta from the
 * previous state comes with it; otherwise everything, and no delta.
 */
export function stateFrom(
  store: ObjectStore,
  config: ProxyConfig,
  env: Environment,
  opts: { builder?: StateBuilder; changed?: Iterable<string> } = {},
): StateUpdate {
  const builder = opts.builder ?? new StateBuilder(modelConfig(config, env));
  const update = builder.update(store.modelSource(config.hostnameOverride), opts.changed);
  for (const f of store.unreadableFiles)
    update.state.skipped.push({ kind: 'File', name: f.file, reason: f.reason });
  return update;
}

/** The NodePort addresses of `state`: the model's (what ownership was decided on), else resolved here. */
export function nodePortIPsOf(
  state: ProxyState,
  config: ProxyConfig,
  env: Environment,
): Record<Family, string[]> {
  return state.nodePortIPs ?? nodePortIPs(state.node, config.nodePortAddresses, env.localAddresses);
}

export function compileConfig(state: ProxyState, config: ProxyConfig, env: Environment): CompileConfig {
  return {
    table: config.tableName,
    clusterCIDRs: config.clusterCIDRs,
    localTraffic: localTraffic(config.detectLocal, config.clusterCIDRs, state.node),
    masqueradeAll: config.masqueradeAll,
    serviceCIDRs: config.serviceCIDRs,
    nodePortIPs: nodePortIPsOf(state, config, env),
    maglevSeed: config.maglevSeed,
    maxServiceElements: config.maxServiceElements,
    serviceCounters: config.serviceCounters,
  };
}

/** ProxyState → Ruleset: pure. */
export function rulesFor(state: ProxyState, config: ProxyConfig, env: Environment): Ruleset {
  return compile(state, compileConfig(state, config, env));
}
