import assert from 'node:assert/strict';
import type { V1Service, V1ServiceCIDR } from '@kubernetes/client-node';
import { StateBuilder, type ModelSource } from '../../src/model/state-builder.js';
import { fullTransaction, partialTransaction } from '../../src/rules/diff.js';
import { Compiler } from '../../src/rules/compile.js';
import { FakeNft } from '../../src/rules/nft/fake.js';
import { service } from '../support/objects.js';
import type { CompileConfig } from '../../src/rules/compile.js';

const CONFIG: CompileConfig = {
  table: 'kube-nftproxy',
  clusterCIDRs: ['10.244.0.0/16'],
  masqueradeAll: false,
  serviceCIDRs: ['10.96.0.0/16'],
  nodePortIPs: { ipv4: ['192.0.2.1'], ipv6: [] },
};

const range = (name: string, cidrs: string[]): V1ServiceCIDR => ({ metadata: { name }, spec: { cidrs } });

function source(ranges: V1ServiceCIDR[]): ModelSource {
  const services = new Map<string, V1Service>([
    ['ns/a', service('ns', 'a', { clusterIP: '10.96.0.1', ports: [{ port: 80 }] })],
  ]);
  return { services, slicesOf: () => [], sliceServices: () => [], serviceCIDRs: ranges };
}

const lines = (dump: string, set: string): string[] =>
  dump
    .split('\n')
    .filter(
      (l) =>
        l.includes(`element ip kube-nftproxy ${set} `) || l.includes(`element ip6 kube-nftproxy ${set} `),
    );

describe('compile: service CIDRs from ServiceCIDR objects', () => {
  it('fills the service-cidrs set, and a change of ranges is element operations on it only', async () => {
    const builder = new StateBuilder({
      nodeName: 'n',
      nodeIPs: ['192.0.2.1'],
      lbAlgorithm: 'random',
      serviceCIDRs: CONFIG.serviceCIDRs,
    });
    const compiler = new Compiler(CONFIG);
    const fake = new FakeNft();

    const s1 = builder.update(source([range('kubernetes', ['10.96.0.0/16', 'fd00:96::/112'])]), []);
    const rs1 = compiler.compile(s1.state, s1.delta).ruleset;
    await fake.run(fullTransaction(rs1));
    assert.deepEqual(lines(fake.dump(), 'service-cidrs'), [
      'add element ip kube-nftproxy service-cidrs { 10.96.0.0/16 }',
      'add element ip6 kube-nftproxy service-cidrs { fd00:96::/112 }',
    ]);

    // A second range, overlapping the first (merged), and the IPv6 one gone.
    const s2 = builder.update(
      source([range('kubernetes', ['10.96.0.0/16']), range('more', ['10.96.0.0/15', '172.30.0.0/16'])]),
      [],
    );
    const { ruleset: rs2, delta: d2 } = compiler.compile(s2.state, s2.delta);
    assert.ok(d2, 'compiled from the last ruleset, not from nothing');
    assert.equal(rs2.chains, rs1.chains, 'the same chains: none rebuilt');
    assert.equal(rs2.sets, rs1.sets, 'the same sets: none recreated');
    const tx = partialTransaction(rs1, rs2, d2);
    assert.deepEqual(
      tx.operations.map(
        (op) =>
          `${op.verb} ${op.object.kind} ${op.object.family} ${'set' in op.object ? op.object.set : ''} ${'key' in op.object ? op.object.key : ''}`,
      ),
      [
        // Per set, the old range goes before the new one comes: interval sets refuse overlaps.
        'delete element ip service-cidrs 10.96.0.0/16',
        'add element ip service-cidrs 10.96.0.0/15',
        'add element ip service-cidrs 172.30.0.0/16',
        'delete element ip6 service-cidrs fd00:96::/112',
      ],
    );
    await fake.run(tx);
    assert.deepEqual(lines(fake.dump(), 'service-cidrs'), [
      'add element ip kube-nftproxy service-cidrs { 10.96.0.0/15 }',
      'add element ip kube-nftproxy service-cidrs { 172.30.0.0/16 }',
    ]);

    // Unchanged ranges: nothing at all.
    const s3 = builder.update(
      source([range('kubernetes', ['10.96.0.0/16']), range('more', ['172.30.0.0/16', '10.96.0.0/15'])]),
      [],
    );
    const { ruleset: rs3, delta: d3 } = compiler.compile(s3.state, s3.delta);
    assert.equal(partialTransaction(rs2, rs3, d3).size, 0);
  });

  it('uses --service-cidr when no ServiceCIDR object exists', () => {
    const builder = new StateBuilder({
      nodeName: 'n',
      nodeIPs: [],
      lbAlgorithm: 'random',
      serviceCIDRs: ['10.0.0.0/24', '10.0.0.128/25'],
    });
    const { state } = builder.update(source([]));
    assert.deepEqual(state.serviceCIDRs, ['10.0.0.0/24']);
    const rs = new Compiler({ ...CONFIG, serviceCIDRs: [] }).compile(state).ruleset;
    assert.deepEqual(
      [...rs.elements.entries()]
        .filter(([id]) => id.endsWith('service-cidrs'))
        .map(([id, els]) => [id, els.map((e) => e.key)]),
      [
        ['ip kube-nftproxy service-cidrs', ['10.0.0.0/24']],
        ['ip6 kube-nftproxy service-cidrs', []],
      ],
    );
  });
});
