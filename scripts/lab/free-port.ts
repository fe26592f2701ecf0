import net from 'node:net';

/**
 * A port free on 127.0.0.1 a moment ago: bound on port 0, then closed. For addresses that must
 * be known before a process listens on them (a daemon's metrics address, HAProxy's frontend).
 */
export async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject);
    s.listen(0, '127.0.0.1', resolve);
  });
  const { port } = s.address() as net.AddressInfo;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}
