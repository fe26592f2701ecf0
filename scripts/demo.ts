/**
 * `npm run demo`: a throwaway cluster in network namespaces (scripts/lab), the Kubernetes
 * objects in examples/demo, kube-nftproxy run once on the lab's node, then real requests to
 * the ClusterIP and the rules that carried them. Removes everything it made, also on Ctrl-C
 * and on failure.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';

import { LAB, Lab, type ProbeResult } from './lab/index.js';

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
function missingPrerequisites(): string[] {
  const missing: string[] = [];
  if (process.getuid?.() !== 0)
    missing.push('root: network namespaces and nftables need it (run: sudo npm run demo)');
  const has = (cmd: string, arg: string): boolean => spawnSync(cmd, [arg], { stdio: 'ignore' }).status === 0;
  if (!has('nft', '--version')) missing.push('nft: apt-get install nftables');
  if (!has('ip', '-V')) missing.push('ip: apt-get install iproute2');
  return missing;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- plain YAML objects
type Obj = any;

function loadPlan(dir: string): DemoPlan {
  const docs: Obj[] = [];
  for (const file of readdirSync(dir).sort()) {
    if (!/\.(ya?ml|json)$/.test(file)) continue;
    for (const doc of parseAllDocuments(readFileSync(path.join(dir, file), 'utf8'))) {
      const o: Obj = doc.toJS();
      if (o) docs.push(...(o.kind === 'List' ? o.items : [o]));
    }
  }
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

async function main(): Promise<number> {
  const root = repoRoot();
  const plan = loadPlan(path.join(root, 'examples/demo'));
  const missing = missingPrerequisites();
  if (missing.length > 0) {
    // The seam for a later userspace fallback (`--proxy-mode userspace`, no root or nft
    // needed): choose it here instead of stopping.
    console.error('The kube-nftproxy demo needs what this machine lacks:');
    for (const m of missing) console.error(`  - ${m}`);
    return 1;
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
