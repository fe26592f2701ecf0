import assert from 'node:assert/strict';
import { ErrorCodes, ProxyError } from '../../src/errors.js';
import { silentLogger } from '../../src/log.js';
import { buildState } from '../../src/model/build-state.js';
import type { ProxyState } from '../../src/model/types.js';
import { NftApplier } from '../../src/rules/applier.js';
import { Compiler, type CompileConfig } from '../../src/rules/compile.js';
import { containRefusal } from '../../src/rules/contain.js';
import { HeldOut } from '../../src/rules/held-out.js';
import { FakeNft } from '../../src/rules/nft/fake.js';
import type { Transaction } from '../../src/rules/nft/transaction.js';
import { service, slice } from '../support/objects.js';

const CONFIG: CompileConfig = {
  table: 'kube-nftproxy',
  clusterCIDRs: ['10.244.0.0/16'],
  masqueradeAll: false,
  serviceCIDRs: ['10.96.0.0/16'],
  nodePortIPs: { ipv4: ['192.168.0.10'], ipv6: [] },
};

/**
 * The Fake answering as real nft does when the kernel refuses an element: `Error:` with the
 * location, the source line, and carets under the element's key. `named` puts another key
 * under the carets (nft pointing at the wrong element), to exercise the fallback.
 */
class CaretNft extends FakeNft {
  refusedKeys = new Set<string>();
  named: string | undefined;
  checks = 0;

  #guard(tx: Transaction): void {
    for (const op of tx.operations) {
      const o = op.object;
      if (op.verb !== 'add' || o.kind !== 'element' || !this.refusedKeys.has(o.key)) continue;
      const shown = this.named ?? o.key;
      const line = `add element ip kube-nftproxy ${o.set} { ${shown} }`;
      const at = line.indexOf(shown);
      throw new ProxyError(
        ErrorCodes.NFT_EXISTS,
        [
          `nft -f - failed: /dev/stdin:9:${at + 1}-${at + shown.length}: Error: Could not process rule: File exists`,
          line,
          `${' '.repeat(at)}${'^'.repeat(shown.length)}`,
        ].join('\n'),
      );
    }
  }

  override async run(tx: Transaction): Promise<void> {
    this.#guard(tx);
    await super.run(tx);
  }

  override async check(tx: Transaction): Promise<void> {
    this.checks++;
    this.#guard(tx);
    await super.check(tx);
  }
}

const vip = (i: number): string => `10.96.0.${i + 1}`;

function cluster(names: string[], endpoint = '10.244.1.1'): ProxyState {
  return buildState(
    {
      services: names.map((n, i) =>
        service('ns', n, { clusterIP: vip(i), ports: [{ name: 'http', port: 80 }] }),
      ),
      slices: names.map((n) => slice('ns', `${n}-a`, n, [{ name: 'http', port: 8080 }], [{ ip: endpoint }])),
    },
    { nodeName: 'node-a', nodeIPs: ['192.168.0.10'], lbAlgorithm: 'random' },
  );
}

/** One full sync of `state` through containRefusal, as the daemon runs it after a refusal. */
async function refusedFullSync(nft: CaretNft, state: ProxyState) {
  const compiler = new Compiler(CONFIG);
  const applier = new NftApplier({ nft, log: silentLogger() });
  const heldOut = new HeldOut();
  const rules = compiler.compile(state).ruleset;
  const err = await applier.sync(rules).then(
    () => assert.fail('nft took what it should refuse'),
    (e: unknown) => e,
  );
  const contained = await containRefusal(
    { nft, applier, compiler, heldOut, log: silentLogger() },
    { state, view: state, rules, err },
  );
  return { contained, heldOut, applier, compiler };
}

