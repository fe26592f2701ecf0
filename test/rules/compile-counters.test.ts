import assert from 'node:assert/strict';
import { compile } from '../../src/rules/compile.js';
import { fullTransaction, renderRuleset } from '../../src/rules/diff.js';
import { COUNTED } from '../../src/rules/layout.js';
import { FakeNft } from '../../src/rules/nft/fake.js';
import { CONFIG, representativeState } from './compile.test.js';

const COUNTED_NAMES: readonly string[] = Object.values(COUNTED);

describe('compile: --service-counters', () => {
  const off = compile(representativeState(), CONFIG);
  const on = compile(representativeState(), { ...CONFIG, serviceCounters: true });

  it('puts a counter on every element of the decision maps, in both families, and nowhere else', () => {
    const counted = on.sets.filter((s) => s.counter === true).map((s) => `${s.family} ${s.name}`);
    assert.deepEqual(
      counted.sort(),
      ['ip', 'ip6'].flatMap((f) => COUNTED_NAMES.map((n) => `${f} ${n}`)).sort(),
    );
    assert.deepEqual(
      off.sets.filter((s) => s.counter !== undefined),
      [],
    );
    const text = renderRuleset(on);
    assert.match(
      text,
      /add map ip kube-nftproxy service-ips \{ type ipv4_addr \. inet_proto \. inet_service : verdict ; counter ; comment/,
    );
    assert.match(
      text,
      /add set ip kube-nftproxy firewall-ips \{ type ipv4_addr \. inet_proto \. inet_service ; counter ; comment/,
    );
    assert.doesNotMatch(renderRuleset(off), /counter/);
  });

  it('looks the guarded frontend up after the allowed sources, so that its counter counts drops only', () => {
    const rules = (rs: typeof on): string[] =>
      rs.chains
        .find((c) => c.chain.family === 'ip' && c.chain.name === 'firewall-check')!
        .rules.map((r) => r.rule);
    assert.deepEqual(rules(on), [
      'ip daddr . meta l4proto . th dport . ip saddr != @firewall-allow ip daddr . meta l4proto . th dport @firewall-ips drop',
    ]);
    assert.deepEqual(rules(off), [
      'ip daddr . meta l4proto . th dport @firewall-ips ip daddr . meta l4proto . th dport . ip saddr != @firewall-allow drop',
    ]);
  });

  it('changes no element and no other chain: the same elements either way', () => {
    assert.deepEqual(on.fragments, off.fragments);
    const others = (rs: typeof on) => rs.chains.filter((c) => c.chain.name !== 'firewall-check');
    assert.deepEqual(others(on), others(off));
  });

  it('loads into the fake nft, whose dump keeps the counter flag', async () => {
    const nft = new FakeNft();
    await nft.run(fullTransaction(on));
    assert.match(
      nft.dump(),
      /service-ips \{ type ipv4_addr \. inet_proto \. inet_service : verdict ; counter ;/,
    );
  });
});
