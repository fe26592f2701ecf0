/**
 * The lab's fixed addressing plan. Tests pick pod, client and service addresses inside
 * these ranges; the lab only owns the addresses listed here.
 *
 * ```
 *   client(s) 172.30.0.100+ ─┐                    ┌─ remote node 172.30.0.2 ── pods 10.244.2.x
 *                            ├── LAN 172.30.0.0/24 ┤   (created with the first `local: false` pod)
 *   node      172.30.0.1   ──┘   (a bridge in its own namespace)
 *     ├─ vethN ── pod 10.244.1.x   (node side of every pod veth: 10.244.1.1/32, proxy ARP)
 *     └─ lo: extra node addresses
 * ```
 *
 * Services are any addresses the nftables rules choose (10.96.0.0/16 by convention): the
 * node routes everything unknown to a LAN "router" that does not exist (a static neighbour
 * nobody answers to), so an unmatched VIP times out and nothing ever leaves the lab.
 */
export const LAB = {
  /** Kubernetes name of the node namespace (use it as EndpointSlice `nodeName`). */
  nodeName: 'lab-node',
  /** Kubernetes name of the remote node namespace. */
  remoteNodeName: 'lab-remote',

  lanPrefixLen: 24,
  lanPrefixLen6: 64,
  /** The node's primary IP, on its LAN link: NodePorts, `--node-ip`. */
  nodeIp: '172.30.0.1',
  nodeIp6: 'fd00:172:30::1',
  /** The remote node's IP on the LAN. */
  remoteNodeIp: '172.30.0.2',
  remoteNodeIp6: 'fd00:172:30::2',
  /** The LAN's default router, which does not exist: traffic to it goes nowhere. */
  lanRouter: '172.30.0.254',
  lanRouter6: 'fd00:172:30::fe',
  lanRouterMac: '02:00:00:00:00:fe',
  /** Default address of a client made without an explicit one. */
  clientIp: '172.30.0.100',
  clientIp6: 'fd00:172:30::100',

  /** Pod CIDRs (the `--cluster-cidr`). */
  clusterCidr: '10.244.0.0/16',
  clusterCidr6: 'fd00:10:244::/56',
  /**
   * The node's own address on every pod-facing veth (/32, /128). Masquerade towards a pod
   * picks it, so masqueraded traffic is told apart from the node's primary IP.
   */
  nodePodIp: '10.244.1.1',
  nodePodIp6: 'fd00:10:244:1::1',
  remoteNodePodIp: '10.244.2.1',
  remoteNodePodIp6: 'fd00:10:244:2::1',
  /** Every pod's default gateway (answered by proxy ARP on the node side of its veth). */
  podGateway: '169.254.1.1',
  /** Every pod's IPv6 gateway: a link-local address on the node side of its veth. */
  podGateway6: 'fe80::1',

  /** Conventional service CIDRs (nothing in the lab depends on them). */
  serviceCidr: '10.96.0.0/16',
  serviceCidr6: 'fd00:10:96::/112',
} as const;
