/**
 * The parent's side of bench/api-server-child.ts: the test API server in its own process,
 * written to as the in-process one is (create, update), over Node's IPC channel.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { KubeConfig } from '@kubernetes/client-node';
import type { ApiKind, StoredObject } from '../test/support/api-server.js';
import type { ApiAnswer, ApiRequest, ApiWrite } from './api-server-child.js';

const CHILD = fileURLToPath(new URL('./api-server-child.js', import.meta.url));
/** Objects per IPC message while filling. */
const BATCH = 2000;

/** Where a workload stores its objects. */
export interface ApiWriter {
  create(kind: ApiKind, obj: StoredObject): void;
}

export class RemoteApiServer implements ApiWriter {
  #nextId = 1;
  readonly #acks = new Map<number, () => void>();
  #pending: { kind: ApiKind; objects: StoredObject[] } | undefined;
  /** The last request sent: the child answers in order, so its answer means all are done. */
  #last: Promise<void> = Promise.resolve();

  private constructor(
    private readonly child: ChildProcess,
    private readonly config: string,
  ) {
    child.on('message', (msg: ApiAnswer) => {
      if (msg.op === 'ack') {
        this.#acks.get(msg.id)?.();
        this.#acks.delete(msg.id);
      }
    });
  }

  static async start(): Promise<RemoteApiServer> {
    const child = fork(CHILD, [], {
      serialization: 'advanced',
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const kubeconfig = await new Promise<string>((resolve, reject) => {
      child.once('message', (msg: ApiAnswer) =>
        msg.op === 'ready' ? resolve(msg.kubeconfig) : reject(new Error('no ready')),
      );
      child.once('exit', (code) => reject(new Error(`the API server process ended (${code})`)));
    });
    return new RemoteApiServer(child, kubeconfig);
  }

  kubeConfig(): KubeConfig {
    const kc = new KubeConfig();
    kc.loadFromString(this.config);
    return kc;
  }

  /** Queued; sent in batches, and all of it by flush(). */
  create(kind: ApiKind, obj: StoredObject): void {
    if (this.#pending && this.#pending.kind !== kind) void this.#send();
    (this.#pending ??= { kind, objects: [] }).objects.push(obj);
    if (this.#pending.objects.length >= BATCH) void this.#send();
  }

  /** Resolves once every object created so far is stored. */
  async flush(): Promise<void> {
    await this.#send();
    await this.#last;
  }

  /** Resolves once the server has stored the update (its watchers are told as it does). */
  async update(kind: ApiKind, object: StoredObject): Promise<void> {
    await this.#request({ op: 'update', kind, object });
  }

  async close(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const gone = new Promise((resolve) => this.child.once('exit', resolve));
    this.child.send({ op: 'close' } satisfies ApiRequest);
    await gone;
  }

  #send(): Promise<void> {
    const batch = this.#pending;
    this.#pending = undefined;
    return batch ? this.#request({ op: 'create', ...batch }) : Promise.resolve();
  }

  #request(req: ApiWrite): Promise<void> {
    const id = this.#nextId++;
    this.#last = new Promise((resolve) => {
      this.#acks.set(id, resolve);
      this.child.send({ ...req, id } satisfies ApiRequest);
    });
    return this.#last;
  }
}
