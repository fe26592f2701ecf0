/** Helpers for the load-balancer tests: ProxyState builders, real servers on 127.0.0.1. */
import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import type { Endpoint, ProxyState, ServicePort } from '../../src/model/types.js';

/** A deterministic Math.random stand-in, so tests count outcomes without luck. */
export function seededRandom(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32;
  };
}

export function endpoint(port: number, ip = '127.0.0.1'): Endpoint {
  return { ip, port, ready: true, serving: true, terminating: false, local: true };
}

export function servicePort(
  name: string,
  endpoints: Endpoint[],
  extra: Partial<ServicePort> = {},
): ServicePort {
  const protocol = extra.protocol ?? 'TCP';
  return {
    key: `default/${name}:/${protocol}/ipv4`,
    service: `default/${name}`,
    namespace: 'default',
    name,
    portName: '',
    family: 'ipv4',
    protocol,
    clusterIP: '10.96.0.10',
    port: 80,
    nodePort: 0,
    externalIPs: [],
    loadBalancerIPs: [],
    sourceRanges: [],
    externalPolicyLocal: false,
    internalPolicyLocal: false,
    affinitySeconds: 0,
    healthCheckNodePort: 0,
    lbAlgorithm: 'random',
    allEndpoints: endpoints,
    clusterEndpoints: endpoints,
    localEndpoints: endpoints,
    hasEndpoints: endpoints.length > 0,
    externallyAccessible: false,
    ...extra,
  };
}

export function state(ports: ServicePort[]): ProxyState {
  return {
    node: { name: 'node-a', ips: ['127.0.0.1'], labels: {} },
    ports: [...ports].sort((a, b) => (a.key < b.key ? -1 : 1)),
    skipped: [],
  };
}

/** A TCP server that greets every connection with its name and closes. */
export async function nameServer(name: string): Promise<{ port: number; server: net.Server }> {
  const server = net.createServer((s) => s.end(name));
  return { port: await listen(server), server };
}

export async function listen(server: net.Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as net.AddressInfo).port;
}

export function closeServer(server: net.Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

/** A port nothing listens on: bound once, then closed. */
export async function deadPort(): Promise<number> {
  const s = net.createServer();
  const port = await listen(s);
  await closeServer(s);
  return port;
}

/** Connects, reads until the server closes, returns what it said. */
export function fetchName(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const c = net.connect(port, '127.0.0.1');
    c.on('data', (d: Buffer) => chunks.push(d));
    c.on('error', reject);
    c.on('end', () => resolve(Buffer.concat(chunks).toString()));
  });
}

/** A UDP server that answers every datagram with `name:` + the datagram. */
export async function udpNameServer(name: string): Promise<{ port: number; socket: dgram.Socket }> {
  const socket = dgram.createSocket('udp4');
  socket.on('message', (msg, rinfo) =>
    socket.send(Buffer.concat([Buffer.from(`${name}:`), msg]), rinfo.port, rinfo.address),
  );
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  return { port: socket.address().port, socket };
}

export function tally(xs: string[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const x of xs) m.set(x, (m.get(x) ?? 0) + 1);
  return m;
}

/**
 * An endpoint whose connects never complete: a listener (backlog 1) in a stopped process,
 * its accept queue filled by two connections first, so the kernel drops every further SYN
 * and a connect waits for the kernel's retries, as with a dead host.
 */
export async function stalledEndpoint(): Promise<{ port: number; close: () => void }> {
  const child = spawn(
    process.execPath,
    [
      '-e',
      "const s=require('net').createServer();s.listen({port:0,host:'127.0.0.1',backlog:1},()=>console.log(s.address().port))",
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const fillers: net.Socket[] = [];
  const close = (): void => {
    for (const f of fillers) f.destroy();
    child.kill('SIGKILL');
  };
  try {
    const port = await new Promise<number>((resolve, reject) => {
      child.once('error', reject);
      child.stdout!.once('data', (d: Buffer) => resolve(Number(String(d).trim())));
    });
    process.kill(child.pid!, 'SIGSTOP');
    // Stopped: state T in /proc/<pid>/stat (after the command name in parentheses).
    while (!/\) T /.test(readFileSync(`/proc/${child.pid!}/stat`, 'utf8')))
      await new Promise((resolve) => setTimeout(resolve, 10));
    for (let i = 0; i < 2; i++) {
      const f = net.connect(port, '127.0.0.1');
      f.on('error', () => {});
      fillers.push(f);
      await new Promise((resolve) => f.once('connect', resolve));
    }
    return { port, close };
  } catch (err) {
    close();
    throw err;
  }
}

/** A UDP port nothing is bound to on 127.0.0.1: bound once, then closed. */
export async function freeUdpPort(): Promise<number> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', resolve));
  const port = s.address().port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

/** A UDP client bound to `address` (any 127.0.0.0/8 address is local on lo). */
export async function udpClient(address = '127.0.0.1'): Promise<dgram.Socket> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => s.bind(0, address, resolve));
  return s;
}
