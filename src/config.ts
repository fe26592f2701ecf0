import { hostname } from 'node:os';
import type { ProxyConfig } from './config-types.js';
import { ErrorCodes, ProxyError } from './errors.js';
import {
  ACCEPTED_KUBE_PROXY_FLAGS,
  kubeProxyConfigFlags,
  logLevelForVerbosity,
} from './kube-proxy-config.js';
import { canonicalIp, parseCidr } from './model/ip.js';
import {
  DETECT_LOCAL_MODES,
  interfaceNameProblem,
  type DetectLocal,
  type DetectLocalMode,
} from './model/local-traffic.js';
import { parseBindAddress } from './server/bind-address.js';
import { parseYamlDocuments, readBoundedSync } from './watch/parse-documents.js';

export type { ProxyConfig };

/** One command-line flag: its name, argument, default and help. Names follow kube-proxy's. */
export interface FlagSpec {
  name: string;
  aliases?: string[];
  /** Takes a value (`--flag VALUE` or `--flag=VALUE`); otherwise a boolean switch. */
  value?: string;
  help: string;
  default?: string;
}

/**
 * The default --max-service-elements. It fits the largest realistic Service: Maglev with
 * externalTrafficPolicy Local and over 330 local endpoints, two tables of 65,521 slots (local
 * and cluster-wide) and a few elements per frontend (131,403 with 350 local endpoints of 700),
 * and a random Service of N endpoints up to about 150,000 / N frontends. It bounds what one
 * Service costs the node: nft 1.0.6 takes 1.3 KB (Maglev slot) to 2.4 KB (frontend . slot) of
 * memory per element to load (measured: 178 MB for that Maglev Service, 430 MB for 180,000
 * backends elements), beside the daemon, under a 512 Mi limit.
 */
export const DEFAULT_MAX_SERVICE_ELEMENTS = 150_000;

