import assert from 'node:assert/strict';
import type { V1EndpointSlice, V1Node, V1Service, V1ServiceCIDR } from '@kubernetes/client-node';
import { LAB, Lab, type LabOptions, type ProbeResult } from '../../scripts/lab/index.js';
import { buildConfig } from '../../src/config.js';
import type { ProxyConfig } from '../../src/config-types.js';
import { buildState } from '../../src/model/build-state.js';
import { ipFamily } from '../../src/model/ip.js';
import { trace, type Packet, type Trace, type TraceConfig } from '../../src/model/trace.js';
import type { ProxyState } from '../../src/model/types.js';
import { compileConfig, modelConfig } from '../../src/pipeline.js';
import { requireKernel } from './capabilities.js';
import { runProxy, SourceDir } from './proxy.js';

/**
 * "Probe and compare with trace": a table of cases, each a packet from a lab namespace to a
 * Service frontend, run through the real kernel (the proxy binary with --once programs the
 * node) and through the model's pure trace(), built from the very objects and flags the proxy
 * got. Every case must come out the same three ways: as the table says (kube-proxy's
 * semantics, written by hand), as trace() says, and as the kernel does.
 */

export type KubeObject = V1Service | V1EndpointSlice | V1Node | V1ServiceCIDR;

/** What a case expects, in the terms a probe can observe. */
export type Outcome =
  /**
   * DNAT: exactly these pods answer (all of them, over enough connections), and they see the
   * client's own address (`client`) or the node's (`node`: masqueraded, or hairpin). With
   * `one`, session affinity: a single one of them answers every connection.
   */
  | { answer: readonly string[]; sees: 'client' | 'node'; one?: boolean }
  /** REJECT: refused at once (RST, ICMP unreachable). */
  | 'refused'
  /** DROP: nothing comes back. */
  | 'dropped'
  /** Not a frontend: the proxy leaves the packet alone and no endpoint answers. */
  | 'unproxied';

export interface Case {
  /** A lab namespace: `node`, a pod name or a client name. */
  from: string;
  dst: string;
  port: number;
  proto: 'tcp' | 'udp';
  /** Bind the client to this address (the route's preferred source otherwise). */
  srcAddr?: string;
  expect: Outcome;
  /** Why this case is in the table, when the outcome alone does not say. */
  note?: string;
}

/** Attempts for a DNAT case: ≥ 30, and enough that missing one of n endpoints is below 1e-6. */
export function attemptsFor(n: number): number {
  if (n <= 1) return 30;
  return Math.max(30, Math.ceil(Math.log(n * 1e6) / -Math.log(1 - 1 / n)));
}

const DROP_ATTEMPTS = 3;
const DROP_TIMEOUT_MS = 1500;
const REFUSED_ATTEMPTS = 5;

export function describeOutcome(o: Outcome): string {
  if (typeof o === 'string') return o;
  return `${o.one ? 'one of' : 'answered by'} ${o.answer.join(',') || '-'}, seeing the ${o.sees}`;
}

export function caseTitle(c: Case): string {
  const dst = c.dst.includes(':') ? `[${c.dst}]` : c.dst;
  return `${c.from}${c.srcAddr ? ` (${c.srcAddr})` : ''} → ${dst}:${c.port}/${c.proto}: ${describeOutcome(c.expect)}${c.note ? ` (${c.note})` : ''}`;
}

interface CaseRun {
  packet: Packet;
  traced: Trace;
  /** What trace() predicts the kernel shows. */
  predicted: Outcome;
  result: ProbeResult;
}

/**
 * The proxy under test in a lab: {@link TracedProxy.sync} writes the objects to a source
 * folder, runs `kube-nftproxy --once` in the node namespace with the given flags, and builds
 * the model from the same objects and flags.
 */
export class TracedProxy {
  state!: ProxyState;
  traceConfig!: TraceConfig;
  config!: ProxyConfig;
  /** The node's addresses (what the proxy sees as local addresses), read from its namespace. */
  localAddresses: string[] = [];

