/**
 * A port's protocol has two spellings: Kubernetes writes it in capitals (`TCP`, the model's
 * Protocol), nft, conntrack and /debug/trace in lower case (`tcp`). This is the one place that
 * says how one becomes the other.
 */
import type { Protocol } from './types.js';

/** The protocol as nft writes it (`meta l4proto tcp`, `tcp dport`) and /debug/trace takes it. */
export type NftProtocol = Lowercase<Protocol>;

const PROTOCOLS: ReadonlySet<string> = new Set<Protocol>(['TCP', 'UDP', 'SCTP']);
const NFT_PROTOCOLS: ReadonlySet<string> = new Set<NftProtocol>(['tcp', 'udp', 'sctp']);

/** A Service's protocol field, checked: `TCP`, `UDP` or `SCTP`. */
export const isProtocol = (text: string): text is Protocol => PROTOCOLS.has(text);

/** A lower-case protocol name, checked: `tcp`, `udp` or `sctp`. */
export const isNftProtocol = (text: string): text is NftProtocol => NFT_PROTOCOLS.has(text);

/** The model's protocol as nft spells it. */
export const nftProtocol = (p: Protocol): NftProtocol => p.toLowerCase() as NftProtocol;
