import assert from 'node:assert/strict';
import type { NetworkInterfaceInfo } from 'node:os';
import { hostAddresses, nodePortIPs } from '../src/node-addresses.js';

const addr = (address: string, internal = false): NetworkInterfaceInfo =>
  (address.includes(':')
    ? { address, family: 'IPv6', internal, netmask: '', mac: '', cidr: null, scopeid: 0 }
    : { address, family: 'IPv4', internal, netmask: '', mac: '', cidr: null }) as NetworkInterfaceInfo;

describe('node addresses', () => {
  it('lists every non-loopback, non-link-local address, those on lo included', () => {
    const list = hostAddresses({
      lo: [addr('127.0.0.1', true), addr('192.168.77.1', true), addr('::1', true), addr('fd00:77::1', true)],
      eth0: [addr('172.30.0.1'), addr('fe80::1'), addr('fd00:172:30::1')],
      veth0: [addr('10.244.1.1')],
      veth1: [addr('10.244.1.1')],
    });
    assert.deepEqual(list, ['10.244.1.1', '172.30.0.1', '192.168.77.1', 'fd00:172:30::1', 'fd00:77::1']);
  });

  it('chooses NodePort addresses by CIDR among them, never loopback', () => {
    const node = { name: 'n', ips: ['172.30.0.1'], labels: {} };
    const local = ['127.0.0.1', '172.30.0.1', '192.168.77.1', 'fd00:77::1'];
    assert.deepEqual(nodePortIPs(node, ['192.168.77.0/24', '127.0.0.0/8', 'fd00:77::/64'], local), {
      ipv4: ['192.168.77.1'],
      ipv6: ['fd00:77::1'],
    });
    assert.deepEqual(nodePortIPs(node, 'primary', local), { ipv4: ['172.30.0.1'], ipv6: [] });
  });
});
