import assert from 'node:assert/strict';
import { Daemon } from '../src/daemon.js';
import { silentLogger } from '../src/log.js';
import { FakeNft } from '../src/rules/nft/fake.js';
import { allElements } from '../src/rules/ruleset.js';
import { FakeClock } from './support/fake-clock.js';
import { node, service, slice } from './support/objects.js';
import { HandSource, testDaemonConfig } from './support/daemon-harness.js';

/**
 * --nodeport-addresses follows the host: its addresses (injected here) are read again at every
 * full sync and when the Node object changes, so an address added after the start serves
 * NodePorts and one removed stops.
 */
describe('Daemon: the host addresses behind --nodeport-addresses are read again', () => {
  it('at a Node change and at the hourly full sync, not at every sync', async () => {
    const NODE = 'node-a';
    const clock = new FakeClock();
    const source = new HandSource();
    let host = ['192.168.0.10'];
    let reads = 0;
    const config = testDaemonConfig(NODE, ['--nodeport-addresses', '192.168.0.0/16']);
    const daemon = new Daemon(config, {
      log: silentLogger(),
      env: { localAddresses: host, readLocalAddresses: () => (reads++, host) },
      nft: new FakeNft(),
      source,
      clock,
    });
    /** The addresses the NodePort is programmed on. */
    const served = (): string[] =>
      [...allElements(daemon.applier.applied!)]
        .filter((el) => el.set === 'service-ips' && el.key.endsWith(' . tcp . 30080'))
        .map((el) => el.key.split(' ')[0]!)
        .sort();
    await daemon.start();
    try {
      const h = source.handler!;
      const eps = (n: number) =>
        Array.from({ length: n }, (_, i) => ({ ip: `10.244.1.${i + 2}`, nodeName: NODE }));
      h.upsert('Node', node(NODE, ['192.168.0.10']));
      h.upsert(
        'Service',
        service('default', 'web', {
          type: 'NodePort',
          clusterIP: '10.96.0.1',
          ports: [{ port: 80, nodePort: 30080 }],
        }),
      );
      h.upsert('EndpointSlice', slice('default', 'web-a', 'web', [{ port: 8080 }], eps(1)));
      h.synced();
      await clock.advance(0);
      assert.deepEqual(served(), ['192.168.0.10']);

      // An address comes; an endpoint change alone does not read the host again.
      host = ['192.168.0.10', '192.168.0.11'];
      const before = reads;
      h.upsert('EndpointSlice', slice('default', 'web-a', 'web', [{ port: 8080 }], eps(2)));
      await clock.advance(0);
      assert.equal(reads, before, 'not read at a partial sync');
      assert.deepEqual(served(), ['192.168.0.10']);

      // The Node object changes: read again, the new address serves.
      h.upsert('Node', node(NODE, ['192.168.0.10'], { changed: 'yes' }));
      await clock.advance(0);
      assert.deepEqual(served(), ['192.168.0.10', '192.168.0.11']);

      // An address goes; the hourly full sync notices.
      host = ['192.168.0.11'];
      h.upsert('EndpointSlice', slice('default', 'web-a', 'web', [{ port: 8080 }], eps(3)));
      await clock.advance(0);
      assert.deepEqual(served(), ['192.168.0.10', '192.168.0.11'], 'not yet: no full sync is due');
      await clock.advance(60 * 60 * 1000);
      assert.deepEqual(served(), ['192.168.0.11']);
    } finally {
      await daemon.stop();
    }
  });
});
