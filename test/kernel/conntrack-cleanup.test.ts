import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { LAB, Lab, type ProbeResult } from '../../scripts/lab/index.js';
import { createConntrack } from '../../src/conntrack/exec.js';
import { Daemon } from '../../src/daemon.js';
import { silentLogger } from '../../src/log.js';
import type { ProxyState } from '../../src/model/types.js';
import { createNft, type Nft } from '../../src/rules/nft/exec.js';
import { TestApiServer, type StoredObject } from '../support/api-server.js';
import { requireConntrack, requireKernel } from '../support/capabilities.js';
import { node, service, slice, type EndpointSpec } from '../support/objects.js';
import { waitFor } from '../support/wait-for.js';
import { testDaemonConfig, testKubeSource } from '../support/daemon-harness.js';

/**
 * Stale UDP conntrack entries (issue #12) with the whole daemon: client-node against a
 * TestApiServer, nft and conntrack inside the lab's node namespace, real datagrams from a
 * FIXED source port, so that every attempt refreshes one conntrack entry, as a DNS resolver
 * does. A pod "deleted" is made silent (a drop rule in its own namespace), never unplugged:
 * conntrack drops masqueraded entries by itself when their interface goes away, which would
 * hide the bug. Every check counts answers; the waits are generous bounds on outcomes (a sync
 * that holds the change, the cleanup after it), never durations.
 */
