import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ErrorCodes, hasCode, type ErrorCode } from '../../../src/errors.js';
import { silentLogger } from '../../../src/log.js';
import { buildState } from '../../../src/model/build-state.js';
import { NftApplier } from '../../../src/rules/applier.js';
import { compile } from '../../../src/rules/compile.js';
import {
  classifyStderr,
  createNft,
  deathSignal,
  NftCrashError,
  parseVersion,
  spawnExec,
  type Exec,
  type ExecResult,
} from '../../../src/rules/nft/exec.js';
import { Transaction } from '../../../src/rules/nft/transaction.js';
import { MODEL_CONFIG } from '../../support/arbitraries.js';
import { service, slice } from '../../support/objects.js';

/** An Exec that records its calls and answers from a script. */
function scripted(answer: (args: string[], stdin?: string) => ExecResult | Error): {
  exec: Exec;
  calls: Array<{ args: string[]; stdin?: string }>;
} {
  const calls: Array<{ args: string[]; stdin?: string }> = [];
  const exec: Exec = async (args, stdin) => {
    calls.push({ args, stdin });
    const a = answer(args, stdin);
    if (a instanceof Error) throw a;
    return a;
  };
  return { exec, calls };
}

const ok: ExecResult = { stdout: '', stderr: '', code: 0 };
const tx = (): Transaction => new Transaction().add({ kind: 'table', family: 'ip', table: 't' });

async function rejects(p: Promise<unknown>, code: ErrorCode, message?: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(hasCode(err, code), `expected ${code}, got ${String(err)}`);
    if (message) assert.match((err as Error).message, message);
    return true;
  });
}

describe('nft exec: createNft with an injected exec', () => {
  it('run sends the transaction text to nft -f - on stdin', async () => {
    const { exec, calls } = scripted(() => ok);
    await createNft({ exec }).run(tx());
    assert.deepEqual(calls, [{ args: ['-f', '-'], stdin: 'add table ip t\n' }]);
  });

  it('check uses nft -c -f -', async () => {
    const { exec, calls } = scripted(() => ok);
    await createNft({ exec }).check(tx());
    assert.deepEqual(calls[0]?.args, ['-c', '-f', '-']);
  });

  it('rejects a transaction with a validation error without running nft', async () => {
    const { exec, calls } = scripted(() => ok);
    const bad = new Transaction().add({ kind: 'table', family: 'ip', table: 'bad name' });
    await rejects(createNft({ exec }).run(bad), ErrorCodes.NFT_INVALID_OBJECT);
    assert.equal(calls.length, 0);
  });

  it('does not run nft for an empty transaction', async () => {
    const { exec, calls } = scripted(() => ok);
    await createNft({ exec }).run(new Transaction());
    assert.equal(calls.length, 0);
  });

  it('maps a missing program to NFT_BINARY_MISSING with what to do', async () => {
    const { exec } = scripted(() => Object.assign(new Error('spawn nft ENOENT'), { code: 'ENOENT' }));
    await rejects(
      createNft({ exec }).run(tx()),
      ErrorCodes.NFT_BINARY_MISSING,
      /install the nftables package/,
    );
    await rejects(createNft({ exec }).version(), ErrorCodes.NFT_BINARY_MISSING);
  });

  it('maps permission errors to NFT_PERMISSION with what to do', async () => {
    const stderr =
      '/dev/stdin:1:1-15: Error: Could not process rule: Operation not permitted\nadd table ip t\n^^^^^^^^^^^^^^^\n';
    const { exec } = scripted(() => ({ stdout: '', stderr, code: 1 }));
    await rejects(createNft({ exec }).run(tx()), ErrorCodes.NFT_PERMISSION, /CAP_NET_ADMIN: run as root/);
  });

  it('keeps the first few stderr lines, carets included', async () => {
    const block = (n: number): string =>
      `/dev/stdin:${n}:19-19: Error: Could not process rule: Device or resource busy\ndelete chain ip t c\n                  ^\n`;
    const { exec } = scripted(() => ({ stdout: '', stderr: block(1) + block(2) + block(3), code: 1 }));
    await assert.rejects(createNft({ exec }).run(tx()), (err: unknown) => {
      assert.ok(hasCode(err, ErrorCodes.NFT_REJECTED));
      const message = (err as Error).message;
      assert.match(message, /\/dev\/stdin:1:19-19: Error: Could not process rule: Device or resource busy/);
      assert.match(message, /\n {18}\^/);
      assert.match(message, /\/dev\/stdin:2:/);
      assert.doesNotMatch(message, /\/dev\/stdin:3:/);
      assert.match(message, /\(3 more lines\)/);
      return true;
    });
  });

  it('list returns the table text, and "" when the table does not exist', async () => {
    const { exec, calls } = scripted((args) =>
      args[3] === 't'
        ? { stdout: 'table ip t {\n}\n', stderr: '', code: 0 }
        : {
            stdout: '',
            stderr: 'Error: No such file or directory\nlist table ip nope\n              ^^^^\n',
            code: 1,
          },
    );
    const nft = createNft({ exec });
    assert.equal(await nft.list('ip', 't'), 'table ip t {\n}\n');
    assert.equal(await nft.list('ip', 'nope'), '');
    assert.deepEqual(calls[0]?.args, ['list', 'table', 'ip', 't']);
  });

  it('list still fails on other errors', async () => {
    const { exec } = scripted(() => ({
      stdout: '',
      stderr: 'netlink: Error: cache initialization failed: Operation not permitted\n',
      code: 1,
    }));
    await rejects(createNft({ exec }).list('ip', 't'), ErrorCodes.NFT_PERMISSION);
  });

  it('reads the version once', async () => {
    const { exec, calls } = scripted(() => ({
      stdout: 'nftables v1.0.6 (Lester Gooch #5)\n',
      stderr: '',
      code: 0,
    }));
    const nft = createNft({ exec });
    assert.equal(await nft.version(), '1.0.6');
    assert.equal(await nft.version(), '1.0.6');
    assert.equal(calls.length, 1);
  });

  it('fails with NFT_VERSION when the version cannot be read', async () => {
    const { exec } = scripted(() => ({ stdout: 'something else\n', stderr: '', code: 0 }));
    await rejects(createNft({ exec }).version(), ErrorCodes.NFT_VERSION);
  });
});

