import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fc from 'fast-check';
import { buildState } from '../../src/model/build-state.js';
import { fullTransaction, partialTransaction } from '../../src/rules/diff.js';
import { compile, type CompileConfig } from '../../src/rules/compile.js';
import { createNft } from '../../src/rules/nft/exec.js';
import { FakeNft } from '../../src/rules/nft/fake.js';
import {
  clusterArb,
  collidingClusterArb,
  collidingObjectsOf,
  MODEL_CONFIG,
  objectsOf,
} from '../support/arbitraries.js';
import { requireKernel } from '../support/capabilities.js';

const CONFIG: CompileConfig = {
  table: 'kube-nftproxy',
  clusterCIDRs: ['10.244.0.0/16', 'fd00:244::/48'],
  masqueradeAll: false,
  serviceCIDRs: ['10.96.0.0/16', 'fd00:96::/112'],
  nodePortIPs: { ipv4: ['192.168.0.10'], ipv6: ['fd00:1::10'] },
  maglevSeed: 3,
  // The daemon's default (--service-counters): counted maps and the reordered firewall rule.
  serviceCounters: true,
};

/**
 * Property: whatever valid cluster the generator makes, real nft accepts the full
 * transaction (`nft -c`, which commits nothing) and the partial one from any other cluster,
 * and the Fake's dump of it is the same bytes twice.
 */
describe('kernel: compiled transactions for random clusters', function () {
  this.timeout(300_000);
  const ns = `knp-${process.pid}-check`;

  before(function () {
    requireKernel(this);
    execFileSync('ip', ['netns', 'add', ns]);
  });
  after(() => {
    try {
      execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
    } catch {
      // not created (skipped)
    }
  });

  it('nft -c accepts them, and the Fake dump is deterministic', async () => {
    const nft = createNft({ netns: ns });
    await fc.assert(
      fc.asyncProperty(clusterArb, clusterArb, async (a, b) => {
        const ra = compile(buildState(objectsOf(a), MODEL_CONFIG), CONFIG);
        const rb = compile(buildState(objectsOf(b), MODEL_CONFIG), CONFIG);
        const full = fullTransaction(rb);
        await nft.check(full);
        // a partial transaction is checked against the state it applies to
        await nft.run(fullTransaction(ra));
        await nft.check(partialTransaction(ra, rb));
        const dump = async () => {
          const fake = new FakeNft();
          await fake.run(fullTransaction(compile(buildState(objectsOf(b), MODEL_CONFIG), CONFIG)));
          return fake.dump();
        };
        assert.equal(await dump(), await dump());
      }),
      { numRuns: 25 },
    );
  });

  it('nft -c accepts colliding clusters too: shared addresses, duplicates, overlapping ranges, long lists', async () => {
    const nft = createNft({ netns: ns });
    await fc.assert(
      fc.asyncProperty(collidingClusterArb, collidingClusterArb, async (a, b) => {
        const ra = compile(buildState(collidingObjectsOf(a), MODEL_CONFIG), CONFIG);
        const rb = compile(buildState(collidingObjectsOf(b), MODEL_CONFIG), CONFIG);
        await nft.check(fullTransaction(rb));
        await nft.run(fullTransaction(ra));
        await nft.check(partialTransaction(ra, rb));
      }),
      { numRuns: 25 },
    );
  });

  it('nft -c accepts Maglev Services of every kind, full and partial', async () => {
    const nft = createNft({ netns: ns });
    // Few Services and runs: every endpoint list is a table of 251 to 16381 slots.
    const maglevArb = clusterArb.map((c) => c.slice(0, 3).map((s) => ({ ...s, maglev: true })));
    await fc.assert(
      fc.asyncProperty(maglevArb, maglevArb, async (a, b) => {
        const ra = compile(buildState(objectsOf(a), MODEL_CONFIG), CONFIG);
        const rb = compile(buildState(objectsOf(b), MODEL_CONFIG), CONFIG);
        await nft.check(fullTransaction(rb));
        await nft.run(fullTransaction(ra));
        await nft.check(partialTransaction(ra, rb));
      }),
      { numRuns: 8 },
    );
  });
});
