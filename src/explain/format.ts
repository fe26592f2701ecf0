import type {
  AnswerCounter,
  AnswerEndpoint,
  AnswerListener,
  AnswerPort,
  AnswerSkipped,
  ServicesAnswer,
} from './services-answer.js';

/**
 * `kube-nftproxy explain`'s text: one Service's ports as the daemon programs them (frontends,
 * the endpoints it chose for cluster-wide and for local traffic, flags, counters) and what it
 * skipped of the Service, with the reason. Pure: the /debug/services answer in, lines out.
 *
 * The words are /debug/services' own (clusterIP, externalIP, loadBalancerIP, nodePort), so
 * what a person reads here is what they find in the JSON.
 */
export function explainLines(service: string, answer: ServicesAnswer): string[] {
  const ports = answer.ports.filter((p) => p.service === service);
  const skipped = answer.skipped.filter((s) => s.name === service);
  const node = answer.node ? ` on node ${answer.node.name}` : '';
  const out: string[] = [`Service ${service}${node}`];
  if (answer.truncated !== undefined)
    out.push('  (the daemon cut its answer short: some entries are missing below)');
  if (ports.length === 0) out.push('', 'No port of it is programmed on this node.');
  for (const p of ports) out.push('', ...portLines(p, answer.countersSince));
  out.push('', ...skippedLines(skipped));
  return out;
}

/** `ip:port`, bracketing IPv6 as endpoints and counters are printed. */
function hostPort(ip: string, port: number | undefined): string {
  const host = ip.includes(':') ? `[${ip}]` : ip;
  return port === undefined ? host : `${host}:${port}`;
}

/**
 * The port number and ClusterIP of a port. /debug/services carries the number only inside its
 * clusterIP field (`10.96.0.10:80`, `fd00::10:80` unbracketed); a port that lost its ClusterIP
 * to another Service has none, and its counters' frontends then tell the number if any.
 */
function numberAndClusterIP(p: AnswerPort): { number?: number; clusterIP?: string } {
  const c = p.frontends.clusterIP;
  const m = c === null ? null : /^(.*):([0-9]{1,5})$/.exec(c);
  if (m) return { number: p.portNumber ?? Number(m[2]), clusterIP: m[1]! };
  if (p.portNumber !== undefined) return { number: p.portNumber };
  for (const counter of p.counters ?? []) {
    const ip = counter.frontend.replace(/:[0-9]+$/, '').replace(/^\[(.*)\]$/, '$1');
    if (p.frontends.externalIPs.includes(ip) || p.frontends.loadBalancerIPs.includes(ip))
      return { number: Number(/:([0-9]+)$/.exec(counter.frontend)![1]) };
  }
  return {};
}

function portLines(p: AnswerPort, countersSince: string | undefined): string[] {
  const { number, clusterIP } = numberAndClusterIP(p);
  const name = p.port === '' ? '(unnamed)' : p.port;
  const family = p.family === 'ipv6' ? 'IPv6' : 'IPv4';
  const out = [`Port ${name} ${number ?? '?'}/${p.protocol} (${family})`];

  out.push('  Frontends:');
  const frontends: Array<[string, string]> = [];
  if (clusterIP !== undefined) frontends.push(['clusterIP', hostPort(clusterIP, number)]);
  for (const ip of p.frontends.externalIPs) frontends.push(['externalIP', hostPort(ip, number)]);
  for (const ip of p.frontends.loadBalancerIPs) frontends.push(['loadBalancerIP', hostPort(ip, number)]);
  const nodePortAddresses = p.frontends.nodePortAddresses ?? [];
  if (p.frontends.nodePort !== null && nodePortAddresses.length > 0)
    for (const ip of nodePortAddresses) frontends.push(['nodePort', hostPort(ip, p.frontends.nodePort)]);
  else if (p.frontends.nodePort !== null)
    frontends.push(['nodePort', `${p.frontends.nodePort} on this node's NodePort addresses`]);
  if (frontends.length === 0) out.push('    none (every one is owned by another Service: see Skipped)');
  out.push(...table(frontends).map((l) => `    ${l}`));

  out.push(`  Flags: ${flagsText(p)}`);

  out.push(`  Cluster traffic: ${countText(p.clusterEndpoints.length)}`);
  out.push(...endpointLines(p.clusterEndpoints));
  const local = localPolicies(p);
  if (local === '') {
    out.push('  Local traffic: not used (both traffic policies are Cluster)');
  } else {
    out.push(`  Local traffic (${local}): ${countText(p.localEndpoints.length)}`);
    out.push(...endpointLines(p.localEndpoints));
  }
  const chosen = new Set([...p.clusterEndpoints, ...p.localEndpoints].map((e) => e.address));
  const left = p.allEndpoints.filter((e) => !chosen.has(e.address));
  if (left.length > 0) {
    out.push(`  Not chosen: ${countText(left.length)}`);
    out.push(...endpointLines(left));
  }

  if (p.listeners !== undefined) out.push(...listenerLines(p.listeners));
  if (p.counters !== undefined) out.push(...counterLines(p.counters, countersSince));
  return out;
}

