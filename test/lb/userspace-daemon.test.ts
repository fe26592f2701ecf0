/**
 * The real CLI in userspace mode (no root needed): `--proxy-mode userspace --userspace-bind
 * loopback` with a --source folder, real TCP servers on 127.0.0.1 as endpoints, the listeners
 * found through /debug/services. Loopback is forced so that a run as root (CI) never adds
 * service IPs to the host's lo.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { join } from 'node:path';
import { LAB, Lab } from '../../scripts/lab/index.js';
import { buildConfig } from '../../src/config.js';
import { ErrorCodes, hasCode } from '../../src/errors.js';
import { service, slice, yamlDocs } from '../support/objects.js';
import { requireKernel } from '../support/capabilities.js';
import { logLines, REPO, SourceDir } from '../support/proxy.js';
import { waitFor } from '../support/wait-for.js';
import { closeServer, fetchName, nameServer, tally } from './support.js';
import { freePort } from '../../scripts/lab/free-port.js';

interface Listener {
  key: string;
  address: string;
  port: number;
  protocol: 'TCP' | 'UDP';
}
interface PortView {
  key: string;
  clusterEndpoints: Array<{ address: string }>;
  listeners?: Listener[];
}
interface ServicesView {
  synced: boolean;
  ports: PortView[];
}

const NS = 'default';
const SVC = 'web';
const CONNECTIONS = 30;

/** Polls an async probe until it returns something; waits for outcomes, never for durations. */
async function eventually<T>(
  probe: () => Promise<T | undefined>,
  what: string,
  alive: () => boolean,
): Promise<T> {
  let result: T | undefined;
  let done = false;
  let failure: unknown;
  const loop = (async () => {
    while (!done) {
      try {
        result = await probe();
      } catch (err) {
        failure = err;
        result = undefined;
      }
      if (result !== undefined) return;
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
  try {
    await waitFor(() => result !== undefined || !alive(), { timeoutMs: 60_000, what });
  } finally {
    done = true;
    await loop;
  }
  if (result === undefined)
    throw new Error(`${what}: the daemon exited (last error: ${String(failure ?? 'none')})`);
  return result;
}

describe('userspace daemon: the real CLI with --source on loopback', function () {
  this.timeout(120_000);

  const names = ['ep0', 'ep1', 'ep2'];
  const servers: net.Server[] = [];
  const ports = new Map<string, number>();
  let dir: SourceDir;
  let child: ChildProcess;
  let exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  let stderr = '';
  let metrics = '';

  const alive = (): boolean => exited === undefined;
  const sliceFile = (name: string): string => `slice-${name}.yaml`;

  async function services(): Promise<ServicesView> {
    const res = await fetch(`http://${metrics}/debug/services`);
    assert.equal(res.status, 200);
    return (await res.json()) as ServicesView;
  }

  /** The loopback listener of the web Service's TCP port, once it serves exactly `want`. */
  async function listenerServing(want: string[]): Promise<Listener> {
    const addresses = want.map((n) => `127.0.0.1:${String(ports.get(n))}`).sort();
    return eventually(
      async () => {
        const view = await services();
        const port = view.ports.find((p) => p.key.startsWith(`${NS}/${SVC}:`));
        const got = (port?.clusterEndpoints ?? []).map((e) => e.address).sort();
        const l = port?.listeners?.find((x) => x.protocol === 'TCP');
        return view.synced && l && got.join(',') === addresses.join(',') ? l : undefined;
      },
      `the listener of ${NS}/${SVC} to serve ${want.join(', ')}`,
      alive,
    );
  }

  async function spread(l: Listener): Promise<Map<string, number>> {
    assert.equal(l.address, '127.0.0.1');
    const got: string[] = [];
    for (let i = 0; i < CONNECTIONS; i++) got.push(await fetchName(l.port));
    return tally(got);
  }

  before(async function () {
    for (const name of names) {
      const s = await nameServer(name);
      servers.push(s.server);
      ports.set(name, s.port);
    }
    dir = await SourceDir.create();
    await dir.write({
      'service.yaml': [service(NS, SVC, { clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80 }] })],
    });
    // An EndpointSlice has one port number per port name: one slice per server, merged per Service.
    for (const name of names)
      await writeFile(
        join(dir.path, sliceFile(name)),
        yamlDocs([
          slice(NS, `${SVC}-${name}`, SVC, [{ name: 'http', port: ports.get(name)! }], [{ ip: '127.0.0.1' }]),
        ]),
      );
    metrics = `127.0.0.1:${String(await freePort())}`;
    child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        join(REPO, 'src/cli.ts'),
        '--proxy-mode',
        'userspace',
        '--userspace-bind',
        'loopback',
        '--source',
        dir.path,
        '--hostname-override',
        'test-node',
        '--healthz-bind-address',
        '127.0.0.1:0',
        '--metrics-bind-address',
        metrics,
        '--min-sync-period',
        '0s',
      ],
      { cwd: REPO, env: { ...process.env, LOG_LEVEL: 'info' }, stdio: ['ignore', 'ignore', 'pipe'] },
    );
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('exit', (code, signal) => (exited = { code, signal }));
    try {
      await listenerServing(names);
    } catch (err) {
      throw new Error(`${(err as Error).message}\n--- daemon stderr ---\n${stderr}`, { cause: err });
    }
  });

  after(async function () {
    if (child && alive()) {
      child.kill('SIGKILL');
      await waitFor(() => !alive(), { what: 'the daemon to be killed' });
    }
    for (const s of servers) await closeServer(s);
    await dir?.remove();
  });

  it('/proxyMode answers userspace, and the proxy binds loopback (also as root)', async function () {
    const res = await fetch(`http://${metrics}/proxyMode`);
    assert.equal(res.status, 200);
    assert.equal(await res.text(), 'userspace');
    const ready = logLines(stderr).find((l) => l.msg === 'userspace proxy ready');
    assert.equal(ready?.bindMode, 'loopback', stderr);
  });

  it(`reaches every endpoint and nothing else over ${CONNECTIONS} connections`, async function () {
    const counts = await spread(await listenerServing(names));
    assert.deepEqual([...counts.keys()].sort(), names);
    assert.equal(
      [...counts.values()].reduce((a, b) => a + b, 0),
      CONNECTIONS,
    );
  });

  it("a removed endpoint's EndpointSlice: new connections avoid it", async function () {
    await rm(join(dir.path, sliceFile('ep1')));
    const counts = await spread(await listenerServing(['ep0', 'ep2']));
    assert.deepEqual([...counts.keys()].sort(), ['ep0', 'ep2']);
    assert.equal(
      [...counts.values()].reduce((a, b) => a + b, 0),
      CONNECTIONS,
    );
  });

  it('SIGTERM: the process exits 0', async function () {
    assert.ok(alive(), `the daemon exited early: ${JSON.stringify(exited)}\n${stderr}`);
    child.kill('SIGTERM');
    await waitFor(() => !alive(), { timeoutMs: 60_000, what: 'the daemon to exit after SIGTERM' });
    assert.deepEqual(exited, { code: 0, signal: null }, stderr);
  });
});

