import { buildConfig } from '../../src/config.js';
import type { ProxyConfig } from '../../src/config-types.js';
import type { Source, SourceHandler } from '../../src/watch/source.js';

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
