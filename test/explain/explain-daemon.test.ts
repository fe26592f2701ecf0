import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { Daemon } from '../../src/daemon.js';
import { FakeNft } from '../../src/rules/nft/fake.js';
import type { Operation } from '../../src/rules/nft/types.js';
import { startHandDaemon } from '../support/daemon-harness.js';
import { FakeClock } from '../support/fake-clock.js';
import { service, slice } from '../support/objects.js';
import { runProxy } from '../support/proxy.js';

/**
 * The real `kube-nftproxy explain` command (src/cli.ts, spawned) against a real Daemon's metrics
 * server, the daemon fed by hand over the Fake nft: what it prints comes from the daemon's own
 * /debug/services, with a contested frontend and a Service nft refused.
 */
describe('kube-nftproxy explain against a running daemon', function () {
  this.timeout(120_000);
  const NODE = 'node-a';
  let daemon: Daemon;
  let address: string;

  before(async () => {
    const clock = new FakeClock();
    const nft = new FakeNft();
    // nft refuses shop/db's elements: the daemon holds it out with nft's reason.
    nft.refuse((op: Operation) =>
      op.verb === 'add' && op.object.kind === 'element' && op.object.key.startsWith('10.96.0.12 ')
        ? 'Could not process rule: File exists'
        : undefined,
    );
    const started = await startHandDaemon({ node: NODE, flags: ['--sync-period', '30s'], nft, clock });
    daemon = started.daemon;
    const h = started.handler;
    // shop/old is older and claims 203.0.113.7:80 too: shop/web loses that frontend.
    h.upsert(
      'Service',
      service(
        'shop',
        'old',
        { clusterIP: '10.96.0.9', externalIPs: ['203.0.113.7'], ports: [{ name: 'http', port: 80 }] },
        { created: '2020-01-01T00:00:00Z' },
      ),
    );
    h.upsert(
      'Service',
      service(
        'shop',
        'web',
        {
          type: 'NodePort',
          clusterIP: '10.96.0.10',
          externalIPs: ['203.0.113.7', '203.0.113.8'],
          externalTrafficPolicy: 'Local',
          ports: [{ name: 'http', port: 80, targetPort: 8080, nodePort: 30080 }],
        },
        { created: '2024-01-01T00:00:00Z' },
      ),
    );
    h.upsert(
      'EndpointSlice',
      slice(
        'shop',
        'web-a',
        'web',
        [{ name: 'http', port: 8080 }],
        [
          { ip: '10.244.1.11', nodeName: NODE },
          { ip: '10.244.2.12', nodeName: 'node-b' },
          { ip: '10.244.2.13', nodeName: 'node-b', ready: false },
        ],
      ),
    );
    h.upsert('Service', service('shop', 'db', { clusterIP: '10.96.0.12', ports: [{ port: 5432 }] }));
    h.upsert(
      'EndpointSlice',
      slice('shop', 'db-a', 'db', [{ port: 5432 }], [{ ip: '10.244.1.21', nodeName: NODE }]),
    );
    h.synced();
    await clock.advance(0);
    assert.equal(daemon.syncs, 1);
    address = `127.0.0.1:${daemon.servers!.metrics.port}`;
  });

  after(async () => {
    await daemon?.stop();
  });

  it("prints the Service's frontends, chosen endpoints and the frontend it lost, with the reason", async () => {
    const r = await runProxy(undefined, ['explain', 'shop/web', '--address', address]);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.split('\n');
    assert.equal(lines[0], `Service shop/web on node ${NODE}`);
    for (const l of [
      '    clusterIP   10.96.0.10:80',
      '    externalIP  203.0.113.8:80',
      '    nodePort    10.0.0.1:30080',
      '  Cluster traffic: 2 endpoints',
      '    10.244.1.11:8080  ready, on this node',
      '    10.244.2.12:8080  ready',
      '  Local traffic (externalTrafficPolicy Local): 1 endpoint',
      '  Not chosen: 1 endpoint',
      '    10.244.2.13:8080  not ready',
    ])
      assert.ok(lines.includes(l), `no line ${JSON.stringify(l)} in\n${r.stdout}`);
    // The lost frontend is not listed as one, and is explained under Skipped.
    assert.ok(!lines.includes('    externalIP  203.0.113.7:80'), r.stdout);
    const skipped = lines
      .slice(lines.indexOf('Skipped:') + 1)
      .filter((l) => l.startsWith('  Service shop/web'));
    assert.equal(skipped.length, 1, r.stdout);
    assert.match(
      skipped[0]!,
      /\[frontend owned elsewhere\]: externalIP 203\.0\.113\.7 tcp\/80 is shop\/old's externalIP \(the older Service keeps it\)/,
    );
  });

  it("explains a Service nft refused: held out, with nft's reason", async () => {
    const r = await runProxy(undefined, ['explain', 'shop/db', `--address=${address}`]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^Skipped:\n {2}Service shop\/db: nft refused its rules: .*File exists/m);
  });

  it('exits 6 naming the Service the daemon does not know', async () => {
    const r = await runProxy(undefined, ['explain', 'shop/nope', '--address', address]);
    assert.equal(r.code, 6, r.stderr);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /^kube-nftproxy: the daemon at 127\.0\.0\.1:\d+ knows no Service shop\/nope/);
  });

  it('exits 1 naming the address when no daemon listens there', async () => {
    // A port that was free a moment ago: nothing listens on it now.
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const port = (probe.address() as { port: number }).port;
    await new Promise<void>((r) => probe.close(() => r()));
    const r = await runProxy(undefined, ['explain', 'shop/web', '--address', `127.0.0.1:${port}`]);
    assert.equal(r.code, 1, r.stderr);
    assert.equal(
      r.stderr.split('\n')[0],
      `kube-nftproxy: cannot read /debug/services from the daemon at 127.0.0.1:${port}: connection refused (is kube-nftproxy running on this node? its --metrics-bind-address is where to ask: pass it as --address HOST:PORT)`,
    );
  });

  it('exits 2 on a name that is not NAMESPACE/NAME, without asking the daemon', async () => {
    const r = await runProxy(undefined, ['explain', 'web']);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /explain: "web" is not NAMESPACE\/NAME/);
  });
});