function countText(n: number): string {
  return n === 0 ? 'no endpoint' : n === 1 ? '1 endpoint' : `${n} endpoints`;
}

/** Which Local traffic policies the port has: '' when none. */
function localPolicies(p: AnswerPort): string {
  const policies: string[] = [];
  if (p.flags.internalTrafficPolicyLocal) policies.push('internalTrafficPolicy Local');
  if (p.flags.externalTrafficPolicyLocal) policies.push('externalTrafficPolicy Local');
  return policies.join(', ');
}

function flagsText(p: AnswerPort): string {
  const f = p.flags;
  return [
    `internalTrafficPolicy ${f.internalTrafficPolicyLocal ? 'Local' : 'Cluster'}`,
    `externalTrafficPolicy ${f.externalTrafficPolicyLocal ? 'Local' : 'Cluster'}`,
    f.affinitySeconds > 0 ? `sessionAffinity ClientIP ${f.affinitySeconds}s` : 'sessionAffinity None',
    `loadBalancerSourceRanges ${f.sourceRanges.length > 0 ? f.sourceRanges.join(' ') : 'any'}`,
    `lbAlgorithm ${f.lbAlgorithm}`,
  ].join(', ');
}

/** An endpoint's conditions in words, as kube-proxy chooses by them. */
function conditionText(e: AnswerEndpoint): string {
  const words: string[] = [];
  if (e.ready) words.push('ready');
  else if (e.serving) words.push('serving');
  else words.push('not ready');
  if (e.terminating) words.push('terminating');
  if (e.local) words.push('on this node');
  return words.join(', ');
}

function endpointLines(eps: readonly AnswerEndpoint[]): string[] {
  return table(eps.map((e) => [e.address, conditionText(e)])).map((l) => `    ${l}`);
}

function listenerLines(listeners: readonly AnswerListener[]): string[] {
  if (listeners.length === 0) return ['  Userspace listeners: none'];
  const rows = listeners.map((l): string[] => [
    l.frontend,
    `${hostPort(l.address, l.port)}/${l.protocol}`,
    `active ${l.active}`,
    `refused ${l.refused}`,
  ]);
  return ['  Userspace listeners:', ...table(rows).map((l) => `    ${l}`)];
}

function counterLines(counters: readonly AnswerCounter[], since: string | undefined): string[] {
  const head = `  New connections${since ? ` since ${since}` : ''} (kernel counters):`;
  if (counters.length === 0) return [head, '    none counted yet'];
  const rows = [
    ['frontend', 'connections', 'no endpoints', 'source-range drops'],
    ...counters.map((c) => [
      c.frontend,
      String(c.connections),
      String(c.noEndpoints),
      String(c.sourceRangeDrops),
    ]),
  ];
  return [head, ...table(rows, true).map((l) => `    ${l}`)];
}

function skippedLines(skipped: readonly AnswerSkipped[]): string[] {
  if (skipped.length === 0) return ['Skipped: nothing'];
  return [
    'Skipped:',
    ...skipped.map((s) => {
      const tag = s.contested ? ' [frontend owned elsewhere]' : s.ignored ? ' [ignored by design]' : '';
      return `  ${s.kind} ${s.name}${tag}: ${s.reason}`;
    }),
  ];
}

/**
 * Rows as columns two spaces apart; `numbers` right-aligns every column after the first. The
 * last column is not padded, so no line ends in spaces.
 */
function table(rows: ReadonlyArray<readonly string[]>, numbers = false): string[] {
  const widths: number[] = [];
  for (const r of rows) r.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows.map((r) =>
    r
      .map((cell, i) => {
        if (numbers && i > 0) return cell.padStart(widths[i]!);
        return i === r.length - 1 ? cell : cell.padEnd(widths[i]!);
      })
      .join('  '),
  );
}
