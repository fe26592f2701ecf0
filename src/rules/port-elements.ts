/** One service port's elements, and the static objects they jump to. */
import { createHash } from 'node:crypto';
import { frontendsOf, type Frontend } from '../model/frontends.js';
import { cidrContains, parseCidr } from '../model/ip.js';
import { nftProtocol } from '../model/protocol.js';
import { maglevEndpointTable } from '../lb/maglev.js';
import { compareStrings } from '../util/sorted-index.js';
import type { Endpoint, Family, LbAlgorithm, ServicePort } from '../model/types.js';
import type { Element } from './nft/types.js';
import type { Fragment, StickyFrontend } from './ruleset.js';
import {
  pickChainName,
  type FamilyContext,
  type MaglevTable,
  type PickSpec,
  type Recorder,
  type Role,
} from './layout.js';

/**
 * An element's key or value text from its fields. A join makes one flat string; a template
 * literal makes a tree of V8 cons strings, which at 100,000 elements costs more heap than
 * arrays of fields did (measured: 43 MB against 33 for the ruleset at 10,000 Services).
 */
const fields = (...parts: Array<string | number>): string => parts.join(' . ');

/** A chain-name-safe, stable short name for a service port (its key may hold any Service name). */
const portHash = (key: string): string => createHash('sha256').update(key).digest('hex').slice(0, 12);

/** Shared by every port without recorders or Maglev tables (most of them). */
const NONE: ReadonlyArray<readonly [string, never]> = Object.freeze([]);

/** A port's elements and what they need of the static part. */
export interface PortFragment extends Fragment {
  readonly service: string;
  readonly family: Family;
  readonly elements: Element[];
  /**
   * How many elements the port compiles to. Over the element budget, counting goes on but
   * `elements` stops growing: such a port is never used (its Service is left out).
   */
  readonly size: number;
  /** As [name, what] pairs: a Map per port cost ≈150 bytes each at 10,000 ports. */
  readonly picks: ReadonlyArray<readonly [string, PickSpec]>;
  readonly recorders: ReadonlyArray<readonly [string, Recorder]>;
  readonly maglev: ReadonlyArray<readonly [string, MaglevTable]>;
  readonly hairpin: string[];
}

/**
 * One service port's elements, and the pick chains, recorders and Maglev tables they jump to.
 * Pure. Past `budget` elements it only counts.
 */
