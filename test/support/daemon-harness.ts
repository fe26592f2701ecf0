import { buildConfig } from '../../src/config.js';
import type { ProxyConfig } from '../../src/config-types.js';
import type { Logger } from '../../src/log.js';
import { createKubeSource } from '../../src/watch/kube-source.js';
import type { Source, SourceHandler } from '../../src/watch/source.js';
import type { TestApiServer } from './api-server.js';

/** A source the test drives by hand: it hands out the daemon's handler. */
export class HandSource implements Source {
  handler: SourceHandler | undefined;
  async start(handler: SourceHandler): Promise<void> {
    this.handler = handler;
  }
  async stop(): Promise<void> {
    this.handler = undefined;
  }
}

/**
 * The configuration of a Daemon under test: this node's name, its servers on ports of their own
 * (127.0.0.1:0), a sync as soon as a change comes (--min-sync-period 0s), then `extra` flags.
 */
export function testDaemonConfig(node: string, extra: string[] = []): ProxyConfig {
  return buildConfig([
    '--hostname-override',
    node,
    '--healthz-bind-address',
    '127.0.0.1:0',
    '--metrics-bind-address',
    '127.0.0.1:0',
    '--min-sync-period',
    '0s',
    ...extra,
  ]);
}

/**
 * The real API source against the test API server, as this node: its watchdog and backoff
 * short, so a test that breaks the connection sees the relist within seconds.
 */
export function testKubeSource(server: TestApiServer, nodeName: string, log: Logger): Source {
  return createKubeSource({
    kubeConfig: server.kubeConfig(),
    nodeName,
    log,
    watchdogMs: 5_000,
    backoff: { initialMs: 50, maxMs: 500 },
  });
}
