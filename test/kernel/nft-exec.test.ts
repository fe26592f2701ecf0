import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ErrorCodes, hasCode, type ErrorCode } from '../../src/errors.js';
import {
  createNft,
  nftError,
  SESSION_MAX_OPERATIONS,
  spawnExec,
  type Nft,
} from '../../src/rules/nft/exec.js';
import { FakeNft } from '../../src/rules/nft/fake.js';
import { compareVersions, probeNft } from '../../src/rules/nft/probe.js';
import { NftSession } from '../../src/rules/nft/session.js';
import { Transaction } from '../../src/rules/nft/transaction.js';
import type { Element, NftObject } from '../../src/rules/nft/types.js';
import { RESERVED_NAMES } from '../../src/rules/nft/validate.js';
import { requireKernel } from '../support/capabilities.js';
import { RENDER_CASES } from '../rules/nft/render.test.js';

// Every nft call here runs inside a namespace this file created: the host's ruleset is never read or touched.

const PREFIX = 'knp-';
const SUFFIX = '-nftexec';

function ip(...args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as { code?: unknown }).code === 'EPERM';
  }
}

/** Removes namespaces this file left behind in runs that died (their pid is gone). */
function sweepStale(): void {
  for (const line of ip('netns', 'list').split('\n')) {
    const name = line.split(' ')[0] ?? '';
    const m = new RegExp(`^${PREFIX}(\\d+)${SUFFIX}-\\d+$`).exec(name);
    if (m && !alive(Number(m[1]))) ip('netns', 'del', name);
  }
}

let counter = 0;
/** A fresh, empty network namespace; `after` deletes it, and its rules vanish with it. */
function newNamespace(created: string[]): string {
  const name = `${PREFIX}${process.pid}${SUFFIX}-${counter++}`;
  ip('netns', 'add', name);
  created.push(name);
  return name;
}

const at = { family: 'ip', table: 'kube-nftproxy' } as const;

/**
 * `nft list` text with objects in name order: nft lists them in creation order, which the
 * Fake's sorted dump does not keep. Timeout countdowns are dropped.
 */
function canonical(listed: string): string {
  const blocks = listed
    .replace(/ expires \S+/g, '')
    .split('\n\n')
    .map((b) => b.replace(/^table [^\n]*\n(\tcomment [^\n]*\n)?/, '').replace(/\n}\n?$/, ''));
  return blocks.sort().join('\n\n');
}

/** Every rendered form, in an order nft accepts: what a delete removes is added first. */
function everyForm(): Transaction {
  const tx = new Transaction();
  for (const c of RENDER_CASES) {
    const o = c.object;
    if (c.verb === 'delete' && o.kind === 'table') continue; // would empty what we read back
    if (c.verb === 'delete' && (o.kind === 'chain' || o.kind === 'set' || o.kind === 'map')) {
      const def: NftObject =
        o.kind === 'chain'
          ? o
          : o.kind === 'set'
            ? { ...o, type: ['ipv4_addr'] }
            : { ...o, type: ['ipv4_addr'], valueType: ['verdict'] };
      tx.add(def);
    }
    tx[c.verb](o);
  }
  // The flush cases emptied the maps and sets: fill them again so that list shows every element form.
  for (const c of RENDER_CASES) if (c.object.kind === 'element' && c.verb !== 'delete') tx.add(c.object);
  assert.equal(tx.err, undefined);
  return tx;
}

async function rejects(p: Promise<unknown>, codes: ErrorCode[]): Promise<ErrorCode> {
  let got: ErrorCode | undefined;
  await assert.rejects(p, (err: unknown) => {
    got = codes.find((c) => hasCode(err, c));
    assert.ok(got, `expected one of ${codes.join(', ')}, got ${String(err)}`);
    return true;
  });
  return got!;
}

