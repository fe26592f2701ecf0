import assert from 'node:assert/strict';
import { parseService } from '../../src/model/service.js';
import { service } from '../support/objects.js';

describe('parseService: trafficDistribution', () => {
  const parse = (trafficDistribution?: string) =>
    parseService(service('ns', 's', { clusterIP: '10.96.0.1', ports: [{ port: 80 }], trafficDistribution }));

  it('accepts the values the API knows without a word', () => {
    for (const value of [undefined, 'PreferClose', 'PreferSameZone', 'PreferSameNode']) {
      const r = parse(value);
      assert.ok(r.ok && r.service.warnings.length === 0, JSON.stringify(r));
    }
  });

  it('keeps a Service with an unknown value, with one warning naming it', () => {
    const r = parse('PreferSomewhere');
    assert.ok(r.ok);
    if (!r.ok) return;
    assert.equal(r.service.warnings.length, 1);
    assert.match(r.service.warnings[0]!, /unknown trafficDistribution "PreferSomewhere"/);
    assert.deepEqual(r.service.clusterIPs, { ipv4: '10.96.0.1' });
  });
});
