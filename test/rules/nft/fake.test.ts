import assert from 'node:assert/strict';
import { ErrorCodes, hasCode, type ErrorCode } from '../../../src/errors.js';
import { FakeNft, references } from '../../../src/rules/nft/fake.js';
import { Transaction } from '../../../src/rules/nft/transaction.js';
import type { Element } from '../../../src/rules/nft/types.js';

const at = { family: 'ip', table: 'kube-nftproxy' } as const;

/** The layout the compiler builds: a base chain dispatching through a verdict map to an lb chain. */
function base(): Transaction {
  return new Transaction()
    .add({ kind: 'table', ...at, comment: 'rules for kube-nftproxy' })
    .add({
      kind: 'chain',
      ...at,
      name: 'nat-prerouting',
      type: 'nat',
      hook: 'prerouting',
      priority: 'dstnat',
    })
    .add({ kind: 'chain', ...at, name: 'services' })
    .add({ kind: 'chain', ...at, name: 'cip-2' })
    .add({
      kind: 'map',
      ...at,
      name: 'service-ips',
      type: ['ipv4_addr', 'inet_proto', 'inet_service'],
      valueType: ['verdict'],
    })
    .add({
      kind: 'map',
      ...at,
      name: 'backends',
      typeof: 'ip daddr . meta l4proto . th dport . numgen random mod 2',
      valueTypeof: 'ip daddr . th dport',
    })
    .add({ kind: 'set', ...at, name: 'cluster-ips', type: ['ipv4_addr'], flags: ['interval'] })
    .add({ kind: 'rule', ...at, chain: 'nat-prerouting', rule: 'jump services' })
    .add({
      kind: 'rule',
      ...at,
      chain: 'services',
      rule: 'ip daddr . meta l4proto . th dport vmap @service-ips',
    })
    .add({
      kind: 'rule',
      ...at,
      chain: 'cip-2',
      rule: 'dnat ip to ip daddr . meta l4proto . th dport . numgen random mod 2 map @backends',
    })
    .add({
      kind: 'element',
      ...at,
      set: 'service-ips',
      key: '10.96.0.10 . tcp . 53',
      value: 'goto cip-2',
    })
    .add({
      kind: 'element',
      ...at,
      set: 'backends',
      key: '10.96.0.10 . tcp . 53 . 1',
      value: '10.0.0.2 . 53',
    })
    .add({
      kind: 'element',
      ...at,
      set: 'backends',
      key: '10.96.0.10 . tcp . 53 . 0',
      value: '10.0.0.1 . 53',
    })
    .add({ kind: 'element', ...at, set: 'cluster-ips', key: '10.96.0.10' });
}

const BASE_DUMP = `add table ip kube-nftproxy { comment "rules for kube-nftproxy" ; }
add chain ip kube-nftproxy cip-2
add chain ip kube-nftproxy nat-prerouting { type nat hook prerouting priority dstnat ; }
add chain ip kube-nftproxy services
add map ip kube-nftproxy backends { typeof ip daddr . meta l4proto . th dport . numgen random mod 2 : ip daddr . th dport ; }
add set ip kube-nftproxy cluster-ips { type ipv4_addr ; flags interval ; }
add map ip kube-nftproxy service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; }
add rule ip kube-nftproxy cip-2 dnat ip to ip daddr . meta l4proto . th dport . numgen random mod 2 map @backends
add rule ip kube-nftproxy nat-prerouting jump services
add rule ip kube-nftproxy services ip daddr . meta l4proto . th dport vmap @service-ips
add element ip kube-nftproxy backends { 10.96.0.10 . tcp . 53 . 0 : 10.0.0.1 . 53 }
add element ip kube-nftproxy backends { 10.96.0.10 . tcp . 53 . 1 : 10.0.0.2 . 53 }
add element ip kube-nftproxy cluster-ips { 10.96.0.10 }
add element ip kube-nftproxy service-ips { 10.96.0.10 . tcp . 53 : goto cip-2 }
`;

