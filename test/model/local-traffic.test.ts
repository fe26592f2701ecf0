import assert from 'node:assert/strict';
import type { V1Node } from '@kubernetes/client-node';
import {
  awaitingPodCIDRs,
  localMatch,
  localTraffic,
  type LocalTraffic,
} from '../../src/model/local-traffic.js';
import { nodeInfo } from '../../src/model/state-builder.js';
import { node } from '../support/objects.js';

describe('local traffic: the detector for this node', () => {
  const config = { nodeName: 'n1', nodeIPs: [], lbAlgorithm: 'random' as const };
  const withSpec = (spec: unknown): V1Node => ({ ...node('n1', ['10.0.0.1']), spec: spec as V1Node['spec'] });

  const specs: Array<[string, unknown, string[] | undefined]> = [
    [
      'podCIDRs, canonical',
      { podCIDRs: ['10.244.1.7/24', 'FD00:244:1::/64'] },
      ['10.244.1.0/24', 'fd00:244:1::/64'],
    ],
    [
      'the first of each family, as kube-proxy',
      { podCIDRs: ['10.244.1.0/24', '10.244.9.0/24'] },
      ['10.244.1.0/24'],
    ],
    ['podCIDR alone (an older object)', { podCIDR: '10.244.3.0/24' }, ['10.244.3.0/24']],
    [
      'malformed entries left out',
      { podCIDRs: ['10.244.1.0', 'x/8', 7, '10.244.4.0/24'] },
      ['10.244.4.0/24'],
    ],
    ['none', {}, undefined],
  ];
  for (const [name, spec, want] of specs)
    it(`reads the Node's pod CIDRs: ${name}`, () => {
      assert.deepEqual(nodeInfo(withSpec(spec), config).podCIDRs, want);
    });

  it('resolves each mode, and waits only for NodeCIDR without pod CIDRs', () => {
    const bare = nodeInfo(withSpec({}), config);
    const allocated = nodeInfo(withSpec({ podCIDRs: ['10.244.1.0/24'] }), config);
    const clusterCIDRs = ['10.244.0.0/16'];
    assert.deepEqual(localTraffic({ mode: 'ClusterCIDR' }, clusterCIDRs, bare), {
      by: 'cidr',
      cidrs: clusterCIDRs,
    });
    assert.deepEqual(localTraffic({ mode: 'ClusterCIDR' }, [], bare), { by: 'none' });
    assert.deepEqual(localTraffic({ mode: 'NodeCIDR' }, clusterCIDRs, allocated), {
      by: 'cidr',
      cidrs: ['10.244.1.0/24'],
    });
    assert.deepEqual(localTraffic({ mode: 'NodeCIDR' }, clusterCIDRs, bare), { by: 'none' });
    assert.equal(awaitingPodCIDRs({ mode: 'NodeCIDR' }, bare), true);
    assert.equal(awaitingPodCIDRs({ mode: 'NodeCIDR' }, allocated), false);
    assert.equal(awaitingPodCIDRs({ mode: 'ClusterCIDR' }, bare), false);
  });

  it('writes the nft match, negated or not, per family', () => {
    const cidr: LocalTraffic = { by: 'cidr', cidrs: ['10.244.0.0/16', '10.245.0.0/16', 'fd00::/48'] };
    assert.equal(localMatch(cidr, 'ipv4'), 'ip saddr { 10.244.0.0/16, 10.245.0.0/16 }');
    assert.equal(localMatch(cidr, 'ipv6', true), 'ip6 saddr != { fd00::/48 }');
    assert.equal(localMatch({ by: 'cidr', cidrs: ['fd00::/48'] }, 'ipv4'), undefined);
    assert.equal(localMatch({ by: 'interface', name: 'cbr0' }, 'ipv6', true), 'iifname != "cbr0"');
    assert.equal(localMatch({ by: 'interface-prefix', prefix: 'veth' }, 'ipv4'), 'iifname "veth*"');
    assert.equal(localMatch({ by: 'none' }, 'ipv4'), undefined);
  });
});
