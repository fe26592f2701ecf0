import type { Packet } from '../model/trace.js';
import type { ServicesQuery } from './services-view.js';

/** A packet to trace through the proxy's rules: GET /debug/trace (the model's Packet). */
export type TraceQuery = Packet;

/**
 * What the health, metrics and debug servers read from the daemon. Read-only: the servers
 * never change the daemon, and a throwing method costs one request a 500, nothing more.
 */
export interface DaemonView {
  mode: 'nftables' | 'userspace';
  /**
   * The last applied ruleset in `nft -f` syntax; '' before the first sync. With `service`
   * (`namespace/name`), only the elements of that Service's ports.
   */
  rules(service?: string): string;
  /** The ruleset read back from the kernel. */
  liveRules(): Promise<string>;
  /** Where such a packet goes; JSON-able. */
  trace(q: TraceQuery): unknown;
  /**
   * Traces the next such packet through the kernel (nftables mode), beside the model's answer;
   * JSON-able. Rejects with LIVE_TRACE_BUSY while another runs, LIVE_TRACE_UNAVAILABLE where
   * it cannot run. Absent: live traces are unavailable.
   */
  liveTrace?(q: TraceQuery, seconds: number): Promise<unknown>;
  /** Whether a live trace is running (GET /debug/trace/live); JSON-able. */
  liveTraceStatus?(): unknown;
  /** Every service port, its frontends, chosen endpoints, flags and skipped objects; JSON-able. */
  services(query?: ServicesQuery): unknown;
  /** The configuration the proxy runs with, as a KubeProxyConfiguration (/configz); JSON-able. */
  config(): unknown;
}
