import { canonicalIp } from '../model/ip.js';

/**
 * One conntrack entry, as far as the stale-flow cleanup needs it: the tuple the client sent
 * (original direction) and where the answers come from (reply direction). After DNAT the reply
 * source is the endpoint the flow is bound to; without NAT it is the original destination.
 */
export interface Flow {
  origSrc: string;
  origDst: string;
  origSport: number;
  origDport: number;
  replySrc: string;
  replySport: number;
}

/** The value of `key` (e.g. ` dst=`) at or after `from` in `line`, and where it ends. */
function field(line: string, key: string, from: number): [string, number] | undefined {
  const at = line.indexOf(key, from);
  if (at < 0) return undefined;
  const start = at + key.length;
  let end = line.indexOf(' ', start);
  if (end < 0) end = line.length;
  return [line.slice(start, end), end];
}

function port(text: string): number {
  const n = Number(text);
  return text !== '' && Number.isInteger(n) && n >= 0 && n <= 65535 ? n : -1;
}

/**
 * The original destination port of a `conntrack -L` line, or -1: the cheap look a listing of
 * 100,000 lines gets before {@link parseFlow} reads the few that may matter.
 */
export function origDport(line: string): number {
  const dport = field(line, ' dport=', 0);
  return dport ? port(dport[0]) : -1;
}

/**
 * Reads one line of `conntrack -L` (the default text output), e.g.
 * `udp 17 29 src=A dst=B sport=1 dport=2 [UNREPLIED] src=C dst=A sport=3 dport=1 mark=0 use=1`:
 * the first `src=`/`dst=`/`sport=`/`dport=` are the original direction, the second ones the
 * reply. Addresses come back canonical (the model's form). Anything else (the summary line, a
 * protocol without ports) is undefined. It looks for the four fields it needs rather than
 * splitting the line: a listing has 100,000 of them.
 */
export function parseFlow(line: string): Flow | undefined {
  const origSrc = field(line, ' src=', 0);
  if (!origSrc) return undefined;
  const origDst = field(line, ' dst=', origSrc[1]);
  if (!origDst) return undefined;
  const origSport = field(line, ' sport=', origDst[1]);
  if (!origSport) return undefined;
  const origDport = field(line, ' dport=', origSport[1]);
  if (!origDport) return undefined;
  const replySrc = field(line, ' src=', origDport[1]);
  if (!replySrc) return undefined;
  const replySport = field(line, ' sport=', replySrc[1]);
  if (!replySport) return undefined;
  const ports = [port(origSport[0]), port(origDport[0]), port(replySport[0])] as const;
  if (ports.some((p) => p < 0)) return undefined;
  const src = canonicalIp(origSrc[0]);
  const dst = canonicalIp(origDst[0]);
  const reply = canonicalIp(replySrc[0]);
  if (!src || !dst || !reply) return undefined;
  return {
    origSrc: src,
    origDst: dst,
    origSport: ports[0],
    origDport: ports[1],
    replySrc: reply,
    replySport: ports[2],
  };
}
