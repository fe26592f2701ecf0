import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { yamlDocs } from './objects.js';

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Run the real kube-nftproxy command (from source, through tsx) inside a network namespace
 * (or on the host when `netns` is undefined, for commands that touch nothing).
 */
export function runProxy(
  netns: string | undefined,
  args: string[],
  env: NodeJS.ProcessEnv = {},
): Promise<RunResult> {
  const cmd = [process.execPath, '--import', 'tsx', join(REPO, 'src/cli.ts'), ...args];
  const [program, argv] = netns ? ['ip', ['netns', 'exec', netns, ...cmd]] : [cmd[0]!, cmd.slice(1)];
  return new Promise((resolveRun, reject) => {
    const child = spawn(program, argv, { cwd: REPO, env: { ...process.env, LOG_LEVEL: 'info', ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolveRun({ code, stdout, stderr }));
  });
}

/** A temp folder of object files for --source; `write` replaces its content. */
export class SourceDir {
  private constructor(readonly path: string) {}

  static async create(): Promise<SourceDir> {
    return new SourceDir(await mkdtemp(join(tmpdir(), 'knp-src-')));
  }

  async write(files: Record<string, object[] | string>): Promise<void> {
    await rm(this.path, { recursive: true, force: true });
    await import('node:fs/promises').then((fs) => fs.mkdir(this.path, { recursive: true }));
    for (const [name, content] of Object.entries(files))
      await writeFile(join(this.path, name), typeof content === 'string' ? content : yamlDocs(content));
  }

  async remove(): Promise<void> {
    await rm(this.path, { recursive: true, force: true });
  }
}

/** pino JSON lines from stderr, parsed (other lines dropped). */
export function logLines(stderr: string): Array<Record<string, unknown>> {
  return stderr
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}
