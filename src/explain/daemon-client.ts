import { request } from 'node:http';
import { ErrorCodes, ProxyError } from '../errors.js';
import { parseBindAddress } from '../server/bind-address.js';
import { readServicesAnswer, type ServicesAnswer } from './services-answer.js';

/** One HTTP GET's outcome. */
export interface GetResult {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** GET `path` from `host`:`port` within `timeoutMs`; rejects on a connection error or timeout. */
export type HttpGet = (host: string, port: number, path: string, timeoutMs: number) => Promise<GetResult>;

/** The most an answer may hold: the daemon cuts /debug/services at 8 MiB, with room above it. */
const MAX_ANSWER_BYTES = 16 << 20;

/** node:http, bounded in time and size. */
export const httpGet: HttpGet = (host, port, path, timeoutMs) =>
  new Promise((resolve, reject) => {
    const req = request({ host, port, path, method: 'GET', timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > MAX_ANSWER_BYTES) req.destroy(new Error(`answer over ${MAX_ANSWER_BYTES} bytes`));
        else chunks.push(c);
      });
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: Buffer.concat(chunks).toString('utf8'),
        }),
      );
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });

/**
 * Where to connect for a bind address: the daemon's --metrics-bind-address may say "every
 * address" (`0.0.0.0:10249`, `[::]:10249`, `:10249`), which is no address to connect to; the
 * same host's loopback reaches it.
 */
export function connectTarget(address: string): { host: string; port: number } {
  const { host, port } = parseBindAddress(address, '--address');
  if (host === '' || host === '0.0.0.0') return { host: '127.0.0.1', port };
  if (host === '::') return { host: '::1', port };
  return { host, port };
}

/** Why a connection failed, in words a person acts on. */
function connectProblem(err: unknown): string {
  const code = (err as { code?: unknown }).code;
  if (code === 'ECONNREFUSED') return 'connection refused';
  if (code === 'EHOSTUNREACH' || code === 'ENETUNREACH') return 'no route to it';
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return 'no such host';
  return err instanceof Error ? err.message : String(err);
}

export interface FetchOptions {
  get?: HttpGet;
  timeoutMs?: number;
  /** Waits before asking again after a 429 (the daemon answers one request at a time). */
  sleep?: (ms: number) => Promise<void>;
}

/**
 * The local daemon's /debug/services for one Service (`namespace/name`), read from `address`
 * (its --metrics-bind-address). Every way of not getting an answer is one
 * EXPLAIN_DAEMON_UNAVAILABLE error naming the address and what to do.
 */
export async function fetchServices(
  address: string,
  service: string,
  opts: FetchOptions = {},
): Promise<ServicesAnswer> {
  const { host, port } = connectTarget(address);
  const get = opts.get ?? httpGet;
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const sleep = opts.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const path = `/debug/services?service=${encodeURIComponent(service)}`;
  const unavailable = (why: string, cause?: unknown): ProxyError =>
    new ProxyError(
      ErrorCodes.EXPLAIN_DAEMON_UNAVAILABLE,
      `cannot read /debug/services from the daemon at ${address}: ${why}`,
      cause === undefined ? undefined : { cause },
    );

  let res: GetResult | undefined;
  // One /debug/services request at a time is served: another one's answer is a second away.
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      res = await get(host, port, path, timeoutMs);
    } catch (err) {
      throw unavailable(
        `${connectProblem(err)} (is kube-nftproxy running on this node? its --metrics-bind-address is where to ask: pass it as --address HOST:PORT)`,
        err,
      );
    }
    if (res.status !== 429) break;
    await sleep(1000);
  }
  if (res!.status !== 200) {
    const error = errorField(res!.body);
    throw unavailable(`HTTP ${res!.status}${error ? `: ${error}` : ''}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(res!.body);
  } catch {
    throw unavailable("the answer is not JSON (is that address kube-nftproxy's metrics address?)");
  }
  const answer = readServicesAnswer(parsed);
  if ('problem' in answer) throw unavailable(`not a /debug/services answer: ${answer.problem}`);
  if (!answer.synced) throw unavailable('the daemon has not synced yet: try again in a moment');
  return answer;
}

/** The `error` field of a JSON error body, when there is one. */
function errorField(body: string): string | undefined {
  try {
    const v = JSON.parse(body) as { error?: unknown };
    return typeof v.error === 'string' ? v.error : undefined;
  } catch {
    return undefined;
  }
}
