/**
 * One interface for the two userspace proxies (STYLE.md habit 17, undici's Dispatcher is the
 * model): the backend drives a TCP and a UDP frontend through the same calls, so a feature
 * one of them lacks (a UDP frontend without an allow list) is a compile error, not a branch.
 */
import net from 'node:net';
import type { Clock } from '../util/clock.js';
import type { Logger } from '../log.js';
import { DEFAULT_AFFINITY_CLIENTS, type PickerOptions, type PickerSpec, type Target } from './pickers.js';

/** What every frontend counts; shown on /debug/services. */
export interface FrontendStats {
  /**
   * Clients turned away: TCP connections reset (outside the source ranges, no endpoint, every
   * attempt failed, the cap full of busy connections), UDP datagrams dropped from a client
   * outside the source ranges.
   */
  refused: number;
  /** Connections or sessions ended to make room under the cap. */
  evicted: number;
  /** Session-affinity pins dropped to make room under the cap. */
  affinityEvicted: number;
}

export interface FrontendProxy<T extends Target = Target> {
  readonly address: string;
  /** The bound port (the kernel's choice when 0 was asked for). */
  readonly port: number;
  /** Open TCP connections or live UDP sessions. */
  readonly active: number;
  readonly stats: FrontendStats;
  /** New flows use the new endpoints. */
  setEndpoints(endpoints: readonly T[], spec: PickerSpec): void;
  /** Client addresses allowed (loadBalancerSourceRanges); undefined: any. */
  setAllow(allow: net.BlockList | undefined): void;
  /** Ends what outlived its timeout by the injected clock; the backend calls it periodically. */
  sweep(): void;
  /** Stops accepting. TCP connections finish unless `destroy`; UDP sessions end (nothing to drain). */
  close(opts: { destroy: boolean }): Promise<void>;
}

/** loadBalancerSourceRanges as a BlockList used as an allow list; undefined when any source may connect. */
export function allowListOf(cidrs: readonly string[]): net.BlockList | undefined {
  if (cidrs.length === 0) return undefined;
  const list = new net.BlockList();
  for (const cidr of cidrs) {
    const [ip, bits] = cidr.split('/');
    if (!ip) continue;
    const type = net.isIPv6(ip) ? 'ipv6' : 'ipv4';
    list.addSubnet(ip, bits === undefined ? (type === 'ipv6' ? 128 : 32) : Number(bits), type);
  }
  return list;
}

/** Whether `allow` lets `ip` in; undefined lets everyone in. */
export function allowed(allow: net.BlockList | undefined, ip: string): boolean {
  return !allow || allow.check(ip, net.isIPv6(ip) ? 'ipv6' : 'ipv4');
}

/**
 * The picker options of a frontend: its clock and random source, and an affinity cap whose
 * evictions are counted in `stats` and logged the first time (a flood costs one line; the
 * count is on /debug/services).
 */
export function frontendPickerOptions(
  opts: {
    log: Logger;
    clock: Pick<Clock, 'now'>;
    random?: (() => number) | undefined;
    maxAffinityClients?: number | undefined;
  },
  stats: FrontendStats,
): PickerOptions {
  const maxClients = opts.maxAffinityClients ?? DEFAULT_AFFINITY_CLIENTS;
  return {
    clock: opts.clock,
    ...(opts.random ? { random: opts.random } : {}),
    affinityCap: {
      maxClients,
      onEvict: () => {
        if (stats.affinityEvicted++ === 0)
          opts.log.warn({ cap: maxClients }, 'affinity cap reached: forgetting the oldest clients');
      },
    },
  };
}
