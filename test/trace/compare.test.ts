import assert from 'node:assert/strict';
import type { Trace } from '../../src/model/trace.js';
import { disagreements } from '../../src/trace/compare.js';
import type { KernelPath } from '../../src/trace/kernel-path.js';

const kernel = (k: Partial<KernelPath>): KernelPath => ({
  chains: [],
  rules: [],
  verdict: 'accept',
  dnat: null,
  masquerade: false,
  first: undefined,
  last: undefined,
  complete: true,
  ...k,
});

const dnat = (over: Partial<Extract<Trace, { verdict: 'dnat' }>> = {}): Trace => ({
  verdict: 'dnat',
  service: 'ns/web',
  port: 'ns/web:http/TCP/ipv4',
  frontend: 'clusterIP',
  endpoints: [
    { ip: '10.244.1.11', port: 8080 },
    { ip: '10.244.1.12', port: 8080 },
  ],
  masquerade: false,
  hairpin: [],
  why: 'ClusterIP',
  ...over,
});

describe('disagreements: the model against the kernel', () => {
  const cases: Array<[string, Trace, KernelPath, string[]]> = [
    ['dnat to one of the endpoints, source kept', dnat(), kernel({ dnat: '10.244.1.12:8080' }), []],
    [
      'dnat to an endpoint the model does not list',
      dnat(),
      kernel({ dnat: '10.244.9.9:8080' }),
      [
        "dnat: the kernel sent it to 10.244.9.9:8080, not one of the model's 10.244.1.11:8080, 10.244.1.12:8080",
      ],
    ],
    [
      'masqueraded where the model keeps the source',
      dnat(),
      kernel({ dnat: '10.244.1.11:8080', masquerade: true }),
      ['masquerade: the model says no, the kernel did'],
    ],
    [
      'hairpin: the model keeps the source, but the client reached itself',
      dnat({ hairpin: ['10.244.1.11'] }),
      kernel({ dnat: '10.244.1.11:8080', masquerade: true }),
      [],
    ],
    [
      'the model translates, the kernel rejects',
      dnat(),
      kernel({ verdict: 'reject' }),
      [
        'verdict: the model translates, the kernel says reject',
        'dnat: the model picks one of 10.244.1.11:8080, 10.244.1.12:8080, the kernel none',
      ],
    ],
    ['reject and reject', { verdict: 'reject', why: 'no endpoints' }, kernel({ verdict: 'reject' }), []],
    [
      'drop where the model rejects',
      { verdict: 'reject', why: 'no endpoints' },
      kernel({ verdict: 'drop' }),
      ['verdict: the model says reject, the kernel drop'],
    ],
    ['no-match, left alone', { verdict: 'no-match', why: 'not a Service frontend' }, kernel({}), []],
    [
      'no-match, yet translated',
      { verdict: 'no-match', why: 'not a Service frontend' },
      kernel({ dnat: '10.244.1.11:80' }),
      ['dnat: the model leaves it alone, the kernel sent it to 10.244.1.11:80'],
    ],
    [
      'an incomplete trace agrees with nothing',
      dnat(),
      kernel({ complete: false, verdict: undefined }),
      ['the kernel trace is incomplete: no drop and no end of the last hook seen'],
    ],
    [
      'IPv6 endpoints are bracketed',
      dnat({ endpoints: [{ ip: 'fd00:10:244:1::b', port: 8080 }] }),
      kernel({ dnat: '[fd00:10:244:1::b]:8080' }),
      [],
    ],
  ];
  for (const [what, model, k, want] of cases) {
    it(what, () => assert.deepEqual(disagreements(model, k), want));
  }
});
