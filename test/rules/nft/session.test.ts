import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
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