export const FLAGS: FlagSpec[] = [
  {
    name: 'kubeconfig',
    value: 'PATH',
    help: 'API server credentials (default: in-cluster, else $KUBECONFIG, else ~/.kube/config)',
  },
  {
    name: 'source',
    value: 'PATH',
    help: 'file or folder of Kubernetes objects instead of an API server; re-read on change',
  },
  {
    name: 'hostname-override',
    aliases: ['node-name'],
    value: 'NAME',
    help: "this node's name (selects local endpoints)",
    default: '$NODE_NAME, else hostname',
  },
  {
    name: 'node-ip',
    value: 'IP[,IP]',
    help: "this node's IPs (NodePorts, local traffic)",
    default: 'from the Node object, else the host',
  },
  { name: 'proxy-mode', value: 'nftables|userspace', help: 'backend', default: 'nftables' },
  {
    name: 'userspace-bind',
    value: 'auto|loopback|service-ip',
    help: 'userspace mode: listen on the Service IPs (service-ip: adds them to lo, needs root) or on 127.0.0.1/::1, ports in /debug/services (loopback); auto: service-ip as root',
    default: 'auto',
  },
  {
    name: 'cluster-cidr',
    value: 'CIDR[,CIDR]',
    help: 'pod networks; traffic from outside them to a ClusterIP is masqueraded',
  },
  { name: 'masquerade-all', help: 'masquerade all service traffic' },
  {
    name: 'nodeport-addresses',
    value: 'primary|CIDR,...',
    help: 'which local IPs accept NodePorts',
    default: 'primary',
  },
  {
    name: 'service-cidr',
    value: 'CIDR[,CIDR]',
    help: 'ClusterIP ranges: unallocated IPs in them are dropped',
  },
  {
    name: 'lb-algorithm',
    value: 'random|maglev',
    help: 'default load-balancing algorithm (per Service: annotation kube-nftproxy.io/lb-algorithm)',
    default: 'random',
  },
  { name: 'maglev-seed', value: 'N', help: 'cluster-wide Maglev seed (same on every node)', default: '0' },
  { name: 'sync-period', value: 'DURATION', help: 'sync at least this often', default: '30s' },
  { name: 'min-sync-period', value: 'DURATION', help: 'sync at most this often', default: '1s' },
  { name: 'healthz-bind-address', value: 'HOST:PORT', help: '/healthz and /livez', default: '0.0.0.0:10256' },
  {
    name: 'metrics-bind-address',
    value: 'HOST:PORT',
    help: '/metrics, /debug/*, /proxyMode',
    default: '127.0.0.1:10249',
  },
  {
    name: 'config',
    value: 'FILE',
    help: "KubeProxyConfiguration (v1alpha1, kube-proxy's defaulting); fields that do not apply warn; flags win",
  },
  {
    name: 'bind-address',
    value: 'IP',
    help: "as kube-proxy: a specific address is this node's primary IP (when --node-ip is not given); 0.0.0.0/:: means none",
  },
  { name: 'v', value: 'N', help: 'log verbosity, klog-style: 0-3 info, 4-5 debug, 6+ trace', default: '0' },
  {
    name: 'oom-score-adj',
    value: 'N',
    help: "the daemon's oom_score_adj (-1000..1000), as kube-proxy; unset: left as the kubelet set it",
  },
  {
    name: 'write-config-to',
    value: 'FILE',
    help: 'write the effective configuration as a KubeProxyConfiguration and exit',
  },
  {
    name: 'detect-local-mode',
    value: 'ClusterCIDR|NodeCIDR|BridgeInterface|InterfaceNamePrefix',
    help: "how pod traffic is told from other traffic (masquerade to ClusterIPs, externalTrafficPolicy Local short-circuit): by --cluster-cidr, by the Node's spec.podCIDRs, by --pod-bridge-interface or by --pod-interface-name-prefix",
    default: 'ClusterCIDR',
  },
  {
    name: 'pod-bridge-interface',
    value: 'NAME',
    help: 'for --detect-local-mode BridgeInterface: traffic coming in on this bridge is pod traffic',
  },
  {
    name: 'pod-interface-name-prefix',
    value: 'PREFIX',
    help: 'for --detect-local-mode InterfaceNamePrefix: traffic coming in on an interface named PREFIX* is pod traffic',
  },
  { name: 'dry-run', help: 'compile once and print the nft transaction; touch nothing' },
  { name: 'once', help: 'sync once and exit: 0 on success; the rules stay' },
  {
    name: 'cleanup',
    help: "delete this proxy's tables and kube-proxy's leftovers (nftables, iptables, IPVS), nothing else, and exit",
  },
  { name: 'help', aliases: ['h'], help: 'print this help and exit' },
  { name: 'version', help: 'print the version and exit' },
  {
    name: 'conntrack-max-per-core',
    value: 'N',
    help: 'nf_conntrack_max per CPU, raised to this times the CPUs (at least --conntrack-min, at most 1048576); 0 leaves it and --conntrack-min alone',
    default: '32768',
  },
  { name: 'conntrack-min', value: 'N', help: 'the least nf_conntrack_max to set', default: '131072' },
  {
    name: 'conntrack-tcp-timeout-established',
    value: 'DURATION',
    help: 'idle timeout of established TCP conntrack entries; 0 leaves it alone',
    default: '24h',
  },
  {
    name: 'conntrack-tcp-timeout-close-wait',
    value: 'DURATION',
    help: 'timeout of TCP conntrack entries in CLOSE_WAIT; 0 leaves it alone',
    default: '1h',
  },
  {
    name: 'conntrack-tcp-be-liberal',
    help: 'set nf_conntrack_tcp_be_liberal: only out-of-window RSTs are marked INVALID',
  },
  {
    name: 'conntrack-udp-timeout',
    value: 'DURATION',
    help: 'timeout of UNREPLIED UDP conntrack entries; 0 leaves it alone',
    default: '0',
  },
  {
    name: 'conntrack-udp-timeout-stream',
    value: 'DURATION',
    help: 'timeout of ASSURED UDP conntrack entries; 0 leaves it alone',
    default: '0',
  },
  {
    name: 'init-only',
    help: 'set the conntrack sysctls (needs a privileged container) and exit, so the daemon can run with CAP_NET_ADMIN only',
  },
  {
    name: 'max-service-elements',
    value: 'N',
    help: 'most nft elements one Service may compile to; a Service over it is skipped, with the reason on /debug/services (0: no limit)',
    default: String(DEFAULT_MAX_SERVICE_ELEMENTS),
  },
  {
    name: 'service-counters',
    help: 'count new connections, no-endpoint refusals and source-range drops per Service frontend in the kernel (/metrics, /debug/services); --service-counters=false turns them off',
    default: 'true',
  },
];

export function usage(): string {
  const lines = ['Usage: kube-nftproxy [flags]', '', 'Flags:'];
  for (const f of FLAGS) {
    const names = [f.name, ...(f.aliases ?? [])].map((n) => (n.length === 1 ? `-${n}` : `--${n}`)).join(', ');
    const left = f.value ? `${names} ${f.value}` : names;
    lines.push(`  ${left.padEnd(44)} ${f.help}${f.default ? ` (default ${f.default})` : ''}`);
  }
  return lines.join('\n');
}

