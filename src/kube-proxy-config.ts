/**
 * kube-proxy's configuration, read as kube-proxy reads it, so that an operator swaps the image
 * of an existing kube-proxy DaemonSet and keeps its ConfigMap and arguments:
 *
 * - KubeProxyConfiguration v1alpha1 with kube-proxy's defaulting: `null`, `""`, `0`, `0s` and
 *   `false` mean "the default" (kubeadm writes every field that way);
 * - every field is either honoured (turned into the flag value it stands for, so one code path
 *   validates both) or, when set to something that does not apply to this proxy, accepted with
 *   one warning naming it; only malformed values are errors;
 * - every kube-proxy flag is accepted: those that apply act, the others warn once.
 */

import type { DetectLocal } from './model/local-traffic.js';

/** A kube-proxy flag this proxy accepts but does not act on, and why (printed in the warning). */
export interface AcceptedFlag {
  /** Takes a value (`--flag v` / `--flag=v`); otherwise a switch. */
  value: boolean;
  why: string;
}

const IGNORED_LOGGING = 'klog output options: kube-nftproxy logs JSON lines on stderr';
const OTHER_MODE = 'applies to another proxy mode';
const API_CLIENT = 'API client tuning: the informers use their own';

/**
 * kube-proxy's flags (v1.31–1.34) that do not act here. Those that do act are in config.ts's
 * FLAGS (same names), so an existing DaemonSet's argument list starts unchanged.
 */
export const ACCEPTED_KUBE_PROXY_FLAGS: Readonly<Record<string, AcceptedFlag>> = {
  'bind-address-hard-fail': { value: false, why: 'the servers always fail hard on a bad address' },
  'boot-id-file': { value: true, why: 'not used' },
  'config-sync-period': { value: true, why: 'the informers do not resync: they relist on error' },
  'feature-gates': { value: true, why: 'no feature gates: every behaviour is on' },
  'iptables-localhost-nodeports': {
    value: true,
    why: 'NodePorts are never served on loopback (nftables mode)',
  },
  'iptables-masquerade-bit': { value: true, why: `${OTHER_MODE} (iptables)` },
  'iptables-min-sync-period': { value: true, why: `${OTHER_MODE} (iptables): use --min-sync-period` },
  'iptables-sync-period': { value: true, why: `${OTHER_MODE} (iptables): use --sync-period` },
  'ipvs-exclude-cidrs': { value: true, why: `${OTHER_MODE} (ipvs)` },
  'ipvs-min-sync-period': { value: true, why: `${OTHER_MODE} (ipvs): use --min-sync-period` },
  'ipvs-scheduler': { value: true, why: `${OTHER_MODE} (ipvs): see --lb-algorithm` },
  'ipvs-strict-arp': { value: false, why: `${OTHER_MODE} (ipvs)` },
  'ipvs-sync-period': { value: true, why: `${OTHER_MODE} (ipvs): use --sync-period` },
  'ipvs-tcp-timeout': { value: true, why: `${OTHER_MODE} (ipvs)` },
  'ipvs-tcpfin-timeout': { value: true, why: `${OTHER_MODE} (ipvs)` },
  'ipvs-udp-timeout': { value: true, why: `${OTHER_MODE} (ipvs)` },
  'kube-api-burst': { value: true, why: API_CLIENT },
  'kube-api-content-type': { value: true, why: `${API_CLIENT} (JSON)` },
  'kube-api-qps': { value: true, why: API_CLIENT },
  master: { value: true, why: 'give the API server in the kubeconfig (--kubeconfig)' },
  'healthz-port': { value: true, why: 'removed from kube-proxy: use --healthz-bind-address' },
  'metrics-port': { value: true, why: 'removed from kube-proxy: use --metrics-bind-address' },
  profiling: { value: false, why: 'no pprof endpoints' },
  'proxy-port-range': { value: true, why: `${OTHER_MODE} (userspace of old kube-proxy)` },
  'show-hidden-metrics-for-version': { value: true, why: 'no hidden metrics' },
  'windows-service': { value: false, why: 'Linux only' },
  vmodule: { value: true, why: IGNORED_LOGGING },
  'logging-format': { value: true, why: IGNORED_LOGGING },
  'log-flush-frequency': { value: true, why: IGNORED_LOGGING },
  'log-text-info-buffer-size': { value: true, why: IGNORED_LOGGING },
  'log-text-split-stream': { value: false, why: IGNORED_LOGGING },
  'log-json-info-buffer-size': { value: true, why: IGNORED_LOGGING },
  'log-json-split-stream': { value: false, why: IGNORED_LOGGING },
  'add-dir-header': { value: false, why: IGNORED_LOGGING },
  alsologtostderr: { value: false, why: IGNORED_LOGGING },
  'log-backtrace-at': { value: true, why: IGNORED_LOGGING },
  'log-dir': { value: true, why: IGNORED_LOGGING },
  'log-file': { value: true, why: IGNORED_LOGGING },
  'log-file-max-size': { value: true, why: IGNORED_LOGGING },
  logtostderr: { value: false, why: IGNORED_LOGGING },
  'one-output': { value: false, why: IGNORED_LOGGING },
  'skip-headers': { value: false, why: IGNORED_LOGGING },
  'skip-log-headers': { value: false, why: IGNORED_LOGGING },
  stderrthreshold: { value: true, why: IGNORED_LOGGING },
};

