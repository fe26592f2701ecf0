import assert from 'node:assert/strict';
import type { V1EndpointSlice, V1Service } from '@kubernetes/client-node';
import fc from 'fast-check';
import { parseEndpointSlice } from '../../src/model/endpoint-slice.js';
import { canonicalIp, ipFamily, parseCidr } from '../../src/model/ip.js';
import { parseService } from '../../src/model/service.js';
import { service, slice } from '../support/objects.js';

describe('IP literals with an IPv6 zone ID', () => {
  // node:net accepts zone IDs; one with a dot in it sent ipToBigInt into endless recursion.
  for (const ip of ['fe80::1%eth0', 'fe80::1%1', 'fe80::1%eth0.5', '::ffff:1.2.3.4%x.y', '1.2.3.4%eth0']) {
    it(`${ip} is no IP`, () => {
      assert.equal(ipFamily(ip), undefined);
      assert.equal(canonicalIp(ip), undefined);
      assert.equal(parseCidr(`${ip}/64`), undefined);
    });
  }

  it('an embedded IPv4 tail still reads', () => {
    assert.equal(canonicalIp('::ffff:1.2.3.4'), '::ffff:102:304');
  });
});

describe('parseService with fields of the wrong type', () => {
  const base = (spec: Record<string, unknown>, extra: Record<string, unknown> = {}): V1Service =>
    ({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { namespace: 'ns', name: 's' },
      spec: { clusterIP: '10.96.0.1', ports: [{ port: 80 }], ...spec },
      ...extra,
    }) as V1Service;

  it('a zone-ID externalIP costs that IP only, with one warning', () => {
    const r = parseService(base({ externalIPs: ['fe80::1%eth0.5', '192.0.2.1'] }));
    assert.ok(r.ok);
    assert.deepEqual(r.service.externalIPs, ['192.0.2.1']);
    assert.deepEqual(r.service.warnings, ['ignoring invalid externalIP "fe80::1%eth0.5"']);
  });

  it('a zone-ID clusterIP skips the Service with the reason', () => {
    assert.deepEqual(parseService(base({ clusterIP: 'fd00::1%eth0' })), {
      ok: false,
      ignored: false,
      reason: 'invalid clusterIP "fd00::1%eth0"',
    });
  });

  const skips: Array<[string, Record<string, unknown>, RegExp]> = [
    ['clusterIPs an object', { clusterIPs: { length: 2 } }, /spec.clusterIPs is not a list/],
    ['clusterIP a number', { clusterIP: 7 }, /invalid clusterIP 7/],
    ['a port null', { ports: [null] }, /spec.ports\[0\] is not an object/],
    ['a port name a number', { ports: [{ port: 80, name: 5 }] }, /name 5 is not a string/],
    ['a port 1e400', { ports: [{ port: Infinity }] }, /invalid port null/],
    ['type an object', { type: { a: 'x'.repeat(500) } }, /^unknown spec.type \{"a":"x{90,}…$/],
  ];
  for (const [what, spec, reason] of skips) {
    it(`${what}: skipped with a reason`, () => {
      const r = parseService(base(spec));
      assert.equal(r.ok, false);
      assert.match(r.ok ? '' : r.reason, reason);
    });
  }

  it('lists that are not lists cost only themselves', () => {
    const r = parseService(
      base(
        {
          type: 'LoadBalancer',
          externalIPs: '192.0.2.1',
          loadBalancerSourceRanges: { a: 1 },
          ports: [{ port: 80, nodePort: 30080 }],
        },
        { status: { loadBalancer: { ingress: 'x' } } },
      ),
    );
    assert.ok(r.ok);
    assert.deepEqual(r.service.warnings, [
      'ignoring spec.externalIPs: not a list',
      'ignoring status.loadBalancer.ingress: not a list',
      'ignoring spec.loadBalancerSourceRanges: not a list',
    ]);
  });

  it('an element with a toString key (String() would throw) is an invalid element', () => {
    const r = parseService(
      base({
        type: 'LoadBalancer',
        externalIPs: [{ toString: 1 }],
        loadBalancerSourceRanges: [{ toString: 1 }],
      }),
    );
    assert.ok(r.ok);
    assert.equal(r.service.warnings.length, 2);
  });
});

describe('parseEndpointSlice with fields of the wrong type', () => {
  const withEndpoints = (endpoints: unknown[], ports: unknown = [{ port: 8080 }]): V1EndpointSlice => ({
    ...slice('ns', 's-a', 's', [{ port: 8080 }], []),
    endpoints: endpoints as V1EndpointSlice['endpoints'],
    ports: ports as V1EndpointSlice['ports'],
  });

  it('drops endpoints whose conditions or names are not what they say, one warning each', () => {
    const r = parseEndpointSlice(
      withEndpoints([
        { addresses: ['10.0.0.1'], conditions: { ready: 'false' } },
        { addresses: ['10.0.0.2'], nodeName: { a: 1 } },
        { addresses: '10.0.0.3' },
        { addresses: ['10.0.0.4'], hints: { forZones: 'zone-a' } },
        null,
      ]),
    );
    assert.ok(r.ok);
    assert.deepEqual(
      r.slice.endpoints.map((e) => [e.ip, e.zoneHints]),
      [['10.0.0.4', []]],
    );
    assert.deepEqual(r.slice.warnings, [
      'endpoints[0]: conditions.ready "false" is not a boolean',
      'endpoints[1]: nodeName {"a":1} is not a string',
      'endpoints[2]: invalid IPv4 address undefined',
      'endpoints[4]: invalid IPv4 address undefined',
    ]);
  });

  it('skips a slice past the API limits, or whose lists are not lists', () => {
    const many = Array.from({ length: 1001 }, (_, i) => ({ addresses: [`10.0.${i >> 8}.${i & 255}`] }));
    for (const [s, reason] of [
      [withEndpoints(many), /1001 endpoints: more than the API's limit of 1000/],
      [
        withEndpoints(
          [],
          Array.from({ length: 101 }, (_, i) => ({ port: i + 1 })),
        ),
        /101 ports/,
      ],
      [withEndpoints([], 'x'), /ports is not a list/],
      [{ ...withEndpoints([]), endpoints: {} } as unknown as V1EndpointSlice, /endpoints is not a list/],
    ] as const) {
      const r = parseEndpointSlice(s);
      assert.equal(r.ok, false);
      assert.match(r.ok ? '' : r.reason, reason);
    }
  });
});

describe('parsers never throw, whatever JSON they are given', () => {
  /** JSON values, biased towards the keys the parsers read. */
  const keys = fc.constantFrom(
    'name',
    'namespace',
    'labels',
    'kubernetes.io/service-name',
    'spec',
    'ports',
    'port',
    'protocol',
    'nodePort',
    'clusterIP',
    'clusterIPs',
    'externalIPs',
    'type',
    'status',
    'loadBalancer',
    'ingress',
    'ip',
    'endpoints',
    'addresses',
    'conditions',
    'ready',
    'hints',
    'forZones',
    'addressType',
    'toString',
    '__proto__',
    'sessionAffinityConfig',
    'clientIP',
    'timeoutSeconds',
  );
  const json = fc.letrec((tie) => ({
    value: fc.oneof(
      { depthSize: 'small' },
      fc.constantFrom(
        null,
        true,
        false,
        0,
        -1,
        80,
        Infinity,
        'TCP',
        'IPv4',
        'LoadBalancer',
        '10.0.0.1',
        'fe80::1%a.b',
      ),
      fc.string(),
      fc.array(tie('value'), { maxLength: 3 }),
      fc.dictionary(keys, tie('value'), { maxKeys: 5 }),
    ),
  })).value;

  it('parseService', () => {
    fc.assert(
      fc.property(json, json, (spec, status) => {
        const svc = { ...service('ns', 's', { clusterIP: '10.96.0.1', ports: [{ port: 80 }] }) } as V1Service;
        parseService({ ...svc, spec: spec as V1Service['spec'], status: status as V1Service['status'] });
        parseService({ ...svc, spec: { ...svc.spec, ...(spec as object) } });
      }),
      { numRuns: 500 },
    );
  });

  it('parseEndpointSlice', () => {
    fc.assert(
      fc.property(json, json, (endpoints, ports) => {
        const s = slice('ns', 's-a', 's', [{ port: 8080 }], [{ ip: '10.0.0.1' }]);
        parseEndpointSlice({ ...s, endpoints: endpoints as V1EndpointSlice['endpoints'] });
        parseEndpointSlice({ ...s, ports: ports as V1EndpointSlice['ports'] });
        parseEndpointSlice({ ...s, endpoints: [endpoints] as unknown as V1EndpointSlice['endpoints'] });
      }),
      { numRuns: 500 },
    );
  });
});