async function loaded(): Promise<FakeNft> {
  const nft = new FakeNft();
  await nft.run(base());
  return nft;
}

async function rejects(p: Promise<unknown>, code: ErrorCode): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(hasCode(err, code), `expected ${code}, got ${String(err)}`);
    return true;
  });
}

describe('FakeNft', () => {
  it('dumps a sorted canonical script: definitions, then rules in order, then elements by key', async () => {
    const nft = await loaded();
    assert.equal(nft.dump(), BASE_DUMP);
    assert.equal(await nft.list('ip', 'kube-nftproxy'), BASE_DUMP);
    assert.equal(await nft.list('ip6', 'kube-nftproxy'), '');
  });

  it('dumps the same bytes whatever order the objects were added in', async () => {
    const nft = new FakeNft();
    const ops = [...base().operations];
    // Definitions must precede what references them, so shuffle only within each group.
    const defs = ops.filter((o) => ['table', 'chain', 'set', 'map'].includes(o.object.kind)).reverse();
    const rules = ops.filter((o) => o.object.kind === 'rule');
    const elements = ops.filter((o) => o.object.kind === 'element').reverse();
    const table = defs.filter((o) => o.object.kind === 'table');
    const tx = new Transaction();
    for (const o of [...table, ...defs.filter((d) => d.object.kind !== 'table'), ...rules, ...elements]) {
      tx.add(o.object);
    }
    await nft.run(tx);
    assert.equal(nft.dump(), BASE_DUMP);
  });

  it('sorts tables by family and name', async () => {
    const nft = new FakeNft();
    await nft.run(
      new Transaction()
        .add({ kind: 'table', family: 'ip6', table: 'b' })
        .add({ kind: 'table', family: 'ip', table: 'b' })
        .add({ kind: 'table', family: 'ip', table: 'a' }),
    );
    assert.equal(nft.dump(), 'add table ip a\nadd table ip b\nadd table ip6 b\n');
  });

  it('add is idempotent for tables, chains, sets, maps and identical elements', async () => {
    const nft = await loaded();
    const again = new Transaction();
    // Rules are the exception: add rule appends another copy, in nft as here.
    for (const op of base().operations) if (op.object.kind !== 'rule') again.add(op.object);
    await nft.run(again);
    assert.equal(nft.dump(), BASE_DUMP);
  });

  it('add rule appends, as nft does', async () => {
    const nft = await loaded();
    await nft.run(
      new Transaction().add({ kind: 'rule', ...at, chain: 'nat-prerouting', rule: 'jump services' }),
    );
    assert.equal(nft.dump().split('add rule ip kube-nftproxy nat-prerouting jump services\n').length, 3);
  });

  it('flush chain + add rule replaces a chain body', async () => {
    const nft = await loaded();
    await nft.run(
      new Transaction()
        .flush({ kind: 'chain', ...at, name: 'services' })
        .add({ kind: 'rule', ...at, chain: 'services', rule: 'ip daddr @cluster-ips drop' }),
    );
    assert.match(nft.dump(), /add rule ip kube-nftproxy services ip daddr @cluster-ips drop\n/);
    assert.doesNotMatch(nft.dump(), /vmap @service-ips/);
  });

  it('deletes elements by key and flushes sets and maps', async () => {
    const nft = await loaded();
    await nft.run(
      new Transaction()
        .delete({ kind: 'element', ...at, set: 'backends', key: '10.96.0.10 . tcp . 53 . 1' })
        .flush({ kind: 'set', ...at, name: 'cluster-ips' }),
    );
    const dump = nft.dump();
    assert.doesNotMatch(dump, /10\.0\.0\.2/);
    assert.match(dump, /10\.0\.0\.1/);
    assert.doesNotMatch(dump, /add element ip kube-nftproxy cluster-ips/);
  });

  it('destroy removes what exists and ignores what does not', async () => {
    const nft = await loaded();
    await nft.run(
      new Transaction()
        .destroy({ kind: 'chain', ...at, name: 'never-was' })
        .destroy({ kind: 'set', ...at, name: 'never-was-set', type: ['ipv4_addr'] })
        .destroy({ kind: 'set', ...at, name: 'cluster-ips', type: ['ipv4_addr'], flags: ['interval'] })
        .destroy({ kind: 'table', family: 'ip6', table: 'kube-nftproxy' }),
    );
    assert.doesNotMatch(nft.dump(), /cluster-ips/);
    await nft.run(new Transaction().destroy({ kind: 'table', ...at }));
    assert.equal(nft.dump(), '');
  });

  const failures: Array<{ why: string; code: ErrorCode; tx: () => Transaction }> = [
    {
      why: 'create of an existing table',
      code: 'NFT_EXISTS',
      tx: () => new Transaction().create({ kind: 'table', ...at }),
    },
    {
      why: 'create of an existing chain',
      code: 'NFT_EXISTS',
      tx: () => new Transaction().create({ kind: 'chain', ...at, name: 'services' }),
    },
    {
      why: 'create of an existing map',
      code: 'NFT_EXISTS',
      tx: () =>
        new Transaction().create({
          kind: 'map',
          ...at,
          name: 'backends',
          type: ['ipv4_addr'],
          valueType: ['verdict'],
        }),
    },
    {
      why: 'add of a set that exists with another type',
      code: 'NFT_EXISTS',
      tx: () => new Transaction().add({ kind: 'set', ...at, name: 'cluster-ips', type: ['inet_service'] }),
    },
    {
      why: 'add of a base chain over a regular one',
      code: 'NFT_EXISTS',
      tx: () =>
        new Transaction().add({
          kind: 'chain',
          ...at,
          name: 'services',
          type: 'nat',
          hook: 'output',
          priority: 0,
        }),
    },
    {
      why: 'add of an existing element with another value (kernel: File exists)',
      code: 'NFT_EXISTS',
      tx: () =>
        new Transaction().add({
          kind: 'element',
          ...at,
          set: 'backends',
          key: '10.96.0.10 . tcp . 53 . 0',
          value: '10.0.0.9 . 53',
        }),
    },
    {
      why: 'create of an existing element',
      code: 'NFT_EXISTS',
      tx: () => new Transaction().create({ kind: 'element', ...at, set: 'cluster-ips', key: '10.96.0.10' }),
    },
    {
      why: 'delete of a missing chain',
      code: 'NFT_NO_SUCH_OBJECT',
      tx: () => new Transaction().delete({ kind: 'chain', ...at, name: 'nope' }),
    },
    {
      why: 'delete of a missing table',
      code: 'NFT_NO_SUCH_OBJECT',
      tx: () => new Transaction().delete({ kind: 'table', family: 'ip6', table: 'x' }),
    },
    {
      why: 'flush of a missing set',
      code: 'NFT_NO_SUCH_OBJECT',
      tx: () => new Transaction().flush({ kind: 'set', ...at, name: 'nope' }),
    },
    {
      why: 'flush set of a map',
      code: 'NFT_NO_SUCH_OBJECT',
      tx: () => new Transaction().flush({ kind: 'set', ...at, name: 'backends' }),
    },
    {
      why: 'delete of a missing element',
      code: 'NFT_NO_SUCH_OBJECT',
      tx: () => new Transaction().delete({ kind: 'element', ...at, set: 'cluster-ips', key: '10.0.0.99' }),
    },
    {
      why: 'element into a missing set',
      code: 'NFT_NO_SUCH_OBJECT',
      tx: () => new Transaction().add({ kind: 'element', ...at, set: 'nope', key: '10.0.0.1' }),
    },
    {
      why: 'rule into a missing chain',
      code: 'NFT_NO_SUCH_OBJECT',
      tx: () => new Transaction().add({ kind: 'rule', ...at, chain: 'nope', rule: 'accept' }),
    },
    {
      why: 'chain into a missing table',
      code: 'NFT_NO_SUCH_OBJECT',
      tx: () =>
        new Transaction().add({ kind: 'chain', family: 'ip6', table: 'kube-nftproxy', name: 'services' }),
    },
    {
      why: 'delete of a chain that has rules',
      code: 'NFT_REJECTED',
      tx: () => new Transaction().delete({ kind: 'chain', ...at, name: 'services' }),
    },
    {
      why: 'delete of a chain a rule jumps to',
      code: 'NFT_REJECTED',
      tx: () =>
        new Transaction()
          .flush({ kind: 'chain', ...at, name: 'services' })
          .delete({ kind: 'chain', ...at, name: 'services' }),
    },
    {
      why: 'delete of a chain a map element goes to',
      code: 'NFT_REJECTED',
      tx: () =>
        new Transaction()
          .flush({ kind: 'chain', ...at, name: 'cip-2' })
          .delete({ kind: 'chain', ...at, name: 'cip-2' }),
    },
    {
      why: 'delete of a map a rule uses',
      code: 'NFT_REJECTED',
      tx: () => new Transaction().delete({ kind: 'map', ...at, name: 'backends' }),
    },
    {
      why: 'element with the wrong number of key fields',
      code: 'NFT_REJECTED',
      tx: () =>
        new Transaction().add({
          kind: 'element',
          ...at,
          set: 'backends',
          key: '10.96.0.10 . tcp . 53',
          value: '10.0.0.1 . 53',
        }),
    },
    {
      why: 'map element without a value',
      code: 'NFT_REJECTED',
      tx: () =>
        new Transaction().add({
          kind: 'element',
          ...at,
          set: 'service-ips',
          key: '10.96.0.11 . tcp . 53',
        }),
    },
    {
      why: 'set element with a value',
      code: 'NFT_REJECTED',
      tx: () =>
        new Transaction().add({
          kind: 'element',
          ...at,
          set: 'cluster-ips',
          key: '10.96.0.11',
          value: 'accept',
        }),
    },
    {
      why: 'element with a timeout in a set without flags timeout (kernel: Invalid argument)',
      code: 'NFT_REJECTED',
      tx: () =>
        new Transaction().add({
          kind: 'element',
          ...at,
          set: 'cluster-ips',
          key: '10.96.0.11',
          timeout: '10s',
        }),
    },
    {
      why: 'element expiring after the set’s timeout (kernel: Numerical result out of range)',
      code: 'NFT_REJECTED',
      tx: () =>
        new Transaction()
          .add({
            kind: 'set',
            ...at,
            name: 'clients',
            type: ['ipv4_addr'],
            flags: ['timeout'],
            timeout: '1h',
          })
          .add({ kind: 'element', ...at, set: 'clients', key: '10.1.2.3', expires: '2h' }),
    },
    {
      why: 'rule with goto to a missing chain',
      code: 'NFT_DANGLING_REFERENCE',
      tx: () => new Transaction().add({ kind: 'rule', ...at, chain: 'services', rule: 'goto nope' }),
    },
    {
      why: 'rule with jump inside an anonymous vmap to a missing chain',
      code: 'NFT_DANGLING_REFERENCE',
      tx: () =>
        new Transaction().add({
          kind: 'rule',
          ...at,
          chain: 'services',
          rule: 'numgen random mod 2 vmap { 0 : goto cip-2, 1 : jump nope }',
        }),
    },
    {
      why: 'rule with a missing @set',
      code: 'NFT_DANGLING_REFERENCE',
      tx: () =>
        new Transaction().add({ kind: 'rule', ...at, chain: 'services', rule: 'ip daddr @nope drop' }),
    },
    {
      why: 'map element going to a missing chain',
      code: 'NFT_DANGLING_REFERENCE',
      tx: () =>
        new Transaction().add({
          kind: 'element',
          ...at,
          set: 'service-ips',
          key: '10.96.0.11 . tcp . 53',
          value: 'goto cip-7',
        }),
    },
    {
      why: 'rule referencing a chain added later in the same transaction (nft resolves in order)',
      code: 'NFT_DANGLING_REFERENCE',
      tx: () =>
        new Transaction()
          .add({ kind: 'rule', ...at, chain: 'services', rule: 'goto later' })
          .add({ kind: 'chain', ...at, name: 'later' }),
    },
  ];
  for (const f of failures) {
    it(`rejects with ${f.code} and changes nothing: ${f.why}`, async () => {
      const nft = await loaded();
      // A valid prefix proves that the whole transaction is discarded, not only the failing op.
      const tx = new Transaction()
        .add({ kind: 'chain', ...at, name: 'prefix' })
        .add({ kind: 'element', ...at, set: 'cluster-ips', key: '10.96.0.99' });
      for (const op of f.tx().operations) tx[op.verb](op.object);
      assert.equal(tx.err, undefined);
      await rejects(nft.run(tx), f.code);
      assert.equal(nft.dump(), BASE_DUMP);
      await rejects(nft.check(tx), f.code);
    });
  }

  it('lists a map as nft -j does, with each element’s timeout and what it has left', async () => {
    const nft = await loaded();
    assert.equal(await nft.listMapJson('ip', 'kube-nftproxy', 'nope'), '', 'a missing map lists as nothing');
    assert.equal(await nft.listMapJson('ip', 'nope', 'backends'), '', 'so does a missing table');
    await nft.run(
      new Transaction()
        .add({
          kind: 'map',
          ...at,
          name: 'affinity-tcp',
          typeof: 'ip daddr . th dport . ip saddr',
          valueTypeof: 'ip daddr . tcp dport',
          flags: ['dynamic', 'timeout'],
          timeout: '3h',
        })
        .add({
          kind: 'element',
          ...at,
          set: 'affinity-tcp',
          key: '10.96.0.1 . 80 . 10.1.2.3',
          value: '10.0.0.1 . 8080',
          timeout: '600s',
          expires: '1500ms',
        })
        .add({
          kind: 'element',
          ...at,
          set: 'affinity-tcp',
          key: '10.96.0.1 . 80 . 10.1.2.4',
          value: '10.0.0.2 . 8080',
        }),
    );
    const doc = JSON.parse(await nft.listMapJson('ip', 'kube-nftproxy', 'affinity-tcp')) as {
      nftables: Array<{ map?: { timeout: number; elem: unknown[] } }>;
    };
    const map = doc.nftables.find((o) => o.map)!.map!;
    assert.equal(map.timeout, 10800);
    // Shapes copied from nft 1.0.6's output: whole seconds, rounded down; the set's timeout unprinted.
    assert.deepEqual(map.elem, [
      [
        { elem: { val: { concat: ['10.96.0.1', 80, '10.1.2.3'] }, timeout: 600, expires: 1 } },
        { concat: ['10.0.0.1', 8080] },
      ],
      [
        { elem: { val: { concat: ['10.96.0.1', 80, '10.1.2.4'] }, expires: 10800 } },
        { concat: ['10.0.0.2', 8080] },
      ],
    ]);
    assert.match(
      nft.dump(),
      /affinity-tcp \{ 10\.96\.0\.1 \. 80 \. 10\.1\.2\.3 timeout 600s expires 1500ms : 10\.0\.0\.1 \. 8080 \}/,
    );
  });

  it('names the failing line in the message', async () => {
    const nft = await loaded();
    const tx = new Transaction()
      .add({ kind: 'chain', ...at, name: 'ok' })
      .delete({ kind: 'chain', ...at, name: 'nope' });
    await assert.rejects(
      nft.run(tx),
      /line 2: delete chain ip kube-nftproxy nope: chain nope does not exist/,
    );
  });

  it('check validates without committing', async () => {
    const nft = await loaded();
    await nft.check(new Transaction().add({ kind: 'chain', ...at, name: 'new' }));
    assert.equal(nft.dump(), BASE_DUMP);
  });

  it('rejects a transaction with a validation error without applying or recording it', async () => {
    const nft = await loaded();
    const tx = new Transaction().add({ kind: 'chain', ...at, name: 'bad name' });
    await rejects(nft.run(tx), ErrorCodes.NFT_INVALID_OBJECT);
    assert.equal(nft.transactions.length, 1);
  });

  it('records every transaction sent to run, including failed ones', async () => {
    const nft = await loaded();
    const bad = new Transaction().delete({ kind: 'chain', ...at, name: 'nope' });
    await rejects(nft.run(bad), ErrorCodes.NFT_NO_SUCH_OBJECT);
    assert.equal(nft.transactions.length, 2);
    assert.equal(nft.transactions[1]?.toString(), 'delete chain ip kube-nftproxy nope\n');
  });

  it('failNext injects one failure and leaves the state alone', async () => {
    const nft = await loaded();
    nft.failNext();
    const tx = new Transaction().add({ kind: 'chain', ...at, name: 'new' });
    await rejects(nft.run(tx), ErrorCodes.NFT_REJECTED);
    assert.equal(nft.dump(), BASE_DUMP);
    await nft.run(tx);
    assert.match(nft.dump(), /add chain ip kube-nftproxy new\n/);
  });

  it('reports a version', async () => {
    assert.equal(await new FakeNft().version(), '1.0.6');
    assert.equal(await new FakeNft({ version: '1.1.1' }).version(), '1.1.1');
  });

  it('finds references in rules, anonymous vmaps and verdicts, ignoring quoted strings', () => {
    assert.deepEqual(
      references('ip daddr @a numgen random mod 2 vmap { 0 : goto b, 1 : jump c } iifname "goto x"'),
      {
        chains: ['b', 'c'],
        sets: ['a'],
      },
    );
  });
});

