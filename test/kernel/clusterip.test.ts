import assert from 'node:assert/strict';
import { LAB, Lab } from '../../scripts/lab/index.js';
import { requireKernel } from '../support/capabilities.js';
import { service, slice } from '../support/objects.js';
import { runProxy, SourceDir } from '../support/proxy.js';

/**
 * ClusterIP Services through the real kernel: the proxy binary (--once) programs the node
 * namespace, real servers in pod namespaces answer with their name and the client address
 * they saw, and probes count who answered over 30 connections.
 */
describe('kernel: ClusterIP services', function () {
  this.timeout(180_000);
  let lab: Lab;
  let src: SourceDir;
  const NS = 'demo';
  const local = LAB.nodeName;

  const objects = (webEndpoints: string[]) => [
    // TCP + UDP on one Service; web-4 is in the slice but not ready; web-5 serves but is in no slice.
    service(NS, 'web', {
      clusterIP: '10.96.0.10',
      ports: [
        { name: 'http', port: 80, targetPort: 'http' },
        { name: 'dns', port: 53, protocol: 'UDP', targetPort: 5353 },
        { name: 'empty', port: 81 },
      ],
    }),
    slice(
      NS,
      'web-a',
      'web',
      [
        { name: 'http', port: 8080 },
        { name: 'dns', port: 5353, protocol: 'UDP' },
      ],
      [
        ...webEndpoints.map((ip) => ({ ip, nodeName: local })),
        { ip: '10.244.1.14', nodeName: local, ready: false },
      ],
    ),
    // A named targetPort resolves per slice: the second slice's pod serves it on 9090.
    service(NS, 'named', {
      clusterIP: '10.96.0.11',
      ports: [{ name: 'http', port: 80, targetPort: 'http' }],
    }),
    slice(NS, 'named-a', 'named', [{ name: 'http', port: 8080 }], [{ ip: '10.244.1.11', nodeName: local }]),
    slice(NS, 'named-b', 'named', [{ name: 'http', port: 9090 }], [{ ip: '10.244.1.13', nodeName: local }]),
    // A Service with no endpoints at all.
    service(NS, 'none', { clusterIP: '10.96.0.12', ports: [{ port: 80 }] }),
    // Hairpin: web-1 alone behind a Service it calls itself.
    service(NS, 'self', { clusterIP: '10.96.0.13', ports: [{ port: 80 }] }),
    slice(NS, 'self-a', 'self', [{ port: 8080 }], [{ ip: '10.244.1.11', nodeName: local }]),
  ];

  const apply = async (webEndpoints: string[]): Promise<void> => {
    await src.write({ 'objects.yaml': objects(webEndpoints) });
    const r = await runProxy(lab.nodeNs, [
      '--source',
      src.path,
      '--hostname-override',
      local,
      '--cluster-cidr',
      LAB.clusterCidr,
      '--service-cidr',
      LAB.serviceCidr,
      '--once',
    ]);
    assert.equal(r.code, 0, r.stderr);
  };

  before(async function () {
    requireKernel(this);
    await Lab.sweep();
    lab = await Lab.create();
    src = await SourceDir.create();
    for (const [i, ip] of [
      '10.244.1.11',
      '10.244.1.12',
      '10.244.1.13',
      '10.244.1.14',
      '10.244.1.15',
    ].entries()) {
      await lab.addPod(`web-${i + 1}`, { ip });
      await lab.serve(`web-${i + 1}`, { tcp: [8080, 9090], udp: [5353] });
    }
    await lab.addPod('client-pod', { ip: '10.244.1.50' });
    await lab.addClient('outside');
    await apply(['10.244.1.11', '10.244.1.12', '10.244.1.13']);
  });

  after(async () => {
    await lab?.destroy();
    await src?.remove();
  });

  const names = (r: { answers: Map<string, number> }): string[] => [...r.answers.keys()].sort();

  it('spreads TCP over every ready endpoint and nothing else', async () => {
    const r = await lab.probe('client-pod', { dst: '10.96.0.10', port: 80, proto: 'tcp' });
    assert.deepEqual(names(r), ['web-1', 'web-2', 'web-3']);
    assert.equal(r.attempts, 30);
    assert.equal(r.refused + r.timedOut, 0);
  });

  it('spreads UDP over every ready endpoint, replies reaching the client', async () => {
    const r = await lab.probe('client-pod', { dst: '10.96.0.10', port: 53, proto: 'udp' });
    assert.deepEqual(names(r), ['web-1', 'web-2', 'web-3']);
    assert.equal(r.refused + r.timedOut, 0);
  });

  it('resolves a named targetPort per EndpointSlice port', async () => {
    const r = await lab.probe('client-pod', { dst: '10.96.0.11', port: 80, proto: 'tcp' });
    assert.deepEqual(names(r), ['web-1', 'web-3']);
    assert.equal(r.refused + r.timedOut, 0);
  });

  it('refuses at once a Service port with no endpoints', async () => {
    const r = await lab.probe('client-pod', { dst: '10.96.0.12', port: 80, proto: 'tcp' });
    assert.equal(r.refused, 30);
    const u = await lab.probe('client-pod', { dst: '10.96.0.10', port: 81, proto: 'tcp', count: 5 });
    assert.equal(u.refused, 5, 'a defined port without endpoints');
  });

  it('refuses a port the ClusterIP does not define', async () => {
    const r = await lab.probe('client-pod', { dst: '10.96.0.10', port: 8443, proto: 'tcp', count: 10 });
    assert.equal(r.refused, 10);
    const u = await lab.probe('client-pod', { dst: '10.96.0.10', port: 9999, proto: 'udp', count: 5 });
    assert.equal(u.refused, 5);
  });

  it('drops traffic to an unallocated IP of the service CIDR (a timeout)', async () => {
    const r = await lab.probe('client-pod', {
      dst: '10.96.5.5',
      port: 80,
      proto: 'tcp',
      count: 3,
      timeoutMs: 1500,
    });
    assert.equal(r.timedOut, 3);
  });

  it('masquerades node-to-ClusterIP traffic and not pod-to-ClusterIP traffic', async () => {
    const fromNode = await lab.probe('node', { dst: '10.96.0.10', port: 80, proto: 'tcp' });
    assert.deepEqual(names(fromNode), ['web-1', 'web-2', 'web-3']);
    assert.deepEqual([...fromNode.clients], [LAB.nodePodIp], 'the node is masqueraded');
    const fromPod = await lab.probe('client-pod', { dst: '10.96.0.10', port: 80, proto: 'tcp' });
    assert.deepEqual([...fromPod.clients], ['10.244.1.50'], 'a pod keeps its address');
  });

  it('masquerades traffic from outside the cluster CIDR', async () => {
    await lab.exec('outside', ['ip', 'route', 'add', LAB.serviceCidr, 'via', LAB.nodeIp]);
    const r = await lab.probe('outside', { dst: '10.96.0.10', port: 80, proto: 'tcp' });
    assert.deepEqual(names(r), ['web-1', 'web-2', 'web-3']);
    assert.deepEqual([...r.clients], [LAB.nodePodIp]);
  });

  it('masquerades a pod that reaches itself through its Service (hairpin)', async () => {
    const r = await lab.probe('web-1', { dst: '10.96.0.13', port: 80, proto: 'tcp' });
    assert.deepEqual(names(r), ['web-1']);
    assert.deepEqual([...r.clients], [LAB.nodePodIp]);
    // and another pod reaching the same Service is not masqueraded
    const other = await lab.probe('web-2', { dst: '10.96.0.13', port: 80, proto: 'tcp', count: 5 });
    assert.deepEqual([...other.clients], ['10.244.1.12']);
  });

  it('follows a change of endpoints on the next sync and leaves other Services alone', async () => {
    const before = await lab.nftList('table ip kube-nftproxy');
    await apply(['10.244.1.12', '10.244.1.15']);
    const r = await lab.probe('client-pod', { dst: '10.96.0.10', port: 80, proto: 'tcp' });
    assert.deepEqual(names(r), ['web-2', 'web-5']);
    const named = await lab.probe('client-pod', { dst: '10.96.0.11', port: 80, proto: 'tcp' });
    assert.deepEqual(names(named), ['web-1', 'web-3']);
    const after = await lab.nftList('table ip kube-nftproxy');
    const elementsOf = (text: string, ip: string) =>
      text
        .split(/[\n,{}]/)
        .map((s) => s.trim())
        .filter((s) => s.startsWith(`${ip} . `))
        .sort();
    assert.deepEqual(elementsOf(after, '10.96.0.11'), elementsOf(before, '10.96.0.11'));
    assert.notDeepEqual(elementsOf(after, '10.96.0.10'), elementsOf(before, '10.96.0.10'));
  });
});
