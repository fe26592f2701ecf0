import assert from 'node:assert/strict';
import { planFrontends } from '../../src/lb/frontends.js';
import { endpoint, servicePort, state } from './support.js';

describe('userspace frontends', () => {
  const local = { ...endpoint(8080, '10.244.0.5'), local: true };
  const remote = { ...endpoint(8080, '10.244.1.5'), local: false };
  const sp = servicePort('web', [local, remote], {
    clusterIP: '10.96.0.10',
    port: 80,
    nodePort: 30080,
    externalIPs: ['192.0.2.1'],
    loadBalancerIPs: ['198.51.100.1'],
    sourceRanges: ['203.0.113.0/24'],
    externalPolicyLocal: true,
    localEndpoints: [local],
    lbAlgorithm: 'maglev',
    affinitySeconds: 30,
  });

  it('service-ip mode: every frontend kube-proxy serves, with its traffic policy', () => {
    const st = { ...state([sp]), node: { name: 'n', ips: ['172.18.0.2', 'fd00::2'], labels: {} } };
    const plan = planFrontends(st, 'service-ip', 5);
    assert.deepEqual(
      plan.frontends.map((f) => [
        f.frontend,
        f.address,
        f.port,
        f.endpoints.length,
        f.localAddress,
        f.sourceRanges,
      ]),
      [
        ['clusterIP', '10.96.0.10', 80, 2, '10.96.0.10', []],
        ['externalIP', '192.0.2.1', 80, 1, '192.0.2.1', []],
        ['loadBalancer', '198.51.100.1', 80, 1, '198.51.100.1', ['203.0.113.0/24']],
        ['nodePort', '172.18.0.2', 30080, 1, undefined, []],
      ],
    );
    assert.deepEqual(plan.frontends[0]!.picker, { algorithm: 'maglev', affinitySeconds: 30, seed: 5 });
  });

  it('service-ip mode: NodePorts on the addresses --nodeport-addresses chose, as the rules do', () => {
    const plan = planFrontends(state([sp]), 'service-ip', 0, {
      ipv4: ['192.168.7.1', '192.168.7.2'],
      ipv6: [],
    });
    assert.deepEqual(
      plan.frontends.filter((f) => f.frontend === 'nodePort').map((f) => [f.address, f.port]),
      [
        ['192.168.7.1', 30080],
        ['192.168.7.2', 30080],
      ],
    );
  });

  it('loopback mode: one socket per service port on port 0; SCTP is unsupported', () => {
    const sctp = servicePort('s', [], { protocol: 'SCTP' });
    const v6 = { ...servicePort('v6', []), key: 'default/v6:/TCP/ipv6', family: 'ipv6' as const };
    const plan = planFrontends(state([sp, sctp, v6]), 'loopback', 0);
    assert.deepEqual(
      plan.frontends.map((f) => [f.key, f.address, f.port]),
      [
        ['default/v6:/TCP/ipv6', '::1', 0],
        ['default/web:/TCP/ipv4', '127.0.0.1', 0],
      ],
    );
    assert.deepEqual(
      plan.unsupported.map((u) => u.key),
      [sctp.key],
    );
  });
});
