/**
 * Reads the per-element counters out of `nft -j list map|set` (nft 1.0.6 and 1.1.3 print the
 * same shape; with `-p`, protocols as numbers): a set's `elem` is a list of `{ elem: { val, counter } }`, a map's a list of
 * `[{ elem: { val, counter } }, value]`; an element without a counter is its bare `val`.
 */
import { canonicalIp } from '../model/ip.js';
import { isNftProtocol, type NftProtocol } from '../model/protocol.js';

/** A frontend as a counted element's key names it: `ip . proto . port`. */
export interface CountedKey {
  ip: string;
  proto: NftProtocol;
  port: number;
}

/** The identity of a frontend key, the same from the model and from nft's listing. */
export const countedKeyId = (k: CountedKey): string => `${k.ip} ${k.proto} ${k.port}`;

/** One element's key and its counter's packets. */
export interface CountedElement {
  key: CountedKey;
  packets: number;
}

type Json = unknown;

/** IANA protocol numbers of the protocols a Service may use. */
const PROTOCOL_NUMBERS: Readonly<Record<number, NftProtocol>> = { 6: 'tcp', 17: 'udp', 132: 'sctp' };
const isObject = (v: Json): v is Record<string, Json> => typeof v === 'object' && v !== null;

/** `{ concat: [ip, proto, port] }` → the key; undefined for anything else. */
function keyOf(val: Json): CountedKey | undefined {
  if (!isObject(val) || !Array.isArray(val.concat) || val.concat.length !== 3) return undefined;
  const [ip, protoField, port] = val.concat as Json[];
  // By name, or by number as `nft -p` prints it.
  const proto = typeof protoField === 'number' ? PROTOCOL_NUMBERS[protoField] : protoField;
  if (typeof ip !== 'string' || typeof proto !== 'string' || typeof port !== 'number') return undefined;
  const canonical = canonicalIp(ip);
  if (!canonical || !isNftProtocol(proto)) return undefined;
  return { ip: canonical, proto, port };
}

/**
 * The counted elements of the first set or map in a listing. Elements without a counter, or
 * whose key is not `ip . proto . port`, are left out; '' (nothing listed) gives none. Throws
 * on text that is not JSON.
 */
export function countedElements(text: string): CountedElement[] {
  if (text.trim() === '') return [];
  const doc = JSON.parse(text) as Json;
  const list = isObject(doc) && Array.isArray(doc.nftables) ? (doc.nftables as Json[]) : [];
  const out: CountedElement[] = [];
  for (const entry of list) {
    if (!isObject(entry)) continue;
    const set = entry.set ?? entry.map;
    if (!isObject(set)) continue;
    for (const item of Array.isArray(set.elem) ? (set.elem as Json[]) : []) {
      // A map's element is [key, value]; a set's is the key alone.
      const keyPart = Array.isArray(item) ? (item[0] as Json) : item;
      if (!isObject(keyPart) || !isObject(keyPart.elem)) continue;
      const { val, counter } = keyPart.elem;
      const key = keyOf(val);
      if (!key || !isObject(counter) || typeof counter.packets !== 'number') continue;
      out.push({ key, packets: counter.packets });
    }
    break;
  }
  return out;
}
