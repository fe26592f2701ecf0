import assert from 'node:assert/strict';
import { LAB, Lab, type ProbeResult } from '../../scripts/lab/index.js';
import { Daemon } from '../../src/daemon.js';
import { silentLogger } from '../../src/log.js';
import { createNft, type Nft } from '../../src/rules/nft/exec.js';
import { TestApiServer, type StoredObject } from '../support/api-server.js';
import { requireKernel } from '../support/capabilities.js';
import { node, service, slice } from '../support/objects.js';
import { waitFor } from '../support/wait-for.js';
import { testDaemonConfig, testKubeSource } from '../support/daemon-harness.js';

/**
 * The whole daemon in the kernel: the real client-node informers against a TestApiServer,
 * the Daemon in this process, its nft commands in a lab node namespace, and real connections
 * from a pod. Every check is an outcome (who answered, how many were refused); the waits are
 * generous upper bounds, never measured.
 */
describe('kernel: the daemon against an API server', function () {
  this.timeout(300_000);
  const NS = 'demo';
  const WEB_VIP = '10.96.0.10';
  const OTHER_VIP = '10.96.0.20';
  const PODS = {
    'web-1': '10.244.1.11',
    'web-2': '10.244.1.12',
    'web-3': '10.244.1.13',
    'web-4': '10.244.1.14',
  };
  type PodName = keyof typeof PODS;
  const log = silentLogger();
  let lab: Lab;
  let server: TestApiServer;
  let nft: Nft;
  let daemon: Daemon | undefined;

  const webSlice = (pods: PodName[]): StoredObject =>
    stored(
      slice(
        NS,
        'web-a',
        'web',
        [{ name: 'http', port: 8080 }],
        pods.map((p) => ({ ip: PODS[p], nodeName: LAB.nodeName })),
      ),
    );

  const startDaemon = async (): Promise<Daemon> => {
    const config = testDaemonConfig(LAB.nodeName, [
      '--cluster-cidr',
      LAB.clusterCidr,
      '--service-cidr',
      LAB.serviceCidr,
      '--sync-period',
      '30s',
    ]);
    const d = new Daemon(config, {
      log,
      env: { localAddresses: [LAB.nodeIp, LAB.nodePodIp] },
      nft,
      source: testKubeSource(server, LAB.nodeName, log),
    });
    await d.start();
    return d;
  };

  const probe = (count = 30): Promise<ProbeResult> =>
    lab.probe('client-pod', { dst: WEB_VIP, port: 80, proto: 'tcp', count });

  const names = (r: ProbeResult): string[] => [...r.answers.keys()].sort();

  /** Probe until every connection is answered by exactly `pods`; returns the last probe. */
  const trafficReaches = async (pods: PodName[], what: string): Promise<ProbeResult> => {
    const want = [...pods].sort();
    let last: ProbeResult | undefined;
    await eventually(async () => {
      last = await probe(pods.length > 2 ? 40 : 30);
      return last.refused + last.timedOut === 0 && last.errors.length === 0 && same(names(last), want);
    }, what);
    return last!;
  };

  before(async function () {
    requireKernel(this);
    await Lab.sweep();
    lab = await Lab.create();
    for (const [name, ip] of Object.entries(PODS)) {
      await lab.addPod(name, { ip });
      await lab.serve(name, { tcp: [8080] });
    }
    await lab.addPod('client-pod', { ip: '10.244.1.50' });
    nft = createNft({ netns: lab.nodeNs, session: true });
    server = await TestApiServer.create({ bookmarkIntervalMs: 1_000 });
    server.create('Node', stored(node(LAB.nodeName, [LAB.nodeIp])));
    // A second Service that never changes: no partial sync of `web` may touch it.
    server.create(
      'Service',
      stored(
        service(NS, 'other', { clusterIP: OTHER_VIP, ports: [{ name: 'http', port: 80, targetPort: 8080 }] }),
      ),
    );
    server.create(
      'EndpointSlice',
      stored(
        slice(
          NS,
          'other-a',
          'other',
          [{ name: 'http', port: 8080 }],
          [{ ip: PODS['web-4'], nodeName: LAB.nodeName }],
        ),
      ),
    );
    daemon = await startDaemon();
    await waitFor(() => daemon!.syncs > 0, { timeoutMs: 60_000, what: 'the first sync' });
  });

  after(async () => {
    await daemon?.stop();
    await server?.close();
    await lab?.destroy();
  });

  it('programs a Service created through the API: every endpoint answers', async () => {
    server.create(
      'Service',
      stored(
        service(NS, 'web', { clusterIP: WEB_VIP, ports: [{ name: 'http', port: 80, targetPort: 8080 }] }),
      ),
    );
    server.create('EndpointSlice', webSlice(['web-1', 'web-2', 'web-3']));
    const r = await trafficReaches(['web-1', 'web-2', 'web-3'], 'web-1..3 to answer');
    assert.ok(r.attempts >= 30);
  });

  it('follows the endpoints up and down, each change a partial sync of that Service alone', async () => {
    for (const pods of [['web-1', 'web-2', 'web-3', 'web-4'], ['web-1']] as PodName[][]) {
      server.update('EndpointSlice', webSlice(pods));
      await trafficReaches(pods, `traffic to follow the slice to ${pods.join(',')}`);
      const tx = daemon!.applier.lastTransaction;
      assert.match(tx, new RegExp(WEB_VIP.replace(/\./g, '\\.')), tx);
      assert.doesNotMatch(tx, new RegExp(OTHER_VIP.replace(/\./g, '\\.')), tx);
      assert.doesNotMatch(tx, /table ip kube-nftproxy/, `a partial sync, not a table replacement:\n${tx}`);
    }
    // The other Service was never disturbed.
    const other = await lab.probe('client-pod', { dst: OTHER_VIP, port: 80, proto: 'tcp', count: 10 });
    assert.deepEqual(names(other), ['web-4']);
  });

  it('keeps the rules while the API server is down, and catches up when it is back', async () => {
    const syncsBefore = daemon!.syncs;
    await server.stop();
    // Nothing to wait for on the daemon's side: its informers fail and back off.
    const during = await probe(30);
    assert.deepEqual(names(during), ['web-1']);
    assert.equal(during.refused + during.timedOut, 0);
    // A change made while the daemon cannot see it.
    server.update('EndpointSlice', webSlice(['web-2', 'web-3']));
    const stillOld = await probe(30);
    assert.deepEqual(names(stillOld), ['web-1']);
    await server.start();
    await trafficReaches(['web-2', 'web-3'], 'the daemon to catch up after the API server came back');
    assert.ok(daemon!.syncs > syncsBefore);
  });

  it('restarts under steady traffic without failing a single connection', async () => {
    const COUNT = 1_000;
    const served = async (): Promise<number> => {
      let n = 0;
      for (const pod of ['web-2', 'web-3']) {
        const r = await lab.exec(pod, ['ss', '-Htan', 'state', 'time-wait']);
        n += r.stdout.split('\n').filter((l) => l.trim() !== '').length;
      }
      return n;
    };
    const before = await served();
    let finished = false;
    const traffic = probe(COUNT).finally(() => {
      finished = true;
    });
    // The servers close first, so every answered connection leaves a TIME_WAIT socket with them.
    await eventually(async () => (await served()) > before + 20 || finished, 'the client loop to be running');
    assert.equal(finished, false, 'the client loop ended before the restart began: raise COUNT');

    await daemon!.stop();
    daemon = await startDaemon();
    await waitFor(() => daemon!.syncs > 0, { timeoutMs: 60_000, what: 'the new daemon to sync' });
    const replaced = daemon.applier.lastTransaction;
    const restartedMidway = !finished;

    const r = await traffic;
    assert.ok(restartedMidway, 'the client loop ended before the new daemon synced: raise COUNT');
    // nft 1.0.6 has no `destroy`: the table is added (a no-op), deleted and rebuilt in one transaction.
    assert.match(
      replaced,
      /^delete table ip kube-nftproxy$/m,
      'the first sync replaces the table atomically',
    );
    assert.equal(r.attempts, COUNT);
    assert.deepEqual(
      { refused: r.refused, timedOut: r.timedOut, errors: r.errors },
      { refused: 0, timedOut: 0, errors: [] },
    );
    assert.deepEqual(names(r), ['web-2', 'web-3']);
  });

  it('rejects a Service without endpoints, and drops its address once the Service is gone', async () => {
    server.delete('EndpointSlice', NS, 'web-a');
    await eventually(async () => (await probe(5)).refused === 5, 'connections to be refused');
    server.delete('Service', NS, 'web');
    // An unallocated ClusterIP inside --service-cidr is dropped (kube-proxy's rule), not refused.
    await eventually(async () => {
      const r = await lab.probe('client-pod', {
        dst: WEB_VIP,
        port: 80,
        proto: 'tcp',
        count: 3,
        timeoutMs: 500,
      });
      return r.timedOut === 3;
    }, 'the deleted ClusterIP to be dropped');
    const trace = daemon!.view.trace({
      src: '10.244.1.50',
      dst: WEB_VIP,
      port: 80,
      proto: 'tcp',
      from: 'pod',
    });
    assert.equal((trace as { verdict: string }).verdict, 'drop');
  });
});

/** The test server stores any object with metadata; client-node's classes lack its index signature. */
function stored(o: object): StoredObject {
  return o as StoredObject;
}

function same(a: string[], b: string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** waitFor for an async predicate: retry until it holds; the timeout is a generous bound. */
async function eventually(
  predicate: () => Promise<boolean>,
  what: string,
  timeoutMs = 90_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
