import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../../src/log.js';
import { StateBuilder } from '../../src/model/state-builder.js';
import type { ProxyState } from '../../src/model/types.js';
import { FileSource } from '../../src/watch/file-source.js';
import { createKubeSource } from '../../src/watch/kube-source.js';
import { ObjectStore } from '../../src/watch/object-store.js';
import type { Source } from '../../src/watch/source.js';
import { TestApiServer } from '../support/api-server.js';
import { waitFor } from '../support/wait-for.js';

const NODE = 'node-a';
const FLAG = ['10.96.0.0/16'];

/**
 * ServiceCIDR objects through the real client-node against the test API server, into the store
 * and the state: v1 when served, else v1beta1, else --service-cidr alone.
 */
describe('kube source: ServiceCIDRs reach the state', function () {
  this.timeout(60_000);
  let server: TestApiServer | undefined;
  let source: Source | undefined;

  afterEach(async function () {
    await source?.stop();
    await server?.close();
    source = server = undefined;
  });

  /** A source on `server` feeding a store; the state is built from it on demand, as a sync does. */
  async function watch(s: TestApiServer): Promise<{ store: ObjectStore; state: () => ProxyState }> {
    s.create('Node', { metadata: { name: NODE } });
    const store = new ObjectStore();
    const builder = new StateBuilder({
      nodeName: NODE,
      nodeIPs: ['192.0.2.1'],
      lbAlgorithm: 'random',
      serviceCIDRs: FLAG,
    });
    source = createKubeSource({
      kubeConfig: s.kubeConfig(),
      nodeName: NODE,
      log: silentLogger(),
      watchdogMs: 0,
      backoff: { initialMs: 50, maxMs: 400 },
    });
    await source.start(store);
    await waitFor(() => store.isSynced, { what: 'the source to sync' });
    return {
      store,
      state: () => builder.update(store.modelSource(NODE), store.takeChanges().services).state,
    };
  }

  const cidrsOf = async (state: () => ProxyState, want: string[], what: string): Promise<void> => {
    let last: string[] | undefined;
    await waitFor(() => JSON.stringify((last = state().serviceCIDRs)) === JSON.stringify(want), {
      what: `${what} (last: ${JSON.stringify(last)})`,
    });
  };

  for (const version of ['v1', 'v1beta1'] as const) {
    it(`follows ServiceCIDRs added, changed and removed (${version} served)`, async function () {
      server = await TestApiServer.create({ serviceCIDRVersion: version });
      server.create('ServiceCIDR', {
        metadata: { name: 'kubernetes' },
        spec: { cidrs: ['10.96.0.0/12', 'fd00:10:96::/108'] },
      });
      const { store, state } = await watch(server);
      // The objects replace the flag.
      await cidrsOf(state, ['10.96.0.0/12', 'fd00:10:96::/108'], 'the listed ServiceCIDR');
      assert.equal(store.serviceCIDRs.get('kubernetes')?.apiVersion, `networking.k8s.io/${version}`);

      // A second range, overlapping the first in part: merged, as an interval set needs.
      server.create('ServiceCIDR', {
        metadata: { name: 'extra' },
        spec: { cidrs: ['10.100.0.0/16', '172.30.0.0/16'] },
      });
      await cidrsOf(state, ['10.96.0.0/12', '172.30.0.0/16', 'fd00:10:96::/108'], 'an added ServiceCIDR');

      server.update('ServiceCIDR', { metadata: { name: 'extra' }, spec: { cidrs: ['172.31.0.0/16'] } });
      await cidrsOf(state, ['10.96.0.0/12', '172.31.0.0/16', 'fd00:10:96::/108'], 'a changed ServiceCIDR');

      server.delete('ServiceCIDR', '', 'extra');
      await cidrsOf(state, ['10.96.0.0/12', 'fd00:10:96::/108'], 'a removed ServiceCIDR');

      // None left: the flag again.
      server.delete('ServiceCIDR', '', 'kubernetes');
      await cidrsOf(state, FLAG, 'the last ServiceCIDR removed');
      assert.ok(server.counters.watch.ServiceCIDR >= 1, 'ServiceCIDRs are watched');
    });
  }

  it('without ServiceCIDRs on the API server (404 for both versions), syncs on --service-cidr', async function () {
    server = await TestApiServer.create();
    const { store, state } = await watch(server);
    assert.deepEqual(state().serviceCIDRs, FLAG);
    assert.equal(store.serviceCIDRs.size, 0);
    assert.equal(server.counters.list.ServiceCIDR + server.counters.watch.ServiceCIDR, 0);
  });

  it('a CIDR that does not parse costs only itself, and is listed among the skipped', async function () {
    server = await TestApiServer.create({ serviceCIDRVersion: 'v1' });
    server.create('ServiceCIDR', {
      metadata: { name: 'bad' },
      spec: { cidrs: ['10.0.0.0/33', '10.1.0.0/16'] },
    });
    const { state } = await watch(server);
    await cidrsOf(state, ['10.1.0.0/16'], 'the good CIDR');
    const s = state();
    assert.deepEqual(
      s.skipped.filter((x) => x.kind === 'ServiceCIDR'),
      [{ kind: 'ServiceCIDR', name: 'bad', reason: 'spec.cidrs: "10.0.0.0/33" is not a CIDR' }],
    );
  });
});

describe('file source: ServiceCIDRs', function () {
  it('reads kind ServiceCIDR (cluster-scoped: any namespace ignored) into the store', async function () {
    const dir = await mkdtemp(join(tmpdir(), 'knp-servicecidr-'));
    try {
      await writeFile(
        join(dir, 'ranges.yaml'),
        [
          'apiVersion: networking.k8s.io/v1',
          'kind: ServiceCIDR',
          'metadata: {name: kubernetes}',
          'spec: {cidrs: [10.96.0.0/16, "fd00:96::/112"]}',
          '---',
          'apiVersion: networking.k8s.io/v1beta1',
          'kind: ServiceCIDR',
          'metadata: {name: old}',
          'spec: {cidrs: [10.98.0.0/16]}',
          '',
        ].join('\n'),
      );
      const store = new ObjectStore();
      const source = new FileSource(dir);
      await source.start(store);
      await source.stop();
      assert.deepEqual([...store.serviceCIDRs.keys()].sort(), ['kubernetes', 'old']);
      const { state } = new StateBuilder({
        nodeName: NODE,
        nodeIPs: [],
        lbAlgorithm: 'random',
        serviceCIDRs: FLAG,
      }).update(store.modelSource(NODE));
      assert.deepEqual(state.serviceCIDRs, ['10.96.0.0/16', '10.98.0.0/16', 'fd00:96::/112']);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
