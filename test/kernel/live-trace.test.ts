import assert from 'node:assert/strict';
import { request } from 'node:http';
import { LAB, Lab, type ProbeResult } from '../../scripts/lab/index.js';
import { Daemon } from '../../src/daemon.js';
import { silentLogger } from '../../src/log.js';
import { createNft, type Nft } from '../../src/rules/nft/exec.js';
import type { LiveTraceAnswer } from '../../src/trace/live-trace.js';
import { requireKernel } from '../support/capabilities.js';
import { HandSource, testDaemonConfig } from '../support/daemon-harness.js';
import { node, service, slice } from '../support/objects.js';
import { waitFor } from '../support/wait-for.js';

/**
 * GET /debug/trace?live=1 with the whole daemon in this process and its nft in a lab node
 * namespace: the trace is armed (the test waits for /debug/trace/live to say so: no sleep),
 * then a real connection is made, and the kernel's path must name the endpoint that answered,
 * among the model's endpoints, with the model agreeing. Afterwards the trace table is gone.
 */
describe('kernel: live trace (/debug/trace?live=1)', function () {
  this.timeout(240_000);
  const NS = 'lt';
  const VIP = '10.96.5.10';
  const EMPTY_VIP = '10.96.5.20';
  const NODE_PORT = 30085;
  const PODS = { 'web-1': '10.244.1.11', 'web-2': '10.244.1.12' } as const;
  const PODS6 = { 'web-1': 'fd00:10:244:1::11', 'web-2': 'fd00:10:244:1::12' } as const;
  const CLIENT_POD = '10.244.1.50';
  const CLIENT_POD6 = 'fd00:10:244:1::50';
  const VIP6 = 'fd00:10:96::50a';
  let lab: Lab;
  let nft: Nft;
  let daemon: Daemon | undefined;
  let metrics: string;

  before(async function () {
    requireKernel(this);
    await Lab.sweep();
    lab = await Lab.create({ ipv6: true });
    for (const [name, ip] of Object.entries(PODS)) {
      await lab.addPod(name, { ip, ipv6: PODS6[name as keyof typeof PODS6] });
      await lab.serve(name, { tcp: [8080], udp: [5353] });
    }
    await lab.addPod('client-pod', { ip: CLIENT_POD, ipv6: CLIENT_POD6 });
    await lab.addClient('outside');
    nft = createNft({ netns: lab.nodeNs, session: true });
    // A leftover of a daemon that died mid-trace: the start removes it.
    await lab.nft('add table ip kube-nftproxy-trace\nadd chain ip kube-nftproxy-trace prerouting');
    const source = new HandSource();
    daemon = new Daemon(
      testDaemonConfig(LAB.nodeName, [
        '--cluster-cidr',
        `${LAB.clusterCidr},${LAB.clusterCidr6}`,
        '--service-cidr',
        `${LAB.serviceCidr},${LAB.serviceCidr6}`,
      ]),
      { log: silentLogger(), env: { localAddresses: [LAB.nodeIp, LAB.nodePodIp] }, nft, source },
    );
    await daemon.start();
    const h = source.handler!;
    h.upsert('Node', node(LAB.nodeName, [LAB.nodeIp]));
    h.upsert(
      'Service',
      service(NS, 'web', {
        type: 'NodePort',
        clusterIP: VIP,
        ports: [
          { name: 'http', port: 80, targetPort: 8080, nodePort: NODE_PORT },
          { name: 'dns', port: 53, protocol: 'UDP', targetPort: 5353 },
        ],
      }),
    );
    h.upsert(
      'EndpointSlice',
      slice(
        NS,
        'web-a',
        'web',
        [
          { name: 'http', port: 8080 },
          { name: 'dns', port: 5353, protocol: 'UDP' },
        ],
        Object.values(PODS).map((ip) => ({ ip, nodeName: LAB.nodeName })),
      ),
    );
    h.upsert(
      'Service',
      service(NS, 'web6', {
        ipFamilyPolicy: 'SingleStack',
        ipFamilies: ['IPv6'],
        clusterIP: VIP6,
        clusterIPs: [VIP6],
        ports: [{ name: 'http', port: 80, targetPort: 8080 }],
      }),
    );
    h.upsert(
      'EndpointSlice',
      slice(
        NS,
        'web6-a',
        'web6',
        [{ name: 'http', port: 8080 }],
        Object.values(PODS6).map((ip) => ({ ip, nodeName: LAB.nodeName })),
        'IPv6',
      ),
    );
    h.upsert('Service', service(NS, 'empty', { clusterIP: EMPTY_VIP, ports: [{ port: 80 }] }));
    h.synced();
    await waitFor(() => daemon!.syncs > 0, { timeoutMs: 60_000, what: 'the first sync' });
    metrics = `127.0.0.1:${daemon.servers!.metrics.port}`;
  });

  after(async () => {
    await daemon?.stop();
    await lab?.destroy();
  });

  /**
   * Starts a live trace and resolves once /debug/trace/live says it is armed, with the answer
   * to come (wrapped: an async function would flatten a promise it returns).
   */
  const armed = async (
    query: string,
  ): Promise<{ answer: Promise<{ status: number; body: LiveTraceAnswer }> }> => {
    const answer = get(metrics, `/debug/trace?${query}&live=1&timeout=60`);
    let state = '';
    await waitForAsync(async () => {
      state = ((await get(metrics, '/debug/trace/live')).body as unknown as { state: string }).state;
      return state === 'armed';
    }, 'the live trace to be armed');
    return { answer };
  };

  const traceTables = async (): Promise<string> => (await lab.exec('node', ['nft', 'list', 'tables'])).stdout;

  const answeredBy = (r: ProbeResult): string => {
    const names = [...r.answers.keys()];
    assert.equal(names.length, 1, `one connection, one answer: ${JSON.stringify([...r.answers])}`);
    return names[0]!;
  };

  it('removed the trace table a crashed daemon left behind', async () => {
    assert.doesNotMatch(await traceTables(), /kube-nftproxy-trace/);
  });

  it('a ClusterIP from a pod: the kernel DNATs to the endpoint that answered, as the model says', async () => {
    const { answer: pending } = await armed(`src=${CLIENT_POD}&dst=${VIP}&port=80&proto=tcp`);
    const r = await lab.probe('client-pod', { dst: VIP, port: 80, proto: 'tcp', count: 1 });
    const { status, body } = await pending;
    assert.equal(status, 200, JSON.stringify(body));
    const pod = answeredBy(r) as keyof typeof PODS;
    assert.equal(body.kernel?.dnat, `${PODS[pod]}:8080`, JSON.stringify(body, null, 2));
    assert.equal(body.model.verdict, 'dnat');
    assert.ok(
      body.model.verdict === 'dnat' &&
        body.model.endpoints.some((e) => `${e.ip}:${e.port}` === body.kernel?.dnat),
    );
    assert.equal(body.kernel?.verdict, 'accept');
    assert.equal(body.kernel?.masquerade, false);
    assert.equal(body.agree, true, JSON.stringify(body.disagreements));
    assert.ok(
      body.kernel?.chains.includes('ip kube-nftproxy nat-prerouting'),
      body.kernel?.chains.join('\n'),
    );
    assert.doesNotMatch(await traceTables(), /kube-nftproxy-trace/);
  });

  it('UDP to a ClusterIP from a pod: the first datagram DNATed to the endpoint that answered', async () => {
    const { answer: pending } = await armed(`src=${CLIENT_POD}&dst=${VIP}&port=53&proto=udp`);
    const r = await lab.probe('client-pod', { dst: VIP, port: 53, proto: 'udp', count: 1 });
    const { status, body } = await pending;
    assert.equal(status, 200, JSON.stringify(body));
    const pod = answeredBy(r) as keyof typeof PODS;
    assert.equal(body.kernel?.dnat, `${PODS[pod]}:5353`, JSON.stringify(body, null, 2));
    assert.equal(body.agree, true, JSON.stringify(body.disagreements));
  });

  it('a NodePort from outside: DNAT to the endpoint that answered, masqueraded, as the model says', async () => {
    const { answer: pending } = await armed(
      `src=${LAB.clientIp}&dst=${LAB.nodeIp}&port=${NODE_PORT}&proto=tcp`,
    );
    const r = await lab.probe('outside', { dst: LAB.nodeIp, port: NODE_PORT, proto: 'tcp', count: 1 });
    const { status, body } = await pending;
    assert.equal(status, 200, JSON.stringify(body));
    const pod = answeredBy(r) as keyof typeof PODS;
    assert.equal(body.kernel?.dnat, `${PODS[pod]}:8080`, JSON.stringify(body, null, 2));
    assert.equal(body.kernel?.masquerade, true);
    assert.equal(body.agree, true, JSON.stringify(body.disagreements));
    assert.doesNotMatch(await traceTables(), /kube-nftproxy-trace/);
  });

  it('an IPv6 ClusterIP from a pod (the ip6 trace table): DNAT to the endpoint that answered', async () => {
    const { answer: pending } = await armed(`src=${CLIENT_POD6}&dst=${VIP6}&port=80&proto=tcp`);
    const r = await lab.probe('client-pod', { dst: VIP6, port: 80, proto: 'tcp', count: 1 });
    const { status, body } = await pending;
    assert.equal(status, 200, JSON.stringify(body));
    const pod = answeredBy(r) as keyof typeof PODS6;
    assert.equal(body.kernel?.dnat, `[${PODS6[pod]}]:8080`, JSON.stringify(body, null, 2));
    assert.ok(
      body.kernel?.chains.includes('ip6 kube-nftproxy nat-prerouting'),
      body.kernel?.chains.join('\n'),
    );
    assert.equal(body.agree, true, JSON.stringify(body.disagreements));
    assert.doesNotMatch(await traceTables(), /kube-nftproxy-trace/);
  });

  it('a ClusterIP from the node itself (the output hook): DNAT, masqueraded, as the model says', async () => {
    const { answer: pending } = await armed(`src=${LAB.nodeIp}&dst=${VIP}&port=80&proto=tcp`);
    const r = await lab.probe('node', { dst: VIP, port: 80, proto: 'tcp', count: 1, srcAddr: LAB.nodeIp });
    const { status, body } = await pending;
    assert.equal(status, 200, JSON.stringify(body));
    const pod = answeredBy(r) as keyof typeof PODS;
    assert.equal(body.kernel?.dnat, `${PODS[pod]}:8080`, JSON.stringify(body, null, 2));
    assert.ok(body.kernel?.chains.includes('ip kube-nftproxy nat-output'), body.kernel?.chains.join('\n'));
    assert.equal(body.kernel?.masquerade, true);
    assert.equal(body.agree, true, JSON.stringify(body.disagreements));
  });

  it('a Service without endpoints: the kernel rejects, as the model says', async () => {
    const { answer: pending } = await armed(`src=${CLIENT_POD}&dst=${EMPTY_VIP}&port=80&proto=tcp`);
    const r = await lab.probe('client-pod', { dst: EMPTY_VIP, port: 80, proto: 'tcp', count: 1 });
    const { status, body } = await pending;
    assert.equal(r.refused, 1);
    assert.equal(status, 200, JSON.stringify(body));
    assert.equal(body.model.verdict, 'reject');
    assert.equal(body.kernel?.verdict, 'reject', JSON.stringify(body, null, 2));
    assert.equal(body.kernel?.dnat, null);
    assert.equal(body.agree, true, JSON.stringify(body.disagreements));
  });

  it('flags a disagreement: another table dropping the packet the model sends to an endpoint', async () => {
    await lab.nft(
      [
        'add table ip elsewhere',
        'add chain ip elsewhere pre { type filter hook prerouting priority -150 ; }',
        `add rule ip elsewhere pre ip saddr ${CLIENT_POD} ip daddr ${VIP} tcp dport 80 drop`,
      ].join('\n'),
    );
    try {
      const { answer: pending } = await armed(`src=${CLIENT_POD}&dst=${VIP}&port=80&proto=tcp`);
      const r = await lab.probe('client-pod', { dst: VIP, port: 80, proto: 'tcp', count: 1, timeoutMs: 500 });
      const { body } = await pending;
      assert.equal(r.timedOut, 1);
      assert.equal(body.model.verdict, 'dnat');
      assert.equal(body.kernel?.verdict, 'drop', JSON.stringify(body, null, 2));
      assert.deepEqual(body.kernel?.chains, ['ip elsewhere pre']);
      assert.equal(body.agree, false);
      assert.deepEqual(body.disagreements, [
        'verdict: the model translates, the kernel says drop',
        'dnat: the model picks one of 10.244.1.11:8080, 10.244.1.12:8080, the kernel none',
      ]);
    } finally {
      await lab.nft('delete table ip elsewhere');
    }
  });

  it('one live trace at a time: a second one gets 409 while the first is armed', async () => {
    const { answer: pending } = await armed(`src=${CLIENT_POD}&dst=${VIP}&port=80&proto=tcp`);
    const second = await get(metrics, `/debug/trace?src=${CLIENT_POD}&dst=${VIP}&port=80&proto=tcp&live=1`);
    assert.equal(second.status, 409);
    assert.match(String((second.body as unknown as { error: string }).error), /one at a time/);
    await lab.probe('client-pod', { dst: VIP, port: 80, proto: 'tcp', count: 1 });
    assert.equal((await pending).body.agree, true);
    assert.doesNotMatch(await traceTables(), /kube-nftproxy-trace/);
  });

  it('a daemon stopping mid-trace ends the trace and removes its table', async () => {
    const { answer: pending } = await armed(`src=${CLIENT_POD}&dst=${VIP}&port=80&proto=tcp`);
    // The answer races the server's close: either it says why it ended, or the connection is cut.
    const settled = pending.then(
      ({ body }) => body.why ?? '',
      () => 'cut',
    );
    const stopping = daemon!;
    daemon = undefined;
    await stopping.stop();
    assert.match(await settled, /stopped|cut/);
    assert.doesNotMatch(await traceTables(), /kube-nftproxy-trace/);
  });
});

function get(hostPort: string, path: string): Promise<{ status: number; body: LiveTraceAnswer }> {
  const [host, port] = hostPort.split(':');
  return new Promise((resolve, reject) => {
    const req = request({ host, port: Number(port), path, method: 'GET' }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as LiveTraceAnswer }),
      );
    });
    req.on('error', reject);
    req.end();
  });
}

/** waitFor for an async predicate; the timeout is a generous bound, reaching it a failure. */
async function waitForAsync(
  predicate: () => Promise<boolean>,
  what: string,
  timeoutMs = 60_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
