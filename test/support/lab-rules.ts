import type { V1EndpointSlice, V1Service } from '@kubernetes/client-node';
import { buildState } from '../../src/model/build-state.js';
import { compile } from '../../src/rules/compile.js';
import type { Ruleset } from '../../src/rules/ruleset.js';
import { createConntrack } from '../../src/conntrack/exec.js';
import { deleteStaleUdp } from '../../src/conntrack/reconciler.js';
import type { ProxyState } from '../../src/model/types.js';
import { LAB, type Lab } from '../../scripts/lab/index.js';
import { service, slice } from './objects.js';

interface LabObjects {
  services: V1Service[];
  slices: V1EndpointSlice[];
}

/** The state of `objects` on the lab's node (IPv4, and with `ipv6` IPv6 too). */
const labState = (objects: LabObjects, opts: { ipv6?: boolean }): ProxyState =>
  buildState(objects, {
    nodeName: LAB.nodeName,
    nodeIPs: opts.ipv6 ? [LAB.nodeIp, LAB.nodeIp6] : [LAB.nodeIp],
    lbAlgorithm: 'random',
  });

/**
 * The rules of `objects` as the lab's node compiles them (scripts/lab: its name, address and
 * pod range, and with `ipv6` its IPv6 ones too; random picks, no ServiceCIDR, no NodePort
 * addresses), for kernel tests that drive the applier themselves rather than a daemon.
 */
export function labRules(objects: LabObjects, opts: { ipv6?: boolean } = {}): Ruleset {
  return compile(labState(objects, opts), {
    table: 'kube-nftproxy',
    clusterCIDRs: opts.ipv6 ? [LAB.clusterCidr, LAB.clusterCidr6] : [LAB.clusterCidr],
    masqueradeAll: false,
    serviceCIDRs: [],
    nodePortIPs: { ipv4: [], ipv6: [] },
  });
}

/**
 * Deletes the UDP flows in the lab node's conntrack that the rules of `objects` no longer send
 * anywhere (to an endpoint since removed), as the daemon's conntrack cleanup does after a sync
 * (deleteStaleUdp): a test that drives the applier alone must, or a later datagram from an
 * ephemeral port an earlier one used follows the old flow to the removed endpoint.
 */
export async function deleteStaleFlows(
  lab: Lab,
  objects: LabObjects,
  opts: { ipv6?: boolean } = {},
): Promise<void> {
  const conntrack = createConntrack({ netns: lab.nodeNs });
  const state = labState(objects, opts);
  for (const family of opts.ipv6 ? (['ipv4', 'ipv6'] as const) : (['ipv4'] as const))
    await deleteStaleUdp(conntrack, state, family);
}

/** The ports of stickyService: TCP 80 and UDP 53, served by the pods on 8080 and 5353. */
export const STICKY_PORTS = [
  { proto: 'tcp', port: 80, target: 8080 },
  { proto: 'udp', port: 53, target: 5353 },
] as const;

const protocol = (p: (typeof STICKY_PORTS)[number]): 'TCP' | 'UDP' => (p.proto === 'tcp' ? 'TCP' : 'UDP');

/**
 * One Service `ns/name` with sessionAffinity ClientIP for 600 s on STICKY_PORTS (`spec` gives
 * its addresses and families), and one slice of it over `endpoints`, all on the lab's node.
 */
export function stickyService(
  name: string,
  spec: Partial<NonNullable<V1Service['spec']>>,
  endpoints: string[],
  addressType: 'IPv4' | 'IPv6' = 'IPv4',
): LabObjects {
  return {
    services: [
      service('ns', name, {
        ...spec,
        sessionAffinity: 'ClientIP',
        sessionAffinityConfig: { clientIP: { timeoutSeconds: 600 } },
        ports: STICKY_PORTS.map((p) => ({
          name: p.proto,
          port: p.port,
          targetPort: p.target,
          protocol: protocol(p),
        })),
      }),
    ],
    slices: [
      slice(
        'ns',
        `${name}-1`,
        name,
        STICKY_PORTS.map((p) => ({ name: p.proto, port: p.target, protocol: protocol(p) })),
        endpoints.map((ip) => ({ ip, nodeName: LAB.nodeName })),
        addressType,
      ),
    ],
  };
}
