import assert from 'node:assert/strict';
import { isNftProtocol, isProtocol, nftProtocol } from '../../src/model/protocol.js';

describe('protocol spellings', function () {
  it("turns the model's protocol into nft's", function () {
    assert.deepEqual((['TCP', 'UDP', 'SCTP'] as const).map(nftProtocol), ['tcp', 'udp', 'sctp']);
  });

  it('takes each spelling only in its own case', function () {
    assert.deepEqual(['TCP', 'UDP', 'SCTP', 'tcp', 'ICMP', ''].map(isProtocol), [
      true,
      true,
      true,
      false,
      false,
      false,
    ]);
    assert.deepEqual(['tcp', 'udp', 'sctp', 'TCP', 'icmp', ''].map(isNftProtocol), [
      true,
      true,
      true,
      false,
      false,
      false,
    ]);
  });
});
