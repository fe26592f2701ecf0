import assert from 'node:assert/strict';
import { ErrorCodes, hasCode } from '../../src/errors.js';
import { parseBindAddress } from '../../src/server/bind-address.js';

describe('parseBindAddress', () => {
  const ok: Array<[string, { host: string; port: number }]> = [
    ['0.0.0.0:10256', { host: '0.0.0.0', port: 10256 }],
    ['127.0.0.1:0', { host: '127.0.0.1', port: 0 }],
    ['[::]:10256', { host: '::', port: 10256 }],
    ['[::1]:9', { host: '::1', port: 9 }],
    ['localhost:10249', { host: 'localhost', port: 10249 }],
    [':10249', { host: '', port: 10249 }],
  ];
  for (const [address, want] of ok) {
    it(`parses ${address}`, () => assert.deepEqual(parseBindAddress(address, 'metrics'), want));
  }
  for (const address of ['', '10256', '0.0.0.0', '::1:80', '0.0.0.0:65536', '0.0.0.0:x', '[::1]']) {
    it(`refuses ${JSON.stringify(address)} with CONFIG_INVALID naming it`, () => {
      assert.throws(
        () => parseBindAddress(address, 'metrics'),
        (err: unknown) =>
          hasCode(err, ErrorCodes.CONFIG_INVALID) &&
          (err as Error).message.includes(JSON.stringify(address)) &&
          (err as Error).message.includes('metrics'),
      );
    });
  }
});