describe('containRefusal: a refused sync costs only the Services nft refuses', () => {
  const names = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'];

  it("holds out the Service nft's error points at and applies the rest, without a single check", async () => {
    const nft = new CaretNft();
    nft.refusedKeys.add(`${vip(5)} . 80 . 0`);
    const { contained, heldOut } = await refusedFullSync(nft, cluster(names));
    assert.deepEqual([...contained.heldOut.keys()], ['ns/f']);
    assert.match(
      contained.heldOut.get('ns/f')!,
      /^Could not process rule: File exists: 10\.96\.0\.6 \. 80 \. 0/,
    );
    assert.equal(contained.checks, 0);
    assert.equal(nft.checks, 0);
    assert.equal(contained.result.full, true);
    assert.ok(heldOut.has('ns/f'));
    assert.deepEqual(
      contained.view.skipped.map((s) => s.name),
      ['ns/f'],
    );
    const dump = nft.dump();
    for (const i of [0, 1, 2, 3, 4, 6, 7]) assert.match(dump, new RegExp(`cluster-ips \\{ ${vip(i)} \\}`));
    assert.doesNotMatch(dump, /10\.96\.0\.6 /);
  });

  it('searches with checks when holding out what nft pointed at is refused too, and holds out only the culprit', async () => {
    const nft = new CaretNft();
    nft.refusedKeys.add(`${vip(5)} . 80 . 0`);
    nft.named = `${vip(2)} . 80 . 0`;
    const { contained, heldOut } = await refusedFullSync(nft, cluster(names));
    assert.deepEqual([...contained.heldOut.keys()], ['ns/f']);
    assert.ok(contained.checks > 0);
    assert.equal(heldOut.has('ns/c'), false, 'the Service nft wrongly named is not held out');
    assert.match(nft.dump(), /cluster-ips \{ 10\.96\.0\.3 \}/);
  });

  it('after a refused partial sync, suspects only the Services it changed', async () => {
    const nft = new CaretNft();
    const compiler = new Compiler(CONFIG);
    const applier = new NftApplier({ nft, log: silentLogger() });
    const heldOut = new HeldOut();
    const before = cluster(['a', 'b']);
    await applier.sync(compiler.compile(before).ruleset);
    // c arrives refused, and a's endpoint moves, in one partial sync; nft names nothing.
    nft.refusedKeys.add(`${vip(2)} . 80 . 0`);
    nft.named = 'something else';
    const after = cluster(['a', 'b', 'c'], '10.244.1.2');
    const applied = applier.applied!;
    const rules = compiler.compile(after).ruleset;
    const err = await applier.sync(rules).then(
      () => assert.fail('nft took what it should refuse'),
      (e: unknown) => e,
    );
    const contained = await containRefusal(
      { nft, applier, compiler, heldOut, log: silentLogger() },
      {
        state: after,
        view: after,
        rules,
        err,
        partial: {
          before: applied,
          delta: { base: before, ports: new Set(['ns/a:http/TCP/ipv4', 'ns/c:http/TCP/ipv4']) },
        },
      },
    );
    assert.deepEqual([...contained.heldOut.keys()], ['ns/c']);
    // the base (b unchanged), then a and c each alone, then the rest: a handful of small checks.
    assert.ok(contained.checks <= 4, `${contained.checks} checks`);
    assert.match(nft.dump(), /10\.96\.0\.1 \. 80 \. 0 : 10\.244\.1\.2 \. 8080/);
  });

  it('throws the refusal and holds nothing out when even the rules without any Service are refused', async () => {
    const nft = new CaretNft();
    nft.refuse(() => 'Could not process rule: No buffer space available');
    const state = cluster(names);
    const compiler = new Compiler(CONFIG);
    const applier = new NftApplier({ nft, log: silentLogger() });
    const heldOut = new HeldOut();
    const rules = compiler.compile(state).ruleset;
    const err = await applier.sync(rules).then(
      () => assert.fail('nft took what it should refuse'),
      (e: unknown) => e,
    );
    await assert.rejects(
      containRefusal(
        { nft, applier, compiler, heldOut, log: silentLogger() },
        { state, view: state, rules, err },
      ),
      (e) => e === err,
    );
    assert.equal(heldOut.size, 0);
  });
});
