import assert from 'node:assert/strict';
import type { V1Node, V1Service } from '@kubernetes/client-node';
import { LAB } from '../../scripts/lab/index.js';
import { buildConfig } from '../../src/config.js';
import { buildState } from '../../src/model/build-state.js';
import { compileConfig, modelConfig } from '../../src/pipeline.js';
import { fullTransaction } from '../../src/rules/diff.js';
import { compile } from '../../src/rules/compile.js';
import { createNft } from '../../src/rules/nft/exec.js';
import { node, service, slice } from '../support/objects.js';
import { runProxy } from '../support/proxy.js';
import { addServingPods, caseTable, type Case, tracedLab } from '../support/traced-probe.js';

/**
 * --detect-local-mode through the real kernel, held to trace(): which traffic counts as pod
 * traffic decides whether a connection to a ClusterIP is masqueraded and whether one to an
 * externalTrafficPolicy Local frontend short-circuits to every endpoint. Each mode gets its
 * own table on the same lab:
 *
 * - `pod` (10.244.1.50) is on this node, behind its own veth (`vethN`);
 * - `bridged` (10.244.1.60) is on this node, behind the bridge `cbr0`;
 * - `far-pod` (10.244.2.50) is behind the remote node: its packets come in on the LAN (`eth0`);
 * - `outside` is a client on the LAN, and `node` the node itself.
 *
 * The Node's spec.podCIDRs is 10.244.1.0/24 (NodeCIDR); no --cluster-cidr is given, except in
 * the ClusterCIDR table (10.244.0.0/16). There the far pod counts as a pod too, so no case
 * sends it: unmasqueraded to the remote endpoint, the reply would go straight back on the
 * remote node and never meet this node's conntrack (as in a real cluster).
 */
