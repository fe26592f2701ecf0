import assert from 'node:assert/strict';

import { LAB, Lab, run, type ProbeResult } from '../../scripts/lab/index.js';
import { requireKernel } from '../support/capabilities.js';

// The lab proved with hand-written nft rules (not the product's compiler): if these pass,
// a failing product kernel test is about the product.

const A = { ip: '10.244.1.2', ipv6: 'fd00:10:244:1::2' };
const B = { ip: '10.244.1.3', ipv6: 'fd00:10:244:1::3' };
const R = { ip: '10.244.2.2', ipv6: 'fd00:10:244:2::2' };
const CLIENT = { ip: '172.30.0.100', ipv6: 'fd00:172:30::100' };

/** Only answers, all from `name`, as many as attempts, seen from one address `client`. */
function assertAnswered(r: ProbeResult, name: string, count: number, client?: string): void {
  assert.deepEqual(
    { answers: [...r.answers], refused: r.refused, timedOut: r.timedOut, errors: r.errors },
    { answers: [[name, count]], refused: 0, timedOut: 0, errors: [] },
  );
  if (client !== undefined) assert.deepEqual([...r.clients], [client]);
}

function assertOutcome(r: ProbeResult, want: { refused?: number; timedOut?: number }): void {
  assert.deepEqual(
    { answers: [...r.answers], refused: r.refused, timedOut: r.timedOut, errors: r.errors },
    { answers: [], refused: want.refused ?? 0, timedOut: want.timedOut ?? 0, errors: [] },
  );
}

