import { compareStrings } from '../util/sorted-index.js';
import type { FrontendKind } from './frontends.js';
import { nftProtocol } from './protocol.js';
import type { Family, ServicePort } from './types.js';

/**
 * Frontend ownership: every (IP, protocol, port) the node answers on has exactly one owner,
 * whichever Services claim it and however (ClusterIP, external IP, load-balancer IP, NodePort
 * on a NodePort address), within one Service and across Services. Two owners would make nft
 * refuse the whole transaction ("File exists") on every node at once; so the model decides,
 * the same way on every node:
 *
 * - a ClusterIP keeps its Service (the API server allocates them uniquely; a tenant's
 *   external IP cannot take kube-dns's ClusterIP);
 * - among other claims the older Service wins (creationTimestamp, then namespace/name);
 * - within one Service: load-balancer IP before external IP before NodePort (a load-balancer
 *   frontend keeps its loadBalancerSourceRanges), then by port key.
 *
 * The loser loses only that frontend; the rest of it works.
 */

/** One service port's claim on one frontend. */
interface Claim {
  /** `ip proto/port`: the frontend's identity (the key of the nft maps). */
  frontend: string;
  kind: FrontendKind;
  ip: string;
  /** The port as the model joined it, before ownership. */
  sp: ServicePort;
}

/** A frontend a service port lost, and to whom. */
export interface LostFrontend {
  kind: FrontendKind;
  ip: string;
  port: number;
  winner: { service: string; kind: FrontendKind };
}

const KIND_RANK: Record<FrontendKind, number> = { clusterIP: 0, loadBalancer: 1, externalIP: 2, nodePort: 3 };

/** Precedence: negative when `a` owns the frontend ahead of `b`. */
function precedes(a: Claim, b: Claim): number {
  const aCluster = a.kind === 'clusterIP' ? 0 : 1;
  const bCluster = b.kind === 'clusterIP' ? 0 : 1;
  if (aCluster !== bCluster) return aCluster - bCluster;
  const aCreated = a.sp.created ?? Infinity;
  const bCreated = b.sp.created ?? Infinity;
  if (aCreated !== bCreated) return aCreated < bCreated ? -1 : 1;
  return (
    compareStrings(a.sp.service, b.sp.service) ||
    KIND_RANK[a.kind] - KIND_RANK[b.kind] ||
    compareStrings(a.sp.key, b.sp.key)
  );
}

/** Every claim of a service port, one per frontend it would answer on. */
function claimsOf(sp: ServicePort, nodePortIPs: Record<Family, string[]>): Claim[] {
  const proto = nftProtocol(sp.protocol);
  const out: Claim[] = [];
  const claim = (kind: FrontendKind, ip: string, port: number): void => {
    // Joined: one flat string, where a template makes a chain of cons strings (held per claim).
    out.push({ frontend: [ip, ' ', proto, '/', port].join(''), kind, ip, sp });
  };
  if (sp.clusterIP) claim('clusterIP', sp.clusterIP, sp.port);
  for (const ip of sp.loadBalancerIPs) claim('loadBalancer', ip, sp.port);
  for (const ip of sp.externalIPs) claim('externalIP', ip, sp.port);
  if (sp.nodePort > 0) for (const ip of nodePortIPs[sp.family]) claim('nodePort', ip, sp.nodePort);
  return out;
}

/**
 * The claims of every service port, indexed by frontend, kept up to date as ports come and go,
 * so one change costs its own claims, not a walk of every Service.
 */
export class FrontendOwners {
  readonly #byFrontend = new Map<string, Claim[]>();
  readonly #byPort = new Map<string, Claim[]>();

  clear(): void {
    this.#byFrontend.clear();
    this.#byPort.clear();
  }

  /** Adds a port's claims; `contested` hears of every port key sharing a frontend with it. */
  add(sp: ServicePort, nodePortIPs: Record<Family, string[]>, contested?: (portKey: string) => void): void {
    const claims = claimsOf(sp, nodePortIPs);
    if (claims.length === 0) return;
    this.#byPort.set(sp.key, claims);
    for (const c of claims) {
      const list = this.#byFrontend.get(c.frontend);
      if (!list) {
        this.#byFrontend.set(c.frontend, [c]);
        continue;
      }
      for (const other of list) contested?.(other.sp.key);
      let i = 0;
      while (i < list.length && precedes(list[i]!, c) <= 0) i++;
      list.splice(i, 0, c);
    }
  }

  /** Removes a port's claims; `contested` hears of every port key that shared a frontend with it. */
  remove(portKey: string, contested?: (portKey: string) => void): void {
    const claims = this.#byPort.get(portKey);
    if (!claims) return;
    this.#byPort.delete(portKey);
    for (const c of claims) {
      const list = this.#byFrontend.get(c.frontend)!;
      const rest = list.filter((x) => x !== c);
      if (rest.length === 0) this.#byFrontend.delete(c.frontend);
      else this.#byFrontend.set(c.frontend, rest);
      for (const other of rest) contested?.(other.sp.key);
    }
  }

  /** The frontends the port with `portKey` claims but does not own, in claim order. */
  lost(portKey: string): LostFrontend[] {
    const out: LostFrontend[] = [];
    for (const c of this.#byPort.get(portKey) ?? []) {
      const winner = this.#byFrontend.get(c.frontend)![0]!;
      if (winner === c) continue;
      // The same address listed twice by one port is one frontend, not a contest.
      if (winner.sp === c.sp && winner.kind === c.kind) continue;
      const port = c.kind === 'nodePort' ? c.sp.nodePort : c.sp.port;
      out.push({ kind: c.kind, ip: c.ip, port, winner: { service: winner.sp.service, kind: winner.kind } });
    }
    return out;
  }
}

/** `sp` without the frontends it lost: the port the backends program. */
export function withoutLost(sp: ServicePort, lost: readonly LostFrontend[]): ServicePort {
  const gone = (kind: FrontendKind): Set<string> =>
    new Set(lost.filter((l) => l.kind === kind).map((l) => l.ip));
  const lostExternal = gone('externalIP');
  const lostLb = gone('loadBalancer');
  const lostNodePort = [...gone('nodePort')].sort(compareStrings);
  const copy: ServicePort = {
    ...sp,
    externalIPs: sp.externalIPs.filter((ip) => !lostExternal.has(ip)),
    loadBalancerIPs: sp.loadBalancerIPs.filter((ip) => !lostLb.has(ip)),
  };
  if (lost.some((l) => l.kind === 'clusterIP')) copy.clusterIP = undefined;
  if (lostNodePort.length > 0) copy.lostNodePortIPs = lostNodePort;
  return copy;
}

/** One log line's reason for a lost frontend, naming the owner and why it won. */
export function lostReason(sp: ServicePort, l: LostFrontend): string {
  const what = `${l.kind} ${l.ip} ${nftProtocol(sp.protocol)}/${l.port}`;
  if (l.winner.service === sp.service) return `${what} is also this Service's ${l.winner.kind}: left out`;
  const why =
    l.winner.kind === 'clusterIP' ? 'a ClusterIP always keeps its Service' : 'the older Service keeps it';
  return `${what} is ${l.winner.service}'s ${l.winner.kind} (${why}): left out`;
}
