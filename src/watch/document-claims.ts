/**
 * A file's documents, 0 to n, shared out between two threads without a lock: one takes batches
 * from the front, the other from the back, until they meet. Both ends live in one 64-bit word
 * (front in the low half, back in the high half) changed by compare-and-exchange, so a thread
 * descheduled in the middle of a claim never holds the other up. Each document is claimed once.
 */
export type ClaimWord = BigInt64Array;

/** A new word for n documents, none claimed; its `buffer` goes to the other thread. */
export function newClaims(documents: number): ClaimWord {
  const word = new BigInt64Array(new SharedArrayBuffer(8));
  Atomics.store(word, 0, BigInt(documents) << 32n);
  return word;
}

/** The other thread's view of the word newClaims made. */
export const sharedClaims = (buffer: SharedArrayBuffer): ClaimWord => new BigInt64Array(buffer);

/** The next batch [from, to) from one end, or undefined when every document is claimed. */
export function claim(word: ClaimWord, end: 'front' | 'back', batch: number): [number, number] | undefined {
  for (;;) {
    const now = Atomics.load(word, 0);
    const front = Number(now & 0xffffffffn);
    const back = Number(now >> 32n);
    if (front >= back) return undefined;
    const [from, to] =
      end === 'front' ? [front, Math.min(back, front + batch)] : [Math.max(front, back - batch), back];
    const next = end === 'front' ? (BigInt(back) << 32n) | BigInt(to) : (BigInt(from) << 32n) | BigInt(front);
    if (Atomics.compareExchange(word, 0, now, next) === now) return [from, to];
  }
}
