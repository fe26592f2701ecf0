import { LAB } from '../../scripts/lab/index.js';
import { service, slice, type EndpointSpec } from '../support/objects.js';
import { caseTable, type Case, labFlags, tracedLab } from '../support/traced-probe.js';

/**
 * IPv6 and dual-stack Services through the real kernel (the ip6 table), held to trace():
 * SingleStack IPv6, PreferDualStack and RequireDualStack with a ClusterIP of each family,
 * each family reaching its own EndpointSlice; IPv6 TCP without endpoints is refused at once
 * (a TCP reset, not an ICMPv6 error the client would sit out).
 */
describe('kernel: IPv6 and dual-stack', function () {
  this.timeout(180_000);
  const NS = 'dual';
  const V6_ONLY = 'fd00:10:96::10';
  const PREFER_4 = '10.96.8.10';
  const PREFER_6 = 'fd00:10:96::20';
  const REQUIRE_6 = 'fd00:10:96::30';
  const REQUIRE_4 = '10.96.8.11';
  const NONE_6 = 'fd00:10:96::40';
  const UNALLOCATED_6 = 'fd00:10:96::99';
  const pods = {
    'web-1': { ip: '10.244.1.11', ipv6: 'fd00:10:244:1::11', local: true },
    'web-2': { ip: '10.244.1.12', ipv6: 'fd00:10:244:1::12', local: true },
    'far-1': { ip: '10.244.2.11', ipv6: 'fd00:10:244:2::11', local: false },
  } as const;
  type PodName = keyof typeof pods;

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
  const eps = (names: PodName[], family: 'ip' | 'ipv6'): EndpointSpec[] =>
    names.map((n) => ({ ip: pods[n][family], nodeName: pods[n].local ? LAB.nodeName : LAB.remoteNodeName }));
  const objects = [
    service(NS, 'v6', {
      type: 'NodePort',
      ipFamilyPolicy: 'SingleStack',
      ipFamilies: ['IPv6'],
      clusterIP: V6_ONLY,
      clusterIPs: [V6_ONLY],
      ports: svcPorts(30600),
    }),
    slice(NS, 'v6-a', 'v6', ports, eps(['web-1', 'far-1'], 'ipv6'), 'IPv6'),
    service(NS, 'prefer', {
      ipFamilyPolicy: 'PreferDualStack',
      ipFamilies: ['IPv4', 'IPv6'],
      clusterIP: PREFER_4,
      clusterIPs: [PREFER_4, PREFER_6],
      ports: svcPorts(),
    }),
    slice(NS, 'prefer-4', 'prefer', ports, eps(['web-1', 'web-2'], 'ip')),
    slice(NS, 'prefer-6', 'prefer', ports, eps(['web-2', 'far-1'], 'ipv6'), 'IPv6'),
    service(NS, 'require', {
      type: 'NodePort',
      ipFamilyPolicy: 'RequireDualStack',
      ipFamilies: ['IPv6', 'IPv4'],
      clusterIP: REQUIRE_6,
      clusterIPs: [REQUIRE_6, REQUIRE_4],
      ports: svcPorts(30610),
    }),
    slice(NS, 'require-4', 'require', ports, eps(['web-1', 'web-2', 'far-1'], 'ip')),
    slice(NS, 'require-6', 'require', ports, eps(['web-1', 'web-2', 'far-1'], 'ipv6'), 'IPv6'),
    service(NS, 'none', {
      type: 'NodePort',
      ipFamilyPolicy: 'SingleStack',
      ipFamilies: ['IPv6'],
      clusterIP: NONE_6,
      clusterIPs: [NONE_6],
      ports: svcPorts(30620),
    }),
  ];
  const flags = labFlags({ dualStack: true });

  const traced = tracedLab(
    async (lab) => {
      for (const [name, p] of Object.entries(pods)) {
        await lab.addPod(name, p);
        await lab.serve(name, { tcp: [8080], udp: [5353] });
      }
      await lab.addPod('pod', { ip: '10.244.1.50', ipv6: 'fd00:10:244:1::50' });
      await lab.addClient('outside', LAB.clientIp, { ipv6: LAB.clientIp6 });
    },
    { ipv6: true },
  );

  const seen = (sees: 'client' | 'node', ...answer: PodName[]) => ({ answer, sees });
  const node6 = LAB.nodeIp6;
  caseTable(
    'families',
    traced,
    [
      {
        from: 'pod',
        dst: V6_ONLY,
        port: 80,
        proto: 'tcp',
        expect: seen('client', 'far-1', 'web-1'),
        note: 'SingleStack',
      },
      { from: 'pod', dst: V6_ONLY, port: 53, proto: 'udp', expect: seen('client', 'far-1', 'web-1') },
      { from: 'node', dst: V6_ONLY, port: 80, proto: 'tcp', expect: seen('node', 'far-1', 'web-1') },
      { from: 'outside', dst: node6, port: 30600, proto: 'tcp', expect: seen('node', 'far-1', 'web-1') },
      { from: 'outside', dst: node6, port: 30601, proto: 'udp', expect: seen('node', 'far-1', 'web-1') },
      {
        from: 'outside',
        dst: LAB.nodeIp,
        port: 30600,
        proto: 'tcp',
        expect: 'unproxied',
        note: 'no IPv4 side',
      },
      { from: 'pod', dst: PREFER_4, port: 80, proto: 'tcp', expect: seen('client', 'web-1', 'web-2') },
      { from: 'pod', dst: PREFER_6, port: 80, proto: 'tcp', expect: seen('client', 'far-1', 'web-2') },
      { from: 'pod', dst: PREFER_6, port: 53, proto: 'udp', expect: seen('client', 'far-1', 'web-2') },
      {
        from: 'pod',
        dst: REQUIRE_6,
        port: 80,
        proto: 'tcp',
        expect: seen('client', 'far-1', 'web-1', 'web-2'),
      },
      {
        from: 'pod',
        dst: REQUIRE_4,
        port: 53,
        proto: 'udp',
        expect: seen('client', 'far-1', 'web-1', 'web-2'),
      },
      {
        from: 'outside',
        dst: node6,
        port: 30610,
        proto: 'tcp',
        expect: seen('node', 'far-1', 'web-1', 'web-2'),
      },
      {
        from: 'outside',
        dst: LAB.nodeIp,
        port: 30610,
        proto: 'tcp',
        expect: seen('node', 'far-1', 'web-1', 'web-2'),
      },
      { from: 'pod', dst: NONE_6, port: 80, proto: 'tcp', expect: 'refused', note: 'TCP reset, at once' },
      { from: 'pod', dst: NONE_6, port: 53, proto: 'udp', expect: 'refused' },
      { from: 'outside', dst: node6, port: 30620, proto: 'tcp', expect: 'refused' },
      {
        from: 'pod',
        dst: V6_ONLY,
        port: 8443,
        proto: 'tcp',
        expect: 'refused',
        note: 'a port it does not define',
      },
      { from: 'pod', dst: UNALLOCATED_6, port: 80, proto: 'tcp', expect: 'dropped', note: 'unallocated' },
    ] satisfies Case[],
    () => traced().sync(objects, flags),
  );
});
