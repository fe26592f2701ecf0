import type { V1EndpointSlice, V1Node, V1Service, V1ServiceCIDR } from '@kubernetes/client-node';
import { sliceServiceKey } from './endpoint-slice.js';
import { objName } from './object-key.js';
import { StateBuilder, type ModelConfig, type ModelSource } from './state-builder.js';
import type { ProxyState, Skipped } from './types.js';

export type { ModelConfig } from './state-builder.js';

export interface ModelInput {
  services: V1Service[];
  slices: V1EndpointSlice[];
  /** This node's Node object, when known. */
  node?: V1Node;
  /** ServiceCIDR objects: the ClusterIP ranges, replacing --service-cidr when any exists. */
  serviceCIDRs?: V1ServiceCIDR[];
}

/**
 * The pure heart of the proxy: Services, EndpointSlices and this node's Node, validated and
 * joined into one ProxyState. Invalid objects are skipped with their reason; nothing else is
 * lost. Deterministic: the same input in any order gives the same state. (The daemon keeps a
 * StateBuilder instead, and tells it what changed.)
 */
export function buildState(input: ModelInput, config: ModelConfig): ProxyState {
  const services = new Map<string, V1Service>();
  const duplicates: Skipped[] = [];
  for (const raw of input.services) {
    const key = objName(raw);
    if (services.has(key))
      duplicates.push({ kind: 'Service', name: key, reason: 'duplicate Service object' });
    else services.set(key, raw);
  }
  const slices = new Map<string, V1EndpointSlice[]>();
  for (const raw of input.slices) {
    const key = sliceServiceKey(raw);
    const list = slices.get(key);
    if (list) list.push(raw);
    else slices.set(key, [raw]);
  }
  const source: ModelSource = {
    services,
    slicesOf: (key) => slices.get(key) ?? [],
    sliceServices: () => slices.keys(),
    ...(input.node ? { node: input.node } : {}),
    ...(input.serviceCIDRs ? { serviceCIDRs: input.serviceCIDRs } : {}),
  };
  const { state } = new StateBuilder(config).update(source);
  state.skipped.push(...duplicates);
  return state;
}
