import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { createConntrack, filterArgs, type ConntrackExec } from '../../src/conntrack/exec.js';
import type { Flow } from '../../src/conntrack/flow.js';
import { ErrorCodes, hasCode } from '../../src/errors.js';

/** An exec that records its calls and answers with `reply` (the real program: test/kernel/). */
function recording(reply: (args: string[]) => { stdout?: string; stderr?: string; code?: number }) {
  const calls: Array<{ args: string[]; batch?: string }> = [];
  const exec: ConntrackExec = async (args, { onLine } = {}) => {
    const batch = args[0] === '-R' && existsSync(args[1]!) ? readFileSync(args[1]!, 'utf8') : undefined;
    calls.push({ args, ...(batch === undefined ? {} : { batch }) });
    const r = reply(args);
    const stdout = r.stdout ?? '';
    if (onLine) for (const line of stdout.split('\n')) if (line !== '') onLine(line);
    return { stdout: onLine ? '' : stdout, stderr: r.stderr ?? '', code: r.code ?? 0 };
  };
  return { exec, calls };
}

const LISTING = [
  'udp      17 29 src=10.244.5.5 dst=10.96.0.10 sport=40000 dport=53 src=10.244.1.1 dst=10.244.5.5 sport=5353 dport=40000 [ASSURED] mark=0 use=1',
  'udp      17 29 src=10.244.5.6 dst=10.96.0.11 sport=40000 dport=80 src=10.244.1.2 dst=10.244.5.6 sport=8080 dport=40000 mark=0 use=1',
].join('\n');

describe('createConntrack', () => {
  it('lists one family of UDP, parsing only the lines sent to the ports asked for', async () => {
    const { exec, calls } = recording(() => ({ stdout: LISTING }));
    const ct = createConntrack({ exec });
    const flows: Flow[] = [];
    await ct.listUdp('ipv6', (f) => flows.push(f), new Set([53]));
    assert.deepEqual(calls[0]!.args, ['-L', '-p', 'udp', '-f', 'ipv6']);
    assert.deepEqual(
      flows.map((f) => f.origDst),
      ['10.96.0.10'],
    );
    const all: Flow[] = [];
    await ct.listUdp('ipv4', (f) => all.push(f));
    assert.equal(all.length, 2);
  });

  it('deletes with one -R batch of filtered -D lines and counts the entries it printed', async () => {
    const { exec, calls } = recording(() => ({ stdout: `${LISTING}\n` }));
    const ct = createConntrack({ exec });
    const deleted = await ct.deleteUdp('ipv4', [
      { origDst: '10.96.0.10', origDport: 53, replySrc: '10.244.1.1', replySport: 5353 },
      { origDport: 30053, replySrc: '10.244.1.1', replySport: 5353 },
    ]);
    assert.equal(deleted, 2);
    assert.equal(calls.length, 1);
    assert.equal(calls[0]!.args[0], '-R');
    assert.equal(
      calls[0]!.batch,
      '-D -p udp -f ipv4 --orig-dst 10.96.0.10 --orig-port-dst 53 --reply-src 10.244.1.1 --reply-port-src 5353\n' +
        '-D -p udp -f ipv4 --orig-port-dst 30053 --reply-src 10.244.1.1 --reply-port-src 5353\n',
    );
    assert.equal(existsSync(calls[0]!.args[1]!), false, 'the batch file is gone');
    assert.equal(await ct.deleteUdp('ipv4', []), 0);
    assert.equal(calls.length, 1, 'nothing to delete: nothing run');
  });

  it('maps failures to codes: missing program, refused command', async () => {
    const missing: ConntrackExec = async () => {
      throw Object.assign(new Error('spawn conntrack ENOENT'), { code: 'ENOENT' });
    };
    await assert.rejects(
      createConntrack({ exec: missing }).listUdp('ipv4', () => undefined),
      (err: unknown) => hasCode(err, ErrorCodes.CONNTRACK_BINARY_MISSING),
    );
    const viaNetns = recording(() => ({
      code: 255,
      stderr: 'exec of "conntrack" failed: No such file or directory',
    }));
    await assert.rejects(
      createConntrack({ exec: viaNetns.exec }).listUdp('ipv4', () => undefined),
      (err: unknown) => hasCode(err, ErrorCodes.CONNTRACK_BINARY_MISSING),
    );
    const refused = recording(() => ({
      code: 1,
      stderr: 'conntrack v1.4.7 (conntrack-tools): Operation failed: Operation not permitted\n',
    }));
    await assert.rejects(
      createConntrack({ exec: refused.exec }).listUdp('ipv4', () => undefined),
      (err: unknown) =>
        hasCode(err, ErrorCodes.CONNTRACK_FAILED) && /Operation not permitted/.test(String(err)),
    );
  });

  it('a NodePort filter has no destination address', () => {
    assert.deepEqual(filterArgs({ origDport: 30053, replySrc: 'fd00::1', replySport: 53 }), [
      '--orig-port-dst',
      '30053',
      '--reply-src',
      'fd00::1',
      '--reply-port-src',
      '53',
    ]);
  });
});
