import assert from 'node:assert/strict';
import { decideAddress, reservedAddresses, unbindable, type AddressRule } from '../../src/lb/address-rule.js';
import type { FrontendKind } from '../../src/model/frontends.js';
import { parseCidr } from '../../src/model/ip.js';
import { endpoint, servicePort, state } from './support.js';

describe('address rule: which frontend addresses service-ip mode makes local', () => {
  const st = state([
    servicePort('kubernetes', [endpoint(6443, '192.168.1.10')]),
    servicePort('web', [endpoint(8080, '10.244.1.5')]),
  ]);
  const reserved = reservedAddresses(st, ['192.168.1.1', '10.96.0.254', 'fd00::1']);
  const withCidr: AddressRule = {
    serviceCIDRs: ['10.96.0.0/12', 'fd00:96::/108'].map((c) => parseCidr(c)!),
    reserved,
  };
  const noCidr: AddressRule = { serviceCIDRs: [], reserved };

  const cases: Array<[string, FrontendKind, string, AddressRule, true | RegExp]> = [
    ['a ClusterIP inside --service-cidr', 'clusterIP', '10.96.0.10', withCidr, true],
    ['an IPv6 ClusterIP inside --service-cidr', 'clusterIP', 'fd00:96::a', withCidr, true],
    ['an externalIP inside --service-cidr', 'externalIP', '10.100.0.1', withCidr, true],
    [
      'an externalIP outside --service-cidr',
      'externalIP',
      '203.0.113.7',
      withCidr,
      /--service-cidr \(10\.96/,
    ],
    ['a load-balancer IP outside', 'loadBalancer', '198.51.100.1', withCidr, /outside|inside --service-cidr/],
    ['a ClusterIP outside --service-cidr', 'clusterIP', '172.16.0.1', withCidr, /--service-cidr/],
    ['the gateway, inside --service-cidr', 'externalIP', '10.96.0.254', withCidr, /gateway/],
    ['the gateway as a ClusterIP, no --service-cidr', 'clusterIP', '192.168.1.1', noCidr, /gateway/],
    [
      "the API server's address (an endpoint)",
      'externalIP',
      '192.168.1.10',
      withCidr,
      /endpoint of default\/kubernetes/,
    ],
    ['a pod address (an endpoint)', 'loadBalancer', '10.244.1.5', noCidr, /endpoint of default\/web/],
    ['an IPv6 gateway', 'externalIP', 'fd00::1', withCidr, /gateway/],
    ['no --service-cidr: a ClusterIP', 'clusterIP', '10.96.0.10', noCidr, true],
    ['no --service-cidr: an externalIP', 'externalIP', '10.96.0.11', noCidr, /not set: ClusterIPs only/],
    ['no --service-cidr: a load-balancer IP', 'loadBalancer', '10.96.0.12', noCidr, /not set/],
    ['a NodePort address that is not local', 'nodePort', '10.96.0.13', withCidr, /no local address/],
    ['the IPv4 wildcard', 'clusterIP', '0.0.0.0', withCidr, /wildcard/],
    ['the IPv6 wildcard', 'externalIP', '::', withCidr, /wildcard/],
    ['a multicast address', 'externalIP', '239.1.1.1', noCidr, /multicast/],
  ];
  for (const [what, kind, ip, rule, want] of cases) {
    it(`${what}: ${want === true ? 'added' : 'refused'}`, () => {
      const d = decideAddress(kind, ip, rule);
      if (want === true) assert.deepEqual(d, { add: true });
      else {
        assert.equal(d.add, false);
        assert.match(d.add ? '' : d.reason, want);
      }
    });
  }

  it('never binds a wildcard or multicast address in any mode', () => {
    assert.deepEqual(
      ['0.0.0.0', '::', '224.0.0.1', 'ff02::1', '127.0.0.1', '10.96.0.1'].map(
        (ip) => unbindable(ip) !== undefined,
      ),
      [true, true, true, true, false, false],
    );
  });
});
