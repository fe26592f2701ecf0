import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { isIPv6 } from 'node:net';

import { LAB } from './addresses.js';
import { LabError, run, runSync, type ExecOptions, type ExecResult } from './exec.js';
import { PROBE_JS, SERVER_JS, type ProbeProgramOptions, type ProbeProgramResult } from './programs.js';
import { processAlive } from '../../src/util/process-alive.js';

export interface LabOptions {
  /** Namespace name prefix; default `knp-<pid>-<random>-`. Must start with `knp-<pid>-`. */
  prefix?: string;
  /** Give the LAN, the nodes and the clients IPv6 addresses too (pods choose their own). */
  ipv6?: boolean;
}

export interface PodOptions {
  ip: string;
  /** The pod's IPv6 address (the lab must have been created with `ipv6: true`). */
  ipv6?: string;
  /** On this node (default) or behind the remote node. */
  local?: boolean;
  /**
   * Behind a bridge of this name on this node (made with the first pod that names it) instead
   * of a routed veth of its own: the node sees its packets come in on the bridge, as with
   * kubenet's `cbr0` (--detect-local-mode BridgeInterface). IPv4 only; keep one pod per bridge,
   * so that no two pods answer each other past the node's conntrack.
   */
  bridge?: string;
}

/** A pod: its own namespace, a veth `eth0` to its node, routed as a /32 (/128). */
export interface LabPod {
  name: string;
  ns: string;
  ip: string;
  ipv6?: string;
  local: boolean;
  /** Kubernetes node name ({@link LAB.nodeName} or {@link LAB.remoteNodeName}). */
  nodeName: string;
  /**
   * The node-side interface the pod's packets come in on (in the node or remote node
   * namespace): its veth, or the bridge it is behind.
   */
  hostIf: string;
}

export interface LabClient {
  name: string;
  ns: string;
  ip: string;
  ipv6?: string;
}

export interface ServeOptions {
  tcp?: number[];
  udp?: number[];
  /** HTTP: answers any request with the pod's name; `x-lab-client` is the peer seen. */
  http?: number[];
}

export interface ProbeOptions {
  dst: string;
  port: number;
  /** `http` sends `GET /` over TCP and reads the name from the body. */
  proto: 'tcp' | 'udp' | 'http';
  /** Sequential attempts; default 30. */
  count?: number;
  /** Bind every attempt to this source port. */
  srcPort?: number;
  /** Bind every attempt to this source address. */
  srcAddr?: string;
  /** Per attempt; default 2000 ms. An attempt that gets nothing back in time is `timedOut`. */
  timeoutMs?: number;
}

/** Aggregate of a probe: counts, not durations. */
export interface ProbeResult {
  /** Server name → how many attempts it answered. */
  answers: Map<string, number>;
  /** The client addresses the servers saw. */
  clients: Set<string>;
  /** RST or ICMP error (ECONNREFUSED, EHOSTUNREACH, ENETUNREACH). */
  refused: number;
  /** Nothing came back within the per-attempt timeout. */
  timedOut: number;
  /** Anything else, one line per attempt. */
  errors: string[];
  /** errno code → count, for every attempt that failed with one. */
  codes: Map<string, number>;
  attempts: number;
}

/** A running server; stopped by {@link LabServer.stop} or by `lab.destroy()`. */
export interface LabServer {
  ns: string;
  pid: number | undefined;
  stop(): Promise<void>;
}

const PREFIX_RE = /^knp-(\d+)-/;
const NAME_RE = /^[a-z0-9][a-z0-9-]{0,40}$/;
const live = new Set<Lab>();
let handlersInstalled = false;

function installExitHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on('exit', () => {
    for (const lab of live) lab.destroySync();
  });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = (): void => {
      for (const lab of live) lab.destroySync();
      // Only when nobody else handles the signal do we end the process the default way.
      if (process.listenerCount(sig) === 1) {
        process.removeListener(sig, onSignal);
        process.kill(process.pid, sig);
      }
    };
    process.on(sig, onSignal);
  }
}

function withLen(ip: string, len: number): string {
  return ip.includes('/') ? ip : `${ip}/${len}`;
}

/**
 * A throwaway cluster in network namespaces: a node (where the proxy and its nftables rules
 * live), pods routed through it, an optional remote node with its own pods, and clients on
 * a LAN. Everything is named `<prefix><role>` and removed by {@link Lab.destroy} (also on
 * process exit and on SIGINT/SIGTERM). See addresses.ts for the addressing plan.
 */
