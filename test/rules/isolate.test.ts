import assert from 'node:assert/strict';
import { ErrorCodes, ProxyError } from '../../src/errors.js';
import { buildState } from '../../src/model/build-state.js';
import type { ProxyState } from '../../src/model/types.js';
import { fullTransaction } from '../../src/rules/diff.js';
import { compile, type CompileConfig } from '../../src/rules/compile.js';
import { withoutServices } from '../../src/rules/held-out.js';
import {
  findCulprits,
  isolateRefusal,
  isRefusal,
  refusalReason,
  suspectsOf,
} from '../../src/rules/isolate.js';
import { FakeNft } from '../../src/rules/nft/fake.js';
import type { Operation } from '../../src/rules/nft/types.js';
import { service, slice } from '../support/objects.js';

const CONFIG: CompileConfig = {
  table: 'kube-nftproxy',
  clusterCIDRs: ['10.244.0.0/16'],
  masqueradeAll: false,
  serviceCIDRs: ['10.96.0.0/16'],
  nodePortIPs: { ipv4: ['192.168.0.10'], ipv6: [] },
};

/** `n` Services `ns/svc-000`… with ClusterIP 10.96.<i/250>.<i%250+1> and two endpoints each. */
function cluster(n: number): { state: ProxyState; vip: (i: number) => string; name: (i: number) => string } {
  const vip = (i: number): string => `10.96.${Math.floor(i / 250)}.${(i % 250) + 1}`;
  const name = (i: number): string => `svc-${String(i).padStart(3, '0')}`;
  const services = [];
  const slices = [];
  for (let i = 0; i < n; i++) {
    services.push(service('ns', name(i), { clusterIP: vip(i), ports: [{ name: 'http', port: 80 }] }));
    slices.push(
      slice(
        'ns',
        `${name(i)}-a`,
        name(i),
        [{ name: 'http', port: 8080 }],
        [{ ip: `10.244.${Math.floor(i / 250)}.${(i % 250) + 1}` }, { ip: `10.244.9.${(i % 250) + 1}` }],
      ),
    );
  }
  const state = buildState(
    { services, slices },
    { nodeName: 'node-a', nodeIPs: ['192.168.0.10'], lbAlgorithm: 'random' },
  );
  return { state, vip, name };
}

/** The element operations that carry one of `vips` in their key: what the Fake is told to refuse. */
const refusing =
  (vips: string[]) =>
  (op: Operation): string | undefined => {
    const o = op.object;
    if (o.kind !== 'element' || op.verb !== 'add') return undefined;
    return vips.some((v) => o.key.startsWith(`${v} `) || o.key === v)
      ? 'Could not process rule: File exists'
      : undefined;
  };

/** The search as the daemon runs it after a refused full sync: every Service a suspect. */
async function isolate(state: ProxyState, nft: FakeNft, refused?: string) {
  const services = [...new Set(state.ports.map((sp) => sp.service))].sort();
  return isolateRefusal({
    candidates: services,
    transaction: (excluded) => fullTransaction(compile(withoutServices(state, excluded), CONFIG)),
    check: (tx) => nft.check(tx),
    ...(refused === undefined ? {} : { refused }),
  });
}

/** How real nft reports a refused element: location, message, the source line, carets under the element. */
function nftRefusal(element: string, set = 'backends-tcp'): ProxyError {
  const line = `add element ip kube-nftproxy ${set} { 10.96.0.1 . 80 . 0 : 10.244.0.1 . 8080, ${element} : 10.244.9.9 . 8080 }`;
  const at = line.indexOf(element);
  return new ProxyError(
    ErrorCodes.NFT_EXISTS,
    [
      `nft -f - failed: /dev/stdin:40:${at + 1}-${at + element.length}: Error: Could not process rule: File exists`,
      line,
      `${' '.repeat(at)}${'^'.repeat(element.length)}`,
    ].join('\n'),
  );
}

