import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createConntrack } from '../../src/conntrack/exec.js';
import type { Flow } from '../../src/conntrack/flow.js';
import { ErrorCodes, hasCode } from '../../src/errors.js';
import { Lab } from '../../scripts/lab/index.js';
import { requireConntrack, requireKernel } from '../support/capabilities.js';

/**
 * The real conntrack program against the real connection table of a throwaway namespace:
 * entries made with `conntrack -I`, listed and deleted through createConntrack().
 */
describe('kernel: conntrack listing and deletion', function () {
  this.timeout(120_000);
  let lab: Lab;

  before(async function () {
    requireKernel(this);
    requireConntrack(this);
    lab = await Lab.create();
  });
  after(async () => lab?.destroy());

  /** `conntrack -I` lines in one batch (a file: conntrack cannot open a socket as /dev/stdin). */
  const insert = async (lines: string[]): Promise<void> => {
    const dir = mkdtempSync(join(tmpdir(), 'knp-conntrack-test-'));
    try {
      writeFileSync(join(dir, 'batch'), `${lines.join('\n')}\n`);
      await lab.exec('node', ['conntrack', '-R', join(dir, 'batch')]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
  const udp = (
    src: string,
    dst: string,
    dport: number,
    replySrc: string,
    replySport: number,
    sport = 40000,
  ) =>
    `-I -p udp -s ${src} -d ${dst} --sport ${sport} --dport ${dport} ` +
    `--reply-src ${replySrc} --reply-dst ${src} --reply-port-src ${replySport} --reply-port-dst ${sport} -t 600`;
  const count = async (args: string[]): Promise<number> => {
    const r = await lab.exec('node', ['conntrack', '-L', ...args], { allowFail: true });
    return r.stdout.split('\n').filter((l) => l.trim() !== '').length;
  };

  it('lists UDP entries of one family, parsed, and deletes by frontend and reply', async () => {
    await insert([
      udp('10.244.5.1', '10.96.0.10', 53, '10.244.1.1', 5353), // stale
      udp('10.244.5.2', '10.96.0.10', 53, '10.244.1.1', 5353), // stale, same filter
      udp('10.244.5.3', '10.96.0.10', 53, '10.244.1.2', 5353), // live
      udp('10.244.5.4', '10.96.0.10', 53, '10.244.1.1', 53), // same address, other port: live
      udp('172.30.0.100', '172.30.0.1', 30053, '10.244.1.1', 5353, 41000), // stale NodePort
      udp('10.244.5.5', '10.96.0.11', 53, '10.96.0.11', 53), // not ours
      '-I -p tcp -s 10.244.5.1 -d 10.96.0.10 --sport 40000 --dport 53 --reply-src 10.244.1.1 ' +
        '--reply-dst 10.244.5.1 --reply-port-src 5353 --reply-port-dst 40000 --state ESTABLISHED -t 600',
    ]);
    const ct = createConntrack({ netns: lab.nodeNs });
    const flows: Flow[] = [];
    await ct.listUdp('ipv4', (f) => flows.push(f));
    assert.equal(flows.length, 6);
    assert.deepEqual(
      flows.find((f) => f.origSrc === '172.30.0.100'),
      {
        origSrc: '172.30.0.100',
        origDst: '172.30.0.1',
        origSport: 41000,
        origDport: 30053,
        replySrc: '10.244.1.1',
        replySport: 5353,
      },
    );
    const v6: Flow[] = [];
    await ct.listUdp('ipv6', (f) => v6.push(f));
    assert.equal(v6.length, 0);

    const deleted = await ct.deleteUdp('ipv4', [
      { origDst: '10.96.0.10', origDport: 53, replySrc: '10.244.1.1', replySport: 5353 },
      { origDst: '10.96.0.10', origDport: 53, replySrc: '10.244.1.99', replySport: 5353 }, // matches none
      { origDport: 30053, replySrc: '10.244.1.1', replySport: 5353 },
    ]);
    assert.equal(deleted, 3);
    assert.equal(await count(['-p', 'udp', '-f', 'ipv4']), 3);
    assert.equal(await count(['-p', 'udp', '--reply-src', '10.244.1.2']), 1);
    assert.equal(await count(['-p', 'udp', '--orig-dst', '10.96.0.11']), 1);
    assert.equal(await count(['-p', 'tcp']), 1, 'TCP untouched');
    assert.equal(await ct.deleteUdp('ipv4', []), 0);
  });

  it('lists and deletes IPv6 entries in their own family, addresses as the model writes them', async () => {
    await insert([
      udp('fd00:10:244:5::1', 'fd00:10:96::a', 53, 'fd00:10:244:1::1', 5353), // stale
      udp('fd00:10:244:5::2', 'fd00:10:96::a', 53, 'fd00:10:244:1::2', 5353), // live
    ]);
    const ct = createConntrack({ netns: lab.nodeNs });
    const flows: Flow[] = [];
    await ct.listUdp('ipv6', (f) => flows.push(f), new Set([53]));
    assert.deepEqual(flows.map((f) => [f.origSrc, f.origDst, f.replySrc]).sort(), [
      ['fd00:10:244:5::1', 'fd00:10:96::a', 'fd00:10:244:1::1'],
      ['fd00:10:244:5::2', 'fd00:10:96::a', 'fd00:10:244:1::2'],
    ]);
    const none: Flow[] = [];
    await ct.listUdp('ipv6', (f) => none.push(f), new Set([54]));
    assert.equal(none.length, 0, 'lines to other ports are skipped');
    const deleted = await ct.deleteUdp('ipv6', [
      { origDst: 'fd00:10:96::a', origDport: 53, replySrc: 'fd00:10:244:1::1', replySport: 5353 },
    ]);
    assert.equal(deleted, 1);
    assert.equal(await count(['-p', 'udp', '-f', 'ipv6']), 1);
  });

  it('says what to install when conntrack is missing', async () => {
    const ct = createConntrack({ netns: lab.nodeNs, path: '/nonexistent/conntrack' });
    await assert.rejects(
      ct.listUdp('ipv4', () => undefined),
      (err: unknown) => hasCode(err, ErrorCodes.CONNTRACK_BINARY_MISSING),
    );
    const host = createConntrack({ path: '/nonexistent/conntrack' });
    await assert.rejects(
      host.deleteUdp('ipv4', [{ origDport: 1, replySrc: '10.0.0.1', replySport: 1 }]),
      (err: unknown) => hasCode(err, ErrorCodes.CONNTRACK_BINARY_MISSING),
    );
  });

  it('reports a refused command with its code', async () => {
    const ct = createConntrack({ netns: lab.nodeNs });
    // An address of the wrong family: conntrack refuses the line.
    await assert.rejects(
      ct.deleteUdp('ipv4', [{ origDst: 'fd00::1', origDport: 1, replySrc: '10.0.0.1', replySport: 1 }]),
      (err: unknown) => hasCode(err, ErrorCodes.CONNTRACK_FAILED),
    );
  });
});
