/**
 * One line of `nft monitor trace`, as data. The format is nft's (src/trace.c), the same in
 * 1.0.6 and 1.1.3 (measured, test/fixtures/nft-trace/):
 *
 * ```
 * trace id 6f26bd05 ip kube-nftproxy filter-prerouting packet: iif "c0" ... ip saddr 10.0.1.2 ip daddr 10.96.0.10 ... tcp sport 59198 tcp dport 80 ...
 * trace id 6f26bd05 ip kube-nftproxy services rule ip daddr 10.96.0.10 tcp dport 80 goto clusterip-1 (verdict goto clusterip-1)
 * trace id 6f26bd05 ip kube-nftproxy services unknown rule handle 23 (verdict goto clusterip-1)
 * trace id 6f26bd05 ip kube-nftproxy filter-prerouting-post-dnat policy accept meta mark 0x00004000
 * trace id 6f26bd05 ip kube-nftproxy firewall-check verdict continue
 * ```
 *
 * A rule nft did not know when it started (added since) prints as `unknown rule handle N`;
 * its verdict is still there.
 */

/** The addresses and ports of a `packet:` line (the packet as it enters a base chain). */
export interface TracedPacket {
  saddr?: string;
  daddr?: string;
  /** tcp, udp or sctp, when the line shows its ports. */
  proto?: string;
  sport?: number;
  dport?: number;
  iif?: string;
  oif?: string;
}

interface Head {
  /** The trace id: one packet, through every hook it meets. */
  id: string;
  family: string;
  table: string;
  chain: string;
}

export type TraceLine =
  | (Head & { kind: 'packet'; packet: TracedPacket })
  /** A rule that matched; `rule` is its text, or undefined when nft printed only its handle. */
  | (Head & { kind: 'rule'; rule: string | undefined; handle?: number; verdict: string })
  /** The end of a chain: `policy` for a base chain's policy, `verdict` for a return. */
  | (Head & { kind: 'policy' | 'verdict'; verdict: string });

const HEAD = /^trace id ([0-9a-f]+) (\S+) (\S+) (\S+) (.*)$/;

/** Parses one line; undefined for anything else (nft's blank lines, errors, other output). */
export function parseTraceLine(line: string): TraceLine | undefined {
  const m = HEAD.exec(line.trimEnd());
  if (!m) return undefined;
  const head: Head = { id: m[1]!, family: m[2]!, table: m[3]!, chain: m[4]! };
  const rest = m[5]!;
  if (rest.startsWith('packet: ')) return { ...head, kind: 'packet', packet: parsePacket(rest.slice(8)) };
  const ruled = /^(?:rule (.*)|unknown rule handle (\d+)) \(verdict ([^)]*)\)$/.exec(rest);
  if (ruled) {
    return {
      ...head,
      kind: 'rule',
      rule: ruled[1],
      ...(ruled[2] !== undefined ? { handle: Number(ruled[2]) } : {}),
      verdict: ruled[3]!,
    };
  }
  // `policy accept meta mark 0x00004000`: the mark the packet leaves with follows the verdict.
  const ended = /^(policy|verdict) (\S+(?: \S+)??)(?: meta mark \S+)?$/.exec(rest);
  if (ended) return { ...head, kind: ended[1] as 'policy' | 'verdict', verdict: ended[2]! };
  return undefined;
}

function parsePacket(text: string): TracedPacket {
  const field = (re: RegExp): string | undefined => re.exec(text)?.[1];
  const ports = /\b(tcp|udp|sctp) sport (\d+) \1 dport (\d+)/.exec(text);
  const p: TracedPacket = {};
  const saddr = field(/\bip6? saddr (\S+)/);
  const daddr = field(/\bip6? daddr (\S+)/);
  const iif = field(/\biif "([^"]*)"/);
  const oif = field(/\boif "([^"]*)"/);
  if (saddr !== undefined) p.saddr = saddr;
  if (daddr !== undefined) p.daddr = daddr;
  if (ports) {
    p.proto = ports[1]!;
    p.sport = Number(ports[2]);
    p.dport = Number(ports[3]);
  }
  if (iif !== undefined) p.iif = iif;
  if (oif !== undefined) p.oif = oif;
  return p;
}
