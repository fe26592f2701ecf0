/** Input that is not a Service at all: what the guards in src/watch/parse-documents.ts refuse. */

/** The classic "billion laughs": nine levels of nine aliases each, 387 million strings once expanded. */
export function aliasBomb(): string {
  const lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'];
  let prev = 'a';
  for (const c of 'bcdefghi') {
    lines.push(`${c}: &${c} [${Array(9).fill(`*${prev}`).join(',')}]`);
    prev = c;
  }
  return `${lines.join('\n')}\nkind: Service\n`;
}

/** 400,000 levels of nesting in 800 KB: unguarded, the YAML parser's syntax tree takes 500 MB. */
export const DEEP = 400_000;
export const deepYaml = (): string => `${'- '.repeat(DEEP)}x\n`;
export const deepJson = (): string => `${'['.repeat(DEEP)}${']'.repeat(DEEP)}`;