export class Lab {
  readonly prefix: string;
  readonly ipv6: boolean;
  /** Namespace of the node the proxy runs on. */
  readonly nodeNs: string;
  /** Namespace holding the LAN bridge (no addresses, no rules). */
  readonly lanNs: string;
  readonly pods = new Map<string, LabPod>();
  readonly clients = new Map<string, LabClient>();
  private remoteNs: string | undefined;
  private readonly namespaces: string[] = [];
  private readonly servers = new Set<ChildProcessWithoutNullStreams>();
  private readonly probes = new Set<ChildProcessWithoutNullStreams>();
  private nextIf = 0;
  /** Bridges made on the node for pods (PodOptions.bridge). */
  private readonly bridges = new Set<string>();
  private destroyed = false;

  private constructor(prefix: string, ipv6: boolean) {
    this.prefix = prefix;
    this.ipv6 = ipv6;
    this.nodeNs = `${prefix}node`;
    this.lanNs = `${prefix}lan`;
  }

  /** Builds the node and the LAN; pods and clients are added afterwards. */
  static async create(opts: LabOptions = {}): Promise<Lab> {
    await Lab.sweep();
    const prefix = opts.prefix ?? `knp-${process.pid}-${randomBytes(3).toString('hex')}-`;
    if (!PREFIX_RE.test(prefix) || prefix.length > 40) {
      throw new Error(`lab prefix ${JSON.stringify(prefix)} must look like knp-<pid>-<tag>-`);
    }
    const lab = new Lab(prefix, opts.ipv6 ?? false);
    live.add(lab);
    installExitHandlers();
    try {
      await lab.setUp();
    } catch (err) {
      await lab.destroy();
      throw err;
    }
    return lab;
  }

  /**
   * Deletes `knp-<pid>-*` namespaces whose pid is dead (left by a run that was killed),
   * after killing whatever still runs inside them.
   */
  static async sweep(): Promise<string[]> {
    const list = await run(['ip', 'netns', 'list'], { allowFail: true });
    const swept: string[] = [];
    for (const line of list.stdout.split('\n')) {
      const name = line.split(' ')[0] ?? '';
      const m = PREFIX_RE.exec(name);
      if (!m || processAlive(Number(m[1]))) continue;
      const pids = await run(['ip', 'netns', 'pids', name], { allowFail: true });
      for (const p of pids.stdout.split(/\s+/).filter(Boolean)) {
        try {
          process.kill(Number(p), 'SIGKILL');
        } catch {
          // already gone
        }
      }
      await run(['ip', 'netns', 'del', name], { allowFail: true });
      swept.push(name);
    }
    return swept;
  }

  /** The remote node's namespace, if a `local: false` pod created it. */
  get remoteNodeNs(): string | undefined {
    return this.remoteNs;
  }

  /**
   * Resolves a role to its namespace: `node`, `remote`, a pod or client name, or a full
   * namespace name of this lab.
   */
  ns(name: string): string {
    if (name === 'node') return this.nodeNs;
    if (name === 'remote') {
      if (!this.remoteNs) throw new Error('the lab has no remote node (add a pod with local: false)');
      return this.remoteNs;
    }
    const pod = this.pods.get(name);
    if (pod) return pod.ns;
    const client = this.clients.get(name);
    if (client) return client.ns;
    if (this.namespaces.includes(name)) return name;
    throw new Error(`lab: no namespace for ${JSON.stringify(name)}`);
  }

  /** Runs `argv` inside a namespace (see {@link Lab.ns}); throws on non-zero unless allowFail. */
  exec(ns: string, argv: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
    this.assertLive();
    return run(['ip', 'netns', 'exec', this.ns(ns), ...argv], opts);
  }

  /** Loads an nft script (`nft -f -`) in the node namespace. */
  async nft(script: string, ns = 'node'): Promise<void> {
    await this.exec(ns, ['nft', '-f', '-'], { input: script });
  }

  /** `nft list ruleset` (or `nft list <what>`) in the node namespace. */
  async nftList(what = 'ruleset', ns = 'node'): Promise<string> {
    return (await this.exec(ns, ['nft', 'list', ...what.split(' ')])).stdout;
  }

