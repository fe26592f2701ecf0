import assert from 'node:assert/strict';
import type { V1Service } from '@kubernetes/client-node';
import { LAB, Lab, type ProbeResult } from '../../scripts/lab/index.js';
import { Daemon } from '../../src/daemon.js';
import { ErrorCodes, ProxyError } from '../../src/errors.js';
import { silentLogger } from '../../src/log.js';
import { createNft, type Nft } from '../../src/rules/nft/exec.js';
import type { Transaction } from '../../src/rules/nft/transaction.js';
import { TestApiServer, type StoredObject } from '../support/api-server.js';
import { requireKernel } from '../support/capabilities.js';
import { node, service, slice } from '../support/objects.js';
import { waitFor } from '../support/wait-for.js';
import { testDaemonConfig, testKubeSource } from '../support/daemon-harness.js';

/**
 * A Service whose rules nft refuses costs only itself (issue #11): the daemon finds it with
 * `nft -c`, holds it out with nft's reason on /debug/services, applies everything else through
 * the real nft, stays healthy, and gives it its rules once its objects change. Every refusal
 * the model knew of (colliding frontends, nested loadBalancerSourceRanges: "File exists") the
 * model now prevents, and the last case shows the nested ranges programmed; so the refusal
 * comes through a seam: nft refuses any transaction (run or check) that names a marked
 * ClusterIP, as it would an object it cannot take. Every check is an outcome: who answered,
 * what the debug view lists.
 */
