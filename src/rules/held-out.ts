import type { StateDelta } from '../model/state-builder.js';
import type { ProxyState, ServicePort, Skipped } from '../model/types.js';
import { compareStrings, sortedIndex } from '../util/sorted-index.js';

/**
 * The Services whose rules nft refused (isolate.ts), held out of every sync until their
 * objects change, so that one bad Service costs only itself. `view()` is a pure filter of the
 * ProxyState: the compiler and the applier never learn that anything is held out; they see a
 * state without those ports, with each held Service among the skipped, with its reason.
 */
export class HeldOut {
  /** Service key → nft's refusal. */
  readonly #held = new Map<string, string>();
  /** The state and the view made from it last, and the Services held out then. */
  #last: { state: ProxyState; view: ProxyState; held: ReadonlySet<string> } | undefined;

  /** How many Services are held out. */
  get size(): number {
    return this.#held.size;
  }

  has(service: string): boolean {
    return this.#held.has(service);
  }

  /** Holds `service` out with nft's `reason`. */
  hold(service: string, reason: string): void {
    this.#held.set(service, reason);
  }

  /** Releases the Services among `keys` (whose objects changed): the next sync tries them again. */
  release(keys: Iterable<string>): string[] {
    const released: string[] = [];
    for (const key of keys) if (this.#held.delete(key)) released.push(key);
    return released;
  }

  /** Releases every Service (a periodic full sync tries them all again). */
  releaseAll(): string[] {
    return this.release([...this.#held.keys()]);
  }

  /**
   * `state` without the held Services' ports, and the model's `delta` (from the state given
   * last) turned into one from the view given last, naming also the ports of every Service
   * held out or released since: the compiler then stays incremental (the identity contract:
   * StateDelta, src/model/state-builder.ts). The state itself when nothing is held.
   */
  view(state: ProxyState, delta?: StateDelta): { state: ProxyState; delta?: StateDelta } {
    const last = this.#last;
    const held = new Set(this.#held.keys());
    const view = held.size === 0 ? state : filtered(state, this.#held);
    this.#last = { state, view, held };
    if (!delta || !last || delta.base !== last.state) return { state: view };
    const moved = [...held].filter((k) => !last.held.has(k));
    for (const k of last.held) if (!held.has(k)) moved.push(k);
    if (moved.length === 0 && last.view === last.state && view === state) return { state: view, delta };
    const ports = new Set(delta.ports);
    for (const service of moved) {
      for (const sp of portsOf(state, service)) ports.add(sp.key);
      for (const sp of portsOf(last.state, service)) ports.add(sp.key);
    }
    return { state: view, delta: { base: last.view, ports } };
  }
}

/** The reason a held-out Service shows on /debug/services and in the log. */
export const heldOutReason = (refusal: string): string => `nft refused its rules: ${refusal}`;

function filtered(state: ProxyState, held: ReadonlyMap<string, string>): ProxyState {
  const skipped: Skipped[] = [...held]
    .sort(([a], [b]) => compareStrings(a, b))
    .map(([name, reason]) => ({ kind: 'Service', name, reason: heldOutReason(reason) }));
  // The same state but for these: every other field (service CIDRs, NodePort addresses) carries over.
  return {
    ...state,
    ports: state.ports.filter((sp) => !held.has(sp.service)),
    skipped: [...state.skipped, ...skipped],
  };
}

/** A Service's ports: they sort together, under `namespace/name:`. */
function portsOf(state: ProxyState, service: string): ServicePort[] {
  const prefix = `${service}:`;
  const out: ServicePort[] = [];
  for (
    let i = sortedIndex(state.ports, prefix, (sp) => sp.key);
    i < state.ports.length && state.ports[i]!.key.startsWith(prefix);
    i++
  )
    out.push(state.ports[i]!);
  return out;
}

/** `state` without the ports of `services`: what a sync with them held out would program. */
export function withoutServices(state: ProxyState, services: ReadonlySet<string>): ProxyState {
  if (services.size === 0) return state;
  return { ...state, ports: state.ports.filter((sp) => !services.has(sp.service)) };
}
