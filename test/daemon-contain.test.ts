import assert from 'node:assert/strict';
import { Daemon } from '../src/daemon.js';
import { silentLogger } from '../src/log.js';
import { FakeNft } from '../src/rules/nft/fake.js';
import type { Operation } from '../src/rules/nft/types.js';
import type { SourceHandler } from '../src/watch/source.js';
import { FakeClock } from './support/fake-clock.js';
import { node, service, slice } from './support/objects.js';
import { HandSource, testDaemonConfig } from './support/daemon-harness.js';

/**
 * The daemon when nft refuses one Service's rules (issue #11), over the Fake told to refuse
 * any element of a marked ClusterIP: the Service is held out with its reason, every other
 * change still applies, /healthz stays 200, and a change of its objects tries it again.
 */
describe('Daemon: a Service nft refuses costs only itself', () => {
  const NODE = 'node-a';
  let clock: FakeClock;
  let nft: FakeNft;
  let h: SourceHandler;
  let daemon: Daemon;
  /** ClusterIPs whose elements the Fake refuses. */
  let refused: string[] = [];

  const get = async (
    server: 'healthz' | 'metrics',
    path: string,
  ): Promise<{ status: number; body: string }> => {
    const res = await fetch(`http://127.0.0.1:${daemon.servers![server].port}${path}`);
    return { status: res.status, body: await res.text() };
  };
  const sample = async (name: string): Promise<number | undefined> => {
    const { body } = await get('metrics', '/metrics');
    const line = body.split('\n').find((l) => l.startsWith(`${name} `));
    return line === undefined ? undefined : Number(line.slice(name.length + 1));
  };
  const skipped = async (): Promise<Array<{ kind: string; name: string; reason: string }>> =>
    JSON.parse((await get('metrics', '/debug/services')).body).skipped;

  const svc = (name: string, vip: string, labels?: Record<string, string>) =>
    service(
      'ns',
      name,
      { clusterIP: vip, ports: [{ name: 'http', port: 80, targetPort: 8080 }] },
      labels ? { labels } : {},
    );
  const eps = (name: string, ips: string[]) =>
    slice(
      'ns',
      `${name}-a`,
      name,
      [{ name: 'http', port: 8080 }],
      ips.map((ip) => ({ ip, nodeName: NODE })),
    );

  beforeEach(async () => {
    clock = new FakeClock();
    nft = new FakeNft();
    refused = [];
    nft.refuse((op: Operation) => {
      const o = op.object;
      if (o.kind !== 'element' || op.verb !== 'add') return undefined;
      return refused.some((vip) => o.key === vip || o.key.startsWith(`${vip} `))
        ? 'Could not process rule: File exists'
        : undefined;
    });
    const source = new HandSource();
    const config = testDaemonConfig(NODE, ['--sync-period', '30s']);
    daemon = new Daemon(config, {
      log: silentLogger(),
      env: { localAddresses: ['10.0.0.1'] },
      nft,
      source,
      clock,
    });
    await daemon.start();
    h = source.handler!;
    h.upsert('Node', node(NODE, ['10.0.0.1']));
    for (const [name, vip, ip] of [
      ['web', '10.96.0.10', '10.244.1.11'],
      ['db', '10.96.0.11', '10.244.1.21'],
    ] as const) {
      h.upsert('Service', svc(name, vip));
      h.upsert('EndpointSlice', eps(name, [ip]));
    }
  });

  afterEach(async () => {
    await daemon.stop();
  });

  it('holds out a Service refused in the first full sync, applies the rest, and stays healthy', async () => {
    refused = ['10.96.0.11'];
    h.synced();
    await clock.advance(0);
    assert.equal(daemon.syncs, 1);
    const dump = nft.dump();
    assert.match(dump, /10\.96\.0\.10 \. 80 \. 0 : 10\.244\.1\.11 \. 8080/);
    assert.doesNotMatch(dump, /10\.96\.0\.11/);
    const held = (await skipped()).filter((s) => s.name === 'ns/db');
    assert.deepEqual(
      held.map((s) => s.kind),
      ['Service'],
    );
    assert.match(held[0]!.reason, /nft refused its rules: .*File exists/);
    assert.equal((await get('healthz', '/healthz')).status, 200);
    assert.equal(await sample('kube_nftproxy_services_held_out'), 1);
    assert.equal(await sample('kube_nftproxy_sync_failures_total'), 0);
    // kube-proxy's count says nft refused the sync's transaction, though the rest was applied.
    for (const f of ['IPv4', 'IPv6'])
      assert.equal(
        await sample(`kubeproxy_sync_proxy_rules_nftables_sync_failures_total{ip_family="${f}"}`),
        1,
      );

    // Another Service's change still reaches the rules, as a partial sync.
    h.upsert('EndpointSlice', eps('web', ['10.244.1.11', '10.244.1.12']));
    await clock.advance(0);
    assert.match(nft.dump(), /10\.244\.1\.12 \. 8080/);
    assert.doesNotMatch(daemon.applier.lastTransaction, /table ip/);
    assert.equal(await sample('kube_nftproxy_services_held_out'), 1);

    // Fixed (here: nft stops refusing) and changed: tried again, and programmed.
    refused = [];
    h.upsert('Service', svc('db', '10.96.0.11', { fixed: 'yes' }));
    await clock.advance(0);
    assert.match(nft.dump(), /10\.96\.0\.11 \. 80 \. 0 : 10\.244\.1\.21 \. 8080/);
    assert.deepEqual(
      (await skipped()).filter((s) => s.name === 'ns/db'),
      [],
    );
    assert.equal(await sample('kube_nftproxy_services_held_out'), 0);
  });

  it('holds out a Service whose change nft refuses in a partial sync; the others keep their rules', async () => {
    h.synced();
    await clock.advance(0);
    refused = ['10.96.0.12'];
    h.upsert('Service', svc('cache', '10.96.0.12'));
    h.upsert('EndpointSlice', eps('cache', ['10.244.1.31']));
    h.upsert('EndpointSlice', eps('web', ['10.244.1.13']));
    await clock.advance(0);
    const dump = nft.dump();
    assert.match(dump, /10\.96\.0\.10 \. 80 \. 0 : 10\.244\.1\.13 \. 8080/);
    assert.match(dump, /10\.96\.0\.11 \. 80 \. 0 : 10\.244\.1\.21 \. 8080/);
    assert.doesNotMatch(dump, /10\.96\.0\.12/);
    assert.deepEqual(
      (await skipped()).filter((s) => s.reason.startsWith('nft refused')).map((s) => s.name),
      ['ns/cache'],
    );
    assert.equal((await get('healthz', '/healthz')).status, 200);

    // Still refused after its endpoints change: held out again, the rest still applied.
    h.upsert('EndpointSlice', eps('cache', ['10.244.1.32']));
    h.upsert('EndpointSlice', eps('db', ['10.244.1.22']));
    await clock.advance(0);
    assert.match(nft.dump(), /10\.244\.1\.22 \. 8080/);
    assert.doesNotMatch(nft.dump(), /10\.96\.0\.12/);
    assert.equal(await sample('kube_nftproxy_services_held_out'), 1);
  });

  it('tries every held-out Service again at the hourly full sync', async () => {
    refused = ['10.96.0.11'];
    h.synced();
    await clock.advance(0);
    assert.doesNotMatch(nft.dump(), /10\.96\.0\.11/);
    // Still refused half an hour on (periodic syncs, nothing changed): still held out.
    await clock.advance(30 * 60_000);
    assert.equal(await sample('kube_nftproxy_services_held_out'), 1);
    // What refused it is gone (another Service's claim, say); its objects never changed.
    refused = [];
    await clock.advance(31 * 60_000);
    assert.match(nft.dump(), /10\.96\.0\.11 \. 80 \. 0 : 10\.244\.1\.21 \. 8080/);
    assert.equal(await sample('kube_nftproxy_services_held_out'), 0);
  });

  it('stays unhealthy when nft refuses even the rules without any Service', async () => {
    nft.refuse(() => 'Could not process rule: No buffer space available');
    h.synced();
    await clock.advance(0);
    assert.equal(daemon.syncs, 0);
    assert.equal(await sample('kube_nftproxy_services_held_out'), 0);
    await clock.advance(2 * 30_000);
    assert.equal((await get('healthz', '/healthz')).status, 503);
  });
});
