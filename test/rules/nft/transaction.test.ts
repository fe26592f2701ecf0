import assert from 'node:assert/strict';
import { ErrorCodes, hasCode } from '../../../src/errors.js';
import { Transaction } from '../../../src/rules/nft/transaction.js';
import type { NftObject, Verb } from '../../../src/rules/nft/types.js';

const at = { family: 'ip', table: 'kube-nftproxy' } as const;

describe('nft Transaction', () => {
  it('renders exactly the nft -f input, one line per operation, trailing newline', () => {
    const tx = new Transaction()
      .add({ kind: 'table', ...at })
      .add({ kind: 'chain', ...at, name: 'services' })
      .flush({ kind: 'chain', ...at, name: 'services' })
      .add({ kind: 'rule', ...at, chain: 'services', rule: 'counter' })
      .destroy({ kind: 'chain', ...at, name: 'old' });
    assert.equal(tx.size, 5);
    assert.equal(tx.err, undefined);
    assert.equal(
      tx.toString(),
      [
        'add table ip kube-nftproxy',
        'add chain ip kube-nftproxy services',
        'flush chain ip kube-nftproxy services',
        'add rule ip kube-nftproxy services counter',
        'add chain ip kube-nftproxy old',
        'delete chain ip kube-nftproxy old',
        '',
      ].join('\n'),
    );
    assert.deepEqual(
      tx.operations.map((o) => o.verb),
      ['add', 'add', 'flush', 'add', 'destroy'],
    );
  });

  it('an empty transaction renders nothing', () => {
    assert.equal(new Transaction().toString(), '');
  });

  it('copies queued sets and maps, so that a caller reusing their arrays changes nothing', () => {
    const type = ['ipv4_addr'];
    const flags: Array<'interval' | 'timeout'> = ['interval'];
    const tx = new Transaction().add({ kind: 'set', ...at, name: 's', type, flags });
    type[0] = 'ipv6_addr';
    flags.push('timeout');
    assert.equal(tx.toString(), 'add set ip kube-nftproxy s { type ipv4_addr ; flags interval ; }\n');
  });

  it('queues elements as they are: they hold only strings, and a full sync queues 100,000s', () => {
    const element = { kind: 'element' as const, ...at, set: 's', key: '10.0.0.1 . tcp . 80' };
    const tx = new Transaction().add(element);
    assert.equal(tx.operations[0]!.object, element);
  });

  const invalid: Array<{ why: string; verb: Verb; object: unknown }> = [
    { why: 'bad family', verb: 'add', object: { kind: 'table', family: 'arp', table: 't' } },
    { why: 'table name with space', verb: 'add', object: { kind: 'table', family: 'ip', table: 'a b' } },
    {
      why: 'table name with a leading digit',
      verb: 'add',
      object: { kind: 'table', family: 'ip', table: '1t' },
    },
    { why: 'chain name with a quote', verb: 'add', object: { kind: 'chain', ...at, name: 'x"y' } },
    { why: 'chain name that is a keyword', verb: 'add', object: { kind: 'chain', ...at, name: 'counter' } },
    { why: 'chain name with ;', verb: 'add', object: { kind: 'chain', ...at, name: 'a;flush ruleset' } },
    { why: 'chain name too long', verb: 'add', object: { kind: 'chain', ...at, name: 'a'.repeat(256) } },
    {
      why: 'base chain without priority',
      verb: 'add',
      object: { kind: 'chain', ...at, name: 'c', type: 'nat', hook: 'output' },
    },
    {
      why: 'base chain with bad hook',
      verb: 'add',
      object: { kind: 'chain', ...at, name: 'c', type: 'nat', hook: 'egress', priority: 0 },
    },
    {
      why: 'bad priority',
      verb: 'add',
      object: { kind: 'chain', ...at, name: 'c', type: 'nat', hook: 'output', priority: 'first' },
    },
    { why: 'comment with a quote', verb: 'add', object: { kind: 'chain', ...at, name: 'c', comment: 'a"b' } },
    {
      why: 'comment with a newline',
      verb: 'add',
      object: { kind: 'table', ...at, comment: 'a\nflush ruleset' },
    },
    { why: 'comment too long', verb: 'add', object: { kind: 'table', ...at, comment: 'x'.repeat(129) } },
    {
      why: 'rule with a newline',
      verb: 'add',
      object: { kind: 'rule', ...at, chain: 'c', rule: 'accept\nflush ruleset' },
    },
    {
      why: 'rule with ;',
      verb: 'add',
      object: { kind: 'rule', ...at, chain: 'c', rule: 'accept; flush ruleset' },
    },
    { why: 'empty rule', verb: 'add', object: { kind: 'rule', ...at, chain: 'c', rule: '  ' } },
    { why: 'delete rule', verb: 'delete', object: { kind: 'rule', ...at, chain: 'c', rule: 'accept' } },
    { why: 'create rule', verb: 'create', object: { kind: 'rule', ...at, chain: 'c', rule: 'accept' } },
    { why: 'flush table', verb: 'flush', object: { kind: 'table', ...at } },
    { why: 'flush element', verb: 'flush', object: { kind: 'element', ...at, set: 's', key: '1.1.1.1' } },
    {
      why: 'destroy element',
      verb: 'destroy',
      object: { kind: 'element', ...at, set: 's', key: '1.1.1.1' },
    },
    { why: 'element without key', verb: 'add', object: { kind: 'element', ...at, set: 's', key: '' } },
    {
      why: 'element key with a comma',
      verb: 'add',
      object: { kind: 'element', ...at, set: 's', key: '1.1.1.1, 2.2.2.2' },
    },
    {
      why: 'element key with a brace',
      verb: 'add',
      object: { kind: 'element', ...at, set: 's', key: '1.1.1.1 }' },
    },
    {
      why: 'element key with a blank field',
      verb: 'add',
      object: { kind: 'element', ...at, set: 's', key: '10.0.0.1 .  . 80' },
    },
    {
      why: 'element key ending in a separator',
      verb: 'add',
      object: { kind: 'element', ...at, set: 's', key: '10.0.0.1 . tcp . ' },
    },
    {
      why: 'element key starting with a separator',
      verb: 'add',
      object: { kind: 'element', ...at, set: 's', key: ' . tcp . 80' },
    },
    {
      why: 'element key with a newline',
      verb: 'add',
      object: { kind: 'element', ...at, set: 's', key: '10.0.0.1 }\nflush ruleset' },
    },
    {
      why: 'element key with ; or #',
      verb: 'add',
      object: { kind: 'element', ...at, set: 's', key: '10.0.0.1; flush ruleset #' },
    },
    {
      why: 'element key with a quote',
      verb: 'add',
      object: { kind: 'element', ...at, set: 's', key: '10.0.0.1 . "x"' },
    },
    {
      why: 'element key that is not a string (the old array form)',
      verb: 'add',
      object: { kind: 'element', ...at, set: 's', key: ['10.0.0.1'] },
    },
    {
      why: 'element value with a blank field',
      verb: 'add',
      object: { kind: 'element', ...at, set: 'm', key: 'a', value: '10.0.0.1 . ' },
    },
    {
      why: 'element value empty field',
      verb: 'add',
      object: { kind: 'element', ...at, set: 'm', key: 'a', value: '' },
    },
    { why: 'set without a type', verb: 'add', object: { kind: 'set', ...at, name: 's' } },
    {
      why: 'set with type and typeof',
      verb: 'add',
      object: { kind: 'set', ...at, name: 's', type: ['ipv4_addr'], typeof: 'ip daddr' },
    },
    {
      why: 'set with a value type',
      verb: 'add',
      object: { kind: 'set', ...at, name: 's', type: ['ipv4_addr'], valueType: ['verdict'] },
    },
    {
      why: 'map without a value type',
      verb: 'add',
      object: { kind: 'map', ...at, name: 'm', type: ['ipv4_addr'] },
    },
    {
      why: 'map with a bad type name',
      verb: 'add',
      object: { kind: 'map', ...at, name: 'm', type: ['ipv4 addr'], valueType: ['verdict'] },
    },
    {
      why: 'set with a bad flag',
      verb: 'add',
      object: { kind: 'set', ...at, name: 's', type: ['ipv4_addr'], flags: ['bogus'] },
    },
    {
      why: 'set with a bad timeout',
      verb: 'add',
      object: { kind: 'set', ...at, name: 's', type: ['ipv4_addr'], timeout: 'soon' },
    },
    {
      why: 'element with a bad timeout',
      verb: 'add',
      object: { kind: 'element', ...at, set: 's', key: '10.0.0.1', timeout: 'soon' },
    },
    {
      why: 'element with a zero expiry (nft reads it as none: a full timeout)',
      verb: 'add',
      object: { kind: 'element', ...at, set: 's', key: '10.0.0.1', expires: '0s' },
    },
    {
      why: 'element expiring after its timeout',
      verb: 'add',
      object: { kind: 'element', ...at, set: 's', key: '10.0.0.1', timeout: '1m', expires: '61s' },
    },
    { why: 'destroy set without a type', verb: 'destroy', object: { kind: 'set', ...at, name: 's' } },
    { why: 'unknown kind', verb: 'add', object: { kind: 'flowtable', ...at, name: 'f' } },
  ];
  for (const c of invalid) {
    it(`keeps NFT_INVALID_OBJECT without throwing: ${c.why}`, () => {
      const tx = new Transaction();
      assert.doesNotThrow(() => tx[c.verb](c.object as NftObject));
      assert.ok(
        hasCode(tx.err, ErrorCodes.NFT_INVALID_OBJECT),
        `expected NFT_INVALID_OBJECT, got ${String(tx.err)}`,
      );
      assert.equal(tx.size, 0);
    });
  }

  it('keeps the first error and drops every later operation', () => {
    const tx = new Transaction()
      .add({ kind: 'table', ...at })
      .add({ kind: 'chain', ...at, name: 'bad name' })
      .add({ kind: 'chain', ...at, name: 'counter' })
      .add({ kind: 'chain', ...at, name: 'fine' });
    assert.ok(tx.err);
    assert.match(tx.err.message, /bad name/);
    assert.equal(tx.size, 1);
  });

  it('accepts what delete and flush need without a full definition', () => {
    const tx = new Transaction()
      .delete({ kind: 'set', ...at, name: 's' })
      .flush({ kind: 'map', ...at, name: 'm' })
      .delete({ kind: 'element', ...at, set: 'm', key: 'fd00::1 . tcp . 53' })
      .delete({ kind: 'table', ...at });
    assert.equal(tx.err, undefined);
    assert.equal(tx.size, 4);
  });

  it('accepts IPv6 keys and quoted interface names in rules', () => {
    const tx = new Transaction()
      .add({
        kind: 'element',
        family: 'ip6',
        table: 't',
        set: 'm',
        key: 'fd00::10 . tcp . 53',
        value: 'goto x',
      })
      .add({ kind: 'rule', ...at, chain: 'c', rule: 'iifname "eth0" accept' });
    assert.equal(tx.err, undefined);
  });
});
