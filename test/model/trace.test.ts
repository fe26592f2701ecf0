import assert from 'node:assert/strict';
import { buildState } from '../../src/model/build-state.js';
import type { LocalTraffic } from '../../src/model/local-traffic.js';
import { trace, type Packet, type TraceConfig } from '../../src/model/trace.js';
import { service, slice } from '../support/objects.js';

/**
 * trace() with each local-traffic detector: whether a packet counts as pod traffic decides the
 * ClusterIP masquerade and the externalTrafficPolicy Local short-circuit, as the rules do
 * (test/kernel/detect-local.test.ts holds the kernel to the same).
 */
describe('trace: local traffic (--detect-local-mode)', () => {
  const NODE_IP = '192.168.0.10';
  const state = buildState(
    {
      services: [
        service('ns', 'web', { clusterIP: '10.96.0.1', ports: [{ port: 80 }] }),
        service('ns', 'np', {
          type: 'NodePort',
          clusterIP: '10.96.0.3',
          externalTrafficPolicy: 'Local',
          ports: [{ port: 80, nodePort: 30080 }],
        }),
      ],
      slices: ['web', 'np'].map((name) =>
        slice(
          'ns',
          `${name}-1`,
          name,
          [{ port: 8080 }],
          [
            { ip: '10.244.1.2', nodeName: 'n1' },
            { ip: '10.244.2.2', nodeName: 'n2' },
          ],
        ),
      ),
    },
    { nodeName: 'n1', nodeIPs: [NODE_IP], lbAlgorithm: 'random' },
  );
  const config = (localTraffic?: LocalTraffic, clusterCIDRs: string[] = []): TraceConfig => ({
    clusterCIDRs,
    ...(localTraffic ? { localTraffic } : {}),
    masqueradeAll: false,
    serviceCIDRs: ['10.96.0.0/16'],
    nodePortIPs: { ipv4: [NODE_IP], ipv6: [] },
  });
  const byNodeCIDR: LocalTraffic = { by: 'cidr', cidrs: ['10.244.1.0/24', 'fd00:244:1::/64'] };
  const byBridge: LocalTraffic = { by: 'interface', name: 'cbr0' };
  const byPrefix: LocalTraffic = { by: 'interface-prefix', prefix: 'veth' };
  const none: LocalTraffic = { by: 'none' };
  const clusterIP = (src: string, more: Partial<Packet> = {}): Packet => ({
    src,
    dst: '10.96.0.1',
    port: 80,
    proto: 'tcp',
    ...more,
  });
  const nodePort = (src: string, more: Partial<Packet> = {}): Packet => ({
    src,
    dst: NODE_IP,
    port: 30080,
    proto: 'tcp',
    ...more,
  });
  const ALL = ['10.244.1.2', '10.244.2.2'];
  const LOCAL = ['10.244.1.2'];

  const table: Array<[string, TraceConfig, Packet, { endpoints: string[]; masquerade: boolean }]> = [
    // ClusterIP: masqueraded unless pod traffic.
    [
      'clusterCIDRs alone (no detector given)',
      config(undefined, ['10.244.0.0/16']),
      clusterIP('10.244.2.9'),
      { endpoints: ALL, masquerade: false },
    ],
    [
      'NodeCIDR: this node’s pod',
      config(byNodeCIDR),
      clusterIP('10.244.1.9'),
      { endpoints: ALL, masquerade: false },
    ],
    [
      'NodeCIDR: another node’s pod',
      config(byNodeCIDR),
      clusterIP('10.244.2.9'),
      { endpoints: ALL, masquerade: true },
    ],
    ['NodeCIDR: the node', config(byNodeCIDR), clusterIP(NODE_IP), { endpoints: ALL, masquerade: true }],
    [
      'bridge: in on cbr0',
      config(byBridge),
      clusterIP('10.244.1.9', { iif: 'cbr0' }),
      { endpoints: ALL, masquerade: false },
    ],
    [
      'bridge: in on cbr00 (not the bridge)',
      config(byBridge),
      clusterIP('10.244.1.9', { iif: 'cbr00' }),
      { endpoints: ALL, masquerade: true },
    ],
    [
      'bridge: a pod, no iif given',
      config(byBridge),
      clusterIP('10.244.1.9', { from: 'pod' }),
      { endpoints: ALL, masquerade: false },
    ],
    [
      'bridge: no iif, no from: outside',
      config(byBridge),
      clusterIP('10.244.1.9'),
      { endpoints: ALL, masquerade: true },
    ],
    [
      'prefix: in on veth12',
      config(byPrefix),
      clusterIP('10.0.0.9', { iif: 'veth12' }),
      { endpoints: ALL, masquerade: false },
    ],
    [
      'prefix: in on eth0',
      config(byPrefix),
      clusterIP('10.244.1.9', { iif: 'eth0' }),
      { endpoints: ALL, masquerade: true },
    ],
    [
      'prefix: the node has no input interface',
      config(byPrefix),
      clusterIP(NODE_IP, { from: 'node', iif: 'veth1' }),
      { endpoints: ALL, masquerade: true },
    ],
    [
      'no detector: nothing masqueraded',
      config(none),
      clusterIP('203.0.113.9'),
      { endpoints: ALL, masquerade: false },
    ],
    // externalTrafficPolicy Local: pod traffic short-circuits to every endpoint, unmasqueraded.
    [
      'NodeCIDR eTP Local: this node’s pod short-circuits',
      config(byNodeCIDR),
      nodePort('10.244.1.9'),
      { endpoints: ALL, masquerade: false },
    ],
    [
      'NodeCIDR eTP Local: another node’s pod keeps to local endpoints',
      config(byNodeCIDR),
      nodePort('10.244.2.9'),
      { endpoints: LOCAL, masquerade: false },
    ],
    [
      'NodeCIDR eTP Local: the node short-circuits, masqueraded',
      config(byNodeCIDR),
      nodePort(NODE_IP),
      { endpoints: ALL, masquerade: true },
    ],
    [
      'bridge eTP Local: in on cbr0',
      config(byBridge),
      nodePort('10.244.1.9', { iif: 'cbr0' }),
      { endpoints: ALL, masquerade: false },
    ],
    [
      'prefix eTP Local: in on eth0, even from a pod address',
      config(byPrefix),
      nodePort('10.244.1.9', { iif: 'eth0' }),
      { endpoints: LOCAL, masquerade: false },
    ],
    [
      'prefix eTP Local: from=outside yet in on veth3',
      config(byPrefix),
      nodePort('10.244.1.9', { from: 'outside', iif: 'veth3' }),
      { endpoints: ALL, masquerade: false },
    ],
    [
      'none eTP Local: a pod address is outside',
      config(none),
      nodePort('10.244.1.9'),
      { endpoints: LOCAL, masquerade: false },
    ],
  ];
  for (const [name, cfg, pkt, want] of table)
    it(name, () => {
      const t = trace(state, cfg, pkt);
      assert.equal(t.verdict, 'dnat', t.why);
      if (t.verdict !== 'dnat') return;
      assert.deepEqual(
        { endpoints: t.endpoints.map((e) => e.ip).sort(), masquerade: t.masquerade },
        want,
        t.why,
      );
    });
});
