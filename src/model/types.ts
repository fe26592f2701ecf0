/**
 * ProxyState: the node-local view of every service port, as plain data. One pure function
 * (build-state.ts) makes it from Services, EndpointSlices, the Node and the config; every
 * backend (nftables, userspace) and the debug endpoints read it. Nothing here does I/O.
 */

export type Protocol = 'TCP' | 'UDP' | 'SCTP';
export type Family = 'ipv4' | 'ipv6';
export type LbAlgorithm = 'random' | 'maglev';

/** One endpoint address and the port the service port resolves to on it. */
export interface Endpoint {
  ip: string;
  port: number;
  /** The node it runs on, when the EndpointSlice says. */
  nodeName?: string;
  zone?: string;
  ready: boolean;
  serving: boolean;
  terminating: boolean;
  /** Runs on this node (nodeName equals ours). */
  local: boolean;
  /** Topology hints from the slice (forZones, forNodes): empty when none. */
  zoneHints?: string[];
  nodeHints?: string[];
}

/** A service port in one address family: the unit the proxy programs. */
export interface ServicePort {
  /** `namespace/name:port-name/PROTO/family`: unique, stable, sortable. */
  key: string;
  /** `namespace/name`. */
  service: string;
  namespace: string;
  name: string;
  /** The ServicePort's name ('' when the Service has one unnamed port). */
  portName: string;
  family: Family;
  protocol: Protocol;
  /** The ClusterIP of this family, or undefined (e.g. a NodePort-only view never occurs; headless is skipped). */
  clusterIP: string | undefined;
  port: number;
  /** 0 when none. */
  nodePort: number;
  /**
   * NodePort addresses on which another frontend owns this port's NodePort (frontend
   * ownership, frontend-owners.ts): the NodePort is not served there. Absent when none.
   */
  lostNodePortIPs?: string[];
  externalIPs: string[];
  /** LoadBalancer ingress IPs of this family (ipMode Proxy ones are left out). */
  loadBalancerIPs: string[];
  /** loadBalancerSourceRanges of this family, normalised CIDRs; empty means any. */
  sourceRanges: string[];
  externalPolicyLocal: boolean;
  internalPolicyLocal: boolean;
  /** sessionAffinity ClientIP timeout in seconds; 0 when there is no affinity. */
  affinitySeconds: number;
  /** 0 when none. */
  healthCheckNodePort: number;
  lbAlgorithm: LbAlgorithm;
  /** Every endpoint of this port and family from the Service's slices, sorted by ip then port. */
  allEndpoints: Endpoint[];
  /** Endpoints for cluster-wide traffic (ready, else serving+terminating; topology applied). */
  clusterEndpoints: Endpoint[];
  /** Endpoints for traffic policy Local (local ready, else local serving+terminating). */
  localEndpoints: Endpoint[];
  /** Some endpoint anywhere is usable (ready, or serving and terminating): decides DROP versus REJECT. */
  hasEndpoints: boolean;
  /** The Service is reachable from outside: a NodePort, an external IP or a load balancer IP. */
  externallyAccessible: boolean;
  /**
   * The Service's creationTimestamp in epoch ms: the older Service owns a contested frontend.
   * Absent when the object has none (a file may omit it): such a Service counts as the newest.
   */
  created?: number;
}

/** An object the model did not use, with the reason; shown on /debug/services and logged once. */
export interface Skipped {
  kind: 'Service' | 'EndpointSlice' | 'Node' | 'File' | 'ServiceCIDR';
  /** `namespace/name`, or the file path for unparseable files. */
  name: string;
  reason: string;
  /** Ignored by design (headless, ExternalName, another proxy's), not malformed: logged at debug only. */
  ignored?: boolean;
  /** A frontend the Service claims but another owns (frontend-owners.ts); the rest of it works. */
  contested?: boolean;
  /** The Service compiles to more nft elements than --max-service-elements (src/rules/compile.ts). */
  overBudget?: boolean;
}

export interface NodeInfo {
  name: string;
  /** This node's IPs (both families), used for NodePorts, hairpin and local traffic. */
  ips: string[];
  /** topology.kubernetes.io/zone label, if any. */
  zone?: string;
  labels: Record<string, string>;
  /**
   * The Node's spec.podCIDRs (else spec.podCIDR), canonical; absent when it has none. What
   * --detect-local-mode NodeCIDR tells this node's pods by.
   */
  podCIDRs?: string[];
}

export interface ProxyState {
  node: NodeInfo;
  /** Sorted by key. */
  ports: ServicePort[];
  skipped: Skipped[];
  /**
   * The ClusterIP ranges in effect, merged and sorted (service-cidrs.ts): ServiceCIDR objects,
   * else --service-cidr. Unallocated addresses in them are dropped. Absent from a state not
   * made by the model: the compiler and trace() then use their config's serviceCIDRs.
   */
  serviceCIDRs?: string[];
  /**
   * The addresses NodePorts are served on, by family (--nodeport-addresses resolved against the
   * node): the ones frontend ownership was decided on, so the rules, trace(), the userspace proxy
   * and the health-check servers use these. Absent from a state not made by the model.
   */
  nodePortIPs?: Record<Family, string[]>;
}
