import { isIP } from 'node:net';
import { interfaceNameProblem } from '../model/local-traffic.js';
import { isNftProtocol } from '../model/protocol.js';
import type { TraceQuery } from './view.js';

/** Why a /debug/trace query was refused: the parameter at fault and what is wrong with it. */
export interface TraceQueryError {
  parameter: string;
  error: string;
}

const PARAMETERS = new Set(['src', 'dst', 'port', 'proto', 'from', 'iif', 'live', 'timeout']);
const FROMS = new Set(['outside', 'pod', 'node']);

/**
 * Validates every parameter of GET /debug/trace. Unknown parameters are refused too: a typo
 * such as `form=pod` would otherwise silently trace from outside.
 */
export function parseTraceQuery(params: URLSearchParams): TraceQuery | TraceQueryError {
  for (const name of new Set(params.keys())) {
    if (!PARAMETERS.has(name)) {
      return fail(name, 'unknown parameter (accepted: src, dst, port, proto, from, iif, live, timeout)');
    }
    if (params.getAll(name).length > 1) return fail(name, 'given more than once');
  }
  const src = params.get('src');
  const dst = params.get('dst');
  const port = params.get('port');
  const proto = params.get('proto');
  const from = params.get('from');
  const iif = params.get('iif');

  if (!src) return fail('src', 'missing: the source IP address');
  const srcFamily = isIP(src);
  if (srcFamily === 0) return fail('src', `not an IPv4 or IPv6 address: ${JSON.stringify(src)}`);
  if (!dst) return fail('dst', 'missing: the destination IP address');
  const dstFamily = isIP(dst);
  if (dstFamily === 0) return fail('dst', `not an IPv4 or IPv6 address: ${JSON.stringify(dst)}`);
  if (dstFamily !== srcFamily) return fail('dst', `IPv${dstFamily} but src is IPv${srcFamily}`);
  if (!port) return fail('port', 'missing: the destination port (1-65535)');
  const portNumber = /^[0-9]{1,5}$/.test(port) ? Number(port) : NaN;
  if (!(portNumber >= 1 && portNumber <= 65535)) {
    return fail('port', `not a port number 1-65535: ${JSON.stringify(port)}`);
  }
  if (!proto) return fail('proto', 'missing: tcp, udp or sctp');
  const protoLower = proto.toLowerCase();
  if (!isNftProtocol(protoLower)) return fail('proto', `not tcp, udp or sctp: ${JSON.stringify(proto)}`);
  const fromValue = from ?? 'outside';
  if (!FROMS.has(fromValue)) return fail('from', `not outside, pod or node: ${JSON.stringify(from)}`);
  const iifProblem = iif === null ? undefined : interfaceNameProblem(iif);
  if (iifProblem) return fail('iif', `the input interface ${iifProblem}`);

  return {
    src,
    dst,
    port: portNumber,
    proto: protoLower,
    from: fromValue as NonNullable<TraceQuery['from']>,
    ...(iif !== null ? { iif } : {}),
  };
}

/** A live kernel trace's options (live=1): its time limit. */
export interface LiveTraceQuery {
  seconds: number;
}

/**
 * `live` and `timeout` of GET /debug/trace: undefined without live=1 (the model alone answers),
 * the limit in whole seconds (1 to `maxSeconds`, default `defaultSeconds`) with it.
 */
export function parseLiveQuery(
  params: URLSearchParams,
  defaultSeconds: number,
  maxSeconds: number,
): LiveTraceQuery | undefined | TraceQueryError {
  const live = params.get('live');
  const timeout = params.get('timeout');
  if (live !== null && !['0', '1', 'true', 'false'].includes(live)) return fail('live', 'expected 1 or 0');
  const isLive = live === '1' || live === 'true';
  if (!isLive) return timeout === null ? undefined : fail('timeout', 'only with live=1');
  if (timeout === null) return { seconds: defaultSeconds };
  const seconds = /^[0-9]{1,4}$/.test(timeout) ? Number(timeout) : NaN;
  if (!(seconds >= 1 && seconds <= maxSeconds))
    return fail('timeout', `whole seconds from 1 to ${maxSeconds}: ${JSON.stringify(timeout)}`);
  return { seconds };
}

export function isTraceQueryError(q: object | undefined): q is TraceQueryError {
  return q !== undefined && 'error' in q;
}

function fail(parameter: string, what: string): TraceQueryError {
  return { parameter, error: `${parameter}: ${what}` };
}
