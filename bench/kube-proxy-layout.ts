/**
 * kube-proxy's nftables layout (pkg/proxy/nftables/proxier.go), generated from a ProxyState
 * so the bench can load the reference and ours for the same Services in the same run.
 *
 * Per service port: a policy chain `service-HASH-ns/name/proto/port` (masquerade decision,
 * affinity lookups, then `numgen random mod N vmap { i : goto endpoint-... }`), a chain per
 * endpoint `endpoint-HASH-...__ip/port` (hairpin mark, affinity update, dnat), and for
 * externally reachable ports an `external-` chain, a `local-` chain for eTP Local and a
 * `firewall-` chain for source ranges; data is one element per frontend in the static maps.
 * As kube-proxy's knftables transactions do, every chain it (re)writes is `add` + `flush`.
 * Only what shapes the load is modelled: IPv4, TCP/UDP, no UDP conntrack cleanup.
 */
import { createHash } from 'node:crypto';
import type { Endpoint, ServicePort, ProxyState } from '../src/model/types.js';

export interface KubeProxyLayoutOptions {
  /** Pod network: ClusterIP traffic from outside it is masqueraded. */
  clusterCIDR: string;
  serviceCIDR: string;
  nodeIPs: string[];
  table?: string;
}

const TABLE = 'kube-proxy';
const MASQ = '0x4000';
const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/** kube-proxy's hashAndTruncate: the first 8 base32 characters of sha256(name), then the name. */
function hashed(name: string): string {
  const h = createHash('sha256').update(name).digest();
  // 5 bytes = 40 bits = exactly 8 base32 characters.
  let bits = 0n;
  for (let i = 0; i < 5; i++) bits = (bits << 8n) | BigInt(h[i]!);
  let out = '';
  for (let i = 7; i >= 0; i--) out += BASE32[Number((bits >> BigInt(i * 5)) & 31n)];
  return `${out}-${name}`;
}

interface ServiceObjects {
  /** Chains in creation order (endpoint chains before the chains that goto them), with rules. */
  chains: Array<{ name: string; rules: string[] }>;
  /** Affinity sets: `name` and their full `add set` body. */
  sets: Array<{ name: string; body: string }>;
  /** Element lines without the verb: `service-ips { k : v }`. */
  elements: string[];
}

const proto = (sp: ServicePort): string => sp.protocol.toLowerCase();

