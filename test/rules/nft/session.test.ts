import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { ErrorCodes, hasCode } from '../../../src/errors.js';
import { processAlive } from '../../../src/util/process-alive.js';
import { NftSession } from '../../../src/rules/nft/session.js';

describe('NftSession', () => {
  it('gives up on an nft that never answers: the run fails, the session is dead and its directory gone', async () => {
    // A stand-in that reads everything and never answers (`-i` lands in $1 and is ignored).
    const session = new NftSession({ command: ['sh', '-c', 'exec cat >/dev/null', 'sh'], timeoutMs: 50 });
    await assert.rejects(session.run('add table ip t\n'), /did not answer within 50 ms/);
    assert.equal(session.alive, false);
    assert.equal(existsSync(session.dir), false);
    await assert.rejects(session.run('add table ip t\n'), /did not answer/);
  });

  it('dies, rather than hangs, when the program cannot start', async () => {
    const session = new NftSession({ command: ['/nonexistent/nft'] });
    await assert.rejects(session.run('add table ip t\n'), /ENOENT/);
    assert.equal(session.alive, false);
  });

  it('sweeps the directories sessions of gone processes left behind, and only those', async () => {
    const parent = mkdtempSync(join(tmpdir(), 'knp-session-sweep-'));
    // A stand-in nft that stays up reading its input.
    const command: [string, ...string[]] = ['sh', '-c', 'exec cat >/dev/null', 'sh'];
    try {
      const open = new NftSession({ command, dir: parent });
      const gonePid = spawnSync('true').pid!; // exited: nothing runs as it any more
      const stale = [
        `kube-nftproxy-nft-${gonePid}-aaaaaa`,
        // This pid, but no session of this process: a container restarted with the same pid.
        `kube-nftproxy-nft-${process.pid}-bbbbbb`,
      ];
      const kept = [
        'kube-nftproxy-nft-1-cccccc', // pid 1 runs
        'kube-nftproxy-demo-dddddd', // not a session's
        'unrelated',
      ];
      for (const name of [...stale, ...kept]) mkdirSync(join(parent, name));
      const next = new NftSession({ command, dir: parent });
      assert.equal(dirname(next.dir), parent);
      assert.match(basename(next.dir), new RegExp(`^kube-nftproxy-nft-${process.pid}-`));
      assert.deepEqual(
        readdirSync(parent).sort(),
        [...kept, basename(open.dir), basename(next.dir)].sort(),
        'the stale ones went; the open session and everything else stayed',
      );
      open.close();
      next.close();
    } finally {
      rmSync(parent, { recursive: true, force: true });
    }
  });
});

/**
 * A stand-in `nft -i` in sh: an include of a file holding `bad` fails as nft reports it, a
 * marker is echoed in the layout given as $1 (a printf format for the line), anything else is
 * silent, as nft is on success.
 */
const STAND_IN = `
while IFS= read -r line; do
  case "$line" in
    include*)
      f=\${line#include \\"}; f=\${f%\\"}
      if grep -q bad "$f"; then
        printf 'In file included from <cmdline>:1:1-40:\\n%s:1:1-3: Error: Could not process rule: No such file or directory\\nbad\\n^^^\\n' "$f" >&2
      fi ;;
    *) printf "$1" "$line" >&2 ;;
  esac
done`;

describe('NftSession: where a transaction ends, whatever the layout of nft -i', () => {
  const layouts: Array<[string, string]> = [
    [
      'nft 1.0.6',
      'Error: syntax error, unexpected newline, expecting string\\n%s\\n                                  ^\\n',
    ],
    [
      'nft 1.1.3',
      'Error: syntax error, unexpected newline, expecting string or last\\n%s\\n                                  ^\\n',
    ],
    ['no carets', 'Error: syntax error\\n%s\\n'],
    ['the marker inside the error line', "<cmdline>:1:1-40: Error: unknown command '%s'\\n"],
    ['the carets a moment later', 'Error: syntax error\\n%s\\n'],
  ];
  for (const [name, format] of layouts) {
    it(`${name}: each run gets its own errors, success is silence`, async () => {
      const late = name === 'the carets a moment later';
      const script = late ? STAND_IN.replace('>&2 ;;', '>&2; sleep 0.05; echo "   ^^^" >&2 ;;') : STAND_IN;
      const session = new NftSession({ command: ['sh', '-c', script, 'sh', format] });
      try {
        const runs = ['add table ip t\n', 'bad\n', 'add table ip u\n', 'bad\n', 'add table ip v\n'];
        const results = [];
        for (const text of runs) results.push(await session.run(text));
        assert.deepEqual(
          results.map((r) => r.code),
          [0, 1, 0, 1, 0],
        );
        for (const r of [results[1]!, results[3]!]) {
          assert.match(
            r.stderr,
            /^\S+transaction\.nft:1:1-3: Error: Could not process rule: No such file or directory\nbad\n\^\^\^\n$/,
          );
        }
        assert.ok(session.alive);
      } finally {
        session.close();
      }
    });
  }

  it('an nft -i that crashes is NFT_CRASHED, with what to do', async () => {
    const session = new NftSession({ command: ['sh', '-c', 'read line; kill -SEGV $$', 'sh'] });
    await assert.rejects(session.run('add table ip t\n'), (err: unknown) => {
      assert.ok(hasCode(err, ErrorCodes.NFT_CRASHED), String(err));
      assert.match((err as Error).message, /nft -i crashed \(SIGSEGV\).*nft >= 1\.1/);
      return true;
    });
    assert.equal(session.alive, false);
  });

  it('a timeout is NFT_TIMEOUT, and kills nft and what it started', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'knp-session-kill-'));
    try {
      const pidFile = join(dir, 'child.pid');
      const session = new NftSession({
        command: ['sh', '-c', `sleep 1000 & echo $! >${pidFile}; wait`, 'sh'],
        timeoutMs: 100,
      });
      // The run, and its time, start once the stand-in is up with its child.
      await new Promise<void>((resolve) => {
        const poll = (): void => (existsSync(pidFile) ? resolve() : void setTimeout(poll, 10));
        poll();
      });
      await assert.rejects(session.run('add table ip t\n'), (err: unknown) =>
        hasCode(err, ErrorCodes.NFT_TIMEOUT),
      );
      const pids = [session.pid!, Number(readFileSync(pidFile, 'utf8'))];
      // Dead, or a zombie waiting for whoever reaps orphans here.
      const running = (pid: number): boolean => {
        try {
          return processAlive(pid) && !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
        } catch {
          return false;
        }
      };
      await new Promise<void>((resolve) => {
        const poll = (): void => (pids.some(running) ? void setTimeout(poll, 10) : resolve());
        poll();
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
