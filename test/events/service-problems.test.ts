import assert from 'node:assert/strict';
import { serviceProblems } from '../../src/events/service-problems.js';
import type { Skipped } from '../../src/model/types.js';

describe('serviceProblems', () => {
  it('turns skipped Services into problems by kind of skip, deduplicated and sorted; ignores the rest', () => {
    const skipped: Skipped[] = [
      { kind: 'Service', name: 'ns/z', reason: 'spec.ports: not a list' },
      { kind: 'Service', name: 'ns/headless', reason: 'headless', ignored: true },
      { kind: 'EndpointSlice', name: 'ns/a-1', reason: 'unknown addressType' },
      { kind: 'Node', name: 'node-a', reason: 'no addresses' },
      {
        kind: 'Service',
        name: 'ns/b',
        reason: "externalIP 1.2.3.4 tcp/80 is ns/a's externalIP (the older Service keeps it): left out",
        contested: true,
      },
      // The same loss, in the other family's view of the port: one problem.
      {
        kind: 'Service',
        name: 'ns/b',
        reason: "externalIP 1.2.3.4 tcp/80 is ns/a's externalIP (the older Service keeps it): left out",
        contested: true,
      },
      { kind: 'Service', name: 'ns/big', reason: 'needs about 32 nft elements', overBudget: true },
    ];
    assert.deepEqual(serviceProblems(skipped), [
      {
        service: 'ns/b',
        reason: 'FrontendContested',
        note: "externalIP 1.2.3.4 tcp/80 is ns/a's externalIP (the older Service keeps it): left out",
      },
      { service: 'ns/big', reason: 'ElementBudgetExceeded', note: 'needs about 32 nft elements' },
      { service: 'ns/z', reason: 'ServiceSkipped', note: 'spec.ports: not a list' },
    ]);
  });

  it('finds no problem where nothing is skipped', () => {
    assert.deepEqual(serviceProblems([]), []);
  });
});
