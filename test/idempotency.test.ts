// Idempotent publish (protocol/idempotency.ts): a publish that repeats an
// idempotencyKey within the window is answered with the first one's epoch
// and seq and "duplicate":true, and delivers nothing; over WebSocket (JSON,
// msgpack) and HTTP alike, on the memory engine and, with two nodes on one
// Redis, across nodes (the key is checked in the publish script).
import { connect, httpPublish, type TestClient } from './helpers/client';
import { startRedis, stopAllRedis } from './helpers/redis';
import { startServer, type TestServer } from './helpers/server';
import { metricSum } from './helpers/workgroups';

jest.setTimeout(60_000);

/** --redis-prefix by default. */
const PREFIX = 'c10m';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const servers: TestServer[] = [];
const clients: TestClient[] = [];

async function server(args: string[] = []): Promise<TestServer> {
  const s = await startServer(['--workgroups', '2', ...args]);
  servers.push(s);
  return s;
}

async function client(s: TestServer, encoding: 'json' | 'msgpack' = 'json'): Promise<TestClient> {
  const c = await connect(s.url(), encoding);
  clients.push(c);
  return c;
}

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await Promise.all(servers.splice(0).map((s) => s.stop()));
  await stopAllRedis();
});

const dataOf = (c: TestClient, topic: string) => c.deliveries.filter((d) => d.topic === topic).map((d) => d.data);

test('a repeated key gets the first publish`s epoch and seq and duplicate:true, and is delivered once (WebSocket JSON and msgpack, HTTP)', async () => {
  const s = await server();
  const sub = await client(s);
  const topic = '/idem/orders';
  await sub.sub([topic]);
  const j = await client(s);
  const m = await client(s, 'msgpack');
  const first = await j.pub(topic, { order: 1 }, { idempotencyKey: 'order-1' });
  expect(first).toMatchObject({ ok: true, seq: 1 });
  expect(first.duplicate).toBeUndefined();
  // The retry, from another session and encoding, with other data: the first publish stands.
  expect(await m.pub(topic, { order: 1, retry: true }, { idempotencyKey: 'order-1' })).toEqual({ id: expect.anything(), ok: true, epoch: first.epoch, seq: 1, duplicate: true });
  const http = await httpPublish(s.port, { topic, data: { order: 1 }, idempotencyKey: 'order-1' });
  expect(http).toEqual({ status: 200, body: { epoch: first.epoch, seq: 1, duplicate: true } });
  const httpMsgpack = await httpPublish(s.port, { topic, data: { order: 1 }, idempotencyKey: 'order-1' }, 'application/msgpack');
  expect(httpMsgpack.body).toEqual({ epoch: first.epoch, seq: 1, duplicate: true });
  // Another key, and no key, are published.
  expect(await j.pub(topic, { order: 2 }, { idempotencyKey: 'order-2' })).toMatchObject({ seq: 2 });
  expect((await httpPublish(s.port, { topic, data: { order: 3 }, idempotencyKey: 'order-3' })).body).toEqual({ epoch: first.epoch, seq: 3 });
  expect(await j.pub(topic, { order: 4 })).toMatchObject({ seq: 4 });
  // Keys are per topic.
  expect(await j.pub('/idem/other', 'x', { idempotencyKey: 'order-1' })).toMatchObject({ seq: 1 });
  // A publish without ack that repeats a key is dropped silently too.
  m.send({ id: 'silent', op: 'pub', topic, data: { order: 2, again: true }, idempotencyKey: 'order-2' });
  await j.pub(topic, { order: 5 });
  await sub.until(() => dataOf(sub, topic).length >= 5, 5000, 'five messages');
  await sleep(100);
  expect(dataOf(sub, topic)).toEqual([{ order: 1 }, { order: 2 }, { order: 3 }, { order: 4 }, { order: 5 }]);
  expect(await metricSum(s, 'c10m_idempotent_duplicates_total')).toBe(4);
});

test('the window and the bound per topic are options: a key is forgotten when its window ends, and the oldest goes first past the bound', async () => {
  const s = await server(['--idempotency-window-seconds', '1', '--idempotency-keys-per-topic', '2']);
  const p = await client(s);
  const topic = '/idem/bounded';
  expect(await p.pub(topic, 1, { idempotencyKey: 'a' })).toMatchObject({ seq: 1 });
  expect(await p.pub(topic, 2, { idempotencyKey: 'b' })).toMatchObject({ seq: 2 });
  expect(await p.pub(topic, 'a?', { idempotencyKey: 'a' })).toMatchObject({ seq: 1, duplicate: true });
  // A third key: 'a', the oldest, is forgotten early (counted).
  expect(await p.pub(topic, 3, { idempotencyKey: 'c' })).toMatchObject({ seq: 3 });
  expect(await p.pub(topic, 'b?', { idempotencyKey: 'b' })).toMatchObject({ seq: 2, duplicate: true });
  expect(await p.pub(topic, 'a again', { idempotencyKey: 'a' })).toMatchObject({ seq: 4 });
  // 'a' went for 'c', then 'b' for 'a' taken again.
  expect(await metricSum(s, 'c10m_idempotency_keys_evicted_total')).toBe(2);
  // Past the window (1 s), every key is new again.
  await sleep(1300);
  expect(await p.pub(topic, 'c after', { idempotencyKey: 'c' })).toMatchObject({ seq: 5 });
  expect((await p.pub(topic, 'c after?', { idempotencyKey: 'c' })).duplicate).toBe(true);
});

