import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { Kind } from '../../src/watch/source.js';
import { repoRoot } from '../support/build-output.js';
import { render } from './rendered.js';

/**
 * What the kube source reads, per kind it delivers (src/watch/source.ts): the API group and
 * resource of each. Typed by `Kind`, so a new kind fails the typecheck until its access is
 * decided here and in manifests/clusterrole.yaml.
 */
const READS: Record<Kind, { group: string; resource: string }> = {
  Service: { group: '', resource: 'services' },
  EndpointSlice: { group: 'discovery.k8s.io', resource: 'endpointslices' },
  Node: { group: '', resource: 'nodes' },
  ServiceCIDR: { group: 'networking.k8s.io', resource: 'servicecidrs' },
};

/** Informers list and watch; get re-reads one object. */
const VERBS = ['get', 'list', 'watch'];

/** The only writes: Kubernetes Events (src/events/), created and their series patched. */
const WRITES = ['events.k8s.io/events:create', 'events.k8s.io/events:patch'];

/** API group of each @kubernetes/client-node API class the code may use. */
const API_GROUPS: Record<string, string> = {
  CoreV1Api: '',
  DiscoveryV1Api: 'discovery.k8s.io',
  EventsV1Api: 'events.k8s.io',
  AppsV1Api: 'apps',
  CoordinationV1Api: 'coordination.k8s.io',
};

const plural = (kind: string): string => {
  const k = kind.toLowerCase();
  if (k.endsWith('endpoints')) return k;
  if (k.endsWith('s')) return `${k}es`;
  if (k.endsWith('y')) return `${k.slice(0, -1)}ies`;
  return `${k}s`;
};

/**
 * The API requests src/ makes, as `group/resource:verb`, read from the source text: calls on
 * clients made by `makeApiClient(XxxApi)` (`listNode`, `readNamespacedService`, ...) and the
 * informer paths string literals name (`'/apis/discovery.k8s.io/v1/endpointslices'`), listed then watched.
 */
function apiRequestsInSource(): string[] {
  const files = (readdirSync(path.join(repoRoot, 'src'), { recursive: true }) as string[])
    .filter((f) => f.endsWith('.ts'))
    .map((f) => path.join(repoRoot, 'src', f));
  const found: string[] = [];
  for (const file of files) {
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(/(\w+)\s*=\s*[\w.]+\.makeApiClient\((\w+)\)/g)) {
      const [, client, api] = m as unknown as [string, string, string];
      const group = API_GROUPS[api];
      assert.ok(group !== undefined, `${file}: ${api} is not in API_GROUPS`);
      const calls = text.matchAll(new RegExp(`\\b${client}\\.(\\w+)\\(`, 'g'));
      for (const [, method] of calls) {
        const call =
          /^(list|read|create|patch|replace|delete|watch)(?:Namespaced)?([A-Z]\w*?)(?:ForAllNamespaces)?$/.exec(
            method!,
          );
        assert.ok(call, `${file}: ${client}.${method} is not a request this test understands`);
        const verb = call[1] === 'read' ? 'get' : call[1] === 'replace' ? 'update' : call[1]!;
        found.push(`${group}/${plural(call[2]!)}:${verb}`);
      }
    }
    for (const m of text.matchAll(/'\/(?:api\/v1|apis\/([a-z0-9.-]+)\/v\w+)\/([a-z]+)'/g)) {
      // An informer's path is listed (listJson), then watched (ObservedWatch).
      for (const verb of ['list', 'watch']) found.push(`${m[1] ?? ''}/${m[2]}:${verb}`);
    }
  }
  return [...new Set(found)].sort();
}

describe('manifests/ RBAC: exactly what the code reads, and the Events it sends', function () {
  const { objects, clusterRole, binding, daemonSet } = render();
  const rules = clusterRole.rules ?? [];

  /** Every (group, resource, verb) the ClusterRole grants, as `group/resource:verb`. */
  const granted = rules.flatMap((r) =>
    (r.apiGroups ?? []).flatMap((g) =>
      (r.resources ?? []).flatMap((res) => r.verbs.map((v) => `${g}/${res}:${v}`)),
    ),
  );

  it('grants get, list and watch on services, endpointslices, nodes and servicecidrs, create and patch on events.k8s.io events, and nothing else', function () {
    const wanted = Object.values(READS).flatMap(({ group, resource }) =>
      VERBS.map((v) => `${group}/${resource}:${v}`),
    );
    assert.deepEqual([...new Set(granted)].sort(), [...wanted, ...WRITES].sort());
  });

  it('covers every API request the code makes (src/ read for client calls and watch paths)', function () {
    const used = apiRequestsInSource();
    for (const request of used) assert.ok(granted.includes(request), `${request} is used but not granted`);
    if (existsSync(path.join(repoRoot, 'src', 'watch', 'kube-source.ts'))) {
      // the kube source is there: the scan must see its informers, or it sees nothing at all
      for (const { group, resource } of Object.values(READS)) {
        for (const verb of ['list', 'watch'])
          assert.ok(used.includes(`${group}/${resource}:${verb}`), `${resource} ${verb}`);
      }
    }
    // Every write granted is used: a grant the code stopped needing goes too.
    for (const write of WRITES) assert.ok(used.includes(write), `${write} is granted but not used`);
  });

  it('has no wildcard, no write verb but on events, no secrets, no name or URL rules, no aggregation', function () {
    for (const r of rules) {
      for (const list of [r.apiGroups, r.resources, r.verbs])
        assert.ok(!(list ?? []).includes('*'), 'wildcard');
      assert.equal(r.resourceNames, undefined);
      assert.equal(r.nonResourceURLs, undefined);
    }
    for (const g of granted) {
      const [groupResource, verb] = g.split(':') as [string, string];
      const resource = groupResource.slice(groupResource.indexOf('/') + 1).split('/')[0];
      assert.ok(VERBS.includes(verb) || WRITES.includes(g), `${g} is not read-only`);
      assert.notEqual(resource, 'secrets', g);
    }
    assert.equal(clusterRole.aggregationRule, undefined);
  });

  it('binds that role to the DaemonSet’s ServiceAccount only, and adds no other role', function () {
    assert.deepEqual(binding.roleRef, {
      apiGroup: 'rbac.authorization.k8s.io',
      kind: 'ClusterRole',
      name: clusterRole.metadata!.name,
    });
    assert.deepEqual(binding.subjects, [
      {
        kind: 'ServiceAccount',
        name: daemonSet.spec!.template.spec!.serviceAccountName,
        namespace: daemonSet.metadata!.namespace,
      },
    ]);
    const roles = objects.filter((o) => /^(Cluster)?Role(Binding)?$/.test(o.kind)).map((o) => o.kind);
    assert.deepEqual(roles.sort(), ['ClusterRole', 'ClusterRoleBinding']);
  });
});
