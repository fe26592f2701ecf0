import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { requireKernel } from '../support/capabilities.js';
import { service, slice } from '../support/objects.js';
import { runProxy, SourceDir } from '../support/proxy.js';

/**
 * Taking a node over from kube-proxy, in a namespace of its own: its nftables tables go in the
 * transaction that brings ours; `--cleanup` removes ours, its iptables chains (iptables-nft and
 * iptables-legacy) with the jumps into them, and kube-ipvs0; a host firewall written beside them
 * (a foreign nftables table, kubelet's own iptables chain) is the same byte for byte after.
 */
describe('kernel: taking a node over from kube-proxy, and its leftovers', function () {
  this.timeout(120_000);
  const ns = `knp-${process.pid}-takeover`;
  let dir: SourceDir;
  const sh = (cmd: string[], input?: string): string =>
    execFileSync('ip', ['netns', 'exec', ns, ...cmd], { encoding: 'utf8', input, stdio: 'pipe' });
  const has = (tool: string): boolean => {
    try {
      execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  };
  const FOREIGN = `table inet host-firewall {
  set admins {
    type ipv4_addr; flags interval; elements = { 10.0.0.0/8, 192.168.1.0/24 }
  }
  chain input {
    type filter hook input priority 0; policy accept;
    ip saddr @admins tcp dport 22 accept
  }
}
`;
  const KUBE_PROXY = (family: string) => `table ${family} kube-proxy {
  chain nat-prerouting {
    type nat hook prerouting priority dstnat; policy accept;
  }
  chain services {
  }
}
`;

  before(async function () {
    requireKernel(this);
    for (const tool of ['iptables-nft', 'iptables-legacy'])
      if (!has(tool)) {
        if (process.env.CI === 'true') throw new Error(`${tool} is missing (CI=true: install iptables)`);
        process.stderr.write(`  skipped: needs ${tool} (Debian package iptables)\n`);
        this.skip();
      }
    execFileSync('ip', ['netns', 'add', ns]);
    sh(['ip', 'link', 'set', 'lo', 'up']);
    sh(['nft', '-f', '-'], FOREIGN + KUBE_PROXY('ip') + KUBE_PROXY('ip6'));
    for (const ipt of ['iptables-nft', 'iptables-legacy']) {
      sh([ipt, '-t', 'nat', '-N', 'KUBE-SERVICES']);
      sh([ipt, '-t', 'nat', '-N', 'KUBE-SVC-TEST']);
      sh([
        ipt,
        '-t',
        'nat',
        '-A',
        'PREROUTING',
        '-m',
        'comment',
        '--comment',
        'kubernetes service portals',
        '-j',
        'KUBE-SERVICES',
      ]);
      sh([ipt, '-t', 'nat', '-A', 'KUBE-SERVICES', '-d', '10.96.0.1/32', '-p', 'tcp', '-j', 'KUBE-SVC-TEST']);
      sh([
        ipt,
        '-t',
        'nat',
        '-A',
        'KUBE-SVC-TEST',
        '-p',
        'tcp',
        '-j',
        'DNAT',
        '--to-destination',
        '10.0.0.9:6443',
      ]);
      // kubelet's, not kube-proxy's: it stays
      sh([ipt, '-t', 'filter', '-N', 'KUBE-FIREWALL']);
      sh([ipt, '-t', 'filter', '-A', 'INPUT', '-j', 'KUBE-FIREWALL']);
    }
    sh(['ip', 'link', 'add', 'kube-ipvs0', 'type', 'bridge']);
    dir = await SourceDir.create();
    await dir.write({
      'web.yaml': [
        service('default', 'web', { clusterIP: '10.96.0.10', ports: [{ port: 80, targetPort: 8080 }] }),
        slice('default', 'web-a', 'web', [{ port: 8080 }], [{ ip: '10.244.1.10' }]),
      ],
    });
  });
  after(async () => {
    await dir?.remove();
    try {
      execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
    } catch {
      // not created (skipped)
    }
  });

  const tables = (): string[] =>
    sh(['nft', 'list', 'tables'])
      .split('\n')
      .filter((l) => l.startsWith('table'))
      .sort();

  it("replaces kube-proxy's nftables tables with ours in one sync, and touches nothing else", async () => {
    const foreign = sh(['nft', 'list', 'table', 'inet', 'host-firewall']);
    const iptablesBefore = sh(['iptables-nft-save', '-t', 'nat']).replace(/^#.*\n/gm, '');
    const r = await runProxy(ns, [
      '--source',
      dir.path,
      '--once',
      '--hostname-override',
      'n1',
      '--node-ip',
      '192.168.0.10',
    ]);
    assert.equal(r.code, 0, r.stderr);
    const now = tables();
    assert.ok(!now.includes('table ip kube-proxy') && !now.includes('table ip6 kube-proxy'), now.join('; '));
    assert.ok(
      now.includes('table ip kube-nftproxy') && now.includes('table inet host-firewall'),
      now.join('; '),
    );
    assert.equal(sh(['nft', 'list', 'table', 'inet', 'host-firewall']), foreign);
    assert.equal(
      sh(['iptables-nft-save', '-t', 'nat']).replace(/^#.*\n/gm, ''),
      iptablesBefore,
      '--once leaves iptables alone',
    );
  });

  it("--cleanup removes ours and kube-proxy's leftovers: iptables-nft and legacy chains, their jumps, kube-ipvs0", async () => {
    const foreign = sh(['nft', 'list', 'table', 'inet', 'host-firewall']);
    // A live trace's table, as a daemon that died mid-trace leaves it: ours too.
    sh(['nft', 'add', 'table', 'ip6', 'kube-nftproxy-trace']);
    const r = await runProxy(ns, ['--cleanup']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(
      tables().filter((t) => !t.startsWith('table ip nat') && !t.startsWith('table ip filter')),
      ['table inet host-firewall'],
    );
    assert.equal(sh(['nft', 'list', 'table', 'inet', 'host-firewall']), foreign);
    for (const save of ['iptables-nft-save', 'iptables-legacy-save']) {
      const text = sh([save]);
      assert.doesNotMatch(text, /KUBE-SERVICES|KUBE-SVC-TEST/, `${save}:\n${text}`);
      assert.match(text, /^-A INPUT -j KUBE-FIREWALL$/m, `${save}: kubelet's chain stays`);
    }
    assert.throws(() => sh(['ip', 'link', 'show', 'kube-ipvs0']), 'kube-ipvs0 is gone');
    const again = await runProxy(ns, ['--cleanup']);
    assert.equal(again.code, 0, `a second --cleanup finds nothing and succeeds: ${again.stderr}`);
  });
});
