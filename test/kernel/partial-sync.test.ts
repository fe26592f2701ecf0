import assert from 'node:assert/strict';
import { silentLogger } from '../../src/log.js';
import { NftApplier } from '../../src/rules/applier.js';
import { createNft } from '../../src/rules/nft/exec.js';
import { LAB, Lab } from '../../scripts/lab/index.js';
import { requireKernel } from '../support/capabilities.js';
import { deleteStaleFlows, labRules } from '../support/lab-rules.js';
import { service, slice } from '../support/objects.js';

/**
 * Partial syncs against the real kernel: element operations only, including the one that
 * needs a new per-N chain (nft 1.0.6 refuses some rules that use an existing map: see
 * src/rules/layout.ts), and UDP through the same map as TCP.
 */
describe('kernel: partial syncs', function () {
  this.timeout(120_000);
  let lab: Lab;
  const pods = ['10.244.1.21', '10.244.1.22', '10.244.1.23'];

  before(async function () {
    requireKernel(this);
    lab = await Lab.create();
    for (const [i, ip] of pods.entries()) {
      await lab.addPod(`p${i + 1}`, { ip });
      await lab.serve(`p${i + 1}`, { tcp: [8080], udp: [5353] });
    }
    await lab.addPod('client', { ip: '10.244.1.50' });
  });
  after(async () => lab?.destroy());

  const objects = (dnsEndpoints: string[]) => ({
    services: [
      service('ns', 'dns', { clusterIP: '10.96.0.53', ports: [{ port: 53, protocol: 'UDP' }] }),
      service('ns', 'web', { clusterIP: '10.96.0.80', ports: [{ port: 80 }] }),
    ],
    slices: [
      slice(
        'ns',
        'dns-1',
        'dns',
        [{ port: 5353, protocol: 'UDP' }],
        dnsEndpoints.map((ip) => ({ ip, nodeName: LAB.nodeName })),
      ),
      slice('ns', 'web-1', 'web', [{ port: 8080 }], [{ ip: pods[0]!, nodeName: LAB.nodeName }]),
    ],
  });
  const rules = (dnsEndpoints: string[]) => labRules(objects(dnsEndpoints));

  it('adds a new per-N chain in a partial sync and UDP follows it', async () => {
    const nft = createNft({ netns: lab.nodeNs });
    const applier = new NftApplier({ nft, log: silentLogger() });
    assert.equal((await applier.sync(rules([pods[1]!]))).full, true);
    const one = await lab.probe('client', { dst: '10.96.0.53', port: 53, proto: 'udp' });
    assert.deepEqual([...one.answers.keys()], ['p2']);

    const result = await applier.sync(rules(pods));
    assert.equal(result.full, false);
    assert.doesNotMatch(applier.lastTransaction, /10\.96\.0\.80/, 'the other Service is not touched');
    assert.match(applier.lastTransaction, /add chain ip kube-nftproxy clusterip-3/);
    const three = await lab.probe('client', { dst: '10.96.0.53', port: 53, proto: 'udp' });
    assert.deepEqual([...three.answers.keys()].sort(), ['p1', 'p2', 'p3']);
    assert.equal(three.timedOut + three.refused, 0);
    const web = await lab.probe('client', { dst: '10.96.0.80', port: 80, proto: 'tcp', count: 5 });
    assert.deepEqual([...web.answers.keys()], ['p1']);

    // and back down: the chain that nobody uses any more goes away
    await applier.sync(rules([pods[2]!]));
    assert.match(applier.lastTransaction, /delete chain ip kube-nftproxy clusterip-3/);
    // The earlier probes' UDP flows to p1 and p2 go, as the daemon's cleanup would delete them.
    await deleteStaleFlows(lab, objects([pods[2]!]));
    const back = await lab.probe('client', { dst: '10.96.0.53', port: 53, proto: 'udp', count: 10 });
    assert.deepEqual([...back.answers.keys()], ['p3']);
  });
});
