import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { compareVersions } from '../../src/rules/nft/probe.js';
import { buildOnce, repoRoot } from '../support/build-output.js';
import {
  execForm,
  parseCopy,
  parseDockerfile,
  runCommands,
  stageEnv,
  type Stage,
} from '../support/dockerfile.js';

/**
 * The Dockerfile, checked statically: no Docker engine runs here (DESIGN.md, Dependencies).
 * What a build would do is checked against the repository and the real build output.
 */

const dockerfile = readFileSync(path.join(repoRoot, 'Dockerfile'), 'utf8');
const stages = parseDockerfile(dockerfile);
const pkg = JSON.parse(readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as {
  bin: Record<string, string>;
  engines: { node: string };
  devDependencies: Record<string, string>;
};
const tsconfig = JSON.parse(readFileSync(path.join(repoRoot, 'tsconfig.json'), 'utf8')) as {
  compilerOptions: { outDir: string; rootDir: string };
};

/** Exact Node release on a named Debian release: `node:20.20.2-trixie`, `node:20.20.2-trixie-slim`. */
const PINNED = /^node:(\d+)\.(\d+)\.(\d+)-([a-z]+)(-slim)?$/;

/**
 * The nft each Debian release ships (docs/nft-facts.md). nft before 1.1 crashes on a ruleset a
 * newer nft wrote (a host firewall with interval or dynamic sets): the image needs >= 1.1.
 */
const DEBIAN_NFT: Record<string, string> = { bullseye: '0.9.8', bookworm: '1.0.6', trixie: '1.1.3' };

/** Packages that compile or fetch source; none belongs in the runtime image. */
const BUILD_TOOLS = [
  'build-essential',
  'gcc',
  'g++',
  'make',
  'cmake',
  'python3',
  'git',
  'curl',
  'wget',
  'libc6-dev',
];

/** The packages every `apt-get install` of a stage installs (flags dropped). */
function aptInstalls(stage: Stage): { packages: string[]; command: string; run: string }[] {
  return stage.instructions
    .filter((i) => i.keyword === 'RUN')
    .flatMap((run) =>
      runCommands(run)
        .map((command) => ({ command, m: /(?:^|\s)apt-get\s+install\s+(.*)$/.exec(command) }))
        .filter(({ m }) => m !== null)
        .map(({ command, m }) => ({
          command,
          run: run.args,
          packages: m![1]!.split(/\s+/).filter((w) => w !== '' && !w.startsWith('-')),
        })),
    );
}

function workdir(stage: Stage, beforeLine: number): string {
  let dir = '/';
  for (const i of stage.instructions) {
    if (i.line > beforeLine) break;
    if (i.keyword === 'WORKDIR') dir = path.posix.resolve(dir, i.args.trim());
  }
  return dir;
}

/** .dockerignore's rules, as Docker applies them: root-relative globs, `!` re-includes, last match wins. */
function dockerignored(rel: string): boolean {
  const file = path.join(repoRoot, '.dockerignore');
  if (!existsSync(file)) return false;
  let ignored = false;
  for (const raw of readFileSync(file, 'utf8').split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const negate = line.startsWith('!');
    const pattern = path.posix.normalize((negate ? line.slice(1) : line).replace(/^\/+/, ''));
    const re = new RegExp(
      '^' +
        pattern
          .split('**')
          .map((part) =>
            part
              .replace(/[.+^${}()|[\]\\]/g, '\\$&')
              .replace(/\*/g, '[^/]*')
              .replace(/\?/g, '[^/]'),
          )
          .join('.*') +
        '(/.*)?$',
    );
    if (re.test(rel)) ignored = !negate;
  }
  return ignored;
}

describe('Dockerfile (static)', function () {
  const build = stages[0]!;
  const runtime = stages[stages.length - 1]!;

  it('has two stages: build, then the runtime image', function () {
    assert.equal(stages.length, 2);
    assert.equal(build.name, 'build');
    assert.match(build.image, PINNED);
    assert.match(runtime.image, /-slim$/);
  });

  it('runtime: a Debian release whose nft is >= 1.1, the same release in both stages', function () {
    const release = (image: string): string => PINNED.exec(image)?.[4] ?? '';
    const nft = DEBIAN_NFT[release(runtime.image)];
    assert.ok(
      nft,
      `${runtime.image}: a Debian release whose nft version is known (${Object.keys(DEBIAN_NFT).join(', ')})`,
    );
    assert.ok(
      compareVersions(nft, '1.1') >= 0,
      `${runtime.image} ships nft ${nft}, which crashes on tables a newer nft wrote: use trixie or later`,
    );
    assert.equal(release(build.image), release(runtime.image));
    // nftables comes from that release, not pinned to another version.
    const packages = aptInstalls(runtime).flatMap((i) => i.packages);
    assert.ok(packages.includes('nftables'), 'nftables without a version or release pin');
    assert.ok(
      !/\/etc\/apt\/sources|-t\s+\w+|bookworm/.test(
        aptInstalls(runtime)
          .map((i) => i.command)
          .join('\n'),
      ),
    );
  });

  it('pins every base image by an exact Node version tag, the same in both stages', function () {
    for (const s of stages) {
      assert.doesNotMatch(s.image, /:latest$|^[^:]+$/, `${s.image} is not pinned`);
      assert.match(s.image, PINNED, `${s.image}: pin node:X.Y.Z-<debian release>[-slim]`);
    }
    const version = (image: string): string => PINNED.exec(image)!.slice(1, 4).join('.');
    assert.equal(version(build.image), version(runtime.image));
  });

  it('runs the Node major that package.json supports and compiles against', function () {
    const major = Number(PINNED.exec(runtime.image)![1]);
    const engines = /^>=\s*(\d+)/.exec(pkg.engines.node);
    assert.ok(engines && major >= Number(engines[1]), `engines ${pkg.engines.node}`);
    const types = /(\d+)\./.exec(pkg.devDependencies['@types/node'] ?? '');
    assert.equal(major, Number(types?.[1]), '@types/node has the same major as the image');
  });

  it('build stage: npm ci, then npm run build', function () {
    const runs = build.instructions.filter((i) => i.keyword === 'RUN').flatMap(runCommands);
    const ci = runs.findIndex((c) => /^npm ci(\s|$)/.test(c));
    const b = runs.findIndex((c) => c === 'npm run build');
    assert.ok(ci >= 0, 'npm ci');
    assert.ok(!/--omit=dev/.test(runs[ci]!), 'the build needs the dev dependencies');
    assert.ok(b > ci, 'npm run build after npm ci');
  });

  it('runtime: nftables and conntrack from apt, without recommends, apt lists removed', function () {
    const installs = aptInstalls(runtime);
    const packages = installs.flatMap((i) => i.packages);
    for (const p of ['nftables', 'conntrack']) assert.ok(packages.includes(p), `${p} is installed`);
    for (const i of installs) {
      assert.match(i.command, /--no-install-recommends/, i.command);
      assert.match(i.run, /apt-get update/, 'apt-get update in the same RUN as the install');
      assert.match(i.run, /rm -rf \/var\/lib\/apt\/lists\/\*/, 'apt lists removed in the same RUN');
    }
  });

  it('runtime: production mode, and malloc told to give freed memory back (bench daemon-latency)', function () {
    const env = stageEnv(runtime);
    assert.equal(env.NODE_ENV, 'production');
    assert.equal(env.MALLOC_ARENA_MAX, '2');
    assert.equal(env.MALLOC_MMAP_THRESHOLD_, '65536');
  });

  it('runtime: production dependencies only, no compiler, no build', function () {
    const installed = aptInstalls(runtime).flatMap((i) => i.packages);
    for (const tool of BUILD_TOOLS) assert.ok(!installed.includes(tool), `${tool} in the runtime image`);
    const runs = runtime.instructions.filter((i) => i.keyword === 'RUN').flatMap(runCommands);
    const npmCi = runs.filter((c) => /^npm ci(\s|$)/.test(c));
    assert.equal(npmCi.length, 1, 'one npm ci');
    assert.match(npmCi[0]!, /\s--omit=dev(\s|$)/);
    assert.ok(!runs.some((c) => /npm (run|install)|tsc|npx/.test(c)), 'no build or install beyond npm ci');
    for (const copy of runtime.instructions.filter((i) => i.keyword === 'COPY').map(parseCopy)) {
      for (const src of copy.sources) assert.doesNotMatch(src, /node_modules|^\.?\/?src\b/, `COPY ${src}`);
    }
  });

  it('every COPY source is in the build context, or made by the build stage', async function () {
    this.timeout(120_000);
    for (const stage of stages) {
      for (const ins of stage.instructions.filter((i) => i.keyword === 'COPY' || i.keyword === 'ADD')) {
        assert.equal(ins.keyword, 'COPY', `line ${ins.line}: use COPY, not ADD`);
        const copy = parseCopy(ins);
        if (copy.from === undefined) {
          for (const src of copy.sources) {
            const rel = path.posix.normalize(src).replace(/\/$/, '');
            assert.ok(existsSync(path.join(repoRoot, rel)), `line ${ins.line}: ${src} does not exist`);
            assert.ok(!dockerignored(rel), `line ${ins.line}: ${src} is excluded by .dockerignore`);
          }
          continue;
        }
        // --from=build: the path must be what `npm run build` writes under the build WORKDIR.
        assert.equal(copy.from, build.name, `line ${ins.line}: --from=${copy.from}`);
        const base = workdir(build, Infinity);
        const outDir = await buildOnce();
        for (const src of copy.sources) {
          const rel = path.posix.relative(base, src);
          assert.ok(!rel.startsWith('..'), `line ${ins.line}: ${src} is outside the build WORKDIR ${base}`);
          assert.ok(rel.startsWith(`${tsconfig.compilerOptions.outDir}/`), `${src} is not build output`);
          const inBuild = path.join(outDir, path.relative(tsconfig.compilerOptions.outDir, rel));
          assert.ok(existsSync(inBuild), `line ${ins.line}: the build produces no ${rel}`);
        }
      }
    }
  });

  it('ENTRYPOINT is kube-nftproxy, a command on PATH that runs the package.json bin', async function () {
    this.timeout(120_000);
    const entry = runtime.instructions.filter((i) => i.keyword === 'ENTRYPOINT');
    assert.equal(entry.length, 1);
    assert.deepEqual(execForm(entry[0]!.args), ['kube-nftproxy']);
    const bin = pkg.bin['kube-nftproxy'];
    assert.equal(bin, 'dist/src/cli.js');

    // The command is made in the runtime stage, in a PATH directory, and runs WORKDIR/<bin>.
    const target = path.posix.join(workdir(runtime, entry[0]!.line), bin);
    const made = runtime.instructions
      .filter((i) => i.keyword === 'RUN')
      .flatMap(runCommands)
      .find((c) => /\/usr\/local\/bin\/kube-nftproxy$/.test(c));
    assert.ok(made, 'a RUN writes /usr/local/bin/kube-nftproxy');
    assert.ok(made.includes(target), `/usr/local/bin/kube-nftproxy runs ${target}`);
    const copied = runtime.instructions
      .filter((i) => i.keyword === 'COPY')
      .map(parseCopy)
      .some((c) => target.startsWith(`${path.posix.resolve(workdir(runtime, c.line), c.dest)}/`));
    assert.ok(copied, `${target} is copied into the image`);

    // ...and the build produces it.
    const outDir = await buildOnce();
    const built = path.join(outDir, path.relative(tsconfig.compilerOptions.outDir, bin));
    assert.ok(existsSync(built), `npm run build produces no ${bin} (src/cli.ts missing?)`);
  });

  it('runs as root on purpose, and says why', function () {
    assert.ok(!stages.some((s) => s.instructions.some((i) => i.keyword === 'USER')));
    assert.match(dockerfile, /#.*CAP_NET_ADMIN/);
  });

  it('.dockerignore keeps node_modules, dist, .git, tests and benchmarks out of the context', function () {
    for (const p of [
      'node_modules',
      'dist',
      '.git',
      'test',
      'bench',
      'dist/src/cli.js',
      'node_modules/yaml',
    ]) {
      assert.ok(dockerignored(p), `${p} is sent to the Docker daemon`);
    }
    for (const p of ['src', 'src/cli.ts', 'package.json', 'package-lock.json', 'tsconfig.build.json']) {
      assert.ok(!dockerignored(p), `${p} is excluded`);
    }
  });
});