describe('kernel: stale UDP conntrack entries', function () {
  this.timeout(300_000);
  const NS = 'ct';
  const DNS_VIP = '10.96.0.53';
  const LATE_VIP = '10.96.0.54';
  const WEB_VIP = '10.96.0.80';
  const NODE_PORT = 30053;
  const DNS6_VIP = 'fd00:10:96::53';
  const PODS = { 'dns-1': '10.244.1.21', 'dns-2': '10.244.1.22' } as const;
  const PODS6 = { 'dns-1': 'fd00:10:244:1::21', 'dns-2': 'fd00:10:244:1::22' } as const;
  type PodName = keyof typeof PODS;
  /** `dns` has a ClusterIP and a NodePort; `dns6` an IPv6 ClusterIP, on the same pods. */
  type Dns = 'dns' | 'dns6';
  const log = silentLogger();
  let lab: Lab;
  let server: TestApiServer;
  let nft: Nft;
  let daemon: Daemon | undefined;
  const children: ChildProcessWithoutNullStreams[] = [];

  const dnsSlice = (pods: PodName[], svc: Dns = 'dns'): StoredObject =>
    stored(
      slice(
        NS,
        `${svc}-a`,
        svc,
        [{ name: 'dns', port: 5353, protocol: 'UDP' }],
        pods.map((p) => ({ ip: (svc === 'dns' ? PODS : PODS6)[p], nodeName: LAB.nodeName })),
        svc === 'dns' ? 'IPv4' : 'IPv6',
      ),
    );

  /** Probes `count` datagrams from `from`'s fixed source port `srcPort`. */
  const probe = (
    from: string,
    dst: string,
    port: number,
    srcPort: number,
    count: number,
    timeoutMs = 1_000,
  ): Promise<ProbeResult> => lab.probe(from, { dst, port, proto: 'udp', srcPort, count, timeoutMs });

  const only = (r: ProbeResult): string[] => [...r.answers.keys()].sort();

  /** Waits until the daemon has synced a state that satisfies `holds`, then for its cleanup. */
  const synced = async (holds: (state: ProxyState) => boolean, what: string): Promise<void> => {
    await waitFor(() => daemon!.state !== undefined && holds(daemon!.state), { timeoutMs: 60_000, what });
    await daemon!.conntrack!.idle();
  };
  const dnsServes =
    (pods: PodName[], svc: Dns = 'dns') =>
    (state: ProxyState) => {
      const sp = state.ports.find((p) => p.service === `${NS}/${svc}` && p.protocol === 'UDP');
      const serving = (sp?.allEndpoints ?? []).filter((e) => e.serving).map((e) => e.ip);
      return same(serving.sort(), pods.map((p) => (svc === 'dns' ? PODS : PODS6)[p]).sort());
    };

  const silence = (pod: PodName) =>
    lab.nft(
      'table inet silent {\n chain input {\n type filter hook input priority 0;\n udp dport 5353 drop\n }\n}\n',
      pod,
    );
  const unsilence = (pod: PodName) => lab.exec(pod, ['nft', 'delete', 'table', 'inet', 'silent']);

  /** Conntrack entries in the node namespace to `dst` (UDP). */
  const entriesTo = async (dst: string): Promise<string[]> => {
    const r = await lab.exec('node', ['conntrack', '-L', '-p', 'udp', '--orig-dst', dst], {
      allowFail: true,
    });
    return r.stdout.split('\n').filter((l) => l.trim() !== '');
  };

  before(async function () {
    requireKernel(this);
    requireConntrack(this);
    lab = await Lab.create({ ipv6: true });
    for (const [name, ip] of Object.entries(PODS)) {
      await lab.addPod(name, { ip, ipv6: PODS6[name as PodName] });
      await lab.serve(name, { udp: [5353] });
      children.push(lineServer(lab.ns(name), name, 8081));
    }
    await lab.addPod('client-pod', { ip: '10.244.1.50', ipv6: 'fd00:10:244:1::50' });
    await lab.addClient('outside');
    nft = createNft({ netns: lab.nodeNs, session: true });
    server = await TestApiServer.create({ bookmarkIntervalMs: 1_000 });
    server.create('Node', stored(node(LAB.nodeName, [LAB.nodeIp])));
    server.create(
      'Service',
      stored(
        service(NS, 'dns', {
          type: 'NodePort',
          clusterIP: DNS_VIP,
          ports: [{ name: 'dns', port: 53, protocol: 'UDP', targetPort: 5353, nodePort: NODE_PORT }],
        }),
      ),
    );
    server.create('EndpointSlice', dnsSlice(['dns-1', 'dns-2']));
    server.create(
      'Service',
      stored(
        service(NS, 'dns6', {
          ipFamilyPolicy: 'SingleStack',
          ipFamilies: ['IPv6'],
          clusterIP: DNS6_VIP,
          clusterIPs: [DNS6_VIP],
          ports: [{ name: 'dns', port: 53, protocol: 'UDP', targetPort: 5353 }],
        }),
      ),
    );
    server.create('EndpointSlice', dnsSlice(['dns-1', 'dns-2'], 'dns6'));
    server.create(
      'Service',
      stored(
        service(NS, 'web', { clusterIP: WEB_VIP, ports: [{ name: 'line', port: 80, targetPort: 8081 }] }),
      ),
    );
    server.create('EndpointSlice', webSlice(['dns-1', 'dns-2']));
    // No --service-cidr: a datagram to a VIP nobody serves yet is routed away (and tracked),
    // as on a node whose proxy has not programmed that Service yet.
    const config = testDaemonConfig(LAB.nodeName, [
      '--cluster-cidr',
      `${LAB.clusterCidr},${LAB.clusterCidr6}`,
      '--sync-period',
      '30s',
    ]);
    daemon = new Daemon(config, {
      log,
      env: { localAddresses: [LAB.nodeIp, LAB.nodePodIp] },
      nft,
      conntrack: createConntrack({ netns: lab.nodeNs }),
      source: testKubeSource(server, LAB.nodeName, log),
    });
    await daemon.start();
    await synced(
      (s) => dnsServes(['dns-1', 'dns-2'])(s) && dnsServes(['dns-1', 'dns-2'], 'dns6')(s),
      'the first sync',
    );
  });

  after(async () => {
    for (const c of children) c.kill('SIGKILL');
    await daemon?.stop();
    await server?.close();
    await lab?.destroy();
  });

  const frontends: Array<{ what: string; from: string; dst: string; port: number; svc: Dns }> = [
    { what: 'a ClusterIP, from a pod', from: 'client-pod', dst: DNS_VIP, port: 53, svc: 'dns' },
    { what: 'a NodePort, from outside', from: 'outside', dst: LAB.nodeIp, port: NODE_PORT, svc: 'dns' },
    { what: 'an IPv6 ClusterIP, from a pod', from: 'client-pod', dst: DNS6_VIP, port: 53, svc: 'dns6' },
  ];
  let srcPort = 41_000;
  for (const fe of frontends) {
    for (const how of ['deleted (made silent)', 'removed from the slice while it still answers'] as const) {
      it(`moves a flow to ${fe.what} off an endpoint ${how}`, async () => {
        const sport = srcPort++;
        const first = await probe(fe.from, fe.dst, fe.port, sport, 3);
        assert.equal(
          first.answers.size,
          1,
          `one endpoint holds the flow: ${JSON.stringify([...first.answers])}`,
        );
        const held = only(first)[0] as PodName;
        const other: PodName = held === 'dns-1' ? 'dns-2' : 'dns-1';
        const silent = how === 'deleted (made silent)';
        try {
          if (silent) {
            await silence(held);
            // The bug, before any change: the entry keeps the flow on the silent pod.
            const stuck = await probe(fe.from, fe.dst, fe.port, sport, 2, 300);
            assert.equal(stuck.timedOut, 2, 'the flow is stuck on the silent pod');
          }
          server.update('EndpointSlice', dnsSlice([other], fe.svc));
          await synced(dnsServes([other], fe.svc), `the slice without ${held}`);
          const after = await probe(fe.from, fe.dst, fe.port, sport, 5);
          assert.deepEqual(only(after), [other]);
          assert.equal(after.answers.get(other), 5);
        } finally {
          // back to both, for the next case
          if (silent) await unsilence(held);
          server.update('EndpointSlice', dnsSlice(['dns-1', 'dns-2'], fe.svc));
        }
        await synced(dnsServes(['dns-1', 'dns-2'], fe.svc), 'the slice with both again');
      });
    }
  }

  it('counts what it deleted, per family', async () => {
    const text = await daemon!.metrics.registry.metrics();
    const deleted = /^kubeproxy_conntrack_reconciler_deleted_entries_total\{ip_family="IPv4"\} (\d+)/m.exec(
      text,
    );
    assert.ok(deleted && Number(deleted[1]) >= 4, text);
    const deleted6 = /^kubeproxy_conntrack_reconciler_deleted_entries_total\{ip_family="IPv6"\} (\d+)/m.exec(
      text,
    );
    assert.ok(deleted6 && Number(deleted6[1]) >= 2, text);
    assert.match(
      text,
      /^kubeproxy_conntrack_reconciler_sync_duration_seconds_count\{ip_family="IPv4"\} [1-9]/m,
    );
  });

  it('leaves an established TCP connection on the endpoint removed from the slice', async () => {
    const client = lineClient(lab.ns('client-pod'), WEB_VIP, 80);
    children.push(client.child);
    const first = await client.ask();
    const held = first as PodName;
    assert.ok(held in PODS, first);
    const other: PodName = held === 'dns-1' ? 'dns-2' : 'dns-1';
    const runs = daemon!.conntrack!.runs;
    server.update('EndpointSlice', webSlice([other]));
    // A UDP change in the same breath, so that a cleanup certainly runs after it.
    server.update('EndpointSlice', dnsSlice([other]));
    await synced(
      (s) =>
        dnsServes([other])(s) &&
        s.ports.some(
          (p) =>
            p.service === `${NS}/web` &&
            same(
              p.allEndpoints.map((e) => e.ip),
              [PODS[other]],
            ),
        ),
      'both slices without the held pod',
    );
    assert.ok(daemon!.conntrack!.runs > runs, 'a cleanup ran');
    assert.equal(await client.ask(), held, 'the connection still reaches its endpoint');
    assert.equal(await client.ask(), held);
    client.child.stdin.end();
    server.update('EndpointSlice', webSlice(['dns-1', 'dns-2']));
    server.update('EndpointSlice', dnsSlice(['dns-1', 'dns-2']));
    await synced(dnsServes(['dns-1', 'dns-2']), 'the slices with both again');
  });

  it('sends a flow that began before its Service had endpoints to its endpoint once it is ready', async () => {
    const sport = srcPort++;
    // Before the Service exists: nothing answers, and the node tracks the flow un-NATed.
    const early = await probe('client-pod', LATE_VIP, 53, sport, 2, 300);
    assert.equal(early.timedOut, 2);
    assert.ok((await entriesTo(LATE_VIP)).some((l) => l.includes(`src=${LATE_VIP} dst=10.244.1.50`)));
    const lateSlice = (ep: EndpointSpec): StoredObject =>
      stored(slice(NS, 'late-a', 'late', [{ port: 5353, protocol: 'UDP' }], [ep]));
    server.create(
      'Service',
      stored(
        service(NS, 'late', {
          clusterIP: LATE_VIP,
          ports: [{ port: 53, protocol: 'UDP', targetPort: 5353 }],
        }),
      ),
    );
    server.create('EndpointSlice', lateSlice({ ip: PODS['dns-2'], nodeName: LAB.nodeName, ready: false }));
    const late = (ready: boolean) => (s: ProxyState) =>
      s.ports.some((p) => p.service === `${NS}/late` && p.allEndpoints.some((e) => e.ready === ready));
    await synced(late(false), 'the late Service with its unready endpoint');
    const unready = await probe('client-pod', LATE_VIP, 53, sport, 2, 300);
    assert.equal(unready.answers.size, 0);
    server.update('EndpointSlice', lateSlice({ ip: PODS['dns-2'], nodeName: LAB.nodeName, ready: true }));
    await synced(late(true), 'the late endpoint ready');
    const ready = await probe('client-pod', LATE_VIP, 53, sport, 5);
    assert.deepEqual(only(ready), ['dns-2']);
    assert.equal(ready.answers.get('dns-2'), 5);
  });
});

