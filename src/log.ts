import { pino, type Logger, type DestinationStream } from 'pino';

export type { Logger };

/**
 * The root logger: pino JSON lines on stderr (stdout is reserved for --dry-run output).
 * Tests pass their own destination stream and parse the lines.
 */
export function createLogger(opts: { level?: string; destination?: DestinationStream } = {}): Logger {
  return pino(
    { level: opts.level ?? process.env.LOG_LEVEL ?? 'info', base: { name: 'kube-nftproxy' } },
    opts.destination ?? pino.destination(2),
  );
}

/** A logger that writes nothing, for library callers and tests that don't look. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
