/**
 * The two tiny programs the lab runs inside its namespaces, as plain CommonJS source for
 * `node -e`. They are strings rather than files so that they run the same from tsx (tests)
 * and from the compiled demo (dist/scripts/lab), with nothing to locate on disk.
 *
 * Both take one argument: their options as JSON.
 */

/** Options of {@link SERVER_JS}. */
export interface ServerProgramOptions {
  /** The name the server answers with (the pod's name). */
  name: string;
  tcp: number[];
  udp: number[];
  http: number[];
}

/**
 * Answers every TCP connection and every UDP datagram with one line of JSON
 * `{"name":..,"client":..}` (then closes, for TCP), and every HTTP request with the name as
 * body and the client address in `x-lab-client`. Prints `ready` once every port listens.
 * Exits when its stdin closes, so a parent that dies does not leave it behind.
 *
 * Sockets bind `::` (dual stack): IPv4 peers show as `::ffff:a.b.c.d`, which is stripped.
 */
export const SERVER_JS = String.raw`
'use strict';
const net = require('node:net');
const dgram = require('node:dgram');
const http = require('node:http');
const cfg = JSON.parse(process.argv[1]);
const norm = (a) => String(a || '').replace(/^::ffff:/, '');
const line = (client) => JSON.stringify({ name: cfg.name, client: norm(client) }) + '\n';
function fail(err) {
  process.stderr.write('server ' + cfg.name + ': ' + (err && err.message) + '\n');
  process.exit(2);
}
function listenTcp(server, port) {
  return new Promise((resolve) => {
    server.once('error', (err) => {
      if (err.code === 'EAFNOSUPPORT' || err.code === 'EADDRNOTAVAIL') {
        server.listen({ port, host: '0.0.0.0' }, resolve);
      } else fail(err);
    });
    server.listen({ port, host: '::' }, resolve);
  });
}
function listenUdp(port) {
  return new Promise((resolve) => {
    const sock = dgram.createSocket({ type: 'udp6' });
    sock.on('message', (msg, rinfo) => {
      sock.send(line(rinfo.address), rinfo.port, rinfo.address, () => {});
    });
    sock.once('error', fail);
    sock.bind(port, '::', resolve);
  });
}
const waits = [];
for (const port of cfg.tcp) {
  const server = net.createServer((s) => {
    s.on('error', () => {});
    s.end(line(s.remoteAddress));
  });
  waits.push(listenTcp(server, port));
}
for (const port of cfg.udp) waits.push(listenUdp(port));
for (const port of cfg.http) {
  const server = http.createServer((req, res) => {
    res.setHeader('x-lab-client', norm(req.socket.remoteAddress));
    res.setHeader('connection', 'close');
    res.setHeader('content-type', 'text/plain');
    res.end(cfg.name + '\n');
  });
  waits.push(listenTcp(server, port));
}
Promise.all(waits).then(() => process.stdout.write('ready\n'));
process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();
`;

/** Options of {@link PROBE_JS}. */
export interface ProbeProgramOptions {
  dst: string;
  port: number;
  proto: 'tcp' | 'udp' | 'http';
  count: number;
  timeoutMs: number;
  srcPort?: number;
  srcAddr?: string;
}

/** What {@link PROBE_JS} prints, as one JSON line. */
export interface ProbeProgramResult {
  answers: Record<string, number>;
  clients: string[];
  refused: number;
  timedOut: number;
  errors: string[];
  codes: Record<string, number>;
  attempts: number;
}

/**
 * Makes `count` sequential connections (or datagrams) and prints one JSON line with the
 * aggregate. An attempt ends as exactly one of: an answer, refused (RST or an ICMP error:
 * ECONNREFUSED, EHOSTUNREACH, ENETUNREACH), timed out (nothing within `timeoutMs`), or
 * another error (kept in `errors`).
 *
 * With a fixed TCP source port the client always closes second (the server sends FIN
 * first), so its port is not held in TIME_WAIT; a port still busy for a moment is retried
 * without counting as an attempt.
 */
