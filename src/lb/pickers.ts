/**
 * Endpoint pickers for the userspace proxy: which endpoint a new connection (TCP) or session
 * (UDP) goes to. A picker owns its endpoint list; `update` swaps the list in place so state
 * that should survive an endpoint change (round-robin position, affinity entries) does, and
 * open connections are never touched (they hold their endpoint, not the picker).
 */
import { systemClock, type Clock } from '../util/clock.js';
import { endpointName, flowHash, maglevEndpointTable } from './maglev.js';
import type { LbAlgorithm } from '../model/types.js';

/** What a picker needs of an endpoint. */
export interface Target {
  ip: string;
  port: number;
}

/** The client side of a flow. */
export interface Flow {
  ip: string;
  port: number;
}

export interface Picker<T extends Target = Target> {
  /**
   * The endpoint for a new flow, or undefined when there is none. `avoid` holds endpoints
   * that already failed for this flow (connect refused), so a retry goes elsewhere.
   */
  pick(flow: Flow, avoid?: ReadonlySet<T>): T | undefined;
  /** Replaces the endpoint list. */
  update(endpoints: readonly T[]): void;
  readonly size: number;
}

/**
 * A list of endpoints tried in order from a start index the subclass chooses, skipping those
 * to avoid. Random and round-robin differ only in that choice.
 */
abstract class ListPicker<T extends Target> implements Picker<T> {
  private eps: readonly T[] = [];
  constructor(endpoints: readonly T[]) {
    this.update(endpoints);
  }
  get size(): number {
    return this.eps.length;
  }
  update(endpoints: readonly T[]): void {
    this.eps = [...endpoints];
  }
  pick(_flow: Flow, avoid?: ReadonlySet<T>): T | undefined {
    const n = this.eps.length;
    if (n === 0) return undefined;
    return firstAllowed(this.eps, this.start(n), avoid);
  }
  /** The index in [0, n) to try first; n > 0. */
  protected abstract start(n: number): number;
}

/** Uniform random choice per flow: kube-proxy's default. */
export class RandomPicker<T extends Target = Target> extends ListPicker<T> {
  constructor(
    endpoints: readonly T[],
    private readonly random: () => number = Math.random,
  ) {
    super(endpoints);
  }
  protected start(n: number): number {
    return Math.floor(this.random() * n) % n;
  }
}

/** Each new flow to the next endpoint in turn. */
export class RoundRobinPicker<T extends Target = Target> extends ListPicker<T> {
  private next = 0;
  protected start(n: number): number {
    const start = this.next % n;
    this.next = (start + 1) % n;
    return start;
  }
}

/**
 * Maglev: the flow hash of (client ip, client port) indexes the slot table built from the
 * endpoint names (`maglev.ts`), so every node sends a flow to the same endpoint. A retry
 * walks the following slots, which keeps the fallback deterministic too.
 */
export class MaglevPicker<T extends Target = Target> implements Picker<T> {
  /** The compiler's table (`maglevEndpointTable`), so the picker and the rules agree slot by slot. */
  private slots: T[] = [];
  private count = 0;
  constructor(
    endpoints: readonly T[],
    private readonly seed: number,
  ) {
    this.update(endpoints);
  }
  get size(): number {
    return this.count;
  }
  update(endpoints: readonly T[]): void {
    this.slots = maglevEndpointTable(endpoints, this.seed).slots;
    this.count = new Set(endpoints.map(endpointName)).size;
  }
  pick(flow: Flow, avoid?: ReadonlySet<T>): T | undefined {
    const m = this.slots.length;
    if (m === 0) return undefined;
    const slot = flowHash(flow.ip, flow.port, this.seed) % m;
    const ep = this.slots[slot]!;
    if (!avoid || !avoid.has(ep)) return ep;
    if (avoid.size >= this.count) return undefined;
    for (let i = 1; i < m; i++) {
      const alt = this.slots[(slot + i) % m]!;
      if (!avoid.has(alt)) return alt;
    }
    return undefined;
  }
}

/** How many clients an affinity picker remembers by default (per frontend). */
export const DEFAULT_AFFINITY_CLIENTS = 65_536;

/** Bounds what an AffinityPicker remembers. */
export interface AffinityCap {
  /** Clients remembered at most; the oldest pin goes to make room for a new one. */
  maxClients: number;
  /** Called for each pin dropped to make room (the owner counts and logs it). */
  onEvict?: () => void;
}

/**
 * Session affinity by client IP (Service `sessionAffinity: ClientIP`): a client keeps its
 * endpoint until it has been idle for `timeoutMs` (each pick refreshes it, like the
 * `recent` match kube-proxy uses) or the endpoint vanished from the list. At most
 * `cap.maxClients` clients are remembered: clients come from outside, so without a bound a
 * scan of source addresses would grow the map for a whole timeout. The oldest pin makes room
 * (insertion order: O(1), and a pin refreshed since only loses its stickiness, not its flow).
 */
