import { LAB } from '../../scripts/lab/index.js';
import { node, service, slice, type EndpointSpec } from '../support/objects.js';
import { caseTable, type Case, labFlags, tracedLab } from '../support/traced-probe.js';

/**
 * Topology hints through the real kernel, held to trace(): with this node's Node object
 * labelled topology.kubernetes.io/zone, only the endpoints hinted for its zone (or, with node
 * hints, for this node) carry cluster traffic; any ready endpoint without hints, or no hint
 * for our zone or node, means every endpoint (kube-proxy's topologyModeFromHints).
 */
describe('kernel: topology hints', function () {
  this.timeout(180_000);
  const NS = 'topo';
  const ZONE_LABEL = 'topology.kubernetes.io/zone';
  const IP = {
    zonal: '10.96.7.10',
    unhinted: '10.96.7.11',
    otherZones: '10.96.7.12',
    unreadyUnhinted: '10.96.7.13',
    nodeHints: '10.96.7.14',
    nodeHintsPartial: '10.96.7.15',
  };
  const ports = [
    { name: 'http', port: 8080 },
    { name: 'dns', port: 5353, protocol: 'UDP' as const },
  ];
  const pods = {
    'web-1': { ip: '10.244.1.11', zone: 'zone-a', local: true },
    'web-2': { ip: '10.244.1.12', zone: 'zone-a', local: true },
    'far-1': { ip: '10.244.2.11', zone: 'zone-b', local: false },
    'far-2': { ip: '10.244.2.12', zone: 'zone-b', local: false },
  } as const;
  const ep = (name: keyof typeof pods, extra: Partial<EndpointSpec> = {}): EndpointSpec => ({
    ip: pods[name].ip,
    nodeName: pods[name].local ? LAB.nodeName : LAB.remoteNodeName,
    zone: pods[name].zone,
    ...extra,
  });
  const svc = (name: keyof typeof IP, eps: EndpointSpec[]) => [
    service(NS, name.toLowerCase(), {
      clusterIP: IP[name],
      ports: [
        { name: 'http', port: 80, targetPort: 8080 },
        { name: 'dns', port: 53, protocol: 'UDP', targetPort: 5353 },
      ],
    }),
    slice(NS, `${name.toLowerCase()}-a`, name.toLowerCase(), ports, eps),
  ];
  const services = [
    // Hints spread the endpoints over the zones: web-1 and far-1 serve zone-a.
    ...svc('zonal', [
      ep('web-1', { zoneHints: ['zone-a'] }),
      ep('web-2', { zoneHints: ['zone-b'] }),
      ep('far-1', { zoneHints: ['zone-a'] }),
      ep('far-2', { zoneHints: ['zone-b'] }),
    ]),
    // One ready endpoint without hints: hints are not in use.
    ...svc('unhinted', [
      ep('web-1', { zoneHints: ['zone-a'] }),
      ep('web-2', { zoneHints: ['zone-b'] }),
      ep('far-1'),
    ]),
    // No endpoint hinted for our zone: all of them.
    ...svc('otherZones', [ep('web-1', { zoneHints: ['zone-b'] }), ep('far-1', { zoneHints: ['zone-c'] })]),
    // An unready endpoint without hints does not count.
    ...svc('unreadyUnhinted', [
      ep('web-1', { zoneHints: ['zone-a'] }),
      ep('far-1', { zoneHints: ['zone-b'] }),
      ep('web-2', { ready: false }),
    ]),
    // Node hints (PreferSameNode): only the endpoint hinted for this node.
    ...svc('nodeHints', [
      ep('web-1', { nodeHints: [LAB.nodeName], zoneHints: ['zone-a'] }),
      ep('web-2', { nodeHints: [LAB.remoteNodeName], zoneHints: ['zone-a'] }),
      ep('far-1', { nodeHints: [LAB.remoteNodeName], zoneHints: ['zone-b'] }),
    ]),
    // Not every ready endpoint has node hints: zone hints decide.
    ...svc('nodeHintsPartial', [
      ep('web-1', { nodeHints: [LAB.nodeName], zoneHints: ['zone-a'] }),
      ep('far-1', { zoneHints: ['zone-a'] }),
      ep('far-2', { zoneHints: ['zone-b'] }),
    ]),
  ];
  const flags = labFlags();

  const traced = tracedLab(async (lab) => {
    for (const [name, p] of Object.entries(pods)) {
      await lab.addPod(name, { ip: p.ip, local: p.local });
      await lab.serve(name, { tcp: [8080], udp: [5353] });
    }
    await lab.addPod('pod', { ip: '10.244.1.50' });
  });

  const seen = (...answer: string[]) => ({ answer, sees: 'client' as const });
  caseTable(
    'this node in zone-a',
    traced,
    [
      {
        from: 'pod',
        dst: IP.zonal,
        port: 80,
        proto: 'tcp',
        expect: seen('far-1', 'web-1'),
        note: 'hinted for zone-a',
      },
      { from: 'pod', dst: IP.zonal, port: 53, proto: 'udp', expect: seen('far-1', 'web-1') },
      {
        from: 'node',
        dst: IP.zonal,
        port: 80,
        proto: 'tcp',
        expect: { answer: ['far-1', 'web-1'], sees: 'node' },
      },
      {
        from: 'pod',
        dst: IP.unhinted,
        port: 80,
        proto: 'tcp',
        expect: seen('far-1', 'web-1', 'web-2'),
        note: 'a ready endpoint lacks hints',
      },
      {
        from: 'pod',
        dst: IP.otherZones,
        port: 80,
        proto: 'tcp',
        expect: seen('far-1', 'web-1'),
        note: 'none for zone-a',
      },
      {
        from: 'pod',
        dst: IP.unreadyUnhinted,
        port: 80,
        proto: 'tcp',
        expect: seen('web-1'),
        note: 'unready ones aside',
      },
      {
        from: 'pod',
        dst: IP.nodeHints,
        port: 80,
        proto: 'tcp',
        expect: seen('web-1'),
        note: 'hinted for this node',
      },
      { from: 'pod', dst: IP.nodeHints, port: 53, proto: 'udp', expect: seen('web-1') },
      {
        from: 'pod',
        dst: IP.nodeHintsPartial,
        port: 80,
        proto: 'tcp',
        expect: seen('far-1', 'web-1'),
        note: 'node hints incomplete: zone hints',
      },
    ] satisfies Case[],
    () => traced().sync([...services, node(LAB.nodeName, [LAB.nodeIp], { [ZONE_LABEL]: 'zone-a' })], flags),
  );

  caseTable(
    'this node without a zone label',
    traced,
    [
      {
        from: 'pod',
        dst: IP.zonal,
        port: 80,
        proto: 'tcp',
        expect: seen('far-1', 'far-2', 'web-1', 'web-2'),
      },
      {
        from: 'pod',
        dst: IP.nodeHints,
        port: 80,
        proto: 'tcp',
        expect: seen('web-1'),
        note: 'node hints need no zone',
      },
    ] satisfies Case[],
    () => traced().sync([...services, node(LAB.nodeName, [LAB.nodeIp])], flags),
  );
});
