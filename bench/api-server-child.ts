/**
 * The test API server in a process of its own, for benches (remote-api-server.ts starts it):
 * a real API server runs elsewhere, and one in the bench's own process serves its lists on the
 * thread the in-process daemon is measured on, with its 100,000 stored objects in the heap that
 * daemon's collector walks: both grow with the Services, so they bent the scale figures.
 */
import { TestApiServer, type ApiKind, type StoredObject } from '../test/support/api-server.js';

/** A write: store objects, or update one. */
export type ApiWrite =
  | { op: 'create'; kind: ApiKind; objects: StoredObject[] }
  | { op: 'update'; kind: ApiKind; object: StoredObject };
/** What the bench asks: a write (acknowledged by its `id`), or to stop. */
export type ApiRequest = (ApiWrite & { id: number }) | { op: 'close' };

/** What it answers: its kubeconfig once listening, then an acknowledgement per request. */
export type ApiAnswer = { op: 'ready'; kubeconfig: string } | { op: 'ack'; id: number };

const send = (msg: ApiAnswer): void => {
  process.send!(msg);
};

const server = await TestApiServer.create({ bookmarkIntervalMs: 60_000 });
process.on('message', (msg: ApiRequest) => {
  switch (msg.op) {
    case 'create':
      for (const o of msg.objects) server.create(msg.kind, o);
      break;
    case 'update':
      server.update(msg.kind, msg.object);
      break;
    case 'close':
      void server.close().then(() => process.exit(0));
      return;
  }
  send({ op: 'ack', id: msg.id });
});
// The parent going away ends it too.
process.on('disconnect', () => process.exit(0));
send({ op: 'ready', kubeconfig: server.kubeConfig().exportConfig() });