describe('kernel: nft exec against real nft in a network namespace', function () {
  const created: string[] = [];
  let nft: Nft;

  before(function () {
    requireKernel(this);
    sweepStale();
    nft = createNft({ netns: newNamespace(created) });
  });

  after(function () {
    for (const name of created) {
      try {
        ip('netns', 'del', name);
      } catch (err) {
        // The rules lived in the namespace: a namespace left behind is all there is to report.
        process.stderr.write(`  could not delete network namespace ${name}: ${String(err)}\n`);
      }
    }
  });

  beforeEach(async function () {
    if (nft === undefined) return;
    await nft.run(
      new Transaction()
        .destroy({ kind: 'table', ...at })
        .destroy({ kind: 'table', family: 'ip6', table: at.table }),
    );
  });

  it('the probe passes and reads the version', async () => {
    const { version } = await probeNft(nft);
    assert.match(version, /^\d+\.\d+/);
    assert.equal(await nft.list('ip', 'kube-nftproxy-probe'), '', 'the probe must not commit anything');
  });

  it('accepts a transaction with every rendered form, and list reads it back', async () => {
    const tx = everyForm();
    await nft.check(tx);
    assert.equal(await nft.list('ip', 'kube-nftproxy'), '', 'check must not commit');
    await nft.run(tx);
    const listed = await nft.list('ip', 'kube-nftproxy');
    assert.match(listed, /^table ip kube-nftproxy \{/);
    assert.match(
      listed,
      /map backends \{\n\t\ttypeof ip daddr \. meta l4proto \. th dport \. numgen random mod 2 : ip daddr \. th dport/,
    );
    assert.match(listed, /10\.96\.0\.10 \. tcp \. 53 \. 1 : 10\.0\.0\.2 \. 8053/);
    assert.match(listed, /10\.96\.0\.11 \. udp \. 53 comment "kube-system\/dns" : goto cip-2/);
    assert.doesNotMatch(listed, /chain (gone|cip-9) |set (gone-set|old-set) |map (gone-map|old-map) /);
    assert.equal(await nft.list('ip6', 'kube-nftproxy'), '', 'destroyed');
    await nft.run(new Transaction().delete({ kind: 'table', ...at }));
    assert.equal(await nft.list('ip', 'kube-nftproxy'), '');
  });

  it("the Fake's dump of a transaction loads into nft and lists exactly as the transaction itself", async () => {
    const tx = everyForm();
    const fake = new FakeNft();
    await fake.run(tx);
    const other = createNft({ netns: newNamespace(created) });
    await nft.run(tx);
    await other.run(new Transaction()); // no-op: an empty transaction never spawns nft
    const exec = spawnExec({ netns: created[created.length - 1]! });
    const loaded = await exec(['-f', '-'], fake.dump());
    assert.equal(loaded.code, 0, loaded.stderr);
    assert.equal(
      canonical(await other.list('ip', 'kube-nftproxy')),
      canonical(await nft.list('ip', 'kube-nftproxy')),
    );
    await nft.run(new Transaction().delete({ kind: 'table', ...at }));
  });

  const BACKENDS_KEY = 'ip daddr . meta l4proto . th dport . numgen random mod 2';
  const DNAT = (map: string): string => `dnat ip to ${BACKENDS_KEY} map @${map}`;

  /** The base state failures start from: the compiler's layout with one service. */
  function baseState(): Transaction {
    return new Transaction()
      .add({ kind: 'table', ...at })
      .add({
        kind: 'chain',
        ...at,
        name: 'nat-prerouting',
        type: 'nat',
        hook: 'prerouting',
        priority: 'dstnat',
      })
      .add({ kind: 'chain', ...at, name: 'cip-1' })
      .add({
        kind: 'map',
        ...at,
        name: 'service-ips',
        type: ['ipv4_addr', 'inet_proto', 'inet_service'],
        valueType: ['verdict'],
      })
      .add({ kind: 'set', ...at, name: 'cluster-ips', type: ['ipv4_addr'] })
      .add({ kind: 'map', ...at, name: 'backends', typeof: BACKENDS_KEY, valueTypeof: 'ip daddr . th dport' })
      .add({
        kind: 'map',
        ...at,
        name: 'backends-tcp',
        typeof: BACKENDS_KEY,
        valueTypeof: 'ip daddr . tcp dport',
      })
      .add({ kind: 'rule', ...at, chain: 'cip-1', rule: DNAT('backends') })
      .add({
        kind: 'rule',
        ...at,
        chain: 'nat-prerouting',
        rule: 'ip daddr . meta l4proto . th dport vmap @service-ips',
      })
      .add({ kind: 'rule', ...at, chain: 'cip-1', rule: 'ip daddr @cluster-ips counter' })
      .add({
        kind: 'element',
        ...at,
        set: 'service-ips',
        key: '10.96.0.1 . tcp . 443',
        value: 'goto cip-1',
      })
      .add({ kind: 'element', ...at, set: 'cluster-ips', key: '10.96.0.1' });
  }

  /** Each failure with the code real nft gives and the code the Fake gives (they differ only on references). */
  const failures: Array<{ why: string; kernel: ErrorCode; fake: ErrorCode; tx: () => Transaction }> = [
    {
      why: 'a rule referencing a missing map',
      kernel: 'NFT_NO_SUCH_OBJECT',
      fake: 'NFT_DANGLING_REFERENCE',
      tx: () =>
        new Transaction().add({
          kind: 'rule',
          ...at,
          chain: 'cip-1',
          rule: 'ip daddr . th dport vmap @nope',
        }),
    },
    {
      why: 'a rule jumping to a missing chain',
      kernel: 'NFT_NO_SUCH_OBJECT',
      fake: 'NFT_DANGLING_REFERENCE',
      tx: () => new Transaction().add({ kind: 'rule', ...at, chain: 'cip-1', rule: 'goto nope' }),
    },
    {
      why: 'a map element going to a missing chain',
      kernel: 'NFT_NO_SUCH_OBJECT',
      fake: 'NFT_DANGLING_REFERENCE',
      tx: () =>
        new Transaction().add({
          kind: 'element',
          ...at,
          set: 'service-ips',
          key: '10.96.0.2 . tcp . 80',
          value: 'goto nope',
        }),
    },
    {
      why: 'an existing element with another value',
      kernel: 'NFT_EXISTS',
      fake: 'NFT_EXISTS',
      tx: () =>
        new Transaction().add({ kind: 'chain', ...at, name: 'cip-2' }).add({
          kind: 'element',
          ...at,
          set: 'service-ips',
          key: '10.96.0.1 . tcp . 443',
          value: 'goto cip-2',
        }),
    },
    {
      why: 'create of an existing chain',
      kernel: 'NFT_EXISTS',
      fake: 'NFT_EXISTS',
      tx: () => new Transaction().create({ kind: 'chain', ...at, name: 'cip-1' }),
    },
    {
      why: 'a set re-added with another type',
      kernel: 'NFT_EXISTS',
      fake: 'NFT_EXISTS',
      tx: () => new Transaction().add({ kind: 'set', ...at, name: 'cluster-ips', type: ['inet_service'] }),
    },
    {
      why: 'delete of a missing element',
      kernel: 'NFT_NO_SUCH_OBJECT',
      fake: 'NFT_NO_SUCH_OBJECT',
      tx: () => new Transaction().delete({ kind: 'element', ...at, set: 'cluster-ips', key: '10.96.0.99' }),
    },
    {
      why: 'delete of a missing chain',
      kernel: 'NFT_NO_SUCH_OBJECT',
      fake: 'NFT_NO_SUCH_OBJECT',
      tx: () => new Transaction().delete({ kind: 'chain', ...at, name: 'nope' }),
    },
    {
      why: 'flush set of a map',
      kernel: 'NFT_NO_SUCH_OBJECT',
      fake: 'NFT_NO_SUCH_OBJECT',
      tx: () => new Transaction().flush({ kind: 'set', ...at, name: 'service-ips' }),
    },
    {
      why: 'delete of a chain with rules',
      kernel: 'NFT_REJECTED',
      fake: 'NFT_REJECTED',
      tx: () => new Transaction().delete({ kind: 'chain', ...at, name: 'cip-1' }),
    },
    {
      why: 'delete of an empty chain a map element goes to',
      kernel: 'NFT_REJECTED',
      fake: 'NFT_REJECTED',
      tx: () =>
        new Transaction()
          .flush({ kind: 'chain', ...at, name: 'cip-1' })
          .delete({ kind: 'chain', ...at, name: 'cip-1' }),
    },
    {
      why: 'delete of a set a rule uses',
      kernel: 'NFT_REJECTED',
      fake: 'NFT_REJECTED',
      tx: () => new Transaction().delete({ kind: 'set', ...at, name: 'cluster-ips' }),
    },
    {
      why: 'a rule using a map whose value typeof mentions th, once the map exists (nft 1.0.6)',
      kernel: 'NFT_REJECTED',
      fake: 'NFT_REJECTED',
      tx: () =>
        new Transaction()
          .flush({ kind: 'chain', ...at, name: 'cip-1' })
          .add({ kind: 'rule', ...at, chain: 'cip-1', rule: DNAT('backends') }),
    },
    {
      why: 'a rule nft cannot parse',
      kernel: 'NFT_REJECTED',
      fake: 'NFT_REJECTED',
      tx: () => new Transaction().add({ kind: 'rule', ...at, chain: 'cip-1', rule: 'frobnicate' }),
    },
  ];

  for (const f of failures) {
    it(`rejects ${f.why} (${f.kernel}) and leaves the ruleset exactly as before; the Fake agrees`, async function () {
      await nft.run(new Transaction().destroy({ kind: 'table', ...at }));
      await nft.run(baseState());
      const before = await nft.list('ip', 'kube-nftproxy');
      assert.notEqual(before, '');
      const tx = new Transaction()
        .add({ kind: 'chain', ...at, name: 'prefix' })
        .add({ kind: 'element', ...at, set: 'cluster-ips', key: '10.96.0.77' });
      for (const op of f.tx().operations) tx[op.verb](op.object);
      await rejects(nft.run(tx), [f.kernel]);
      assert.equal(await nft.list('ip', 'kube-nftproxy'), before);

      // The Fake does not parse rule text; only real nft can refuse this one.
      if (f.why === 'a rule nft cannot parse') return;
      const fake = new FakeNft();
      await fake.run(baseState());
      const dump = fake.dump();
      await rejects(fake.run(tx), [f.fake]);
      assert.equal(fake.dump(), dump);
    });
  }

  it('rules using a map typed `ip daddr . tcp dport` can be re-added later, in nft and the Fake', async () => {
    const again = (): Transaction =>
      new Transaction()
        .flush({ kind: 'chain', ...at, name: 'cip-1' })
        .add({ kind: 'rule', ...at, chain: 'cip-1', rule: DNAT('backends-tcp') });
    await nft.run(baseState());
    await nft.run(again());
    assert.match(await nft.list('ip', 'kube-nftproxy'), /map @backends-tcp/);
    const fake = new FakeNft();
    await fake.run(baseState());
    await fake.run(again());
  });

  it('create element into an interval set fails in the transaction that creates the set (nft 1.0.6; 1.1.3 takes it), like the Fake', async () => {
    const set = (): Transaction =>
      new Transaction()
        .add({ kind: 'table', ...at })
        .add({ kind: 'set', ...at, name: 'ranges', type: ['ipv4_addr'], flags: ['interval'] });
    const create: Element = { kind: 'element', ...at, set: 'ranges', key: '10.0.0.0/8' };
    // The Fake keeps 1.0.6's refusal: stricter than 1.1.3, so what passes it passes both.
    await rejects(new FakeNft().run(set().create(create)), [ErrorCodes.NFT_EXISTS]);
    if (compareVersions(await nft.version(), '1.1') >= 0) {
      await nft.run(set().create(create));
      assert.match(await nft.list('ip', 'kube-nftproxy'), /elements = \{ 10\.0\.0\.0\/8 \}/);
      await nft.run(new Transaction().delete({ kind: 'table', ...at }));
      await nft.run(set());
      await nft.run(new Transaction().create(create));
      return;
    }
    await rejects(nft.run(set().create(create)), [ErrorCodes.NFT_EXISTS]);
    await nft.run(set());
    await nft.run(new Transaction().create(create));
  });

  it('every reserved name really is refused by nft as a chain name; ordinary names are not', async function () {
    this.timeout(120_000);
    await nft.run(new Transaction().destroy({ kind: 'table', ...at }).add({ kind: 'table', ...at }));
    const exec = spawnExec({ netns: created[0]! });
    const accepted: string[] = [];
    for (const name of RESERVED_NAMES) {
      if (name === 'destroy') continue; // a command from nft 1.0.8 on; 1.0.6 still takes it as a name
      const r = await exec(['-c', '-f', '-'], `add chain ip kube-nftproxy ${name}\n`);
      if (r.code === 0) accepted.push(name);
    }
    assert.deepEqual(accepted, [], 'names nft accepts need not be reserved');
    for (const name of [
      'services',
      'filter',
      'nat',
      'prerouting',
      'daddr',
      'cip-2',
      'lb_2',
      'a.b',
      'service-ips',
    ]) {
      const r = await exec(['-c', '-f', '-'], `add chain ip kube-nftproxy ${name}\n`);
      assert.equal(r.code, 0, `${name}: ${r.stderr}`);
    }
  });

  it('an nft that is not installed is NFT_BINARY_MISSING, also through ip netns exec', async () => {
    const missing = createNft({ netns: created[0]!, nftPath: '/nonexistent/nft' });
    await rejects(missing.version(), [ErrorCodes.NFT_BINARY_MISSING]);
  });
});

describe('kernel: small transactions through one long-lived nft -i session', function () {
  const created: string[] = [];
  let ns: string;

  before(function () {
    requireKernel(this);
    sweepStale();
    ns = newNamespace(created);
  });

  after(function () {
    for (const name of created) ip('netns', 'del', name);
  });

  const listed = (): string =>
    execFileSync('ip', ['netns', 'exec', ns, 'nft', 'list', 'table', 'ip', 'knp-session'], {
      encoding: 'utf8',
    });
  const element = (k: number, v: number): Element => ({
    kind: 'element',
    family: 'ip',
    table: 'knp-session',
    set: 'm',
    key: `10.0.0.${k}`,
    value: `10.1.0.${v}`,
  });

  it('commits each atomically, reports a failure with its code and leaves the kernel as it was, and goes on', async () => {
    const session = new NftSession({ command: ['ip', 'netns', 'exec', ns, 'nft'] });
    const nftRun = async (tx: Transaction): Promise<void> => {
      const r = await session.run(tx.toString());
      if (r.code !== 0) throw nftError(['-f', '-'], r);
    };
    try {
      const setup = new Transaction()
        .add({ kind: 'table', family: 'ip', table: 'knp-session' })
        .add({
          kind: 'map',
          family: 'ip',
          table: 'knp-session',
          name: 'm',
          type: ['ipv4_addr'],
          valueType: ['ipv4_addr'],
        })
        .add(element(1, 1));
      await nftRun(setup);
      assert.match(listed(), /10\.0\.0\.1 : 10\.1\.0\.1/);

      // A new key, then a changed value in place: the kernel refuses the whole batch.
      const bad = new Transaction().add(element(2, 2)).add(element(1, 9));
      const before = listed();
      await assert.rejects(nftRun(bad), (err: unknown) => hasCode(err, ErrorCodes.NFT_EXISTS));
      assert.equal(listed(), before, 'nothing of the failed transaction is left');

      for (let k = 2; k <= 60; k++) await nftRun(new Transaction().add(element(k, k)));
      const text = listed();
      for (let k = 1; k <= 60; k++)
        assert.match(text, new RegExp(`10\\.0\\.0\\.${k} : 10\\.1\\.0\\.${k}\\b`));
      assert.ok(session.alive);
    } finally {
      session.close();
    }
    assert.ok(!existsSync(session.dir), 'the transaction file goes with the session');
  });

  it('once its nft has died, fails its transaction and every later one (the caller goes back to nft -f)', async () => {
    const session = new NftSession({ command: ['ip', 'netns', 'exec', ns, 'nft'] });
    assert.equal((await session.run('add table ip knp-session\n')).code, 0);
    process.kill(session.pid!, 'SIGKILL');
    await assert.rejects(session.run('add table ip knp-session\n'), (err: unknown) => {
      // Killed from outside: NFT_CRASHED, saying by which signal, and nothing else.
      assert.ok(hasCode(err, ErrorCodes.NFT_CRASHED), String(err));
      assert.equal((err as Error).message, 'nft -i was killed by SIGKILL');
      return true;
    });
    assert.equal(session.alive, false);
    await assert.rejects(session.run('add table ip knp-session\n'));
  });

  it('createNft({ session }) opens a session for a small transaction only; a big one goes to nft -f', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'knp-session-test-'));
    const sessions = (): string[] => readdirSync(dir);
    const big = new Transaction().add({ kind: 'table', family: 'ip', table: 'knp-session' });
    for (let k = 0; k < SESSION_MAX_OPERATIONS; k++)
      big.add({ ...element(0, 0), key: `10.2.${k >> 8}.${k & 255}` });
    const nft = createNft({ netns: ns, session: { dir } });
    try {
      await nft.run(big);
      assert.deepEqual(sessions(), [], `${big.size} operations: no session`);
      assert.equal((listed().match(/10\.2\.\d+\.\d+ :/g) ?? []).length, SESSION_MAX_OPERATIONS);
      await nft.run(new Transaction().add(element(3, 3)));
      assert.equal(sessions().length, 1, 'one operation: a session');
      assert.match(listed(), /10\.0\.0\.3 : 10\.1\.0\.3/);
    } finally {
      nft.close?.();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
