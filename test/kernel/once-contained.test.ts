import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requireKernel } from '../support/capabilities.js';
import { service, slice } from '../support/objects.js';
import { logLines, runProxy, SourceDir } from '../support/proxy.js';

/**
 * `--once` contains a refused Service as the daemon does: the others are applied, it is named
 * with nft's reason, the exit is 0. No Service the model lets through is refused by nft any more
 * (colliding frontends and nested ranges are settled in the model), so the refusal comes from a
 * real process boundary: an `nft` first on PATH that refuses, as nft does, any transaction
 * naming a marked address, and hands everything else to the real nft.
 */
describe('kernel: --once applies everything but a Service nft refuses', function () {
  this.timeout(120_000);
  const ns = `knp-${process.pid}-once`;
  let bin: string;
  let dir: SourceDir;

  before(async function () {
    requireKernel(this);
    execFileSync('ip', ['netns', 'add', ns]);
    bin = mkdtempSync(join(tmpdir(), 'knp-nft-'));
    const real = execFileSync('sh', ['-c', 'command -v nft'], { encoding: 'utf8' }).trim();
    writeFileSync(
      join(bin, 'nft'),
      [
        '#!/bin/sh',
        '# nft, except that a transaction on stdin naming $KNP_REFUSE is refused as nft refuses one.',
        'case " $* " in',
        '  *" -f - "*)',
        '    tmp=$(mktemp)',
        '    cat > "$tmp"',
        '    if grep -q -- "$KNP_REFUSE" "$tmp"; then',
        '      n=$(grep -n -- "$KNP_REFUSE" "$tmp" | head -n 1 | cut -d: -f1)',
        '      echo "/dev/stdin:$n:1-10: Error: Could not process rule: File exists" >&2',
        '      rm -f "$tmp"',
        '      exit 1',
        '    fi',
        `    ${real} "$@" < "$tmp"`,
        '    rc=$?',
        '    rm -f "$tmp"',
        '    exit $rc',
        '    ;;',
        'esac',
        `exec ${real} "$@"`,
        '',
      ].join('\n'),
    );
    chmodSync(join(bin, 'nft'), 0o755);
    dir = await SourceDir.create();
    await dir.write({
      'objects.yaml': [
        service('demo', 'good', { clusterIP: '10.96.8.10', ports: [{ port: 80, targetPort: 8080 }] }),
        slice('demo', 'good-a', 'good', [{ port: 8080 }], [{ ip: '10.244.1.80' }]),
        service('demo', 'refused', { clusterIP: '10.96.8.66', ports: [{ port: 80, targetPort: 8080 }] }),
        slice('demo', 'refused-a', 'refused', [{ port: 8080 }], [{ ip: '10.244.1.81' }]),
      ],
    });
  });
  after(async () => {
    await dir?.remove();
    if (bin) rmSync(bin, { recursive: true, force: true });
    try {
      execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
    } catch {
      // not created (skipped)
    }
  });

  it('exits 0, programs the good Service, names the refused one with the reason', async () => {
    const r = await runProxy(
      ns,
      ['--source', dir.path, '--once', '--hostname-override', 'n1', '--node-ip', '192.168.0.10'],
      { PATH: `${bin}:${process.env.PATH}`, KNP_REFUSE: '10.96.8.66 ' },
    );
    assert.equal(r.code, 0, r.stderr);
    const table = execFileSync('ip', ['netns', 'exec', ns, 'nft', 'list', 'table', 'ip', 'kube-nftproxy'], {
      encoding: 'utf8',
    });
    assert.match(table, /10\.96\.8\.10 \. tcp \. 80/);
    assert.doesNotMatch(table, /10\.96\.8\.66/);
    const warn = logLines(r.stderr).find(
      (l) => l.msg === 'nft refused some Services: applied everything else without them',
    );
    assert.deepEqual(warn?.heldOut, ['demo/refused'], r.stderr);
    assert.ok(
      logLines(r.stderr).some(
        (l) => l.object === 'demo/refused' || JSON.stringify(l).includes('File exists'),
      ),
      r.stderr,
    );
  });
});
