import assert from 'node:assert/strict';
import type { Conntrack } from '../../src/conntrack/exec.js';
import type { Flow } from '../../src/conntrack/flow.js';
import { ConntrackReconciler } from '../../src/conntrack/reconciler.js';
import type { FlowFilter } from '../../src/conntrack/stale-flows.js';
import { ErrorCodes, ProxyError } from '../../src/errors.js';
import { silentLogger } from '../../src/log.js';
import { buildState } from '../../src/model/build-state.js';
import type { Family, ProxyState } from '../../src/model/types.js';
import { createMetrics } from '../../src/server/metrics.js';
import { service, slice } from '../support/objects.js';

const CONFIG = { nodeName: 'n1', nodeIPs: ['192.168.0.10'], lbAlgorithm: 'random' as const };
const VIP = '10.96.0.10';

function dnsState(endpoints: string[]): ProxyState {
  return buildState(
    {
      services: [service('ns', 'dns', { clusterIP: VIP, ports: [{ port: 53, protocol: 'UDP' }] })],
      slices: [
        slice(
          'ns',
          'dns-1',
          'dns',
          [{ port: 53, protocol: 'UDP' }],
          endpoints.map((ip) => ({ ip })),
        ),
      ],
    },
    CONFIG,
  );
}

/**
 * A connection table in memory behind the Conntrack interface (the kernel one is tested in
 * test/kernel/): each listing waits until the test releases it, so that the test decides when
 * a cleanup is in flight.
 */
class TableConntrack implements Conntrack {
  flows: Flow[] = [];
  listings = 0;
  concurrent = 0;
  maxConcurrent = 0;
  failNext: ProxyError | undefined;
  readonly deletes: FlowFilter[][] = [];
  #gates: Array<() => void> = [];

  /** Lets the oldest waiting listing go on. */
  release(): void {
    this.#gates.shift()?.();
  }

  get waiting(): number {
    return this.#gates.length;
  }

