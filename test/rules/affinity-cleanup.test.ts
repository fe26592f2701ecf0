import assert from 'node:assert/strict';
import { buildState } from '../../src/model/build-state.js';
import {
  mapsOf,
  restoredEntries,
  staleAffinity,
  staleEntries,
  stickyFrontends,
} from '../../src/rules/affinity-cleanup.js';
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

/**
 * `nft -j list map` as nft 1.0.6 prints it for affinity-tcp: whole seconds; an element whose
 * timeout is the map's own has no `timeout` of its own.
 */
const listing = (
  entries: Array<
    [string, string] | [string, string, { timeout?: number; expires?: number; frontend?: string }]
  >,
): string =>
  JSON.stringify({
    nftables: [
      { metainfo: { version: '1.0.6' } },
      {
        map: {
          family: 'ip',
          name: 'affinity-tcp',
          table: 'kube-nftproxy',
          type: ['ipv4_addr', 'inet_service', 'ipv4_addr'],
          handle: 3,
          map: 'ipv4_addr . inet_service',
          flags: ['timeout'],
          timeout: 10800,
          elem: entries.map(([client, ep, t = { timeout: 10800, expires: 10000 }]) => [
            {
              elem: {
                val: { concat: [t.frontend ?? '10.96.0.1', 80, client] },
                ...(t.timeout === undefined ? {} : { timeout: t.timeout }),
                ...(t.expires === undefined ? {} : { expires: t.expires }),
              },
            },
            { concat: [ep, 8080] },
          ]),
        },
      },
    ],
  });

/** The listings the applier hands over for IPv4's store: affinity-tcp only. */
const tcp = (entries: Parameters<typeof listing>[0]): Map<string, string> =>
  new Map([['affinity-tcp', listing(entries)]]);

describe('affinity cleanup', () => {
  it('finds the endpoints a sticky frontend lost, and only those', () => {
    const stale = staleAffinity(rules(['10.244.0.1', '10.244.0.2']), rules(['10.244.0.2', '10.244.0.3']));
    assert.equal(stale.length, 1);
    assert.deepEqual(stale[0]!.store, { map: 'affinity-tcp', frontend: '10.96.0.1 . 80' });
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
      tcp([
        ['192.0.2.10', '10.244.0.1'],
        ['192.0.2.11', '10.244.0.2'],
      ]),
    );
    assert.deepEqual(
      entries.map((e) => [e.set, e.key, e.value]),
      [['affinity-tcp', '10.96.0.1 . 80 . 192.0.2.10', '10.244.0.1 . 8080']],
    );
    assert.deepEqual(staleEntries(stale, new Map([['affinity-tcp', '']])), [], 'no map, nothing to delete');
  });

  it('keeps, across a full sync, the entries of frontends still sticky to endpoints they still have, with the time left', () => {
    const groups = stickyFrontends(rules(['10.244.0.1', '10.244.0.2']));
    assert.deepEqual(
      groups.map((g) => [g.family, g.proto, [...g.endpoints].map(([fe, eps]) => [fe, [...eps].sort()])]),
      [['ip', 'tcp', [['10.96.0.1 . 80', ['10.244.0.1 . 8080', '10.244.0.2 . 8080']]]]],
    );
    const entries = restoredEntries(
      groups[0]!,
      tcp([
        ['192.0.2.12', '10.244.0.2', { timeout: 600, expires: 420 }],
        ['192.0.2.10', '10.244.0.1', { expires: 9000 }],
        ['192.0.2.11', '10.244.0.9', { timeout: 600, expires: 420 }],
        ['192.0.2.13', '10.244.0.1', { timeout: 600, expires: 0 }],
        ['192.0.2.14', '10.244.0.1', { timeout: 600 }],
        ['192.0.2.15', '10.244.0.1', { frontend: '10.96.0.2', timeout: 600, expires: 420 }],
        ['fd00::1', '10.244.0.1', { timeout: 600, expires: 420 }],
      ]),
    );
    assert.deepEqual(
      entries.map((e) => [e.set, e.key, e.value, e.timeout, e.expires]),
      [
        // The map's timeout where the element has none of its own: explicit, so that the
        // expiry can never exceed it (nft: "Numerical result out of range").
        ['affinity-tcp', '10.96.0.1 . 80 . 192.0.2.10', '10.244.0.1 . 8080', '10800s', '9000s'],
        ['affinity-tcp', '10.96.0.1 . 80 . 192.0.2.12', '10.244.0.2 . 8080', '600s', '420s'],
      ],
      'gone endpoint, under a second left, no expiry, another frontend, a client of another family: dropped',
    );
    assert.deepEqual(restoredEntries(groups[0]!, new Map()), [], 'no map yet (first start): nothing');
    assert.deepEqual(stickyFrontends(rules(['10.244.0.1'], false)), [], 'no affinity, no map to read');
  });
});