export function compilePort(sp: ServicePort, ctx: FamilyContext, budget: number): PortFragment {
  const { nft: family, table } = ctx;
  const p = nftProtocol(sp.protocol);
  const elements: Element[] = [];
  let size = 0;
  const picks = new Map<string, PickSpec>();
  const recorders = new Map<string, Recorder>();
  const maglev = new Map<string, MaglevTable>();
  // Plain literals: building 100,000 elements with spreads costs seconds.
  const element = (set: string, key: string, value?: string): void => {
    if (++size > budget) return;
    elements.push(
      value
        ? { kind: 'element', family, table, set, key, value }
        : { kind: 'element', family, table, set, key },
    );
  };
  const frontendKey = (fe: Frontend): string => fields(fe.ip, p, fe.port);
  const stickyGroups = [
    { frontends: new Map<string, Frontend>() },
    { frontends: new Map<string, Frontend>() },
  ];
  const groupName = (group: number): string =>
    `affinity-${portHash(sp.key)}-${group === 0 ? 'cluster' : 'local'}`;
  /** Frontend `ip . port` → the endpoints (`ip . port`) it picks from, for the sticky ones. */
  const picksFrom = new Map<string, Set<string>>();
  const noEndpoints = (fe: Frontend): void =>
    element('no-endpoint-services', frontendKey(fe), sp.hasEndpoints ? 'drop' : 'goto reject-chain');
  /** Writes the Maglev table of `eps` once (however many frontends use it); returns its name. */
  const maglevTable = (eps: Endpoint[]): string => {
    const name = `maglev-${portHash(sp.key)}-${eps === sp.localEndpoints ? 'local' : 'cluster'}`;
    if (maglev.has(name)) return name;
    const { m, slots } = maglevEndpointTable(eps, ctx.maglevSeed);
    maglev.set(name, { proto: p, m });
    if (size + m > budget) size += m;
    else
      for (let slot = 0; slot < m; slot++)
        element(name, String(slot), fields(slots[slot]!.ip, slots[slot]!.port));
    return name;
  };
  const route = (
    mapName: 'service-ips' | 'shortcircuit-ips',
    role: Role,
    fe: Frontend,
    eps: Endpoint[],
  ): void => {
    const algo: LbAlgorithm = sp.lbAlgorithm === 'maglev' && eps.length > 0 ? 'maglev' : 'random';
    const sticky = sp.affinitySeconds > 0 && eps.length > 0;
    const spec: PickSpec = { role, algo, size: algo === 'maglev' ? 0 : eps.length, sticky };
    const name = pickChainName(spec);
    picks.set(name, spec);
    element(mapName, frontendKey(fe), `goto ${name}`);
    const port = String(fe.port);
    if (algo === 'maglev') {
      const ports = role === 'shortcircuit' ? 'cluster-maglev-ports' : 'maglev-ports';
      element(ports, frontendKey(fe), `goto ${maglevTable(eps)}`);
    } else if (size + eps.length > budget) {
      size += eps.length;
    } else {
      const backends = `${role === 'shortcircuit' ? 'cluster-backends' : 'backends'}-${p}`;
      for (let slot = 0; slot < eps.length; slot++) {
        const ep = eps[slot]!;
        element(backends, fields(fe.ip, port, slot), fields(ep.ip, ep.port));
      }
    }
    if (!sticky) return;
    const id = fields(fe.ip, port);
    const from = picksFrom.get(id) ?? new Set<string>();
    for (const ep of eps) from.add(fields(ep.ip, ep.port));
    picksFrom.set(id, from);
    // Frontends that pick from the same list share stickiness, as kube-proxy keys affinity by
    // endpoint: a client seen on the ClusterIP keeps its endpoint on the NodePort. An eTP Local
    // frontend routes twice (local, short-circuit): it records with its local group only.
    if (!stickyGroups.some((g) => g.frontends.has(id))) {
      const group = role === 'external-local' || (role === 'clusterip' && sp.internalPolicyLocal) ? 1 : 0;
      stickyGroups[group]!.frontends.set(id, fe);
      // IPv6: the sticky pick chains jump to the group's own lookup (see Recorder).
      if (ctx.family === 'ipv6') element('affinity-ports', frontendKey(fe), `jump ${groupName(group)}`);
    }
  };
  for (const fe of frontendsOf(sp, ctx.nodePortIPs)) {
    if (fe.kind === 'clusterIP') {
      element('cluster-ips', fe.ip);
      const eps = sp.internalPolicyLocal ? sp.localEndpoints : sp.clusterEndpoints;
      if (eps.length === 0) noEndpoints(fe);
      else route('service-ips', 'clusterip', fe, eps);
      continue;
    }
    if (fe.kind === 'loadBalancer' && sp.sourceRanges.length > 0) {
      element('firewall-ips', frontendKey(fe));
      for (const range of sp.sourceRanges) element('firewall-allow', fields(fe.ip, p, fe.port, range));
    }
    if (!sp.externalPolicyLocal) {
      if (sp.clusterEndpoints.length === 0) noEndpoints(fe);
      else route('service-ips', 'external', fe, sp.clusterEndpoints);
      continue;
    }
    // externalTrafficPolicy Local: outside clients keep their address and reach only local
    // endpoints; pods and the node itself short-circuit to every endpoint.
    if (!sp.hasEndpoints) {
      noEndpoints(fe);
      continue;
    }
    route('service-ips', 'external-local', fe, sp.localEndpoints);
    if (sp.localEndpoints.length === 0) noEndpoints(fe);
    if (sp.clusterEndpoints.length > 0) route('shortcircuit-ips', 'shortcircuit', fe, sp.clusterEndpoints);
  }
  // Source ranges that admit the node's own address also admit the LB IPs themselves: a node
  // reaching a VIP that is local loops back with the VIP as source (kube-proxy does the same).
  // An LB IP already inside a range needs no element of its own, and the interval set refuses
  // one that overlaps a range (the model has merged the ranges themselves).
  if (sp.sourceRanges.length > 0 && sp.loadBalancerIPs.length > 0) {
    const ranges = sp.sourceRanges.map((c) => parseCidr(c)!);
    const inRange = (ip: string): boolean => ranges.some((r) => cidrContains(r, ip));
    if (ctx.nodePortIPs[sp.family].some(inRange))
      for (const lb of sp.loadBalancerIPs)
        for (const src of sp.loadBalancerIPs)
          if (!inRange(src)) element('firewall-allow', fields(lb, p, sp.port, src));
  }
  const sticky: StickyFrontend[] = [];
  const { x } = ctx;
  stickyGroups.forEach(({ frontends }, group) => {
    if (frontends.size === 0) return;
    const name = `affinity-record-${portHash(sp.key)}-${group === 0 ? 'cluster' : 'local'}`;
    const rules: string[] = [];
    const timeout = `timeout ${sp.affinitySeconds}s`;
    const lookup = groupName(group);
    const groupEndpoints = new Set<string>();
    for (const [id, fe] of frontends) {
      if (ctx.family === 'ipv4') {
        rules.push(
          `meta l4proto ${p} update @affinity-${p} { ${fe.ip} . ${fe.port} . ${x} saddr ${timeout} : ${x} daddr . th dport }`,
        );
        const endpoints = [...picksFrom.get(id)!].sort(compareStrings);
        sticky.push({ family, table, proto: p, store: { map: `affinity-${p}`, frontend: id }, endpoints });
      } else {
        for (const ep of picksFrom.get(id)!) groupEndpoints.add(ep);
      }
      element(`affinity-frontends-${p}`, id, `goto ${name}`);
    }
    if (ctx.family === 'ipv6') {
      const portMap = `${lookup}-port`;
      rules.push(
        `meta l4proto ${p} update @${lookup} { ${x} saddr ${timeout} : ${x} daddr } update @${portMap} { ${x} saddr ${timeout} : th dport }`,
      );
      const endpoints = [...groupEndpoints].sort(compareStrings);
      sticky.push({ family, table, proto: p, store: { map: lookup, portMap }, endpoints });
    }
    recorders.set(name, ctx.family === 'ipv6' ? { rules, lookup: { name: lookup, proto: p } } : { rules });
  });
  const hairpin: string[] = [];
  for (const ep of sp.clusterEndpoints) if (ep.local) hairpin.push(ep.ip);
  for (const ep of sp.localEndpoints) if (ep.local) hairpin.push(ep.ip);
  return {
    key: sp.key,
    service: sp.service,
    family: sp.family,
    elements,
    size,
    picks: [...picks],
    recorders: recorders.size > 0 ? [...recorders] : NONE,
    maglev: maglev.size > 0 ? [...maglev] : NONE,
    hairpin,
    ...(sticky.length > 0 ? { sticky } : {}),
  };
}
