/**
 * The backend server of the userspace bench, in its own process so that neither proxy shares
 * an event loop with it. The first byte of a connection picks the mode: `B` streams a fixed
 * buffer until the client goes (bulk throughput), `E` echoes (request/response, new
 * connections). Prints `{"port":N}` on stdout when listening.
 */
import net from 'node:net';

const block = Buffer.alloc(1 << 20, 0x5a);

function bulk(s: net.Socket): void {
  const pump = (): void => {
    while (s.write(block));
  };
  s.on('drain', pump);
  pump();
}

const server = net.createServer({ noDelay: true, highWaterMark: 1 << 20 }, (s) => {
  s.on('error', () => {});
  s.once('data', (first: Buffer) => {
    if (first[0] === 0x42 /* B */) {
      s.on('data', () => {});
      bulk(s);
      return;
    }
    s.write(first.subarray(1));
    s.on('data', (d: Buffer) => s.write(d));
    s.on('end', () => s.end());
  });
});
server.listen({ host: '127.0.0.1', port: 0, backlog: 4096 }, () => {
  process.stdout.write(`${JSON.stringify({ port: (server.address() as net.AddressInfo).port })}\n`);
});
process.on('SIGTERM', () => process.exit(0));
