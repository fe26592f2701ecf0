import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { ErrorCodes, ProxyError } from '../errors.js';
import { killGroup } from '../rules/nft/session.js';

/** netfilter's netlink protocol number (NETLINK_NETFILTER), the `Eth` column of /proc/net/netlink. */
const NETLINK_NETFILTER = 12;
/** The nftrace multicast group (NFNLGRP_NFTRACE = 9) as a bit of the `Groups` column. */
const NFTRACE_GROUP_BIT = 1 << (9 - 1);

/**
 * Whether process `pid` holds a netfilter netlink socket that has joined the trace group: from
 * then on, every trace event of its network namespace is queued for it. `nft monitor trace`
 * prints nothing when it is ready, and events sent before it joined are lost: this is the only
 * way to know, and it reads the kernel's own bookkeeping (/proc/PID/fd, /proc/PID/net/netlink,
 * the namespace the process is in). False for a process that is gone or cannot be read.
 */
export function joinedTraceGroup(pid: number, proc = '/proc'): boolean {
  let inodes: Set<string>;
  let table: string;
  try {
    inodes = new Set(
      readdirSync(`${proc}/${pid}/fd`)
        .map((fd) => {
          try {
            return /^socket:\[(\d+)\]$/.exec(readlinkSync(`${proc}/${pid}/fd/${fd}`))?.[1];
          } catch {
            return undefined;
          }
        })
        .filter((i): i is string => i !== undefined),
    );
    table = readFileSync(`${proc}/${pid}/net/netlink`, 'utf8');
  } catch {
    return false;
  }
  return subscribedInodes(table).some((inode) => inodes.has(inode));
}

/** The inodes of the netfilter sockets in a /proc/net/netlink listing that joined the trace group. */
export function subscribedInodes(listing: string): string[] {
  const out: string[] = [];
  for (const line of listing.split('\n').slice(1)) {
    // sk Eth Pid Groups Rmem Wmem Dump Locks Drops Inode
    const f = line.trim().split(/\s+/);
    if (f.length < 10 || Number(f[1]) !== NETLINK_NETFILTER) continue;
    if ((parseInt(f[3]!, 16) & NFTRACE_GROUP_BIT) !== 0) out.push(f[9]!);
  }
  return out;
}

/** How to start nft and how to tell it is listening; injected by tests. */
export interface MonitorDeps {
  spawn(args: string[]): ChildProcessWithoutNullStreams;
  /** Whether the process has joined the trace group (joinedTraceGroup). */
  joined?: (pid: number) => boolean;
}

/**
 * A running `nft monitor trace`: its lines, a wait until it listens, and its end. nft's own
 * exit (a crash, a refusal) ends the line stream and is reported through `exited`.
 */
export class TraceMonitor {
  readonly #child: ChildProcessWithoutNullStreams;
  readonly #joined: (pid: number) => boolean;
  #stderr = '';
  /** Resolves when nft has exited, with what it said on stderr. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>;

  constructor(deps: MonitorDeps, onLine: (line: string) => void) {
    this.#joined = deps.joined ?? joinedTraceGroup;
    this.#child = deps.spawn(['monitor', 'trace']);
    this.#child.stdin.end();
    this.#child.stderr.on('data', (b: Buffer) => {
      if (this.#stderr.length < 4096) this.#stderr += b.toString('utf8');
    });
    createInterface({ input: this.#child.stdout }).on('line', onLine);
    this.exited = new Promise((resolve) => {
      this.#child.on('error', (err) => {
        this.#stderr += String(err);
        resolve({ code: null, signal: null, stderr: this.#stderr });
      });
      this.#child.on('close', (code, signal) => resolve({ code, signal, stderr: this.#stderr }));
    });
  }

  /**
   * Resolves once nft listens for trace events; rejects with LIVE_TRACE_FAILED if it exits
   * first or has not joined within `limitMs` (a generous bound: it reads the ruleset first).
   */
  async listening(limitMs: number, pollMs = 10): Promise<void> {
    let gone = false;
    void this.exited.then(() => (gone = true));
    const deadline = Date.now() + limitMs;
    for (;;) {
      const pid = this.#child.pid;
      if (pid !== undefined && this.#joined(pid)) return;
      if (gone) {
        const { code, signal, stderr } = await this.exited;
        throw new ProxyError(
          ErrorCodes.LIVE_TRACE_FAILED,
          `nft monitor trace exited (${signal ?? `status ${code}`}) before it listened: ${stderr.trim() || 'no message'}`,
        );
      }
      if (Date.now() > deadline)
        throw new ProxyError(
          ErrorCodes.LIVE_TRACE_FAILED,
          `nft monitor trace did not listen for trace events within ${limitMs} ms`,
        );
      await new Promise((resolve) => setTimeout(resolve, pollMs));
    }
  }

  /** Kills nft (its whole process group) and waits for it to be gone. */
  async stop(): Promise<void> {
    killGroup(this.#child);
    await this.exited;
  }
}
