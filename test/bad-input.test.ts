import assert from 'node:assert/strict';
import type { V1EndpointSlice, V1Service } from '@kubernetes/client-node';
import { service, slice } from './support/objects.js';
import { logLines, runProxy, SourceDir, type RunResult } from './support/proxy.js';

/**
 * Bad input in one --source folder beside valid Services, through the real CLI (--dry-run
 * touches nothing): each bad object is skipped, or defaulted as kube-proxy does, with exactly
 * one log line naming it and the reason; every valid Service still gets its rules.
 */
describe('kube-nftproxy with bad input beside good', function () {
  this.timeout(60_000);
  const NS = 'bad';
  let src: SourceDir;
  let run: RunResult;
  let rules: string;
  let warnings: Array<Record<string, unknown>>;

  /** A Service with one endpoint, whose ClusterIP's rules prove it was programmed. */
  const good = (
    name: string,
    clusterIP: string,
    spec: Partial<Parameters<typeof service>[2]> = {},
    lbIPs?: string[],
  ) => [
    service(
      NS,
      name,
      { clusterIP, ports: [{ port: 80, targetPort: 8080 }], ...spec },
      lbIPs ? { lbIPs } : {},
    ),
    slice(NS, `${name}-a`, name, [{ port: 8080 }], [{ ip: '10.244.1.11', nodeName: 'node-a' }]),
  ];
  const raw = (name: string, spec: Record<string, unknown>): V1Service =>
    ({ apiVersion: 'v1', kind: 'Service', metadata: { namespace: NS, name }, spec }) as V1Service;

  /** Skipped or defaulted objects: name → what its one log line must say. */
  const expected: Array<{ object: string; reason: RegExp; defaulted?: { clusterIP: string } }> = [
    // The v4 Service keeps its rules; its IPv6 slice is what gets skipped.
    { object: `${NS}/v4-with-v6-slice-b`, reason: /ipv6 endpoints for a Service with no ipv6 clusterIP/ },
    {
      object: `${NS}/bad-range`,
      reason: /invalid loadBalancerSourceRange "not-a-cidr"/,
      defaulted: { clusterIP: '10.96.10.2' },
    },
    {
      object: `${NS}/negative-affinity`,
      reason: /timeoutSeconds -5 .*using 10800/,
      defaulted: { clusterIP: '10.96.10.3' },
    },
    {
      object: `${NS}/huge-affinity`,
      reason: /timeoutSeconds 999999999 .*using 10800/,
      defaulted: { clusterIP: '10.96.10.4' },
    },
    {
      object: `${NS}/odd-distribution`,
      reason: /trafficDistribution "PreferSomewhere"/,
      defaulted: { clusterIP: '10.96.10.5' },
    },
    { object: `${NS}/bad-cluster-ip`, reason: /invalid clusterIP "10.96.999.1"/ },
    { object: `${NS}/port-zero`, reason: /invalid port 0/ },
    { object: `${NS}/port-huge`, reason: /invalid port 70000/ },
    { object: `${NS}/icmp`, reason: /unknown protocol "ICMP"/ },
    { object: `${NS}/no-ports`, reason: /no spec.ports/ },
    { object: `${NS}/no-cluster-ip`, reason: /missing spec.clusterIP/ },
    { object: `${NS}/no-spec`, reason: /missing spec/ },
    { object: `${NS}/garbage-a`, reason: /endpoints\[0\]: invalid IPv4 address "garbage"/ },
    { object: `${NS}/garbage-a`, reason: /endpoints\[1\]: invalid IPv4 address "1.2.3"/ },
    { object: `${NS}/garbage-a`, reason: /endpoints\[2\]: invalid IPv4 address "fd00::1"/ },
  ];

  before(async () => {
    src = await SourceDir.create();
    const garbage = slice(
      NS,
      'garbage-a',
      'garbage',
      [{ port: 8080 }],
      [{ ip: 'garbage' }, { ip: '1.2.3' }, { ip: 'fd00::1' }, { ip: '10.244.1.12', nodeName: 'node-a' }],
    );
    await src.write({
      'good.yaml': [...good('web', '10.96.10.1'), ...good('other', '10.96.10.9')],
      'family.yaml': [
        ...good('v4-with-v6-slice', '10.96.10.6'),
        slice(
          NS,
          'v4-with-v6-slice-b',
          'v4-with-v6-slice',
          [{ port: 8080 }],
          [{ ip: 'fd00:10:244:1::11' }],
          'IPv6',
        ),
      ],
      'defaulted.yaml': [
        ...good(
          'bad-range',
          '10.96.10.2',
          {
            type: 'LoadBalancer',
            loadBalancerSourceRanges: ['not-a-cidr', '172.30.0.0/24'],
            ports: [{ port: 80, targetPort: 8080, nodePort: 30900 }],
          },
          ['192.0.2.90'],
        ),
        ...good('negative-affinity', '10.96.10.3', {
          sessionAffinity: 'ClientIP',
          sessionAffinityConfig: { clientIP: { timeoutSeconds: -5 } },
        }),
        ...good('huge-affinity', '10.96.10.4', {
          sessionAffinity: 'ClientIP',
          sessionAffinityConfig: { clientIP: { timeoutSeconds: 999999999 } },
        }),
        ...good('odd-distribution', '10.96.10.5', { trafficDistribution: 'PreferSomewhere' }),
      ],
      'skipped.yaml': [
        raw('bad-cluster-ip', { clusterIP: '10.96.999.1', ports: [{ port: 80 }] }),
        raw('port-zero', { clusterIP: '10.96.10.20', ports: [{ port: 0 }] }),
        raw('port-huge', { clusterIP: '10.96.10.21', ports: [{ port: 70000 }] }),
        raw('icmp', { clusterIP: '10.96.10.22', ports: [{ port: 80, protocol: 'ICMP' }] }),
        raw('no-ports', { clusterIP: '10.96.10.23' }),
        raw('no-cluster-ip', { ports: [{ port: 80 }] }),
        { apiVersion: 'v1', kind: 'Service', metadata: { namespace: NS, name: 'no-spec' } } as V1Service,
        service(NS, 'garbage', { clusterIP: '10.96.10.7', ports: [{ port: 80, targetPort: 8080 }] }),
        garbage as V1EndpointSlice,
      ],
      'broken.yaml': 'kind: Service\nmetadata: {name: [unclosed\n  spec: :::\n',
    });
    run = await runProxy(undefined, [
      '--dry-run',
      '--hostname-override',
      'node-a',
      '--node-ip',
      '172.30.0.1',
      '--source',
      src.path,
    ]);
    rules = run.stdout;
    warnings = logLines(run.stderr).filter((l) => l.msg === 'skipped invalid object');
  });

  after(async () => {
    await src?.remove();
  });

  it('compiles the rest and exits 0', () => {
    assert.equal(run.code, 0, run.stderr);
    assert.match(rules, /add table ip kube-nftproxy/);
  });

  for (const e of expected) {
    it(`logs ${e.object} once: ${e.reason.source}`, () => {
      const lines = warnings.filter((l) => l.object === e.object && e.reason.test(String(l.reason)));
      assert.equal(lines.length, 1, JSON.stringify(warnings, null, 1));
    });
  }

  it('logs the file that is not YAML once, by path', () => {
    const lines = warnings.filter((l) => String(l.object).endsWith('broken.yaml'));
    assert.equal(lines.length, 1, JSON.stringify(warnings, null, 1));
    assert.equal(lines[0]!.kind, 'File');
  });

  it('logs nothing else', () => {
    const known = (l: Record<string, unknown>): boolean =>
      String(l.object).endsWith('broken.yaml') ||
      expected.some((e) => l.object === e.object && e.reason.test(String(l.reason)));
    assert.deepEqual(
      warnings.filter((l) => !known(l)),
      [],
    );
  });

  /** The elements a transaction adds to one set or map, one string each, however lines group them. */
  const elements = (set: string): string[] =>
    rules
      .split('\n')
      .map((line) => new RegExp(`^add element ip kube-nftproxy ${set} \\{ (.*) \\}$`).exec(line)?.[1])
      .flatMap((list) => (list ? list.split(', ') : []));
  const programmed = (clusterIP: string): boolean =>
    elements('service-ips').some((e) => e.startsWith(`${clusterIP} . tcp . 80 : `));

  it('programs every valid Service and the defaulted ones', () => {
    for (const ip of ['10.96.10.1', '10.96.10.9', '10.96.10.6', '10.96.10.7'])
      assert.ok(programmed(ip), `${ip} has rules`);
    for (const e of expected)
      if (e.defaulted) assert.ok(programmed(e.defaulted.clusterIP), `${e.object} has rules`);
  });

  it('keeps the valid source range of a Service with an invalid one', () => {
    assert.ok(elements('firewall-allow').includes('192.0.2.90 . tcp . 80 . 172.30.0.0/24'), rules);
  });

  it('programs nothing for the skipped Services', () => {
    for (const ip of ['10.96.10.20', '10.96.10.21', '10.96.10.22', '10.96.10.23'])
      assert.doesNotMatch(rules, new RegExp(ip.replace(/\./g, '\\.')), `${ip} has no rules`);
  });
});
