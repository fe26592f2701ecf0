import type { V1EndpointSlice, V1Service } from '@kubernetes/client-node';
import { buildState } from '../../src/model/build-state.js';
import { compile } from '../../src/rules/compile.js';
import type { Ruleset } from '../../src/rules/ruleset.js';
import { LAB } from '../../scripts/lab/index.js';

/**
 * The rules of `objects` as the lab's node compiles them (scripts/lab: its name, address and
 * pod range; random picks, no ServiceCIDR, no NodePort addresses), for kernel tests that drive
 * the applier themselves rather than a daemon.
 */
export function labRules(objects: { services: V1Service[]; slices: V1EndpointSlice[] }): Ruleset {
  return compile(
    buildState(objects, { nodeName: LAB.nodeName, nodeIPs: [LAB.nodeIp], lbAlgorithm: 'random' }),
    {
      table: 'kube-nftproxy',
      clusterCIDRs: [LAB.clusterCidr],
      masqueradeAll: false,
      serviceCIDRs: [],
      nodePortIPs: { ipv4: [], ipv6: [] },
    },
  );
}