/** klog's -v onto pino's levels: kube-proxy DaemonSets run at 2 (info); 4 and up is debug detail. */
export function logLevelForVerbosity(v: number): 'info' | 'debug' | 'trace' {
  return v >= 6 ? 'trace' : v >= 4 ? 'debug' : 'info';
}

/** What a KubeProxyConfiguration document stands for: flag values, and one warning per field that does not apply. */
export interface KubeProxyConfigResult {
  flags: Map<string, string>;
  warnings: string[];
}

type Doc = Record<string, unknown>;

/** kube-proxy's "unset": the defaulting treats these as "use the default". */
function isUnset(v: unknown): boolean {
  return (
    v === undefined ||
    v === null ||
    v === '' ||
    v === false ||
    v === 0 ||
    (typeof v === 'string' && /^0+(\.0+)?(ns|us|µs|ms|s|m|h)?$/.test(v)) ||
    (Array.isArray(v) && v.length === 0) ||
    (typeof v === 'object' && !Array.isArray(v) && Object.values(v as Doc).every(isUnset))
  );
}

/** The fields of v1alpha1 KubeProxyConfiguration, so that anything else is named as unknown. */
const KNOWN_FIELDS = new Set([
  'apiVersion',
  'kind',
  'featureGates',
  'clientConnection',
  'hostnameOverride',
  'bindAddress',
  'healthzBindAddress',
  'metricsBindAddress',
  'bindAddressHardFail',
  'enableProfiling',
  'showHiddenMetricsForVersion',
  'mode',
  'iptables',
  'ipvs',
  'nftables',
  'winkernel',
  'detectLocalMode',
  'detectLocal',
  'clusterCIDR',
  'nodePortAddresses',
  'oomScoreAdj',
  'conntrack',
  'configSyncPeriod',
  'portRange',
  'logging',
  'syncPeriod',
  'minSyncPeriod',
  'windowsRunAsService',
  'linux',
  'windows',
]);

/**
 * A parsed KubeProxyConfiguration as flag values. Throws (with `fail`) only for a value of the
 * wrong shape or a mode this proxy cannot run.
 */
