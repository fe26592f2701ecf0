/**
 * The real `kube-nftproxy` binary (dist/src/cli.js) as a child process, so that its memory is
 * measured alone: an in-process daemon shares its heap and RSS with the bench and the test API
 * server, and subtracting one from the other is only an estimate. Its nft runs inside the
 * bench's network namespace through an `nft` on PATH that is `ip netns exec NS nft` (and so
 * does its `conntrack`): the binary itself is unchanged and sees the host's network (where the
 * API server listens).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { KubeConfig } from '@kubernetes/client-node';
import { parseDockerfile, stageEnv } from '../test/support/dockerfile.js';
import { freePort } from '../scripts/lab/free-port.js';
import { round } from './harness.js';

const CLI = fileURLToPath(new URL('../src/cli.js', import.meta.url));
// dist/bench/ at run time: the Dockerfile is two levels up.
const DOCKERFILE = fileURLToPath(new URL('../../Dockerfile', import.meta.url));

/** The runtime stage's ENV of the project's Dockerfile: the binary runs as the image runs it. */
function imageEnv(): Record<string, string> {
  const stages = parseDockerfile(readFileSync(DOCKERFILE, 'utf8'));
  return stageEnv(stages[stages.length - 1]!);
}

/** kB fields of /proc/PID/status, in MB. */
function statusMb(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no ${field} in /proc/${pid}/status`);
  return round(Number(m[1]) / 1024);
}

/**
 * A sample line of a series only a scrape with the per-Service counters has (its HELP and TYPE
 * lines are there either way).
 */
const COUNTER_SERIES = '\nkube_nftproxy_service_connections_total{';

export class DaemonProcess {
  private exited: string | undefined;
  private stderr = '';
  /** When it was spawned (wall clock, ms). */
  readonly spawnedAt = Date.now();
  /** When its first sync committed, from /healthz `lastUpdated` (wall clock, ms). */
  firstSyncAt: number | undefined;

  private constructor(
    private readonly child: ChildProcess,
    private readonly dir: string,
    private readonly metricsUrl: string,
    private readonly healthzUrl: string,
  ) {
    child.stderr?.on('data', (d: Buffer) => (this.stderr = (this.stderr + d.toString()).slice(-4000)));
    child.on('exit', (code, signal) => (this.exited = `exit ${code ?? signal}`));
  }

  /** Starts the binary with `flags`, credentials from `kubeConfig`, and nft inside `netns`. */
  static async start(opts: {
    kubeConfig: KubeConfig;
    netns: string;
    flags: string[];
  }): Promise<DaemonProcess> {
    const dir = mkdtempSync(join(tmpdir(), 'kube-nftproxy-bench-'));
    const kubeconfig = join(dir, 'kubeconfig');
    writeFileSync(kubeconfig, opts.kubeConfig.exportConfig());
    // The real nft and conntrack by their full paths: by name, a shim would find itself first
    // on PATH. conntrack too runs in the namespace: the daemon never lists or deletes the host's.
    for (const tool of ['nft', 'conntrack']) {
      const real = execFileSync('sh', ['-c', `command -v ${tool} || echo /usr/sbin/${tool}`], {
        encoding: 'utf8',
      }).trim();
      writeFileSync(join(dir, tool), `#!/bin/sh\nexec ip netns exec ${opts.netns} ${real} "$@"\n`, {
        mode: 0o755,
      });
    }
    const metrics = `127.0.0.1:${await freePort()}`;
    const healthz = `127.0.0.1:${await freePort()}`;
    const child = spawn(
      process.execPath,
      [
        CLI,
        '--kubeconfig',
        kubeconfig,
        '--healthz-bind-address',
        healthz,
        '--metrics-bind-address',
        metrics,
        // It runs in the host's network namespace: leave the host's conntrack sysctls alone.
        '--conntrack-max-per-core=0',
        '--conntrack-tcp-timeout-established=0',
        '--conntrack-tcp-timeout-close-wait=0',
        ...opts.flags,
      ],
      // The daemon's JSON log goes to a file, read only to explain a failure.
      {
        stdio: ['ignore', openSync(join(dir, 'log'), 'w'), 'pipe'],
        env: { ...process.env, ...imageEnv(), PATH: `${dir}:${process.env.PATH ?? ''}` },
      },
    );
    return new DaemonProcess(child, dir, `http://${metrics}/metrics`, `http://${healthz}/healthz`);
  }

  /** Successful syncs so far, from the sync-duration histogram's count (0 before the servers answer). */
  /**
   * Syncs seen so far: each new `lastUpdated` (the last successful sync) of /healthz. Not read
   * from /metrics: a scrape reads the per-Service counters from the kernel (--service-counters),
   * and polling it every 20 ms would measure the scrapes, not the daemon (see scrape()).
   */
  async syncs(): Promise<number> {
    if (this.exited) throw new Error(`the daemon ended (${this.exited}): ${this.stderr.trim()}`);
    const body = await fetch(this.healthzUrl)
      .then((r) => r.json() as Promise<{ status?: { IPv4?: { lastUpdated?: string } } }>)
      .catch(() => undefined);
    const last = body?.status?.IPv4?.lastUpdated;
    if (last !== undefined && !last.startsWith('0001-') && last !== this.lastSync) {
      this.lastSync = last;
      this.seenSyncs++;
      this.firstSyncAt ??= Date.parse(last);
    }
    return this.seenSyncs;
  }

  private lastSync: string | undefined;
  private seenSyncs = 0;

  /**
   * One /metrics scrape, as Prometheus makes it: its size in bytes, and whether it carries the
   * per-Service counters (a read that takes longer than the daemon waits is answered with the
   * last one, and there is none before the first read ends).
   */
  async scrape(): Promise<{ bytes: number; counters: boolean }> {
    const text = await fetch(this.metricsUrl).then((r) => r.text());
    return { bytes: Buffer.byteLength(text), counters: text.includes(COUNTER_SERIES) };
  }

  /** Polls until more than `than` syncs have succeeded. */
  async waitForSyncs(than: number, timeoutMs: number): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const n = await this.syncs();
      if (n > than) return n;
      if (Date.now() > deadline)
        throw new Error(
          `the daemon made no sync past ${than} in ${timeoutMs} ms; its log ends: ${this.logTail()}`,
        );
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  private logTail(): string {
    return readFileSync(join(this.dir, 'log'), 'utf8').slice(-2000);
  }

  /** Resident memory now, and its peak so far (VmRSS, VmHWM). */
  memory(): { rssMb: number; peakMb: number } {
    const pid = this.child.pid!;
    return { rssMb: statusMb(pid, 'VmRSS'), peakMb: statusMb(pid, 'VmHWM') };
  }

  /**
   * CPU seconds so far, from /proc/PID/stat: its own (user + system), and that of the children
   * it has waited for (every `nft -f` it ran; the long-lived `nft -i` only once it ended).
   * Unlike wall time, not stretched by what else the machine runs.
   */
  cpu(): { ownS: number; childrenS: number } {
    // The fields after the command name (which may hold spaces), from field 3 on.
    const stat = readFileSync(`/proc/${this.child.pid!}/stat`, 'utf8');
    const f = stat
      .slice(stat.lastIndexOf(')') + 2)
      .split(' ')
      .map(Number);
    const tick = 100; // USER_HZ: 100 on every Linux architecture Node runs on
    return { ownS: (f[11]! + f[12]!) / tick, childrenS: (f[13]! + f[14]!) / tick };
  }

  /** SIGTERM, as the kubelet stops it (the rules stay); then the temporary files go. */
  async stop(): Promise<void> {
    if (!this.exited) {
      const gone = new Promise((resolve) => this.child.once('exit', resolve));
      this.child.kill('SIGTERM');
      await gone;
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
