import assert from 'node:assert/strict';
import { KubeConfig } from '@kubernetes/client-node';
import { ErrorCodes, hasCode, isListStatus } from '../../src/errors.js';
import { listJson } from '../../src/watch/list-json.js';
import { TestApiServer } from '../support/api-server.js';

/** How a refused list reaches its callers: a ProxyError whose status a predicate tests. */
describe('listJson errors', function () {
  this.timeout(30_000);
  let server: TestApiServer | undefined;

  afterEach(async function () {
    await server?.close();
    server = undefined;
  });

  async function failure(run: () => Promise<unknown>): Promise<unknown> {
    try {
      await run();
    } catch (err) {
      return err;
    }
    assert.fail('expected a rejection');
  }

  it('an unserved path is API_LIST_STATUS 404, with the Status message', async function () {
    server = await TestApiServer.create();
    const kc = server.kubeConfig();
    const err = await failure(() => listJson(kc, '/apis/example.com/v1/nothings', {}));
    assert.ok(hasCode(err, ErrorCodes.API_LIST_STATUS));
    assert.ok(isListStatus(err, 404));
    assert.ok(!isListStatus(err, 401, 403));
    assert.match((err as Error).message, /no route/);
  });

  it('a forbidden list is API_LIST_STATUS 403', async function () {
    server = await TestApiServer.create();
    server.forbid('Service');
    const err = await failure(() => listJson(server!.kubeConfig(), '/api/v1/services', {}));
    assert.ok(isListStatus(err, 401, 403));
    assert.ok(!isListStatus(err, 404));
  });

  it('a kubeconfig without a current cluster is KUBECONFIG_INVALID', async function () {
    const err = await failure(() => listJson(new KubeConfig(), '/api/v1/services', {}));
    assert.ok(hasCode(err, ErrorCodes.KUBECONFIG_INVALID));
    assert.ok(!isListStatus(err, 404));
  });
});