export function kubeProxyConfigFlags(doc: Doc, fail: (message: string) => Error): KubeProxyConfigResult {
  const flags = new Map<string, string>();
  const warnings: string[] = [];
  const obj = (v: unknown, field: string): Doc => {
    if (v === undefined || v === null) return {};
    if (typeof v !== 'object' || Array.isArray(v)) throw fail(`${field}: expected an object`);
    return v as Doc;
  };
  const set = (flag: string, v: unknown, field: string): void => {
    if (isUnset(v)) return;
    if (Array.isArray(v)) {
      if (!v.every((x) => typeof x === 'string')) throw fail(`${field}: expected a list of strings`);
      flags.set(flag, v.join(','));
    } else if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean')
      flags.set(flag, String(v));
    else throw fail(`${field}: expected a value, got ${JSON.stringify(v)}`);
  };
  const warnIfSet = (v: unknown, field: string, why: string): void => {
    if (!isUnset(v)) warnings.push(`config field ${field} is accepted but not applied: ${why}`);
  };

  for (const key of Object.keys(doc))
    if (!KNOWN_FIELDS.has(key))
      warnings.push(`config field ${key} is not a KubeProxyConfiguration field: ignored`);

  const mode = doc.mode;
  if (mode === 'nftables' || mode === 'userspace') flags.set('proxy-mode', mode);
  else if (mode === 'iptables' || mode === 'ipvs')
    warnings.push(`config field mode is ${mode}: kube-nftproxy programs nftables instead`);
  else if (!isUnset(mode))
    throw fail(
      `mode ${JSON.stringify(mode)} is not one of nftables, userspace (or iptables, ipvs: nftables)`,
    );
  // The old mode's own section counts where kube-proxy would have read it.
  const modeSection =
    mode === 'ipvs' ? 'ipvs' : mode === 'iptables' || isUnset(mode) ? 'iptables' : undefined;

  set('hostname-override', doc.hostnameOverride, 'hostnameOverride');
  set('bind-address', doc.bindAddress, 'bindAddress');
  set('cluster-cidr', doc.clusterCIDR, 'clusterCIDR');
  set('healthz-bind-address', doc.healthzBindAddress, 'healthzBindAddress');
  set('metrics-bind-address', doc.metricsBindAddress, 'metricsBindAddress');
  set('nodeport-addresses', doc.nodePortAddresses, 'nodePortAddresses');
  set('oom-score-adj', doc.oomScoreAdj, 'oomScoreAdj');

  const nft = obj(doc.nftables, 'nftables');
  const old = modeSection ? obj(doc[modeSection], modeSection) : {};
  const first = (...vs: unknown[]): unknown => vs.find((v) => !isUnset(v));
  set('sync-period', first(doc.syncPeriod, nft.syncPeriod, old.syncPeriod), 'syncPeriod');
  set('min-sync-period', first(doc.minSyncPeriod, nft.minSyncPeriod, old.minSyncPeriod), 'minSyncPeriod');
  if (nft.masqueradeAll === true || (modeSection === 'iptables' && old.masqueradeAll === true))
    flags.set('masquerade-all', 'true');
  // 14 is kube-proxy's default, and the bit this proxy uses.
  if (nft.masqueradeBit !== 14)
    warnIfSet(
      nft.masqueradeBit,
      'nftables.masqueradeBit',
      'the masquerade mark is bit 14 (0x4000), as kube-proxy defaults',
    );

  const kc = obj(doc.clientConnection, 'clientConnection');
  set('kubeconfig', kc.kubeconfig, 'clientConnection.kubeconfig');
  for (const f of ['acceptContentTypes', 'contentType', 'qps', 'burst'])
    warnIfSet(kc[f], `clientConnection.${f}`, API_CLIENT);

  const logging = obj(doc.logging, 'logging');
  set('v', logging.verbosity, 'logging.verbosity');
  for (const f of ['format', 'flushFrequency', 'options', 'vmodule'])
    warnIfSet(logging[f], `logging.${f}`, IGNORED_LOGGING);

  // kube-proxy tells null (its default) from 0 (leave the kernel's value alone) here.
  // v1alpha1 has `conntrack`, v1alpha2 `linux.conntrack`.
  const linux = obj(doc.linux, 'linux');
  const conntrack = obj(linux.conntrack ?? doc.conntrack, 'conntrack');
  const CONNTRACK_FLAGS: Record<string, string> = {
    maxPerCore: 'conntrack-max-per-core',
    min: 'conntrack-min',
    tcpEstablishedTimeout: 'conntrack-tcp-timeout-established',
    tcpCloseWaitTimeout: 'conntrack-tcp-timeout-close-wait',
    tcpBeLiberal: 'conntrack-tcp-be-liberal',
    udpTimeout: 'conntrack-udp-timeout',
    udpStreamTimeout: 'conntrack-udp-timeout-stream',
  };
  for (const [field, flag] of Object.entries(CONNTRACK_FLAGS)) {
    const v = conntrack[field];
    if (v === undefined || v === null || (field === 'tcpBeLiberal' && v === false)) continue;
    if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean')
      throw fail(`conntrack.${field}: expected a value, got ${JSON.stringify(v)}`);
    flags.set(flag, String(v));
  }
  for (const key of Object.keys(conntrack))
    if (!(key in CONNTRACK_FLAGS))
      warnings.push(`config field conntrack.${key} is not a KubeProxyConfiguration field: ignored`);

  set('detect-local-mode', doc.detectLocalMode, 'detectLocalMode');
  const detectLocal = obj(doc.detectLocal, 'detectLocal');
  set('pod-bridge-interface', detectLocal.bridgeInterface, 'detectLocal.bridgeInterface');
  set('pod-interface-name-prefix', detectLocal.interfaceNamePrefix, 'detectLocal.interfaceNamePrefix');

  warnIfSet(doc.featureGates, 'featureGates', ACCEPTED_KUBE_PROXY_FLAGS['feature-gates']!.why);
  warnIfSet(
    doc.bindAddressHardFail,
    'bindAddressHardFail',
    ACCEPTED_KUBE_PROXY_FLAGS['bind-address-hard-fail']!.why,
  );
  warnIfSet(doc.enableProfiling, 'enableProfiling', ACCEPTED_KUBE_PROXY_FLAGS.profiling!.why);
  warnIfSet(doc.showHiddenMetricsForVersion, 'showHiddenMetricsForVersion', 'no hidden metrics');
  warnIfSet(doc.configSyncPeriod, 'configSyncPeriod', ACCEPTED_KUBE_PROXY_FLAGS['config-sync-period']!.why);
  warnIfSet(doc.portRange, 'portRange', OTHER_MODE);
  warnIfSet(doc.windowsRunAsService, 'windowsRunAsService', 'Linux only');
  warnIfSet(doc.winkernel, 'winkernel', `${OTHER_MODE} (Windows)`);
  for (const section of ['iptables', 'ipvs'] as const) {
    const s = obj(doc[section], section);
    for (const [k, v] of Object.entries(s)) {
      const honoured =
        section === modeSection && ['syncPeriod', 'minSyncPeriod', 'masqueradeAll'].includes(k);
      if (!honoured && !(k === 'masqueradeBit' && v === 14)) warnIfSet(v, `${section}.${k}`, OTHER_MODE);
    }
  }
  return { flags, warnings };
}