describe('nft exec: stderr classification', () => {
  const cases: Array<[string, ErrorCode]> = [
    ['/dev/stdin:1:1-15: Error: Could not process rule: Operation not permitted', 'NFT_PERMISSION'],
    ['Operation not permitted (you must be root)', 'NFT_PERMISSION'],
    ['/dev/stdin:1:22-25: Error: Could not process rule: No such file or directory', 'NFT_NO_SUCH_OBJECT'],
    [
      '/dev/stdin:1:19-20: Error: No such file or directory; did you mean chain ‘b’ in table ip ‘t’?',
      'NFT_NO_SUCH_OBJECT',
    ],
    ['/dev/stdin:1:25-31: Error: Could not process rule: File exists', 'NFT_EXISTS'],
    ['/dev/stdin:1:19-19: Error: Could not process rule: Device or resource busy', 'NFT_REJECTED'],
    // nft 1.0.6's words for an element past a set's size (ENFILE), as the kernel test saw them.
    ['/dev/stdin:1:22-39: Error: Could not process rule: Too many open files in system', 'NFT_SET_FULL'],
    ['/dev/stdin:1:17-19: Error: No symbol type information', 'NFT_REJECTED'],
    ['exec of "nft" failed: No such file or directory', 'NFT_BINARY_MISSING'],
    // The first error decides, as it is the one nft stopped at.
    [
      'x:1:1: Error: Could not process rule: File exists\nadd x\n^\nx:2:1: Error: Could not process rule: No such file or directory',
      'NFT_EXISTS',
    ],
  ];
  for (const [stderr, code] of cases) {
    it(`${code}: ${stderr.split('\n')[0]}`, () => assert.equal(classifyStderr(stderr), code));
  }

  it('parses versions', () => {
    assert.equal(parseVersion('nftables v1.0.6 (Lester Gooch #5)'), '1.0.6');
    assert.equal(parseVersion('nftables v1.1 (x)'), '1.1');
    assert.equal(parseVersion('nope'), undefined);
  });
});

