import assert from 'node:assert/strict';
import type { V1ServiceCIDR } from '@kubernetes/client-node';
import { LAB } from '../../scripts/lab/index.js';
import { addServingPods, labFlags, tracedLab, type Case } from '../support/traced-probe.js';

/**
 * ServiceCIDR objects through the real kernel, held to trace(): an address in a range they
 * give that no Service has is dropped, and once the range is gone it is not. The range is the
 * remote pod's own address, so "not dropped" shows as that pod answering directly.
 */
describe('kernel: ServiceCIDR objects', function () {
  this.timeout(180_000);
  const FAR = '10.244.2.11';
  const range = (name: string, cidrs: string[]): V1ServiceCIDR => ({
    apiVersion: 'networking.k8s.io/v1',
    kind: 'ServiceCIDR',
    metadata: { name },
    spec: { cidrs },
  });
  const traced = tracedLab(async (lab) => {
    await addServingPods(lab, [['far-1', FAR, false]] as const);
    await lab.addPod('pod', { ip: '10.244.1.50' });
  });
  const toFar: Case = { from: 'pod', dst: FAR, port: 8080, proto: 'tcp', expect: 'dropped' };

  it('drops an unallocated address of a range a ServiceCIDR gives (trace: drop)', async () => {
    const proxy = traced();
    await proxy.sync([range('kubernetes', [LAB.serviceCidr]), range('extra', [`${FAR}/32`])], labFlags());
    assert.deepEqual(proxy.state.serviceCIDRs, [LAB.serviceCidr, `${FAR}/32`]);
    const { traced: t, result } = await proxy.runCase(toFar);
    assert.equal(t.verdict, 'drop', t.why);
    assert.equal(result.timedOut, result.attempts, `kernel: ${JSON.stringify(result)}`);
  });

  it('lets it through once that ServiceCIDR is gone (trace: not a frontend)', async () => {
    const proxy = traced();
    await proxy.sync([range('kubernetes', [LAB.serviceCidr])], labFlags());
    const { traced: t, result } = await proxy.runCase({ ...toFar, expect: 'unproxied' });
    assert.equal(t.verdict, 'no-match', t.why);
    assert.deepEqual(
      [...result.answers.entries()],
      [['far-1', result.attempts]],
      `kernel: ${JSON.stringify({ ...result, answers: [...result.answers] })}`,
    );
  });
});
