import assert from 'node:assert/strict';
import { silentLogger } from '../../src/log.js';
import { NftApplier } from '../../src/rules/applier.js';
import { createNft, type Nft } from '../../src/rules/nft/exec.js';
import { LAB, Lab } from '../../scripts/lab/index.js';
import { requireKernel } from '../support/capabilities.js';
import { labRules } from '../support/lab-rules.js';
import { service, slice } from '../support/objects.js';

/**
 * Sized sets in the real kernel (src/rules/set-capacity.ts): with no headroom, every set is
 * created exactly full, so any new element would be refused. The applier turns the partial sync
 * that would overfill a set into a full one, and a kernel refusal it did not foresee (an element
 * somebody else put in) into a full sync too, never into a held-out Service.
 */
describe('kernel: sized sets', function () {
  this.timeout(120_000);
  let lab: Lab;
  let nft: Nft;
  const pods = ['10.244.1.31', '10.244.1.32', '10.244.1.33'];

  before(async function () {
    requireKernel(this);
    lab = await Lab.create();
    for (const [i, ip] of pods.entries()) {
      await lab.addPod(`p${i + 1}`, { ip });
      await lab.serve(`p${i + 1}`, { tcp: [8080] });
    }
    await lab.addPod('client', { ip: '10.244.1.50' });
    nft = createNft({ netns: lab.nodeNs });
  });
  after(async () => lab?.destroy());

  /** Services web (10.96.0.80) and, with `api`, api (10.96.0.81), each with one endpoint. */
  const rules = (web: string, api?: string) =>
    labRules({
      services: [
        service('ns', 'web', { clusterIP: '10.96.0.80', ports: [{ port: 80 }] }),
        ...(api ? [service('ns', 'api', { clusterIP: '10.96.0.81', ports: [{ port: 80 }] })] : []),
      ],
      slices: [
        slice('ns', 'web-1', 'web', [{ port: 8080 }], [{ ip: web, nodeName: LAB.nodeName }]),
        ...(api
          ? [slice('ns', 'api-1', 'api', [{ port: 8080 }], [{ ip: api, nodeName: LAB.nodeName }])]
          : []),
      ],
    });

  const sizeOf = async (map: string): Promise<number | undefined> => {
    const m = /\bsize (\d+)/.exec(await lab.nftList(`map ip kube-nftproxy ${map}`));
    return m ? Number(m[1]) : undefined;
  };
  const answers = async (dst: string): Promise<string[]> => {
    const r = await lab.probe('client', { dst, port: 80, proto: 'tcp', count: 4 });
    assert.equal(r.timedOut + r.refused, 0, `every connection to ${dst} is answered`);
    return [...r.answers.keys()].sort();
  };

  it('grows a full set with a full sync, and keeps value changes partial', async () => {
    const applier = new NftApplier({
      nft,
      log: silentLogger(),
      capacity: { from: 1, headroom: 1, step: 1 },
    });
    assert.equal((await applier.sync(rules(pods[0]!))).full, true);
    assert.equal(await sizeOf('service-ips'), 1);
    assert.deepEqual(await answers('10.96.0.80'), ['p1']);

    // A second Service needs a second element in service-ips: nft would refuse it.
    const grown = await applier.sync(rules(pods[0]!, pods[1]!));
    assert.equal(grown.full, true, 'the partial sync became a full one');
    assert.equal(await sizeOf('service-ips'), 2);
    assert.deepEqual(await answers('10.96.0.81'), ['p2']);
    assert.deepEqual(await answers('10.96.0.80'), ['p1']);

    // A new endpoint for web replaces one element of backends-tcp: the count stays, so partial.
    const moved = await applier.sync(rules(pods[2]!, pods[1]!));
    assert.equal(moved.full, false);
    assert.match(applier.lastTransaction, /backends-tcp/);
    assert.deepEqual(await answers('10.96.0.80'), ['p3']);
  });

  it('answers a kernel refusal for a full set with a full sync, not by blaming a Service', async () => {
    const applier = new NftApplier({
      nft,
      log: silentLogger(),
      capacity: { from: 1, headroom: 2, step: 1 },
    });
    await applier.sync(rules(pods[0]!));
    assert.equal(await sizeOf('service-ips'), 2);
    // Somebody else takes the room the ledger counts on.
    await lab.nft('add element ip kube-nftproxy service-ips { 10.96.0.99 . tcp . 80 : goto reject-chain }');
    const result = await applier.sync(rules(pods[0]!, pods[1]!));
    assert.equal(result.full, true);
    const listed = await lab.nftList('map ip kube-nftproxy service-ips');
    assert.doesNotMatch(listed, /10\.96\.0\.99/, "the full sync replaced the intruder's element");
    assert.deepEqual(await answers('10.96.0.81'), ['p2']);
  });
});