  /** Adds an extra local address of the node (on its `lo`), e.g. a second node IP. */
  async addNodeAddress(ip: string): Promise<void> {
    await this.ip(this.nodeNs, ['addr', 'add', withLen(ip, isIPv6(ip) ? 128 : 32), 'dev', 'lo']);
  }

  /** Adds a pod on this node (`local`, default) or behind the remote node. */
  async addPod(name: string, opts: PodOptions): Promise<LabPod> {
    this.assertLive();
    this.checkName(name);
    if (opts.ipv6 && !this.ipv6) throw new Error(`pod ${name}: IPv6 needs Lab.create({ ipv6: true })`);
    const local = opts.local ?? true;
    const host = local ? this.nodeNs : await this.ensureRemoteNode();
    const hostPodIp = local ? LAB.nodePodIp : LAB.remoteNodePodIp;
    const hostPodIp6 = local ? LAB.nodePodIp6 : LAB.remoteNodePodIp6;
    if (opts.bridge && (!local || opts.ipv6))
      throw new Error(`pod ${name}: a bridge is for IPv4 pods on this node only`);
    const ns = await this.addNs(`pod-${name}`);
    const hostIf = `veth${this.nextIf++}`;
    const pod: LabPod = {
      name,
      ns,
      ip: opts.ip,
      local,
      nodeName: local ? LAB.nodeName : LAB.remoteNodeName,
      hostIf: opts.bridge ?? hostIf,
      ...(opts.ipv6 ? { ipv6: opts.ipv6 } : {}),
    };
    this.pods.set(name, pod);

    await run([
      'ip',
      'link',
      'add',
      'name',
      hostIf,
      'netns',
      host,
      'type',
      'veth',
      'peer',
      'name',
      'eth0',
      'netns',
      ns,
    ]);
    await this.sysctl(ns, { 'net.ipv6.conf.eth0.accept_dad': '0' });
    if (opts.bridge) {
      await this.bridgePod(opts.bridge, hostIf, opts.ip, ns);
      return pod;
    }
    await this.sysctl(host, {
      [`net.ipv4.conf.${hostIf}.proxy_arp`]: '1',
      [`net.ipv4.neigh.${hostIf}.proxy_delay`]: '0',
      [`net.ipv4.conf.${hostIf}.send_redirects`]: '0',
      [`net.ipv6.conf.${hostIf}.accept_dad`]: '0',
    });
    await this.batch(ns, [
      ['link', 'set', 'eth0', 'up'],
      ['addr', 'add', `${opts.ip}/32`, 'dev', 'eth0'],
      ['route', 'add', `${LAB.podGateway}/32`, 'dev', 'eth0', 'scope', 'link'],
      ['route', 'add', 'default', 'via', LAB.podGateway, 'dev', 'eth0'],
      ...(opts.ipv6
        ? [
            ['addr', 'add', `${opts.ipv6}/128`, 'dev', 'eth0', 'nodad'],
            ['route', 'add', 'default', 'via', LAB.podGateway6, 'dev', 'eth0'],
          ]
        : []),
    ]);
    await this.batch(host, [
      ['link', 'set', hostIf, 'up'],
      ['addr', 'add', `${hostPodIp}/32`, 'dev', hostIf],
      ['route', 'add', `${opts.ip}/32`, 'dev', hostIf],
      ...(this.ipv6
        ? [
            ['addr', 'add', `${LAB.podGateway6}/64`, 'dev', hostIf, 'nodad'],
            ['addr', 'add', `${hostPodIp6}/128`, 'dev', hostIf, 'nodad', 'noprefixroute'],
          ]
        : []),
      ...(opts.ipv6 ? [['route', 'add', `${opts.ipv6}/128`, 'dev', hostIf]] : []),
    ]);
    if (!local) {
      await this.ip(this.nodeNs, ['route', 'add', `${opts.ip}/32`, 'via', LAB.remoteNodeIp]);
      if (opts.ipv6) {
        await this.ip(this.nodeNs, ['route', 'add', `${opts.ipv6}/128`, 'via', LAB.remoteNodeIp6]);
      }
    }
    return pod;
  }

