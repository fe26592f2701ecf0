/**
 * The Kubernetes Events kube-nftproxy sends (events.k8s.io/v1), as an operator reads them in
 * `kubectl describe svc` and `kubectl get events`. Reasons are CamelCase and stable: alerts and
 * dashboards select on them. The note says what, exactly, and is the line the daemon also logs.
 */

/** `reportingController` of every Event: who sent it (kube-proxy's is `kube-proxy`). */
export const REPORTING_CONTROLLER = 'kube-nftproxy';

/** Event types, as the API defines them. */
export type EventType = 'Normal' | 'Warning';

export const EventReasons = {
  /**
   * Normal, on this node's Node, once per start (kube-proxy's birth cry: the same reason on the
   * same object, reportingController `kube-nftproxy`).
   */
  Starting: 'Starting',
  /**
   * Warning, on a Service: the Service, or the part of it the note names (an invalid externalIP,
   * an unknown protocol, rules nft refused), is not programmed on this node.
   */
  ServiceSkipped: 'ServiceSkipped',
  /**
   * Warning, on a Service: a frontend it claims (external IP, load-balancer IP, NodePort) is
   * another Service's (the older one keeps it, a ClusterIP always does), or another of its own
   * frontends'. That frontend is left out; the rest of the Service works.
   */
  FrontendContested: 'FrontendContested',
  /**
   * Warning, on a Service: it would compile to more nft elements than --max-service-elements
   * allows, so none of its rules are programmed on this node.
   */
  ElementBudgetExceeded: 'ElementBudgetExceeded',
  /**
   * Warning, on a Service: its healthCheckNodePort cannot be listened on (port taken, address
   * gone); load balancers see the node as failing until it can. Tried again at every sync.
   */
  HealthCheckNodePortBindFailed: 'HealthCheckNodePortBindFailed',
} as const;

export type EventReason = (typeof EventReasons)[keyof typeof EventReasons];

/** The `action` of each reason: what the proxy was doing when it happened. */
export const EventActions: Readonly<Record<EventReason, string>> = {
  Starting: 'StartKubeNftproxy',
  ServiceSkipped: 'ProgramRules',
  FrontendContested: 'ProgramRules',
  ElementBudgetExceeded: 'ProgramRules',
  HealthCheckNodePortBindFailed: 'ServeHealthCheck',
};
