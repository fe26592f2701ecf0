/** Longest quoted value in a reason: the input decides what it holds, not how long a log line is. */
const MAX_QUOTE = 100;

/**
 * A value from an object as JSON for a reason or warning, cut to MAX_QUOTE characters. Never
 * throws: parsed input holds no BigInt or cycle, and anything else becomes its type's name.
 */
export function quote(value: unknown): string {
  let text: string;
  try {
    text = JSON.stringify(value) ?? typeof value;
  } catch {
    text = typeof value;
  }
  return text.length > MAX_QUOTE ? `${text.slice(0, MAX_QUOTE)}…` : text;
}
