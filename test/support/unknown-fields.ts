import * as k8s from '@kubernetes/client-node';

/**
 * Fields of a Kubernetes object that the API does not define, as JSON paths. The JSON schemas
 * of kubernetes-models accept unknown fields, and so does `kubectl apply` without strict field
 * validation: a misspelt `readOnlyRootFileSystem` would be dropped without a word. This walks
 * the object along @kubernetes/client-node's generated models (their attribute type maps).
 */
export function unknownFields(object: unknown, typeName: string): string[] {
  const found: string[] = [];
  walk(object, typeName, '', found);
  return found;
}

interface Attribute {
  baseName: string;
  type: string;
}

type ModelClass = { getAttributeTypeMap(): Attribute[] };

const models = k8s as unknown as Record<string, ModelClass | undefined>;

const LEAVES = new Set(['string', 'boolean', 'number', 'Date', 'IntOrString', 'object', 'any']);

function walk(value: unknown, type: string, at: string, found: string[]): void {
  if (value === null || value === undefined || LEAVES.has(type)) return;
  const array = /^Array<(.+)>$/.exec(type);
  if (array) {
    if (Array.isArray(value)) value.forEach((v, i) => walk(v, array[1]!, `${at}[${i}]`, found));
    return;
  }
  const map = /^\{ \[key: string\]: (.+); \}$/.exec(type);
  if (map) {
    if (typeof value === 'object') {
      for (const [k, v] of Object.entries(value)) walk(v, map[1]!, `${at}.${k}`, found);
    }
    return;
  }
  const model = models[type];
  if (typeof model?.getAttributeTypeMap !== 'function') {
    throw new Error(`unknownFields: no model for type '${type}' at ${at || '(root)'}`);
  }
  if (typeof value !== 'object') return; // a wrong type is the schema validation's business
  const attributes = new Map(model.getAttributeTypeMap().map((a) => [a.baseName, a.type]));
  for (const [k, v] of Object.entries(value)) {
    const t = attributes.get(k);
    if (t === undefined) found.push(`${at}.${k}`);
    else walk(v, t, `${at}.${k}`, found);
  }
}