export const PROBE_JS = String.raw`
'use strict';
const net = require('node:net');
const dgram = require('node:dgram');
const o = JSON.parse(process.argv[1]);
const REFUSED = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH']);
const BUSY = new Set(['EADDRINUSE', 'EADDRNOTAVAIL']);
const res = { answers: {}, clients: [], refused: 0, timedOut: 0, errors: [], codes: {}, attempts: 0 };
const clients = new Set();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function tcpAttempt() {
  return new Promise((done) => {
    let finished = false;
    let buf = '';
    const opts = { host: o.dst, port: o.port };
    if (o.srcPort) opts.localPort = o.srcPort;
    if (o.srcAddr) opts.localAddress = o.srcAddr;
    const s = net.connect(opts);
    const timer = setTimeout(() => end({ kind: 'timeout' }), o.timeoutMs);
    function end(r) {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      s.once('close', () => done(r));
      s.destroy();
    }
    s.setEncoding('utf8');
    s.on('connect', () => {
      if (o.proto === 'http') s.write('GET / HTTP/1.0\r\nHost: lab\r\n\r\n');
    });
    s.on('data', (d) => (buf += d));
    s.on('end', () => end({ kind: 'answer', text: buf }));
    s.on('error', (e) => end({ kind: 'error', code: e.code || 'EUNKNOWN', message: e.message }));
  });
}

function udpAttempt() {
  return new Promise((done) => {
    let finished = false;
    const s = dgram.createSocket({ type: net.isIPv6(o.dst) ? 'udp6' : 'udp4', reuseAddr: true });
    const timer = setTimeout(() => end({ kind: 'timeout' }), o.timeoutMs);
    function end(r) {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      try {
        s.close(() => done(r));
      } catch {
        done(r);
      }
    }
    s.on('error', (e) => end({ kind: 'error', code: e.code || 'EUNKNOWN', message: e.message }));
    s.on('message', (m) => end({ kind: 'answer', text: String(m) }));
    const go = () =>
      s.connect(o.port, o.dst, (err) => {
        if (err) return end({ kind: 'error', code: err.code || 'EUNKNOWN', message: err.message });
        s.send('ping\n', (e) => {
          if (e) end({ kind: 'error', code: e.code || 'EUNKNOWN', message: e.message });
        });
      });
    if (o.srcPort || o.srcAddr) s.bind({ port: o.srcPort || 0, address: o.srcAddr }, go);
    else go();
  });
}

function parseAnswer(text) {
  if (o.proto === 'http') {
    const split = text.indexOf('\r\n\r\n');
    if (!text.startsWith('HTTP/') || split < 0) throw new Error('not an HTTP response');
    const head = text.slice(0, split).split('\r\n');
    const hdr = head.find((h) => h.toLowerCase().startsWith('x-lab-client:'));
    return { name: text.slice(split + 4).trim(), client: hdr ? hdr.slice(hdr.indexOf(':') + 1).trim() : '' };
  }
  const v = JSON.parse(text.trim().split('\n')[0]);
  if (typeof v.name !== 'string') throw new Error('no name');
  return v;
}

async function main() {
  for (let i = 0; i < o.count; i++) {
    let r;
    for (let tries = 0; ; tries++) {
      r = o.proto === 'udp' ? await udpAttempt() : await tcpAttempt();
      if (r.kind === 'error' && BUSY.has(r.code) && o.srcPort && tries < 50) {
        await sleep(100);
        continue;
      }
      break;
    }
    res.attempts++;
    if (r.kind === 'answer') {
      try {
        const a = parseAnswer(r.text);
        res.answers[a.name] = (res.answers[a.name] || 0) + 1;
        clients.add(String(a.client));
      } catch (e) {
        res.errors.push('unreadable answer ' + JSON.stringify(r.text.slice(0, 200)) + ': ' + e.message);
      }
    } else if (r.kind === 'timeout') {
      res.timedOut++;
    } else {
      res.codes[r.code] = (res.codes[r.code] || 0) + 1;
      if (REFUSED.has(r.code)) res.refused++;
      else if (r.code === 'ETIMEDOUT') res.timedOut++;
      else res.errors.push(r.code + ': ' + r.message);
    }
  }
  res.clients = [...clients].sort();
  process.stdout.write(JSON.stringify(res) + '\n');
}
main().catch((e) => {
  process.stderr.write('probe: ' + (e && e.stack) + '\n');
  process.exit(2);
});
`;
