import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { ErrorCodes, ProxyError } from '../errors.js';

/** Where the service account's token and CA are mounted in a Pod. */
export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

export interface KubeConfigSearch {
  /** `--kubeconfig PATH`: when given, it is used or the load fails; nothing else is tried. */
  kubeconfigPath?: string;
  /** The environment to read (KUBERNETES_SERVICE_HOST/_PORT, KUBECONFIG). Default: process.env. */
  env?: Record<string, string | undefined>;
  /** Default: os.homedir(). */
  homeDir?: string;
  /** Default: SERVICE_ACCOUNT_DIR. */
  serviceAccountDir?: string;
}

export interface LoadedKubeConfig {
  kubeConfig: KubeConfig;
  /** Which of the places gave the credentials. */
  source: 'flag' | 'in-cluster' | 'KUBECONFIG' | 'home';
  /** The file read, or the service account directory for in-cluster. */
  from: string;
  /** The API server URL the client will talk to. */
  server: string;
}

/**
 * API server credentials, looked for where kube-proxy users expect them: --kubeconfig, else
 * in-cluster (KUBERNETES_SERVICE_HOST/_PORT and the service account token), else $KUBECONFIG,
 * else ~/.kube/config. A place that is present but broken fails loudly instead of being skipped;
 * when no place has anything, the error lists what was tried.
 *
 * In-cluster, the API server address comes from KUBERNETES_SERVICE_HOST/_PORT and nothing else:
 * the address the kubelet puts there is the `kubernetes` Service, which nobody proxies while
 * kube-proxy is off, so the DaemonSet overrides both variables with the real API server.
 */
export function loadKubeConfig(opts: KubeConfigSearch = {}): LoadedKubeConfig {
  const env = opts.env ?? process.env;
  const tried: string[] = [];

  if (opts.kubeconfigPath) return fromFile(opts.kubeconfigPath, 'flag', '--kubeconfig');
  tried.push('--kubeconfig (not given)');

  const saDir = opts.serviceAccountDir ?? SERVICE_ACCOUNT_DIR;
  const host = env.KUBERNETES_SERVICE_HOST;
  const port = env.KUBERNETES_SERVICE_PORT;
  const tokenFile = path.join(saDir, 'token');
  if (!host || !port) {
    tried.push('in-cluster (KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT not both set)');
  } else if (!fs.existsSync(tokenFile)) {
    tried.push(`in-cluster (KUBERNETES_SERVICE_HOST is set, but there is no token at ${tokenFile})`);
  } else {
    return inCluster(host, port, saDir);
  }

  const list = (env.KUBECONFIG ?? '').split(path.delimiter).filter((p) => p !== '');
  if (list.length === 0) {
    tried.push('$KUBECONFIG (not set)');
  } else {
    // Like kubectl, the first file of the list names the context; merging several is not supported.
    const file = list.find((p) => fs.existsSync(p));
    if (file) return fromFile(file, 'KUBECONFIG', '$KUBECONFIG');
    tried.push(`$KUBECONFIG (${list.join(path.delimiter)}: no such file)`);
  }

  const home = path.join(opts.homeDir ?? os.homedir(), '.kube', 'config');
  if (fs.existsSync(home)) return fromFile(home, 'home', home);
  tried.push(`${home} (no such file)`);

  throw new ProxyError(
    ErrorCodes.KUBECONFIG_INVALID,
    `no API server credentials; tried ${tried.join(', ')}. ` +
      'Pass --kubeconfig PATH, or run in a Pod with a service account token and KUBERNETES_SERVICE_HOST/_PORT set.',
  );
}

function fromFile(file: string, source: LoadedKubeConfig['source'], what: string): LoadedKubeConfig {
  const kc = new KubeConfig();
  try {
    kc.loadFromFile(file);
  } catch (err) {
    throw invalid(`${what} ${file}: ${firstLine(err)}`, err);
  }
  return checked(kc, source, file, `${what} ${file}`);
}

function inCluster(host: string, port: string, saDir: string): LoadedKubeConfig {
  // client-node's own loadFromCluster reads process.env and the fixed mount path; this is the
  // same config built from what we were given. Plain HTTP ports follow client-node's rule.
  const scheme = port === '80' || port === '8080' || port === '8001' ? 'http' : 'https';
  const server = `${scheme}://${net.isIPv6(host) ? `[${host}]` : host}:${port}`;
  const caFile = path.join(saDir, 'ca.crt');
  const namespaceFile = path.join(saDir, 'namespace');
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [
      {
        name: 'in-cluster',
        server,
        // No CA mounted: fall back to the system's CAs rather than to no verification.
        ...(fs.existsSync(caFile) ? { caFile } : {}),
        // client-node 1.4 refuses http:// servers unless this is set; there is no TLS to skip.
        skipTLSVerify: scheme === 'http',
      },
    ],
    // The token file is re-read by client-node (at most a minute old): projected tokens rotate.
    users: [
      {
        name: 'in-cluster',
        authProvider: { name: 'tokenFile', config: { tokenFile: path.join(saDir, 'token') } },
      },
    ],
    contexts: [
      {
        name: 'in-cluster',
        cluster: 'in-cluster',
        user: 'in-cluster',
        ...(fs.existsSync(namespaceFile) ? { namespace: fs.readFileSync(namespaceFile, 'utf8').trim() } : {}),
      },
    ],
    currentContext: 'in-cluster',
  });
  return checked(kc, 'in-cluster', saDir, `in-cluster (${server})`);
}

function checked(
  kc: KubeConfig,
  source: LoadedKubeConfig['source'],
  from: string,
  what: string,
): LoadedKubeConfig {
  const cluster = kc.getCurrentCluster();
  if (!kc.getCurrentContext() || !cluster) {
    throw invalid(`${what}: no current context with a cluster (set current-context)`);
  }
  if (!cluster.server) throw invalid(`${what}: cluster ${cluster.name} has no server`);
  if (cluster.server.startsWith('http:') && !cluster.skipTLSVerify) {
    // Otherwise the first request fails with "HTTP protocol is not allowed when skipTLSVerify is not set".
    throw invalid(
      `${what}: plain http:// server ${cluster.server} needs insecure-skip-tls-verify: true (a client-node rule)`,
    );
  }
  return { kubeConfig: kc, source, from, server: cluster.server };
}

function invalid(message: string, cause?: unknown): ProxyError {
  return new ProxyError(ErrorCodes.KUBECONFIG_INVALID, message, { cause });
}

function firstLine(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  return message.split('\n')[0] ?? message;
}
