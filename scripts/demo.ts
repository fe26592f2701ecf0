/**
 * `npm run demo`: a throwaway cluster in network namespaces (scripts/lab), the Kubernetes
 * objects in examples/demo, kube-nftproxy run once on the lab's node, then real requests to
 * the ClusterIP and the rules that carried them. Removes everything it made, also on Ctrl-C
 * and on failure.
 *
 * Without root or nft (or with `npm run demo -- --userspace`) it runs the userspace proxy on
 * loopback instead: three HTTP/UDP servers on 127.0.0.1 stand for the pods, the daemon runs
 * from a temporary --source folder, and the requests go through the listener it reports in
 * /debug/services.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments, stringify } from 'yaml';

import { LAB, Lab, type ProbeResult } from './lab/index.js';
import { freePort } from './lab/free-port.js';

/** What the demo reads from examples/demo. */
interface DemoPlan {
  nodeName: string;
  nodeIp: string;
  service: string;
  clusterIp: string;
  /** Service ports, with the endpoint port each resolves to. */
  ports: { name: string; proto: 'TCP' | 'UDP'; port: number; targetPort: number }[];
  pods: { name: string; ip: string }[];
}

const CLIENT_POD = { name: 'curl', ip: '10.244.1.20' };
const OUTSIDE_CLIENT = 'laptop';
const REQUESTS = 30;

/** The repository root: the first folder up from here with a package.json (src or dist). */
function repoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, 'package.json'))) {
    const up = path.dirname(dir);
    if (up === dir) throw new Error('cannot find the repository root (package.json)');
    dir = up;
  }
  return dir;
}

/** Each missing prerequisite of the nftables demo, with what to do about it. */
function missingPrerequisites(): { what: string; fix: string }[] {
  const missing: { what: string; fix: string }[] = [];
  if (process.getuid?.() !== 0) missing.push({ what: 'root', fix: 'sudo npm run demo' });
  const has = (cmd: string, arg: string): boolean => spawnSync(cmd, [arg], { stdio: 'ignore' }).status === 0;
  if (!has('nft', '--version')) missing.push({ what: 'nft', fix: 'apt-get install nftables' });
  if (!has('ip', '-V')) missing.push({ what: 'ip', fix: 'apt-get install iproute2' });
  return missing;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- plain YAML objects
type Obj = any;

/** Every object in the YAML/JSON files of `dir` (Lists unpacked). */
function loadObjects(dir: string): Obj[] {
  const docs: Obj[] = [];
  for (const file of readdirSync(dir).sort()) {
    if (!/\.(ya?ml|json)$/.test(file)) continue;
    for (const doc of parseAllDocuments(readFileSync(path.join(dir, file), 'utf8'))) {
      const o: Obj = doc.toJS();
      if (o) docs.push(...(o.kind === 'List' ? o.items : [o]));
    }
  }
  return docs;
}

function loadPlan(dir: string): DemoPlan {
  const docs = loadObjects(dir);
  const node = docs.find((o) => o.kind === 'Node');
  const svc = docs.find((o) => o.kind === 'Service');
  if (!node || !svc) throw new Error(`${dir} needs a Node and a Service`);
  const key = `${String(svc.metadata.namespace)}/${String(svc.metadata.name)}`;
  const slices = docs.filter(
    (o) =>
      o.kind === 'EndpointSlice' &&
      o.metadata?.namespace === svc.metadata.namespace &&
      o.metadata?.labels?.['kubernetes.io/service-name'] === svc.metadata.name,
  );
  const slicePorts: Obj[] = slices.flatMap((s) => s.ports ?? []);
  const ports = (svc.spec.ports as Obj[]).map((p) => {
    const sp = slicePorts.find((x) => (x.name ?? '') === (p.name ?? ''));
    if (!sp) throw new Error(`${key}: no EndpointSlice port named ${String(p.name)}`);
    return {
      name: String(p.name),
      proto: p.protocol ?? 'TCP',
      port: Number(p.port),
      targetPort: Number(sp.port),
    };
  });
  const pods = slices.flatMap((s) =>
    (s.endpoints as Obj[]).map((e) => ({ name: String(e.targetRef.name), ip: String(e.addresses[0]) })),
  );
  const nodeIp = (node.status.addresses as Obj[]).find((a) => a.type === 'InternalIP')?.address;
  if (nodeIp !== LAB.nodeIp)
    throw new Error(`the demo Node's InternalIP must be the lab node's ${LAB.nodeIp}`);
  return { nodeName: node.metadata.name, nodeIp, service: key, clusterIp: svc.spec.clusterIP, ports, pods };
}

function table(plan: DemoPlan, rows: { from: string; what: string; r: ProbeResult }[]): string {
  const names = plan.pods.map((p) => p.name);
  const head = ['from', 'to', ...names, 'failed', 'server saw'];
  const body = rows.map(({ from, what, r }) => {
    const seen = [...r.clients].map((c) => (c === LAB.nodePodIp ? `${c} (node: masqueraded)` : c)).join(', ');
    return [
      from,
      what,
      ...names.map((n) => String(r.answers.get(n) ?? 0)),
      String(r.refused + r.timedOut + r.errors.length),
      seen || '-',
    ];
  });
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => (b[i] ?? '').length)));
  const line = (cells: string[]): string =>
    '  ' +
    cells
      .map((c, i) => {
        const w = widths[i] ?? 0;
        return i >= 2 && i < cells.length - 1 ? c.padStart(w) : c.padEnd(w);
      })
      .join('  ')
      .trimEnd();
  return [line(head), ...body.map(line)].join('\n');
}

