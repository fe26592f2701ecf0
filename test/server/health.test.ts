import assert from 'node:assert/strict';
import { ErrorCodes, hasCode } from '../../src/errors.js';
import { ProxyHealth, TO_BE_DELETED_TAINT, isNodeEligible } from '../../src/server/health.js';
import { FakeClock } from '../support/fake-clock.js';

describe('ProxyHealth', () => {
  const epoch = Date.UTC(2024, 0, 1, 0, 0, 0);
  const at = (ms: number): string => new Date(epoch + ms).toISOString();
  const ZERO = '0001-01-01T00:00:00.000Z';
  /** kube-proxy's per-family status: both families alike here (one transaction programs both). */
  const families = (lastUpdated: string, healthy: boolean) => ({
    IPv4: { lastUpdated, healthy },
    IPv6: { lastUpdated, healthy },
  });
  let clock: FakeClock;
  let health: ProxyHealth;

  beforeEach(() => {
    clock = new FakeClock(epoch);
    health = new ProxyHealth({ healthTimeoutMs: 120_000, clock });
  });

  it('is healthy and eligible while starting up', () => {
    assert.deepEqual(health.status(), {
      healthy: true,
      lastUpdated: at(0),
      currentTime: at(0),
      nodeEligible: true,
      status: families(ZERO, true),
    });
  });

  it('queued → healthy until the timeout → unhealthy → updated → healthy', async () => {
    await clock.advance(1000);
    health.updated();
    await clock.advance(1000);
    health.queued();
    await clock.advance(119_999);
    assert.equal(health.status().healthy, true, 'not late yet');
    assert.equal(health.status().lastUpdated, at(121_999), 'healthy reports lastUpdated = now');
    await clock.advance(1);
    assert.deepEqual(health.status(), {
      healthy: false,
      lastUpdated: at(1000),
      currentTime: at(122_000),
      nodeEligible: true,
      status: families(at(1000), false),
      reason: 'a change queued 120 s ago is not applied yet',
    });
    health.updated();
    assert.equal(health.status().healthy, true);
    // Each family's lastUpdated is the last sync, not now, even while healthy.
    await clock.advance(5000);
    assert.deepEqual(health.status().status, families(at(122_000), true));
    assert.equal(health.status().lastUpdated, at(127_000));
  });

  it('only the oldest queued change counts', async () => {
    health.queued();
    await clock.advance(100_000);
    health.queued();
    await clock.advance(20_000);
    assert.equal(health.status().healthy, false, '120 s since the first queued change');
  });

  it('reports the zero time as lastUpdated when it never synced and is late', async () => {
    health.queued();
    await clock.advance(120_000);
    assert.equal(health.status().lastUpdated, '0001-01-01T00:00:00.000Z');
  });

  it('after started(), turns unhealthy when no sync has been applied within the timeout', async () => {
    health.started();
    await clock.advance(119_999);
    assert.equal(health.status().healthy, true, 'within the grace period');
    await clock.advance(1);
    assert.deepEqual(health.status(), {
      healthy: false,
      lastUpdated: '0001-01-01T00:00:00.000Z',
      currentTime: at(120_000),
      nodeEligible: true,
      status: families(ZERO, false),
      reason: 'no rules applied yet, 120 s after start',
    });
    health.updated();
    assert.equal(health.status().healthy, true);
    // A later stall reads as a late change, not as a start.
    health.queued();
    await clock.advance(120_000);
    assert.equal(health.status().reason, 'a change queued 120 s ago is not applied yet');
  });

  it('names what the API server refuses, sorted by kind, until it stops refusing', async () => {
    health.started();
    const refusal = (resource: string, group = '') => ({
      verb: 'list' as const,
      group,
      resource,
      status: 403 as const,
      message: `${resource} is forbidden`,
      action: `grant list on ${resource}`,
    });
    health.apiAccess('Service', refusal('services'));
    health.apiAccess('EndpointSlice', refusal('endpointslices', 'discovery.k8s.io'));
    // Refusals are shown at once, while still healthy (the grace period is not over).
    assert.deepEqual(
      health.status().apiErrors?.map((e) => [e.kind, e.resource, e.group]),
      [
        ['EndpointSlice', 'endpointslices', 'discovery.k8s.io'],
        ['Service', 'services', ''],
      ],
    );
    assert.equal(health.status().reason, undefined);
    await clock.advance(120_000);
    assert.equal(
      health.status().reason,
      'no rules applied yet, 120 s after start; the API server refuses to list endpointslices (HTTP 403), list services (HTTP 403)',
    );
    health.apiAccess('EndpointSlice', undefined);
    health.apiAccess('Service', undefined);
    assert.equal(health.status().apiErrors, undefined);
  });

  it('keeps node eligibility apart from proxy health', () => {
    health.nodeEligible(false);
    assert.deepEqual([health.status().healthy, health.status().nodeEligible], [true, false]);
    health.nodeEligible(true);
    assert.equal(health.status().nodeEligible, true);
  });

  it('rejects a non-positive timeout with CONFIG_INVALID', () => {
    assert.throws(
      () => new ProxyHealth({ healthTimeoutMs: 0 }),
      (err: unknown) => hasCode(err, ErrorCodes.CONFIG_INVALID),
    );
  });
});

describe('isNodeEligible', () => {
  const cases: Array<[string, Parameters<typeof isNodeEligible>[0], boolean]> = [
    ['a plain node', { metadata: {}, spec: {} }, true],
    ['an empty object', {}, true],
    ['other taints', { spec: { taints: [{ key: 'node.kubernetes.io/unschedulable' }] } }, true],
    ['being deleted', { metadata: { deletionTimestamp: new Date() } }, false],
    ['being deleted (string)', { metadata: { deletionTimestamp: '2024-01-01T00:00:00Z' } }, false],
    ['tainted by the autoscaler', { spec: { taints: [{ key: 'x' }, { key: TO_BE_DELETED_TAINT }] } }, false],
  ];
  for (const [name, node, eligible] of cases) {
    it(`${name}: ${eligible ? 'eligible' : 'not eligible'}`, () => {
      assert.equal(isNodeEligible(node), eligible);
    });
  }
});
