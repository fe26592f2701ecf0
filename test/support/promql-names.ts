/**
 * The metric names a PromQL expression reads: enough of PromQL for dashboards, not a parser.
 * String literals, label matchers (`{...}`), ranges and subqueries (`[...]`) and grouping label
 * lists (`by (...)`, `on (...)`, ...) are dropped first; of the identifiers left, those called
 * (`rate(`), the language's keywords and Grafana's variables are not metric names.
 */
const KEYWORDS = new Set([
  'and',
  'or',
  'unless',
  'bool',
  'offset',
  'by',
  'without',
  'on',
  'ignoring',
  'group_left',
  'group_right',
  'inf',
  'nan',
]);

export function promqlMetricNames(expr: string): string[] {
  const text = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/gi, ' ');
  const names = new Set<string>();
  // An identifier not inside another token (a number's exponent, a $variable, a duration).
  for (const m of text.matchAll(/(?<![\w:$.])[a-zA-Z_:][\w:]*/g)) {
    const name = m[0];
    const rest = text.slice(m.index + name.length);
    if (/^\s*\(/.test(rest)) continue;
    if (KEYWORDS.has(name.toLowerCase())) continue;
    names.add(name);
  }
  return [...names];
}

/**
 * The series expression of a Grafana Prometheus variable query: `label_values(EXPR, label)`
 * reads EXPR (the label is no metric); `query_result(EXPR)` reads EXPR; anything else is PromQL.
 */
export function variableQueryExpr(query: string): string {
  const lv = /^\s*label_values\(\s*(.*),\s*[a-zA-Z_]\w*\s*\)\s*$/s.exec(query);
  if (lv) return lv[1]!;
  const qr = /^\s*query_result\((.*)\)\s*$/s.exec(query);
  if (qr) return qr[1]!;
  return query;
}

/** Metric families from the Prometheus text format: name → type (`# TYPE` lines). */
export function exposedFamilies(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of text.matchAll(/^# TYPE ([a-zA-Z_:][\w:]*) (\w+)$/gm)) out.set(m[1]!, m[2]!);
  return out;
}

/**
 * Whether a name a query reads is exposed: a family itself, or one of a histogram's
 * `_bucket`/`_sum`/`_count` series or a summary's `_sum`/`_count`.
 */
export function isExposed(name: string, families: ReadonlyMap<string, string>): boolean {
  if (families.has(name)) return true;
  const m = /^(.*)_(bucket|sum|count)$/.exec(name);
  if (!m) return false;
  const type = families.get(m[1]!);
  return type === 'histogram' || (type === 'summary' && m[2] !== 'bucket');
}