async function runNftablesDemo(root: string, plan: DemoPlan): Promise<void> {
  const cli = path.join(root, 'dist/src/cli.js');
  if (!existsSync(cli)) throw new Error(`${cli} is missing: build it with npm run build (npm run demo does)`);
  console.log('kube-nftproxy demo: a Service, three pods and real packets, all in throwaway namespaces.\n');
  const examples = path.join(root, 'examples/demo');
  const http = plan.ports.find((p) => p.proto === 'TCP');
  const udp = plan.ports.find((p) => p.proto === 'UDP');

  process.stdout.write('Building the lab (network namespaces)... ');
  const lab = await Lab.create();
  try {
    for (const pod of plan.pods) {
      await lab.addPod(pod.name, { ip: pod.ip });
      await lab.serve(pod.name, {
        http: http ? [http.targetPort] : [],
        udp: udp ? [udp.targetPort] : [],
      });
    }
    await lab.addPod(CLIENT_POD.name, CLIENT_POD);
    const client = await lab.addClient(OUTSIDE_CLIENT);
    console.log('done.');
    console.log(
      `  node ${plan.nodeName} ${plan.nodeIp}   pods ${plan.pods.map((p) => `${p.name} ${p.ip}`).join(', ')}`,
    );
    console.log(
      `  client pod ${CLIENT_POD.name} ${CLIENT_POD.ip}   outside client ${client.name} ${client.ip}`,
    );

    const argv = [
      process.execPath,
      cli,
      '--source',
      examples,
      '--hostname-override',
      plan.nodeName,
      '--cluster-cidr',
      LAB.clusterCidr,
      '--service-cidr',
      LAB.serviceCidr,
      '--once',
    ];
    console.log(`\nRunning kube-nftproxy once on the node:\n  kube-nftproxy ${argv.slice(2).join(' ')}`);
    const proxy = await lab.exec('node', argv, { allowFail: true });
    if (proxy.code !== 0) {
      throw new Error(`kube-nftproxy --once failed (exit ${String(proxy.code)}):\n${proxy.stderr.trim()}`);
    }

    const rows: { from: string; what: string; r: ProbeResult }[] = [];
    const probe = async (
      from: string,
      label: string,
      port: { proto: string; port: number },
    ): Promise<void> => {
      const proto = port.proto === 'UDP' ? 'udp' : 'http';
      const r = await lab.probe(from, { dst: plan.clusterIp, port: port.port, proto, count: REQUESTS });
      rows.push({ from: label, what: `${proto} :${port.port}`, r });
    };
    if (http) {
      await probe(CLIENT_POD.name, `pod ${CLIENT_POD.name}`, http);
      await probe(OUTSIDE_CLIENT, `client ${OUTSIDE_CLIENT}`, http);
    }
    if (udp) await probe(CLIENT_POD.name, `pod ${CLIENT_POD.name}`, udp);

    console.log(`\n${REQUESTS} requests each to Service ${plan.service} at ClusterIP ${plan.clusterIp}:`);
    console.log(table(plan, rows));

    const rules = await lab.nftList('table ip kube-nftproxy');
    console.log(
      '\nThe rules kube-nftproxy generated (nft list table ip kube-nftproxy, in the node namespace):',
    );
    console.log(
      rules
        .trimEnd()
        .split('\n')
        .map((l) => `  ${l}`)
        .join('\n'),
    );
  } finally {
    await lab.destroy();
    console.log('\nRemoved the lab: every namespace, rule and process the demo made is gone.');
  }
}