describe('affinity cleanup: IPv6 (a group’s own maps, client → address and client → port)', () => {
  const rules6 = (endpoints: string[]) =>
    compile(
      buildState(
        {
          services: [
            service('ns', 's6', {
              ipFamilies: ['IPv6'],
              clusterIP: 'fd00:96::1',
              clusterIPs: ['fd00:96::1'],
              sessionAffinity: 'ClientIP',
              ports: [{ port: 80 }],
            }),
          ],
          slices: [
            slice(
              'ns',
              's6-1',
              's6',
              [{ port: 8080 }],
              endpoints.map((ip) => ({ ip })),
              'IPv6',
            ),
          ],
        },
        { nodeName: 'n1', nodeIPs: [], lbAlgorithm: 'random' },
      ),
      CONFIG,
    );

  /** `nft -j list map` of one of the group's maps, single fields as nft prints them. */
  const listing6 = (name: string, entries: Array<[string, string | number, number?]>): string =>
    JSON.stringify({
      nftables: [
        { metainfo: { version: '1.0.6' } },
        {
          map: {
            family: 'ip6',
            name,
            table: 'kube-nftproxy',
            timeout: 10800,
            elem: entries.map(([client, value, expires = 500]) => [
              { elem: { val: client, timeout: 600, expires } },
              value,
            ]),
          },
        },
      ],
    });

  it('names the group’s maps, finds lost endpoints, and deletes both entries of their clients', () => {
    const before = rules6(['fd00:244::1', 'fd00:244::2']);
    const [group] = stickyFrontends(before);
    assert.ok(group && 'portMap' in group.store);
    const { map, portMap } = group.store as { map: string; portMap: string };
    assert.match(map, /^affinity-[0-9a-f]{12}-cluster$/);
    assert.equal(portMap, `${map}-port`);
    assert.deepEqual(mapsOf(group.store), [map, portMap]);
    const stale = staleAffinity(before, rules6(['fd00:244::2']));
    assert.deepEqual(
      stale.map((s) => [s.family, s.store.map, [...s.gone]]),
      [['ip6', map, ['fd00:244::1 . 8080']]],
    );
    const listings = new Map([
      [
        map,
        listing6(map, [
          ['fd00:1::10', 'fd00:244::1'],
          ['fd00:1::11', 'fd00:244::2'],
          ['fd00:1::12', 'fd00:244::1'],
        ]),
      ],
      // fd00:1::12 has no port entry (expired): the lookup cannot use it, nothing to delete
      [
        portMap,
        listing6(portMap, [
          ['fd00:1::10', 8080],
          ['fd00:1::11', 8080],
        ]),
      ],
    ]);
    assert.deepEqual(
      staleEntries(stale, listings).map((e) => [e.set, e.key, e.value]),
      [
        [map, 'fd00:1::10', 'fd00:244::1'],
        [portMap, 'fd00:1::10', '8080'],
      ],
    );
  });

  it('puts back, across a full sync, the entries of clients whose endpoint remains, with the time left', () => {
    const [group] = stickyFrontends(rules6(['fd00:244::2', 'fd00:244::3']));
    const { map, portMap } = group!.store as { map: string; portMap: string };
    const listings = new Map([
      [
        map,
        listing6(map, [
          ['fd00:1::10', 'fd00:244::1'],
          ['fd00:1::11', 'fd00:244::2', 420],
          ['fd00:1::13', 'fd00:244::3', 0],
          ['10.0.0.1', 'fd00:244::3'],
        ]),
      ],
      [
        portMap,
        listing6(portMap, [
          ['fd00:1::10', 8080],
          ['fd00:1::11', 8080, 420],
          ['fd00:1::13', 8080, 0],
          ['10.0.0.1', 8080],
        ]),
      ],
    ]);
    assert.deepEqual(
      restoredEntries(group!, listings).map((e) => [e.set, e.key, e.value, e.timeout, e.expires]),
      [
        [map, 'fd00:1::11', 'fd00:244::2', '600s', '420s'],
        [portMap, 'fd00:1::11', '8080', '600s', '420s'],
      ],
      'a gone endpoint, under a second left, a client of another family: dropped',
    );
  });
});
