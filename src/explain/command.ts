import { ErrorCodes, ProxyError } from '../errors.js';
import { SERVICE_NAME } from '../model/object-key.js';
import { parseBindAddress } from '../server/bind-address.js';
import { fetchServices, type FetchOptions } from './daemon-client.js';
import { explainLines } from './format.js';

/** The daemon's default --metrics-bind-address, where explain asks unless told otherwise. */
export const DEFAULT_ADDRESS = '127.0.0.1:10249';

export const EXPLAIN_USAGE = `Usage: kube-nftproxy explain NAMESPACE/NAME [--address HOST:PORT] [--timeout SECONDS]

Asks the kube-nftproxy daemon on this node (its /debug/services) how it programs one Service:
each port's frontends, the endpoints chosen for cluster-wide and for local traffic, flags,
new-connection counters per frontend, and anything of the Service it skipped, with the reason.

  --address HOST:PORT   the daemon's --metrics-bind-address (alias --metrics-bind-address)
                        (default ${DEFAULT_ADDRESS})
  --timeout SECONDS     how long to wait for the answer (default 10)

Exit codes: 0 explained; 1 the daemon cannot be read; 2 invalid arguments;
6 the daemon knows no such Service.`;

/** What `explain` was asked. */
export interface ExplainArgs {
  help: boolean;
  service: string;
  address: string;
  timeoutMs: number;
}

const invalid = (message: string): ProxyError =>
  new ProxyError(ErrorCodes.CONFIG_INVALID, `explain: ${message} (see kube-nftproxy explain --help)`);

/** `explain`'s arguments (those after the word `explain`), validated. */
export function parseExplainArgs(argv: readonly string[]): ExplainArgs {
  let service: string | undefined;
  let address = DEFAULT_ADDRESS;
  let timeoutMs = 10_000;
  let help = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--help' || arg === '-h') {
      help = true;
      continue;
    }
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(arg);
    if (!m) {
      if (arg.startsWith('-')) throw invalid(`unknown flag ${JSON.stringify(arg)}`);
      if (service !== undefined) throw invalid(`one Service at a time, got ${JSON.stringify(arg)} too`);
      service = arg;
      continue;
    }
    const name = m[1]!;
    if (name !== 'address' && name !== 'metrics-bind-address' && name !== 'timeout')
      throw invalid(`unknown flag --${name}`);
    const value = m[2] ?? argv[++i];
    if (value === undefined) throw invalid(`--${name} needs a value`);
    if (name === 'timeout') {
      const seconds = Number(value);
      if (!(seconds > 0 && seconds <= 3600)) throw invalid('--timeout: expected seconds, from 0 to 3600');
      timeoutMs = Math.round(seconds * 1000);
    } else {
      try {
        parseBindAddress(value, `--${name}`);
      } catch {
        throw invalid(`--${name}: expected HOST:PORT, got ${JSON.stringify(value)}`);
      }
      address = value;
    }
  }
  if (help) return { help, service: service ?? '', address, timeoutMs };
  if (service === undefined) throw invalid('which Service? give NAMESPACE/NAME');
  // Checked here as the daemon checks ?service=, so that a typo is exit 2, not a refused request.
  if (!SERVICE_NAME.test(service))
    throw invalid(`${JSON.stringify(service)} is not NAMESPACE/NAME (lower case, e.g. kube-system/kube-dns)`);
  return { help, service, address, timeoutMs };
}

export interface ExplainDeps extends Omit<FetchOptions, 'timeoutMs'> {
  /** Where the text goes: one call per line, without the newline. */
  write: (line: string) => void;
}

/**
 * `kube-nftproxy explain NAMESPACE/NAME`: resolves when the Service was explained; rejects with
 * CONFIG_INVALID (bad arguments), EXPLAIN_DAEMON_UNAVAILABLE or EXPLAIN_SERVICE_NOT_FOUND.
 */
export async function runExplain(argv: readonly string[], deps: ExplainDeps): Promise<void> {
  const args = parseExplainArgs(argv);
  if (args.help) {
    for (const line of EXPLAIN_USAGE.split('\n')) deps.write(line);
    return;
  }
  const answer = await fetchServices(args.address, args.service, { ...deps, timeoutMs: args.timeoutMs });
  const known =
    answer.ports.some((p) => p.service === args.service) ||
    answer.skipped.some((s) => s.name === args.service);
  if (!known)
    throw new ProxyError(
      ErrorCodes.EXPLAIN_SERVICE_NOT_FOUND,
      `the daemon at ${args.address} knows no Service ${args.service}: no port programmed and nothing skipped (check the name with kubectl get service -n ${args.service.split('/')[0]})`,
    );
  for (const line of explainLines(args.service, answer)) deps.write(line);
}
