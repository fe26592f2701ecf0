import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ErrorCodes, ProxyError } from '../errors.js';

/** A parsed `host:port` (`[v6]:port` for IPv6); host '' means every address. */
export interface BindAddress {
  host: string;
  port: number;
}

/** Parses kube-proxy's bind-address form; `what` names the address in the error. */
export function parseBindAddress(address: string, what: string): BindAddress {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]*)):([0-9]{1,5})$/.exec(address);
  const port = m ? Number(m[3]) : NaN;
  if (!m || !(port >= 0 && port <= 65535)) {
    throw new ProxyError(
      ErrorCodes.CONFIG_INVALID,
      `${what} address ${JSON.stringify(address)} is not host:port (e.g. 0.0.0.0:10256 or [::]:10256)`,
    );
  }
  return { host: m[1] ?? m[2] ?? '', port };
}

/** Starts `server` on `address`; a failure (port in use, address not local) names the address. */
export function listen(server: Server, address: string, what: string): Promise<AddressInfo> {
  const { host, port } = parseBindAddress(address, what);
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      server.off('listening', onListening);
      reject(
        new ProxyError(
          ErrorCodes.SERVER_LISTEN_FAILED,
          `cannot listen for ${what} on ${address}: ${hint(err)}`,
          { cause: err },
        ),
      );
    };
    const onListening = (): void => {
      server.off('error', onError);
      resolve(server.address() as AddressInfo);
    };
    server.once('error', onError);
    server.once('listening', onListening);
    server.listen(host === '' ? { port } : { host, port });
  });
}

function hint(err: NodeJS.ErrnoException): string {
  switch (err.code) {
    case 'EADDRINUSE':
      return 'address in use (is kube-proxy or another kube-nftproxy still running on this node?)';
    case 'EADDRNOTAVAIL':
      return 'no such local address on this node';
    case 'EACCES':
      return 'permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)';
    default:
      return err.message;
  }
}
