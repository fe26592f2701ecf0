/**
 * The throwaway cluster every kernel test and the demo use. Addressing: addresses.ts.
 *
 * ```ts
 * const lab = await Lab.create({ ipv6: true });
 * try {
 *   await lab.addPod('web-1', { ip: '10.244.1.11', ipv6: 'fd00:10:244:1::11' });
 *   await lab.addPod('far', { ip: '10.244.2.11', local: false }); // behind the remote node
 *   await lab.addClient('laptop', '172.30.0.100');
 *   await lab.serve('web-1', { tcp: [8080], udp: [5353] });
 *   await lab.nft(script); // or: ip netns exec lab.nodeNs kube-nftproxy ... --once
 *   const r = await lab.probe('laptop', { dst: '10.96.0.10', port: 80, proto: 'tcp', count: 30 });
 *   // r.answers: Map { 'web-1' => 30 }, r.clients: Set { '10.244.1.1' } when masqueraded
 * } finally {
 *   await lab.destroy();
 * }
 * ```
 */
export { LAB } from './addresses.js';
export { LabError, run, type ExecOptions, type ExecResult } from './exec.js';
export {
  Lab,
  type LabClient,
  type LabOptions,
  type LabPod,
  type LabServer,
  type PodOptions,
  type ProbeOptions,
  type ProbeResult,
  type ServeOptions,
} from './lab.js';
