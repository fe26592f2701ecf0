import type { DetectLocal } from './model/local-traffic.js';
import type { LbAlgorithm } from './model/types.js';

/**
 * kube-proxy's conntrack settings (KubeProxyConfiguration `conntrack`, flags --conntrack-*):
 * 0 leaves a value as the kernel has it.
 */
export interface ConntrackConfig {
  /** nf_conntrack_max per CPU; 0 leaves nf_conntrack_max (and min) alone. */
  maxPerCore: number;
  /** The floor of nf_conntrack_max when maxPerCore applies. */
  min: number;
  tcpEstablishedTimeoutMs: number;
  tcpCloseWaitTimeoutMs: number;
  /** Set nf_conntrack_tcp_be_liberal to 1 (only out-of-window RSTs are then marked INVALID). */
  tcpBeLiberal: boolean;
  udpTimeoutMs: number;
  udpStreamTimeoutMs: number;
}

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
  /**
   * --detect-local-mode and its parameter: how pod traffic is told apart (not masqueraded to a
   * ClusterIP, short-circuited to every endpoint of an externalTrafficPolicy Local frontend).
   */
  detectLocal: DetectLocal;
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
  /** Set the conntrack sysctls (the steps that need privileges) and exit: an init container. */
  initOnly: boolean;
  conntrack: ConntrackConfig;
  /** nftables table name (both families). Fixed by contract; tests may not change it. */
  tableName: 'kube-nftproxy';
  /** From --v (klog verbosity); LOG_LEVEL in the environment wins. */
  logLevel: 'info' | 'debug' | 'trace';
  /** --oom-score-adj: written to /proc/self/oom_score_adj at start, as kube-proxy does. */
  oomScoreAdj?: number;
  /** --write-config-to: write the effective configuration there and exit. */
  writeConfigTo?: string;
  /** Flags and config fields accepted but not applied, one line each: logged once at start. */
  warnings: string[];
  /** --max-service-elements: a Service compiling to more nft elements is skipped; Infinity: no limit. */
  maxServiceElements: number;
  /** --service-counters: per-frontend connection counters in the kernel, on /metrics and /debug/services. */
  serviceCounters: boolean;
}