const invalid = (message: string): ProxyError => new ProxyError(ErrorCodes.CONFIG_INVALID, message);

/** A --config file's text, within the parse limits' size; a FIFO or a folder is refused. */
function readConfigFile(path: string): string {
  const read = readBoundedSync(path);
  if (!read.ok) throw invalid(read.reason);
  return read.text;
}

/** Go-style durations as kube-proxy takes them: 30s, 1m, 1h30m, 250ms. */
export function parseDuration(text: string, flag: string): number {
  // Go takes a bare 0, and kube-proxy's "0 leaves it alone" flags are written that way.
  if (text === '0') return 0;
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h)/gy;
  let total = 0;
  let m: RegExpExecArray | null;
  let consumed = 0;
  while ((m = re.exec(text)) !== null) {
    total += Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 'ms' | 's' | 'm' | 'h'];
    consumed = re.lastIndex;
  }
  if (text === '' || consumed !== text.length)
    throw invalid(`--${flag}: invalid duration ${JSON.stringify(text)} (use e.g. 30s, 1m, 250ms)`);
  return Math.round(total);
}

function cidrList(text: string, flag: string): string[] {
  return text
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((s) => {
      const c = parseCidr(s);
      if (!c || !s.includes('/'))
        throw invalid(`--${flag}: invalid CIDR ${JSON.stringify(s)} (expected e.g. 10.244.0.0/16)`);
      return c.text;
    });
}

/** A non-negative int32, as kube-proxy's int32 flags take. */
function count(text: string, flag: string): number {
  const n = /^[0-9]+$/.test(text) ? Number(text) : NaN;
  if (!(n <= 0x7fffffff))
    throw invalid(`--${flag}: expected an integer from 0 to 2147483647, got ${JSON.stringify(text)}`);
  return n;
}

/** The servers' own parser decides, so an address that passes here can be listened on. */
function hostPort(text: string, flag: string): string {
  try {
    parseBindAddress(text, flag);
  } catch {
    throw invalid(`--${flag}: expected HOST:PORT, got ${JSON.stringify(text)}`);
  }
  return text;
}

/**
 * Raw flag values by canonical name; switches are 'true'. kube-proxy's flags that do not act
 * here are accepted and named in `warnings` (one each).
 */
export function parseArgs(argv: string[], warnings: string[] = []): Map<string, string> {
  const byName = new Map<string, FlagSpec>();
  for (const f of FLAGS) for (const n of [f.name, ...(f.aliases ?? [])]) byName.set(n, f);
  const out = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const m = /^--?([a-z][a-z0-9-]*)(?:=(.*))?$/.exec(arg);
    if (!m) throw invalid(`unexpected argument ${JSON.stringify(arg)} (see --help)`);
    const accepted = ACCEPTED_KUBE_PROXY_FLAGS[m[1]!];
    if (accepted && !byName.has(m[1]!)) {
      // kube-proxy's, not ours: consume its value so the next argument is read right.
      if (accepted.value && m[2] === undefined) i++;
      warnings.push(`flag --${m[1]} is accepted but not applied: ${accepted.why}`);
      continue;
    }
    const spec = byName.get(m[1]!);
    if (!spec) throw invalid(`unknown flag --${m[1]} (see --help)`);
    let value = m[2];
    if (spec.value) {
      if (value === undefined) {
        value = argv[++i];
        if (value === undefined) throw invalid(`--${spec.name} needs a value: ${spec.value}`);
      }
    } else if (value === undefined) value = 'true';
    else if (value !== 'true' && value !== 'false')
      throw invalid(`--${spec.name} is a switch: use --${spec.name} or --${spec.name}=false`);
    out.set(spec.name, value);
  }
  return out;
}

/**
 * A KubeProxyConfiguration file as flag values (so one code path validates both), read with
 * kube-proxy's defaulting; fields that do not apply are named in `warnings` (kube-proxy-config.ts).
 */
