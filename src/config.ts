import { hostname } from 'node:os';
import type { ProxyConfig } from './config-types.js';
import { ErrorCodes, ProxyError } from './errors.js';
import { canonicalIp, parseCidr } from './model/ip.js';
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
  { name: 'config', value: 'FILE', help: 'KubeProxyConfiguration YAML (the fields that apply); flags win' },
  { name: 'dry-run', help: 'compile once and print the nft transaction; touch nothing' },
  { name: 'once', help: 'sync once and exit: 0 on success; the rules stay' },
  { name: 'cleanup', help: "delete this proxy's tables (and nothing else) and exit" },
  { name: 'help', aliases: ['h'], help: 'print this help and exit' },
  { name: 'version', help: 'print the version and exit' },
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
  if (!read.ok) throw new Error(read.reason);
  return read.text;
}

/** Go-style durations as kube-proxy takes them: 30s, 1m, 1h30m, 250ms. */
export function parseDuration(text: string, flag: string): number {
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

/** The servers' own parser decides, so an address that passes here can be listened on. */
function hostPort(text: string, flag: string): string {
  try {
    parseBindAddress(text, flag);
  } catch {
    throw invalid(`--${flag}: expected HOST:PORT, got ${JSON.stringify(text)}`);
  }
  return text;
}

/** Raw flag values by canonical name; switches are 'true'. */
export function parseArgs(argv: string[]): Map<string, string> {
  const byName = new Map<string, FlagSpec>();
  for (const f of FLAGS) for (const n of [f.name, ...(f.aliases ?? [])]) byName.set(n, f);
  const out = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const m = /^--?([a-z][a-z0-9-]*)(?:=(.*))?$/.exec(arg);
    if (!m) throw invalid(`unexpected argument ${JSON.stringify(arg)} (see --help)`);
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
 * The KubeProxyConfiguration fields that apply, as flag values (so one code path validates
 * both). Unknown fields are ignored, as kube-proxy's lenient decoding does for other modes.
 */
export function configFileFlags(
  path: string,
  read: (p: string) => string = readConfigFile,
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
  if (typeof doc !== 'object' || doc === null)
    throw invalid(`--config ${path}: not a KubeProxyConfiguration`);
  if (doc.kind !== undefined && doc.kind !== 'KubeProxyConfiguration')
    throw invalid(`--config ${path}: kind is ${JSON.stringify(doc.kind)}, expected KubeProxyConfiguration`);
  const out = new Map<string, string>();
  const set = (flag: string, v: unknown): void => {
    if (v === undefined || v === null || v === '') return;
    out.set(flag, Array.isArray(v) ? v.join(',') : String(v));
  };
  const nft = (doc.nftables ?? {}) as Record<string, unknown>;
  set('hostname-override', doc.hostnameOverride);
  set('cluster-cidr', doc.clusterCIDR);
  set('healthz-bind-address', doc.healthzBindAddress);
  set('metrics-bind-address', doc.metricsBindAddress);
  if (Array.isArray(doc.nodePortAddresses) && doc.nodePortAddresses.length)
    set('nodeport-addresses', doc.nodePortAddresses);
  set('sync-period', nft.syncPeriod ?? doc.syncPeriod);
  set('min-sync-period', nft.minSyncPeriod ?? doc.minSyncPeriod);
  if (nft.masqueradeAll === true) out.set('masquerade-all', 'true');
  if (doc.mode === 'nftables' || doc.mode === 'userspace') set('proxy-mode', doc.mode);
  else if (doc.mode !== undefined && doc.mode !== '')
    throw invalid(`--config ${path}: mode ${JSON.stringify(doc.mode)} is not nftables or userspace`);
  const kc = (doc.clientConnection ?? {}) as Record<string, unknown>;
  set('kubeconfig', kc.kubeconfig);
  return out;
}

/** Flags over the --config file over defaults, validated: every problem names the flag. */
export function buildConfig(argv: string[], env: NodeJS.ProcessEnv = process.env): ProxyConfig {
  const flags = parseArgs(argv);
  const merged = flags.has('config') ? new Map([...configFileFlags(flags.get('config')!), ...flags]) : flags;
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
  const nodeIPs = (get('node-ip') ?? '')
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

  return {
    ...(get('kubeconfig') ? { kubeconfig: get('kubeconfig')! } : {}),
    ...(get('source') ? { source: get('source')! } : {}),
    ...(get('config') ? { configFile: get('config')! } : {}),
    hostnameOverride: (get('hostname-override') || env.NODE_NAME || hostname()).trim().toLowerCase(),
    nodeIPs,
    proxyMode: mode,
    userspaceBind,
    clusterCIDRs: cidrList(get('cluster-cidr') ?? '', 'cluster-cidr'),
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
    tableName: 'kube-nftproxy',
  };
}
