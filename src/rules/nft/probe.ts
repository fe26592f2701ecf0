/**
 * The start-up check (STYLE.md, habit 8): nft is installed, new enough, we may use it, and it
 * accepts every construct the compiler emits. `--check` never commits, so it touches nothing.
 */
import { ErrorCodes, hasCode, isNftCrashed, isNftMissing, isPermission, ProxyError } from '../../errors.js';
import { NftCrashError, type Nft } from './exec.js';
import { Transaction } from './transaction.js';
import type { NftFamily } from './types.js';

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
      typeof: 'ip daddr . th dport . numgen random mod 2',
      valueTypeof: 'ip daddr . tcp dport',
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
      rule: 'meta l4proto tcp dnat ip to ip daddr . th dport . numgen random mod 2 map @m',
    })
    .add({ kind: 'rule', ...at, chain: 'prerouting', rule: 'ip daddr . meta l4proto . th dport vmap @v' })
    .add({ kind: 'element', ...at, set: 'v', key: '10.0.0.1 . tcp . 80', value: 'goto lb-2' })
    .add({
      kind: 'element',
      ...at,
      set: 'm',
      key: '10.0.0.1 . 80 . 0',
      value: '10.1.0.1 . 8080',
    });
}

/**
 * The tables that crash this nft when listed: found by listing each on its own, as nothing
 * that reads every set at once survives (docs/nft-facts.md). Empty when nft cannot say.
 */
async function crashingTables(nft: Nft): Promise<string[]> {
  if (!nft.tables) return [];
  const crashing: string[] = [];
  try {
    for (const name of await nft.tables()) {
      const [family, table] = name.split(' ') as [NftFamily, string];
      try {
        await nft.list(family, table);
      } catch (err) {
        if (isNftCrashed(err)) crashing.push(name);
      }
    }
  } catch {
    return [];
  }
  return crashing;
}

/** The probe crashed nft: say so, name the tables that crash it, and say what to do. */
async function crashDiagnosis(nft: Nft, version: string, err: ProxyError): Promise<ProxyError> {
  const signal = err instanceof NftCrashError ? ` (${err.signal})` : '';
  const tables = await crashingTables(nft);
  const which =
    tables.length === 0
      ? 'a table that a newer nft wrote'
      : `${tables.map((t) => `table ${t}`).join(', ')}, which a newer nft wrote`;
  return new ProxyError(
    ErrorCodes.NFT_CRASHED,
    `nft ${version} crashed${signal} checking a transaction that commits nothing: nft before 1.1 ` +
      `crashes reading ${which} (interval or dynamic sets; \`nft list ruleset\` crashes the same ` +
      "way). Run kube-nftproxy with nft >= 1.1 (its image ships 1.1.3, Debian trixie's); " +
      'kube-nftproxy never touches tables other than its own',
    { cause: err },
  );
}

/**
 * Checks that nft can run our transactions. Rejects with NFT_BINARY_MISSING, NFT_VERSION,
 * NFT_PERMISSION, NFT_CRASHED (nft died: a table a newer nft wrote crashes nft < 1.1) or
 * NFT_REJECTED (a feature this nft or kernel lacks), each saying what to do.
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
    if (err instanceof ProxyError && isNftCrashed(err)) throw await crashDiagnosis(nft, version, err);
    if (err instanceof ProxyError && hasCode(err, ErrorCodes.NFT_TIMEOUT)) throw err;
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