  async listUdp(_family: Family, onFlow: (flow: Flow) => void): Promise<void> {
    this.listings++;
    this.concurrent++;
    this.maxConcurrent = Math.max(this.maxConcurrent, this.concurrent);
    try {
      await new Promise<void>((resolve) => this.#gates.push(resolve));
      if (this.failNext) {
        const err = this.failNext;
        this.failNext = undefined;
        throw err;
      }
      for (const f of this.flows) onFlow(f);
    } finally {
      this.concurrent--;
    }
  }

  async deleteUdp(_family: Family, filters: readonly FlowFilter[]): Promise<number> {
    this.deletes.push([...filters]);
    const before = this.flows.length;
    this.flows = this.flows.filter(
      (f) =>
        !filters.some(
          (x) =>
            (x.origDst === undefined || x.origDst === f.origDst) &&
            x.origDport === f.origDport &&
            x.replySrc === f.replySrc &&
            x.replySport === f.replySport,
        ),
    );
    return before - this.flows.length;
  }
}

const flowTo = (ep: string, sport: number): Flow => ({
  origSrc: '10.244.5.5',
  origDst: VIP,
  origSport: sport,
  origDport: 53,
  replySrc: ep,
  replySport: 53,
});

/** Lets pending promise callbacks run. */
const tick = () => new Promise((resolve) => setImmediate(resolve));

describe('ConntrackReconciler', () => {
  let ct: TableConntrack;
  let reconciler: ConntrackReconciler;
  let metrics: ReturnType<typeof createMetrics>;

  beforeEach(() => {
    ct = new TableConntrack();
    metrics = createMetrics();
    reconciler = new ConntrackReconciler({ conntrack: ct, log: silentLogger(), metrics });
  });

  /** What a daemon sync does: note the change, apply (here: nothing), report success. */
  const sync = (state: ProxyState, base?: ProxyState) => {
    reconciler.note(state, base ? { base, ports: new Set(state.ports.map((p) => p.key)) } : undefined);
    reconciler.synced(state);
  };

  it('deletes the flows of a removed endpoint after the sync, in the background', async () => {
    const both = dnsState(['10.244.1.1', '10.244.1.2']);
    const one = dnsState(['10.244.1.2']);
    ct.flows = [flowTo('10.244.1.1', 1), flowTo('10.244.1.2', 2), flowTo('10.244.1.1', 3)];
    sync(both);
    await tick();
    assert.equal(ct.waiting, 1, 'a cleanup is listing');
    ct.release();
    await reconciler.idle();
    assert.equal(ct.flows.length, 3, 'nothing stale yet');
    sync(one, both);
    await tick();
    ct.release();
    await reconciler.idle();
    assert.deepEqual(
      ct.flows.map((f) => f.origSport),
      [2],
    );
    assert.deepEqual(ct.deletes.at(-1), [
      { origDst: VIP, origDport: 53, replySrc: '10.244.1.1', replySport: 53 },
    ]);
    const text = await metrics.registry.metrics();
    assert.match(text, /kubeproxy_conntrack_reconciler_deleted_entries_total\{ip_family="IPv4"\} 2/);
    assert.match(text, /kubeproxy_conntrack_reconciler_sync_duration_seconds_count\{ip_family="IPv4"\} 2/);
  });

  it('runs one cleanup at a time; syncs meanwhile coalesce into one more, with the newest state', async () => {
    const a = dnsState(['10.244.1.1', '10.244.1.2', '10.244.1.3']);
    const b = dnsState(['10.244.1.2', '10.244.1.3']);
    const c = dnsState(['10.244.1.3']);
    ct.flows = [flowTo('10.244.1.1', 1), flowTo('10.244.1.2', 2), flowTo('10.244.1.3', 3)];
    sync(a);
    await tick();
    sync(b, a);
    sync(c, b);
    await tick();
    assert.equal(ct.listings, 1, 'the syncs did not wait, and started nothing more');
    ct.release();
    await tick();
    await tick();
    assert.equal(ct.listings, 2, 'one more cleanup for both');
    ct.release();
    await reconciler.idle();
    assert.equal(ct.maxConcurrent, 1);
    assert.deepEqual(
      ct.flows.map((f) => f.origSport),
      [3],
      'judged by the newest state',
    );
    assert.equal(reconciler.runs, 2);
  });

  it('does nothing after a sync that changed no UDP port', async () => {
    const s = dnsState(['10.244.1.1']);
    sync(s);
    await tick();
    ct.release();
    await reconciler.idle();
    reconciler.note(s, { base: s, ports: new Set() });
    reconciler.synced(s);
    await reconciler.idle();
    assert.equal(ct.listings, 1);
  });

  it('tries a failed cleanup again after the next successful sync, not in a loop', async () => {
    const both = dnsState(['10.244.1.1', '10.244.1.2']);
    const one = dnsState(['10.244.1.2']);
    ct.flows = [flowTo('10.244.1.1', 1)];
    sync(both);
    await tick();
    ct.release();
    await reconciler.idle();
    ct.failNext = new ProxyError(ErrorCodes.CONNTRACK_FAILED, 'injected');
    sync(one, both);
    await tick();
    ct.release();
    await reconciler.idle();
    assert.equal(ct.listings, 2);
    assert.equal(ct.flows.length, 1, 'the failed cleanup deleted nothing');
    // A sync with no UDP change of its own: the failed family is still due.
    reconciler.note(one, { base: one, ports: new Set() });
    reconciler.synced(one);
    await tick();
    ct.release();
    await reconciler.idle();
    assert.equal(ct.listings, 3);
    assert.equal(ct.flows.length, 0);
  });

  it('keeps a change noted by a failed sync for the next successful one', async () => {
    const both = dnsState(['10.244.1.1', '10.244.1.2']);
    const one = dnsState(['10.244.1.2']);
    sync(both);
    await tick();
    ct.release();
    await reconciler.idle();
    ct.flows = [flowTo('10.244.1.1', 1)];
    reconciler.note(one, { base: both, ports: new Set(one.ports.map((p) => p.key)) });
    // ... nft refused that sync: no synced(). The next sync changes nothing more.
    reconciler.note(one, { base: one, ports: new Set() });
    reconciler.synced(one);
    await tick();
    ct.release();
    await reconciler.idle();
    assert.equal(ct.flows.length, 0);
  });

  it('stop drops what is queued and waits for the running cleanup', async () => {
    const a = dnsState(['10.244.1.1', '10.244.1.2']);
    const b = dnsState(['10.244.1.2']);
    sync(a);
    await tick();
    sync(b, a);
    const stopped = reconciler.stop();
    ct.release();
    await stopped;
    assert.equal(ct.listings, 1);
  });
});