function serviceObjects(sp: ServicePort, opts: KubeProxyLayoutOptions): ServiceObjects {
  const p = proto(sp);
  const base = `${sp.namespace}/${sp.name}/${p}/${sp.portName}`;
  const svcChain = `service-${hashed(base)}`;
  const localChain = `local-${hashed(base)}`;
  const extChain = `external-${hashed(base)}`;
  const fwChain = `firewall-${hashed(base)}`;
  const epBase = (ep: Endpoint): string => hashed(`${base}__${ep.ip}/${ep.port}`);
  const epChain = (ep: Endpoint): string => `endpoint-${epBase(ep)}`;
  const affinitySet = (ep: Endpoint): string => `affinity-${epBase(ep)}`;
  const affinity = sp.affinitySeconds > 0;

  const out: ServiceObjects = { chains: [], sets: [], elements: [] };
  const reachable = new Map<string, Endpoint>();
  for (const ep of [...sp.clusterEndpoints, ...(sp.externalPolicyLocal ? sp.localEndpoints : [])])
    reachable.set(`${ep.ip}:${ep.port}`, ep);

  // Endpoint chains first: the policy chains' vmaps goto them.
  for (const ep of reachable.values()) {
    if (affinity)
      out.sets.push({
        name: affinitySet(ep),
        body: `{ type ipv4_addr ; flags dynamic,timeout ; timeout ${sp.affinitySeconds}s ; }`,
      });
    out.chains.push({
      name: epChain(ep),
      rules: [
        `ip saddr ${ep.ip} jump mark-for-masquerade`,
        ...(affinity ? [`update @${affinitySet(ep)} { ip saddr }`] : []),
        `meta l4proto ${p} dnat to ${ep.ip}:${ep.port}`,
      ],
    });
  }
  const toEndpoints = (eps: Endpoint[]): string[] => [
    ...(affinity ? eps.map((ep) => `ip saddr @${affinitySet(ep)} goto ${epChain(ep)}`) : []),
    `numgen random mod ${eps.length} vmap { ${eps.map((ep, i) => `${i} : goto ${epChain(ep)}`).join(', ')} }`,
  ];
  const cluster = sp.clusterEndpoints;
  const local = sp.localEndpoints;
  if (cluster.length > 0 && sp.clusterIP) {
    out.chains.push({
      name: svcChain,
      rules: [
        `ip daddr ${sp.clusterIP} ${p} dport ${sp.port} ip saddr != ${opts.clusterCIDR} jump mark-for-masquerade`,
        ...toEndpoints(cluster),
      ],
    });
  }
  if (sp.externalPolicyLocal && local.length > 0)
    out.chains.push({ name: localChain, rules: toEndpoints(local) });
  const external = sp.hasEndpoints && sp.externallyAccessible;
  if (external) {
    const rules = sp.externalPolicyLocal
      ? [
          `ip saddr ${opts.clusterCIDR} goto ${svcChain} comment "short-circuit pod traffic"`,
          `fib saddr type local jump mark-for-masquerade comment "masquerade local traffic"`,
          `fib saddr type local goto ${svcChain} comment "short-circuit local traffic"`,
          ...(local.length > 0 ? [`goto ${localChain}`] : []),
        ]
      : ['jump mark-for-masquerade', `goto ${svcChain}`];
    out.chains.push({ name: extChain, rules });
  }
  const usesFw = sp.loadBalancerIPs.length > 0 && sp.sourceRanges.length > 0;
  if (usesFw)
    out.chains.push({ name: fwChain, rules: [`ip saddr != { ${sp.sourceRanges.join(', ')} } drop`] });

  const key = (ip: string): string => `${ip} . ${p} . ${sp.port}`;
  const noEndpoints = sp.hasEndpoints ? 'drop' : `goto reject-chain`;
  if (sp.clusterIP) {
    out.elements.push(`cluster-ips { ${sp.clusterIP} }`);
    if (cluster.length > 0) out.elements.push(`service-ips { ${key(sp.clusterIP)} : goto ${svcChain} }`);
    else out.elements.push(`no-endpoint-services { ${key(sp.clusterIP)} : ${noEndpoints} }`);
  }
  const externalOk = sp.externalPolicyLocal ? local.length > 0 : sp.hasEndpoints;
  for (const ip of [...sp.externalIPs, ...sp.loadBalancerIPs]) {
    if (external) out.elements.push(`service-ips { ${key(ip)} : goto ${extChain} }`);
    if (!externalOk) out.elements.push(`no-endpoint-services { ${key(ip)} : ${noEndpoints} }`);
  }
  if (usesFw)
    for (const ip of sp.loadBalancerIPs) out.elements.push(`firewall-ips { ${key(ip)} : goto ${fwChain} }`);
  if (sp.nodePort > 0) {
    if (external) out.elements.push(`service-nodeports { ${p} . ${sp.nodePort} : goto ${extChain} }`);
    if (!externalOk) out.elements.push(`no-endpoint-nodeports { ${p} . ${sp.nodePort} : ${noEndpoints} }`);
  }
  return out;
}

/** The static part: tables, hooks, dispatch chains and maps (kube-proxy's setupNFTables). */
function staticLines(opts: KubeProxyLayoutOptions): string[] {
  const t = `ip ${opts.table ?? TABLE}`;
  const frontend = 'ip daddr . meta l4proto . th dport';
  const nodePorts = 'fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport';
  const lines = [`add table ${t} { comment "rules for kube-proxy" ; }`];
  const hooks: Array<[string, string, string, number, string[]]> = [
    ['filter-prerouting', 'filter', 'prerouting', -110, ['ct state new jump firewall-check']],
    [
      'filter-input',
      'filter',
      'input',
      -110,
      ['ct state new jump nodeport-endpoints-check', 'ct state new jump service-endpoints-check'],
    ],
    [
      'filter-forward',
      'filter',
      'forward',
      -110,
      ['ct state new jump service-endpoints-check', 'ct state new jump cluster-ips-check'],
    ],
    [
      'filter-output',
      'filter',
      'output',
      -110,
      ['ct state new jump service-endpoints-check', 'ct state new jump firewall-check'],
    ],
    ['filter-output-post-dnat', 'filter', 'output', -90, ['ct state new jump cluster-ips-check']],
    ['nat-prerouting', 'nat', 'prerouting', -100, ['jump services']],
    ['nat-output', 'nat', 'output', -100, ['jump services']],
    ['nat-postrouting', 'nat', 'postrouting', 100, ['jump masquerading']],
  ];
  const regular: Array<[string, string[]]> = [
    ['mark-for-masquerade', [`mark set mark or ${MASQ}`]],
    [
      'masquerading',
      [`mark and ${MASQ} == 0 return`, `mark set mark xor ${MASQ}`, 'masquerade fully-random'],
    ],
    ['reject-chain', ['reject']],
    ['firewall-check', [`${frontend} vmap @firewall-ips`]],
    ['service-endpoints-check', [`${frontend} vmap @no-endpoint-services`]],
    ['nodeport-endpoints-check', [`${nodePorts} vmap @no-endpoint-nodeports`]],
    ['cluster-ips-check', ['ip daddr @cluster-ips reject', `ip daddr ${opts.serviceCIDR} drop`]],
    ['services', [`${frontend} vmap @service-ips`, `${nodePorts} vmap @service-nodeports`]],
  ];
  for (const [name, type, hook, prio] of hooks)
    lines.push(`add chain ${t} ${name} { type ${type} hook ${hook} priority ${prio} ; }`);
  for (const [name] of regular) lines.push(`add chain ${t} ${name}`);
  const fe = 'ipv4_addr . inet_proto . inet_service : verdict';
  lines.push(
    `add set ${t} cluster-ips { type ipv4_addr ; comment "Active ClusterIPs" ; }`,
    `add map ${t} service-ips { type ${fe} ; comment "ClusterIP, ExternalIP and LoadBalancer IP traffic" ; }`,
    `add map ${t} service-nodeports { type inet_proto . inet_service : verdict ; comment "NodePort traffic" ; }`,
    `add map ${t} firewall-ips { type ${fe} ; comment "destinations that are subject to LoadBalancerSourceRanges" ; }`,
    `add map ${t} no-endpoint-services { type ${fe} ; comment "vmap to drop or reject packets to services with no endpoints" ; }`,
    `add map ${t} no-endpoint-nodeports { type inet_proto . inet_service : verdict ; comment "vmap to drop or reject packets to service nodeports with no endpoints" ; }`,
  );
  for (const [name, , , , rules] of hooks) for (const r of rules) lines.push(`add rule ${t} ${name} ${r}`);
  for (const [name, rules] of regular) for (const r of rules) lines.push(`add rule ${t} ${name} ${r}`);
  return lines;
}

