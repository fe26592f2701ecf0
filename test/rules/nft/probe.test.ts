import assert from 'node:assert/strict';
import { ErrorCodes, ProxyError, hasCode } from '../../../src/errors.js';
import { NftCrashError, type Nft } from '../../../src/rules/nft/exec.js';
import { FakeNft } from '../../../src/rules/nft/fake.js';
import { compareVersions, probeNft, probeTransaction } from '../../../src/rules/nft/probe.js';

describe('nft probe', () => {
  it('passes on a capable nft and commits nothing', async () => {
    const nft = new FakeNft();
    assert.deepEqual(await probeNft(nft), { version: '1.0.6' });
    assert.equal(nft.dump(), '');
    assert.equal(nft.transactions.length, 0);
  });

  it('the probe transaction is valid and uses the constructs the compiler needs', () => {
    const tx = probeTransaction();
    assert.equal(tx.err, undefined);
    const text = tx.toString();
    assert.match(text, /typeof ip daddr \. th dport \. numgen random mod 2 : ip daddr \. tcp dport/);
    assert.match(text, /type ipv4_addr \. inet_proto \. inet_service : verdict/);
    assert.match(text, /meta l4proto tcp dnat ip to ip daddr \. th dport \. numgen random mod 2 map @m/);
  });

  it('rejects an nft older than 1.0.0 with NFT_VERSION', async () => {
    await assert.rejects(probeNft(new FakeNft({ version: '0.9.8' })), (err: unknown) => {
      assert.ok(hasCode(err, ErrorCodes.NFT_VERSION));
      assert.match((err as Error).message, /0\.9\.8 is too old/);
      return true;
    });
  });

  it('passes permission and missing-nft errors through with their codes', async () => {
    for (const code of [ErrorCodes.NFT_PERMISSION, ErrorCodes.NFT_BINARY_MISSING] as const) {
      const nft = new FakeNft();
      nft.check = async () => {
        throw new ProxyError(code, 'x');
      };
      await assert.rejects(probeNft(nft), (err: unknown) => hasCode(err, code));
    }
  });

  it('says which construct is missing when nft rejects the probe', async () => {
    const nft = new FakeNft();
    nft.check = async () => {
      throw new ProxyError(ErrorCodes.NFT_REJECTED, 'syntax error');
    };
    await assert.rejects(probeNft(nft), (err: unknown) => {
      assert.ok(hasCode(err, ErrorCodes.NFT_REJECTED));
      assert.match((err as Error).message, /rejects a construct kube-nftproxy needs/);
      return true;
    });
  });

  it('compares versions numerically', () => {
    assert.equal(compareVersions('1.0.10', '1.0.9'), 1);
    assert.equal(compareVersions('1.0', '1.0.0'), 0);
    assert.equal(compareVersions('0.9.8', '1.0.0'), -1);
  });
});

describe('nft probe: an nft that crashes', () => {
  /** A Fake whose check crashes, and whose listing of the tables in `crashing` crashes too. */
  function crashingNft(
    tables: string[],
    crashing: string[],
    version = '1.0.6',
  ): FakeNft & Required<Pick<Nft, 'tables'>> {
    const nft = Object.assign(new FakeNft({ version }), { tables: async () => tables });
    const crash = (): never => {
      throw new NftCrashError('SIGSEGV', 'nft crashed (SIGSEGV)');
    };
    nft.check = async () => crash();
    nft.list = async (family, table) => (crashing.includes(`${family} ${table}`) ? crash() : '');
    return nft;
  }

  it('is NFT_CRASHED naming the tables that crash it and what to do, not "rejects a construct"', async () => {
    const nft = crashingNft(['inet host-firewall', 'ip kube-nftproxy', 'ip6 other'], ['inet host-firewall']);
    await assert.rejects(probeNft(nft), (err: unknown) => {
      assert.ok(hasCode(err, ErrorCodes.NFT_CRASHED), String(err));
      const message = (err as Error).message;
      assert.match(message, /^nft 1\.0\.6 crashed \(SIGSEGV\)/);
      assert.match(message, /reading table inet host-firewall, which a newer nft wrote/);
      assert.doesNotMatch(message, /kube-nftproxy,|ip6 other/);
      assert.match(message, /Run kube-nftproxy with nft >= 1\.1/);
      assert.doesNotMatch(message, /rejects a construct/);
      return true;
    });
  });

  it('still says what to do when nft cannot even list the tables', async () => {
    const nft = crashingNft([], []);
    nft.tables = async () => {
      throw new NftCrashError('SIGSEGV', 'x');
    };
    await assert.rejects(probeNft(nft), (err: unknown) => {
      assert.ok(hasCode(err, ErrorCodes.NFT_CRASHED));
      assert.match((err as Error).message, /reading a table that a newer nft wrote.*nft >= 1\.1/);
      return true;
    });
  });

  it('a probe that timed out stays NFT_TIMEOUT', async () => {
    const nft = new FakeNft();
    nft.check = async () => {
      throw new ProxyError(ErrorCodes.NFT_TIMEOUT, 'killed');
    };
    await assert.rejects(probeNft(nft), (err: unknown) => hasCode(err, ErrorCodes.NFT_TIMEOUT));
  });
});