/** Milliseconds as a Go duration, as kube-proxy prints them: 30s, 1m30s, 250ms. */
export function goDuration(ms: number): string {
  if (ms === 0) return '0s';
  if (ms < 1000) return `${ms}ms`;
  const h = Math.floor(ms / 3_600_000);
  const m = Math.floor((ms % 3_600_000) / 60_000);
  const s = (ms % 60_000) / 1000;
  return `${h ? `${h}h` : ''}${h || m ? `${m}m` : ''}${s || (!h && !m) ? `${s}s` : ''}`;
}

/** The settings a KubeProxyConfiguration can say, as this proxy runs with them. */
export interface EffectiveSettings {
  proxyMode: string;
  hostnameOverride: string;
  nodeIPs: string[];
  clusterCIDRs: string[];
  /** --detect-local-mode and its interface; ClusterCIDR when absent. */
  detectLocal?: DetectLocal;
  healthzBindAddress: string;
  metricsBindAddress: string;
  nodePortAddresses: 'primary' | string[];
  syncPeriodMs: number;
  minSyncPeriodMs: number;
  masqueradeAll: boolean;
  kubeconfig?: string;
  logLevel: string;
  oomScoreAdj?: number;
}

/**
 * The effective configuration as a v1alpha1 KubeProxyConfiguration (--write-config-to,
 * /configz): what kube-proxy would need to be told to do what this proxy does. Fields kube-proxy
 * has and this proxy does not apply are left out.
 */
export function effectiveKubeProxyConfig(c: EffectiveSettings): Record<string, unknown> {
  const period = { syncPeriod: goDuration(c.syncPeriodMs), minSyncPeriod: goDuration(c.minSyncPeriodMs) };
  return {
    apiVersion: 'kubeproxy.config.k8s.io/v1alpha1',
    kind: 'KubeProxyConfiguration',
    mode: c.proxyMode,
    hostnameOverride: c.hostnameOverride,
    bindAddress: c.nodeIPs[0] ?? '0.0.0.0',
    clusterCIDR: c.clusterCIDRs.join(','),
    healthzBindAddress: c.healthzBindAddress,
    metricsBindAddress: c.metricsBindAddress,
    nodePortAddresses: c.nodePortAddresses === 'primary' ? ['primary'] : c.nodePortAddresses,
    detectLocalMode: c.detectLocal?.mode ?? 'ClusterCIDR',
    ...(c.detectLocal?.mode === 'BridgeInterface'
      ? { detectLocal: { bridgeInterface: c.detectLocal.bridgeInterface } }
      : c.detectLocal?.mode === 'InterfaceNamePrefix'
        ? { detectLocal: { interfaceNamePrefix: c.detectLocal.interfaceNamePrefix } }
        : {}),
    ...period,
    nftables: { masqueradeAll: c.masqueradeAll, masqueradeBit: 14, ...period },
    clientConnection: { kubeconfig: c.kubeconfig ?? '' },
    logging: { verbosity: c.logLevel === 'trace' ? 6 : c.logLevel === 'debug' ? 4 : 2 },
    oomScoreAdj: c.oomScoreAdj ?? null,
  };
}