test('bad idempotency keys are refused, nothing published: too long, empty, not a string, not printable ASCII', async () => {
  const s = await server();
  const j = await client(s);
  const m = await client(s, 'msgpack');
  const message = 'idempotencyKey must be a string of 1 to 128 printable ASCII characters';
  for (const key of ['k'.repeat(129), '', 42, true, ['a'], { k: 1 }, 'tab\there', 'é']) {
    expect((await j.pub('/idem/bad', 1, { idempotencyKey: key })).error).toEqual({ code: 'BAD_REQUEST', message });
    expect((await m.pub('/idem/bad', 1, { idempotencyKey: key })).error).toEqual({ code: 'BAD_REQUEST', message });
    expect(await httpPublish(s.port, { topic: '/idem/bad', data: 1, idempotencyKey: key })).toEqual({ status: 400, body: { error: { code: 'BAD_REQUEST', message } } });
  }
  // 128 characters and null are fine; nothing before was published.
  expect(await j.pub('/idem/bad', 1, { idempotencyKey: 'k'.repeat(128) })).toMatchObject({ seq: 1 });
  expect(await j.pub('/idem/bad', 2, { idempotencyKey: null })).toMatchObject({ seq: 2 });
});

test('two nodes on one Redis: the same key retried on both (and at once) is published once', async () => {
  const redis = await startRedis();
  const a = await server(['--engine', 'redis', '--redis-url', redis.url]);
  const b = await server(['--engine', 'redis', '--redis-url', redis.url]);
  const topic = '/idem/cluster';
  const sub = await client(b);
  await sub.sub([topic]);
  const onA = await client(a);
  const onB = await client(b, 'msgpack');
  // At once on both nodes, several times each: one publish, the others its duplicates.
  const answers = await Promise.all([
    ...Array.from({ length: 5 }, () => onA.pub(topic, { n: 1, from: 'a' }, { idempotencyKey: 'pay-1' })),
    ...Array.from({ length: 5 }, () => onB.pub(topic, { n: 1, from: 'b' }, { idempotencyKey: 'pay-1' })),
    httpPublish(a.port, { topic, data: { n: 1, from: 'http' }, idempotencyKey: 'pay-1' }).then((r) => r.body),
  ]);
  expect(answers.every((r) => r.seq === 1 && r.epoch === answers[0].epoch)).toBe(true);
  expect(answers.filter((r) => r.duplicate === true).length).toBe(answers.length - 1);
  expect(await onB.pub(topic, { n: 2 }, { idempotencyKey: 'pay-2' })).toMatchObject({ seq: 2 });
  expect(await onA.pub(topic, { n: 2 }, { idempotencyKey: 'pay-2' })).toMatchObject({ seq: 2, duplicate: true });
  await sub.until(() => dataOf(sub, topic).length >= 2, 5000, 'two messages');
  await sleep(200);
  expect(dataOf(sub, topic).length).toBe(2);
  expect((dataOf(sub, topic)[1] as { n: number }).n).toBe(2);
  // Redis holds the topic's keys (a hash and its list, both expiring with the window).
  expect(await redis.command('HLEN', `${PREFIX}:{${topic}}:k`)).toBe(2);
  expect(await redis.command('LLEN', `${PREFIX}:{${topic}}:l`)).toBe(2);
  const ttl = (await redis.command('PTTL', `${PREFIX}:{${topic}}:k`)) as number;
  expect(ttl).toBeGreaterThan(0);
  expect(ttl).toBeLessThanOrEqual(300_000);
});

test('Redis engine: the bound per topic and the window hold in the publish script too', async () => {
  const redis = await startRedis();
  const s = await server(['--engine', 'redis', '--redis-url', redis.url, '--idempotency-window-seconds', '1', '--idempotency-keys-per-topic', '2']);
  const p = await client(s);
  const topic = '/idem/redis-bounded';
  expect(await p.pub(topic, 1, { idempotencyKey: 'a' })).toMatchObject({ seq: 1 });
  expect(await p.pub(topic, 2, { idempotencyKey: 'b' })).toMatchObject({ seq: 2 });
  expect(await p.pub(topic, 3, { idempotencyKey: 'c' })).toMatchObject({ seq: 3 });
  // 'a' was forgotten for 'c'; 'b' and 'c' are held.
  expect(await redis.command('HLEN', `${PREFIX}:{${topic}}:k`)).toBe(2);
  expect(await redis.command('LLEN', `${PREFIX}:{${topic}}:l`)).toBe(2);
  expect(await p.pub(topic, 'c?', { idempotencyKey: 'c' })).toMatchObject({ seq: 3, duplicate: true });
  expect(await p.pub(topic, 'a again', { idempotencyKey: 'a' })).toMatchObject({ seq: 4 });
  // Past the window every key is new again, and the script drops the expired ones as it goes.
  await sleep(1300);
  expect(await p.pub(topic, 'c after', { idempotencyKey: 'c' })).toMatchObject({ seq: 5 });
  expect(await redis.command('HLEN', `${PREFIX}:{${topic}}:k`)).toBe(1);
});
