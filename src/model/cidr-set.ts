import { parseCidr, type Cidr } from './ip.js';

const bitsOf = (c: Cidr): number => (c.family === 'ipv4' ? 32 : 128);
const lastOf = (c: Cidr): bigint => c.base + (1n << BigInt(bitsOf(c) - c.prefix)) - 1n;
/** The block one bit wider that holds `c` (parseCidr clears the host bit). */
const parentOf = (c: Cidr): Cidr => parseCidr(`${c.text.slice(0, c.text.indexOf('/'))}/${c.prefix - 1}`)!;

/**
 * A list of CIDRs as the fewest CIDRs that cover the same addresses, sorted by family and
 * address: duplicates and ranges inside another go, and two halves of one block become the
 * block. An nft interval set refuses elements that overlap (in 1.0.6, also a later, smaller
 * range inside an earlier one), so loadBalancerSourceRanges become elements only in this form.
 * Two CIDRs never overlap in part: either one holds the other or they are apart.
 */
export function mergeCidrs(texts: readonly string[]): string[] {
  const parsed = texts.map((t) => parseCidr(t)).filter((c): c is Cidr => c !== undefined);
  const out: string[] = [];
  for (const family of ['ipv4', 'ipv6'] as const) {
    const list = parsed
      .filter((c) => c.family === family)
      .sort((a, b) => (a.base < b.base ? -1 : a.base > b.base ? 1 : a.prefix - b.prefix));
    // Drop what an earlier (wider or equal, same start or before) range already covers.
    let kept: Cidr[] = [];
    for (const c of list) {
      const prev = kept[kept.length - 1];
      if (prev && c.base >= prev.base && lastOf(c) <= lastOf(prev)) continue;
      kept.push(c);
    }
    // Join sibling halves into their parent until nothing joins; each join can enable another.
    let joined = true;
    while (joined) {
      joined = false;
      const next: Cidr[] = [];
      for (const c of kept) {
        const prev = next[next.length - 1];
        if (prev && prev.prefix === c.prefix && prev.prefix > 0) {
          const size = 1n << BigInt(bitsOf(c) - c.prefix + 1);
          if (prev.base % size === 0n && prev.base + size / 2n === c.base) {
            next[next.length - 1] = parentOf(prev);
            joined = true;
            continue;
          }
        }
        next.push(c);
      }
      kept = next;
    }
    for (const c of kept) out.push(c.text);
  }
  return out;
}