describe('isolate: finding the Services nft refuses', () => {
  it('finds one culprit, and the rest then commits with every other Service', async () => {
    const { state, vip } = cluster(3);
    const nft = new FakeNft();
    nft.refuse(refusing([vip(1)]));
    await assert.rejects(nft.run(fullTransaction(compile(state, CONFIG))), isRefusal);
    const result = await isolate(state, nft);
    assert.equal(result.stuck, undefined);
    assert.deepEqual([...result.culprits.keys()], ['ns/svc-001']);
    assert.match(result.culprits.get('ns/svc-001')!, /File exists/);
    await nft.run(fullTransaction(compile(withoutServices(state, new Set(result.culprits.keys())), CONFIG)));
    const dump = nft.dump();
    for (const i of [0, 2])
      assert.match(dump, new RegExp(`element ip kube-nftproxy cluster-ips \\{ ${vip(i)} \\}`));
    assert.doesNotMatch(dump, new RegExp(`${vip(1)} `));
  });

  it('finds two culprits', async () => {
    const { state, vip } = cluster(8);
    const nft = new FakeNft();
    nft.refuse(refusing([vip(2), vip(7)]));
    const result = await isolate(state, nft);
    assert.deepEqual([...result.culprits.keys()], ['ns/svc-002', 'ns/svc-007']);
  });

  it('finds one culprit among 300 in about 2·log2(n) checks', async () => {
    const { state, vip } = cluster(300);
    const nft = new FakeNft();
    nft.refuse(refusing([vip(123)]));
    const result = await isolate(state, nft, 'known refusal');
    assert.deepEqual([...result.culprits.keys()], ['ns/svc-123']);
    // base, two halves per level (9 levels), the rest: 2 + 2·ceil(log2 300).
    assert.ok(result.checks <= 2 + 2 * Math.ceil(Math.log2(300)), `${result.checks} checks`);
  });

  it('holds nothing out when nothing is refused (a refusal that does not come back)', async () => {
    const { state } = cluster(5);
    const nft = new FakeNft();
    const result = await isolate(state, nft, 'gone by now');
    assert.equal(result.stuck, undefined);
    assert.equal(result.culprits.size, 0);
  });

  it('confirms a lone suspect with a check: a refusal that does not come back holds nothing out', async () => {
    const { state } = cluster(1);
    const result = await isolate(state, new FakeNft(), 'nft session died');
    assert.equal(result.culprits.size, 0);
  });

  it('is stuck, holding nothing out, when even the rules without any Service are refused', async () => {
    const { state } = cluster(5);
    const nft = new FakeNft();
    nft.refuse(() => 'Could not process rule: No buffer space available');
    const result = await isolate(state, nft);
    assert.equal(result.culprits.size, 0);
    assert.match(result.stuck!, /No buffer space/);
    assert.equal(result.checks, 1);
  });

  it('holds out every Service when each one is refused on its own', async () => {
    const { state, vip } = cluster(4);
    const nft = new FakeNft();
    nft.refuse(refusing([0, 1, 2, 3].map(vip)));
    const result = await isolate(state, nft);
    assert.equal(result.stuck, undefined);
    assert.deepEqual([...result.culprits.keys()], ['ns/svc-000', 'ns/svc-001', 'ns/svc-002', 'ns/svc-003']);
  });

  it('holds out the later of two Services refused only together, and keeps the earlier', async () => {
    const candidates = ['a', 'b', 'c', 'd', 'e', 'f'];
    // b and e collide (two claims on one element); each is fine without the other.
    const result = await findCulprits(candidates, async (excluded) =>
      !excluded.has('b') && !excluded.has('e') ? 'File exists' : undefined,
    );
    assert.equal(result.stuck, undefined);
    assert.deepEqual([...result.culprits.keys()], ['e']);
  });

  it('mixes both kinds: a Service refused alone, and a pair refused together', async () => {
    const candidates = Array.from({ length: 20 }, (_, i) => `s${String(i).padStart(2, '0')}`);
    const result = await findCulprits(candidates, async (excluded) => {
      if (!excluded.has('s03')) return 'bad alone';
      if (!excluded.has('s05') && !excluded.has('s17')) return 'collision';
      return undefined;
    });
    assert.deepEqual(
      [...result.culprits],
      [
        ['s03', 'bad alone'],
        ['s17', 'collision'],
      ],
    );
  });
});