describe('nft exec: spawnExec', () => {
  it('passes args and stdin to the program and reports its output and status', async () => {
    // `sh` stands in for nft: this checks the plumbing, the kernel tests check nft itself.
    const exec = spawnExec({ nftPath: 'sh' });
    const r = await exec(['-c', 'cat; echo "$LC_ALL" >&2; exit 3'], 'hello\n');
    assert.deepEqual(r, { stdout: 'hello\n', stderr: 'C\n', code: 3 });
  });

  it('rejects with ENOENT when the program does not exist', async () => {
    const exec = spawnExec({ nftPath: '/nonexistent/nft' });
    await assert.rejects(
      exec(['--version']),
      (err: unknown) => (err as { code?: unknown }).code === 'ENOENT',
    );
    await rejects(createNft({ nftPath: '/nonexistent/nft' }).version(), ErrorCodes.NFT_BINARY_MISSING);
  });

  it('survives a program that exits without reading a large stdin', async () => {
    const exec = spawnExec({ nftPath: 'sh' });
    const r = await exec(['-c', 'exit 1'], 'x'.repeat(4 << 20));
    assert.equal(r.code, 1);
  });
});

/** A stand-in nft: an executable shell script in a fresh directory, removed by `after`. */
function standIn(dirs: string[], body: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'knp-nft-stand-in-'));
  dirs.push(dir);
  const path = join(dir, 'nft');
  writeFileSync(path, `#!/bin/sh\n${body}\n`, { mode: 0o755 });
  return path;
}

