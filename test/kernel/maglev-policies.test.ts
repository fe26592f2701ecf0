import type { V1Service } from '@kubernetes/client-node';
import { LAB } from '../../scripts/lab/index.js';
import { service, slice } from '../support/objects.js';
import { caseTable, type Case, labFlags, addServingPods, tracedLab } from '../support/traced-probe.js';

/**
 * Maglev Services through the real kernel, held to trace(): each service port's tables (one
 * per endpoint list) reached from all its frontends through @maglev-ports, with
 * externalTrafficPolicy Local (outside clients: the local table; pods and the node: the
 * cluster-wide one through @cluster-maglev-ports) and with session affinity on top.
 */
describe('kernel: Maglev with traffic policies and affinity', function () {
  this.timeout(180_000);
  const NS = 'mg';
  const LB_LOCAL = '192.0.2.60';
  const LB_STICKY = '192.0.2.61';
  const EXTERNAL = '192.0.2.62';
  const maglev = { annotations: { 'kube-nftproxy.io/lb-algorithm': 'maglev' } };

  const ports = [
    { name: 'http', port: 8080 },
    { name: 'dns', port: 5353, protocol: 'UDP' as const },
  ];
  const svcPorts = (nodePort: number) => [
    { name: 'http', port: 80, targetPort: 8080, nodePort },
    { name: 'dns', port: 53, protocol: 'UDP' as const, targetPort: 5353, nodePort: nodePort + 1 },
  ];
  const endpoints = (name: string) =>
    slice(NS, `${name}-a`, name, ports, [
      { ip: '10.244.1.11', nodeName: LAB.nodeName },
      { ip: '10.244.1.12', nodeName: LAB.nodeName },
      { ip: '10.244.2.11', nodeName: LAB.remoteNodeName },
    ]);
  const lb = (name: string, clusterIP: string, ip: string, nodePort: number, extra = {}): V1Service => ({
    ...service(
      NS,
      name,
      {
        type: 'LoadBalancer',
        clusterIP,
        externalTrafficPolicy: 'Local',
        healthCheckNodePort: nodePort + 5,
        externalIPs: name === 'local' ? [EXTERNAL] : [],
        ports: svcPorts(nodePort),
        ...extra,
      },
      maglev,
    ),
    status: { loadBalancer: { ingress: [{ ip }] } },
  });
  const objects = [
    lb('local', '10.96.13.10', LB_LOCAL, 30930),
    endpoints('local'),
    lb('sticky', '10.96.13.11', LB_STICKY, 30940, {
      sessionAffinity: 'ClientIP',
      sessionAffinityConfig: { clientIP: { timeoutSeconds: 600 } },
    }),
    endpoints('sticky'),
  ];
  const flags = labFlags();

  const traced = tracedLab(async (lab) => {
    await addServingPods(lab, [
      ['web-1', '10.244.1.11', true],
      ['web-2', '10.244.1.12', true],
      ['far-1', '10.244.2.11', false],
    ] as const);
    await lab.addPod('pod', { ip: '10.244.1.50' });
    await lab.addClient('outside');
    await lab.exec('outside', ['ip', 'route', 'add', '192.0.2.0/24', 'via', LAB.nodeIp]);
  });

  const all = ['far-1', 'web-1', 'web-2'];
  const localOnly = { answer: ['web-1', 'web-2'], sees: 'client' } as const;
  caseTable(
    'tables per endpoint list',
    traced,
    [
      { from: 'outside', dst: LB_LOCAL, port: 80, proto: 'tcp', expect: localOnly, note: 'local table' },
      { from: 'outside', dst: EXTERNAL, port: 80, proto: 'tcp', expect: localOnly },
      { from: 'outside', dst: LAB.nodeIp, port: 30931, proto: 'udp', expect: localOnly },
      {
        from: 'pod',
        dst: LB_LOCAL,
        port: 80,
        proto: 'tcp',
        expect: { answer: all, sees: 'client' },
        note: 'short-circuit: the cluster-wide table',
      },
      { from: 'node', dst: LAB.nodeIp, port: 30930, proto: 'tcp', expect: { answer: all, sees: 'node' } },
      { from: 'pod', dst: '10.96.13.10', port: 53, proto: 'udp', expect: { answer: all, sees: 'client' } },
      {
        from: 'outside',
        dst: LB_STICKY,
        port: 80,
        proto: 'tcp',
        expect: { answer: ['web-1', 'web-2'], sees: 'client', one: true },
        note: 'affinity over the local table',
      },
      {
        from: 'pod',
        dst: LB_STICKY,
        port: 80,
        proto: 'tcp',
        expect: { answer: all, sees: 'client', one: true },
        note: 'affinity over the short-circuit',
      },
      {
        from: 'pod',
        dst: '10.96.13.11',
        port: 53,
        proto: 'udp',
        expect: { answer: all, sees: 'client', one: true },
      },
    ] satisfies Case[],
    async () => traced().sync(objects, flags),
  );
});
