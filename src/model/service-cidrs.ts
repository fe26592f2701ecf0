import type { V1ServiceCIDR } from '@kubernetes/client-node';
import { compareStrings } from '../util/sorted-index.js';
import { mergeCidrs } from './cidr-set.js';
import { parseCidr } from './ip.js';
import type { Skipped } from './types.js';

/**
 * The ClusterIP ranges in effect: the `spec.cidrs` of every ServiceCIDR object (Kubernetes ≥
 * 1.33, networking.k8s.io), or `--service-cidr` when there is none. The objects replace the
 * flag rather than add to it, as kube-proxy does once it watches them: the API server writes
 * its own --service-cluster-ip-range as the `kubernetes` ServiceCIDR, so the objects are the
 * whole truth, and a flag left over from before a range was retired must not keep dropping
 * traffic to it. Merged (mergeCidrs): an nft interval set refuses overlapping elements, and
 * the objects may overlap (a range being widened is two objects for a while).
 *
 * A CIDR that does not parse costs only itself: its object's other CIDRs still count.
 */
export function effectiveServiceCIDRs(
  objects: Iterable<V1ServiceCIDR>,
  flag: readonly string[],
): { cidrs: string[]; skipped: Skipped[] } {
  const list = [...objects].sort((a, b) => compareStrings(a.metadata?.name ?? '', b.metadata?.name ?? ''));
  if (list.length === 0) return { cidrs: mergeCidrs(flag), skipped: [] };
  const texts: string[] = [];
  const skipped: Skipped[] = [];
  for (const o of list) {
    const name = o.metadata?.name ?? '';
    const cidrs: unknown = o.spec?.cidrs;
    if (!Array.isArray(cidrs)) {
      if (cidrs !== undefined && cidrs !== null)
        skipped.push({ kind: 'ServiceCIDR', name, reason: 'spec.cidrs is not a list' });
      continue;
    }
    for (const c of cidrs as unknown[]) {
      if (typeof c === 'string' && c.includes('/') && parseCidr(c)) texts.push(c);
      else
        skipped.push({ kind: 'ServiceCIDR', name, reason: `spec.cidrs: ${JSON.stringify(c)} is not a CIDR` });
    }
  }
  return { cidrs: mergeCidrs(texts), skipped };
}