export class AffinityPicker<T extends Target = Target> implements Picker<T> {
  private readonly entries = new Map<string, { name: string; last: number }>();
  private byName = new Map<string, T>();
  private lastSweep: number;
  /** Pins dropped to make room under the cap. */
  evicted = 0;
  constructor(
    private readonly inner: Picker<T>,
    endpoints: readonly T[],
    private readonly timeoutMs: number,
    private readonly clock: Pick<Clock, 'now'> = systemClock,
    private readonly cap: AffinityCap = { maxClients: DEFAULT_AFFINITY_CLIENTS },
  ) {
    this.lastSweep = clock.now();
    this.update(endpoints);
  }
  get size(): number {
    return this.inner.size;
  }
  /** Clients currently pinned (for tests and debugging). */
  get clients(): number {
    return this.entries.size;
  }
  update(endpoints: readonly T[]): void {
    this.inner.update(endpoints);
    this.byName = new Map(endpoints.map((ep) => [endpointName(ep), ep]));
    for (const [client, e] of this.entries) if (!this.byName.has(e.name)) this.entries.delete(client);
  }
  pick(flow: Flow, avoid?: ReadonlySet<T>): T | undefined {
    const now = this.clock.now();
    // Expired entries are dropped in one pass per timeout period, not per pick.
    if (now - this.lastSweep >= this.timeoutMs) this.sweep(now);
    const e = this.entries.get(flow.ip);
    if (e && now - e.last < this.timeoutMs) {
      const ep = this.byName.get(e.name);
      if (ep && (!avoid || !avoid.has(ep))) {
        e.last = now;
        return ep;
      }
    }
    const ep = this.inner.pick(flow, avoid);
    if (!ep) {
      this.entries.delete(flow.ip);
      return ep;
    }
    if (e) {
      e.name = endpointName(ep);
      e.last = now;
      return ep;
    }
    if (this.entries.size >= this.cap.maxClients) {
      const oldest = this.entries.keys().next();
      if (!oldest.done) {
        this.entries.delete(oldest.value);
        this.evicted++;
        this.cap.onEvict?.();
      }
    }
    this.entries.set(flow.ip, { name: endpointName(ep), last: now });
    return ep;
  }
  private sweep(now: number): void {
    this.lastSweep = now;
    for (const [client, e] of this.entries) if (now - e.last >= this.timeoutMs) this.entries.delete(client);
  }
}

/** How a service port picks: what `createPicker` builds, compared to decide whether to rebuild. */
export interface PickerSpec {
  algorithm: LbAlgorithm | 'round-robin';
  /** 0: no affinity. */
  affinitySeconds: number;
  /** Maglev seed, the same on every node. */
  seed: number;
}

export function samePickerSpec(a: PickerSpec, b: PickerSpec): boolean {
  return a.algorithm === b.algorithm && a.affinitySeconds === b.affinitySeconds && a.seed === b.seed;
}

/** What pickers take from their owner besides the spec; the proxies pass their own options. */
export interface PickerOptions {
  /** Only now() is read: the load balancer times, it never waits. */
  clock?: Pick<Clock, 'now'>;
  random?: () => number;
  /** Bounds affinity pickers; default DEFAULT_AFFINITY_CLIENTS clients, no callback. */
  affinityCap?: AffinityCap;
}

export function createPicker<T extends Target>(
  spec: PickerSpec,
  endpoints: readonly T[],
  opts: PickerOptions = {},
): Picker<T> {
  const inner: Picker<T> =
    spec.algorithm === 'maglev'
      ? new MaglevPicker(endpoints, spec.seed)
      : spec.algorithm === 'round-robin'
        ? new RoundRobinPicker(endpoints)
        : new RandomPicker(endpoints, opts.random);
  if (spec.affinitySeconds > 0)
    return new AffinityPicker(inner, endpoints, spec.affinitySeconds * 1000, opts.clock, opts.affinityCap);
  return inner;
}

/**
 * The picker after an endpoint change: `picker` updated in place while the spec is unchanged,
 * so round-robin position and affinity entries survive, else a new one for the new spec.
 */
export function updatePicker<T extends Target>(
  picker: Picker<T>,
  from: PickerSpec,
  to: PickerSpec,
  endpoints: readonly T[],
  opts: PickerOptions,
): Picker<T> {
  if (!samePickerSpec(from, to)) return createPicker(to, endpoints, opts);
  picker.update(endpoints);
  return picker;
}

function firstAllowed<T>(eps: readonly T[], start: number, avoid: ReadonlySet<T> | undefined): T | undefined {
  if (!avoid || avoid.size === 0) return eps[start];
  const n = eps.length;
  for (let i = 0; i < n; i++) {
    const ep = eps[(start + i) % n]!;
    if (!avoid.has(ep)) return ep;
  }
  return undefined;
}
