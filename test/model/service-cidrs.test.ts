import assert from 'node:assert/strict';
import type { V1ServiceCIDR } from '@kubernetes/client-node';
import { effectiveServiceCIDRs } from '../../src/model/service-cidrs.js';

const range = (name: string, spec: unknown): V1ServiceCIDR => ({ metadata: { name }, spec }) as V1ServiceCIDR;

describe('effectiveServiceCIDRs', () => {
  it('is the flag without objects, and the objects alone (merged) with them', () => {
    assert.deepEqual(effectiveServiceCIDRs([], ['10.96.0.0/16']).cidrs, ['10.96.0.0/16']);
    const r = effectiveServiceCIDRs(
      [
        range('b', { cidrs: ['10.1.0.0/16', 'fd00::/108'] }),
        range('a', { cidrs: ['10.1.2.0/24', '10.0.0.0/16'] }),
      ],
      ['10.96.0.0/16'],
    );
    assert.deepEqual(r.cidrs, ['10.0.0.0/15', 'fd00::/108']);
    assert.deepEqual(r.skipped, []);
  });

  it('skips what does not parse, one entry each, and keeps the rest', () => {
    const r = effectiveServiceCIDRs(
      [
        range('list', { cidrs: '10.0.0.0/8' }),
        range('bad', { cidrs: ['10.2.0.0/16', 'nonsense', 7, '10.3.0.1'] }),
        range('empty', {}),
        range('nospec', undefined),
      ],
      ['10.96.0.0/16'],
    );
    assert.deepEqual(r.cidrs, ['10.2.0.0/16']);
    assert.deepEqual(
      r.skipped.map((s) => `${s.name}: ${s.reason}`),
      [
        'bad: spec.cidrs: "nonsense" is not a CIDR',
        'bad: spec.cidrs: 7 is not a CIDR',
        'bad: spec.cidrs: "10.3.0.1" is not a CIDR',
        'list: spec.cidrs is not a list',
      ],
    );
  });
});