describe('FakeNft: nft 1.0.6 quirks', () => {
  const KEY = 'ip daddr . meta l4proto . th dport . numgen random mod 2';
  const setup = (value: string): Transaction =>
    new Transaction()
      .add({ kind: 'table', ...at })
      .add({ kind: 'chain', ...at, name: 'lb-2' })
      .add({ kind: 'map', ...at, name: 'backends', typeof: KEY, valueTypeof: value })
      .add({ kind: 'rule', ...at, chain: 'lb-2', rule: `dnat ip to ${KEY} map @backends` });
  const readd = (): Transaction =>
    new Transaction()
      .flush({ kind: 'chain', ...at, name: 'lb-2' })
      .add({ kind: 'rule', ...at, chain: 'lb-2', rule: `dnat ip to ${KEY} map @backends` });

  it('refuses a rule using an existing map whose value typeof mentions th', async () => {
    const nft = new FakeNft();
    await nft.run(setup('ip daddr . th dport'));
    const dump = nft.dump();
    await rejects(nft.run(readd()), ErrorCodes.NFT_REJECTED);
    assert.equal(nft.dump(), dump);
  });

  it('accepts it when the map is recreated in the same transaction', async () => {
    const nft = new FakeNft();
    await nft.run(setup('ip daddr . th dport'));
    await nft.run(new Transaction().destroy({ kind: 'table', ...at }));
    await nft.run(setup('ip daddr . th dport'));
  });

  it('accepts it with a value typeof of ip daddr . tcp dport, or with quirks off', async () => {
    const tcp = new FakeNft();
    await tcp.run(setup('ip daddr . tcp dport'));
    await tcp.run(readd());
    const lax = new FakeNft({ nft106Quirks: false });
    await lax.run(setup('ip daddr . th dport'));
    await lax.run(readd());
  });
});

describe('FakeNft: create element into a new interval set (nft 1.0.6)', () => {
  it('fails in the transaction that creates the set, works later', async () => {
    const nft = new FakeNft();
    const set = new Transaction()
      .add({ kind: 'table', ...at })
      .add({ kind: 'set', ...at, name: 'ranges', type: ['ipv4_addr'], flags: ['interval'] });
    const create: Element = { kind: 'element', ...at, set: 'ranges', key: '10.0.0.0/8' };
    await rejects(
      nft.run(new Transaction().add(set.operations[0]!.object).add(set.operations[1]!.object).create(create)),
      ErrorCodes.NFT_EXISTS,
    );
    await nft.run(set);
    await nft.run(new Transaction().create(create));
  });
});
