// The SDK's conflation and idempotency options (sdk/options.ts): a
// conflated subscription's jumps are not gaps (only what the skipped count
// does not cover is), and a publish with an idempotencyKey that was in
// flight when the connection broke is sent again with its key, so that the
// server publishes it once (WebSocket client and HTTP publisher alike).
import { connect, type C10mClient } from '../sdk/client';
import { C10mError } from '../sdk/errors';
import { HttpPublisher } from '../sdk/http-publisher';
import { TopicStream, type Gap } from '../sdk/stream';
import type { Message } from '../sdk/wire';
import { connect as rawConnect, httpPublish } from './helpers/client';
import { until } from './helpers/sdk';
import { startServer, type TestServer } from './helpers/server';
import { TcpProxy } from './helpers/tcp-proxy';

jest.setTimeout(60_000);

const FAST = { initialDelayMs: 20, maxDelayMs: 200, factor: 2 };
const clients: C10mClient[] = [];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
let server: TestServer;

function client(url: string, opts: Parameters<typeof connect>[1] = {}): C10mClient {
  const c = connect(url, { reconnect: FAST, ...opts });
  clients.push(c);
  return c;
}

beforeAll(async () => {
  server = await startServer(['--workgroups', '2']);
});
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
});
afterAll(async () => {
  await server.stop();
});

describe('TopicStream and conflated frames', () => {
  const conflated = (epoch: number, seq: number, skipped: number) => ({ epoch, seq, replay: false, snapshot: false, conflated: skipped });

  test('a jump the skipped count covers is no gap; one beyond it is a gap of the rest', () => {
    const s = new TopicStream('/t');
    s.onSubReply({ epoch: 7, seq: 10 }, null);
    expect(s.accept(conflated(7, 15, 4))).toEqual({ deliver: true, gap: null });
    expect(s.accept(conflated(7, 16, 0))).toEqual({ deliver: true, gap: null });
    // A frame that skipped 3 but jumped 5: 17 and 18 are missing for another reason.
    expect(s.accept(conflated(7, 22, 3))).toEqual({ deliver: true, gap: { topic: '/t', reason: 'seq_jump', epoch: 7, fromSeq: 17, toSeq: 18, lastEpoch: 7, lastSeq: 16 } });
    // Older frames are duplicates as ever.
    expect(s.accept(conflated(7, 20, 0)).deliver).toBe(false);
  });

  test('a conflating session joining after the group sent skips fewer than the frame says: still no gap', () => {
    const s = new TopicStream('/t');
    s.onSubReply({ epoch: 7, seq: 30 }, null);
    // The group's previous frame was seq 25; this one skipped 26..34 (9), the session misses only 31..34.
    expect(s.accept(conflated(7, 35, 9))).toEqual({ deliver: true, gap: null });
  });
});

test('subscribe with conflateMs: messages carry their skipped count, the last is the latest, and no gap is reported', async () => {
  const topic = '/sdk/conflated';
  const c = client(server.url(), { encoding: 'msgpack' });
  const got: Message[] = [];
  const gaps: Gap[] = [];
  c.on('gap', (g) => gaps.push(g));
  const sub = c.subscribe(topic, (m) => got.push(m), { conflateMs: 50 });
  const at = await sub.ready;
  const p = client(server.url());
  let last = at;
  for (let i = 1; i <= 100; i++) {
    if (i % 20 === 0 || i === 100) last = await p.publish(topic, { i });
    else void p.publish(topic, { i }, { ack: false });
    await sleep(3);
  }
  await until(() => got.length > 0 && got[got.length - 1].seq === last.seq, 'the latest message');
  expect(gaps).toEqual([]);
  expect(got.length).toBeLessThan(100);
  expect(got[got.length - 1].data).toEqual({ i: 100 });
  // Every message is either delivered or counted as skipped.
  expect(got.reduce((n, m) => n + 1 + m.conflated, 0)).toBe(last.seq - at.seq);
  expect(() => c.subscribe('/sdk/bad', () => undefined, { conflateMs: 5 })).toThrow(C10mError);
});

test('an acked publish with an idempotencyKey lost with its connection is sent again with it: published once', async () => {
  const topic = '/sdk/idem';
  const watcher = await rawConnect(server.url());
  await watcher.sub([topic]);
  const proxy = new TcpProxy(server.port);
  const port = await proxy.listen();
  const c = client(`ws://127.0.0.1:${port}/v1/ws`);
  await c.ready();
  // The first attempt reached the server (published directly here, as if the ack was what got lost) ...
  const first = await watcher.pub(topic, { pay: 1 }, { idempotencyKey: 'pay-1' });
  // ... and the client's own send goes nowhere: the connection hangs, then breaks.
  proxy.freeze();
  const keyed = c.publish(topic, { pay: 1 }, { idempotencyKey: 'pay-1' });
  const unkeyed = c.publish(topic, { other: true }).then(
    () => null,
    (e: unknown) => e,
  );
  await sleep(100);
  proxy.cut();
  // Sent again on the next connection: the server answers with the first publish.
  await expect(keyed).resolves.toEqual({ epoch: first.epoch, seq: first.seq, duplicate: true });
  // Without a key it fails as before: it may or may not have been applied.
  expect(await unkeyed).toMatchObject({ code: 'CONNECTION_LOST' });
  await sleep(100);
  expect(watcher.deliveries.filter((d) => d.topic === topic).map((d) => d.data)).toEqual([{ pay: 1 }]);
  await expect(c.publish(topic, 1, { idempotencyKey: 'x'.repeat(129) })).rejects.toMatchObject({ code: 'BAD_REQUEST' });
  await watcher.close();
  await proxy.close();
});

test('the HTTP publisher retries a keyed publish that timed out, with its key', async () => {
  const topic = '/sdk/http-idem';
  const proxy = new TcpProxy(server.port);
  const port = await proxy.listen();
  const pub = new HttpPublisher(`http://127.0.0.1:${port}`, { timeoutMs: 300, retries: 2, maxSockets: 1 });
  try {
    // A keep-alive connection, then frozen: the next publish on it gets no answer.
    const zero = await pub.publish(topic, 0);
    const first = await httpPublish(server.port, { topic, data: 1, idempotencyKey: 'h-1' });
    proxy.freeze();
    await expect(pub.publish(topic, 1, { idempotencyKey: 'h-1' })).resolves.toEqual({ epoch: zero.epoch, seq: first.body.seq, duplicate: true });
    // Without a key: no retry, the timeout is the answer (the retry's connection frozen in turn).
    proxy.freeze();
    await expect(pub.publish(topic, 3)).rejects.toMatchObject({ code: 'TIMEOUT' });
  } finally {
    pub.close();
    await proxy.close();
  }
});
