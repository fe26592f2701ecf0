/** String order (UTF-16 code units, as `<`), for sort(): the order every sorted list here keeps. */
export const compareStrings = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/**
 * Where an item with `key` is, or would go, in `list` sorted by `keyOf` (string order): the
 * binary search behind every structure that is kept sorted as it changes, so one change costs
 * a search and a splice rather than a sort of everything.
 */
export function sortedIndex<T>(list: readonly T[], key: string, keyOf: (item: T) => string): number {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (keyOf(list[mid]!) < key) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** The item with `key` in `list` sorted by `keyOf`, if there is one. */
export function sortedFind<T>(list: readonly T[], key: string, keyOf: (item: T) => string): T | undefined {
  const item = list[sortedIndex(list, key, keyOf)];
  return item !== undefined && keyOf(item) === key ? item : undefined;
}
