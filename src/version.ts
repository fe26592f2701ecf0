import { readFileSync } from 'node:fs';

/** What kubernetes_build_info says of this binary (component-base's labels). */
export interface BuildInfo {
  major: string;
  minor: string;
  git_version: string;
  git_commit: string;
  git_tree_state: string;
  build_date: string;
  go_version: string;
  compiler: string;
  platform: string;
}

/** Said of what is not recorded in the build (no commit, tree state or date is stamped in). */
const UNKNOWN = 'unknown';

/**
 * This package's version from its package.json: src/ runs from the repository (tests, tsx) and
 * dist/src/ from the image, so the file is one or two levels up; the first one named
 * kube-nftproxy is ours. `unknown` if neither is.
 */
export function packageVersion(): string {
  for (const up of ['../package.json', '../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(up, import.meta.url), 'utf8')) as {
        name?: unknown;
        version?: unknown;
      };
      if (pkg.name === 'kube-nftproxy' && typeof pkg.version === 'string') return pkg.version;
    } catch {
      // not there, or not JSON: the next level up
    }
  }
  return UNKNOWN;
}

/** Node's architecture names as Go spells them (GOARCH), which platform="linux/amd64" filters expect. */
const GOARCH: Readonly<Record<string, string>> = { x64: 'amd64', ia32: '386' };

/**
 * kubernetes_build_info's labels for this proxy: major and minor from the package version (as
 * Kubernetes splits v1.33.1), git_version that version with a `v`, go_version empty (no Go
 * here) and compiler the Node.js runtime, platform as GOOS/GOARCH.
 */
export function buildInfo(version = packageVersion()): BuildInfo {
  const m = /^(\d+)\.(\d+)\./.exec(version);
  return {
    major: m?.[1] ?? UNKNOWN,
    minor: m?.[2] ?? UNKNOWN,
    git_version: m ? `v${version}` : UNKNOWN,
    git_commit: UNKNOWN,
    git_tree_state: UNKNOWN,
    build_date: UNKNOWN,
    go_version: '',
    compiler: `node ${process.version}`,
    platform: `${process.platform}/${GOARCH[process.arch] ?? process.arch}`,
  };
}
