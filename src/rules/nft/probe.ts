/**
 * The start-up check (STYLE.md, habit 8): nft is installed, new enough, we may use it, and it
 * accepts every construct the compiler emits. `--check` never commits, so it touches nothing.
 */
import { ErrorCodes, isNftMissing, isPermission, ProxyError } from '../../errors.js';
import type { Nft } from './exec.js';
import { Transaction } from './transaction.js';

/** The oldest nft whose syntax and concatenated `typeof` maps we rely on. */
export const MIN_NFT_VERSION = '1.0.0';

/** Compares dotted versions numerically: -1, 0 or 1. */
export function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return Math.sign(d);
  }
  return 0;
}

const PROBE_TABLE = 'kube-nftproxy-probe';

/** A transaction that uses the features the compiler depends on, in the shapes it uses them. */
export function probeTransaction(): Transaction {
  const at = { family: 'ip', table: PROBE_TABLE } as const;
  return new Transaction()
    .add({ kind: 'table', ...at, comment: 'kube-nftproxy feature probe' })
    .add({ kind: 'chain', ...at, name: 'lb-2' })
    .add({ kind: 'chain', ...at, name: 'prerouting', type: 'nat', hook: 'prerouting', priority: 'dstnat' })
    .add({
      kind: 'map',
      ...at,
      name: 'm',
      typeof: 'ip daddr . meta l4proto . th dport . numgen random mod 2',
      valueTypeof: 'ip daddr . th dport',
    })
    .add({
      kind: 'map',
      ...at,
      name: 'v',
      type: ['ipv4_addr', 'inet_proto', 'inet_service'],
      valueType: ['verdict'],
    })
    .add({
      kind: 'rule',
      ...at,
      chain: 'lb-2',
      rule: 'dnat ip to ip daddr . meta l4proto . th dport . numgen random mod 2 map @m',
    })
    .add({ kind: 'rule', ...at, chain: 'prerouting', rule: 'ip daddr . meta l4proto . th dport vmap @v' })
    .add({ kind: 'element', ...at, set: 'v', key: '10.0.0.1 . tcp . 80', value: 'goto lb-2' })
    .add({
      kind: 'element',
      ...at,
      set: 'm',
      key: '10.0.0.1 . tcp . 80 . 0',
      value: '10.1.0.1 . 8080',
    });
}

/**
 * Checks that nft can run our transactions. Rejects with NFT_NOT_FOUND, NFT_VERSION,
 * NFT_PERMISSION or NFT_REJECTED (a feature this nft or kernel lacks), each saying what to do.
 */
export async function probeNft(nft: Nft): Promise<{ version: string }> {
  const version = await nft.version();
  if (compareVersions(version, MIN_NFT_VERSION) < 0) {
    throw new ProxyError(
      ErrorCodes.NFT_VERSION,
      `nft ${version} is too old: kube-nftproxy needs nft >= ${MIN_NFT_VERSION}; upgrade the nftables package`,
    );
  }
  try {
    await nft.check(probeTransaction());
  } catch (err) {
    if (err instanceof ProxyError && !isPermission(err) && !isNftMissing(err)) {
      throw new ProxyError(
        err.code,
        `nft ${version} rejects a construct kube-nftproxy needs (concatenated typeof maps, numgen, verdict maps): ${err.message}`,
        { cause: err },
      );
    }
    throw err;
  }
  return { version };
}