  private constructor(
    readonly lab: Lab,
    private readonly src: SourceDir,
  ) {}

  static async create(lab: Lab): Promise<TracedProxy> {
    return new TracedProxy(lab, await SourceDir.create());
  }

  /** Programs the node with exactly these objects and flags (--source and --once are added). */
  async sync(objects: KubeObject[], flags: string[]): Promise<void> {
    await this.src.write({ 'objects.yaml': objects });
    const args = ['--source', this.src.path, ...flags];
    const r = await runProxy(this.lab.nodeNs, [...args, '--once']);
    assert.equal(r.code, 0, `kube-nftproxy --once failed:\n${r.stderr}`);
    this.config = buildConfig(args, {});
    this.localAddresses = await this.nodeAddresses();
    const env = { localAddresses: this.localAddresses };
    const node = objects.find(
      (o): o is V1Node => o.kind === 'Node' && o.metadata?.name === this.config.hostnameOverride,
    );
    this.state = buildState(
      {
        services: objects.filter((o): o is V1Service => o.kind === 'Service'),
        slices: objects.filter((o): o is V1EndpointSlice => o.kind === 'EndpointSlice'),
        serviceCIDRs: objects.filter((o): o is V1ServiceCIDR => o.kind === 'ServiceCIDR'),
        ...(node ? { node } : {}),
      },
      modelConfig(this.config, env),
    );
    // The daemon's own configs (its /debug/trace uses compileConfig too).
    this.traceConfig = compileConfig(this.state, this.config, env);
  }

  async remove(): Promise<void> {
    await this.src.remove();
  }

  /** Every address of the node namespace but loopback and link-local ones, as kube-proxy lists them. */
  private async nodeAddresses(): Promise<string[]> {
    const out = await this.lab.exec('node', ['ip', '-j', 'addr', 'show']);
    const links = JSON.parse(out.stdout) as Array<{ addr_info?: Array<{ local?: string }> }>;
    return links
      .flatMap((l) => (l.addr_info ?? []).map((a) => a.local ?? ''))
      .filter((ip) => ipFamily(ip) && !ip.startsWith('127.') && ip !== '::1' && !/^fe[89ab]/i.test(ip))
      .sort();
  }

  /** The source address the kernel picks for this case (the route's preferred source). */
  private async sourceOf(c: Case): Promise<string> {
    if (c.srcAddr) return c.srcAddr;
    const v6 = ipFamily(c.dst) === 'ipv6';
    const own = this.lab.pods.get(c.from) ?? this.lab.clients.get(c.from);
    if (own) return (v6 ? own.ipv6 : own.ip) ?? `<${c.from} has no ${v6 ? 'IPv6' : 'IPv4'} address>`;
    const out = await this.lab.exec(c.from, ['ip', '-j', 'route', 'get', c.dst]);
    const route = (JSON.parse(out.stdout) as Array<{ prefsrc?: string }>)[0];
    if (!route?.prefsrc) throw new Error(`no source address from ${c.from} to ${c.dst}: ${out.stdout}`);
    return route.prefsrc;
  }

  /**
   * The node's interface a namespace's packets come in on: a local pod's own veth (named by the
   * lab), else the node's LAN link `eth0` (clients, and pods behind the remote node).
   */
  private inputInterface(from: string): string {
    const pod = this.lab.pods.get(from);
    return pod?.local ? pod.hostIf : 'eth0';
  }

  private podName(ip: string): string {
    for (const pod of this.lab.pods.values()) if (pod.ip === ip || pod.ipv6 === ip) return pod.name;
    return `<not a lab pod: ${ip}>`;
  }

  /** trace()'s verdict as a kernel outcome. */
  predict(t: Trace): Outcome {
    if (t.verdict === 'no-match') return 'unproxied';
    if (t.verdict !== 'dnat') return t.verdict === 'reject' ? 'refused' : 'dropped';
    const sp = this.state.ports.find((p) => p.key === t.port);
    return {
      answer: t.endpoints.map((e) => this.podName(e.ip)).sort(),
      sees: t.masquerade || t.endpoints.every((e) => t.hairpin.includes(e.ip)) ? 'node' : 'client',
      ...(sp && sp.affinitySeconds > 0 ? { one: true } : {}),
    };
  }

