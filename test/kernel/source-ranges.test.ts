import type { V1Service } from '@kubernetes/client-node';
import { LAB } from '../../scripts/lab/index.js';
import { service, slice } from '../support/objects.js';
import { caseTable, type Case, labFlags, tracedLab } from '../support/traced-probe.js';

/**
 * loadBalancerSourceRanges through the real kernel, held to trace(): listed sources reach the
 * LB IP, others are dropped; the Service's NodePort and ClusterIP are not filtered; a range
 * written with stray whitespace still counts; and when the ranges admit the node's own IP,
 * the node reaches the LB IP even when that IP is local and so becomes the source.
 */
describe('kernel: loadBalancerSourceRanges', function () {
  this.timeout(180_000);
  const NS = 'fw';
  const LB = '192.0.2.30';
  /** On the node's lo: the node reaching it uses it as the source address. */
  const LB_LOCAL = '192.0.2.31';
  const LB_REMOTE = '192.0.2.32';
  const ALLOWED = '172.30.0.100';
  const DENIED = '172.30.0.101';
  const eps = ['far-1', 'web-1'];

  const lb = (
    name: string,
    clusterIP: string,
    ips: string[],
    ranges: string[],
    nodePort: number,
  ): V1Service => ({
    ...service(NS, name, {
      type: 'LoadBalancer',
      clusterIP,
      loadBalancerSourceRanges: ranges,
      ports: [
        { name: 'http', port: 80, targetPort: 8080, nodePort },
        { name: 'dns', port: 53, protocol: 'UDP', targetPort: 5353, nodePort: nodePort + 1 },
      ],
    }),
    status: { loadBalancer: { ingress: ips.map((ip) => ({ ip })) } },
  });
  const endpoints = (name: string) =>
    slice(
      NS,
      `${name}-a`,
      name,
      [
        { name: 'http', port: 8080 },
        { name: 'dns', port: 5353, protocol: 'UDP' },
      ],
      [
        { ip: '10.244.1.11', nodeName: LAB.nodeName },
        { ip: '10.244.2.11', nodeName: LAB.remoteNodeName },
      ],
    );
  const objects = [
    lb('web', '10.96.3.10', [LB], [` ${ALLOWED}/32 `, '10.244.1.0/24'], 30280),
    endpoints('web'),
    lb('self', '10.96.3.11', [LB_LOCAL, LB_REMOTE], [`${LAB.nodeIp}/32`], 30290),
    endpoints('self'),
  ];
  const flags = labFlags();

  const traced = tracedLab(async (lab) => {
    await lab.addPod('web-1', { ip: '10.244.1.11' });
    await lab.addPod('far-1', { ip: '10.244.2.11', local: false });
    for (const name of eps) await lab.serve(name, { tcp: [8080], udp: [5353] });
    await lab.addPod('pod', { ip: '10.244.1.50' });
    await lab.addPod('far-pod', { ip: '10.244.2.50', local: false });
    await lab.addClient('allowed', ALLOWED);
    await lab.addClient('denied', DENIED);
    for (const client of ['allowed', 'denied'])
      await lab.exec(client, ['ip', 'route', 'add', '192.0.2.0/24', 'via', LAB.nodeIp]);
    await lab.addNodeAddress(LB_LOCAL);
  });

  const masq = { answer: eps, sees: 'node' } as const;
  caseTable(
    'ranges',
    traced,
    [
      { from: 'allowed', dst: LB, port: 80, proto: 'tcp', expect: masq, note: 'range with stray whitespace' },
      { from: 'allowed', dst: LB, port: 53, proto: 'udp', expect: masq },
      { from: 'denied', dst: LB, port: 80, proto: 'tcp', expect: 'dropped' },
      { from: 'denied', dst: LB, port: 53, proto: 'udp', expect: 'dropped' },
      {
        from: 'denied',
        dst: LAB.nodeIp,
        port: 30280,
        proto: 'tcp',
        expect: masq,
        note: 'NodePorts are not filtered',
      },
      { from: 'denied', dst: LAB.nodeIp, port: 30281, proto: 'udp', expect: masq },
      {
        from: 'denied',
        dst: '10.96.3.10',
        port: 80,
        proto: 'tcp',
        expect: masq,
        note: 'nor is the ClusterIP',
      },
      { from: 'pod', dst: LB, port: 80, proto: 'tcp', expect: masq, note: 'in 10.244.1.0/24' },
      { from: 'far-pod', dst: LB, port: 80, proto: 'tcp', expect: 'dropped', note: 'not in the ranges' },
      {
        from: 'node',
        dst: LB,
        port: 80,
        proto: 'tcp',
        expect: 'dropped',
        note: 'the node is not in the ranges',
      },
      {
        from: 'node',
        dst: LB_LOCAL,
        port: 80,
        proto: 'tcp',
        expect: masq,
        note: 'ranges admit the node; LB IP is local',
      },
      { from: 'node', dst: LB_LOCAL, port: 53, proto: 'udp', expect: masq },
      { from: 'node', dst: LB_REMOTE, port: 80, proto: 'tcp', expect: masq, note: 'ranges admit the node' },
      {
        from: 'allowed',
        dst: LB_LOCAL,
        port: 80,
        proto: 'tcp',
        expect: 'dropped',
        note: 'only the node is admitted',
      },
      {
        from: 'allowed',
        dst: LAB.nodeIp,
        port: 30290,
        proto: 'tcp',
        expect: masq,
        note: 'its NodePort is not',
      },
    ] satisfies Case[],
    () => traced().sync(objects, flags),
  );
});
