import assert from 'node:assert/strict';
import { isTraceQueryError, parseTraceQuery } from '../../src/server/trace-query.js';

describe('parseTraceQuery', () => {
  const ok: Array<[string, object]> = [
    [
      'src=10.0.0.1&dst=10.96.0.10&port=53&proto=UDP',
      { src: '10.0.0.1', dst: '10.96.0.10', port: 53, proto: 'udp', from: 'outside' },
    ],
    [
      'src=fd00::1&dst=fd00:96::a&port=65535&proto=sctp&from=pod',
      { src: 'fd00::1', dst: 'fd00:96::a', port: 65535, proto: 'sctp', from: 'pod' },
    ],
    [
      'src=10.0.0.1&dst=10.0.0.2&port=1&proto=Tcp&from=node',
      { src: '10.0.0.1', dst: '10.0.0.2', port: 1, proto: 'tcp', from: 'node' },
    ],
    [
      'src=10.244.1.5&dst=10.96.0.10&port=80&proto=tcp&iif=veth12',
      { src: '10.244.1.5', dst: '10.96.0.10', port: 80, proto: 'tcp', from: 'outside', iif: 'veth12' },
    ],
  ];
  for (const [query, want] of ok) {
    it(`accepts ${query}`, () => {
      assert.deepEqual(parseTraceQuery(new URLSearchParams(query)), want);
    });
  }

  const bad: Array<[string, string]> = [
    ['dst=10.0.0.2&port=80&proto=tcp', 'src'],
    ['src=&dst=10.0.0.2&port=80&proto=tcp', 'src'],
    ['src=10.0.0.300&dst=10.0.0.2&port=80&proto=tcp', 'src'],
    ['src=10.0.0.1&port=80&proto=tcp', 'dst'],
    ['src=10.0.0.1&dst=example.com&port=80&proto=tcp', 'dst'],
    ['src=10.0.0.1&dst=fd00::1&port=80&proto=tcp', 'dst'],
    ['src=10.0.0.1&dst=10.0.0.2&proto=tcp', 'port'],
    ['src=10.0.0.1&dst=10.0.0.2&port=0&proto=tcp', 'port'],
    ['src=10.0.0.1&dst=10.0.0.2&port=65536&proto=tcp', 'port'],
    ['src=10.0.0.1&dst=10.0.0.2&port=8x&proto=tcp', 'port'],
    ['src=10.0.0.1&dst=10.0.0.2&port=-1&proto=tcp', 'port'],
    ['src=10.0.0.1&dst=10.0.0.2&port=1e3&proto=tcp', 'port'],
    ['src=10.0.0.1&dst=10.0.0.2&port=80', 'proto'],
    ['src=10.0.0.1&dst=10.0.0.2&port=80&proto=icmp', 'proto'],
    ['src=10.0.0.1&dst=10.0.0.2&port=80&proto=tcp&from=mars', 'from'],
    ['src=10.0.0.1&dst=10.0.0.2&port=80&proto=tcp&from=', 'from'],
    ['src=10.0.0.1&dst=10.0.0.2&port=80&proto=tcp&form=pod', 'form'],
    ['src=10.0.0.1&src=10.0.0.3&dst=10.0.0.2&port=80&proto=tcp', 'src'],
    ['src=10.0.0.1&dst=10.0.0.2&port=80&proto=tcp&iif=', 'iif'],
    ['src=10.0.0.1&dst=10.0.0.2&port=80&proto=tcp&iif=a%22b', 'iif'],
    ['src=10.0.0.1&dst=10.0.0.2&port=80&proto=tcp&iif=veth*', 'iif'],
    ['src=10.0.0.1&dst=10.0.0.2&port=80&proto=tcp&iif=a-name-too-long-x', 'iif'],
    ['src=10.0.0.1&dst=10.0.0.2&port=80&proto=tcp&iif=cni0&iif=cbr0', 'iif'],
  ];
  for (const [query, parameter] of bad) {
    it(`refuses ${query || '(empty)'} naming ${parameter}`, () => {
      const q = parseTraceQuery(new URLSearchParams(query));
      assert.ok(isTraceQueryError(q), 'an error');
      assert.equal(q.parameter, parameter);
      assert.ok(q.error.startsWith(`${parameter}: `), q.error);
    });
  }
});