function serviceLines(t: string, o: ServiceObjects, verb: 'add' | 'none' = 'add'): string[] {
  const lines: string[] = [];
  for (const c of o.chains) lines.push(`add chain ${t} ${c.name}`, `flush chain ${t} ${c.name}`);
  for (const s of o.sets) lines.push(`add set ${t} ${s.name} ${s.body}`);
  for (const c of o.chains) for (const r of c.rules) lines.push(`add rule ${t} ${c.name} ${r}`);
  if (verb === 'add') for (const e of o.elements) lines.push(`add element ${t} ${e}`);
  return lines;
}

/** The full transaction kube-proxy sends for `state` into an empty table (one line per operation). */
export function kubeProxyFull(state: ProxyState, opts: KubeProxyLayoutOptions): string {
  const t = `ip ${opts.table ?? TABLE}`;
  const lines = staticLines(opts);
  for (const sp of state.ports)
    if (sp.family === 'ipv4') lines.push(...serviceLines(t, serviceObjects(sp, opts)));
  return `${lines.join('\n')}\n`;
}

/**
 * kube-proxy's partial sync for one changed service port: every chain of the service is
 * added and flushed and its rules written again, new affinity sets added; chains no longer
 * used are flushed (kube-proxy deletes them a second later, in another transaction), stale
 * affinity sets deleted; only elements that differ are deleted and added.
 */
export function kubeProxyChange(
  prev: ServicePort,
  next: ServicePort,
  opts: KubeProxyLayoutOptions,
): { text: string; operations: number } {
  const t = `ip ${opts.table ?? TABLE}`;
  const a = serviceObjects(prev, opts);
  const b = serviceObjects(next, opts);
  const lines = serviceLines(t, b, 'none');
  const nextChains = new Set(b.chains.map((c) => c.name));
  for (const c of a.chains) if (!nextChains.has(c.name)) lines.push(`flush chain ${t} ${c.name}`);
  const nextSets = new Set(b.sets.map((s) => s.name));
  for (const s of a.sets) if (!nextSets.has(s.name)) lines.push(`delete set ${t} ${s.name}`);
  const oldEls = new Set(a.elements);
  const newEls = new Set(b.elements);
  for (const e of a.elements)
    if (!newEls.has(e)) lines.push(`delete element ${t} ${e.replace(/ : [^}]*/, ' ')}`);
  for (const e of b.elements) if (!oldEls.has(e)) lines.push(`add element ${t} ${e}`);
  return { text: `${lines.join('\n')}\n`, operations: lines.length };
}

/** Counts of what kubeProxyFull emits, for the report. */
export function kubeProxySize(
  state: ProxyState,
  opts: KubeProxyLayoutOptions,
): { chains: number; rules: number } {
  let chains = 0;
  let rules = 0;
  for (const sp of state.ports) {
    const o = serviceObjects(sp, opts);
    chains += o.chains.length;
    for (const c of o.chains) rules += c.rules.length;
  }
  return { chains, rules };
}
