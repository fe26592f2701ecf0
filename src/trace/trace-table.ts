/**
 * The table a live trace arms (GET /debug/trace?live=1): `<table>-trace`, e.g. `ip
 * kube-nftproxy-trace`, beside our rules' table and owned by kube-nftproxy as well.
 *
 * Why a table of its own and not a chain in `kube-nftproxy`: that table belongs to the applier,
 * whose full syncs (at start, hourly, after any failure) destroy and rebuild it in one
 * transaction and whose partial syncs diff it against what it applied. A trace chain inside it
 * would either vanish under a sync or need the compiler to carry a debugging chain on every
 * node at all times (a base chain every packet of the node passes). This table exists only
 * while a trace is armed, no sync ever touches it, and its transactions never race with the
 * applier's (nft commits are atomic per transaction, and they touch different tables).
 *
 * The time limit is the kernel's: the tuple is an element with a timeout, so even a daemon
 * killed mid-trace stops marking packets when the limit passes; the empty table left behind is
 * destroyed at the next start (and by --cleanup).
 */
import type { Family } from '../model/types.js';
import { Transaction } from '../rules/nft/transaction.js';
import type { Chain, NftFamily, Table } from '../rules/nft/types.js';
import { SYNTAX } from '../rules/layout.js';
import type { TraceTableChains, TracedTuple } from './kernel-path.js';

/** The trace table's name for our table's name. */
export const traceTableName = (table: string): string => `${table}-trace`;

/**
 * Marks the packet before anything else sees it: before raw (-300), conntrack (-200) and every
 * chain of ours (-110 and later), after defragmentation (-400) so that its ports can be read.
 */
export const MARK_PRIORITY = -350;

/** Runs after every other chain of its hook: its policy line says the packet passed them all. */
export const LAST_PRIORITY = 2147483647;

const TUPLES = 'tuples';
/** The chains whose policy ends the trace (KernelPathBuilder). */
const LAST_CHAINS = ['input', 'postrouting'] as const;

/** What the KernelPathBuilder needs to know of the trace table. */
export function traceTableChains(table: string, family: Family): TraceTableChains {
  return { family: SYNTAX[family].nft, table: traceTableName(table), last: LAST_CHAINS };
}

/**
 * Creates the trace table (leftovers destroyed first, in the same transaction) with its chains
 * and an empty tuple set: nothing is marked yet. Created before `nft monitor trace` starts, so
 * that the monitor prints its rules by their text.
 */
export function createTraceTable(table: string, family: Family): Transaction {
  const { nft, x, addr } = SYNTAX[family];
  const base = { family: nft, table: traceTableName(table) };
  const tx = new Transaction();
  tx.destroy({ kind: 'table', ...base });
  tx.add({ kind: 'table', ...base, comment: 'kube-nftproxy live trace (GET /debug/trace?live=1)' });
  tx.add({
    kind: 'set',
    ...base,
    name: TUPLES,
    type: [addr, addr, 'inet_proto', 'inet_service'],
    flags: ['timeout'],
  });
  const chain = (name: string, hook: NonNullable<Chain['hook']>, priority: number): void => {
    tx.add({ kind: 'chain', ...base, name, type: 'filter', hook, priority });
  };
  chain('prerouting', 'prerouting', MARK_PRIORITY);
  chain('output', 'output', MARK_PRIORITY);
  for (const hook of LAST_CHAINS) chain(hook, hook, LAST_PRIORITY);
  for (const name of ['prerouting', 'output']) {
    tx.add({
      kind: 'rule',
      ...base,
      chain: name,
      rule: `${x} saddr . ${x} daddr . meta l4proto . th dport @${TUPLES} meta nftrace set 1`,
    });
  }
  return tx;
}

/** Marks packets of `tuple` for `seconds`: the kernel forgets the tuple after that. */
export function armTuple(table: string, family: Family, tuple: TracedTuple, seconds: number): Transaction {
  return new Transaction().add({
    kind: 'element',
    family: SYNTAX[family].nft,
    table: traceTableName(table),
    set: TUPLES,
    key: `${tuple.saddr} . ${tuple.daddr} . ${tuple.proto} . ${tuple.dport}`,
    timeout: `${seconds}s`,
  });
}

/** The trace tables of both families (--cleanup deletes them with ours). */
export function traceTables(table: string): Table[] {
  return (['ip', 'ip6'] as NftFamily[]).map((family) => ({
    kind: 'table',
    family,
    table: traceTableName(table),
  }));
}

/** Removes the trace tables of both families, if there are any. */
export function destroyTraceTables(table: string): Transaction {
  const tx = new Transaction();
  for (const t of traceTables(table)) tx.destroy(t);
  return tx;
}
