import { LAB } from '../../scripts/lab/index.js';
import { service, slice, type EndpointSpec } from '../support/objects.js';
import { caseTable, type Case, labFlags, addServingPods, tracedLab } from '../support/traced-probe.js';

/**
 * Terminating endpoints through the real kernel, held to trace(): ready endpoints first; with
 * none ready, the serving+terminating ones carry the traffic; a non-serving endpoint never
 * does. The fallback is decided separately for cluster-wide and for Local traffic.
 */
describe('kernel: terminating endpoints', function () {
  this.timeout(180_000);
  const NS = 'term';
  const FALLBACK = '10.96.6.10';
  const READY_FIRST = '10.96.6.11';
  const NOT_SERVING = '10.96.6.12';
  const ETP = '10.96.6.13';
  const ETP_LB = '192.0.2.70';
  const ITP = '10.96.6.14';

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
  const ep = (ip: string, state: 'ready' | 'terminating' | 'gone'): EndpointSpec => ({
    ip,
    nodeName: ip.startsWith('10.244.1.') ? LAB.nodeName : LAB.remoteNodeName,
    ...(state === 'ready' ? {} : { ready: false, serving: state === 'terminating', terminating: true }),
  });
  const objects = [
    service(NS, 'fallback', { clusterIP: FALLBACK, ports: svcPorts() }),
    slice(NS, 'fallback-a', 'fallback', ports, [
      ep('10.244.1.11', 'terminating'),
      ep('10.244.1.12', 'gone'),
      ep('10.244.2.11', 'terminating'),
    ]),
    service(NS, 'ready-first', { clusterIP: READY_FIRST, ports: svcPorts() }),
    slice(NS, 'ready-first-a', 'ready-first', ports, [
      ep('10.244.1.11', 'terminating'),
      ep('10.244.1.12', 'ready'),
    ]),
    service(NS, 'not-serving', { clusterIP: NOT_SERVING, ports: svcPorts() }),
    slice(NS, 'not-serving-a', 'not-serving', ports, [ep('10.244.1.11', 'gone'), ep('10.244.2.11', 'gone')]),
    // eTP Local: the only local endpoint is terminating but serving, the remote ones are ready.
    {
      ...service(NS, 'etp', {
        type: 'LoadBalancer',
        clusterIP: ETP,
        externalTrafficPolicy: 'Local',
        healthCheckNodePort: 30505,
        ports: svcPorts(30500),
      }),
      status: { loadBalancer: { ingress: [{ ip: ETP_LB }] } },
    },
    slice(NS, 'etp-a', 'etp', ports, [
      ep('10.244.1.11', 'terminating'),
      ep('10.244.2.11', 'ready'),
      ep('10.244.2.12', 'ready'),
    ]),
    // iTP Local: the same shape for in-cluster traffic.
    service(NS, 'itp', { clusterIP: ITP, internalTrafficPolicy: 'Local', ports: svcPorts() }),
    slice(NS, 'itp-a', 'itp', ports, [ep('10.244.1.11', 'terminating'), ep('10.244.2.11', 'ready')]),
  ];
  const flags = labFlags();

  const traced = tracedLab(async (lab) => {
    await addServingPods(lab, [
      ['web-1', '10.244.1.11', true],
      ['web-2', '10.244.1.12', true],
      ['far-1', '10.244.2.11', false],
      ['far-2', '10.244.2.12', false],
    ] as const);
    await lab.addPod('pod', { ip: '10.244.1.50' });
    await lab.addClient('outside');
    await lab.exec('outside', ['ip', 'route', 'add', '192.0.2.0/24', 'via', LAB.nodeIp]);
  });

  const far = ['far-1', 'far-2'];
  caseTable(
    'ready, serving+terminating, neither',
    traced,
    [
      {
        from: 'pod',
        dst: FALLBACK,
        port: 80,
        proto: 'tcp',
        expect: { answer: ['far-1', 'web-1'], sees: 'client' },
        note: 'none ready: the serving terminating ones, never web-2',
      },
      {
        from: 'pod',
        dst: FALLBACK,
        port: 53,
        proto: 'udp',
        expect: { answer: ['far-1', 'web-1'], sees: 'client' },
      },
      {
        from: 'pod',
        dst: READY_FIRST,
        port: 80,
        proto: 'tcp',
        expect: { answer: ['web-2'], sees: 'client' },
      },
      { from: 'pod', dst: NOT_SERVING, port: 80, proto: 'tcp', expect: 'refused', note: 'nothing serving' },
      { from: 'pod', dst: NOT_SERVING, port: 53, proto: 'udp', expect: 'refused' },
      {
        from: 'outside',
        dst: ETP_LB,
        port: 80,
        proto: 'tcp',
        expect: { answer: ['web-1'], sees: 'client' },
        note: 'Local traffic: the local terminating one',
      },
      {
        from: 'outside',
        dst: LAB.nodeIp,
        port: 30501,
        proto: 'udp',
        expect: { answer: ['web-1'], sees: 'client' },
      },
      {
        from: 'pod',
        dst: ETP_LB,
        port: 80,
        proto: 'tcp',
        expect: { answer: far, sees: 'client' },
        note: 'cluster traffic: the ready ones',
      },
      { from: 'node', dst: LAB.nodeIp, port: 30500, proto: 'tcp', expect: { answer: far, sees: 'node' } },
      { from: 'pod', dst: ETP, port: 80, proto: 'tcp', expect: { answer: far, sees: 'client' } },
      {
        from: 'pod',
        dst: ITP,
        port: 80,
        proto: 'tcp',
        expect: { answer: ['web-1'], sees: 'client' },
        note: 'iTP Local: the local terminating one',
      },
    ] satisfies Case[],
    () => traced().sync(objects, flags),
  );
});
