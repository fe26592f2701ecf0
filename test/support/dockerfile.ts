/**
 * A Dockerfile read into stages and instructions, for static checks (no Docker engine runs
 * here). Follows the Dockerfile reference: `\` continues a line, `#` starts a comment line
 * (also between continued lines), keywords are case-insensitive, each FROM starts a stage.
 */

export interface Instruction {
  /** Upper-case keyword: FROM, RUN, COPY, ... */
  keyword: string;
  /** Everything after the keyword, continuation lines joined with a space. */
  args: string;
  /** 1-based line where the instruction starts. */
  line: number;
}

export interface Stage {
  /** The base image reference as written after FROM (flags such as --platform removed). */
  image: string;
  /** The `AS name`, if any. */
  name?: string;
  index: number;
  instructions: Instruction[];
}

export function parseDockerfile(text: string): Stage[] {
  const instructions: Instruction[] = [];
  const lines = text.split('\n');
  let current: { parts: string[]; line: number } | undefined;
  lines.forEach((raw, i) => {
    const trimmed = raw.trim();
    if (trimmed.startsWith('#') || (trimmed === '' && current === undefined)) return;
    const continued = trimmed.endsWith('\\');
    const body = continued ? trimmed.slice(0, -1).trim() : trimmed;
    if (current === undefined) current = { parts: [], line: i + 1 };
    if (body !== '') current.parts.push(body);
    if (!continued) {
      const full = current.parts.join(' ');
      const m = /^(\S+)\s*(.*)$/s.exec(full);
      if (m) instructions.push({ keyword: m[1]!.toUpperCase(), args: m[2]!, line: current.line });
      current = undefined;
    }
  });

  const stages: Stage[] = [];
  for (const ins of instructions) {
    if (ins.keyword === 'FROM') {
      const words = ins.args.split(/\s+/).filter((w) => !w.startsWith('--'));
      const asAt = words.findIndex((w) => w.toUpperCase() === 'AS');
      const stage: Stage = { image: words[0] ?? '', index: stages.length, instructions: [] };
      if (asAt >= 0 && words[asAt + 1]) stage.name = words[asAt + 1]!;
      stages.push(stage);
    } else if (stages.length > 0) {
      stages[stages.length - 1]!.instructions.push(ins);
    } else if (ins.keyword !== 'ARG') {
      throw new Error(`line ${ins.line}: ${ins.keyword} before the first FROM`);
    }
  }
  return stages;
}

/** The exec (JSON array) form of ENTRYPOINT/CMD, or undefined for the shell form. */
export function execForm(args: string): string[] | undefined {
  try {
    const v = JSON.parse(args) as unknown;
    return Array.isArray(v) && v.every((x) => typeof x === 'string') ? (v as string[]) : undefined;
  } catch {
    return undefined;
  }
}

export interface Copy {
  /** The `--from=` stage (name or index), if any. */
  from?: string;
  sources: string[];
  dest: string;
  line: number;
}

/** A COPY or ADD instruction's flags, sources and destination (shell form, or JSON form). */
export function parseCopy(ins: Instruction): Copy {
  let words = execForm(ins.args) ?? ins.args.split(/\s+/).filter((w) => w !== '');
  let from: string | undefined;
  const flags = words.filter((w) => w.startsWith('--'));
  words = words.filter((w) => !w.startsWith('--'));
  for (const f of flags) {
    const m = /^--from=(.+)$/.exec(f);
    if (m) from = m[1]!;
  }
  if (words.length < 2) throw new Error(`line ${ins.line}: ${ins.keyword} needs a source and a destination`);
  const copy: Copy = { sources: words.slice(0, -1), dest: words[words.length - 1]!, line: ins.line };
  if (from !== undefined) copy.from = from;
  return copy;
}

/** The commands of a RUN's shell form, split on `&&`, `;` and `||` (quotes are not parsed). */
export function runCommands(ins: Instruction): string[] {
  return ins.args
    .split(/&&|\|\||;/)
    .map((c) => c.trim())
    .filter((c) => c !== '');
}

/**
 * The environment a stage's ENV instructions set, in order (`ENV K=V K2="V 2"`, or the legacy
 * `ENV K V`). Quotes around a value are removed; escapes and `$VAR` are not interpreted.
 */
export function stageEnv(stage: Stage): Record<string, string> {
  const env: Record<string, string> = {};
  for (const ins of stage.instructions) {
    if (ins.keyword !== 'ENV') continue;
    if (!ins.args.includes('=')) {
      const [key, ...rest] = ins.args.split(/\s+/);
      if (key) env[key] = rest.join(' ');
      continue;
    }
    for (const m of ins.args.matchAll(/([A-Za-z_][A-Za-z0-9_]*)=("[^"]*"|'[^']*'|\S*)/g))
      env[m[1]!] = m[2]!.replace(/^(["'])(.*)\1$/, '$2');
  }
  return env;
}
