import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LAB, Lab } from '../../scripts/lab/index.js';
import { ErrorCodes, hasCode } from '../../src/errors.js';
import { createNft, nftError } from '../../src/rules/nft/exec.js';
import { Transaction } from '../../src/rules/nft/transaction.js';
import { NftSession } from '../../src/rules/nft/session.js';
import { requireKernel } from '../support/capabilities.js';
import { oldNft, requireNewNft, type NftBinary } from '../support/nft-versions.js';
import { service, slice } from '../support/objects.js';
import { runProxy, SourceDir } from '../support/proxy.js';

/**
 * An ordinary host firewall, as Debian trixie's nft 1.1.3 writes it: an interval set, a dynamic
 * set with timeouts, a typeof map. nft 1.0.6 crashes (SIGSEGV) reading any of the two sets
 * (docs/nft-facts.md), in `nft list ruleset` and in every `nft -f`, `-c` or `-i` transaction.
 * It accepts everything, so the lab's traffic is the proxy's business only.
 */
const HOST_FIREWALL = `table inet host-firewall {
	set blocklist {
		type ipv4_addr
		flags interval
		elements = { 192.0.2.0/24, 198.51.100.7 }
	}
	set ssh-clients {
		type ipv4_addr
		size 65535
		flags dynamic,timeout
		timeout 1m
	}
	map port-owner {
		typeof tcp dport : ip daddr
		elements = { 8081 : 10.0.0.1 }
	}
	chain input {
		type filter hook input priority filter; policy accept;
		ip saddr @blocklist drop
		tcp dport 22 ct state new add @ssh-clients { ip saddr limit rate over 10/minute } drop
	}
	chain forward {
		type filter hook forward priority filter; policy accept;
		ip saddr @blocklist drop
	}
}
`;

/**
 * kube-nftproxy on a node whose firewall a newer nft wrote (kubernetes/kubernetes#136786 for
 * kube-proxy): with nft 1.0.6 it refuses to start and says why and what to do; with 1.1.3 it
 * programs its rules, packets reach the pods, and the firewall is left exactly as it was.
 */
describe('kernel: a host firewall written by nft 1.1.3', function () {
  this.timeout(180_000);
  let lab: Lab;
  let src: SourceDir;
  let next: NftBinary;
  const old = oldNft();

  /** The firewall as nft 1.1.3 lists it, handles included: a recreated object has new ones. */
  const firewall = async (): Promise<string> =>
    (await lab.exec('node', [next.path, '-a', 'list', 'table', 'inet', 'host-firewall'])).stdout;

  const once = (bin: NftBinary) =>
    runProxy(
      lab.nodeNs,
      [
        '--source',
        src.path,
        '--hostname-override',
        LAB.nodeName,
        '--cluster-cidr',
        LAB.clusterCidr,
        '--once',
      ],
      { PATH: `${bin.bin}:${process.env.PATH ?? ''}` },
    );

  before(async function () {
    requireKernel(this);
    next = requireNewNft(this);
    await Lab.sweep();
    lab = await Lab.create();
    src = await SourceDir.create();
    for (const [i, ip] of ['10.244.1.11', '10.244.1.12'].entries()) {
      await lab.addPod(`web-${i + 1}`, { ip });
      await lab.serve(`web-${i + 1}`, { tcp: [8080] });
    }
    await lab.addPod('client-pod', { ip: '10.244.1.50' });
    await lab.addClient('outside');
    await src.write({
      'objects.yaml': [
        service('demo', 'web', { clusterIP: '10.96.0.10', ports: [{ port: 80, targetPort: 8080 }] }),
        slice(
          'demo',
          'web-a',
          'web',
          [{ port: 8080 }],
          [
            { ip: '10.244.1.11', nodeName: LAB.nodeName },
            { ip: '10.244.1.12', nodeName: LAB.nodeName },
          ],
        ),
      ],
    });
    await lab.exec('node', [next.path, '-f', '-'], { input: HOST_FIREWALL });
  });

  after(async () => {
    await lab?.destroy();
    await src?.remove();
  });

  it('nft 1.0.6: kube-nftproxy exits 3 saying nft crashed on that table and to use nft >= 1.1; nothing changes', async function () {
    if (!old) {
      process.stderr.write('  skipped: no system nft older than 1.1 here, so none that crashes\n');
      this.skip();
    }
    const before = await firewall();
    const r = await once(old);
    assert.equal(r.code, 3, r.stderr);
    const line = r.stderr.split('\n').find((l) => l.startsWith('kube-nftproxy: ')) ?? '';
    assert.match(line, new RegExp(`nft ${old.version.replace(/\./g, '\\.')} crashed \\(SIGSEGV\\)`));
    assert.match(line, /table inet host-firewall, which a newer nft wrote/);
    assert.match(line, /Run kube-nftproxy with nft >= 1\.1/);
    assert.doesNotMatch(line, /rejects a construct/);
    const ours = await lab.exec('node', [next.path, 'list', 'table', 'ip', 'kube-nftproxy'], {
      allowFail: true,
    });
    assert.notEqual(ours.code, 0, 'no table of ours was created');
    assert.equal(await firewall(), before);
  });

  it('nft 1.0.6: element operations through the session or nft -f beside that table are NFT_CRASHED, not refusals', async function () {
    if (!old) this.skip();
    // nft reads every table's sets before element and rule operations (adding a table or a
    // chain it does not): those are the ones that crash.
    await lab.exec('node', [next.path, '-f', '-'], {
      input: 'add table ip knp-crash\nadd map ip knp-crash m { type ipv4_addr : ipv4_addr ; }\n',
    });
    const element = (k: number): Transaction =>
      new Transaction().add({
        kind: 'element',
        family: 'ip',
        table: 'knp-crash',
        set: 'm',
        key: `10.0.0.${k}`,
        value: '10.1.0.1',
      });
    const dir = mkdtempSync(join(tmpdir(), 'knp-foreign-session-'));
    const session = createNft({ netns: lab.nodeNs, nftPath: old.path, session: { dir } });
    const plain = createNft({ netns: lab.nodeNs, nftPath: old.path });
    try {
      for (const [nft, k] of [
        [session, 1],
        [session, 2], // a new session, which crashes the same way
        [plain, 3],
      ] as const) {
        await assert.rejects(nft.run(element(k)), (err: unknown) => {
          assert.ok(hasCode(err, ErrorCodes.NFT_CRASHED), String(err));
          assert.match((err as Error).message, /crashed \(SIGSEGV\).*nft >= 1\.1/);
          return true;
        });
      }
    } finally {
      session.close?.();
      rmSync(dir, { recursive: true, force: true });
      await lab.exec('node', [next.path, 'delete', 'table', 'ip', 'knp-crash']);
    }
  });

  it('nft 1.1.3: kube-nftproxy programs its rules, packets reach the pods, the firewall is untouched byte for byte', async () => {
    const before = await firewall();
    const r = await once(next);
    assert.equal(r.code, 0, r.stderr);
    const probe = await lab.probe('client-pod', { dst: '10.96.0.10', port: 80, proto: 'tcp', count: 20 });
    assert.deepEqual([...probe.answers.keys()].sort(), ['web-1', 'web-2']);
    assert.equal(probe.refused + probe.timedOut, 0);
    assert.equal(await firewall(), before);
    // --cleanup deletes our tables and only them.
    const c = await runProxy(lab.nodeNs, ['--cleanup'], { PATH: `${next.bin}:${process.env.PATH ?? ''}` });
    assert.equal(c.code, 0, c.stderr);
    assert.equal(await firewall(), before);
  });
});