export function configFileFlags(
  path: string,
  read: (p: string) => string = readConfigFile,
  warnings: string[] = [],
): Map<string, string> {
  let text: string;
  try {
    text = read(path);
  } catch (err) {
    throw invalid(`--config ${path}: ${(err as Error).message.split('\n')[0]}`);
  }
  // The same bounds as --source files: an alias bomb or a deep file is one clear line, not a crash.
  const parsed = parseYamlDocuments(text);
  if (!parsed.ok) throw invalid(`--config ${path}: ${parsed.reason}`);
  if (parsed.documents.length + parsed.scalars > 1)
    throw invalid(`--config ${path}: more than one YAML document`);
  if (parsed.scalars > 0) throw invalid(`--config ${path}: not a KubeProxyConfiguration`);
  const doc = (parsed.documents[0] ?? {}) as Record<string, unknown>;
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc))
    throw invalid(`--config ${path}: not a KubeProxyConfiguration`);
  if (doc.kind !== undefined && doc.kind !== 'KubeProxyConfiguration')
    throw invalid(`--config ${path}: kind is ${JSON.stringify(doc.kind)}, expected KubeProxyConfiguration`);
  const result = kubeProxyConfigFlags(doc, (message) => invalid(`--config ${path}: ${message}`));
  warnings.push(...result.warnings);
  return result.flags;
}

/**
 * --detect-local-mode and its parameter, as kube-proxy validates them: BridgeInterface and
 * InterfaceNamePrefix need their interface. The interface reaches nft text, so it must be a
 * plain interface name (local-traffic.ts). A parameter of another mode is ignored, as kube-proxy
 * ignores it.
 */
function detectLocalFrom(get: (n: string) => string | undefined): DetectLocal {
  const mode = get('detect-local-mode') || 'ClusterCIDR';
  if (!(DETECT_LOCAL_MODES as readonly string[]).includes(mode))
    throw invalid(
      `--detect-local-mode: ${JSON.stringify(mode)} is not one of ${DETECT_LOCAL_MODES.join(', ')}`,
    );
  const iface = (flag: string, what: string): string => {
    const name = get(flag)?.trim() ?? '';
    if (name === '') throw invalid(`--detect-local-mode ${mode} needs --${flag} (${what})`);
    const problem = interfaceNameProblem(name);
    if (problem) throw invalid(`--${flag}: ${JSON.stringify(name)} ${problem}`);
    return name;
  };
  switch (mode as DetectLocalMode) {
    case 'BridgeInterface':
      return {
        mode: 'BridgeInterface',
        bridgeInterface: iface('pod-bridge-interface', "the pods' bridge, e.g. cbr0"),
      };
    case 'InterfaceNamePrefix':
      return {
        mode: 'InterfaceNamePrefix',
        interfaceNamePrefix: iface(
          'pod-interface-name-prefix',
          "the start of the pods' interface names, e.g. veth",
        ),
      };
    case 'NodeCIDR':
      return { mode: 'NodeCIDR' };
    case 'ClusterCIDR':
      return { mode: 'ClusterCIDR' };
  }
}