  /** The address an endpoint sees when the node masquerades towards it. */
  private nodeAddressTowards(podName: string, family: 'ipv4' | 'ipv6'): string {
    const local = this.lab.pods.get(podName)?.local ?? true;
    if (family === 'ipv6') return local ? LAB.nodePodIp6 : LAB.nodeIp6;
    return local ? LAB.nodePodIp : LAB.nodeIp;
  }

  /** Traces and probes one case (DROP-like cases with few, short attempts). */
  async runCase(c: Case): Promise<CaseRun> {
    const src = await this.sourceOf(c);
    const packet: Packet = {
      src,
      dst: c.dst,
      port: c.port,
      proto: c.proto,
      ...(c.from === 'node' ? { from: 'node' as const } : { iif: this.inputInterface(c.from) }),
    };
    const traced = trace(this.state, this.traceConfig, packet);
    const predicted = this.predict(traced);
    const quiet = [c.expect, predicted].some((o) => o === 'dropped' || o === 'unproxied');
    const n = typeof predicted === 'object' ? predicted.answer.length : 1;
    const probe = (count: number, timeoutMs?: number): Promise<ProbeResult> =>
      this.lab.probe(c.from, {
        dst: c.dst,
        port: c.port,
        proto: c.proto,
        count,
        ...(timeoutMs ? { timeoutMs } : {}),
        ...(c.srcAddr ? { srcAddr: c.srcAddr } : {}),
      });
    const count = typeof predicted === 'object' ? attemptsFor(n) : REFUSED_ATTEMPTS;
    const result = quiet ? await probe(DROP_ATTEMPTS, DROP_TIMEOUT_MS) : await probe(count);
    return { packet, traced, predicted, result };
  }

  /**
   * Runs a table: cases that answer or are refused one after the other, the ones expected to
   * time out all at once (each costs its timeout, not CPU).
   */
  async runTable(cases: Case[]): Promise<Map<Case, CaseRun>> {
    const runs = new Map<Case, CaseRun>();
    const slow = cases.filter((c) => c.expect === 'dropped' || c.expect === 'unproxied');
    const slowRuns = Promise.all(slow.map(async (c) => runs.set(c, await this.runCase(c))));
    for (const c of cases) if (!slow.includes(c)) runs.set(c, await this.runCase(c));
    await slowRuns;
    return runs;
  }

  /** Holds the kernel to trace() and both to the table's expectation. */
  check(c: Case, run: CaseRun): void {
    const { traced, predicted, result, packet } = run;
    const why = [
      `packet ${JSON.stringify(packet)}`,
      `trace: ${traced.verdict} (${traced.why})${traced.verdict === 'dnat' ? ` → ${traced.endpoints.map((e) => e.ip).join(',')} masquerade=${String(traced.masquerade)}` : ''}`,
      `kernel: answers ${JSON.stringify(Object.fromEntries(result.answers))} clients ${JSON.stringify([...result.clients])} refused ${result.refused} timedOut ${result.timedOut} errors ${JSON.stringify(result.errors)} of ${result.attempts}`,
    ].join('\n  ');
    const hairpin = traced.verdict === 'dnat' ? traced.hairpin.map((ip) => this.podName(ip)) : [];
    assert.deepEqual(
      this.observe(result, predicted, packet.src, hairpin),
      predicted,
      `the kernel disagrees with trace()\n  ${why}`,
    );
    assert.deepEqual(
      predicted,
      normalise(c.expect),
      `the kernel and trace() disagree with the table\n  ${why}`,
    );
  }

