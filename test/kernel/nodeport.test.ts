import { LAB } from '../../scripts/lab/index.js';
import { service, slice } from '../support/objects.js';
import { caseTable, type Case, labFlags, addServingPods, tracedLab } from '../support/traced-probe.js';

/**
 * NodePorts (externalTrafficPolicy Cluster) through the real kernel, each case held to
 * trace(): on the node's primary IP by default, on the local addresses inside
 * --nodeport-addresses CIDRs otherwise, never on 127.0.0.1; always masqueraded.
 */
describe('kernel: NodePort', function () {
  this.timeout(180_000);
  const NS = 'np';
  const EXTRA = '192.168.77.1';
  const all = ['far-1', 'web-1', 'web-2'];
  const objects = [
    service(NS, 'web', {
      type: 'NodePort',
      clusterIP: '10.96.1.10',
      ports: [
        { name: 'http', port: 80, targetPort: 8080, nodePort: 30080 },
        { name: 'dns', port: 53, protocol: 'UDP', targetPort: 5353, nodePort: 30053 },
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
        { ip: '10.244.1.11', nodeName: LAB.nodeName },
        { ip: '10.244.1.12', nodeName: LAB.nodeName },
        { ip: '10.244.2.11', nodeName: LAB.remoteNodeName },
      ],
    ),
    service(NS, 'empty', {
      type: 'NodePort',
      clusterIP: '10.96.1.11',
      ports: [{ port: 80, nodePort: 30081 }],
    }),
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
    await lab.addNodeAddress(EXTRA);
    // Whatever the node itself answers on the NodePorts: traffic the proxy leaves alone.
    await lab.serve('node', { tcp: [30080], udp: [30053] });
  });

  const masq = { answer: all, sees: 'node' } as const;
  caseTable(
    '--nodeport-addresses primary (default)',
    traced,
    [
      { from: 'outside', dst: LAB.nodeIp, port: 30080, proto: 'tcp', expect: masq },
      { from: 'outside', dst: LAB.nodeIp, port: 30053, proto: 'udp', expect: masq },
      { from: 'pod', dst: LAB.nodeIp, port: 30080, proto: 'tcp', expect: masq },
      { from: 'far-pod', dst: LAB.nodeIp, port: 30080, proto: 'tcp', expect: masq },
      { from: 'far-pod', dst: LAB.nodeIp, port: 30053, proto: 'udp', expect: masq },
      { from: 'node', dst: LAB.nodeIp, port: 30080, proto: 'tcp', expect: masq },
      {
        from: 'node',
        dst: '127.0.0.1',
        port: 30080,
        proto: 'tcp',
        expect: 'unproxied',
        note: 'never on localhost',
      },
      { from: 'node', dst: '127.0.0.1', port: 30053, proto: 'udp', expect: 'unproxied' },
      { from: 'outside', dst: EXTRA, port: 30080, proto: 'tcp', expect: 'unproxied', note: 'not primary' },
      {
        from: 'outside',
        dst: LAB.nodeIp,
        port: 30081,
        proto: 'tcp',
        expect: 'refused',
        note: 'no endpoints',
      },
      {
        from: 'outside',
        dst: LAB.nodeIp,
        port: 30082,
        proto: 'tcp',
        expect: 'unproxied',
        note: 'no NodePort',
      },
    ] satisfies Case[],
    () => traced().sync(objects, flags),
  );

  caseTable(
    `--nodeport-addresses ${EXTRA}/24,127.0.0.0/8: an extra address on lo`,
    traced,
    [
      { from: 'outside', dst: EXTRA, port: 30080, proto: 'tcp', expect: masq },
      { from: 'outside', dst: EXTRA, port: 30053, proto: 'udp', expect: masq },
      { from: 'pod', dst: EXTRA, port: 30080, proto: 'tcp', expect: masq },
      { from: 'node', dst: EXTRA, port: 30080, proto: 'tcp', expect: masq },
      {
        from: 'outside',
        dst: LAB.nodeIp,
        port: 30080,
        proto: 'tcp',
        expect: 'unproxied',
        note: 'not in the CIDRs',
      },
      {
        from: 'node',
        dst: '127.0.0.1',
        port: 30080,
        proto: 'tcp',
        expect: 'unproxied',
        note: 'loopback never',
      },
      { from: 'outside', dst: EXTRA, port: 30081, proto: 'tcp', expect: 'refused', note: 'no endpoints' },
    ] satisfies Case[],
    () => traced().sync(objects, [...flags, '--nodeport-addresses', `${EXTRA}/24,127.0.0.0/8`]),
  );
});