describe('kernel: a Service nft refuses is held out, the rest is applied', function () {
  this.timeout(300_000);
  const NS = 'demo';
  const WEB_VIP = '10.96.0.10';
  const BAD_VIP = '10.96.0.30';
  const LATE_VIP = '10.96.0.31';
  const MARKED_VIP = '10.96.0.77';
  const PODS = { 'web-1': '10.244.1.11', 'web-2': '10.244.1.12', 'bad-1': '10.244.1.21' };
  type PodName = keyof typeof PODS;
  const log = silentLogger();
  let lab: Lab;
  let server: TestApiServer;
  let daemon: Daemon | undefined;
  /** The seam: nft refuses any transaction whose text holds one of these. */
  const markers = new Set<string>([`${BAD_VIP} `]);

  const web = (pods: PodName[]): StoredObject =>
    stored(
      slice(
        NS,
        'web-a',
        'web',
        [{ name: 'http', port: 8080 }],
        pods.map((p) => ({ ip: PODS[p], nodeName: LAB.nodeName })),
      ),
    );
  const lb = (name: string, vip: string, ranges: string[], lbIP: string): StoredObject =>
    stored({
      ...service(NS, name, {
        type: 'LoadBalancer',
        clusterIP: vip,
        loadBalancerSourceRanges: ranges,
        ports: [{ name: 'http', port: 80, targetPort: 8080, nodePort: 0 }],
      }),
      status: { loadBalancer: { ingress: [{ ip: lbIP }] } },
    } as V1Service);
  const endpointsOf = (name: string): StoredObject =>
    stored(
      slice(
        NS,
        `${name}-a`,
        name,
        [{ name: 'http', port: 8080 }],
        [{ ip: PODS['bad-1'], nodeName: LAB.nodeName }],
      ),
    );

  const probe = (dst: string, count = 10): Promise<ProbeResult> =>
    lab.probe('client-pod', { dst, port: 80, proto: 'tcp', count });
  const names = (r: ProbeResult): string[] => [...r.answers.keys()].sort();
  const reaches = (dst: string, pods: PodName[], what: string): Promise<void> =>
    eventually(async () => {
      const r = await probe(dst);
      return (
        r.refused + r.timedOut === 0 && r.errors.length === 0 && names(r).join() === [...pods].sort().join()
      );
    }, what);

  const get = async (
    which: 'healthz' | 'metrics',
    path: string,
  ): Promise<{ status: number; body: string }> => {
    const res = await fetch(`http://127.0.0.1:${daemon!.servers![which].port}${path}`);
    return { status: res.status, body: await res.text() };
  };
  const heldOut = async (): Promise<Map<string, string>> => {
    const { skipped } = JSON.parse((await get('metrics', '/debug/services')).body) as {
      skipped: Array<{ kind: string; name: string; reason: string }>;
    };
    return new Map(
      skipped
        .filter((s) => s.kind === 'Service' && /nft refused/.test(s.reason))
        .map((s) => [s.name, s.reason]),
    );
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
    const real = createNft({ netns: lab.nodeNs, session: true });
    const guard = (tx: Transaction): void => {
      const text = tx.toString();
      for (const marker of markers)
        if (text.includes(marker))
          throw new ProxyError(
            ErrorCodes.NFT_REJECTED,
            `nft -f - failed: Error: injected refusal of ${marker}`,
          );
    };
    const nft: Nft = {
      run: async (tx) => {
        guard(tx);
        await real.run(tx);
      },
      check: async (tx) => {
        guard(tx);
        await real.check(tx);
      },
      list: (family, table) => real.list(family, table),
      listMapJson: (family, table, map, opts) => real.listMapJson(family, table, map, opts),
      version: () => real.version(),
      close: () => real.close?.(),
    };
    server = await TestApiServer.create({ bookmarkIntervalMs: 1_000 });
    server.create('Node', stored(node(LAB.nodeName, [LAB.nodeIp])));
    server.create(
      'Service',
      stored(
        service(NS, 'web', { clusterIP: WEB_VIP, ports: [{ name: 'http', port: 80, targetPort: 8080 }] }),
      ),
    );
    server.create('EndpointSlice', web(['web-1']));
    // Refused in the very first (full) sync.
    server.create('Service', lb('bad', BAD_VIP, ['10.0.0.0/8'], '192.0.2.40'));
    server.create('EndpointSlice', endpointsOf('bad'));
    const config = testDaemonConfig(LAB.nodeName, [
      '--cluster-cidr',
      LAB.clusterCidr,
      '--service-cidr',
      LAB.serviceCidr,
      '--sync-period',
      '30s',
    ]);
    daemon = new Daemon(config, {
      log,
      env: { localAddresses: [LAB.nodeIp, LAB.nodePodIp] },
      nft,
      source: testKubeSource(server, LAB.nodeName, log),
    });
    await daemon.start();
    await waitFor(() => daemon!.syncs > 0, { timeoutMs: 60_000, what: 'the first sync' });
  });

  after(async () => {
    await daemon?.stop();
    await server?.close();
    await lab?.destroy();
  });

  it('holds out the Service nft refuses in the first full sync, with its reason; the rest works', async () => {
    await reaches(WEB_VIP, ['web-1'], 'web-1 to answer on the ClusterIP');
    const held = await heldOut();
    assert.deepEqual([...held.keys()], [`${NS}/bad`]);
    assert.match(held.get(`${NS}/bad`)!, /injected refusal/);
    assert.equal((await get('healthz', '/healthz')).status, 200);
    // Its ClusterIP has no rules: inside --service-cidr and unallocated, it is dropped.
    const r = await lab.probe('client-pod', {
      dst: BAD_VIP,
      port: 80,
      proto: 'tcp',
      count: 2,
      timeoutMs: 500,
    });
    assert.equal(r.timedOut, 2);
    const text = (await get('metrics', '/metrics')).body;
    assert.match(text, /^kube_nftproxy_services_held_out 1$/m);
    // kube-proxy's counter saw nft refuse that sync (for both families' tables); ours saw no
    // sync fail, since the rest was applied.
    for (const f of ['IPv4', 'IPv6'])
      assert.match(
        text,
        new RegExp(`^kubeproxy_sync_proxy_rules_nftables_sync_failures_total\\{ip_family="${f}"\\} 1$`, 'm'),
      );
    assert.match(text, /^kube_nftproxy_sync_failures_total 0$/m);
  });

  it("holds out a refused Service that arrives later, in the same partial sync as another Service's change", async () => {
    markers.add(`${LATE_VIP} `);
    server.create('Service', lb('late', LATE_VIP, ['10.0.0.0/8'], '192.0.2.41'));
    server.create('EndpointSlice', endpointsOf('late'));
    server.update('EndpointSlice', web(['web-2']));
    await reaches(WEB_VIP, ['web-2'], "web's new endpoint to answer");
    await eventually(async () => (await heldOut()).has(`${NS}/late`), 'late to be held out');
    assert.equal((await get('healthz', '/healthz')).status, 200);
  });

  it('programs a held-out Service once its objects change and nft takes them (nested source ranges and all)', async () => {
    markers.delete(`${BAD_VIP} `);
    server.update('Service', lb('bad', BAD_VIP, ['10.0.0.0/8', '10.1.0.0/16'], '192.0.2.40'));
    await reaches(BAD_VIP, ['bad-1'], 'the fixed Service to answer');
    assert.deepEqual([...(await heldOut()).keys()], [`${NS}/late`]);
    await reaches(WEB_VIP, ['web-2'], 'web to keep answering');
  });

  it('holds out a Service refused through the seam, and releases it when it changes', async () => {
    markers.add(`${MARKED_VIP} `);
    server.create(
      'Service',
      stored(
        service(NS, 'marked', {
          clusterIP: MARKED_VIP,
          ports: [{ name: 'http', port: 80, targetPort: 8080 }],
        }),
      ),
    );
    server.create('EndpointSlice', endpointsOf('marked'));
    await eventually(async () => (await heldOut()).has(`${NS}/marked`), 'marked to be held out');
    assert.match((await heldOut()).get(`${NS}/marked`)!, /injected refusal/);
    server.update('EndpointSlice', web(['web-1', 'web-2']));
    await reaches(WEB_VIP, ['web-1', 'web-2'], "web's endpoints to follow while marked is held out");
    assert.equal((await get('healthz', '/healthz')).status, 200);

    markers.delete(`${MARKED_VIP} `);
    server.update(
      'Service',
      stored(
        service(
          NS,
          'marked',
          { clusterIP: MARKED_VIP, ports: [{ name: 'http', port: 80, targetPort: 8080 }] },
          { labels: { fixed: 'yes' } },
        ),
      ),
    );
    await reaches(MARKED_VIP, ['bad-1'], 'the released Service to answer');
    assert.equal((await heldOut()).has(`${NS}/marked`), false);
  });
});

/** The test server stores any object with metadata; client-node's classes lack its index signature. */
function stored(o: object): StoredObject {
  return o as StoredObject;
}

/** Retry an async predicate until it holds; the timeout is a generous bound, never a measurement. */
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
