import { LAB } from '../../scripts/lab/index.js';
import { service, slice } from '../support/objects.js';
import { caseTable, type Case, labFlags, tracedLab } from '../support/traced-probe.js';

/**
 * Services labelled service.kubernetes.io/service-proxy-name belong to another proxy (any
 * value, even empty): no rules at all. Held to trace(): their ClusterIP is an unallocated
 * address of the service CIDR (dropped) or, outside it, not ours to touch; their NodePort is
 * free; an unlabelled Service beside them works.
 */
describe('kernel: services of another proxy', function () {
  this.timeout(180_000);
  const NS = 'spn';
  const LABEL = 'service.kubernetes.io/service-proxy-name';
  const OTHER = '10.96.9.10';
  const OTHER_OUTSIDE_CIDR = '10.97.0.10';
  const EMPTY_LABEL = '10.96.9.12';
  const MINE = '10.96.9.11';

  const svc = (name: string, clusterIP: string, labels?: Record<string, string>, nodePort?: number) => [
    service(
      NS,
      name,
      {
        ...(nodePort ? { type: 'NodePort' } : {}),
        clusterIP,
        ports: [
          { name: 'http', port: 80, targetPort: 8080, ...(nodePort ? { nodePort } : {}) },
          { name: 'dns', port: 53, protocol: 'UDP', targetPort: 5353 },
        ],
      },
      labels ? { labels } : {},
    ),
    slice(
      NS,
      `${name}-a`,
      name,
      [
        { name: 'http', port: 8080 },
        { name: 'dns', port: 5353, protocol: 'UDP' },
      ],
      [{ ip: '10.244.1.11', nodeName: LAB.nodeName }],
    ),
  ];
  const objects = [
    ...svc('other', OTHER, { [LABEL]: 'other' }, 30700),
    ...svc('other-far', OTHER_OUTSIDE_CIDR, { [LABEL]: 'other' }),
    ...svc('empty-label', EMPTY_LABEL, { [LABEL]: '' }),
    ...svc('mine', MINE),
  ];
  const flags = labFlags();

  const traced = tracedLab(async (lab) => {
    await lab.addPod('web-1', { ip: '10.244.1.11' });
    await lab.serve('web-1', { tcp: [8080], udp: [5353] });
    await lab.addPod('pod', { ip: '10.244.1.50' });
    await lab.addClient('outside');
  });

  caseTable(
    'labelled and unlabelled',
    traced,
    [
      { from: 'pod', dst: OTHER, port: 80, proto: 'tcp', expect: 'dropped', note: 'in the service CIDR' },
      { from: 'pod', dst: OTHER, port: 53, proto: 'udp', expect: 'dropped' },
      { from: 'pod', dst: OTHER_OUTSIDE_CIDR, port: 80, proto: 'tcp', expect: 'unproxied' },
      {
        from: 'pod',
        dst: EMPTY_LABEL,
        port: 80,
        proto: 'tcp',
        expect: 'dropped',
        note: 'an empty value counts',
      },
      {
        from: 'outside',
        dst: LAB.nodeIp,
        port: 30700,
        proto: 'tcp',
        expect: 'unproxied',
        note: 'its NodePort',
      },
      { from: 'pod', dst: MINE, port: 80, proto: 'tcp', expect: { answer: ['web-1'], sees: 'client' } },
      { from: 'pod', dst: MINE, port: 53, proto: 'udp', expect: { answer: ['web-1'], sees: 'client' } },
    ] satisfies Case[],
    () => traced().sync(objects, flags),
  );
});
