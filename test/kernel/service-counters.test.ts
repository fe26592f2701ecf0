import assert from 'node:assert/strict';
import type { V1Service } from '@kubernetes/client-node';
import { LAB, Lab, type ProbeResult } from '../../scripts/lab/index.js';
import { Daemon } from '../../src/daemon.js';
import { silentLogger } from '../../src/log.js';
import { createNft, type Nft } from '../../src/rules/nft/exec.js';
import { TestApiServer, type StoredObject } from '../support/api-server.js';
import { requireKernel } from '../support/capabilities.js';
import { newNft } from '../support/nft-versions.js';
import { node, service, slice } from '../support/objects.js';
import { waitFor } from '../support/wait-for.js';
import { testDaemonConfig, testKubeSource } from '../support/daemon-harness.js';

/**
 * --service-counters through the real kernel: the whole daemon (real informers against a
 * TestApiServer, its nft in a lab node namespace) and real connections. After N connections to
 * a Service with endpoints, M to one without (refused), K datagrams from a source outside
 * loadBalancerSourceRanges (dropped) and L to an eTP Local NodePort without a local endpoint
 * (dropped; pods short-circuit to the remote one), /metrics and /debug/services say exactly N,
 * M, K and L per Service frontend; a partial sync of another Service keeps them, and counting
 * goes on. Drops are counted with UDP: one datagram is one try, where a dropped TCP client
 * tries again on its own schedule. IPv6 Services count in the ip6 table alike. Runs with
 * KNP_NEW_NFT's nft when set.
 */