describe('kernel: the test lab itself', function () {
  let lab: Lab;

  /** Replaces table `<family> labtest` in the node namespace with `body`. */
  async function rules(family: 'ip' | 'ip6', body: string): Promise<void> {
    await lab.nft(
      `table ${family} labtest {}\ndelete table ${family} labtest\ntable ${family} labtest {\n${body}\n}\n`,
    );
  }

  before(async function () {
    requireKernel(this);
    lab = await Lab.create({ ipv6: true });
    await lab.addPod('a', A);
    await lab.addPod('b', B);
    await lab.addPod('r', { ...R, local: false });
    await lab.addClient('c', CLIENT.ip, { ipv6: CLIENT.ipv6 });
    await lab.serve('b', { tcp: [8080], udp: [5353], http: [8081] });
    await lab.serve('r', { tcp: [8080] });
  });

  after(async function () {
    await lab?.destroy();
  });

  afterEach(async function () {
    if (!lab) return;
    await lab.nft(
      'table ip labtest {}\ndelete table ip labtest\ntable ip6 labtest {}\ndelete table ip6 labtest\n',
    );
  });

  it('routes a pod to another pod directly, and the server sees the pod address', async function () {
    assertAnswered(await lab.probe('a', { dst: B.ip, port: 8080, proto: 'tcp', count: 5 }), 'b', 5, A.ip);
    assertAnswered(await lab.probe('a', { dst: B.ip, port: 5353, proto: 'udp', count: 5 }), 'b', 5, A.ip);
    assertAnswered(await lab.probe('a', { dst: R.ip, port: 8080, proto: 'tcp', count: 3 }), 'r', 3, A.ip);
  });

  it('shows the node as its pod-facing address when it talks to a pod directly', async function () {
    assertAnswered(
      await lab.probe('node', { dst: B.ip, port: 8080, proto: 'tcp', count: 3 }),
      'b',
      3,
      LAB.nodePodIp,
    );
  });

  it('sends client, pod and node traffic for a VIP to the pod a DNAT rule chose', async function () {
    await rules(
      'ip',
      `chain pre { type nat hook prerouting priority dstnat; ip daddr 10.96.0.1 tcp dport 80 dnat to ${B.ip}:8080; }
       chain out { type nat hook output priority -100; ip daddr 10.96.0.1 tcp dport 80 dnat to ${B.ip}:8080; }`,
    );
    const dst = { dst: '10.96.0.1', port: 80, proto: 'tcp' } as const;
    assertAnswered(await lab.probe('c', { ...dst, count: 10 }), 'b', 10, CLIENT.ip);
    assertAnswered(await lab.probe('a', { ...dst, count: 10 }), 'b', 10, A.ip);
    // The node picks its source for the VIP from the LAN route: its primary IP.
    assertAnswered(await lab.probe('node', { ...dst, count: 5 }), 'b', 5, LAB.nodeIp);
  });

  it('shows masqueraded traffic as the node pod-facing address, unlike the client', async function () {
    await rules(
      'ip',
      `chain pre { type nat hook prerouting priority dstnat; ip daddr 10.96.0.1 tcp dport 80 dnat to ${B.ip}:8080; }
       chain post { type nat hook postrouting priority srcnat; ct status dnat ip saddr != ${LAB.clusterCidr} masquerade; }`,
    );
    assertAnswered(
      await lab.probe('c', { dst: '10.96.0.1', port: 80, proto: 'tcp', count: 5 }),
      'b',
      5,
      LAB.nodePodIp,
    );
    assertAnswered(
      await lab.probe('a', { dst: '10.96.0.1', port: 80, proto: 'tcp', count: 5 }),
      'b',
      5,
      A.ip,
    );
  });

  it('reaches a pod on the remote node through a VIP, and back through the node', async function () {
    await rules(
      'ip',
      `chain pre { type nat hook prerouting priority dstnat; ip daddr 10.96.0.3 tcp dport 80 dnat to ${R.ip}:8080; }
       chain post { type nat hook postrouting priority srcnat; ct status dnat ip saddr != ${LAB.clusterCidr} masquerade; }`,
    );
    const dst = { dst: '10.96.0.3', port: 80, proto: 'tcp' } as const;
    assertAnswered(await lab.probe('a', { ...dst, count: 5 }), 'r', 5, A.ip);
    // From outside, masqueraded to the node's LAN address (the reply must come back to it).
    assertAnswered(await lab.probe('c', { ...dst, count: 5 }), 'r', 5, LAB.nodeIp);
  });

  it('spreads a numgen DNAT over two pods and keeps working with a fixed source port', async function () {
    await rules(
      'ip',
      `chain pre { type nat hook prerouting priority dstnat;
         ip daddr 10.96.0.4 tcp dport 80 dnat to numgen random mod 2 map { 0 : ${B.ip}, 1 : ${R.ip} } : 8080; }`,
    );
    const spread = await lab.probe('a', { dst: '10.96.0.4', port: 80, proto: 'tcp', count: 30 });
    assert.deepEqual(
      { refused: spread.refused, timedOut: spread.timedOut, errors: spread.errors },
      {
        refused: 0,
        timedOut: 0,
        errors: [],
      },
    );
    assert.deepEqual([...spread.answers.keys()].sort(), ['b', 'r']);
    // Each reuse of the port reopens the conntrack entry (TIME_WAIT + SYN): every attempt answers.
    const fixed = await lab.probe('a', {
      dst: '10.96.0.4',
      port: 80,
      proto: 'tcp',
      count: 6,
      srcPort: 40123,
    });
    assert.equal(
      [...fixed.answers.values()].reduce((x, y) => x + y, 0),
      6,
      JSON.stringify(fixed.errors),
    );
  });

  it('tells a reject (refused) from a drop (timed out), over TCP and UDP', async function () {
    await rules(
      'ip',
      `chain filt { type filter hook forward priority filter;
         ip daddr 10.96.0.5 reject
         ip daddr 10.96.0.6 drop
         ip daddr 10.96.0.7 meta l4proto tcp reject with tcp reset; }`,
    );
    assertOutcome(await lab.probe('a', { dst: '10.96.0.5', port: 80, proto: 'tcp', count: 10 }), {
      refused: 10,
    });
    assertOutcome(await lab.probe('c', { dst: '10.96.0.5', port: 53, proto: 'udp', count: 10 }), {
      refused: 10,
    });
    assertOutcome(await lab.probe('a', { dst: '10.96.0.7', port: 80, proto: 'tcp', count: 10 }), {
      refused: 10,
    });
    assertOutcome(await lab.probe('a', { dst: '10.96.0.6', port: 80, proto: 'tcp', count: 2 }), {
      timedOut: 2,
    });
    assertOutcome(await lab.probe('a', { dst: '10.96.0.6', port: 53, proto: 'udp', count: 2 }), {
      timedOut: 2,
    });
    // A VIP no rule knows goes to the LAN router that does not exist: a timeout too.
    assertOutcome(await lab.probe('a', { dst: '10.96.0.8', port: 80, proto: 'tcp', count: 1 }), {
      timedOut: 1,
    });
  });

  it('DNATs UDP', async function () {
    await rules(
      'ip',
      `chain pre { type nat hook prerouting priority dstnat; ip daddr 10.96.0.1 udp dport 53 dnat to ${B.ip}:5353; }`,
    );
    assertAnswered(
      await lab.probe('a', { dst: '10.96.0.1', port: 53, proto: 'udp', count: 10 }),
      'b',
      10,
      A.ip,
    );
    assertAnswered(
      await lab.probe('c', { dst: '10.96.0.1', port: 53, proto: 'udp', count: 10 }),
      'b',
      10,
      CLIENT.ip,
    );
  });

  it('serves HTTP with the pod name', async function () {
    assertAnswered(
      await lab.probe('c', { dst: B.ip, port: 8081, proto: 'http', count: 3 }),
      'b',
      3,
      CLIENT.ip,
    );
  });

  it('routes IPv6 pods and DNATs with an ip6 table', async function () {
    assertAnswered(await lab.probe('a', { dst: B.ipv6, port: 8080, proto: 'tcp', count: 5 }), 'b', 5, A.ipv6);
    assertAnswered(await lab.probe('a', { dst: R.ipv6, port: 8080, proto: 'tcp', count: 3 }), 'r', 3, A.ipv6);
    await rules(
      'ip6',
      `chain pre { type nat hook prerouting priority dstnat;
         ip6 daddr fd00:10:96::1 tcp dport 80 dnat to [${B.ipv6}]:8080
         ip6 daddr fd00:10:96::1 udp dport 53 dnat to [${B.ipv6}]:5353; }
       chain filt { type filter hook forward priority filter;
         ip6 daddr fd00:10:96::5 meta l4proto tcp reject with tcp reset
         ip6 daddr fd00:10:96::5 reject; }`,
    );
    const vip = 'fd00:10:96::1';
    assertAnswered(await lab.probe('a', { dst: vip, port: 80, proto: 'tcp', count: 10 }), 'b', 10, A.ipv6);
    assertAnswered(
      await lab.probe('c', { dst: vip, port: 80, proto: 'tcp', count: 10 }),
      'b',
      10,
      CLIENT.ipv6,
    );
    assertAnswered(await lab.probe('a', { dst: vip, port: 53, proto: 'udp', count: 10 }), 'b', 10, A.ipv6);
    const reject = { dst: 'fd00:10:96::5', port: 80, count: 5 } as const;
    assertOutcome(await lab.probe('a', { ...reject, proto: 'tcp' }), { refused: 5 });
    assertOutcome(await lab.probe('a', { ...reject, proto: 'udp' }), { refused: 5 });
  });

  it('adds extra node addresses on lo', async function () {
    await lab.addNodeAddress('172.31.0.1');
    await rules(
      'ip',
      `chain pre { type nat hook prerouting priority dstnat; ip daddr 172.31.0.1 tcp dport 30080 dnat to ${B.ip}:8080; }`,
    );
    assertAnswered(
      await lab.probe('c', { dst: '172.31.0.1', port: 30080, proto: 'tcp', count: 3 }),
      'b',
      3,
      CLIENT.ip,
    );
  });
});

