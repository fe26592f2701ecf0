import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
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
});
