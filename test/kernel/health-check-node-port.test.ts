import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { LAB, Lab } from '../../scripts/lab/index.js';
import { requireKernel } from '../support/capabilities.js';
import { node, service, slice, yamlDocs, type EndpointSpec } from '../support/objects.js';
import { REPO, SourceDir } from '../support/proxy.js';
import { waitFor } from '../support/wait-for.js';

/**
 * healthCheckNodePort through the kernel: the real daemon (the CLI, --source) runs in the lab's
 * node namespace, and a client outside the cluster asks the node IP's health check port, as a
 * cloud load balancer does. Every check is an outcome (status, headers, body, refused).
 */
const HC_PORT = 32123;
const NS = 'demo';

interface Answer {
  status?: number;
  weight?: string | null;
  type?: string | null;
  body?: string;
  error?: string;
}

/** One GET from the client's namespace; a refused connection is `error: 'ECONNREFUSED'`. */
const FETCH_JS = `
const [url] = process.argv.slice(1);
// The body is read inside the same chain: a server closing mid-answer is an error printed
// like a refusal, never a silent exit.
fetch(url, { signal: AbortSignal.timeout(5000) })
  .then(async (r) => console.log(JSON.stringify({ status: r.status, weight: r.headers.get('x-load-balancing-endpoint-weight'), type: r.headers.get('content-type'), body: await r.text() })))
  .catch((e) => console.log(JSON.stringify({ error: (e.cause && e.cause.code) || e.code || e.name })));`;

for (const mode of ['nftables', 'userspace'] as const) {
  describe(`kernel: healthCheckNodePort from outside the node (${mode} mode)`, function () {
    this.timeout(180_000);
    let lab: Lab;
    let src: SourceDir;
    let daemon: ChildProcess | undefined;
    let exited = false;
    let stderr = '';

    const objects = (endpoints: EndpointSpec[], policy: 'Local' | 'Cluster' = 'Local') => [
      node(LAB.nodeName, [LAB.nodeIp]),
      service(
        NS,
        'web',
        {
          type: 'LoadBalancer',
          clusterIP: '10.96.0.10',
          externalTrafficPolicy: policy,
          ...(policy === 'Local' ? { healthCheckNodePort: HC_PORT } : {}),
          ports: [{ name: 'http', port: 80, targetPort: 8080, nodePort: 30080 }],
        },
        { lbIPs: ['192.0.2.50'] },
      ),
      slice(NS, 'web-a', 'web', [{ name: 'http', port: 8080 }], endpoints),
    ];
    const write = (o: object[]): Promise<void> => writeFile(join(src.path, 'objects.yaml'), yamlDocs(o));

    const ask = async (): Promise<Answer> => {
      const r = await lab.exec('outside', [
        process.execPath,
        '-e',
        FETCH_JS,
        `http://${LAB.nodeIp}:${HC_PORT}/`,
      ]);
      return JSON.parse(r.stdout.trim()) as Answer;
    };

    const until = async (ok: (a: Answer) => boolean, what: string): Promise<Answer> => {
      let last: Answer;
      const deadline = Date.now() + 60_000;
      for (;;) {
        assert.ok(!exited, `the daemon exited:\n${stderr}`);
        last = await ask();
        if (ok(last)) return last;
        if (Date.now() > deadline) throw new Error(`${what}: last answer ${JSON.stringify(last)}\n${stderr}`);
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    };

    before(async function () {
      requireKernel(this);
      lab = await Lab.create();
      await lab.addClient('outside');
      src = await SourceDir.create();
      await write(
        objects([
          { ip: '10.244.1.11', nodeName: LAB.nodeName },
          { ip: '10.244.1.12', nodeName: LAB.nodeName },
          { ip: '10.244.2.11', nodeName: LAB.remoteNodeName },
        ]),
      );
      daemon = spawn(
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
          mode,
          ...(mode === 'userspace' ? ['--userspace-bind', 'loopback'] : []),
          '--source',
          src.path,
          '--hostname-override',
          LAB.nodeName,
          '--cluster-cidr',
          LAB.clusterCidr,
          '--healthz-bind-address',
          '127.0.0.1:0',
          '--metrics-bind-address',
          '127.0.0.1:0',
          '--min-sync-period',
          '0s',
        ],
        { cwd: REPO, env: { ...process.env, LOG_LEVEL: 'info' }, stdio: ['ignore', 'ignore', 'pipe'] },
      );
      daemon.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
      daemon.on('exit', () => (exited = true));
    });

    after(async () => {
      if (daemon && !exited) {
        daemon.kill('SIGTERM');
        await waitFor(() => exited, { timeoutMs: 30_000, what: 'the daemon to exit' });
      }
      await lab?.destroy();
      await src?.remove();
    });

    it("answers 200 on the node IP with this node's ready endpoint count", async () => {
      const a = await until((x) => x.status !== undefined, 'the health check port to answer');
      assert.equal(a.status, 200);
      assert.equal(a.type, 'application/json');
      assert.equal(a.weight, '2');
      assert.deepEqual(JSON.parse(a.body!), {
        service: { namespace: NS, name: 'web' },
        localEndpoints: 2,
        serviceProxyHealthy: true,
      });
    });

    it('answers 503 once no local endpoint is ready (a remote one does not count)', async () => {
      await write(
        objects([
          { ip: '10.244.1.11', nodeName: LAB.nodeName, ready: false, serving: true, terminating: true },
          { ip: '10.244.2.11', nodeName: LAB.remoteNodeName },
        ]),
      );
      const a = await until((x) => x.status === 503, 'the check to fail');
      assert.equal(a.weight, '0');
      assert.equal(JSON.parse(a.body!).localEndpoints, 0);
    });

    it('closes the port when the Service turns to externalTrafficPolicy Cluster', async () => {
      await write(objects([{ ip: '10.244.1.11', nodeName: LAB.nodeName }], 'Cluster'));
      // A request in flight as the server closes ends with the socket (UND_ERR_SOCKET): the
      // closed port is the one that refuses the next connection.
      const a = await until((x) => x.error === 'ECONNREFUSED', 'the port to close');
      assert.equal(a.error, 'ECONNREFUSED');
    });
  });
}
