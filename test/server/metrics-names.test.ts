import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createMetrics } from '../../src/server/metrics.js';

/** `a_{b,c}_d` → a_b_d, a_c_d (the README writes families of names so). */
function expand(name: string): string[] {
  const m = /\{([^}]*)\}/.exec(name);
  if (!m) return [name];
  return m[1]!.split(',').flatMap((alt) => expand(name.replace(m[0], alt)));
}

/** The kube-proxy and build metric names README's /metrics row promises, and those registered. */
describe("README's /metrics row and the registry", () => {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  const row = readme.split('\n').find((l) => l.startsWith('| `GET /metrics`'));
  const NAME = /^(kubeproxy|kubernetes)_[a-z_{},]+$/;
  const promised = new Set(
    [...(row ?? '').matchAll(/`([^`]+)`/g)]
      .map((m) => m[1]!)
      .filter((n) => NAME.test(n))
      .flatMap(expand),
  );
  const registered = new Set(
    createMetrics()
      .registry.getMetricsAsArray()
      .map((m) => m.name)
      .filter((n) => NAME.test(n)),
  );

  it('names every kube-proxy metric this proxy exports, and exports every one it names', () => {
    assert.ok(row, 'README has a /metrics row');
    assert.ok(registered.size >= 15, [...registered].join(' '));
    assert.deepEqual([...promised].sort(), [...registered].sort());
  });
});