describe('--userspace-bind', function () {
  it('defaults to auto, takes loopback and service-ip, and names the flag on anything else', function () {
    assert.equal(buildConfig([], {}).userspaceBind, 'auto');
    assert.equal(buildConfig(['--userspace-bind', 'loopback'], {}).userspaceBind, 'loopback');
    assert.equal(buildConfig(['--userspace-bind=service-ip'], {}).userspaceBind, 'service-ip');
    assert.throws(
      () => buildConfig(['--userspace-bind', 'lo'], {}),
      (err: unknown) => hasCode(err, ErrorCodes.CONFIG_INVALID) && /--userspace-bind/.test(String(err)),
    );
  });
});

/**
 * Service-ip mode in a lab node namespace: the real CLI run inside it (`ip netns exec`), so
 * the addresses it adds land on that namespace's `lo`, never the host's. --service-cidr
 * wrongly covers the LAN too, as an operator's slip might. The Service's ClusterIP becomes
 * local and serves a pod; of its externalIPs, the one outside the CIDR and the node's gateway
 * (inside it) are skipped with their reasons and never added, and the node's own address is
 * served as it is: bound, never added, never removed.
 */
describe('kernel: userspace service-ip mode adds only --service-cidr addresses', function () {
  this.timeout(300_000);
  const VIP = '10.96.0.10';
  const OUTSIDE = '203.0.113.7';
  const METRICS = '127.0.0.1:10249';
  let lab: Lab | undefined;
  let dir: SourceDir | undefined;
  let child: ChildProcess | undefined;
  let stderr = '';
  let exited = false;

  const loAddresses = async (): Promise<string[]> => {
    const out = await lab!.exec('node', ['ip', '-j', 'addr', 'show', 'dev', 'lo']);
    const links = JSON.parse(out.stdout) as Array<{ addr_info: Array<{ local: string }> }>;
    return links.flatMap((l) => l.addr_info.map((a) => a.local));
  };
  const debugServices = async (): Promise<
    { skipped: Array<{ name: string; reason: string }> } | undefined
  > => {
    const out = await lab!.exec(
      'node',
      [
        process.execPath,
        '-e',
        `fetch('http://${METRICS}/debug/services').then(r=>r.text()).then(t=>process.stdout.write(t))`,
      ],
      { allowFail: true },
    );
    return out.stdout
      ? (JSON.parse(out.stdout) as { skipped: Array<{ name: string; reason: string }> })
      : undefined;
  };

  before(async function () {
    requireKernel(this);
    lab = await Lab.create();
    await lab.addPod('web-1', { ip: '10.244.1.11' });
    await lab.serve('web-1', { tcp: [8080] });
    dir = await SourceDir.create();
    await dir.write({
      'objects.yaml': [
        service('default', 'web', {
          clusterIP: VIP,
          externalIPs: [OUTSIDE, LAB.lanRouter, LAB.nodeIp],
          ports: [{ name: 'http', port: 80, targetPort: 8080 }],
        }),
        slice(
          'default',
          'web-a',
          'web',
          [{ name: 'http', port: 8080 }],
          [{ ip: '10.244.1.11', nodeName: LAB.nodeName }],
        ),
      ],
    });
    child = spawn(
      'ip',
      [
        'netns',
        'exec',
        lab.nodeNs,
        process.execPath,
        '--import',
        'tsx',
        join(REPO, 'src/cli.ts'),
        '--proxy-mode',
        'userspace',
        '--userspace-bind',
        'service-ip',
        '--service-cidr',
        '10.96.0.0/16,172.30.0.0/24',
        '--source',
        dir.path,
        '--hostname-override',
        LAB.nodeName,
        '--node-ip',
        LAB.nodeIp,
        '--healthz-bind-address',
        '127.0.0.1:0',
        '--metrics-bind-address',
        METRICS,
        '--min-sync-period',
        '0s',
      ],
      { cwd: REPO, env: { ...process.env, LOG_LEVEL: 'info' }, stdio: ['ignore', 'ignore', 'pipe'] },
    );
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('exit', () => (exited = true));
  });

  after(async function () {
    if (child && !exited) {
      child.kill('SIGKILL');
      await waitFor(() => exited, { what: 'the daemon to be killed' });
    }
    await dir?.remove();
    await lab?.destroy();
  });

  it('the ClusterIP is made local and serves; the externalIPs are skipped with reasons and never added', async function () {
    let view: Awaited<ReturnType<typeof debugServices>>;
    await eventually(
      async () => ((await loAddresses()).includes(VIP) ? true : undefined),
      `${VIP} on the node's lo\n${stderr}`,
      () => !exited,
    );
    await eventually(
      async () => {
        view = await debugServices();
        return view && view.skipped.filter((s) => s.name === 'default/web').length === 2 ? true : undefined;
      },
      `the skipped externalIPs on /debug/services\n${stderr}`,
      () => !exited,
    );
    const reasons = view!.skipped.map((s) => s.reason).sort();
    assert.match(
      reasons.find((r) => r.includes(OUTSIDE))!,
      /only addresses inside --service-cidr \(10\.96\.0\.0\/16,/,
    );
    assert.match(
      reasons.find((r) => r.includes(LAB.lanRouter))!,
      /a gateway of this node/,
    );
    const lo = await loAddresses();
    assert.deepEqual(
      [OUTSIDE, LAB.lanRouter, LAB.nodeIp].filter((ip) => lo.includes(ip)),
      [],
      `none of them on lo: ${lo.join(',')}`,
    );
    const viaNode = await lab!.probe('web-1', { dst: LAB.nodeIp, port: 80, proto: 'tcp', count: 5 });
    assert.deepEqual([...viaNode.answers], [['web-1', 5]], 'the node address serves the externalIP as it is');

    const probe = await lab!.probe('web-1', { dst: VIP, port: 80, proto: 'tcp', count: 10 });
    assert.deepEqual(
      [...probe.answers],
      [['web-1', 10]],
      JSON.stringify({ ...probe, answers: [...probe.answers] }),
    );
  });

  it('SIGTERM: the daemon removes the address it added, and only it', async function () {
    child!.kill('SIGTERM');
    await waitFor(() => exited, { timeoutMs: 60_000, what: 'the daemon to exit' });
    const lo = await loAddresses();
    assert.ok(!lo.includes(VIP), lo.join(','));
    assert.ok(lo.includes('127.0.0.1'), lo.join(','));
    const all = await lab!.exec('node', ['ip', '-j', 'addr', 'show']);
    assert.ok(all.stdout.includes(`"${LAB.nodeIp}"`), 'the node address is still there');
  });
});
