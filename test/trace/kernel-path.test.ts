import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { KernelPathBuilder, type KernelPath, type TracedTuple } from '../../src/trace/kernel-path.js';
import { parseTraceLine } from '../../src/trace/monitor-line.js';
import { traceTableChains } from '../../src/trace/trace-table.js';

const FIXTURES = 'test/fixtures/nft-trace';

/** Feeds a captured `nft monitor trace` output to a builder, line by line, as the monitor would. */
function follow(file: string, tuple: TracedTuple): KernelPath {
  const builder = new KernelPathBuilder(traceTableChains('kube-nftproxy', 'ipv4'), tuple);
  for (const text of readFileSync(`${FIXTURES}/${file}`, 'utf8').split('\n')) {
    const line = parseTraceLine(text);
    if (line && builder.add(line)) break;
  }
  return builder.path();
}

/**
 * The daemon's own rules (captured with scripts/lab: a pod to a ClusterIP, an outside client to
 * a NodePort, a pod to a ClusterIP without endpoints), through both nft versions: the same
 * path, whichever printed it.
 */
describe('KernelPathBuilder: the first traced packet through the daemon’s rules', () => {
  const cases: Array<{
    what: string;
    tuple: TracedTuple;
    want: Pick<KernelPath, 'verdict' | 'dnat' | 'masquerade' | 'complete'>;
    chains: string[];
  }> = [
    {
      what: 'a pod to a ClusterIP: DNAT to the endpoint, source kept',
      tuple: { saddr: '10.244.1.50', daddr: '10.96.5.10', proto: 'tcp', dport: 80 },
      want: { verdict: 'accept', dnat: '10.244.1.11:8080', masquerade: false, complete: true },
      chains: [
        'ip kube-nftproxy filter-prerouting',
        'ip kube-nftproxy nat-prerouting',
        'ip kube-nftproxy services',
        'ip kube-nftproxy clusterip-1',
        'ip kube-nftproxy filter-prerouting-post-dnat',
        'ip kube-nftproxy filter-forward',
        'ip kube-nftproxy nat-postrouting',
        'ip kube-nftproxy masquerading',
        'ip kube-nftproxy nat-postrouting',
      ],
    },
    {
      what: 'outside to a NodePort: DNAT, masqueraded',
      tuple: { saddr: '172.30.0.100', daddr: '172.30.0.1', proto: 'tcp', dport: 30085 },
      want: { verdict: 'accept', dnat: '10.244.1.11:8080', masquerade: true, complete: true },
      chains: [
        'ip kube-nftproxy filter-prerouting',
        'ip kube-nftproxy nat-prerouting',
        'ip kube-nftproxy services',
        'ip kube-nftproxy external-1',
        'ip kube-nftproxy mark-for-masquerade',
        'ip kube-nftproxy external-1',
        'ip kube-nftproxy filter-prerouting-post-dnat',
        'ip kube-nftproxy filter-forward',
        'ip kube-nftproxy nat-postrouting',
        'ip kube-nftproxy masquerading',
      ],
    },
    {
      what: 'a pod to a ClusterIP without endpoints: rejected in forward',
      tuple: { saddr: '10.244.1.50', daddr: '10.96.5.20', proto: 'tcp', dport: 80 },
      want: { verdict: 'reject', dnat: null, masquerade: false, complete: true },
      chains: [
        'ip kube-nftproxy filter-prerouting',
        // No element in @service-ips: the vmap rule matches nothing, and nft prints no line for it.
        'ip kube-nftproxy nat-prerouting',
        'ip kube-nftproxy filter-prerouting-post-dnat',
        'ip kube-nftproxy filter-forward',
        'ip kube-nftproxy endpoints-check',
        'ip kube-nftproxy reject-chain',
      ],
    },
  ];
  for (const version of ['1.0.6', '1.1.3']) {
    for (const c of cases) {
      it(`nft ${version}: ${c.what}`, () => {
        const path = follow(`daemon-${version}.txt`, c.tuple);
        assert.deepEqual(
          { verdict: path.verdict, dnat: path.dnat, masquerade: path.masquerade, complete: path.complete },
          c.want,
        );
        assert.deepEqual(path.chains, c.chains);
        assert.ok(
          path.rules.every((r) => !r.chain.includes('kube-nftproxy-trace')),
          'the trace table is instrumentation, not the path',
        );
      });
    }
  }

  it('names the rule that rejected, with its verdict', () => {
    const path = follow('daemon-1.0.6.txt', {
      saddr: '10.244.1.50',
      daddr: '10.96.5.20',
      proto: 'tcp',
      dport: 80,
    });
    assert.deepEqual(path.rules.at(-1), {
      chain: 'ip kube-nftproxy reject-chain',
      rule: 'reject with tcp reset',
      verdict: 'drop',
    });
  });

  for (const version of ['1.0.6', '1.1.3'])
    it(`nft ${version}: a rule nft did not know yet is named by its handle, and its verdict still counts`, () => {
      const path = follow(`reject-and-dnat-${version}.txt`, {
        saddr: '10.0.1.2',
        daddr: '10.96.0.12',
        proto: 'tcp',
        dport: 80,
      });
      assert.ok(path.rules.some((r) => r.rule === 'handle 23' && r.verdict === 'goto clusterip-1'));
      assert.equal(path.dnat, '10.0.2.2:8080');
      assert.equal(path.masquerade, true);
    });

  it('ignores packets of other tuples, and stays incomplete without an end', () => {
    const builder = new KernelPathBuilder(traceTableChains('kube-nftproxy', 'ipv4'), {
      saddr: '10.9.9.9',
      daddr: '10.96.5.10',
      proto: 'tcp',
      dport: 80,
    });
    for (const text of readFileSync(`${FIXTURES}/daemon-1.0.6.txt`, 'utf8').split('\n')) {
      const line = parseTraceLine(text);
      if (line) assert.equal(builder.add(line), false);
    }
    const path = builder.path();
    assert.deepEqual(
      { first: path.first, verdict: path.verdict, chains: path.chains, complete: path.complete },
      { first: undefined, verdict: undefined, chains: [], complete: false },
    );
  });
});
