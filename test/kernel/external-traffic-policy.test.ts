import type { V1Service } from '@kubernetes/client-node';
import { LAB } from '../../scripts/lab/index.js';
import { service, slice } from '../support/objects.js';
import { caseTable, type Case, labFlags, addServingPods, tracedLab } from '../support/traced-probe.js';

/**
 * externalTrafficPolicy: Local through the real kernel, held to trace(): traffic from outside
 * reaches only this node's endpoints and keeps its source address, and is dropped when there
 * is none here; pods (--cluster-cidr) and the node itself short-circuit to every endpoint,
 * the node masqueraded.
 *
 * No case sends a remote pod to a remote endpoint: short-circuited without masquerade, the
 * reply goes straight back on the remote node and never meets this node's conntrack (as in a
 * real cluster with cluster-CIDR local detection).
 */
describe('kernel: externalTrafficPolicy Local', function () {
  this.timeout(180_000);
  const NS = 'etp';
  const LB_MIXED = '192.0.2.40';
  const LB_REMOTE = '192.0.2.41';
  const LB_NONE = '192.0.2.42';
  const LB_LOCAL = '192.0.2.43';
  const LB_BOTH = '192.0.2.44';

  const local = (
    name: string,
    clusterIP: string,
    lbIP: string,
    nodePort: number,
    internalTrafficPolicy: 'Local' | 'Cluster' = 'Cluster',
  ): V1Service => ({
    ...service(NS, name, {
      type: 'LoadBalancer',
      clusterIP,
      externalTrafficPolicy: 'Local',
      internalTrafficPolicy,
      healthCheckNodePort: nodePort + 5,
      ports: [
        { name: 'http', port: 80, targetPort: 8080, nodePort },
        { name: 'dns', port: 53, protocol: 'UDP', targetPort: 5353, nodePort: nodePort + 1 },
      ],
    }),
    status: { loadBalancer: { ingress: [{ ip: lbIP }] } },
  });
  const endpoints = (name: string, eps: Array<[string, boolean]>) =>
    slice(
      NS,
      `${name}-a`,
      name,
      [
        { name: 'http', port: 8080 },
        { name: 'dns', port: 5353, protocol: 'UDP' },
      ],
      eps.map(([ip, here]) => ({ ip, nodeName: here ? LAB.nodeName : LAB.remoteNodeName })),
    );
  const objects = [
    local('mixed', '10.96.4.10', LB_MIXED, 30380),
    endpoints('mixed', [
      ['10.244.1.11', true],
      ['10.244.1.12', true],
      ['10.244.2.11', false],
    ]),
    local('remote', '10.96.4.11', LB_REMOTE, 30390),
    endpoints('remote', [
      ['10.244.2.11', false],
      ['10.244.2.12', false],
    ]),
    local('none', '10.96.4.12', LB_NONE, 30400),
    local('here', '10.96.4.13', LB_LOCAL, 30410),
    endpoints('here', [
      ['10.244.1.11', true],
      ['10.244.1.12', true],
    ]),
    // iTP Local too: the short-circuit still reaches every endpoint (kube-proxy's
    // UsesClusterEndpoints holds for any externally accessible port).
    local('both', '10.96.4.14', LB_BOTH, 30420, 'Local'),
    endpoints('both', [
      ['10.244.1.11', true],
      ['10.244.2.11', false],
    ]),
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
    await lab.addPod('far-pod', { ip: '10.244.2.50', local: false });
    await lab.addClient('outside');
    await lab.exec('outside', ['ip', 'route', 'add', '192.0.2.0/24', 'via', LAB.nodeIp]);
  });

  const localOnly = { answer: ['web-1', 'web-2'], sees: 'client' } as const;
  const everyone = ['far-1', 'web-1', 'web-2'];
  caseTable(
    'local endpoints, remote ones, none',
    traced,
    [
      { from: 'outside', dst: LB_MIXED, port: 80, proto: 'tcp', expect: localOnly, note: 'source kept' },
      { from: 'outside', dst: LB_MIXED, port: 53, proto: 'udp', expect: localOnly },
      { from: 'outside', dst: LAB.nodeIp, port: 30380, proto: 'tcp', expect: localOnly },
      { from: 'outside', dst: LAB.nodeIp, port: 30381, proto: 'udp', expect: localOnly },
      { from: 'pod', dst: LB_MIXED, port: 80, proto: 'tcp', expect: { answer: everyone, sees: 'client' } },
      {
        from: 'pod',
        dst: LAB.nodeIp,
        port: 30381,
        proto: 'udp',
        expect: { answer: everyone, sees: 'client' },
      },
      { from: 'node', dst: LB_MIXED, port: 80, proto: 'tcp', expect: { answer: everyone, sees: 'node' } },
      {
        from: 'node',
        dst: LAB.nodeIp,
        port: 30380,
        proto: 'tcp',
        expect: { answer: everyone, sees: 'node' },
      },
      {
        from: 'pod',
        dst: '10.96.4.10',
        port: 80,
        proto: 'tcp',
        expect: { answer: everyone, sees: 'client' },
      },
      { from: 'far-pod', dst: LB_LOCAL, port: 80, proto: 'tcp', expect: localOnly, note: 'short-circuit' },
      { from: 'far-pod', dst: LAB.nodeIp, port: 30410, proto: 'tcp', expect: localOnly },
      {
        from: 'outside',
        dst: LB_REMOTE,
        port: 80,
        proto: 'tcp',
        expect: 'dropped',
        note: 'no local endpoint',
      },
      { from: 'outside', dst: LAB.nodeIp, port: 30390, proto: 'tcp', expect: 'dropped' },
      { from: 'outside', dst: LAB.nodeIp, port: 30391, proto: 'udp', expect: 'dropped' },
      {
        from: 'pod',
        dst: LB_REMOTE,
        port: 80,
        proto: 'tcp',
        expect: { answer: ['far-1', 'far-2'], sees: 'client' },
      },
      {
        from: 'node',
        dst: LB_REMOTE,
        port: 80,
        proto: 'tcp',
        expect: { answer: ['far-1', 'far-2'], sees: 'node' },
      },
      {
        from: 'node',
        dst: LAB.nodeIp,
        port: 30391,
        proto: 'udp',
        expect: { answer: ['far-1', 'far-2'], sees: 'node' },
      },
      {
        from: 'outside',
        dst: LB_NONE,
        port: 80,
        proto: 'tcp',
        expect: 'refused',
        note: 'no endpoints anywhere',
      },
      { from: 'pod', dst: LAB.nodeIp, port: 30400, proto: 'tcp', expect: 'refused' },
      {
        from: 'outside',
        dst: LB_BOTH,
        port: 80,
        proto: 'tcp',
        expect: { answer: ['web-1'], sees: 'client' },
      },
      {
        from: 'pod',
        dst: LB_BOTH,
        port: 80,
        proto: 'tcp',
        expect: { answer: ['far-1', 'web-1'], sees: 'client' },
        note: 'iTP Local too: short-circuit to all',
      },
      {
        from: 'node',
        dst: LAB.nodeIp,
        port: 30420,
        proto: 'tcp',
        expect: { answer: ['far-1', 'web-1'], sees: 'node' },
      },
      {
        from: 'pod',
        dst: '10.96.4.14',
        port: 80,
        proto: 'tcp',
        expect: { answer: ['web-1'], sees: 'client' },
      },
    ] satisfies Case[],
    () => traced().sync(objects, flags),
  );
});
