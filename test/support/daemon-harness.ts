import { buildConfig } from '../../src/config.js';
import { Daemon } from '../../src/daemon.js';
import { silentLogger } from '../../src/log.js';
import type { Nft } from '../../src/rules/nft/exec.js';
import { FakeNft } from '../../src/rules/nft/fake.js';
import { FakeClock } from './fake-clock.js';
import { node } from './objects.js';
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

/**
 * A Daemon on a HandSource, started, its Node (with `nodeIP`, also its only local address)
 * already delivered: the rest of the objects are the test's to hand over.
 */
export async function startHandDaemon(opts: {
  node: string;
  flags?: string[];
  nft?: Nft;
  clock?: FakeClock;
  nodeIP?: string;
}): Promise<{ daemon: Daemon; handler: SourceHandler; clock: FakeClock }> {
  const clock = opts.clock ?? new FakeClock();
  const nodeIP = opts.nodeIP ?? '10.0.0.1';
  const source = new HandSource();
  const daemon = new Daemon(testDaemonConfig(opts.node, opts.flags), {
    log: silentLogger(),
    env: { localAddresses: [nodeIP] },
    nft: opts.nft ?? new FakeNft(),
    source,
    clock,
  });
  await daemon.start();
  const handler = source.handler!;
  handler.upsert('Node', node(opts.node, [nodeIP]));
  return { daemon, handler, clock };
}
