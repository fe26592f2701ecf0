import { LAB } from '../../scripts/lab/index.js';
import { service, slice } from '../support/objects.js';
import { caseTable, type Case, labFlags, addServingPods, tracedLab } from '../support/traced-probe.js';

/**
 * internalTrafficPolicy: Local through the real kernel, held to trace(): a ClusterIP reaches
 * only this node's endpoints; with none here it is a DROP when endpoints exist elsewhere (the
 * Service works, just not from this node) and a REJECT when there are none at all.
 */
describe('kernel: internalTrafficPolicy Local', function () {
  this.timeout(180_000);
  const NS = 'itp';
  const MIXED = '10.96.5.10';
  const REMOTE = '10.96.5.11';
  const NONE = '10.96.5.12';
  const CLUSTER = '10.96.5.13';

  const svc = (name: string, clusterIP: string, policy: 'Local' | 'Cluster') =>
    service(NS, name, {
      clusterIP,
      internalTrafficPolicy: policy,
      ports: [
        { name: 'http', port: 80, targetPort: 8080 },
        { name: 'dns', port: 53, protocol: 'UDP', targetPort: 5353 },
      ],
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
  const mixed: Array<[string, boolean]> = [
    ['10.244.1.11', true],
    ['10.244.1.12', true],
    ['10.244.2.11', false],
  ];
  const objects = [
    svc('mixed', MIXED, 'Local'),
    endpoints('mixed', mixed),
    svc('remote', REMOTE, 'Local'),
    endpoints('remote', [
      ['10.244.2.11', false],
      ['10.244.2.12', false],
    ]),
    svc('none', NONE, 'Local'),
    // The same endpoints under the Cluster policy, for contrast.
    svc('cluster', CLUSTER, 'Cluster'),
    endpoints('cluster', mixed),
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
  });

  const here = ['web-1', 'web-2'];
  caseTable(
    'ClusterIPs',
    traced,
    [
      { from: 'pod', dst: MIXED, port: 80, proto: 'tcp', expect: { answer: here, sees: 'client' } },
      { from: 'pod', dst: MIXED, port: 53, proto: 'udp', expect: { answer: here, sees: 'client' } },
      { from: 'node', dst: MIXED, port: 80, proto: 'tcp', expect: { answer: here, sees: 'node' } },
      { from: 'outside', dst: MIXED, port: 80, proto: 'tcp', expect: { answer: here, sees: 'node' } },
      {
        from: 'pod',
        dst: CLUSTER,
        port: 80,
        proto: 'tcp',
        expect: { answer: ['far-1', ...here], sees: 'client' },
        note: 'Cluster policy',
      },
      {
        from: 'pod',
        dst: REMOTE,
        port: 80,
        proto: 'tcp',
        expect: 'dropped',
        note: 'endpoints only elsewhere',
      },
      { from: 'pod', dst: REMOTE, port: 53, proto: 'udp', expect: 'dropped' },
      { from: 'node', dst: REMOTE, port: 80, proto: 'tcp', expect: 'dropped' },
      { from: 'pod', dst: NONE, port: 80, proto: 'tcp', expect: 'refused', note: 'no endpoints anywhere' },
      { from: 'pod', dst: NONE, port: 53, proto: 'udp', expect: 'refused' },
    ] satisfies Case[],
    () => traced().sync(objects, flags),
  );
});
