/**
 * The shape of a /debug/services answer as `explain` reads it (src/server/services-view.ts
 * writes it; the `counters` of each port and `countersSince` follow issue #15's contract). Only
 * the fields explain prints are named; the daemon may send more.
 */

/** One endpoint as /debug/services prints it. */
export interface AnswerEndpoint {
  /** `ip:port`, `[v6]:port`. */
  address: string;
  local: boolean;
  ready: boolean;
  serving: boolean;
  terminating: boolean;
}

/** New connections per frontend, read from the kernel's counters (issue #15). */
export interface AnswerCounter {
  /** The address:port the client used: `10.96.0.10:53`, `[fd00::10]:80`, `NODEIP:NODEPORT`. */
  frontend: string;
  connections: number;
  noEndpoints: number;
  sourceRangeDrops: number;
}

/** A userspace-mode listener of a port's frontend. */
export interface AnswerListener {
  frontend: string;
  address: string;
  port: number;
  protocol: string;
  active: number;
  refused: number;
}

/** One service port in one family. */
export interface AnswerPort {
  key: string;
  service: string;
  /** The Service port's name ('' when unnamed). */
  port: string;
  /** The Service port's number (absent from a daemon older than this field). */
  portNumber?: number;
  family: 'ipv4' | 'ipv6';
  protocol: string;
  frontends: {
    /** `ip:port` (IPv6 unbracketed), or null when the ClusterIP was lost. */
    clusterIP: string | null;
    externalIPs: string[];
    loadBalancerIPs: string[];
    nodePort: number | null;
    /** The addresses the NodePort answers on (absent from a daemon older than this field). */
    nodePortAddresses?: string[];
  };
  flags: {
    externalTrafficPolicyLocal: boolean;
    internalTrafficPolicyLocal: boolean;
    affinitySeconds: number;
    sourceRanges: string[];
    lbAlgorithm: string;
  };
  clusterEndpoints: AnswerEndpoint[];
  localEndpoints: AnswerEndpoint[];
  allEndpoints: AnswerEndpoint[];
  listeners?: AnswerListener[];
  counters?: AnswerCounter[];
}

/** Something the model did not use, with the reason. */
export interface AnswerSkipped {
  kind: string;
  name: string;
  reason: string;
  ignored?: boolean;
  contested?: boolean;
}

/** The whole answer. */
export interface ServicesAnswer {
  synced: boolean;
  node?: { name: string; ips: string[] };
  truncated?: unknown;
  ports: AnswerPort[];
  skipped: AnswerSkipped[];
  /** ISO time of the last full sync: the kernel's counters start there. */
  countersSince?: string;
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * `value` as a ServicesAnswer, or a reason it is not one. Checked only as deep as explain reads
 * (the lists and what each entry is); a daemon of another version answers with what it has.
 */
export function readServicesAnswer(value: unknown): ServicesAnswer | { problem: string } {
  if (!isObject(value)) return { problem: 'not a JSON object' };
  if (typeof value.synced !== 'boolean') return { problem: 'no "synced" field' };
  if (!Array.isArray(value.ports) || !value.ports.every(isObject))
    return { problem: '"ports" is not a list' };
  if (!Array.isArray(value.skipped) || !value.skipped.every(isObject))
    return { problem: '"skipped" is not a list' };
  for (const p of value.ports) {
    if (!isObject(p.frontends) || !isObject(p.flags) || !Array.isArray(p.clusterEndpoints))
      return { problem: `port ${JSON.stringify(p.key)} lacks frontends, flags or endpoints` };
  }
  return value as unknown as ServicesAnswer;
}
