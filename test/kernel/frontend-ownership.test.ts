import type { V1Service } from '@kubernetes/client-node';
import { LAB } from '../../scripts/lab/index.js';
import { service, slice } from '../support/objects.js';
import { caseTable, type Case, labFlags, tracedLab } from '../support/traced-probe.js';

/**
 * Services that collide, through the real kernel, held to trace(). Each of these made nft
 * refuse the whole transaction before frontend ownership ("File exists", or an interval set
 * refusing an overlap), so that nothing at all was programmed; now every Service gets its
 * rules and only the contested frontend goes to its one owner.
 */
describe('kernel: colliding Services cost only their contested frontend', function () {
  this.timeout(180_000);
  const OLD = '2024-01-01T00:00:00Z';
  const NEW = '2025-06-01T00:00:00Z';
  const DNS_VIP = '10.96.5.10';
  const LB_OVERLAP = '192.0.2.40';
  const LB_METAL = '192.0.2.41';
  const ALLOWED = '172.30.0.100';
  const DENIED = '172.30.0.200';

  const to = (
    ns: string,
    name: string,
    pod: string,
    ip: string,
    port: number,
    proto: 'TCP' | 'UDP' = 'TCP',
  ) => slice(ns, `${name}-a`, name, [{ port, protocol: proto }], [{ ip, nodeName: LAB.nodeName }]);
  const stamped = (svc: V1Service, created: string): V1Service => ({
    ...svc,
    metadata: { ...svc.metadata, creationTimestamp: created as unknown as Date },
  });
  const withLb = (svc: V1Service, ip: string): V1Service => ({
    ...svc,
    status: { loadBalancer: { ingress: [{ ip }] } },
  });

  const objects = [
    // kube-dns, younger than the tenant that takes its ClusterIP as an externalIP.
    stamped(
      service('kube-system', 'kube-dns', {
        clusterIP: DNS_VIP,
        ports: [{ port: 53, protocol: 'UDP', targetPort: 5353 }],
      }),
      NEW,
    ),
    to('kube-system', 'kube-dns', 'dns-1', '10.244.1.21', 5353, 'UDP'),
    stamped(
      service('tenant', 'grab', {
        clusterIP: '10.96.5.50',
        externalIPs: [DNS_VIP],
        ports: [{ port: 53, protocol: 'UDP', targetPort: 5353 }],
      }),
      OLD,
    ),
    to('tenant', 'grab', 'evil-1', '10.244.1.22', 5353, 'UDP'),
    // Its own ClusterIP as an externalIP.
    service('ns', 'self', {
      clusterIP: '10.96.5.60',
      externalIPs: ['10.96.5.60'],
      ports: [{ port: 80, targetPort: 8080 }],
    }),
    to('ns', 'self', 'web-1', '10.244.1.23', 8080),
    // A NodePort and an older Service's externalIP on the node IP, same port.
    stamped(
      service('ns', 'np', {
        type: 'NodePort',
        clusterIP: '10.96.5.70',
        ports: [{ port: 80, targetPort: 8080, nodePort: 30380 }],
      }),
      NEW,
    ),
    to('ns', 'np', 'web-1', '10.244.1.23', 8080),
    stamped(
      service('ns', 'ext', {
        clusterIP: '10.96.5.71',
        externalIPs: [LAB.nodeIp],
        ports: [{ port: 30380, targetPort: 8080 }],
      }),
      OLD,
    ),
    to('ns', 'ext', 'evil-1', '10.244.1.22', 8080),
    // Overlapping loadBalancerSourceRanges (the wider one last refused before merging).
    withLb(
      service('ns', 'overlap', {
        type: 'LoadBalancer',
        clusterIP: '10.96.5.80',
        loadBalancerSourceRanges: ['172.30.0.64/26', '172.30.0.0/25'],
        ports: [{ port: 80, targetPort: 8080, nodePort: 30381 }],
      }),
      LB_OVERLAP,
    ),
    to('ns', 'overlap', 'web-1', '10.244.1.23', 8080),
    // MetalLB style: the ranges hold the LB IP and the node IP, so the node's allowance for
    // the LB IP overlapped the range.
    withLb(
      service('ns', 'metal', {
        type: 'LoadBalancer',
        clusterIP: '10.96.5.81',
        loadBalancerSourceRanges: ['192.0.2.0/24', `${LAB.nodeIp}/32`],
        ports: [{ port: 80, targetPort: 8080, nodePort: 30382 }],
      }),
      LB_METAL,
    ),
    to('ns', 'metal', 'web-1', '10.244.1.23', 8080),
  ];

  const traced = tracedLab(async (lab) => {
    await lab.addPod('dns-1', { ip: '10.244.1.21' });
    await lab.addPod('evil-1', { ip: '10.244.1.22' });
    await lab.addPod('web-1', { ip: '10.244.1.23' });
    await lab.serve('dns-1', { udp: [5353] });
    await lab.serve('evil-1', { tcp: [8080], udp: [5353] });
    await lab.serve('web-1', { tcp: [8080] });
    await lab.addPod('pod', { ip: '10.244.1.50' });
    await lab.addClient('allowed', ALLOWED);
    await lab.addClient('denied', DENIED);
    for (const client of ['allowed', 'denied'])
      await lab.exec(client, ['ip', 'route', 'add', '192.0.2.0/24', 'via', LAB.nodeIp]);
  });

  const direct = (pod: string) => ({ answer: [pod], sees: 'client' }) as const;
  const masq = (pod: string) => ({ answer: [pod], sees: 'node' }) as const;
  caseTable(
    'collisions',
    traced,
    [
      {
        from: 'pod',
        dst: DNS_VIP,
        port: 53,
        proto: 'udp',
        expect: direct('dns-1'),
        note: 'the ClusterIP keeps kube-dns',
      },
      {
        from: 'denied',
        dst: DNS_VIP,
        port: 53,
        proto: 'udp',
        expect: masq('dns-1'),
        note: 'from outside too',
      },
      {
        from: 'pod',
        dst: '10.96.5.50',
        port: 53,
        proto: 'udp',
        expect: direct('evil-1'),
        note: "the tenant's own ClusterIP",
      },
      {
        from: 'pod',
        dst: '10.96.5.60',
        port: 80,
        proto: 'tcp',
        expect: direct('web-1'),
        note: 'externalIP = own ClusterIP',
      },
      {
        from: 'denied',
        dst: LAB.nodeIp,
        port: 30380,
        proto: 'tcp',
        expect: masq('evil-1'),
        note: 'the older externalIP owns node IP:30380',
      },
      {
        from: 'pod',
        dst: '10.96.5.70',
        port: 80,
        proto: 'tcp',
        expect: direct('web-1'),
        note: 'the NodePort Service keeps its ClusterIP',
      },
      {
        from: 'allowed',
        dst: LB_OVERLAP,
        port: 80,
        proto: 'tcp',
        expect: masq('web-1'),
        note: 'inside the merged ranges',
      },
      { from: 'denied', dst: LB_OVERLAP, port: 80, proto: 'tcp', expect: 'dropped', note: 'outside them' },
      {
        from: 'node',
        dst: LB_METAL,
        port: 80,
        proto: 'tcp',
        expect: masq('web-1'),
        note: 'the ranges admit the node',
      },
      { from: 'denied', dst: LB_METAL, port: 80, proto: 'tcp', expect: 'dropped' },
    ] satisfies Case[],
    () => traced().sync(objects, labFlags()),
  );
});
