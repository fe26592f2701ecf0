import assert from 'node:assert/strict';
import net from 'node:net';
import type { V1Service } from '@kubernetes/client-node';
import { createLogger } from '../../src/log.js';
import { buildState } from '../../src/model/build-state.js';
import type { ProxyState } from '../../src/model/types.js';
import {
  desiredHealthChecks,
  HealthCheckNodePorts,
  type HealthCheckService,
} from '../../src/server/health-check-node-ports.js';
import { freePort } from '../../scripts/lab/free-port.js';
import { node, service, slice, type EndpointSpec } from '../support/objects.js';

const NODE = 'node-a';
const NODE_IP = '192.0.2.10';
const NODE_IP6 = '2001:db8::10';

function lb(name: string, spec: Omit<Partial<V1Service['spec']>, 'ports'> = {}): V1Service {
  return service('default', name, {
    type: 'LoadBalancer',
    clusterIP: '10.96.0.10',
    externalTrafficPolicy: 'Local',
    healthCheckNodePort: 32000,
    ports: [
      { name: 'http', port: 80, nodePort: 31000 },
      { name: 'dns', port: 53, protocol: 'UDP' as const, nodePort: 31001 },
    ],
    ...spec,
  });
}

function stateOf(services: V1Service[], slices: ReturnType<typeof slice>[], ips = [NODE_IP]): ProxyState {
  return buildState(
    { services, slices, node: node(NODE, ips) },
    { nodeName: NODE, nodeIPs: [], hostIPs: ips, lbAlgorithm: 'random' },
  );
}

const local = (ip: string, extra: Partial<EndpointSpec> = {}): EndpointSpec => ({
  ip,
  nodeName: NODE,
  ...extra,
});

describe('desiredHealthChecks (pure)', () => {
  const ports = [
    { name: 'http', port: 8080 },
    { name: 'dns', port: 53, protocol: 'UDP' as const },
  ];

  it("counts this node's ready endpoints by distinct IP over all the Service's ports", () => {
    const state = stateOf(
      [lb('web')],
      [
        slice('default', 'web-a', 'web', ports, [
          local('10.244.1.1'),
          local('10.244.1.2'),
          // terminating: still serving its connections, but the node must drain (kube-proxy)
          local('10.244.1.3', { ready: false, serving: true, terminating: true }),
          local('10.244.1.4', { ready: false }),
          { ip: '10.244.2.1', nodeName: 'node-b' },
        ]),
      ],
    );
    assert.deepEqual(desiredHealthChecks(state, 'primary', [NODE_IP]), [
      {
        key: 'default/web/ipv4',
        namespace: 'default',
        name: 'web',
        family: 'ipv4',
        port: 32000,
        addresses: [NODE_IP],
        localEndpoints: 2,
      },
    ]);
  });

  it('serves 0 local endpoints too (the check answers 503), and skips eTP Cluster and non-LoadBalancer Services', () => {
    const state = stateOf(
      [
        lb('empty'),
        lb('cluster', { externalTrafficPolicy: 'Cluster', clusterIP: '10.96.0.11' }),
        service('default', 'np', {
          type: 'NodePort',
          clusterIP: '10.96.0.12',
          externalTrafficPolicy: 'Local',
          healthCheckNodePort: 32002,
          ports: [{ port: 80, nodePort: 31002 }],
        }),
      ],
      [],
    );
    const got = desiredHealthChecks(state, 'primary', [NODE_IP]);
    assert.deepEqual(
      got.map((h) => [h.key, h.port, h.localEndpoints]),
      [['default/empty/ipv4', 32000, 0]],
    );
  });

  it('listens where NodePorts are accepted: --nodeport-addresses CIDRs, a zero CIDR or nothing found = any', () => {
    const state = stateOf([lb('web')], []);
    const at = (npa: 'primary' | string[], hostIPs: string[]): string[] =>
      desiredHealthChecks(state, npa, hostIPs)[0]!.addresses;
    assert.deepEqual(at('primary', [NODE_IP, '198.51.100.1']), [NODE_IP]);
    assert.deepEqual(at(['198.51.100.0/24'], [NODE_IP, '198.51.100.1', '198.51.100.2']), [
      '198.51.100.1',
      '198.51.100.2',
    ]);
    assert.deepEqual(at(['0.0.0.0/0'], [NODE_IP]), ['0.0.0.0']);
    assert.deepEqual(at(['203.0.113.0/24'], [NODE_IP]), ['0.0.0.0']);
  });

  it('one entry per family of a dual-stack Service, each counting its own family', () => {
    const state = stateOf(
      [lb('web', { clusterIPs: ['10.96.0.10', 'fd00:96::10'], ipFamilies: ['IPv4', 'IPv6'] })],
      [
        slice('default', 'web-4', 'web', ports, [local('10.244.1.1'), local('10.244.1.2')]),
        slice('default', 'web-6', 'web', ports, [local('fd00:244::1')], 'IPv6'),
      ],
      [NODE_IP, NODE_IP6],
    );
    assert.deepEqual(
      desiredHealthChecks(state, 'primary', [NODE_IP, NODE_IP6]).map((h) => [
        h.key,
        h.addresses,
        h.localEndpoints,
      ]),
      [
        ['default/web/ipv4', [NODE_IP], 2],
        ['default/web/ipv6', [NODE_IP6], 1],
      ],
    );
  });
});