describe('kernel: --detect-local-mode', function () {
  this.timeout(300_000);
  const NS = 'detect';
  const CLUSTER_IP = '10.96.13.10';
  const LB_IP = '192.0.2.60';
  const NODE_PORT = 30560;

  const endpoints = (name: string) =>
    slice(
      NS,
      `${name}-a`,
      name,
      [{ port: 8080 }],
      [
        { ip: '10.244.1.11', nodeName: LAB.nodeName },
        { ip: '10.244.2.11', nodeName: LAB.remoteNodeName },
      ],
    );
  const lb: V1Service = {
    ...service(NS, 'lb', {
      type: 'LoadBalancer',
      clusterIP: '10.96.13.11',
      externalTrafficPolicy: 'Local',
      healthCheckNodePort: NODE_PORT + 5,
      ports: [{ port: 80, targetPort: 8080, nodePort: NODE_PORT }],
    }),
    status: { loadBalancer: { ingress: [{ ip: LB_IP }] } },
  };
  const thisNode: V1Node = {
    ...node(LAB.nodeName, [LAB.nodeIp]),
    spec: { podCIDR: '10.244.1.0/24', podCIDRs: ['10.244.1.0/24'] },
  };
  const objects = [
    service(NS, 'web', { clusterIP: CLUSTER_IP, ports: [{ port: 80, targetPort: 8080 }] }),
    endpoints('web'),
    lb,
    endpoints('lb'),
    thisNode,
  ];
  const base = ['--hostname-override', LAB.nodeName, '--service-cidr', LAB.serviceCidr];

  const traced = tracedLab(async (lab) => {
    await addServingPods(lab, [
      ['web-1', '10.244.1.11', true],
      ['far-1', '10.244.2.11', false],
    ] as const);
    await lab.addPod('pod', { ip: '10.244.1.50' });
    await lab.addPod('bridged', { ip: '10.244.1.60', bridge: 'cbr0' });
    await lab.addPod('far-pod', { ip: '10.244.2.50', local: false });
    await lab.addClient('outside');
  });

  const all = ['far-1', 'web-1'];
  const toClusterIP = (from: string, sees: 'client' | 'node', note?: string): Case => ({
    from,
    dst: CLUSTER_IP,
    port: 80,
    proto: 'tcp',
    expect: { answer: all, sees },
    ...(note ? { note } : {}),
  });
  const toLB = (from: string, answer: string[], sees: 'client' | 'node', note?: string): Case => ({
    from,
    dst: LB_IP,
    port: 80,
    proto: 'tcp',
    expect: { answer, sees },
    ...(note ? { note } : {}),
  });
  /** The cases every mode shares: the node and outside clients are never pod traffic. */
  const never = [
    toClusterIP('node', 'node'),
    toClusterIP('outside', 'node'),
    toLB('node', all, 'node', 'the node short-circuits, masqueraded'),
    toLB('outside', ['web-1'], 'client'),
  ];

  caseTable(
    "NodeCIDR: this node's pods by the Node's spec.podCIDRs",
    traced,
    [
      toClusterIP('pod', 'client', 'in the Node’s pod CIDR: not masqueraded'),
      toClusterIP('bridged', 'client'),
      toClusterIP('far-pod', 'node', "another node's pod is not this node's: masqueraded"),
      toLB('pod', all, 'client', 'short-circuit'),
      toLB('far-pod', ['web-1'], 'client', 'no short-circuit: local endpoints, source kept'),
      ...never,
    ],
    () => traced().sync(objects, [...base, '--detect-local-mode', 'NodeCIDR']),
  );

  caseTable(
    'InterfaceNamePrefix veth: pods behind an interface named veth*',
    traced,
    [
      toClusterIP('pod', 'client', 'came in on its vethN'),
      toClusterIP('bridged', 'node', 'came in on cbr0: not a veth*'),
      toClusterIP('far-pod', 'node', 'came in on eth0'),
      toLB('pod', all, 'client', 'short-circuit'),
      toLB('bridged', ['web-1'], 'client'),
      toLB('far-pod', ['web-1'], 'client'),
      ...never,
    ],
    () =>
      traced().sync(objects, [
        ...base,
        '--detect-local-mode',
        'InterfaceNamePrefix',
        '--pod-interface-name-prefix',
        'veth',
      ]),
  );

  caseTable(
    'BridgeInterface cbr0: pods behind the bridge',
    traced,
    [
      toClusterIP('bridged', 'client', 'came in on cbr0'),
      toClusterIP('pod', 'node', 'came in on its own veth'),
      toLB('bridged', all, 'client', 'short-circuit'),
      toLB('pod', ['web-1'], 'client'),
      ...never,
    ],
    () =>
      traced().sync(objects, [
        ...base,
        '--detect-local-mode',
        'BridgeInterface',
        '--pod-bridge-interface',
        'cbr0',
      ]),
  );

  caseTable(
    'ClusterCIDR 10.244.0.0/16: every pod of the cluster, whatever its interface',
    traced,
    [toClusterIP('pod', 'client'), toClusterIP('bridged', 'client'), ...never],
    () => traced().sync(objects, [...base, '--cluster-cidr', LAB.clusterCidr]),
  );

  it('nft loads every mode in both families, the bridge named whether it exists or not', async () => {
    const nft = createNft({ netns: traced().lab.nodeNs });
    const env = { localAddresses: [LAB.nodeIp, LAB.nodeIp6] };
    const dual = {
      services: [
        {
          ...lb,
          spec: {
            ...lb.spec!,
            ipFamilyPolicy: 'RequireDualStack',
            ipFamilies: ['IPv4', 'IPv6'],
            clusterIPs: ['10.96.13.11', 'fd00:10:96::13'],
          },
        } as V1Service,
      ],
      slices: [
        endpoints('lb'),
        slice(
          NS,
          'lb-6',
          'lb',
          [{ port: 8080 }],
          [{ ip: 'fd00:10:244:1::11', nodeName: LAB.nodeName }],
          'IPv6',
        ),
      ],
      node: {
        ...node(LAB.nodeName, [LAB.nodeIp, LAB.nodeIp6]),
        spec: { podCIDRs: ['10.244.1.0/24', 'fd00:10:244:1::/64'] },
      },
    };
    for (const flags of [
      ['--detect-local-mode', 'NodeCIDR'],
      ['--detect-local-mode', 'BridgeInterface', '--pod-bridge-interface', 'cbr0'],
      ['--detect-local-mode', 'BridgeInterface', '--pod-bridge-interface', 'nosuchbr0'],
      ['--detect-local-mode', 'InterfaceNamePrefix', '--pod-interface-name-prefix', 'veth'],
      ['--cluster-cidr', `${LAB.clusterCidr},${LAB.clusterCidr6}`],
    ]) {
      const config = buildConfig([...base, ...flags], {});
      const state = buildState(dual, modelConfig(config, env));
      const rules = compile(state, compileConfig(state, config, env));
      const ip6 = rules.chains.find(
        (c) => c.chain.family === 'ip6' && c.chain.name.startsWith('external-local'),
      );
      assert.ok(
        ip6 && ip6.rules.length > 3,
        `an IPv6 eTP Local chain with the short-circuit (${flags.join(' ')})`,
      );
      await nft.check(fullTransaction(rules));
    }
  });

  it('NodeCIDR without the Node’s pod CIDRs: --once writes nothing and says why', async () => {
    const lab = traced().lab;
    const { SourceDir } = await import('../support/proxy.js');
    const src = await SourceDir.create();
    try {
      await src.write({ 'objects.yaml': objects.filter((o) => o.kind !== 'Node') });
      const r = await runProxy(lab.nodeNs, [
        '--source',
        src.path,
        ...base,
        '--detect-local-mode',
        'NodeCIDR',
        '--once',
      ]);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /NODE_POD_CIDRS_MISSING|has no spec\.podCIDRs/);
    } finally {
      await src.remove();
    }
  });
});