describe('isolate: refusalReason and suspectsOf', () => {
  it('names the last Service by key with the element the carets mark (two claims on one key: the later is refused)', () => {
    const { state, vip } = cluster(3);
    const rs = compile(state, CONFIG);
    // Two ports with the same frontend key: the second one, by key, is what nft refuses.
    const twin = {
      ...rs.fragments[2]!,
      elements: rs.fragments[2]!.elements.map((el) => ({ ...el, key: el.key.replace(vip(2), vip(0)) })),
    };
    const clash = { ...rs, fragments: [rs.fragments[0]!, rs.fragments[1]!, twin] };
    assert.deepEqual(suspectsOf(nftRefusal(`${vip(0)} . 80 . 0`), clash, state), ['ns/svc-002']);
    // After a partial sync only the Services it changed are suspects: the other was in the kernel.
    assert.deepEqual(suspectsOf(nftRefusal(`${vip(0)} . 80 . 0`), clash, state, new Set(['ns/svc-000'])), [
      'ns/svc-000',
    ]);
    assert.deepEqual(suspectsOf(nftRefusal('192.0.2.99 . 80 . 0'), rs, state), []);
    assert.deepEqual(suspectsOf(new Error('line 3: no carets here'), rs, state), []);
  });

  it('names only the Service with the marked key in the set of the refused line', () => {
    const { state, vip } = cluster(3);
    const rs = compile(state, CONFIG);
    // The same frontend ip . port . slot as svc-000's, in the UDP map: a UDP port of that address.
    const udp = {
      ...rs.fragments[2]!,
      elements: rs.fragments[2]!.elements.map((el) =>
        el.set === 'backends-tcp' ? { ...el, set: 'backends-udp', key: el.key.replace(vip(2), vip(0)) } : el,
      ),
    };
    const both = { ...rs, fragments: [rs.fragments[0]!, rs.fragments[1]!, udp] };
    assert.deepEqual(suspectsOf(nftRefusal(`${vip(0)} . 80 . 0`), both, state), ['ns/svc-000']);
    assert.deepEqual(suspectsOf(nftRefusal(`${vip(0)} . 80 . 0`, 'backends-udp'), both, state), [
      'ns/svc-002',
    ]);
  });

  it("keeps nft's first error line without its location, and the element its carets point at", () => {
    const err = new ProxyError(
      ErrorCodes.NFT_EXISTS,
      [
        'nft -f - failed: /dev/stdin:3:56-87: Error: Could not process rule: File exists',
        'add element ip t fa { 1.2.3.4 . tcp . 80 . 10.0.0.0/8, 1.2.3.4 . tcp . 80 . 10.1.0.0/16 }',
        '                                                       ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^',
      ].join('\n'),
    );
    assert.equal(refusalReason(err), 'Could not process rule: File exists: 1.2.3.4 . tcp . 80 . 10.1.0.0/16');
  });

  it("takes the Fake's line as it is, and bounds a long one", () => {
    assert.equal(refusalReason(new Error('line 3: add element: nope')), 'line 3: add element: nope');
    assert.equal(refusalReason(new Error('x'.repeat(1000))).length, 300);
  });

  it('tells a refusal from nft that cannot run', () => {
    assert.equal(isRefusal(new ProxyError(ErrorCodes.NFT_REJECTED, 'x')), true);
    assert.equal(isRefusal(new ProxyError(ErrorCodes.NFT_EXISTS, 'x')), true);
    assert.equal(isRefusal(new ProxyError(ErrorCodes.NFT_PERMISSION, 'x')), false);
    assert.equal(isRefusal(new ProxyError(ErrorCodes.NFT_BINARY_MISSING, 'x')), false);
  });
});
