import type { TracedPacket, TraceLine } from './monitor-line.js';

/** One matched rule on the packet's way, as `nft monitor trace` showed it. */
export interface KernelRule {
  /** `family table chain`, e.g. `ip kube-nftproxy services`. */
  chain: string;
  /** The rule's text; `handle N` when nft did not know the rule (added after it started). */
  rule: string;
  /** `continue`, `accept`, `drop`, `jump x`, `goto x`, ... */
  verdict: string;
}

/** Where the kernel sent one packet, read from its trace. */
export interface KernelPath {
  /**
   * Every chain the trace shows it in, in order (`family table chain`): base chains, and regular
   * chains where a rule matched (nft prints nothing for a chain none of whose rules match). The
   * trace table's own are left out.
   */
  chains: string[];
  /** Every rule that matched, in order; the trace table's own left out. */
  rules: KernelRule[];
  /** `accept` (it left every hook), `reject`, `drop`; undefined while incomplete. */
  verdict: 'accept' | 'reject' | 'drop' | undefined;
  /** The destination it was translated to (`ip:port`, `[ip6]:port`), null when untouched. */
  dnat: string | null;
  /** Its source was rewritten (a masquerade rule matched, or it left with another source). */
  masquerade: boolean;
  /** The packet as it first met a hook, and as it last did. */
  first: TracedPacket | undefined;
  last: TracedPacket | undefined;
  /** The trace reached its end: past the last hook, or dropped. */
  complete: boolean;
}

/** The chains of the trace table that mark the end of the packet's way (lowest priority, last). */
export interface TraceTableChains {
  family: string;
  table: string;
  /** Chains whose policy line means the packet passed everything: `input`, `postrouting`. */
  last: readonly string[];
}

/** The packet the trace table marks: its source, destination, protocol and port. */
export interface TracedTuple {
  saddr: string;
  daddr: string;
  proto: string;
  dport: number;
}

/**
 * Follows the first packet the trace table marks through `nft monitor trace`'s lines: the
 * first trace id whose packet the trace table's own chains show with `tuple` is the packet;
 * lines of other ids (later packets of the flow, anyone else's tracing) are ignored. Complete at a drop (a reject drops)
 * or at the policy of one of the trace table's last chains, which run after every other chain
 * of their hook.
 */
export class KernelPathBuilder {
  readonly #table: TraceTableChains;
  readonly #tuple: TracedTuple;
  #id: string | undefined;
  readonly #chains: string[] = [];
  readonly #rules: KernelRule[] = [];
  #first: TracedPacket | undefined;
  #last: TracedPacket | undefined;
  #verdict: KernelPath['verdict'];
  #masqueradeRule = false;

  constructor(table: TraceTableChains, tuple: TracedTuple) {
    this.#table = table;
    this.#tuple = tuple;
  }

  get complete(): boolean {
    return this.#verdict !== undefined;
  }

  /** Takes one line; returns true once the path is complete (later lines are ignored). */
  add(line: TraceLine): boolean {
    if (this.complete) return true;
    const ours = line.family === this.#table.family && line.table === this.#table.table;
    if (this.#id === undefined) {
      if (!ours || line.kind !== 'packet' || !matches(line.packet, this.#tuple)) return false;
      this.#id = line.id;
    }
    if (line.id !== this.#id) return false;
    const chain = `${line.family} ${line.table} ${line.chain}`;
    if (!ours && this.#chains.at(-1) !== chain) this.#chains.push(chain);
    switch (line.kind) {
      case 'packet':
        this.#first ??= line.packet;
        this.#last = line.packet;
        break;
      case 'rule': {
        const rule = line.rule ?? `handle ${line.handle ?? '?'}`;
        if (!ours) this.#rules.push({ chain, rule, verdict: line.verdict });
        if (!ours && line.verdict === 'accept' && /\bmasquerade\b/.test(rule)) this.#masqueradeRule = true;
        if (line.verdict === 'drop') this.#verdict = /\breject\b/.test(rule) ? 'reject' : 'drop';
        break;
      }
      case 'policy':
        if (line.verdict === 'drop') this.#verdict = 'drop';
        else if (ours && line.verdict === 'accept' && this.#table.last.includes(line.chain))
          this.#verdict = 'accept';
        break;
      case 'verdict':
        if (line.verdict === 'drop') this.#verdict = 'drop';
        break;
    }
    return this.complete;
  }

  /** What is known so far (complete or not). */
  path(): KernelPath {
    const first = this.#first;
    const last = this.#last;
    const moved =
      first !== undefined &&
      last !== undefined &&
      (first.daddr !== last.daddr || first.dport !== last.dport) &&
      last.daddr !== undefined;
    const dnat = moved ? hostPort(last.daddr!, last.dport) : null;
    const sourceChanged =
      first?.saddr !== undefined && last?.saddr !== undefined && first.saddr !== last.saddr;
    return {
      chains: [...this.#chains],
      rules: [...this.#rules],
      verdict: this.#verdict,
      dnat,
      masquerade: this.#masqueradeRule || sourceChanged,
      first,
      last,
      complete: this.complete,
    };
  }
}

function matches(p: TracedPacket, t: TracedTuple): boolean {
  return p.saddr === t.saddr && p.daddr === t.daddr && p.proto === t.proto && p.dport === t.dport;
}

/** `10.0.0.1:80`, `[fd00::1]:80`; the address alone without a port. */
export function hostPort(ip: string, port: number | undefined): string {
  const host = ip.includes(':') ? `[${ip}]` : ip;
  return port === undefined ? host : `${host}:${port}`;
}