  /** The kernel's result, in the terms of the predicted outcome (so a match compares equal). */
  private observe(r: ProbeResult, predicted: Outcome, src: string, hairpin: string[]): Outcome | string {
    const pods = [...r.answers.keys()].filter((n) => this.lab.pods.has(n)).sort();
    if (typeof predicted === 'object') {
      const answered = [...r.answers.values()].reduce((a, b) => a + b, 0);
      if (answered !== r.attempts) return `only ${answered} of ${r.attempts} answered`;
      const family = ipFamily(src) ?? 'ipv4';
      const expectedClients = new Set(
        pods.map((p) =>
          predicted.sees === 'node' || hairpin.includes(p) ? this.nodeAddressTowards(p, family) : src,
        ),
      );
      const clientsOk =
        expectedClients.size === r.clients.size && [...r.clients].every((a) => expectedClients.has(a));
      const sees = clientsOk
        ? predicted.sees
        : `${[...r.clients].join(',')} (expected ${[...expectedClients].join(',')})`;
      if (predicted.one) {
        if (pods.length !== 1 || !predicted.answer.includes(pods[0]!))
          return `affinity broken: ${JSON.stringify(Object.fromEntries(r.answers))}`;
        return { answer: predicted.answer, sees: sees as 'node', one: true };
      }
      return { answer: pods, sees: sees as 'node' };
    }
    if (predicted === 'unproxied') return pods.length === 0 ? 'unproxied' : `answered by ${pods.join(',')}`;
    if (r.refused === r.attempts) return 'refused';
    if (r.timedOut === r.attempts) return 'dropped';
    return `mixed: ${r.refused} refused, ${r.timedOut} timed out, ${pods.join(',')} answered`;
  }
}

function normalise(o: Outcome): Outcome {
  return typeof o === 'object' ? { ...o, answer: [...o.answer].sort() } : o;
}

/**
 * One `describe` per table: `setUp` (usually a sync) and every probe run in its `before`,
 * then one `it` per case that checks the kernel against trace() and the table.
 */
export function caseTable(
  title: string,
  proxy: () => TracedProxy,
  cases: Case[],
  setUp?: () => Promise<void>,
): void {
  describe(title, function () {
    let runs: Map<Case, CaseRun> | undefined;
    before(async function () {
      if (setUp) await setUp();
      runs = await proxy().runTable(cases);
    });
    for (const c of cases)
      it(caseTitle(c), function () {
        proxy().check(c, runs!.get(c)!);
      });
  });
}

/** The proxy flags of a traced kernel file: this lab's node, pod and service ranges (IPv4, or both families). */
export function labFlags(opts: { dualStack?: boolean } = {}): string[] {
  const both = (v4: string, v6: string): string => (opts.dualStack ? `${v4},${v6}` : v4);
  return [
    '--hostname-override',
    LAB.nodeName,
    '--node-ip',
    both(LAB.nodeIp, LAB.nodeIp6),
    '--cluster-cidr',
    both(LAB.clusterCidr, LAB.clusterCidr6),
    '--service-cidr',
    both(LAB.serviceCidr, LAB.serviceCidr6),
  ];
}

/** Endpoint pods serving TCP 8080 and UDP 5353 (answering with their name), on this node or the remote one. */
export async function addServingPods(
  lab: Lab,
  pods: ReadonlyArray<readonly [string, string, boolean]>,
): Promise<void> {
  for (const [name, ip, local] of pods) {
    await lab.addPod(name, { ip, local });
    await lab.serve(name, { tcp: [8080], udp: [5353] });
  }
}

/**
 * The hooks every traced kernel test file needs. Before: a fresh lab (`options` as Lab.create's)
 * with a traced proxy, then the file's own pods and clients (`setup`). After: both removed,
 * also when a hook failed. Returns the proxy, for caseTable and the tests; its `lab` is the lab.
 */
export function tracedLab(setup: (lab: Lab) => Promise<void>, options?: LabOptions): () => TracedProxy {
  let lab: Lab | undefined;
  let proxy: TracedProxy | undefined;
  before(async function () {
    requireKernel(this);
    lab = await Lab.create(options);
    proxy = await TracedProxy.create(lab);
    await setup(lab);
  });
  after(async () => {
    await lab?.destroy();
    await proxy?.remove();
  });
  return () => proxy!;
}
