import type { V1Service } from '@kubernetes/client-node';
import { LAB } from '../../scripts/lab/index.js';
import { service, slice } from '../support/objects.js';
import { caseTable, type Case, labFlags, addServingPods, tracedLab } from '../support/traced-probe.js';

/**
 * LoadBalancer ingress IPs and externalIPs through the real kernel, held to trace(): the
 * clients route those IPs to the node; ingress IPs with ipMode Proxy are the load balancer's
 * own business and left alone; eTP Cluster always masquerades.
 */
describe('kernel: LoadBalancer ingress IPs and externalIPs', function () {
  this.timeout(180_000);
  const NS = 'lb';
  const LB = '192.0.2.10';
  const LB_PROXY = '192.0.2.11';
  const LB_VIP = '192.0.2.12';
  const EXTERNAL = '192.0.2.50';
  const EXT_ONLY = '192.0.2.60';
  const LB_EMPTY = '192.0.2.20';
  const all = ['far-1', 'web-1', 'web-2'];

  const withIngress = (svc: V1Service, ingress: Array<{ ip: string; ipMode?: string }>): V1Service => ({
    ...svc,
    status: { loadBalancer: { ingress } },
  });
  const ports = [
    { name: 'http', port: 8080 },
    { name: 'dns', port: 5353, protocol: 'UDP' as const },
  ];
  const objects = [
    withIngress(
      service(NS, 'web', {
        type: 'LoadBalancer',
        clusterIP: '10.96.2.10',
        externalIPs: [EXTERNAL],
        ports: [
          { name: 'http', port: 80, targetPort: 8080, nodePort: 30180 },
          { name: 'dns', port: 53, protocol: 'UDP', targetPort: 5353, nodePort: 30153 },
        ],
      }),
      [{ ip: LB }, { ip: LB_PROXY, ipMode: 'Proxy' }, { ip: LB_VIP, ipMode: 'VIP' }],
    ),
    slice(NS, 'web-a', 'web', ports, [
      { ip: '10.244.1.11', nodeName: LAB.nodeName },
      { ip: '10.244.1.12', nodeName: LAB.nodeName },
      { ip: '10.244.2.11', nodeName: LAB.remoteNodeName },
    ]),
    // externalIPs on a plain ClusterIP Service.
    service(NS, 'ext', { clusterIP: '10.96.2.11', externalIPs: [EXT_ONLY], ports: [{ port: 80 }] }),
    slice(NS, 'ext-a', 'ext', [{ port: 8080 }], [{ ip: '10.244.2.11', nodeName: LAB.remoteNodeName }]),
    withIngress(
      service(NS, 'empty', {
        type: 'LoadBalancer',
        clusterIP: '10.96.2.12',
        ports: [{ port: 80, nodePort: 30181 }],
      }),
      [{ ip: LB_EMPTY }],
    ),
  ];
  const flags = labFlags();

  const traced = tracedLab(async (lab) => {
    await addServingPods(lab, [
      ['web-1', '10.244.1.11', true],
      ['web-2', '10.244.1.12', true],
      ['far-1', '10.244.2.11', false],
    ] as const);
    await lab.addPod('pod', { ip: '10.244.1.50' });
    await lab.addPod('far-pod', { ip: '10.244.2.50', local: false });
    await lab.addClient('outside');
    // The load balancer's and the external IPs' network routes them to this node.
    await lab.exec('outside', ['ip', 'route', 'add', '192.0.2.0/24', 'via', LAB.nodeIp]);
  });

  const masq = { answer: all, sees: 'node' } as const;
  caseTable(
    'eTP Cluster',
    traced,
    [
      { from: 'outside', dst: LB, port: 80, proto: 'tcp', expect: masq },
      { from: 'outside', dst: LB, port: 53, proto: 'udp', expect: masq },
      { from: 'outside', dst: LB_VIP, port: 80, proto: 'tcp', expect: masq, note: 'ipMode VIP' },
      { from: 'outside', dst: LB_PROXY, port: 80, proto: 'tcp', expect: 'unproxied', note: 'ipMode Proxy' },
      {
        from: 'outside',
        dst: LB,
        port: 81,
        proto: 'tcp',
        expect: 'unproxied',
        note: 'a port it does not define',
      },
      { from: 'outside', dst: EXTERNAL, port: 80, proto: 'tcp', expect: masq },
      { from: 'outside', dst: EXTERNAL, port: 53, proto: 'udp', expect: masq },
      { from: 'outside', dst: EXT_ONLY, port: 80, proto: 'tcp', expect: { answer: ['far-1'], sees: 'node' } },
      { from: 'outside', dst: LAB.nodeIp, port: 30180, proto: 'tcp', expect: masq, note: 'its NodePort' },
      { from: 'outside', dst: LB_EMPTY, port: 80, proto: 'tcp', expect: 'refused', note: 'no endpoints' },
      { from: 'pod', dst: LB, port: 80, proto: 'tcp', expect: masq },
      { from: 'pod', dst: EXTERNAL, port: 53, proto: 'udp', expect: masq },
      { from: 'far-pod', dst: LB, port: 80, proto: 'tcp', expect: masq },
      { from: 'far-pod', dst: EXTERNAL, port: 80, proto: 'tcp', expect: masq },
      { from: 'node', dst: LB, port: 80, proto: 'tcp', expect: masq },
      { from: 'node', dst: LB, port: 53, proto: 'udp', expect: masq },
      { from: 'node', dst: EXTERNAL, port: 80, proto: 'tcp', expect: masq },
      { from: 'node', dst: LB_EMPTY, port: 80, proto: 'tcp', expect: 'refused' },
    ] satisfies Case[],
    () => traced().sync(objects, flags),
  );
});
