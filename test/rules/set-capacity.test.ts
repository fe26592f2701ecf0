import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ErrorCodes, ProxyError } from '../../src/errors.js';
import { buildState } from '../../src/model/build-state.js';
import { silentLogger } from '../../src/log.js';
import { NftApplier } from '../../src/rules/applier.js';
import { compile } from '../../src/rules/compile.js';
import { fullTransaction, plannedFullTransaction } from '../../src/rules/diff.js';
import { FakeNft } from '../../src/rules/nft/fake.js';
import { Transaction } from '../../src/rules/nft/transaction.js';
import type { Element, NftMap } from '../../src/rules/nft/types.js';
import type { Ruleset } from '../../src/rules/ruleset.js';
import { CapacityLedger, capacityFor, sizable, type CapacityOptions } from '../../src/rules/set-capacity.js';
import {
  clusterArb,
  MODEL_CONFIG,
  objectsOf,
  type ClusterSpec,
  COMPILE_CONFIG,
} from '../support/arbitraries.js';

const CONFIG = COMPILE_CONFIG;
const rulesOf = (spec: ClusterSpec): Ruleset => compile(buildState(objectsOf(spec), MODEL_CONFIG), CONFIG);
/** Every hash set sized exactly to what it holds: any net new element overfills it. */
const TIGHT: CapacityOptions = { from: 1, headroom: 1, step: 1 };

const map = (name: string, flags?: NftMap['flags']): NftMap => ({
  kind: 'map',
  family: 'ip',
  table: 't',
  name,
  type: ['ipv4_addr'],
  valueType: ['verdict'],
  ...(flags ? { flags } : {}),
});
const el = (set: string, key: string): Element => ({
  kind: 'element',
  family: 'ip',
  table: 't',
  set,
  key,
  value: 'drop',
});

describe('set capacity: what a full sync sizes', () => {
  it('sizes hash sets from `from` elements on, with headroom rounded up to the step', () => {
    assert.equal(capacityFor(4096), 6144);
    assert.equal(capacityFor(680_000), 1_020_928);
    assert.equal(capacityFor(3, TIGHT), 3);
    const rs = rulesOf([]);
    const big: Ruleset = {
      ...rs,
      sets: [map('big'), map('small'), map('ranges', ['interval']), map('learned', ['dynamic', 'timeout'])],
      elements: new Map([
        ['ip t big', Array.from({ length: 3000 }, (_, i) => el('big', `10.0.${i >> 8}.${i & 255}`))],
        ['ip t small', [el('small', '10.1.0.1')]],
        ['ip t ranges', Array.from({ length: 5000 }, (_, i) => el('ranges', `10.2.${i >> 8}.${i & 255}`))],
      ]),
      // A set's elements are counted wherever they are: shared, and in each port's fragment.
      fragments: [
        {
          key: 'a',
          elements: Array.from({ length: 1000 }, (_, i) => el('big', `10.3.${i >> 8}.${i & 255}`)),
        },
        {
          key: 'b',
          elements: Array.from({ length: 1000 }, (_, i) => el('big', `10.4.${i >> 8}.${i & 255}`)),
        },
      ],
    };
    const { plan } = plannedFullTransaction(big, { replace: false });
    assert.deepEqual([...plan], [['ip t big', { size: 8192, elements: 5000 }]]);
    assert.match(
      fullTransaction(big).toString(),
      /^add map ip t big \{ size 8192 ; type ipv4_addr : verdict ; \}$/m,
    );
    assert.match(fullTransaction(big).toString(), /^add map ip t small \{ type ipv4_addr : verdict ; \}$/m);
    assert.equal(sizable(map('ranges', ['interval'])), false);
    assert.equal(sizable(map('learned', ['dynamic', 'timeout'])), false);
  });

  it('leaves every set of a small cluster unsized: its text is what it was', () => {
    const rs = rulesOf([]);
    assert.doesNotMatch(fullTransaction(rs).toString(), /\bsize \d/);
    assert.equal(plannedFullTransaction(rs, { replace: true }).plan.size, 0);
  });

  it('refuses a size nft cannot take, when it is queued', () => {
    for (const size of [0, -1, 1.5, 2 ** 32]) {
      const tx = new Transaction().add({ ...map('m'), size });
      assert.equal(tx.err?.code, ErrorCodes.NFT_INVALID_OBJECT, `size ${size}`);
    }
  });

  it('the fake refuses an element past a set size as the kernel does (NFT_SET_FULL), and counts deletes first', async () => {
    const nft = new FakeNft();
    await nft.run(
      new Transaction()
        .add({ kind: 'table', family: 'ip', table: 't' })
        .add({ ...map('m'), size: 1 })
        .add(el('m', '10.0.0.1')),
    );
    await assert.rejects(nft.run(new Transaction().add(el('m', '10.0.0.2'))), (e: unknown) => {
      assert.equal((e as ProxyError).code, ErrorCodes.NFT_SET_FULL);
      return true;
    });
    await nft.run(new Transaction().delete(el('m', '10.0.0.1')).add(el('m', '10.0.0.2')));
  });
});

describe('set capacity: the ledger of partial syncs', () => {
  it('counts adds and deletes of sized sets only, and forgets a set that is deleted', () => {
    const ledger = new CapacityLedger();
    ledger.reset(new Map([['ip t m', { size: 2, elements: 1 }]]));
    const add = (k: string) => new Transaction().add(el('m', k));
    assert.deepEqual(ledger.check(add('10.0.0.2')).overflows, []);
    ledger.check(add('10.0.0.2')).commit();
    assert.deepEqual(ledger.get('ip t m'), { size: 2, elements: 2 });
    assert.deepEqual(ledger.check(add('10.0.0.3')).overflows, [{ set: 'ip t m', size: 2, elements: 3 }]);
    // A changed value: delete then add of one key.
    assert.deepEqual(
      ledger.check(new Transaction().delete(el('m', '10.0.0.2')).add(el('m', '10.0.0.2'))).overflows,
      [],
    );
    assert.deepEqual(ledger.check(new Transaction().add(el('other', '10.0.0.9'))).overflows, []);
    ledger.check(new Transaction().delete(map('m'))).commit();
    assert.equal(ledger.get('ip t m'), undefined);
  });

  it('with every set full, partial syncs of random clusters never overfill one: the applier goes full when they would', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(clusterArb, { minLength: 2, maxLength: 5 }), async (steps) => {
        const nft = new FakeNft();
        const applier = new NftApplier({ nft, log: silentLogger(), capacity: TIGHT });
        for (const spec of steps) await applier.sync(rulesOf(spec));
        const direct = new FakeNft();
        await direct.run(fullTransaction(rulesOf(steps.at(-1)!)));
        assert.equal(nft.dump(), direct.dump());
      }),
      { numRuns: 60 },
    );
  });

  it('goes full when the kernel says a set is full after all, and blames no Service', async () => {
    const nft = new FakeNft();
    const applier = new NftApplier({ nft, log: silentLogger() });
    const a: ClusterSpec = [];
    await applier.sync(rulesOf(a));
    const b = fc.sample(
      clusterArb.filter((c) => c.length > 0),
      { numRuns: 1, seed: 3 },
    )[0]!;
    nft.failNext(new ProxyError(ErrorCodes.NFT_SET_FULL, 'Too many open files in system'));
    const result = await applier.sync(rulesOf(b));
    assert.equal(result.full, true);
    const direct = new FakeNft();
    await direct.run(fullTransaction(rulesOf(b)));
    assert.equal(nft.dump(), direct.dump());
  });
});