/** One stand-in pod of the userspace demo: HTTP and UDP on 127.0.0.1 (port 0), answering its name. */
interface LoopbackPod {
  name: string;
  httpPort: number;
  udpPort: number;
  close(): Promise<void>;
}

async function startLoopbackPod(name: string, seen: Set<string>): Promise<LoopbackPod> {
  const server = http.createServer((req, res) => {
    seen.add(req.socket.remoteAddress ?? '?');
    res.writeHead(200, { 'content-type': 'text/plain', connection: 'close' });
    res.end(name);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const udp = dgram.createSocket('udp4');
  udp.on('message', (_msg, rinfo) => {
    seen.add(rinfo.address);
    udp.send(name, rinfo.port, rinfo.address);
  });
  await new Promise<void>((resolve, reject) => {
    udp.once('error', reject);
    udp.bind(0, '127.0.0.1', resolve);
  });
  return {
    name,
    httpPort: (server.address() as net.AddressInfo).port,
    udpPort: udp.address().port,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await new Promise<void>((resolve) => udp.close(() => resolve()));
    },
  };
}

function emptyProbe(attempts: number): ProbeResult {
  return {
    answers: new Map(),
    clients: new Set(),
    refused: 0,
    timedOut: 0,
    errors: [],
    codes: new Map(),
    attempts,
  };
}

function countFailure(r: ProbeResult, err: unknown): void {
  const code = (err as NodeJS.ErrnoException).code;
  if (code) r.codes.set(code, (r.codes.get(code) ?? 0) + 1);
  if (code === 'ECONNREFUSED' || code === 'ECONNRESET') r.refused++;
  else if (code === 'ETIMEDOUT') r.timedOut++;
  else r.errors.push(err instanceof Error ? err.message : String(err));
}

const ATTEMPT_TIMEOUT_MS = 2000;

/** `count` HTTP requests, each on a new connection (agent: false), so each is a new pick. */
async function probeHttp(port: number, count: number): Promise<ProbeResult> {
  const r = emptyProbe(count);
  for (let i = 0; i < count; i++) {
    try {
      const name = await new Promise<string>((resolve, reject) => {
        const req = http.get({ host: '127.0.0.1', port, path: '/', agent: false }, (res) => {
          let body = '';
          res.setEncoding('utf8').on('data', (d: string) => (body += d));
          res.on('end', () => resolve(body));
          res.on('error', reject);
        });
        req.setTimeout(ATTEMPT_TIMEOUT_MS, () =>
          req.destroy(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })),
        );
        req.on('error', reject);
      });
      r.answers.set(name, (r.answers.get(name) ?? 0) + 1);
    } catch (err) {
      countFailure(r, err);
    }
  }
  return r;
}

/** `count` datagrams, each from a new socket (a new UDP session in the proxy). */
async function probeUdp(port: number, count: number): Promise<ProbeResult> {
  const r = emptyProbe(count);
  for (let i = 0; i < count; i++) {
    const socket = dgram.createSocket('udp4');
    try {
      const name = await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })),
          ATTEMPT_TIMEOUT_MS,
        );
        socket.once('message', (msg) => {
          clearTimeout(timer);
          resolve(msg.toString());
        });
        socket.once('error', (err) => {
          clearTimeout(timer);
          reject(err);
        });
        socket.send(`ping ${i}`, port, '127.0.0.1');
      });
      r.answers.set(name, (r.answers.get(name) ?? 0) + 1);
    } catch (err) {
      countFailure(r, err);
    } finally {
      socket.close();
    }
  }
  return r;
}

/** What the demo reads from /debug/services (src/server/services-view.ts). */
interface ServicesView {
  synced: boolean;
  ports: {
    key: string;
    port: string;
    protocol: string;
    frontends: { clusterIP: string | null };
    clusterEndpoints: { address: string }[];
    listeners?: { address: string; port: number; protocol: string }[];
  }[];
}

