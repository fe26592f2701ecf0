import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { FLAGS } from '../../src/config.js';
import { buildOnce, repoRoot } from '../support/build-output.js';
import { parseCopy, parseDockerfile, runCommands, type Stage } from '../support/dockerfile.js';
import { flagArgs, render } from './rendered.js';

const run = promisify(execFile);

/**
 * The image's runtime stage, replayed in a scratch folder instead of /app: the same COPYs from
 * the repository and from the build output, the Dockerfile's own `npm ci` line against the npm
 * registry, and its kube-nftproxy command. Then the entrypoint must start from that
 * production-only install.
 */
describe('the image entrypoint, from a production-only install', function () {
  this.timeout(600_000);

  const stages = parseDockerfile(readFileSync(path.join(repoRoot, 'Dockerfile'), 'utf8'));
  const build = stages[0]!;
  const runtime = stages[stages.length - 1]!;
  const pkg = JSON.parse(readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as {
    dependencies: Record<string, string>;
    bin: Record<string, string>;
  };
  let app = '';
  let command = '';

  before(async function () {
    const outDir = await buildOnce();
    app = mkdtempSync(path.join(tmpdir(), 'kube-nftproxy-app-'));
    command = await replayRuntimeStage(runtime, build, outDir, app);
  });

  after(function () {
    if (app) rmSync(app, { recursive: true, force: true });
  });

  it('node_modules holds the production dependencies and no dev-only package', function () {
    const lock = JSON.parse(readFileSync(path.join(repoRoot, 'package-lock.json'), 'utf8')) as {
      packages: Record<string, { dev?: boolean; optional?: boolean }>;
    };
    for (const dep of Object.keys(pkg.dependencies)) {
      assert.ok(existsSync(path.join(app, 'node_modules', dep, 'package.json')), `${dep} is missing`);
    }
    for (const [where, entry] of Object.entries(lock.packages)) {
      if (where === '' || !entry.dev) continue;
      assert.ok(!existsSync(path.join(app, where)), `${where} (dev only) is installed`);
    }
    for (const dep of ['typescript', 'mocha', 'tsx', 'eslint']) {
      assert.ok(!existsSync(path.join(app, 'node_modules', dep)), `${dep} is installed`);
    }
  });

  it('`kube-nftproxy --help` exits 0 and lists the flags', async function () {
    let stdout: string;
    try {
      ({ stdout } = await run(command, ['--help'], {
        cwd: app,
        env: {
          PATH: `${path.dirname(process.execPath)}:/usr/sbin:/usr/bin:/sbin:/bin`,
          NODE_ENV: 'production',
        },
        timeout: 20_000,
      }));
    } catch (err) {
      const e = err as { code?: unknown; signal?: unknown; stdout?: string; stderr?: string };
      assert.fail(
        `kube-nftproxy --help: exit ${String(e.code)} ${String(e.signal ?? '')}\n${e.stdout}${e.stderr}`,
      );
    }
    const wanted = new Set([
      ...FLAGS.map((f) => `--${f.name}`),
      ...flagArgs(render().container.args ?? []).keys(),
    ]);
    for (const flag of wanted) assert.ok(stdout.includes(flag), `--help does not list ${flag}`);
  });

  it('the package.json bin starts with a node shebang (npm install -g, npx)', function () {
    const bin = path.join(app, pkg.bin['kube-nftproxy']!);
    assert.match(readFileSync(bin, 'utf8').split('\n')[0]!, /^#!\/usr\/bin\/env node$/);
  });
});

/**
 * Replays the runtime stage's COPY and npm ci into `app` (standing for its WORKDIR), and writes
 * its /usr/local/bin/kube-nftproxy into app/bin with WORKDIR replaced by `app`. Returns that
 * command. apt-get lines are the image's business, not this test's.
 */
async function replayRuntimeStage(
  runtime: Stage,
  build: Stage,
  outDir: string,
  app: string,
): Promise<string> {
  const workdir = runtime.instructions.filter((i) => i.keyword === 'WORKDIR').map((i) => i.args.trim());
  assert.equal(workdir.length, 1, 'one WORKDIR in the runtime stage');
  const root = workdir[0]!;
  const buildRoot = build.instructions.find((i) => i.keyword === 'WORKDIR')?.args.trim() ?? '/';
  const inApp = (dest: string): string => {
    const rel = path.posix.relative(root, path.posix.resolve(root, dest));
    assert.ok(!rel.startsWith('..'), `COPY to ${dest} lands outside ${root}`);
    return path.join(app, rel);
  };

  let entry: string | undefined;
  for (const ins of runtime.instructions) {
    if (ins.keyword === 'COPY') {
      const copy = parseCopy(ins);
      for (const src of copy.sources) {
        let from: string;
        if (copy.from === undefined) {
          from = path.join(repoRoot, src);
        } else {
          // build output: <build WORKDIR>/dist/... is <outDir>/...
          const rel = path.posix.relative(buildRoot, src);
          assert.ok(rel.startsWith('dist/'), `COPY --from=${copy.from} ${src} is not build output`);
          from = path.join(outDir, rel.slice('dist/'.length));
        }
        const dest = copy.dest.endsWith('/')
          ? path.join(inApp(copy.dest), path.basename(src))
          : inApp(copy.dest);
        mkdirSync(path.dirname(dest), { recursive: true });
        cpSync(from, dest, { recursive: true });
      }
    }
    if (ins.keyword !== 'RUN') continue;
    for (const c of runCommands(ins)) {
      if (/^npm ci(\s|$)/.test(c)) {
        const words = c.split(/\s+/);
        await run('npm', words.slice(1), { cwd: app, maxBuffer: 16 << 20 }).catch(
          (err: { stderr?: string }) => {
            throw new Error(`${c} failed:\n${err.stderr ?? ''}`, { cause: err });
          },
        );
      }
      const printf = /^printf '([^']*)' > \/usr\/local\/bin\/kube-nftproxy$/.exec(c);
      const link = /^ln -sf? (\S+) \/usr\/local\/bin\/kube-nftproxy$/.exec(c);
      if (printf || link) {
        mkdirSync(path.join(app, 'bin'), { recursive: true });
        entry = path.join(app, 'bin', 'kube-nftproxy');
        if (printf) {
          const script = printf[1]!.replace(/\\n/g, '\n').replaceAll(`${root}/`, `${app}/`);
          writeFileSync(entry, script);
          chmodSync(entry, 0o755);
        } else {
          symlinkSync(inApp(link![1]!), entry);
        }
      }
    }
  }
  assert.ok(entry, 'the runtime stage writes /usr/local/bin/kube-nftproxy with printf or ln -s');
  return entry;
}
