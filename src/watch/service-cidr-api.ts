import type { KubeConfig } from '@kubernetes/client-node';
import { isListStatus } from '../errors.js';
import { listJson } from './list-json.js';

/** Where the API server serves ServiceCIDRs: the apiVersion and the informer's path. */
export interface ServiceCIDRApi {
  apiVersion: string;
  path: string;
}

/**
 * The ServiceCIDR versions to try, newest first: v1 from Kubernetes 1.33, v1beta1 before it
 * (1.31, 1.32, where the kind may also be switched off). Paths as literals: the RBAC test
 * (test/deploy/rbac.test.ts) reads the informer paths from the source text.
 */
export const SERVICE_CIDR_APIS: readonly ServiceCIDRApi[] = [
  { apiVersion: 'networking.k8s.io/v1', path: '/apis/networking.k8s.io/v1/servicecidrs' },
  { apiVersion: 'networking.k8s.io/v1beta1', path: '/apis/networking.k8s.io/v1beta1/servicecidrs' },
];

/**
 * The newest ServiceCIDR API the server serves, found by listing one object of each (a 404
 * says the version is not served); undefined when none is: an older API server, whose ranges
 * only --service-cidr knows. Any other answer (refused, unreachable) throws: the caller retries,
 * or lets the informer report it.
 */
export async function servedServiceCIDRApi(kubeConfig: KubeConfig): Promise<ServiceCIDRApi | undefined> {
  for (const api of SERVICE_CIDR_APIS) {
    try {
      await listJson(kubeConfig, api.path, { limit: '1' });
      return api;
    } catch (err) {
      if (isListStatus(err, 404)) continue;
      throw err;
    }
  }
  return undefined;
}