/**
 * The long-lived `nft -i` session with each nft there is (1.0.6 and 1.1.3 here): each
 * transaction commits atomically, a failure is reported with its code, and the session goes on.
 * The end of a transaction is found the same way for both (docs/nft-facts.md).
 */
describe('kernel: the nft -i session with nft 1.0.6 and 1.1.3', function () {
  this.timeout(120_000);
  let lab: Lab;
  const versions: NftBinary[] = [];

  before(async function () {
    requireKernel(this);
    versions.push(requireNewNft(this));
    const old = oldNft();
    if (old) versions.push(old);
    await Lab.sweep();
    lab = await Lab.create();
  });

  after(async () => {
    await lab?.destroy();
  });

  it('commits, refuses with the right code, leaves the kernel as it was, and goes on', async () => {
    for (const bin of versions) {
      const ns = lab.nodeNs;
      const list = async (): Promise<string> =>
        (await lab.exec('node', [bin.path, 'list', 'table', 'ip', 'knp-session'])).stdout;
      const session = new NftSession({ command: ['ip', 'netns', 'exec', ns, bin.path] });
      const run = async (text: string): Promise<void> => {
        const r = await session.run(text);
        if (r.code !== 0) throw nftError(['-f', '-'], r);
      };
      try {
        await run(
          'add table ip knp-session\nadd map ip knp-session m { type ipv4_addr : ipv4_addr ; }\n' +
            'add element ip knp-session m { 10.0.0.1 : 10.1.0.1 }\n',
        );
        const before = await list();
        assert.match(before, /10\.0\.0\.1 : 10\.1\.0\.1/, bin.version);
        // A new key, then a changed value in place: the kernel refuses the whole batch.
        await assert.rejects(
          run(
            'add element ip knp-session m { 10.0.0.2 : 10.1.0.2 }\nadd element ip knp-session m { 10.0.0.1 : 10.1.0.9 }\n',
          ),
          (err: unknown) => hasCode(err, ErrorCodes.NFT_EXISTS),
          bin.version,
        );
        assert.equal(await list(), before, `${bin.version}: nothing of the failed transaction is left`);
        await assert.rejects(
          run('frobnicate\n'),
          (err: unknown) => hasCode(err, ErrorCodes.NFT_REJECTED),
          bin.version,
        );
        for (let k = 2; k <= 30; k++)
          await run(`add element ip knp-session m { 10.0.0.${k} : 10.1.0.${k} }\n`);
        const text = await list();
        for (let k = 1; k <= 30; k++)
          assert.match(text, new RegExp(`10\\.0\\.0\\.${k} : 10\\.1\\.0\\.${k}\\b`), bin.version);
        assert.ok(session.alive, bin.version);
      } finally {
        session.close();
        await lab.exec('node', [bin.path, 'destroy', 'table', 'ip', 'knp-session'], { allowFail: true });
      }
    }
  });
});
