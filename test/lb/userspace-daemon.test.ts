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
import { buildConfig } from '../../src/config.js';
import { ErrorCodes, hasCode } from '../../src/errors.js';
import { service, slice, yamlDocs } from '../support/objects.js';
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