describe('kernel: per-Service counters (issue #15)', function () {
  this.timeout(300_000);
  const NS = 'cnt';
  const WEB_VIP = '10.96.4.10';
  const EMPTY_VIP = '10.96.4.11';
  const LB_VIP = '10.96.4.12';
  const LOCAL_VIP = '10.96.4.13';
  const OTHER_VIP = '10.96.4.14';
  const LB_IP = '192.0.2.40';
  /** IPv6 ClusterIPs: the ip6 table's counters, printed as `[ip]:port`. */
  const WEB6_VIP = 'fd00:10:96::4:10';
  const EMPTY6_VIP = 'fd00:10:96::4:11';
  const ALLOWED = LAB.clientIp;
  const DENIED = '172.30.0.101';
  const LOCAL_NODEPORT = 30480;
  const [N, M, K, A, L, P, N6, M6] = [12, 7, 5, 4, 3, 6, 9, 2];
  const log = silentLogger();
  let lab: Lab;
  let server: TestApiServer;
  let nft: Nft;
  let daemon: Daemon | undefined;

  const stored = (o: object): StoredObject => o as StoredObject;
  const clusterIP = (name: string, vip: string): StoredObject =>
    stored(
      service(NS, name, {
        clusterIP: vip,
        ports: [{ name: 'http', port: 80, targetPort: 8080 }],
      }),
    );
  const endpoints = (name: string, pods: Array<{ ip: string; nodeName: string }>): StoredObject =>
    stored(
      slice(
        NS,
        `${name}-a`,
        name,
        [
          { name: 'http', port: 8080 },
          { name: 'dns', port: 5353, protocol: 'UDP' },
        ],
        pods,
      ),
    );
  const WEB_1 = { ip: '10.244.1.11', nodeName: LAB.nodeName };
  const WEB_2 = { ip: '10.244.1.12', nodeName: LAB.nodeName };
  const WEB_3 = { ip: '10.244.1.13', nodeName: LAB.nodeName };
  const WEB_1_6 = { ip: 'fd00:10:244:1::11', nodeName: LAB.nodeName };
  const v6Service = (name: string, vip: string): StoredObject =>
    stored(
      service(NS, name, {
        ipFamilyPolicy: 'SingleStack',
        ipFamilies: ['IPv6'],
        clusterIP: vip,
        clusterIPs: [vip],
        ports: [{ name: 'http', port: 80, targetPort: 8080 }],
      }),
    );
  const FAR_1 = { ip: '10.244.2.11', nodeName: LAB.remoteNodeName };

  const get = async (path: string): Promise<string> => {
    const res = await fetch(`http://127.0.0.1:${daemon!.servers!.metrics.port}${path}`);
    assert.equal(res.status, 200, path);
    return res.text();
  };

  type Counts = { connections: number; noEndpoints: number; sourceRangeDrops: number };
  /** /debug/services' counters, by `service frontend`; none while no read has finished yet. */
  const debugCounters = async (): Promise<Map<string, Counts>> => {
    const body = JSON.parse(await get('/debug/services')) as {
      countersSince?: string;
      ports: Array<{ service: string; counters?: Array<Counts & { frontend: string }> }>;
    };
    if (body.countersSince === undefined) return new Map();
    assert.ok(!Number.isNaN(Date.parse(body.countersSince)), 'countersSince is a time');
    const out = new Map<string, Counts>();
    for (const p of body.ports)
      for (const { frontend, ...c } of p.counters ?? []) out.set(`${p.service} ${frontend}`, c);
    return out;
  };
  /** /metrics' three counters, by `metric service frontend protocol port`. */
  const metricCounters = async (): Promise<Map<string, number>> => {
    const out = new Map<string, number>();
    for (const line of (await get('/metrics')).split('\n')) {
      const m = /^kube_nftproxy_service_(\w+)_total\{([^}]*)\} (\d+)$/.exec(line);
      if (!m) continue;
      const labels = Object.fromEntries([...m[2]!.matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1], l[2]]));
      out.set(
        `${m[1]} ${labels.namespace}/${labels.service} ${labels.frontend} ${labels.protocol} ${labels.port}`,
        Number(m[3]),
      );
    }
    return out;
  };

  /** What each Service frontend (service, frontend, protocol, port name) must count after the traffic below. */
  const expected = (web: number): Array<[string, string, string, string, Counts]> => [
    ['web', `${WEB_VIP}:80`, 'TCP', 'http', { connections: web, noEndpoints: 0, sourceRangeDrops: 0 }],
    ['empty', `${EMPTY_VIP}:80`, 'TCP', 'http', { connections: 0, noEndpoints: M, sourceRangeDrops: 0 }],
    ['guarded', `${LB_IP}:80`, 'TCP', 'http', { connections: A, noEndpoints: 0, sourceRangeDrops: 0 }],
    ['guarded', `${LB_IP}:53`, 'UDP', 'dns', { connections: 0, noEndpoints: 0, sourceRangeDrops: K }],
    [
      'local',
      `${LAB.nodeIp}:${LOCAL_NODEPORT}`,
      'TCP',
      'http',
      { connections: P, noEndpoints: 0, sourceRangeDrops: 0 },
    ],
    [
      'local',
      `${LAB.nodeIp}:${LOCAL_NODEPORT + 1}`,
      'UDP',
      'dns',
      { connections: 0, noEndpoints: L, sourceRangeDrops: 0 },
    ],
    ['other', `${OTHER_VIP}:80`, 'TCP', 'http', { connections: 0, noEndpoints: 0, sourceRangeDrops: 0 }],
    ['web6', `[${WEB6_VIP}]:80`, 'TCP', 'http', { connections: N6, noEndpoints: 0, sourceRangeDrops: 0 }],
    ['empty6', `[${EMPTY6_VIP}]:80`, 'TCP', 'http', { connections: 0, noEndpoints: M6, sourceRangeDrops: 0 }],
  ];

  /** Both endpoints agree with `want`, exactly, once the reads catch up with the last packets. */
  const countsAre = async (web: number): Promise<void> => {
    const want = expected(web);
    const deadline = Date.now() + 60_000;
    for (;;) {
      const got = await debugCounters();
      const actual = want.map(([svc, fe]) => got.get(`${NS}/${svc} ${fe}`));
      if (JSON.stringify(actual) === JSON.stringify(want.map((w) => w[4]))) break;
      if (Date.now() > deadline)
        assert.fail(`counters: ${JSON.stringify(actual)}, want ${JSON.stringify(want)}`);
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    const metrics = await metricCounters();
    const metric = (name: string, svc: string, fe: string, proto: string, port: string) =>
      metrics.get(`${name} ${NS}/${svc} ${fe} ${proto} ${port}`);
    for (const [svc, fe, proto, port, c] of want) {
      assert.equal(metric('connections', svc, fe, proto, port), c.connections, `${svc} ${fe} connections`);
      assert.equal(metric('no_endpoints', svc, fe, proto, port), c.noEndpoints, `${svc} ${fe} no endpoints`);
      // Only frontends that source ranges guard have the drop counter.
      assert.equal(
        metric('source_range_drops', svc, fe, proto, port),
        svc === 'guarded' && fe.startsWith(LB_IP) ? c.sourceRangeDrops : undefined,
        `${svc} ${fe} source range drops`,
      );
    }
  };

  const answered = (r: ProbeResult, n: number, what: string): void =>
    assert.deepEqual(
      { answered: [...r.answers.values()].reduce((a, b) => a + b, 0), errors: r.errors },
      { answered: n, errors: [] },
      what,
    );

  before(async function () {
    requireKernel(this);
    await Lab.sweep();
    lab = await Lab.create({ ipv6: true });
    await lab.addPod('web-1', { ip: WEB_1.ip, ipv6: WEB_1_6.ip });
    await lab.addPod('web-2', { ip: WEB_2.ip });
    await lab.addPod('web-3', { ip: WEB_3.ip });
    await lab.addPod('far-1', { ip: FAR_1.ip, local: false });
    for (const pod of ['web-1', 'web-2', 'web-3', 'far-1'])
      await lab.serve(pod, { tcp: [8080], udp: [5353] });
    await lab.addPod('client-pod', { ip: '10.244.1.50', ipv6: 'fd00:10:244:1::50' });
    await lab.addClient('allowed', ALLOWED);
    await lab.addClient('denied', DENIED);
    for (const client of ['allowed', 'denied'])
      await lab.exec(client, ['ip', 'route', 'add', '192.0.2.0/24', 'via', LAB.nodeIp]);
    const nftPath = process.env.KNP_NEW_NFT ? newNft()?.path : undefined;
    nft = createNft({ netns: lab.nodeNs, session: true, ...(nftPath ? { nftPath } : {}) });
    server = await TestApiServer.create({ bookmarkIntervalMs: 1_000 });
    server.create('Node', stored(node(LAB.nodeName, [LAB.nodeIp, LAB.nodeIp6])));
    server.create('Service', v6Service('web6', WEB6_VIP));
    server.create(
      'EndpointSlice',
      stored(slice(NS, 'web6-a', 'web6', [{ name: 'http', port: 8080 }], [WEB_1_6], 'IPv6')),
    );
    server.create('Service', v6Service('empty6', EMPTY6_VIP));
    server.create('Service', clusterIP('web', WEB_VIP));
    server.create('EndpointSlice', endpoints('web', [WEB_1, WEB_2]));
    server.create('Service', clusterIP('empty', EMPTY_VIP));
    server.create('Service', clusterIP('other', OTHER_VIP));
    server.create('EndpointSlice', endpoints('other', [WEB_1]));
    server.create(
      'Service',
      stored({
        ...service(NS, 'guarded', {
          type: 'LoadBalancer',
          clusterIP: LB_VIP,
          loadBalancerSourceRanges: [`${ALLOWED}/32`],
          ports: [
            { name: 'http', port: 80, targetPort: 8080, nodePort: 30470 },
            { name: 'dns', port: 53, protocol: 'UDP', targetPort: 5353, nodePort: 30471 },
          ],
        }),
        status: { loadBalancer: { ingress: [{ ip: LB_IP }] } },
      } as V1Service),
    );
    server.create('EndpointSlice', endpoints('guarded', [WEB_1]));
    // eTP Local, its only endpoint on the remote node: outside clients are dropped here, pods
    // short-circuit to it.
    server.create(
      'Service',
      stored(
        service(NS, 'local', {
          type: 'NodePort',
          clusterIP: LOCAL_VIP,
          externalTrafficPolicy: 'Local',
          ports: [
            { name: 'http', port: 80, targetPort: 8080, nodePort: LOCAL_NODEPORT },
            { name: 'dns', port: 53, protocol: 'UDP', targetPort: 5353, nodePort: LOCAL_NODEPORT + 1 },
          ],
        }),
      ),
    );
    server.create('EndpointSlice', endpoints('local', [FAR_1]));
    const config = testDaemonConfig(LAB.nodeName, [
      '--node-ip',
      `${LAB.nodeIp},${LAB.nodeIp6}`,
      '--cluster-cidr',
      `${LAB.clusterCidr},${LAB.clusterCidr6}`,
      '--service-cidr',
      `${LAB.serviceCidr},${LAB.serviceCidr6}`,
      '--sync-period',
      '30s',
    ]);
    daemon = new Daemon(config, {
      log,
      env: { localAddresses: [LAB.nodeIp, LAB.nodePodIp, LAB.nodeIp6, LAB.nodePodIp6] },
      nft,
      source: testKubeSource(server, LAB.nodeName, log),
    });
    await daemon.start();
    await waitFor(() => daemon!.syncs > 0, { timeoutMs: 60_000, what: 'the first sync' });
  });

  after(async () => {
    await daemon?.stop();
    nft?.close?.();
    await server?.close();
    await lab?.destroy();
  });

  it('counts exactly the connections sent, refused and dropped, per Service frontend', async () => {
    const web = await lab.probe('client-pod', { dst: WEB_VIP, port: 80, proto: 'tcp', count: N });
    answered(web, N, 'web answers every connection');
    const empty = await lab.probe('client-pod', { dst: EMPTY_VIP, port: 80, proto: 'tcp', count: M });
    assert.equal(empty.refused, M, 'a Service without endpoints refuses');
    const allowed = await lab.probe('allowed', { dst: LB_IP, port: 80, proto: 'tcp', count: A });
    answered(allowed, A, 'an allowed source reaches the LB IP');
    const denied = await lab.probe('denied', {
      dst: LB_IP,
      port: 53,
      proto: 'udp',
      count: K,
      timeoutMs: 300,
    });
    assert.equal(denied.timedOut, K, 'a source outside the ranges is dropped');
    const outside = await lab.probe('allowed', {
      dst: LAB.nodeIp,
      port: LOCAL_NODEPORT + 1,
      proto: 'udp',
      count: L,
      timeoutMs: 300,
    });
    assert.equal(outside.timedOut, L, 'eTP Local without a local endpoint drops outside clients');
    const fromPod = await lab.probe('client-pod', {
      dst: LAB.nodeIp,
      port: LOCAL_NODEPORT,
      proto: 'tcp',
      count: P,
    });
    answered(fromPod, P, 'a pod short-circuits to the remote endpoint');
    const web6 = await lab.probe('client-pod', { dst: WEB6_VIP, port: 80, proto: 'tcp', count: N6 });
    answered(web6, N6, 'the IPv6 Service answers every connection');
    const empty6 = await lab.probe('client-pod', { dst: EMPTY6_VIP, port: 80, proto: 'tcp', count: M6 });
    assert.equal(empty6.refused, M6, 'an IPv6 Service without endpoints refuses');
    await countsAre(N);
  });

  it('keeps them across a partial sync of another Service, and goes on counting', async () => {
    const before = daemon!.syncs;
    server.update('EndpointSlice', endpoints('other', [WEB_1, WEB_2]));
    await waitFor(() => daemon!.syncs > before, { timeoutMs: 60_000, what: 'the partial sync' });
    const tx = daemon!.applier.lastTransaction;
    assert.match(tx, new RegExp(OTHER_VIP.replace(/\./g, '\\.')), tx);
    assert.doesNotMatch(tx, /table ip kube-nftproxy/, `a partial sync, not a table replacement:\n${tx}`);
    await countsAre(N);
    const more = await lab.probe('client-pod', { dst: WEB_VIP, port: 80, proto: 'tcp', count: 3 });
    answered(more, 3, 'web still answers');
    await countsAre(N + 3);
  });

  /** Waits for the partial sync that follows a change of `web`'s endpoints. */
  const webSynced = async (pods: Array<{ ip: string; nodeName: string }>): Promise<void> => {
    const before = daemon!.syncs;
    server.update('EndpointSlice', endpoints('web', pods));
    await waitFor(() => daemon!.syncs > before, { timeoutMs: 60_000, what: 'the partial sync' });
    const tx = daemon!.applier.lastTransaction;
    assert.doesNotMatch(tx, /table ip kube-nftproxy/, `a partial sync, not a table replacement:\n${tx}`);
  };

  it("keeps a Service's counter when its endpoints change but not their number, and starts it again when the number changes (README)", async () => {
    // Another pod, the same count: only the backends map changes; service-ips' element stays.
    await webSynced([WEB_1, WEB_3]);
    await countsAre(N + 3);
    // One endpoint fewer: the frontend's element goes to another pick chain (delete + add).
    await webSynced([WEB_1]);
    await countsAre(0);
    const again = await lab.probe('client-pod', { dst: WEB_VIP, port: 80, proto: 'tcp', count: 2 });
    answered(again, 2, 'web answers from its one endpoint');
    await countsAre(2);
  });
});