async function runUserspaceDemo(root: string, plan: DemoPlan): Promise<void> {
  const cli = path.join(root, 'dist/src/cli.js');
  if (!existsSync(cli)) throw new Error(`${cli} is missing: build it with npm run build (npm run demo does)`);
  console.log(
    'kube-nftproxy demo (userspace): a Service, three stand-in pods and real requests, all on 127.0.0.1.\n',
  );
  const [ns, name] = plan.service.split('/') as [string, string];
  const http80 = plan.ports.find((p) => p.proto === 'TCP');
  const udp53 = plan.ports.find((p) => p.proto === 'UDP');
  const examples = loadObjects(path.join(root, 'examples/demo'));
  const svc: Obj = examples.find(
    (o) => o.kind === 'Service' && o.metadata.namespace === ns && o.metadata.name === name,
  );
  const nodeObj: Obj = examples.find((o) => o.kind === 'Node');

  const seen = new Set<string>();
  const pods: LoopbackPod[] = [];
  let dir: string | undefined;
  let daemon: ChildProcess | undefined;
  let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  let daemonLog = '';
  let sentTerm = false;

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      if (daemon && !exit) {
        const d = daemon;
        sentTerm = true;
        const exited = new Promise<void>((resolve) => d.once('exit', () => resolve()));
        d.kill('SIGTERM');
        // A daemon that ignores SIGTERM is a bug, but the demo must not leave it behind.
        const kill = setTimeout(() => d.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(kill);
      }
      await Promise.all(pods.map((p) => p.close()));
      if (dir) rmSync(dir, { recursive: true, force: true });
    })());
  const onSignal = (): void => {
    console.error('\nInterrupted: stopping kube-nftproxy and the servers.');
    void stop().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  try {
    process.stdout.write('Starting three HTTP/UDP servers on 127.0.0.1 for the pods... ');
    for (const pod of plan.pods) pods.push(await startLoopbackPod(pod.name, seen));
    console.log('done.');
    for (const p of pods)
      console.log(`  ${p.name}  http 127.0.0.1:${p.httpPort}  udp 127.0.0.1:${p.udpPort}`);

    // An EndpointSlice has one port number per port name for all its endpoints, and every
    // server has ports of its own: one slice per server, which the model merges per Service.
    dir = mkdtempSync(path.join(tmpdir(), 'kube-nftproxy-demo-'));
    const slices = pods.map((p) => ({
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: {
        name: `${name}-${p.name}`,
        namespace: ns,
        labels: { 'kubernetes.io/service-name': name },
      },
      addressType: 'IPv4',
      ports: [
        ...(http80 ? [{ name: http80.name, protocol: 'TCP', port: p.httpPort }] : []),
        ...(udp53 ? [{ name: udp53.name, protocol: 'UDP', port: p.udpPort }] : []),
      ],
      endpoints: [
        {
          addresses: ['127.0.0.1'],
          conditions: { ready: true, serving: true, terminating: false },
          nodeName: plan.nodeName,
          targetRef: { kind: 'Pod', namespace: ns, name: p.name },
        },
      ],
    }));
    writeFileSync(
      path.join(dir, 'web.yaml'),
      [svc, ...slices].map((o: unknown) => stringify(o)).join('---\n'),
    );
    if (nodeObj) writeFileSync(path.join(dir, 'node.yaml'), stringify(nodeObj));
    console.log(
      `\nSource folder ${dir}: Service ${plan.service} from examples/demo, ` +
        `${slices.length} EndpointSlices (one per server), the Node.`,
    );

    const metrics = `127.0.0.1:${await freePort()}`;
    const argv = [
      cli,
      '--proxy-mode',
      'userspace',
      '--userspace-bind',
      'loopback',
      '--source',
      dir,
      '--hostname-override',
      plan.nodeName,
      '--healthz-bind-address',
      '127.0.0.1:0',
      '--metrics-bind-address',
      metrics,
    ];
    console.log(`\nRunning kube-nftproxy on this host:\n  kube-nftproxy ${argv.slice(1).join(' ')}`);
    const child = spawn(process.execPath, argv, { stdio: ['ignore', 'ignore', 'pipe'] });
    daemon = child;
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (daemonLog += d));
    child.on('exit', (code, signal) => (exit = { code, signal }));

    const failed = (why: string): Error =>
      new Error(`${why}\nkube-nftproxy said:\n${daemonLog.trim().split('\n').slice(-20).join('\n')}`);
    // Poll until every service port has its listener and the servers as endpoints.
    const deadline = Date.now() + 30_000;
    let view: ServicesView | undefined;
    for (;;) {
      if (exit) throw failed(`kube-nftproxy exited (code ${String(exit.code)}) before serving`);
      try {
        const res = await fetch(`http://${metrics}/debug/services`);
        const v = (await res.json()) as ServicesView;
        const ours = v.ports.filter((p) => p.key.startsWith(`${plan.service}:`));
        const ready =
          v.synced &&
          ours.length === plan.ports.length &&
          ours.every((p) => p.listeners?.length === 1 && p.clusterEndpoints.length === pods.length);
        if (ready) {
          view = v;
          break;
        }
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) throw failed(`kube-nftproxy did not serve ${plan.service} within 30 s`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const listener = (portName: string): number => {
      const p = view.ports.find((x) => x.key.startsWith(`${plan.service}:${portName}/`));
      const l = p?.listeners?.[0];
      if (!l) throw new Error(`no listener for ${plan.service} port ${portName} in /debug/services`);
      return l.port;
    };

    const rows: { from: string; what: string; r: ProbeResult }[] = [];
    const probe = async (what: 'http' | 'udp', port: number): Promise<void> => {
      seen.clear();
      const r = what === 'http' ? await probeHttp(port, REQUESTS) : await probeUdp(port, REQUESTS);
      for (const c of seen) r.clients.add(c === '127.0.0.1' ? `${c} (the proxy)` : c);
      rows.push({ from: 'this host', what: `${what} 127.0.0.1:${port}`, r });
    };
    if (http80) await probe('http', listener(http80.name));
    if (udp53) await probe('udp', listener(udp53.name));

    console.log(
      `\n${REQUESTS} requests each to Service ${plan.service} through its loopback listeners ` +
        `(standing for ClusterIP ${plan.clusterIp}):`,
    );
    console.log(table(plan, rows));

    console.log(`\nWhat kube-nftproxy serves (GET http://${metrics}/debug/services, abridged):`);
    const podAt = new Map(
      pods.flatMap((p) => [
        [`127.0.0.1:${p.httpPort}`, p.name],
        [`127.0.0.1:${p.udpPort}`, p.name],
      ]),
    );
    for (const p of view.ports.filter((x) => x.key.startsWith(`${plan.service}:`))) {
      const l = p.listeners?.[0];
      const eps = p.clusterEndpoints.map((e) => `${podAt.get(e.address) ?? '?'} ${e.address}`);
      console.log(
        `  ${p.key}  ${p.frontends.clusterIP ?? '-'} -> listener ${l ? `${l.address}:${l.port}` : '-'}` +
          ` -> ${eps.join(', ')}`,
      );
    }
  } finally {
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    await stop();
    if (exit) {
      const how = exit.signal ? `signal ${exit.signal}` : `exit ${String(exit.code)}`;
      console.log(
        `\n${sentTerm ? `Stopped kube-nftproxy (SIGTERM, ${how})` : `kube-nftproxy ended (${how})`}.`,
      );
    }
    console.log('Stopped the servers and removed the source folder.');
  }
}

function joinAnd(items: string[]): string {
  return items.length <= 1 ? (items[0] ?? '') : `${items.slice(0, -1).join(', ')} and ${items.at(-1)!}`;
}

async function main(): Promise<number> {
  const root = repoRoot();
  const plan = loadPlan(path.join(root, 'examples/demo'));
  const args = process.argv.slice(2);
  const unknown = args.filter((a) => a !== '--userspace');
  if (unknown.length > 0) {
    console.error(`unknown argument ${unknown[0]!}; usage: npm run demo [-- --userspace]`);
    return 2;
  }
  if (args.includes('--userspace')) {
    console.log('--userspace: the userspace proxy on loopback instead of nftables.');
    await runUserspaceDemo(root, plan);
    return 0;
  }
  const missing = missingPrerequisites();
  if (missing.length > 0) {
    console.log(
      `No ${joinAnd(missing.map((m) => `${m.what} (${m.fix})`))} for the nftables demo: ` +
        'falling back to the userspace proxy on loopback.',
    );
    await runUserspaceDemo(root, plan);
    return 0;
  }
  // The lab removes itself on SIGINT/SIGTERM too; this only says so and sets the exit code.
  process.once('SIGINT', () => {
    console.error('\nInterrupted: the lab is removed.');
    process.exit(130);
  });
  await runNftablesDemo(root, plan);
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`\ndemo failed: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  },
);
