import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { hasCode, ErrorCodes } from '../../src/errors.js';
import { silentLogger } from '../../src/log.js';
import type { Trace } from '../../src/model/trace.js';
import { FakeNft } from '../../src/rules/nft/fake.js';
import { LiveTracer } from '../../src/trace/live-trace.js';
import type { MonitorDeps } from '../../src/trace/trace-monitor.js';

/**
 * The tracer's own steps, with the Fake for nft's transactions and a real child process in
 * place of `nft monitor trace` (the kernel test runs the real one): it prints what nft 1.0.6
 * printed in a lab, then waits to be killed, as nft does.
 */
const FIXTURE = 'test/fixtures/nft-trace/daemon-1.0.6.txt';
const printing = (script: string): MonitorDeps => ({
  spawn: () => spawn(process.execPath, ['-e', script], { stdio: ['pipe', 'pipe', 'pipe'], detached: true }),
  joined: () => true,
});
const replaying = printing(
  `process.stdout.write(require('fs').readFileSync(${JSON.stringify(FIXTURE)})); setInterval(() => {}, 1000);`,
);
const MODEL: Trace = {
  verdict: 'dnat',
  service: 'lt/web',
  port: 'lt/web:http/TCP/ipv4',
  frontend: 'clusterIP',
  endpoints: [{ ip: '10.244.1.11', port: 8080 }],
  masquerade: false,
  hairpin: [],
  why: 'ClusterIP',
};
const PACKET = {
  src: '10.244.1.50',
  dst: '10.96.5.10',
  port: 80,
  proto: 'tcp' as const,
  from: 'pod' as const,
};

describe('LiveTracer', () => {
  let nft: FakeNft;
  beforeEach(() => {
    nft = new FakeNft();
  });

  it('arms the tuple with the limit as its kernel timeout, follows its packet, removes the table', async () => {
    const tracer = new LiveTracer({ nft, table: 'kube-nftproxy', log: silentLogger(), monitor: replaying });
    const answer = await tracer.trace(PACKET, 7, () => MODEL);
    assert.equal(answer.kernel?.dnat, '10.244.1.11:8080');
    assert.equal(answer.agree, true);
    assert.deepEqual(answer.disagreements, []);
    assert.deepEqual(tracer.status(), { state: 'idle' });
    assert.doesNotMatch(nft.dump(), /kube-nftproxy-trace/, 'the trace table is gone');
  });

  it('writes the trace table and the tuple as nft reads them', async () => {
    const texts: string[] = [];
    const run = nft.run.bind(nft);
    nft.run = async (tx) => {
      texts.push(tx.toString());
      await run(tx);
    };
    const tracer = new LiveTracer({ nft, table: 'kube-nftproxy', log: silentLogger(), monitor: replaying });
    await tracer.trace(PACKET, 7, () => MODEL);
    assert.deepEqual(texts, [
      [
        'add table ip kube-nftproxy-trace',
        'delete table ip kube-nftproxy-trace',
        'add table ip kube-nftproxy-trace { comment "kube-nftproxy live trace (GET /debug/trace?live=1)" ; }',
        'add set ip kube-nftproxy-trace tuples { type ipv4_addr . ipv4_addr . inet_proto . inet_service ; flags timeout ; }',
        'add chain ip kube-nftproxy-trace prerouting { type filter hook prerouting priority -350 ; }',
        'add chain ip kube-nftproxy-trace output { type filter hook output priority -350 ; }',
        'add chain ip kube-nftproxy-trace input { type filter hook input priority 2147483647 ; }',
        'add chain ip kube-nftproxy-trace postrouting { type filter hook postrouting priority 2147483647 ; }',
        'add rule ip kube-nftproxy-trace prerouting ip saddr . ip daddr . meta l4proto . th dport @tuples meta nftrace set 1',
        'add rule ip kube-nftproxy-trace output ip saddr . ip daddr . meta l4proto . th dport @tuples meta nftrace set 1',
        '',
      ].join('\n'),
      'add element ip kube-nftproxy-trace tuples { 10.244.1.50 . 10.96.5.10 . tcp . 80 timeout 7s }\n',
      [
        'add table ip kube-nftproxy-trace',
        'delete table ip kube-nftproxy-trace',
        'add table ip6 kube-nftproxy-trace',
        'delete table ip6 kube-nftproxy-trace',
        '',
      ].join('\n'),
    ]);
  });

  it('one at a time: LIVE_TRACE_BUSY while a trace runs', async () => {
    const tracer = new LiveTracer({
      nft,
      table: 'kube-nftproxy',
      log: silentLogger(),
      monitor: printing('setInterval(() => {}, 1000);'),
    });
    const first = tracer.trace(PACKET, 30, () => MODEL);
    assert.equal(tracer.status().state, 'arming');
    await assert.rejects(
      tracer.trace(PACKET, 30, () => MODEL),
      (err) => hasCode(err, ErrorCodes.LIVE_TRACE_BUSY),
    );
    await tracer.close();
    const answer = await first;
    assert.equal(answer.kernel, null);
    assert.match(answer.why ?? '', /stopped/);
    assert.doesNotMatch(nft.dump(), /kube-nftproxy-trace/);
  });

  it('a monitor that dies before it listens: LIVE_TRACE_FAILED with its message, and the table removed', async () => {
    const tracer = new LiveTracer({
      nft,
      table: 'kube-nftproxy',
      log: silentLogger(),
      monitor: {
        ...printing('console.error("netlink: Operation not permitted"); process.exit(1);'),
        joined: () => false,
      },
    });
    await assert.rejects(
      tracer.trace(PACKET, 5, () => MODEL),
      (err) =>
        hasCode(err, ErrorCodes.LIVE_TRACE_FAILED) && /Operation not permitted/.test((err as Error).message),
    );
    assert.deepEqual(tracer.status(), { state: 'idle' });
    assert.doesNotMatch(nft.dump(), /kube-nftproxy-trace/);
  });

  it('without a way to run nft monitor: LIVE_TRACE_UNAVAILABLE', async () => {
    const tracer = new LiveTracer({ nft, table: 'kube-nftproxy', log: silentLogger() });
    await assert.rejects(
      tracer.trace(PACKET, 5, () => MODEL),
      (err) => hasCode(err, ErrorCodes.LIVE_TRACE_UNAVAILABLE),
    );
  });

  it('a monitor that ends mid-trace: no kernel path, and why', async () => {
    const tracer = new LiveTracer({
      nft,
      table: 'kube-nftproxy',
      log: silentLogger(),
      monitor: printing('setTimeout(() => process.exit(2), 200);'),
    });
    const answer = await tracer.trace(PACKET, 30, () => MODEL);
    assert.equal(answer.kernel, null);
    assert.equal(answer.agree, null);
    assert.match(answer.why ?? '', /nft monitor trace ended \(status 2/);
  });
});