  /**
   * A pod's veth (`hostIf` on the node) enslaved to `bridge`, which holds the node's pod-facing
   * address and answers the pod's gateway by proxy ARP; the pod is routed as a /32 through it.
   */
  private async bridgePod(bridge: string, hostIf: string, ip: string, ns: string): Promise<void> {
    if (!this.bridges.has(bridge)) {
      this.bridges.add(bridge);
      await this.ip(this.nodeNs, ['link', 'add', bridge, 'type', 'bridge']);
      await this.sysctl(this.nodeNs, {
        [`net.ipv4.conf.${bridge}.proxy_arp`]: '1',
        [`net.ipv4.neigh.${bridge}.proxy_delay`]: '0',
        [`net.ipv4.conf.${bridge}.send_redirects`]: '0',
      });
      await this.batch(this.nodeNs, [
        ['link', 'set', bridge, 'up'],
        ['addr', 'add', `${LAB.nodePodIp}/32`, 'dev', bridge],
      ]);
    }
    await this.batch(ns, [
      ['link', 'set', 'eth0', 'up'],
      ['addr', 'add', `${ip}/32`, 'dev', 'eth0'],
      ['route', 'add', `${LAB.podGateway}/32`, 'dev', 'eth0', 'scope', 'link'],
      ['route', 'add', 'default', 'via', LAB.podGateway, 'dev', 'eth0'],
    ]);
    await this.batch(this.nodeNs, [
      ['link', 'set', hostIf, 'master', bridge],
      ['link', 'set', hostIf, 'up'],
      ['route', 'add', `${ip}/32`, 'dev', bridge],
    ]);
  }

  /** Adds a client outside the cluster, on the LAN; its default route is the node. */
  async addClient(name: string, ip: string = LAB.clientIp, opts: { ipv6?: string } = {}): Promise<LabClient> {
    this.assertLive();
    this.checkName(name);
    if (opts.ipv6 && !this.ipv6) throw new Error(`client ${name}: IPv6 needs Lab.create({ ipv6: true })`);
    const ns = await this.addNs(`cl-${name}`);
    const client: LabClient = { name, ns, ip, ...(opts.ipv6 ? { ipv6: opts.ipv6 } : {}) };
    this.clients.set(name, client);
    await this.plugIntoLan(ns, `c${this.nextIf++}`, withLen(ip, LAB.lanPrefixLen), opts.ipv6);
    await this.batch(ns, [
      ['route', 'add', 'default', 'via', LAB.nodeIp],
      ...(opts.ipv6 ? [['route', 'add', 'default', 'via', LAB.nodeIp6]] : []),
    ]);
    return client;
  }