describe('nft exec: an nft that crashes or hangs', () => {
  const dirs: string[] = [];
  after(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  const crashCases: Array<[string, ExecResult]> = [
    ['killed by SIGSEGV, as Node reports it', { stdout: '', stderr: '', code: -1, signal: 'SIGSEGV' }],
    ['exit status 139 through a shell that did not exec', { stdout: '', stderr: '', code: 139 }],
  ];
  for (const [why, result] of crashCases) {
    it(`is NFT_CRASHED, with what to do, when nft is ${why}`, async () => {
      const { exec } = scripted(() => result);
      await assert.rejects(createNft({ exec }).run(tx()), (err: unknown) => {
        assert.ok(hasCode(err, ErrorCodes.NFT_CRASHED), String(err));
        assert.ok(err instanceof NftCrashError);
        assert.equal(err.signal, 'SIGSEGV');
        assert.match(err.message, /crashed \(SIGSEGV\)/);
        assert.match(err.message, /nft >= 1\.1/);
        return true;
      });
    });
  }

  it('reads the signal out of an exit status above 128 only', () => {
    assert.equal(deathSignal({ code: 139 }), 'SIGSEGV');
    assert.equal(deathSignal({ code: 134 }), 'SIGABRT');
    assert.equal(deathSignal({ code: 137 }), 'SIGKILL');
    assert.equal(deathSignal({ code: -1, signal: 'SIGBUS' }), 'SIGBUS');
    for (const code of [0, 1, 2, 3, 127, 128, 255]) assert.equal(deathSignal({ code }), undefined, `${code}`);
  });

  it('a crash is not a refusal: listings fail with NFT_CRASHED too, never read as "does not exist"', async () => {
    const { exec } = scripted(() => ({ stdout: '', stderr: '', code: -1, signal: 'SIGSEGV' }));
    const nft = createNft({ exec });
    await rejects(nft.list('ip', 't'), ErrorCodes.NFT_CRASHED);
    await rejects(nft.listMapJson('ip', 't', 'm'), ErrorCodes.NFT_CRASHED);
  });

  it('really spawned: an nft killed by SIGSEGV is NFT_CRASHED', async () => {
    const nftPath = standIn(dirs, 'cat >/dev/null; kill -SEGV $$');
    await rejects(createNft({ nftPath }).run(tx()), ErrorCodes.NFT_CRASHED, /crashed \(SIGSEGV\)/);
  });

  it('kills a silent nft, and what it started, with SIGKILL when its time is up', async () => {
    // The shell's child keeps the pipes open: the result comes only once both are dead.
    const exec = spawnExec({ nftPath: 'sh', timeoutMs: 100 });
    const r = await exec(['-c', 'sleep 1000 & wait']);
    assert.equal(r.timedOut, true);
    assert.equal(r.signal, 'SIGKILL');
  });

  it('a silent nft -f is NFT_TIMEOUT, saying the next sync replaces everything', async () => {
    const nftPath = standIn(dirs, 'exec sleep 1000');
    await rejects(
      createNft({ nftPath, timeoutMs: 100 }).run(tx()),
      ErrorCodes.NFT_TIMEOUT,
      /killed; whether it committed is unknown, so the next sync replaces the whole ruleset/,
    );
  });

  it('after a session that never answered, transactions go to nft -f for good', async () => {
    // nft -i reads and never answers; nft -f reads and succeeds.
    const nftPath = standIn(
      dirs,
      'for a in "$@"; do [ "$a" = -i ] && exec cat >/dev/null; done\ncat >/dev/null; echo "$@" >>"$0.log"',
    );
    const dir = mkdtempSync(join(tmpdir(), 'knp-session-fallback-'));
    dirs.push(dir);
    const nft = createNft({ nftPath, session: { dir }, sessionTimeoutMs: 100 });
    try {
      await rejects(nft.run(tx()), ErrorCodes.NFT_TIMEOUT, /nft -i did not answer/);
      await nft.run(tx());
      await nft.run(tx());
      assert.equal(readFileSync(`${nftPath}.log`, 'utf8'), '-f -\n-f -\n');
      assert.deepEqual(readdirSync(dir), [], 'no session left, none opened again');
    } finally {
      nft.close?.();
    }
  });

  it('tables() reads the table headers `nft list flowtables` prints', async () => {
    const { exec, calls } = scripted(() => ({
      stdout: 'table inet host-firewall {\n}\ntable ip kube-nftproxy {\n\tflowtable f {\n\t}\n}\n',
      stderr: '',
      code: 0,
    }));
    assert.deepEqual(await createNft({ exec }).tables!(), ['inet host-firewall', 'ip kube-nftproxy']);
    assert.deepEqual(calls[0]?.args, ['list', 'flowtables']);
  });
});

describe('nft exec: the applier over an nft that hangs', () => {
  const dirs: string[] = [];
  after(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  const rules = (endpoint: string) =>
    compile(
      buildState(
        {
          services: [service('demo', 'web', { clusterIP: '10.96.0.10', ports: [{ port: 80 }] })],
          slices: [
            slice(
              'demo',
              'web-a',
              'web',
              [{ port: 8080 }],
              [{ ip: endpoint, nodeName: MODEL_CONFIG.nodeName }],
            ),
          ],
        },
        MODEL_CONFIG,
      ),
      {
        table: 'kube-nftproxy',
        clusterCIDRs: ['10.244.0.0/16'],
        masqueradeAll: false,
        serviceCIDRs: [],
        nodePortIPs: { ipv4: ['192.168.0.10'], ipv6: [] },
        maglevSeed: 0,
      },
    );

  it('a sync whose nft never answers fails with NFT_TIMEOUT, and the next sync is a full one', async () => {
    // nft -i reads and never answers; nft -f reads, logs and succeeds.
    const nftPath = standIn(
      dirs,
      'for a in "$@"; do [ "$a" = -i ] && exec cat >/dev/null; done\ncat >/dev/null; echo "$@" >>"$0.log"',
    );
    const dir = mkdtempSync(join(tmpdir(), 'knp-applier-hang-'));
    dirs.push(dir);
    const nft = createNft({ nftPath, session: { dir }, sessionTimeoutMs: 100 });
    const applier = new NftApplier({ nft, log: silentLogger() });
    try {
      await rejects(applier.sync(rules('10.244.1.11')), ErrorCodes.NFT_TIMEOUT);
      assert.equal((await applier.sync(rules('10.244.1.11'))).full, true, 'after the hang: a full sync');
      const partial = await applier.sync(rules('10.244.1.12'));
      assert.equal(partial.full, false);
      assert.ok(partial.operations > 0);
      assert.equal(readFileSync(`${nftPath}.log`, 'utf8'), '-f -\n-f -\n');
    } finally {
      nft.close?.();
    }
  });
});
