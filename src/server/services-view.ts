import { endpointName } from '../lb/maglev.js';
import type { ListenerInfo } from '../lb/userspace-backend.js';
import type { FrontendKind } from '../model/frontends.js';
import type { ProxyState } from '../model/types.js';
import type { CountersSnapshot } from '../counters/counter-reader.js';

/**
 * How a listener's frontend kind is printed: the singular of the port's `frontends` key
 * (`loadBalancerIPs` -> `loadBalancerIP`), as /debug/services has always printed it; the
 * answer is an operator contract, so the code's word (`loadBalancer`) stops here.
 */
const PRINTED_FRONTEND: Record<FrontendKind, string> = {
  clusterIP: 'clusterIP',
  externalIP: 'externalIP',
  loadBalancer: 'loadBalancerIP',
  nodePort: 'nodePort',
};

/** What one /debug/services request asks for. */
export interface ServicesQuery {
  /** Only this Service's ports and skipped entries, `namespace/name`. */
  service?: string;
  /**
   * Stop adding skipped entries, then ports, before the answer (indented JSON) would pass this
   * many bytes; the answer then says what it left out (`truncated`). Unbounded when omitted.
   */
  maxBytes?: number;
}

/** Bytes kept for the answer's own fields and its `truncated` marker. */
const HEAD_ROOM = 1024;

/**
 * Bytes an entry of a list takes in the answer as servers.ts sends it (JSON indented by two,
 * the lists two levels deep): each line indented four more, and `,` and a newline after it.
 */
function listEntrySize(value: unknown): number {
  const text = JSON.stringify(value, null, 2);
  let lines = 1;
  for (let i = text.indexOf('\n'); i >= 0; i = text.indexOf('\n', i + 1)) lines++;
  return Buffer.byteLength(text) + 4 * lines + 2;
}

/** Where a bounded answer stopped, and how to see the rest. */
export interface Truncated {
  ports: { shown: number; total: number };
  skipped: { shown: number; total: number };
  hint: string;
}

/**
 * The JSON of /debug/services: every service port with its endpoints and flags, and what was
 * skipped; filtered to one Service and bounded in size on request.
 */
export function describeServices(
  state: ProxyState | undefined,
  listeners?: ListenerInfo[],
  query: ServicesQuery = {},
  counters?: CountersSnapshot,
): unknown {
  if (!state) return { synced: false, ports: [], skipped: [] };
  const ep = (e: {
    ip: string;
    port: number;
    local: boolean;
    ready: boolean;
    serving: boolean;
    terminating: boolean;
  }) => ({
    address: endpointName(e),
    local: e.local,
    ready: e.ready,
    serving: e.serving,
    terminating: e.terminating,
  });
  // Listeners grouped by their service port's key once, not filtered again for every port.
  const byKey = new Map<string, Array<Omit<ListenerInfo, 'frontend'> & { frontend: string }>>();
  for (const listener of listeners ?? []) {
    const l = { ...listener, frontend: PRINTED_FRONTEND[listener.frontend] };
    const group = byKey.get(l.key);
    if (group) group.push(l);
    else byKey.set(l.key, [l]);
  }
  const { service, maxBytes = Infinity } = query;
  const nodePortIPs = state.nodePortIPs;
  const ports = service === undefined ? state.ports : state.ports.filter((sp) => sp.service === service);
  const skipped = service === undefined ? state.skipped : state.skipped.filter((s) => s.name === service);
  // What the answer holds besides the lists, and the marker, with room for the counts.
  let budget = maxBytes - HEAD_ROOM - Buffer.byteLength(JSON.stringify(state.node, null, 2));
  const countersSince = counters ? new Date(counters.since).toISOString() : undefined;
  /** Whether `value` still fits, measured as it is sent: indented JSON (servers.ts). */
  const fits = (value: unknown): boolean => {
    if (budget === Infinity) return true;
    budget -= listEntrySize(value);
    return budget >= 0;
  };
  // Skipped entries first: they are what someone looking for a missing Service needs, and
  // they are few unless the input is bad.
  const shownSkipped: unknown[] = [];
  for (const s of skipped) {
    if (!fits(s)) break;
    shownSkipped.push(s);
  }
  const shownPorts: unknown[] = [];
  if (shownSkipped.length === skipped.length)
    for (const sp of ports) {
      const described = describePort(sp);
      if (!fits(described)) break;
      shownPorts.push(described);
    }
  const truncated: Truncated | undefined =
    shownPorts.length < ports.length || shownSkipped.length < skipped.length
      ? {
          ports: { shown: shownPorts.length, total: ports.length },
          skipped: { shown: shownSkipped.length, total: skipped.length },
          hint: `answer cut at ${maxBytes} bytes: ask for one Service with ?service=namespace/name`,
        }
      : undefined;
  return {
    synced: true,
    node: state.node,
    ...(countersSince !== undefined ? { countersSince } : {}),
    ...(truncated ? { truncated } : {}),
    ports: shownPorts,
    skipped: shownSkipped,
  };

  function describePort(sp: ProxyState['ports'][number]): unknown {
    return {
      key: sp.key,
      service: sp.service,
      port: sp.portName,
      portNumber: sp.port,
      family: sp.family,
      protocol: sp.protocol,
      frontends: {
        clusterIP: sp.clusterIP ? `${sp.clusterIP}:${sp.port}` : null,
        externalIPs: sp.externalIPs,
        loadBalancerIPs: sp.loadBalancerIPs,
        nodePort: sp.nodePort || null,
        // Where the NodePort answers: the addresses ownership was decided on (the model's).
        nodePortAddresses: sp.nodePort ? (nodePortIPs?.[sp.family] ?? []) : [],
      },
      flags: {
        externalTrafficPolicyLocal: sp.externalPolicyLocal,
        internalTrafficPolicyLocal: sp.internalPolicyLocal,
        affinitySeconds: sp.affinitySeconds,
        sourceRanges: sp.sourceRanges,
        lbAlgorithm: sp.lbAlgorithm,
      },
      clusterEndpoints: sp.clusterEndpoints.map(ep),
      localEndpoints: sp.localEndpoints.map(ep),
      allEndpoints: sp.allEndpoints.map(ep),
      ...(listeners ? { listeners: byKey.get(sp.key) ?? [] } : {}),
      // The contract's shape: what a dashboard or `explain` reads, without the metric labels.
      ...(counters
        ? {
            counters: (counters.byKey.get(sp.key)?.frontends ?? []).map((c) => ({
              frontend: c.frontend,
              connections: c.connections,
              noEndpoints: c.noEndpoints,
              sourceRangeDrops: c.sourceRangeDrops,
            })),
          }
        : {}),
    };
  }
}
