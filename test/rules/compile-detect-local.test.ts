import assert from 'node:assert/strict';
import type { V1Node } from '@kubernetes/client-node';
import { buildConfig } from '../../src/config.js';
import { buildState } from '../../src/model/build-state.js';
import type { ProxyState } from '../../src/model/types.js';
import { compileConfig, modelConfig } from '../../src/pipeline.js';
import { compile } from '../../src/rules/compile.js';
import type { NftFamily } from '../../src/rules/nft/types.js';
import { node, service, slice } from '../support/objects.js';

/**
 * --detect-local-mode from the flags to the rules it shapes, in both families: the masquerade
 * rule of ClusterIP traffic (`clusterip-*` chains: kube-proxy's "ifNotLocal jump
 * mark-for-masquerade") and the short-circuit of externalTrafficPolicy Local (`external-local-*`
 * chains: "ifLocal goto" the cluster-wide endpoints), and nothing else.
 */
describe('compile: --detect-local-mode', () => {
  const env = { localAddresses: ['192.168.0.10', 'fd00:1::10'] };
  const withPodCIDRs = (podCIDRs: string[]): V1Node => ({
    ...node('n1', ['192.168.0.10', 'fd00:1::10']),
    spec: { podCIDRs, podCIDR: podCIDRs[0] },
  });
  const objects = {
    services: [
      service('ns', 'np', {
        type: 'NodePort',
        ipFamilyPolicy: 'RequireDualStack',
        ipFamilies: ['IPv4', 'IPv6'],
        clusterIP: '10.96.0.3',
        clusterIPs: ['10.96.0.3', 'fd00:96::3'],
        externalTrafficPolicy: 'Local',
        ports: [{ port: 80, nodePort: 30080 }],
      }),
    ],
    slices: [
      slice('ns', 'np-4', 'np', [{ port: 8080 }], [{ ip: '10.244.1.2', nodeName: 'n1' }]),
      slice('ns', 'np-6', 'np', [{ port: 8080 }], [{ ip: 'fd00:244:1::2', nodeName: 'n1' }], 'IPv6'),
    ],
  };

  /** The rules before the pick of the ClusterIP chain and of the eTP Local chain, per family. */
  function decisions(flags: string[], nodeObject?: V1Node): Record<NftFamily, [string[], string[]]> {
    const config = buildConfig(['--hostname-override', 'n1', ...flags], {});
    const state: ProxyState = buildState(
      { ...objects, ...(nodeObject ? { node: nodeObject } : {}) },
      modelConfig(config, env),
    );
    const rs = compile(state, compileConfig(state, config, env));
    const before = (family: NftFamily, prefix: string): string[] => {
      const chain = rs.chains.find((c) => c.chain.family === family && c.chain.name.startsWith(prefix));
      assert.ok(chain, `no ${family} ${prefix} chain`);
      return chain.rules.map((r) => r.rule).filter((r) => !/^(meta l4proto \S+ )?dnat/.test(r));
    };
    return {
      ip: [before('ip', 'clusterip-'), before('ip', 'external-local-')],
      ip6: [before('ip6', 'clusterip-'), before('ip6', 'external-local-')],
      inet: [[], []],
    };
  }
  const node4 = 'fib saddr type local jump mark-for-masquerade';
  const node5 = 'fib saddr type local goto shortcircuit';
  const table: Array<{
    name: string;
    flags: string[];
    node?: V1Node;
    ip: [string[], string[]];
    ip6: [string[], string[]];
  }> = [
    {
      name: 'ClusterCIDR (the default): by --cluster-cidr, each family its own',
      flags: ['--cluster-cidr', '10.244.0.0/16,fd00:244::/48'],
      ip: [
        ['ip saddr != { 10.244.0.0/16 } jump mark-for-masquerade'],
        ['ip saddr { 10.244.0.0/16 } goto shortcircuit', node4, node5],
      ],
      ip6: [
        ['ip6 saddr != { fd00:244::/48 } jump mark-for-masquerade'],
        ['ip6 saddr { fd00:244::/48 } goto shortcircuit', node4, node5],
      ],
    },
    {
      name: 'ClusterCIDR with a CIDR of one family only: the other tells nothing apart',
      flags: ['--detect-local-mode', 'ClusterCIDR', '--cluster-cidr', '10.244.0.0/16'],
      ip: [
        ['ip saddr != { 10.244.0.0/16 } jump mark-for-masquerade'],
        ['ip saddr { 10.244.0.0/16 } goto shortcircuit', node4, node5],
      ],
      ip6: [[], [node4, node5]],
    },
    {
      name: "NodeCIDR: by the Node's spec.podCIDRs; --cluster-cidr plays no part",
      flags: ['--detect-local-mode', 'NodeCIDR', '--cluster-cidr', '10.0.0.0/8'],
      node: withPodCIDRs(['10.244.1.0/24', 'fd00:244:1::/64']),
      ip: [
        ['ip saddr != { 10.244.1.0/24 } jump mark-for-masquerade'],
        ['ip saddr { 10.244.1.0/24 } goto shortcircuit', node4, node5],
      ],
      ip6: [
        ['ip6 saddr != { fd00:244:1::/64 } jump mark-for-masquerade'],
        ['ip6 saddr { fd00:244:1::/64 } goto shortcircuit', node4, node5],
      ],
    },
    {
      name: 'BridgeInterface: by the input interface, the same in both families',
      flags: ['--detect-local-mode=BridgeInterface', '--pod-bridge-interface=cbr0'],
      ip: [
        ['iifname != "cbr0" jump mark-for-masquerade'],
        ['iifname "cbr0" goto shortcircuit', node4, node5],
      ],
      ip6: [
        ['iifname != "cbr0" jump mark-for-masquerade'],
        ['iifname "cbr0" goto shortcircuit', node4, node5],
      ],
    },
    {
      name: 'InterfaceNamePrefix: by the start of the input interface name',
      flags: ['--detect-local-mode', 'InterfaceNamePrefix', '--pod-interface-name-prefix', 'veth'],
      ip: [
        ['iifname != "veth*" jump mark-for-masquerade'],
        ['iifname "veth*" goto shortcircuit', node4, node5],
      ],
      ip6: [
        ['iifname != "veth*" jump mark-for-masquerade'],
        ['iifname "veth*" goto shortcircuit', node4, node5],
      ],
    },
    {
      name: '--masquerade-all: every ClusterIP connection, whatever the mode; the short-circuit stays',
      flags: [
        '--masquerade-all',
        '--detect-local-mode=InterfaceNamePrefix',
        '--pod-interface-name-prefix=cali',
      ],
      ip: [['jump mark-for-masquerade'], ['iifname "cali*" goto shortcircuit', node4, node5]],
      ip6: [['jump mark-for-masquerade'], ['iifname "cali*" goto shortcircuit', node4, node5]],
    },
  ];
  for (const c of table)
    it(c.name, () => {
      const got = decisions(c.flags, c.node);
      assert.deepEqual({ ip: got.ip, ip6: got.ip6 }, { ip: c.ip, ip6: c.ip6 });
    });

  it('compiles the same ruleset for ClusterCIDR as without the flag', () => {
    const flags = ['--hostname-override', 'n1', '--cluster-cidr', '10.244.0.0/16'];
    const rules = (extra: string[]) => {
      const config = buildConfig([...flags, ...extra], {});
      const state = buildState(objects, modelConfig(config, env));
      return compile(state, compileConfig(state, config, env));
    };
    assert.deepEqual(rules(['--detect-local-mode', 'ClusterCIDR']), rules([]));
  });

  it('a change of the pod CIDRs changes the compile config (the daemon then compiles afresh)', () => {
    const config = buildConfig(['--hostname-override', 'n1', '--detect-local-mode', 'NodeCIDR'], {});
    const key = (podCIDRs: string[]): string => {
      const state = buildState({ ...objects, node: withPodCIDRs(podCIDRs) }, modelConfig(config, env));
      return JSON.stringify(compileConfig(state, config, env));
    };
    assert.notEqual(key(['10.244.1.0/24']), key(['10.244.2.0/24']));
  });
});
