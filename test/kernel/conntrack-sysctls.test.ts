import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Lab } from '../../scripts/lab/index.js';
import { CONNTRACK_MAX_LIMIT, onlineCpus } from '../../src/conntrack-sysctls.js';
import { requireKernel } from '../support/capabilities.js';
import { logLines, REPO, runProxy, type RunResult } from '../support/proxy.js';

/**
 * `kube-nftproxy --init-only` for real, inside a lab network namespace, where the conntrack
 * timeouts are the namespace's own. nf_conntrack_max is read-only outside the initial
 * namespace (kernel 6.18) and hashsize is host-wide: the test reads the host's values and
 * checks at the end that they did not move. It never asks for a hashsize write.
 */
const NF = '/proc/sys/net/netfilter';
const HASHSIZE = '/sys/module/nf_conntrack/parameters/hashsize';
const HOST_GLOBALS = [`${NF}/nf_conntrack_max`, HASHSIZE];

describe('kernel: conntrack sysctls and --init-only in a network namespace', function () {
  this.timeout(120_000);
  let lab: Lab;
  let host: Record<string, string>;

  const inNs = async (name: string): Promise<number> =>
    Number((await lab.exec('node', ['cat', `${NF}/${name}`])).stdout.trim());
  const sets = (r: RunResult, msg: string) =>
    logLines(r.stderr)
      .filter((l) => l.msg === msg)
      .map((l) => [l.sysctl, l.to ?? l.code]);

  before(async function () {
    requireKernel(this);
    host = Object.fromEntries(HOST_GLOBALS.map((p) => [p, readFileSync(p, 'utf8').trim()]));
    lab = await Lab.create();
  });

  after(async () => {
    await lab?.destroy();
    // The host's (global) values are as they were.
    if (host) for (const p of HOST_GLOBALS) assert.equal(readFileSync(p, 'utf8').trim(), host[p], p);
  });

  it('sets the TCP timeouts of the namespace (24h, 1h) and exits 0; a second run writes nothing', async () => {
    await lab.exec('node', [
      'sysctl',
      '-q',
      '-w',
      'net.netfilter.nf_conntrack_tcp_timeout_established=432000',
      'net.netfilter.nf_conntrack_tcp_timeout_close_wait=60',
    ]);
    const maxBefore = await inNs('nf_conntrack_max');
    const r = await runProxy(lab.nodeNs, ['--init-only']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(sets(r, 'set conntrack sysctl'), [
      [`${NF}/nf_conntrack_tcp_timeout_established`, 86400],
      [`${NF}/nf_conntrack_tcp_timeout_close_wait`, 3600],
    ]);
    assert.equal(await inNs('nf_conntrack_tcp_timeout_established'), 86400);
    assert.equal(await inNs('nf_conntrack_tcp_timeout_close_wait'), 3600);
    assert.equal(await inNs('nf_conntrack_max'), maxBefore);
    assert.ok(logLines(r.stderr).some((l) => l.msg === 'initialized (--init-only); exiting'));

    const again = await runProxy(lab.nodeNs, ['--init-only']);
    assert.equal(again.code, 0, again.stderr);
    assert.deepEqual(sets(again, 'set conntrack sysctl'), []);
  });

  it('a raise of nf_conntrack_max it may not make here (read-only outside the host namespace) is logged, and it goes on', async function () {
    const cpus = await onlineCpus();
    const max = Number(host[`${NF}/nf_conntrack_max`]);
    const perCore = Math.ceil((max + 1) / cpus);
    // Only a table size whose hash table is already big enough: no hashsize write is ever tried.
    if (perCore * cpus > Math.min(CONNTRACK_MAX_LIMIT, 4 * Number(host[HASHSIZE]))) {
      process.stderr.write('    skipped: no nf_conntrack_max above the host value fits its hashsize\n');
      this.skip();
    }
    const r = await runProxy(lab.nodeNs, [
      '--init-only',
      `--conntrack-max-per-core=${perCore}`,
      '--conntrack-min=0',
      '--conntrack-udp-timeout=45s',
    ]);
    assert.equal(r.code, 0, r.stderr);
    const [skipped] = sets(r, 'cannot set conntrack sysctl; going on');
    assert.equal(skipped?.[0], `${NF}/nf_conntrack_max`);
    assert.ok(['EACCES', 'EPERM'].includes(String(skipped?.[1])), r.stderr);
    // The rest still applied.
    assert.equal(await inNs('nf_conntrack_udp_timeout'), 45);
    assert.equal(await inNs('nf_conntrack_max'), max);
  });

  it('on a read-only /proc/sys (an unprivileged container): logs EROFS and exits 0', async () => {
    // A private mount namespace inside the lab's: the read-only bind mount dies with it.
    const child = spawn(
      'ip',
      [
        'netns',
        'exec',
        lab.nodeNs,
        'unshare',
        '--mount',
        'sh',
        '-c',
        'mount --bind -o ro /proc/sys /proc/sys && exec "$@"',
        'sh',
        process.execPath,
        '--import',
        'tsx',
        join(REPO, 'src/cli.ts'),
        '--init-only',
        '--conntrack-tcp-timeout-established=2h',
      ],
      { cwd: REPO, env: { ...process.env, LOG_LEVEL: 'info' } },
    );
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    assert.equal(code, 0, stderr);
    const skipped = logLines(stderr).filter((l) => l.msg === 'cannot set conntrack sysctl; going on');
    assert.deepEqual(
      skipped.map((l) => [l.sysctl, l.code]),
      [[`${NF}/nf_conntrack_tcp_timeout_established`, 'EROFS']],
    );
    assert.match(String(skipped[0]!.hint), /--init-only/);
    assert.equal(await inNs('nf_conntrack_tcp_timeout_established'), 86400);
  });
});
