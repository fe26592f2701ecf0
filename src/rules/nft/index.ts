/** The nftables wrapper: transactions as data, their nft text, the real nft and an in-memory fake. */
export type {
  Chain,
  Element,
  Hook,
  NftFamily,
  NftMap,
  NftObject,
  NftSet,
  Operation,
  Rule,
  Table,
  Verb,
} from './types.js';
export { Transaction } from './transaction.js';
export { validateOperation, NAME_PATTERN, RESERVED_NAMES, MAX_COMMENT } from './validate.js';
export {
  renderChain,
  renderElement,
  renderKey,
  renderObject,
  renderOperation,
  renderPriority,
  renderRule,
  renderSet,
  renderTable,
} from './render.js';
export {
  classifyStderr,
  createNft,
  nftError,
  parseVersion,
  spawnExec,
  type Exec,
  type ExecResult,
  type Nft,
  type NftOptions,
} from './exec.js';
export { FakeNft, references, type FakeNftOptions } from './fake.js';
export { probeNft, probeTransaction, compareVersions, MIN_NFT_VERSION } from './probe.js';
