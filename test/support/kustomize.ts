import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';

/**
 * A small kustomize for the tests: renders a kustomization the way `kubectl kustomize` does for
 * the fields it knows (`resources`, `namespace`, `images`) and refuses every other field, so a
 * kustomization can never say more than the tests see. kustomize itself is not a dependency (no
 * npm or Debian package ships a current one); test/deploy/manifests.test.ts compares this
 * renderer with `kubectl kustomize` wherever kubectl is installed.
 */

/** A rendered Kubernetes object: plain data, as parsed from YAML. */
export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; [key: string]: unknown };
  [key: string]: unknown;
}

const KNOWN_FIELDS = new Set(['apiVersion', 'kind', 'namespace', 'resources', 'images']);

/** Kinds without a namespace among those a kustomization here could hold. */
const CLUSTER_SCOPED = new Set([
  'Namespace',
  'Node',
  'ClusterRole',
  'ClusterRoleBinding',
  'CustomResourceDefinition',
  'PriorityClass',
  'StorageClass',
  'PersistentVolume',
  'APIService',
  'ValidatingWebhookConfiguration',
  'MutatingWebhookConfiguration',
  'ValidatingAdmissionPolicy',
  'ValidatingAdmissionPolicyBinding',
  'IngressClass',
  'RuntimeClass',
  'CSIDriver',
  'CSINode',
  'VolumeAttachment',
]);

interface ImageRule {
  name: string;
  newName?: string;
  newTag?: string;
  digest?: string;
}

interface Kustomization {
  namespace?: string;
  resources?: string[];
  images?: ImageRule[];
}

export function isClusterScoped(kind: string): boolean {
  return CLUSTER_SCOPED.has(kind);
}

/** Renders the kustomization in `dir` (a folder holding kustomization.yaml). Throws on anything it cannot render. */
export function renderKustomization(dir: string): KubeObject[] {
  const file = ['kustomization.yaml', 'kustomization.yml', 'Kustomization']
    .map((name) => path.join(dir, name))
    .find((p) => existsSync(p));
  if (!file) throw new Error(`no kustomization.yaml in ${dir}`);
  const k = parseOne(file) as Kustomization & Record<string, unknown>;
  for (const key of Object.keys(k)) {
    if (!KNOWN_FIELDS.has(key)) {
      throw new Error(
        `${file}: field '${key}' is not supported by test/support/kustomize.ts; extend the renderer`,
      );
    }
  }

  const objects: KubeObject[] = [];
  for (const resource of k.resources ?? []) {
    const p = path.resolve(dir, resource);
    if (!existsSync(p)) throw new Error(`${file}: resource '${resource}' does not exist`);
    objects.push(...(statSync(p).isDirectory() ? renderKustomization(p) : readObjects(p)));
  }

  if (k.namespace) setNamespace(objects, k.namespace);
  for (const rule of k.images ?? []) setImage(objects, rule);

  const seen = new Set<string>();
  for (const o of objects) {
    const id = `${o.apiVersion}/${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`;
    if (seen.has(id)) throw new Error(`${file}: ${id} is defined twice`);
    seen.add(id);
  }
  return objects;
}

/** Every document of a YAML file, each checked to be a Kubernetes object. */
export function readObjects(file: string): KubeObject[] {
  const docs = parseAllDocuments(readFileSync(file, 'utf8'));
  const out: KubeObject[] = [];
  for (const doc of docs) {
    if (doc.errors.length > 0) throw new Error(`${file}: ${doc.errors[0]!.message}`);
    const o = doc.toJS() as unknown;
    if (o === null || o === undefined) continue;
    if (!isKubeObject(o))
      throw new Error(`${file}: a document is not a Kubernetes object (apiVersion, kind, metadata.name)`);
    out.push(o);
  }
  return out;
}

function parseOne(file: string): unknown {
  const docs = parseAllDocuments(readFileSync(file, 'utf8'));
  if (docs.length !== 1 || docs[0]!.errors.length > 0) throw new Error(`${file}: expected one YAML document`);
  return docs[0]!.toJS();
}

function isKubeObject(o: unknown): o is KubeObject {
  if (typeof o !== 'object' || o === null) return false;
  const r = o as Record<string, unknown>;
  const meta = r.metadata as Record<string, unknown> | undefined;
  return typeof r.apiVersion === 'string' && typeof r.kind === 'string' && typeof meta?.name === 'string';
}

/**
 * kustomize's namespace transformer: every namespaced object moves to `ns`; a ServiceAccount
 * subject of a (Cluster)RoleBinding follows when it names a ServiceAccount of this
 * kustomization and its namespace is unset, "default" or that ServiceAccount's own.
 */
function setNamespace(objects: KubeObject[], ns: string): void {
  const accounts = new Map<string, string | undefined>();
  for (const o of objects)
    if (o.kind === 'ServiceAccount') accounts.set(o.metadata.name, o.metadata.namespace);

  for (const o of objects) {
    if ((o.kind === 'RoleBinding' || o.kind === 'ClusterRoleBinding') && Array.isArray(o.subjects)) {
      for (const s of o.subjects as { kind?: string; name?: string; namespace?: string }[]) {
        if (s.kind !== 'ServiceAccount' || s.name === undefined || !accounts.has(s.name)) continue;
        if (s.namespace === undefined || s.namespace === 'default' || s.namespace === accounts.get(s.name)) {
          s.namespace = ns;
        }
      }
    }
  }
  for (const o of objects) if (!isClusterScoped(o.kind)) o.metadata.namespace = ns;
}

/** kustomize's image transformer, for `containers` and `initContainers` anywhere in an object. */
function setImage(objects: KubeObject[], rule: ImageRule): void {
  const visit = (node: unknown): void => {
    if (Array.isArray(node)) return node.forEach(visit);
    if (typeof node !== 'object' || node === null) return;
    for (const [key, value] of Object.entries(node)) {
      if ((key === 'containers' || key === 'initContainers') && Array.isArray(value)) {
        for (const c of value as { image?: unknown }[]) {
          if (typeof c.image === 'string') c.image = rewriteImage(c.image, rule);
        }
      }
      visit(value);
    }
  };
  objects.forEach(visit);
}

function rewriteImage(image: string, rule: ImageRule): string {
  const at = image.indexOf('@');
  let name = at >= 0 ? image.slice(0, at) : image;
  let suffix = at >= 0 ? image.slice(at) : '';
  const colon = name.lastIndexOf(':');
  if (colon > name.lastIndexOf('/')) {
    suffix = name.slice(colon) + suffix;
    name = name.slice(0, colon);
  }
  if (name !== rule.name) return image;
  if (rule.digest) suffix = `@${rule.digest}`;
  else if (rule.newTag) suffix = `:${rule.newTag}`;
  return (rule.newName ?? name) + suffix;
}