  /**
   * Starts a server in a namespace (normally a pod's) that answers with the pod's name and
   * the client address it sees; resolves once every port listens.
   */
  async serve(name: string, opts: ServeOptions): Promise<LabServer> {
    const ns = this.ns(name);
    this.assertLive();
    const cfg = { name, tcp: opts.tcp ?? [], udp: opts.udp ?? [], http: opts.http ?? [] };
    const child = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', SERVER_JS, JSON.stringify(cfg)], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.servers.add(child);
    child.on('exit', () => this.servers.delete(child));
    await new Promise<void>((resolve, reject) => {
      let out = '';
      let err = '';
      const timer = setTimeout(() => fail(new Error(`server ${name}: not ready after 30 s ${err}`)), 30_000);
      const fail = (e: Error): void => {
        clearTimeout(timer);
        child.kill('SIGKILL');
        reject(e);
      };
      child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
      child.stdout.setEncoding('utf8').on('data', (d: string) => {
        out += d;
        if (out.includes('ready\n')) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.on('error', (e) => fail(e));
      child.on('exit', (code) => fail(new Error(`server ${name} exited (${String(code)}): ${err.trim()}`)));
    });
    return {
      ns,
      pid: child.pid,
      stop: async () => {
        if (child.exitCode !== null || child.signalCode !== null) return;
        const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
        child.kill('SIGKILL');
        await gone;
      },
    };
  }

  /**
   * Makes `count` sequential connections (or datagrams) from a namespace (`node`, a pod, a
   * client) in one child process and returns what came back.
   */
  async probe(from: string, opts: ProbeOptions): Promise<ProbeResult> {
    const ns = this.ns(from);
    this.assertLive();
    const p: ProbeProgramOptions = {
      dst: opts.dst,
      port: opts.port,
      proto: opts.proto,
      count: opts.count ?? 30,
      timeoutMs: opts.timeoutMs ?? 2000,
      ...(opts.srcPort !== undefined ? { srcPort: opts.srcPort } : {}),
      ...(opts.srcAddr !== undefined ? { srcAddr: opts.srcAddr } : {}),
    };
    const child = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', PROBE_JS, JSON.stringify(p)], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.probes.add(child);
    child.stdin.end();
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    // A generous bound on the whole run: a stuck probe must not hang a test.
    const limit = p.count * (p.timeoutMs + 2000) + 30_000;
    const timer = setTimeout(() => child.kill('SIGKILL'), limit);
    const code = await new Promise<number | null>((resolve, reject) => {
      child.on('error', reject);
      child.on('close', (c) => resolve(c));
    }).finally(() => {
      clearTimeout(timer);
      this.probes.delete(child);
    });
    const lastLine = out.trim().split('\n').pop() ?? '';
    if (code !== 0 || !lastLine.startsWith('{')) {
      throw new LabError(`probe from ${from} failed (${String(code)}): ${err.trim()}`, [from], code, err);
    }
    const r = JSON.parse(lastLine) as ProbeProgramResult;
    return {
      answers: new Map(Object.entries(r.answers)),
      clients: new Set(r.clients),
      refused: r.refused,
      timedOut: r.timedOut,
      errors: r.errors,
      codes: new Map(Object.entries(r.codes)),
      attempts: r.attempts,
    };
  }

  /** Stops every server and deletes every namespace this lab made. Idempotent. */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    const children = [...this.servers, ...this.probes];
    await Promise.all(
      children.map(
        (c) =>
          new Promise<void>((resolve) => {
            if (c.exitCode !== null || c.signalCode !== null) return resolve();
            c.once('exit', () => resolve());
            c.kill('SIGKILL');
          }),
      ),
    );
    for (const ns of [...this.namespaces].reverse()) {
      await run(['ip', 'netns', 'del', ns], { allowFail: true });
    }
    live.delete(this);
  }

  /** {@link Lab.destroy} for exit handlers: synchronous, best effort. */
  destroySync(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const c of [...this.servers, ...this.probes]) c.kill('SIGKILL');
    for (const ns of [...this.namespaces].reverse()) runSync(['ip', 'netns', 'del', ns]);
    live.delete(this);
  }

  /** Every namespace this lab made (for tests that check cleanup). */
  get namespaceNames(): readonly string[] {
    return [...this.namespaces];
  }

  private async setUp(): Promise<void> {
    await this.addNs('lan');
    await this.ip(this.lanNs, ['link', 'add', 'br0', 'type', 'bridge']);
    await this.ip(this.lanNs, ['link', 'set', 'br0', 'up']);
    // br_netfilter, when the host has it loaded, would send bridged frames through this
    // namespace's netfilter hooks: the LAN is a plain switch.
    await this.sysctl(
      this.lanNs,
      {
        'net.bridge.bridge-nf-call-iptables': '0',
        'net.bridge.bridge-nf-call-ip6tables': '0',
        'net.bridge.bridge-nf-call-arptables': '0',
      },
      true,
    );
    await this.addNs('node');
    await this.routerSysctls(this.nodeNs);
    await this.plugIntoLan(
      this.nodeNs,
      'node',
      `${LAB.nodeIp}/${LAB.lanPrefixLen}`,
      this.ipv6 ? LAB.nodeIp6 : undefined,
    );
    // Everything the node does not know goes to a LAN router that does not exist (a static
    // neighbour nobody answers to): unmatched traffic times out and never leaves the lab.
    // It also gives proxy ARP a route to the pods' gateway 169.254.1.1.
    await this.batch(this.nodeNs, [
      ['neigh', 'add', LAB.lanRouter, 'lladdr', LAB.lanRouterMac, 'dev', 'eth0', 'nud', 'permanent'],
      ['route', 'add', 'default', 'via', LAB.lanRouter, 'dev', 'eth0'],
      ...(this.ipv6
        ? [
            ['neigh', 'add', LAB.lanRouter6, 'lladdr', LAB.lanRouterMac, 'dev', 'eth0', 'nud', 'permanent'],
            ['route', 'add', 'default', 'via', LAB.lanRouter6, 'dev', 'eth0'],
          ]
        : []),
    ]);
  }

