import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { joinedTraceGroup, subscribedInodes } from '../../src/trace/trace-monitor.js';

/** /proc/net/netlink with two nft monitor trace processes (captured) and a plain nft socket. */
const LISTING = `sk               Eth Pid        Groups   Rmem     Wmem     Dump  Locks    Drops    Inode
000000003ae24381 12  0          00000000 0        0        0     2        0        2827453 
00000000d34d247b 12  14345      00000100 0        0        0     2        0        2892563 
00000000e67ad431 12  14346      00000100 0        0        0     2        0        2827869 
0000000011111111 0   14346      00000100 0        0        0     2        0        2800000 
`;

describe('the trace monitor listens: netlink bookkeeping in /proc', () => {
  it('subscribedInodes: netfilter sockets (Eth 12) in the nftrace group only', () => {
    assert.deepEqual(subscribedInodes(LISTING), ['2892563', '2827869']);
  });

  describe('joinedTraceGroup', () => {
    let proc: string;
    beforeEach(() => {
      proc = mkdtempSync(join(tmpdir(), 'knp-proc-'));
      mkdirSync(join(proc, '42', 'fd'), { recursive: true });
      mkdirSync(join(proc, '42', 'net'));
      writeFileSync(join(proc, '42', 'net', 'netlink'), LISTING);
    });
    afterEach(() => rmSync(proc, { recursive: true, force: true }));

    it('true when one of its sockets joined', () => {
      symlinkSync('pipe:[1]', join(proc, '42', 'fd', '1'));
      symlinkSync('socket:[2892563]', join(proc, '42', 'fd', '3'));
      assert.equal(joinedTraceGroup(42, proc), true);
    });

    it('false while its socket has not joined (nft still starting)', () => {
      symlinkSync('socket:[2827453]', join(proc, '42', 'fd', '3'));
      assert.equal(joinedTraceGroup(42, proc), false);
    });

    it('false for a process that is gone', () => {
      assert.equal(joinedTraceGroup(43, proc), false);
    });
  });
});
