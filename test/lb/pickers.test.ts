import assert from 'node:assert/strict';
import {
  AffinityPicker,
  MaglevPicker,
  RandomPicker,
  RoundRobinPicker,
  createPicker,
  type Target,
} from '../../src/lb/pickers.js';
import { seededRandom } from './support.js';

const eps: Target[] = [
  { ip: '10.0.0.1', port: 80 },
  { ip: '10.0.0.2', port: 80 },
  { ip: '10.0.0.3', port: 80 },
];
const flow = (port: number, ip = '192.168.0.9'): { ip: string; port: number } => ({ ip, port });

function counts(pick: () => Target | undefined, times: number): Map<string, number> {
  const out = new Map<string, number>();
  for (let i = 0; i < times; i++) {
    const ep = pick();
    const k = ep ? ep.ip : 'none';
    out.set(k, (out.get(k) ?? 0) + 1);
  }
  return out;
}

describe('pickers', () => {
  it('random is roughly uniform and respects avoid', () => {
    const p = new RandomPicker(eps, seededRandom(1));
    const c = counts(() => p.pick(flow(1)), 3000);
    for (const ep of eps) assert.ok((c.get(ep.ip) ?? 0) > 800, `${ep.ip}: ${c.get(ep.ip)}`);
    const avoid = new Set([eps[0]!, eps[1]!]);
    for (let i = 0; i < 20; i++) assert.equal(p.pick(flow(1), avoid), eps[2]);
    assert.equal(p.pick(flow(1), new Set(eps)), undefined);
    assert.equal(new RandomPicker([]).pick(flow(1)), undefined);
  });

  it('round-robin takes turns and keeps its place across updates', () => {
    const p = new RoundRobinPicker(eps);
    assert.deepEqual(
      [1, 2, 3, 4].map(() => p.pick(flow(1))?.ip),
      ['10.0.0.1', '10.0.0.2', '10.0.0.3', '10.0.0.1'],
    );
    p.update(eps.slice(0, 2));
    assert.equal(p.size, 2);
    assert.equal(p.pick(flow(1))?.ip, '10.0.0.2');
  });

  it('maglev sends a flow to the same endpoint whatever the list order, and falls back deterministically', () => {
    const a = new MaglevPicker(eps, 7);
    const b = new MaglevPicker([...eps].reverse(), 7);
    const seen = new Set<string>();
    for (let port = 1000; port < 1100; port++) {
      const ep = a.pick(flow(port));
      assert.equal(b.pick(flow(port))?.ip, ep?.ip);
      seen.add(ep!.ip);
      const avoid = new Set([ep!]);
      const alt = a.pick(flow(port), avoid);
      assert.notEqual(alt, ep);
      assert.equal(alt, a.pick(flow(port), avoid));
    }
    assert.equal(seen.size, 3);
    assert.equal(new MaglevPicker([], 7).pick(flow(1)), undefined);
  });

  it('affinity pins a client until it idles out, refreshed by use', () => {
    let now = 0;
    const clock = { now: () => now };
    const p = new AffinityPicker(new RoundRobinPicker(eps), eps, 10_000, clock);
    const first = p.pick(flow(1));
    for (let i = 0; i < 30; i++) {
      now += 9_000; // always within the timeout of the previous use
      assert.equal(p.pick(flow(1000 + i)), first);
    }
    assert.notEqual(p.pick(flow(1, '192.168.0.10')), first, 'another client takes the next turn');
    now += 10_000;
    assert.notEqual(p.pick(flow(1)), first, 'expired: picked afresh');
  });

  it('affinity forgets endpoints that vanished and avoids failed ones', () => {
    const clock = { now: () => 0 };
    const p = new AffinityPicker(new RoundRobinPicker(eps), eps, 10_000, clock);
    const first = p.pick(flow(1))!;
    p.update(eps.filter((e) => e !== first));
    assert.equal(p.clients, 0);
    const second = p.pick(flow(1))!;
    assert.notEqual(second.ip, first.ip);
    const third = p.pick(flow(1), new Set([second]));
    assert.ok(third && third !== second);
    assert.equal(p.pick(flow(1)), third, 're-pinned to the one that worked');
  });

  it('affinity remembers at most maxClients clients: the oldest pin makes room, each eviction reported', () => {
    let evictions = 0;
    const p = new AffinityPicker(
      new RoundRobinPicker(eps),
      eps,
      10_000,
      { now: () => 0 },
      {
        maxClients: 2,
        onEvict: () => evictions++,
      },
    );
    const a = p.pick(flow(1, '192.168.0.1'));
    p.pick(flow(1, '192.168.0.2'));
    assert.equal(p.pick(flow(2, '192.168.0.1')), a, 'a use refreshes in place: no eviction');
    assert.deepEqual([p.clients, evictions], [2, 0]);
    for (let i = 3; i <= 100; i++) p.pick(flow(1, `192.168.0.${i}`));
    assert.deepEqual([p.clients, evictions, p.evicted], [2, 98, 98]);
    const last = p.pick(flow(1, '192.168.0.100'));
    assert.equal(p.pick(flow(9, '192.168.0.100')), last, 'the newest pin is kept');
  });

  it('createPicker wraps in affinity only with a timeout', () => {
    assert.ok(
      createPicker({ algorithm: 'maglev', affinitySeconds: 0, seed: 1 }, eps) instanceof MaglevPicker,
    );
    assert.ok(
      createPicker({ algorithm: 'random', affinitySeconds: 5, seed: 1 }, eps) instanceof AffinityPicker,
    );
  });
});