  private async ensureRemoteNode(): Promise<string> {
    if (this.remoteNs) return this.remoteNs;
    const ns = await this.addNs('remote');
    this.remoteNs = ns;
    await this.routerSysctls(ns);
    await this.plugIntoLan(
      ns,
      'remote',
      `${LAB.remoteNodeIp}/${LAB.lanPrefixLen}`,
      this.ipv6 ? LAB.remoteNodeIp6 : undefined,
    );
    // Replies of remote pods to local pods go back through the node, as in a real cluster.
    await this.batch(ns, [
      ['route', 'add', 'default', 'via', LAB.nodeIp],
      ...(this.ipv6 ? [['route', 'add', 'default', 'via', LAB.nodeIp6]] : []),
    ]);
    return ns;
  }

  /** A veth from `ns` (`eth0`) to the LAN bridge (`lanIf`), addressed and up. */
  private async plugIntoLan(ns: string, lanIf: string, cidr: string, ip6: string | undefined): Promise<void> {
    await run([
      'ip',
      'link',
      'add',
      'name',
      lanIf,
      'netns',
      this.lanNs,
      'type',
      'veth',
      'peer',
      'name',
      'eth0',
      'netns',
      ns,
    ]);
    await this.sysctl(ns, { 'net.ipv6.conf.eth0.accept_dad': '0' });
    await this.batch(this.lanNs, [
      ['link', 'set', lanIf, 'master', 'br0'],
      ['link', 'set', lanIf, 'up'],
    ]);
    await this.batch(ns, [
      ['addr', 'add', cidr, 'dev', 'eth0'],
      ...(ip6 ? [['addr', 'add', withLen(ip6, LAB.lanPrefixLen6), 'dev', 'eth0', 'nodad']] : []),
      ['link', 'set', 'eth0', 'up'],
    ]);
  }

  /** Forwarding on, no ICMP rate limits (a REJECT must not look like a DROP), no redirects. */
  private async routerSysctls(ns: string): Promise<void> {
    await this.sysctl(ns, {
      'net.ipv4.ip_forward': '1',
      'net.ipv6.conf.all.forwarding': '1',
      'net.ipv4.conf.all.send_redirects': '0',
      'net.ipv4.conf.default.send_redirects': '0',
      'net.ipv4.conf.all.rp_filter': '0',
      'net.ipv4.conf.default.rp_filter': '0',
    });
    // Make sure conntrack (and with it the nf_conntrack sysctls) is there for the proxy.
    await run(['ip', 'netns', 'exec', ns, 'nft', 'list', 'tables'], { allowFail: true });
  }

  /** Creates `<prefix><role>` with lo up, DAD and ICMP rate limits off. */
  private async addNs(role: string): Promise<string> {
    const ns = `${this.prefix}${role}`;
    await run(['ip', 'netns', 'add', ns]);
    this.namespaces.push(ns);
    await this.ip(ns, ['link', 'set', 'lo', 'up']);
    await this.sysctl(ns, {
      'net.ipv4.icmp_ratelimit': '0',
      'net.ipv4.icmp_ratemask': '0',
      'net.ipv6.icmp.ratelimit': '0',
      'net.ipv6.conf.default.accept_dad': '0',
      'net.ipv6.conf.all.accept_dad': '0',
    });
    return ns;
  }

  private async ip(ns: string, args: readonly string[]): Promise<void> {
    await run(['ip', '-n', ns, ...args]);
  }

  /** Several `ip` commands in one process (`ip -batch`). */
  private async batch(ns: string, cmds: readonly (readonly string[])[]): Promise<void> {
    if (cmds.length === 0) return;
    await run(['ip', '-n', ns, '-batch', '-'], { input: cmds.map((c) => c.join(' ')).join('\n') + '\n' });
  }

  private async sysctl(ns: string, values: Record<string, string>, allowFail = false): Promise<void> {
    const args = Object.entries(values).map(([k, v]) => `${k}=${v}`);
    await run(['ip', 'netns', 'exec', ns, 'sysctl', '-q', '-w', ...args], { allowFail });
  }

  private checkName(name: string): void {
    if (!NAME_RE.test(name))
      throw new Error(`lab: name ${JSON.stringify(name)} must match ${String(NAME_RE)}`);
    if (this.pods.has(name) || this.clients.has(name) || name === 'node' || name === 'remote') {
      throw new Error(`lab: name ${JSON.stringify(name)} is taken`);
    }
  }

  private assertLive(): void {
    if (this.destroyed) throw new Error('lab: already destroyed');
  }
}