describe('kernel: lab cleanup', function () {
  before(function () {
    requireKernel(this);
  });

  async function netnsNames(): Promise<string[]> {
    return (await run(['ip', 'netns', 'list'])).stdout.split('\n').map((l) => l.split(' ')[0] ?? '');
  }

  it('deletes every namespace it made, twice without complaint', async function () {
    const lab = await Lab.create();
    try {
      await lab.addPod('p', { ip: '10.244.1.9' });
      await lab.addPod('q', { ip: '10.244.2.9', local: false });
      await lab.addClient('c', '172.30.0.101');
      await lab.serve('p', { tcp: [8080] });
      const made = lab.namespaceNames;
      assert.equal(made.length, 6);
      assert.ok(made.every((n) => n.startsWith(lab.prefix)));
      const before = await netnsNames();
      assert.ok(made.every((n) => before.includes(n)));
    } finally {
      await lab.destroy();
      await lab.destroy();
    }
    const after = await netnsNames();
    assert.deepEqual(
      after.filter((n) => n.startsWith(lab.prefix)),
      [],
    );
  });

  it('sweeps namespaces left by a process that is gone', async function () {
    // 4194305 is above the largest pid Linux hands out: never alive.
    const stale = `knp-4194305-${process.pid}-node`;
    await run(['ip', 'netns', 'add', stale]);
    try {
      await Lab.sweep();
      assert.ok(!(await netnsNames()).includes(stale));
    } finally {
      await run(['ip', 'netns', 'del', stale], { allowFail: true });
    }
  });
});
