import assert from 'node:assert/strict';
import type { V1ServiceCIDR } from '@kubernetes/client-node';
import { LAB } from '../../scripts/lab/index.js';
import { silentLogger } from '../../src/log.js';
import { StateBuilder } from '../../src/model/state-builder.js';
import { trace } from '../../src/model/trace.js';
import { NftApplier } from '../../src/rules/applier.js';
import { Compiler, type CompileConfig } from '../../src/rules/compile.js';
import { createNft } from '../../src/rules/nft/exec.js';
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

  it("follows the ranges by element operations in partial syncs (the daemon's path)", async () => {
    const { lab } = traced();
    const config: CompileConfig = {
      table: 'kube-nftproxy',
      clusterCIDRs: [LAB.clusterCidr],
      masqueradeAll: false,
      serviceCIDRs: [LAB.serviceCidr],
      nodePortIPs: { ipv4: [], ipv6: [] },
    };
    const builder = new StateBuilder({
      nodeName: LAB.nodeName,
      nodeIPs: [LAB.nodeIp],
      lbAlgorithm: 'random',
      serviceCIDRs: config.serviceCIDRs,
    });
    const compiler = new Compiler(config);
    const applier = new NftApplier({ nft: createNft({ netns: lab.nodeNs }), log: silentLogger() });
    const packet = { src: '10.244.1.50', dst: FAR, port: 8080, proto: 'tcp' as const };
    /** Programs the ranges; then trace() and the kernel must agree on the packet to the far pod. */
    const step = async (ranges: V1ServiceCIDR[], dropped: boolean): Promise<void> => {
      const { state, delta } = builder.update(
        { services: new Map(), slicesOf: () => [], sliceServices: () => [], serviceCIDRs: ranges },
        [],
      );
      const compiled = compiler.compile(state, delta);
      await applier.sync(compiled.ruleset, compiled.delta ? { delta: compiled.delta } : {});
      const t = trace(state, config, packet);
      assert.equal(t.verdict, dropped ? 'drop' : 'no-match', t.why);
      const r = await lab.probe('pod', { dst: FAR, port: 8080, proto: 'tcp', count: 3, timeoutMs: 1500 });
      const answered = r.answers.get('far-1') ?? 0;
      assert.equal(
        dropped ? r.timedOut : answered,
        r.attempts,
        `kernel: ${JSON.stringify({ ...r, answers: [...r.answers] })}`,
      );
    };
    await step([range('kubernetes', [LAB.serviceCidr])], false);
    await step([range('kubernetes', [LAB.serviceCidr]), range('extra', [`${FAR}/32`])], true);
    assert.doesNotMatch(applier.lastTransaction, /chain|flush|add set|delete set/, applier.lastTransaction);
    assert.match(
      applier.lastTransaction,
      /add element ip kube-nftproxy service-cidrs \{ 10\.244\.2\.11(\/32)? \}/,
    );
    // A wider range in its place: one transaction deletes the old before adding the new.
    await step([range('kubernetes', [LAB.serviceCidr]), range('extra', ['10.244.2.8/29'])], true);
    assert.doesNotMatch(applier.lastTransaction, /chain|flush|add set|delete set/, applier.lastTransaction);
    await step([range('kubernetes', [LAB.serviceCidr])], false);
    assert.doesNotMatch(applier.lastTransaction, /chain|flush|add set|delete set/, applier.lastTransaction);
  });
});
