import type { KubeConfig, KubernetesListObject, KubernetesObject } from '@kubernetes/client-node';
import fetch from 'node-fetch';
import { ErrorCodes, ProxyError } from '../errors.js';

/** A list request the API server answered with an error status; test it with isListStatus. */
export class ListStatusError extends ProxyError {
  constructor(
    readonly statusCode: number,
    message: string,
  ) {
    super(ErrorCodes.API_LIST_STATUS, message);
  }
}

/**
 * GET a list path and return the API server's JSON as it is, with the same credentials, TLS
 * settings and proxy as client-node's Watch (KubeConfig.applyToFetchOptions). client-node's
 * typed list calls copy every object into model classes: at 10,000 Services × 10 endpoints
 * that costs ~19 MB more heap for as long as the objects are cached, and the parsed JSON they
 * were copied from (~50 MB) is garbage at the moment the daemon is at its peak. Watch events
 * arrive as plain JSON too, so every object has one shape however it arrived.
 */
export async function listJson<T extends KubernetesObject>(
  kubeConfig: KubeConfig,
  path: string,
  query: Record<string, string | undefined>,
): Promise<KubernetesListObject<T>> {
  const cluster = kubeConfig.getCurrentCluster();
  if (!cluster) throw new ProxyError(ErrorCodes.KUBECONFIG_INVALID, 'No currently active cluster');
  const url = new URL(cluster.server + path);
  for (const [key, value] of Object.entries(query)) if (value !== undefined) url.searchParams.set(key, value);
  const init = await kubeConfig.applyToFetchOptions({ method: 'GET' });
  const response = await fetch(url, init);
  if (response.status !== 200) {
    // The body is a Status object; its message says why (forbidden, expired, ...).
    const text = await response.text().catch(() => '');
    let message = response.statusText || `HTTP ${response.status}`;
    try {
      message = (JSON.parse(text) as { message?: string }).message ?? message;
    } catch {
      // not JSON: keep the status text
    }
    throw new ListStatusError(response.status, message);
  }
  return (await response.json()) as KubernetesListObject<T>;
}