/** Flags over the --config file over defaults, validated: every problem names the flag. */
export function buildConfig(argv: string[], env: NodeJS.ProcessEnv = process.env): ProxyConfig {
  const warnings: string[] = [];
  const flags = parseArgs(argv, warnings);
  const merged = flags.has('config')
    ? new Map([...configFileFlags(flags.get('config')!, undefined, warnings), ...flags])
    : flags;
  const get = (n: string): string | undefined => merged.get(n);
  const on = (n: string): boolean => get(n) === 'true';

  const mode = get('proxy-mode') ?? 'nftables';
  if (mode !== 'nftables' && mode !== 'userspace')
    throw invalid(`--proxy-mode: ${JSON.stringify(mode)} is not one of nftables, userspace`);
  const userspaceBind = get('userspace-bind') ?? 'auto';
  if (userspaceBind !== 'auto' && userspaceBind !== 'loopback' && userspaceBind !== 'service-ip')
    throw invalid(
      `--userspace-bind: ${JSON.stringify(userspaceBind)} is not one of auto, loopback, service-ip`,
    );
  const lb = get('lb-algorithm') ?? 'random';
  if (lb !== 'random' && lb !== 'maglev')
    throw invalid(`--lb-algorithm: ${JSON.stringify(lb)} is not one of random, maglev`);
  // kube-proxy's --bind-address: a specific address overrides its idea of the node's primary IP.
  const bind = get('bind-address')?.trim();
  if (bind !== undefined && bind !== '' && !canonicalIp(bind))
    throw invalid(`--bind-address: invalid IP ${JSON.stringify(bind)}`);
  const bindIP = bind && bind !== '0.0.0.0' && bind !== '::' ? canonicalIp(bind) : undefined;
  const nodeIPs = (get('node-ip') ?? bindIP ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((s) => {
      const ip = canonicalIp(s);
      if (!ip) throw invalid(`--node-ip: invalid IP ${JSON.stringify(s)}`);
      return ip;
    });
  const npa = get('nodeport-addresses') ?? 'primary';
  const seed = Number(get('maglev-seed') ?? '0');
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff)
    throw invalid('--maglev-seed: expected an integer from 0 to 4294967295');
  const syncPeriodMs = parseDuration(get('sync-period') ?? '30s', 'sync-period');
  const minSyncPeriodMs = parseDuration(get('min-sync-period') ?? '1s', 'min-sync-period');
  if (syncPeriodMs <= 0) throw invalid('--sync-period must be greater than 0');
  if (minSyncPeriodMs > syncPeriodMs) throw invalid('--min-sync-period must not exceed --sync-period');
  const maxElements = Number(get('max-service-elements') ?? DEFAULT_MAX_SERVICE_ELEMENTS);
  if (!Number.isSafeInteger(maxElements) || maxElements < 0)
    throw invalid('--max-service-elements: expected a whole number (0: no limit)');

  const verbosity = Number(get('v') ?? '0');
  if (!Number.isInteger(verbosity) || verbosity < 0)
    throw invalid('--v: expected a whole number (klog verbosity)');
  const oomText = get('oom-score-adj');
  const oom = oomText === undefined ? undefined : Number(oomText);
  if (oom !== undefined && (!Number.isInteger(oom) || oom < -1000 || oom > 1000))
    throw invalid('--oom-score-adj: expected an integer from -1000 to 1000');
  const detectLocal = detectLocalFrom(get);

  return {
    ...(get('kubeconfig') ? { kubeconfig: get('kubeconfig')! } : {}),
    ...(get('source') ? { source: get('source')! } : {}),
    ...(get('config') ? { configFile: get('config')! } : {}),
    hostnameOverride: (get('hostname-override') || env.NODE_NAME || hostname()).trim().toLowerCase(),
    nodeIPs,
    proxyMode: mode,
    userspaceBind,
    clusterCIDRs: cidrList(get('cluster-cidr') ?? '', 'cluster-cidr'),
    detectLocal,
    masqueradeAll: on('masquerade-all'),
    nodePortAddresses: npa === 'primary' ? 'primary' : cidrList(npa, 'nodeport-addresses'),
    serviceCIDRs: cidrList(get('service-cidr') ?? '', 'service-cidr'),
    lbAlgorithm: lb,
    maglevSeed: seed,
    syncPeriodMs,
    minSyncPeriodMs,
    healthzBindAddress: hostPort(get('healthz-bind-address') ?? '0.0.0.0:10256', 'healthz-bind-address'),
    metricsBindAddress: hostPort(get('metrics-bind-address') ?? '127.0.0.1:10249', 'metrics-bind-address'),
    dryRun: on('dry-run'),
    once: on('once'),
    cleanup: on('cleanup'),
    initOnly: on('init-only'),
    conntrack: {
      maxPerCore: count(get('conntrack-max-per-core') ?? '32768', 'conntrack-max-per-core'),
      min: count(get('conntrack-min') ?? '131072', 'conntrack-min'),
      tcpEstablishedTimeoutMs: parseDuration(
        get('conntrack-tcp-timeout-established') ?? '24h',
        'conntrack-tcp-timeout-established',
      ),
      tcpCloseWaitTimeoutMs: parseDuration(
        get('conntrack-tcp-timeout-close-wait') ?? '1h',
        'conntrack-tcp-timeout-close-wait',
      ),
      tcpBeLiberal: on('conntrack-tcp-be-liberal'),
      udpTimeoutMs: parseDuration(get('conntrack-udp-timeout') ?? '0', 'conntrack-udp-timeout'),
      udpStreamTimeoutMs: parseDuration(
        get('conntrack-udp-timeout-stream') ?? '0',
        'conntrack-udp-timeout-stream',
      ),
    },
    tableName: 'kube-nftproxy',
    logLevel: logLevelForVerbosity(verbosity),
    ...(oom !== undefined ? { oomScoreAdj: oom } : {}),
    ...(get('write-config-to') ? { writeConfigTo: get('write-config-to')! } : {}),
    warnings,
    maxServiceElements: maxElements === 0 ? Infinity : maxElements,
    serviceCounters: get('service-counters') !== 'false',
  };
}
