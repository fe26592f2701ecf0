import type { KubeConfig, KubernetesObject } from '@kubernetes/client-node';
import { systemClock, type Clock } from '../util/clock.js';
import { ErrorCodes, isListStatus, ProxyError } from '../errors.js';
import type { Logger } from '../log.js';
import { Backoff, type BackoffOptions } from './backoff.js';
import { servedServiceCIDRApi, SERVICE_CIDR_APIS } from './service-cidr-api.js';
import type { Kind, KindMap, Source, SourceHandler } from './source.js';
import { describe, SupervisedInformer, type InformerSpec } from './supervised-informer.js';

/**
 * kube-proxy's selector for Services and EndpointSlices alike: skip objects that ask for another
 * service proxy, and the endpoints of headless Services (kube-proxy's noProxyName and
 * noHeadlessEndpoints requirements, in the order labels.Selector prints them).
 */
export const PROXY_LABEL_SELECTOR =
  '!service.kubernetes.io/headless,!service.kubernetes.io/service-proxy-name';

export interface KubeSourceOptions {
  kubeConfig: KubeConfig;
  /** This node's name: its Node object is the only one watched. */
  nodeName: string;
  log: Logger;
  clock?: Clock;
  /**
   * Restart a watch that has sent nothing, not even a bookmark, for this long. API servers send
   * bookmarks about once a minute; 0 disables the watchdog.
   */
  watchdogMs?: number;
  /** Delay between restarts of one informer: doubles from initialMs up to maxMs, less jitter. */
  backoff?: BackoffOptions;
  /** The backoff's jitter source, in [0, 1); default Math.random. */
  random?: () => number;
}

export const KUBE_SOURCE_DEFAULTS = {
  watchdogMs: 3 * 60_000,
  // Up to half of each delay off at random: the nodes of a DaemonSet that lost their watches
  // together (an API server restart) come back spread out, not in lockstep.
  backoff: { initialMs: 500, maxMs: 30_000, jitter: 0.5 },
} as const;

/**
 * The API server as a Source: client-node informers on Services and EndpointSlices (with
 * kube-proxy's label selector), on this node's Node, and on ServiceCIDRs (v1, else v1beta1,
 * else none: service-cidr-api.ts), each supervised (restart with backoff, watchdog, relist
 * without loss or repeats). `synced()` follows the first full list of every kind.
 */
export function createKubeSource(opts: KubeSourceOptions): Source {
  if (!opts.nodeName) {
    throw new ProxyError(
      ErrorCodes.CONFIG_INVALID,
      'the kube source needs this node name (--hostname-override)',
    );
  }
  const log = opts.log.child({ component: 'kube-source' });
  const clock = opts.clock ?? systemClock;
  const supervisor = {
    kubeConfig: opts.kubeConfig,
    clock,
    watchdogMs: opts.watchdogMs ?? KUBE_SOURCE_DEFAULTS.watchdogMs,
    backoff: opts.backoff ?? KUBE_SOURCE_DEFAULTS.backoff,
    ...(opts.random ? { random: opts.random } : {}),
  };
  let informers: Array<SupervisedInformer<KubernetesObject>> = [];
  /** Bumped by start and stop: a discovery answer from an earlier start is ignored. */
  let generation = 0;
  let probeTimer: ReturnType<Clock['setTimeout']> | undefined;

  return {
    async start(handler: SourceHandler): Promise<void> {
      if (informers.length > 0) throw new Error('kube source started twice');
      const gen = ++generation;
      const stopped = (): boolean => gen !== generation;
      const listed = new Set<Kind>();
      let synced = false;

      // Every kind listed once (ServiceCIDR counts once it is known not to be served).
      const ready = (): void => {
        if (synced || listed.size < 4) return;
        synced = true;
        log.info({ kinds: [...listed] }, 'synced');
        handler.synced();
      };
      const inform = <K extends Kind>(kind: K, spec: Omit<InformerSpec, 'kind'>): void => {
        const informer = new SupervisedInformer<KindMap[K]>(
          { ...spec, kind },
          {
            upsert: (obj) => handler.upsert(kind, obj),
            remove: (namespace, name) => handler.remove(kind, namespace, name),
            listed: () => {
              listed.add(kind);
              ready();
            },
            problem: (what, err) => {
              log.warn({ kind, err }, what);
              handler.problem?.(what, err);
            },
            denied: (problem) => {
              if (problem) {
                const { verb, group, resource, status, message } = problem;
                // One line per refused resource, at the refusal's start; the retries go on quietly.
                log.error(
                  { kind, verb, group, resource, status, apiMessage: message },
                  `${kind}: the API server refuses to ${verb} ${resource} (HTTP ${status}), so no ` +
                    `${kind} change reaches the rules; ${problem.action}`,
                );
              } else {
                log.info({ kind }, `${kind}: the API server allows list and watch again`);
              }
              handler.denied?.(kind, problem);
            },
          },
          supervisor,
        );
        informers.push(informer as unknown as SupervisedInformer<KubernetesObject>);
      };

      inform('Service', { apiVersion: 'v1', path: '/api/v1/services', labelSelector: PROXY_LABEL_SELECTOR });
      inform('EndpointSlice', {
        apiVersion: 'discovery.k8s.io/v1',
        path: '/apis/discovery.k8s.io/v1/endpointslices',
        labelSelector: PROXY_LABEL_SELECTOR,
      });
      inform('Node', {
        apiVersion: 'v1',
        path: '/api/v1/nodes',
        fieldSelector: `metadata.name=${opts.nodeName}`,
      });

      log.info({ server: opts.kubeConfig.getCurrentCluster()?.server, node: opts.nodeName }, 'watching');
      for (const informer of informers) informer.start();

      // ServiceCIDRs: v1, else v1beta1, else none (the ranges of --service-cidr). Found beside
      // the other informers, so an API server slow to answer delays nothing but the first sync.
      const backoff = new Backoff(supervisor.backoff, opts.random);
      const probe = (): void => {
        probeTimer = undefined;
        servedServiceCIDRApi(opts.kubeConfig).then(
          (api) => {
            if (stopped()) return;
            if (!api) {
              log.info(
                { tried: SERVICE_CIDR_APIS.map((a) => a.apiVersion) },
                'the API server serves no ServiceCIDRs: the ClusterIP ranges are those of --service-cidr',
              );
              listed.add('ServiceCIDR');
              ready();
              return;
            }
            log.info({ apiVersion: api.apiVersion }, 'watching ServiceCIDRs');
            inform('ServiceCIDR', api);
            informers[informers.length - 1]!.start();
          },
          (err: unknown) => {
            if (stopped()) return;
            // Refused: the informer says so (once, with what to grant) and keeps retrying.
            if (isListStatus(err, 401, 403)) {
              inform('ServiceCIDR', SERVICE_CIDR_APIS[0]!);
              informers[informers.length - 1]!.start();
              return;
            }
            const delayMs = backoff.next();
            log.warn({ err, delayMs }, `ServiceCIDR discovery failed (${describe(err)}); retrying`);
            probeTimer = clock.setTimeout(probe, delayMs);
          },
        );
      };
      probe();
    },

    async stop(): Promise<void> {
      generation++;
      if (probeTimer !== undefined) clock.clearTimeout(probeTimer);
      probeTimer = undefined;
      for (const informer of informers) informer.stop();
      informers = [];
    },
  };
}