describe('HealthCheckNodePorts (real HTTP on 127.0.0.1)', () => {
  let healthy: boolean;
  let logs: Array<Record<string, unknown>>;
  let hc: HealthCheckNodePorts;
  /** What onListenFailed heard: the key and the error's code. */
  let listenFailed: Array<[string, unknown]>;

  const want = (port: number, localEndpoints: number, name = 'web'): HealthCheckService => ({
    key: `default/${name}/ipv4`,
    namespace: 'default',
    name,
    family: 'ipv4',
    port,
    addresses: ['127.0.0.1'],
    localEndpoints,
  });

  const get = async (port: number, path = '/', method = 'GET') => {
    const res = await fetch(`http://127.0.0.1:${port}${path}`, { method });
    return { status: res.status, headers: res.headers, body: await res.text() };
  };

  /** Whether anything accepts a TCP connection on the port. */
  const accepts = (port: number): Promise<boolean> =>
    new Promise((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port });
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });

  beforeEach(() => {
    healthy = true;
    logs = [];
    listenFailed = [];
    hc = new HealthCheckNodePorts({
      healthy: () => healthy,
      onListenFailed: (d, err) => listenFailed.push([d.key, (err as { code?: unknown }).code]),
      log: createLogger({
        level: 'debug',
        destination: { write: (l: string) => void logs.push(JSON.parse(l)) },
      }),
    });
  });

  afterEach(async () => {
    await hc.close();
  });

  it("answers 200 with kube-proxy's headers and exact body while local endpoints are ready", async () => {
    const port = await freePort();
    const r = await hc.reconcile([want(port, 2)]);
    assert.deepEqual(r, { opened: ['default/web/ipv4'], closed: [], failing: [] });
    const a = await get(port, '/healthz');
    assert.equal(a.status, 200);
    assert.equal(a.headers.get('content-type'), 'application/json');
    assert.equal(a.headers.get('x-content-type-options'), 'nosniff');
    assert.equal(a.headers.get('x-load-balancing-endpoint-weight'), '2');
    assert.equal(
      a.body,
      '{\n\t"service": {\n\t\t"namespace": "default",\n\t\t"name": "web"\n\t},\n\t"localEndpoints": 2,\n\t"serviceProxyHealthy": true\n}',
    );
    // Any path, any method: a load balancer's probe is configured elsewhere.
    assert.equal((await get(port, '/other', 'POST')).status, 200);
  });

  it('answers 503 with no local endpoint, and 503 while the proxy is unhealthy', async () => {
    const port = await freePort();
    await hc.reconcile([want(port, 0)]);
    const none = await get(port);
    assert.equal(none.status, 503);
    assert.equal(none.headers.get('x-load-balancing-endpoint-weight'), '0');
    assert.deepEqual(JSON.parse(none.body), {
      service: { namespace: 'default', name: 'web' },
      localEndpoints: 0,
      serviceProxyHealthy: true,
    });

    await hc.reconcile([want(port, 3)]);
    assert.equal((await get(port)).status, 200);
    healthy = false;
    const sick = await get(port);
    assert.equal(sick.status, 503);
    assert.equal(sick.headers.get('x-load-balancing-endpoint-weight'), '3');
    assert.equal(JSON.parse(sick.body).serviceProxyHealthy, false);
  });

  it('a count change keeps the same server; a port change re-binds; a Service gone closes its port', async () => {
    const [p1, p2] = [await freePort(), await freePort()];
    await hc.reconcile([want(p1, 1)]);
    assert.deepEqual(await hc.reconcile([want(p1, 4)]), { opened: [], closed: [], failing: [] });
    assert.equal((await get(p1)).headers.get('x-load-balancing-endpoint-weight'), '4');

    assert.deepEqual(await hc.reconcile([want(p2, 4)]), {
      opened: ['default/web/ipv4'],
      closed: ['default/web/ipv4'],
      failing: [],
    });
    assert.equal(await accepts(p1), false, 'the old port is closed');
    assert.equal((await get(p2)).status, 200);

    // eTP changed to Cluster or the Service deleted: either way it leaves the desired list.
    assert.deepEqual(await hc.reconcile([]), { opened: [], closed: ['default/web/ipv4'], failing: [] });
    assert.equal(await accepts(p2), false);
    assert.deepEqual(hc.serving(), []);
  });

  it('closes a server even with a keep-alive connection open to it', async () => {
    const port = await freePort();
    await hc.reconcile([want(port, 1)]);
    const agent = net.connect({ host: '127.0.0.1', port });
    await new Promise((resolve) => agent.once('connect', resolve));
    agent.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n');
    await new Promise((resolve) => agent.once('data', resolve));
    const closed = new Promise((resolve) => agent.once('close', resolve));
    await hc.reconcile([]);
    await closed;
    assert.equal(await accepts(port), false);
  });

  it('a port it cannot bind is retried on every reconcile and logged once per failure streak', async () => {
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const port = (blocker.address() as net.AddressInfo).port;
    const other = await freePort();
    const desired = [want(port, 1), want(other, 1, 'other')];

    for (let i = 0; i < 3; i++) {
      const r = await hc.reconcile(desired);
      assert.deepEqual(r.failing, ['default/web/ipv4'], `attempt ${i}`);
    }
    // The other Service is not held back by the failing one.
    assert.equal((await get(other)).status, 200);
    const failures = () =>
      logs.filter((l) => String(l.msg).startsWith('cannot serve health check node port'));
    assert.equal(failures().length, 1);
    assert.equal(failures()[0]!.service, 'default/web/ipv4');
    assert.equal((failures()[0]!.err as { code?: string }).code, 'SERVER_LISTEN_FAILED');
    assert.deepEqual(listenFailed, [['default/web/ipv4', 'SERVER_LISTEN_FAILED']], 'told as logged: once');

    await new Promise<void>((resolve) => blocker.close(() => resolve()));
    assert.deepEqual((await hc.reconcile(desired)).opened, ['default/web/ipv4']);
    assert.equal((await get(port)).status, 200);

    // A new streak is logged again.
    await hc.close();
    const again = net.createServer();
    await new Promise<void>((resolve) => again.listen(port, '127.0.0.1', resolve));
    try {
      await hc.reconcile(desired);
      await hc.reconcile(desired);
      assert.equal(failures().length, 2);
      assert.equal(listenFailed.length, 2);
    } finally {
      await new Promise<void>((resolve) => again.close(() => resolve()));
    }
  });

  it("a dual-stack Service's two families share the port on the unspecified addresses, each with its count", async () => {
    const port = await freePort();
    const v4 = { ...want(port, 2), addresses: ['0.0.0.0'] };
    const v6 = { ...want(port, 1), key: 'default/web/ipv6', family: 'ipv6' as const, addresses: ['::'] };
    assert.deepEqual((await hc.reconcile([v4, v6])).opened, ['default/web/ipv4', 'default/web/ipv6']);
    assert.equal((await get(port)).headers.get('x-load-balancing-endpoint-weight'), '2');
    const res = await fetch(`http://[::1]:${port}/`);
    assert.equal(res.headers.get('x-load-balancing-endpoint-weight'), '1');
  });

  it('opens all of its addresses or none', async () => {
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.2', resolve));
    const port = (blocker.address() as net.AddressInfo).port;
    try {
      const two = { ...want(port, 1), addresses: ['127.0.0.1', '127.0.0.2'] };
      assert.deepEqual((await hc.reconcile([two])).failing, ['default/web/ipv4']);
      assert.equal(await accepts(port), false, '127.0.0.1 was closed again');
    } finally {
      await new Promise<void>((resolve) => blocker.close(() => resolve()));
    }
  });
});
