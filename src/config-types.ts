import type { LbAlgorithm } from './model/types.js';

/** The resolved configuration: flags over --config file over defaults (config.ts builds it). */
export interface ProxyConfig {
  kubeconfig?: string;
  /** File or folder of Kubernetes objects instead of an API server. */
  source?: string;
  /** This node's name. */
  hostnameOverride: string;
  /** This node's IPs given by flag; empty means from the Node object, else the host. */
  nodeIPs: string[];
  proxyMode: 'nftables' | 'userspace';
  /**
   * Userspace mode only: where the proxy listens. `service-ip`: the Service IPs and ports
   * (adds the IPs to lo; root). `loopback`: 127.0.0.1 / ::1, port 0. `auto`: service-ip as root.
   */
  userspaceBind: 'auto' | 'loopback' | 'service-ip';
  clusterCIDRs: string[];
  masqueradeAll: boolean;
  /** 'primary' (the node IPs) or a list of CIDRs whose local addresses accept NodePorts. */
  nodePortAddresses: 'primary' | string[];
  serviceCIDRs: string[];
  lbAlgorithm: LbAlgorithm;
  /** Cluster-wide Maglev seed (same on every node). */
  maglevSeed: number;
  syncPeriodMs: number;
  minSyncPeriodMs: number;
  healthzBindAddress: string;
  metricsBindAddress: string;
  configFile?: string;
  dryRun: boolean;
  once: boolean;
  cleanup: boolean;
  /** nftables table name (both families). Fixed by contract; tests may not change it. */
  tableName: 'kube-nftproxy';
  /** --max-service-elements: a Service compiling to more nft elements is skipped; Infinity: no limit. */
  maxServiceElements: number;
}
