import assert from 'node:assert/strict';
import { buildState } from '../../src/model/build-state.js';
import { staleAffinity, staleEntries } from '../../src/rules/affinity-cleanup.js';
import { compile, type CompileConfig } from '../../src/rules/compile.js';
import { service, slice } from '../support/objects.js';

const CONFIG: CompileConfig = {
  table: 'kube-nftproxy',
  clusterCIDRs: [],
  masqueradeAll: false,
  serviceCIDRs: [],
  nodePortIPs: { ipv4: [], ipv6: [] },
};

const rules = (endpoints: string[], affinity = true) =>
  compile(
    buildState(
      {
        services: [
          service('ns', 's', {
            clusterIP: '10.96.0.1',
            ...(affinity ? { sessionAffinity: 'ClientIP' } : {}),
            ports: [{ port: 80 }],
          }),
        ],
        slices: [
          slice(
            'ns',
            's-1',
            's',
            [{ port: 8080 }],
            endpoints.map((ip) => ({ ip })),
          ),
        ],
      },
      { nodeName: 'n1', nodeIPs: [], lbAlgorithm: 'random' },
    ),
    CONFIG,
  );

/** `nft -j list map` as nft 1.0.6 prints it for affinity-tcp. */
const listing = (entries: Array<[string, string]>): string =>
  JSON.stringify({
    nftables: [
      { metainfo: { version: '1.0.6' } },
      {
        map: {
          family: 'ip',
          name: 'affinity-tcp',
          table: 'kube-nftproxy',
          elem: entries.map(([client, ep]) => [
            { elem: { val: { concat: ['10.96.0.1', 80, client] }, timeout: 10800, expires: 10000 } },
            { concat: [ep, 8080] },
          ]),
        },
      },
    ],
  });

describe('affinity cleanup', () => {
  it('finds the endpoints a sticky frontend lost, and only those', () => {
    const stale = staleAffinity(rules(['10.244.0.1', '10.244.0.2']), rules(['10.244.0.2', '10.244.0.3']));
    assert.equal(stale.length, 1);
    assert.equal(stale[0]!.frontend, '10.96.0.1 . 80');
    assert.deepEqual([...stale[0]!.gone], ['10.244.0.1 . 8080']);
    assert.deepEqual(
      staleAffinity(rules(['10.244.0.1']), rules(['10.244.0.1', '10.244.0.3'])),
      [],
      'gaining is fine',
    );
    assert.deepEqual(
      staleAffinity(rules(['10.244.0.1'], false), rules([], false)),
      [],
      'no affinity, nothing to forget',
    );
  });

  it('turns the kernel listing into the entries of clients stuck to a gone endpoint', () => {
    const stale = staleAffinity(rules(['10.244.0.1', '10.244.0.2']), rules(['10.244.0.2']));
    const entries = staleEntries(
      stale,
      listing([
        ['192.0.2.10', '10.244.0.1'],
        ['192.0.2.11', '10.244.0.2'],
      ]),
    );
    assert.deepEqual(
      entries.map((e) => [e.set, e.key.join(' . '), (e.value ?? []).join(' . ')]),
      [['affinity-tcp', '10.96.0.1 . 80 . 192.0.2.10', '10.244.0.1 . 8080']],
    );
    assert.deepEqual(staleEntries(stale, ''), [], 'no map, nothing to delete');
  });
});
