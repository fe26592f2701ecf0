import assert from 'node:assert/strict';
import type { V1Service } from '@kubernetes/client-node';
import { LAB } from '../../scripts/lab/index.js';
import { service, slice } from '../support/objects.js';
import { caseTable, type Case, labFlags, addServingPods, tracedLab } from '../support/traced-probe.js';

/**
 * sessionAffinity: ClientIP through the real kernel, held to trace(): every connection of one
 * client lands on one endpoint among those trace() allows (another client may land
 * elsewhere); without affinity the same client is spread over all of them.
 */
describe('kernel: sessionAffinity ClientIP', function () {
  this.timeout(180_000);
  const NS = 'aff';
  const STICKY = '10.96.11.10';
  const PLAIN = '10.96.11.11';
  const LB_LOCAL = '192.0.2.95';

  const ports = [
    { name: 'http', port: 8080 },
    { name: 'dns', port: 5353, protocol: 'UDP' as const },
  ];
  const svcPorts = (nodePort?: number) => [
    { name: 'http', port: 80, targetPort: 8080, ...(nodePort ? { nodePort } : {}) },
    {
      name: 'dns',
      port: 53,
      protocol: 'UDP' as const,
      targetPort: 5353,
      ...(nodePort ? { nodePort: nodePort + 1 } : {}),
    },
  ];
  const affinity = {
    sessionAffinity: 'ClientIP',
    sessionAffinityConfig: { clientIP: { timeoutSeconds: 600 } },
  } as const;
  const endpoints = (name: string) =>
    slice(NS, `${name}-a`, name, ports, [
      { ip: '10.244.1.11', nodeName: LAB.nodeName },
      { ip: '10.244.1.12', nodeName: LAB.nodeName },
      { ip: '10.244.2.11', nodeName: LAB.remoteNodeName },
    ]);
  const local: V1Service = {
    ...service(NS, 'sticky-local', {
      type: 'LoadBalancer',
      clusterIP: '10.96.11.13',
      externalTrafficPolicy: 'Local',
      healthCheckNodePort: 30925,
      ports: svcPorts(30920),
      ...affinity,
    }),
    status: { loadBalancer: { ingress: [{ ip: LB_LOCAL }] } },
  };
  const objects = [
    service(NS, 'sticky', { clusterIP: STICKY, ports: svcPorts(), ...affinity }),
    endpoints('sticky'),
    service(NS, 'plain', { clusterIP: PLAIN, ports: svcPorts() }),
    endpoints('plain'),
    service(NS, 'sticky-np', {
      type: 'NodePort',
      clusterIP: '10.96.11.12',
      ports: svcPorts(30910),
      ...affinity,
    }),
    endpoints('sticky-np'),
    local,
    endpoints('sticky-local'),
  ];
  const flags = labFlags();

  const traced = tracedLab(async (lab) => {
    await addServingPods(lab, [
      ['web-1', '10.244.1.11', true],
      ['web-2', '10.244.1.12', true],
      ['far-1', '10.244.2.11', false],
    ] as const);
    await lab.addPod('pod-a', { ip: '10.244.1.50' });
    await lab.addPod('pod-b', { ip: '10.244.1.51' });
    await lab.addClient('outside-a', '172.30.0.100');
    await lab.addClient('outside-b', '172.30.0.101');
  });

  const all = ['far-1', 'web-1', 'web-2'];
  const one = (sees: 'client' | 'node', answer = all) => ({ answer, sees, one: true });
  caseTable(
    'one client, one endpoint',
    traced,
    [
      { from: 'pod-a', dst: STICKY, port: 80, proto: 'tcp', expect: one('client') },
      {
        from: 'pod-b',
        dst: STICKY,
        port: 80,
        proto: 'tcp',
        expect: one('client'),
        note: 'maybe another one',
      },
      { from: 'pod-a', dst: STICKY, port: 53, proto: 'udp', expect: one('client') },
      { from: 'node', dst: STICKY, port: 80, proto: 'tcp', expect: one('node') },
      {
        from: 'outside-a',
        dst: LAB.nodeIp,
        port: 30910,
        proto: 'tcp',
        expect: one('node'),
        note: 'NodePort',
      },
      { from: 'outside-b', dst: LAB.nodeIp, port: 30911, proto: 'udp', expect: one('node') },
      {
        from: 'outside-a',
        dst: LB_LOCAL,
        port: 80,
        proto: 'tcp',
        expect: one('client', ['web-1', 'web-2']),
        note: 'eTP Local',
      },
      {
        from: 'pod-a',
        dst: LB_LOCAL,
        port: 80,
        proto: 'tcp',
        expect: one('client'),
        note: 'eTP Local, short-circuited',
      },
      {
        from: 'node',
        dst: LB_LOCAL,
        port: 80,
        proto: 'tcp',
        expect: one('node'),
        note: 'eTP Local, from the node',
      },
      {
        from: 'pod-a',
        dst: PLAIN,
        port: 80,
        proto: 'tcp',
        expect: { answer: all, sees: 'client' },
        note: 'no affinity',
      },
    ] satisfies Case[],
    async () => {
      await traced().lab.exec('outside-a', ['ip', 'route', 'add', '192.0.2.0/24', 'via', LAB.nodeIp]);
      await traced().sync(objects, flags);
    },
  );

  // kube-proxy records affinity per service port and client, "without regard to which service
  // IP was used to reach the service": a client's ClusterIP and NodePort connections share it.
  describe('across frontends (after the table: same rules)', () => {
    it('keeps one endpoint per client across the ClusterIP and the NodePort of one port', async () => {
      for (const client of ['pod-a', 'pod-b']) {
        const seen: string[] = [];
        for (const [dst, port] of [
          ['10.96.11.12', 80],
          [LAB.nodeIp, 30910],
          ['10.96.11.12', 80],
        ] as const) {
          const r = await traced().lab.probe(client, { dst, port, proto: 'tcp', count: 10 });
          assert.equal(r.answers.size, 1, `${client} → ${dst}:${port}: ${JSON.stringify([...r.answers])}`);
          seen.push([...r.answers.keys()][0]!);
        }
        assert.equal(new Set(seen).size, 1, `${client}: ${seen.join(' / ')}`);
      }
    });
  });
});
