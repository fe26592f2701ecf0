import type { Trace } from '../model/trace.js';
import { hostPort, type KernelPath } from './kernel-path.js';

/**
 * Where the model and the kernel part ways, one sentence each; empty when they agree. The
 * model's verdicts in the kernel's terms: `dnat` is accepted, translated to one of the model's
 * endpoints, masqueraded as the model says (or as hairpin requires); `reject` and `drop` are
 * themselves; `no-match` is accepted untouched.
 */
export function disagreements(model: Trace, kernel: KernelPath): string[] {
  const out: string[] = [];
  if (!kernel.complete) return ['the kernel trace is incomplete: no drop and no end of the last hook seen'];
  if (model.verdict === 'dnat') {
    if (kernel.verdict !== 'accept')
      out.push(`verdict: the model translates, the kernel says ${kernel.verdict}`);
    const endpoints = model.endpoints.map((e) => hostPort(e.ip, e.port));
    if (kernel.dnat === null)
      out.push(`dnat: the model picks one of ${endpoints.join(', ')}, the kernel none`);
    else if (!endpoints.includes(kernel.dnat))
      out.push(`dnat: the kernel sent it to ${kernel.dnat}, not one of the model's ${endpoints.join(', ')}`);
    const hairpin =
      kernel.dnat !== null &&
      model.hairpin.some((ip) => kernel.dnat!.startsWith(hostPort(ip, undefined) + ':'));
    const masquerade = model.masquerade || hairpin;
    if (kernel.verdict === 'accept' && masquerade !== kernel.masquerade)
      out.push(
        `masquerade: the model says ${masquerade ? 'yes' : 'no'}, the kernel ${kernel.masquerade ? 'did' : 'did not'}`,
      );
    return out;
  }
  if (model.verdict === 'reject' || model.verdict === 'drop') {
    if (kernel.verdict !== model.verdict)
      out.push(`verdict: the model says ${model.verdict}, the kernel ${kernel.verdict}`);
    return out;
  }
  // no-match: the proxy leaves the packet alone.
  if (kernel.verdict !== 'accept')
    out.push(`verdict: the model leaves it alone, the kernel says ${kernel.verdict}`);
  if (kernel.dnat !== null) out.push(`dnat: the model leaves it alone, the kernel sent it to ${kernel.dnat}`);
  return out;
}