function webSlice(pods: Array<'dns-1' | 'dns-2'>): StoredObject {
  const ips = { 'dns-1': '10.244.1.21', 'dns-2': '10.244.1.22' };
  return stored(
    slice(
      'ct',
      'web-a',
      'web',
      [{ name: 'line', port: 8081 }],
      pods.map((p) => ({ ip: ips[p], nodeName: LAB.nodeName })),
    ),
  );
}

/** A TCP server in `ns` that answers every line of a connection with `name`, and keeps it open. */
function lineServer(ns: string, name: string, port: number): ChildProcessWithoutNullStreams {
  const js = `
    const net = require('node:net');
    net.createServer((s) => {
      s.on('error', () => {});
      s.setEncoding('utf8');
      s.on('data', (d) => { for (const _ of d.split('\\n').slice(1)) s.write(${JSON.stringify(name)} + '\\n'); });
    }).listen(${port}, '0.0.0.0');
    process.stdin.on('end', () => process.exit(0));
    process.stdin.resume();`;
  return spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', js]);
}

/** One TCP connection from `ns` that sends a line per ask() and resolves to the line it gets back. */
function lineClient(ns: string, dst: string, port: number) {
  const js = `
    const net = require('node:net');
    const s = net.connect(${port}, ${JSON.stringify(dst)});
    s.setEncoding('utf8');
    s.on('data', (d) => process.stdout.write(d));
    s.on('error', (e) => { process.stderr.write(e.message + '\\n'); process.exit(2); });
    s.on('close', () => process.exit(3));
    process.stdin.setEncoding('utf8');
    process.stdin.on('data', (d) => s.write(d));
    process.stdin.on('end', () => process.exit(0));`;
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', js]);
  let buffered = '';
  const waiting: Array<(line: string) => void> = [];
  child.stdout.setEncoding('utf8').on('data', (d: string) => {
    buffered += d;
    let nl: number;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      waiting.shift()?.(line);
    }
  });
  return {
    child,
    ask: (): Promise<string> =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no answer on the TCP connection')), 20_000);
        waiting.push((line) => {
          clearTimeout(timer);
          resolve(line);
        });
        child.once('exit', (code) => reject(new Error(`the TCP client ended (${String(code)})`)));
        child.stdin.write('ping\n');
      }),
  };
}

function stored(o: object): StoredObject {
  return o as StoredObject;
}

function same(a: string[], b: string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
