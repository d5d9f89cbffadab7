// A cluster on Redis (issue 15), end to end: real redis-server processes,
// real c10m nodes (--engine redis), real sockets. Publish on one node,
// receive on the others; interest routing; a node killed under a few
// thousand SDK sessions that resume on another node without loss or
// duplicate; Redis losing its data (a new epoch, a reported gap); Redis
// unreachable (UNAVAILABLE, then recovery); a node's subscription
// connection lost while Redis keeps the history (recovered from streams).
import { connect as sdkConnect, type C10mClient } from '../sdk';
import { connect, httpPublish, type TestClient } from './helpers/client';
import { startRedis, stopAllRedis, type TestRedis } from './helpers/redis';
import { startServer, type TestServer } from './helpers/server';
import { metricSum, readyStatus, waitFor } from './helpers/workgroups';
import { sleep } from './helpers/guaranteed';
import { publishRounds } from './helpers/sdk';
import { Redis } from 'ioredis';

jest.setTimeout(120_000);

const servers: TestServer[] = [];
const clients: TestClient[] = [];
const sdks: C10mClient[] = [];

async function node(redis: TestRedis, extra: string[] = []): Promise<TestServer> {
  const s = await startServer(['--engine', 'redis', '--redis-url', redis.url, '--workgroups', '2', ...extra]);
  servers.push(s);
  return s;
}

async function client(s: TestServer, encoding: 'json' | 'msgpack' = 'json'): Promise<TestClient> {
  const c = await connect(s.url(), encoding);
  clients.push(c);
  return c;
}

afterEach(async () => {
  for (const c of sdks.splice(0)) c.close();
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await Promise.all(servers.splice(0).map((s) => s.stop()));
  await stopAllRedis();
});

const seqs = (c: TestClient, topic: string) => c.deliveries.filter((d) => d.topic === topic).map((d) => d.seq);

test('a message published on node A reaches subscribers on B and C once, in order, in JSON and msgpack alike', async () => {
  const redis = await startRedis();
  const [a, b, c] = await Promise.all([node(redis), node(redis), node(redis)]);
  const onB = await client(b, 'json');
  const onC = await client(c, 'msgpack');
  expect((await onB.sub(['/cl/order'])).ok).toBe(true);
  expect((await onC.sub(['/cl/order'])).ok).toBe(true);
  const pubJson = await client(a, 'json');
  const pubMsgpack = await client(a, 'msgpack');
  const acks: number[] = [];
  for (let i = 1; i <= 100; i++) {
    const r = await (i % 2 === 0 ? pubMsgpack : pubJson).pub('/cl/order', { i, text: `message ${i}` });
    expect(r.ok).toBe(true);
    acks.push(r.seq as number);
  }
  // HTTP publishes are answered from Redis too.
  const http = await httpPublish(a.port, { topic: '/cl/order', data: { i: 101, text: 'by http' } });
  expect(http.status).toBe(200);
  acks.push(http.body.seq as number);
  expect(acks).toEqual(Array.from({ length: 101 }, (_, i) => i + 1));
  await onB.until(() => seqs(onB, '/cl/order').length >= 101, 10_000, 'B to get 101');
  await onC.until(() => seqs(onC, '/cl/order').length >= 101, 10_000, 'C to get 101');
  await sleep(200);
  for (const s of [onB, onC]) {
    const ds = s.deliveries.filter((d) => d.topic === '/cl/order');
    expect(ds.map((d) => d.seq)).toEqual(acks);
    expect(ds.map((d) => (d.data as { i: number }).i)).toEqual(acks);
    expect(new Set(ds.map((d) => d.epoch)).size).toBe(1);
  }
});

test('interest routing: a node with no subscriber of a topic receives none of its messages from Redis', async () => {
  const redis = await startRedis();
  const [a, b, c] = await Promise.all([node(redis), node(redis), node(redis)]);
  const onB = await client(b);
  await onB.sub(['/cl/routed']);
  const pub = await client(a);
  for (let i = 1; i <= 50; i++) await pub.pub('/cl/routed', i);
  await onB.until(() => seqs(onB, '/cl/routed').length === 50, 10_000, 'B to get 50');
  // Gauges and counters are written into the stats blocks as they change; /metrics reads them.
  await waitFor(async () => (await metricSum(b, 'c10m_redis_messages_received_total')) >= 50, 5000, 'B to count 50 messages from Redis');
  expect(await metricSum(c, 'c10m_redis_messages_received_total')).toBe(0);
  expect(await metricSum(a, 'c10m_redis_messages_received_total')).toBe(0);
  expect(await metricSum(c, 'c10m_redis_bytes_received_total')).toBe(0);
  // A subscriber on C: C now receives the topic's messages, and only from then on.
  const onC = await client(c);
  await onC.sub(['/cl/routed']);
  await pub.pub('/cl/routed', 51);
  await onC.until(() => seqs(onC, '/cl/routed').includes(51), 10_000, 'C to get 51');
  await waitFor(async () => (await metricSum(c, 'c10m_redis_messages_received_total')) === 1, 5000, 'C to count 1');
  // The last subscriber leaves: after the linger, C lets go of the channel and receives nothing more.
  await onC.request({ op: 'unsub', topics: ['/cl/routed'] });
  await waitFor(async () => (await metricSum(c, 'c10m_redis_subscriptions')) === 0, 10_000, 'C to let go of the channel');
  for (let i = 52; i <= 60; i++) await pub.pub('/cl/routed', i);
  await onB.until(() => seqs(onB, '/cl/routed').includes(60), 10_000, 'B to get 60');
  expect(await metricSum(c, 'c10m_redis_messages_received_total')).toBe(1);
});

test('a node killed under 2,000 sessions: they resume on the other node with no message lost and none twice', async () => {
  const redis = await startRedis();
  const [a, b] = await Promise.all([node(redis), node(redis)]);
  const topics = Array.from({ length: 20 }, (_, i) => `/cl/kill/${i}`);
  const SESSIONS = 2000;
  const received: number[][] = [];
  let gaps = 0;
  const connects: Promise<unknown>[] = [];
  for (let i = 0; i < SESSIONS; i++) {
    const topic = topics[i % topics.length];
    const got: number[] = [];
    received.push(got);
    // Every session starts on A (the one killed), B second.
    const s = sdkConnect([a.url(), b.url()], { encoding: i % 2 === 0 ? 'json' : 'msgpack' });
    s.on('gap', () => gaps++);
    sdks.push(s);
    connects.push(s.subscribe(topic, (m) => got.push(m.seq)).ready);
    if (i % 200 === 199) await Promise.all(connects.splice(0));
  }
  await Promise.all(connects);
  const publisher = sdkConnect([b.url()]);
  sdks.push(publisher);
  // Publishing all along on B: 20 topics, bounded in count and time.
  const PER_TOPIC = 60;
  const publishing = publishRounds(publisher, topics, PER_TOPIC);
  await waitFor(() => publishing.published() >= 10 * topics.length, 20_000, 'some publishes before the kill');
  a.proc.kill('SIGKILL');
  await publishing.done;
  expect(publishing.published()).toBe(PER_TOPIC * topics.length);
  await waitFor(() => received.every((r) => r.length >= PER_TOPIC), 60_000, `every session to get all ${PER_TOPIC} of its topic`).catch(async (err: Error) => {
    const short = received.map((r, i) => ({ i, n: r.length, last: r.at(-1) })).filter((x) => x.n < PER_TOPIC);
    const connected = sdks.filter((s) => s.state === 'connected').length;
    const sessionsOnB = await metricSum(b, 'c10m_sessions').catch(() => -1);
    throw new Error(
      `${err.message}: ${short.length} sessions short (e.g. ${JSON.stringify(short.slice(0, 5))}); gaps ${gaps}; SDK clients open ${connected} of ${sdks.length}; sessions on B ${sessionsOnB}`,
    );
  });
  await sleep(300);
  for (const r of received) expect(r).toEqual(Array.from({ length: PER_TOPIC }, (_, i) => i + 1));
  expect(gaps).toBe(0);
  expect(sdks.reduce((n, s) => n + s.stats.duplicates, 0)).toBe(0);
  // They all went over to B.
  await waitFor(async () => (await metricSum(b, 'c10m_sessions')) >= SESSIONS + 1, 20_000, 'every session on B');
});

/** Publishes `data` on `topic` until the node takes it again (Redis back): its ack. */
async function publishUntilTaken(pub: TestClient, topic: string, data: unknown, timeoutMs: number, what: string): Promise<Record<string, unknown>> {
  let ack: Record<string, unknown> = {};
  await waitFor(
    async () => {
      ack = await pub.pub(topic, data);
      return ack.ok === true;
    },
    timeoutMs,
    what,
  );
  return ack;
}

/**
 * Two nodes on `redis`; an SDK subscriber of `topic` on B gets 5 messages published on A; then `restart` (Redis
 * restarted somehow). Publishes are refused until A is connected again, then go into a new history: the first
 * one taken starts a new epoch at seq 1, it is delivered, and the subscriber is told of one gap from the old
 * epoch. Returns what the subscriber got (epoch and seq) and that first ack.
 */
async function redisRestartStartsNewEpoch(redis: TestRedis, topic: string, restart: () => Promise<void>): Promise<{ got: { epoch: number; seq: number }[]; ack: Record<string, unknown> }> {
  const [a, b] = await Promise.all([node(redis), node(redis)]);
  const gaps: { reason: string; epoch: number; lastEpoch: number }[] = [];
  const sub = sdkConnect([b.url()]);
  sdks.push(sub);
  sub.on('gap', (g) => gaps.push({ reason: g.reason, epoch: g.epoch, lastEpoch: g.lastEpoch }));
  const got: { epoch: number; seq: number }[] = [];
  await sub.subscribe(topic, (m) => got.push({ epoch: m.epoch, seq: m.seq })).ready;
  const pub = await client(a);
  for (let i = 1; i <= 5; i++) expect((await pub.pub(topic, i)).ok).toBe(true);
  await waitFor(() => got.length === 5, 10_000, 'the first 5');
  const firstEpoch = got[0].epoch;
  await restart();
  const ack = await publishUntilTaken(pub, topic, 'after', 20_000, 'a publish to be taken again');
  expect(ack.epoch).not.toBe(firstEpoch);
  expect(ack.seq).toBe(1);
  await waitFor(() => got.some((g) => g.epoch === ack.epoch), 20_000, 'the new epoch to be delivered');
  expect(gaps).toHaveLength(1);
  expect(gaps[0]).toMatchObject({ epoch: ack.epoch, lastEpoch: firstEpoch });
  return { got, ack };
}

test('Redis restarted without its data: the topic starts a new epoch, and subscribers are told of the gap', async () => {
  const redis = await startRedis();
  await redisRestartStartsNewEpoch(redis, '/cl/epoch', () => redis.restart());
});

test('Redis restarted from its append-only file: a new epoch all the same (its last second may be lost), reported, and the new epoch delivered', async () => {
  const redis = await startRedis({ args: ['--appendonly', 'yes', '--appendfsync', 'everysec'] });
  const { got, ack } = await redisRestartStartsNewEpoch(redis, '/cl/aof', async () => {
    // The data survives the restart (the AOF): only the process changed.
    await redis.command('BGREWRITEAOF');
    await sleep(1200);
    await redis.restart();
    expect(await redis.command('HGET', 'c10m:{/cl/aof}:m', 's')).toBe('5');
  });
  expect(got.filter((g) => g.epoch === ack.epoch).map((g) => g.seq)).toEqual([1]);
});

/** A Redis and two nodes on it: on B a subscriber of `topic`, on A a publisher whose first message ('before') B has got; its ack. */
async function subscriberOnB(topic: string): Promise<{ redis: TestRedis; a: TestServer; b: TestServer; onB: TestClient; pub: TestClient; first: Record<string, unknown> }> {
  const redis = await startRedis();
  const [a, b] = await Promise.all([node(redis), node(redis)]);
  const onB = await client(b);
  await onB.sub([topic]);
  const pub = await client(a);
  const first = await pub.pub(topic, 'before');
  expect(first.ok).toBe(true);
  await onB.until(() => seqs(onB, topic).length === 1, 10_000, 'the first message');
  return { redis, a, b, onB, pub, first };
}

test('Redis down for 5 s: publishes get UNAVAILABLE (HTTP 503, Retry-After), sessions stay, then all works again', async () => {
  const { redis, a, onB, pub } = await subscriberOnB('/cl/down');
  await redis.kill();
  await waitFor(async () => (await pub.pub('/cl/down', 'x')).error !== undefined, 10_000, 'publishes to be refused');
  const refused = await pub.pub('/cl/down', 'while down');
  expect(refused).toMatchObject({ error: { code: 'UNAVAILABLE' } });
  // A publish that asked for no ack is not dropped in silence either: it gets the error reply.
  const noAck = await pub.request({ op: 'pub', topic: '/cl/down', data: 'no ack', ack: false });
  expect(noAck).toMatchObject({ error: { code: 'UNAVAILABLE' } });
  const http = await fetch(`http://127.0.0.1:${a.port}/v1/publish`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ topic: '/cl/down', data: 1 }) });
  expect(http.status).toBe(503);
  expect(http.headers.get('retry-after')).toBe('1');
  expect(((await http.json()) as { error: { code: string } }).error.code).toBe('UNAVAILABLE');
  expect(await metricSum(a, 'c10m_publishes_unavailable_total')).toBeGreaterThanOrEqual(2);
  await sleep(5000);
  // Sessions stayed connected all along.
  expect(onB.closeCode).toBeNull();
  expect(pub.closeCode).toBeNull();
  await redis.restart();
  await publishUntilTaken(pub, '/cl/down', 'after', 20_000, 'publishes to be taken again');
  await onB.until(() => onB.deliveries.some((d) => d.data === 'after'), 20_000, 'B to get the message after recovery');
});

test('Redis hung (SIGSTOP) for 8 s: publishes fail with UNAVAILABLE after the command timeout, /readyz says why, then all goes on in the same epoch', async () => {
  const { redis, a, onB, pub, first } = await subscriberOnB('/cl/hung');
  const paused = redis.pause(8000);
  const started = Date.now();
  const during = await pub.request({ op: 'pub', topic: '/cl/hung', data: 'during', ack: true }, 15_000);
  expect(during).toMatchObject({ error: { code: 'UNAVAILABLE' } });
  // Failed by the 5 s command timeout, well before Redis is back.
  expect(Date.now() - started).toBeLessThan(7500);
  expect(await readyStatus(a)).toBe(503);
  // Refused at once now, not after another timeout (and before Redis is back).
  const t0 = Date.now();
  expect(await pub.pub('/cl/hung', 'refused')).toMatchObject({ error: { code: 'UNAVAILABLE' } });
  expect(Date.now() - t0).toBeLessThan(3000);
  await paused;
  await waitFor(async () => (await readyStatus(a)) === 200, 10_000, 'A ready again');
  const ack = await publishUntilTaken(pub, '/cl/hung', 'after', 10_000, 'publishes taken again');
  // Same process, same data: the same epoch; the publish that timed out may or may not have been sequenced.
  expect(ack.epoch).toBe(first.epoch);
  await onB.until(() => onB.deliveries.some((d) => d.data === 'after'), 10_000, 'B to get the message after');
  const ds = onB.deliveries.filter((d) => d.topic === '/cl/hung');
  expect(ds.map((d) => d.seq)).toEqual(Array.from({ length: ds.length }, (_, i) => i + 1));
  expect(onB.closeCode).toBeNull();
});

test("a node's subscription connection lost while Redis keeps the history: what it missed is recovered from the stream", async () => {
  const { redis, b, onB, pub } = await subscriberOnB('/cl/recover');
  const admin = new Redis({ host: '127.0.0.1', port: redis.port, lazyConnect: true, maxRetriesPerRequest: 0 });
  try {
    await admin.connect();
    // Every pub/sub connection (B's) is cut; commands (A's publishes) go on.
    await admin.client('KILL', 'TYPE', 'pubsub');
  } finally {
    admin.disconnect();
  }
  const deadline = Date.now() + 600;
  let n = 1;
  while (Date.now() < deadline) expect((await pub.pub('/cl/recover', n++)).ok).toBe(true);
  const last = n;
  await onB.until(() => seqs(onB, '/cl/recover').length >= last, 20_000, `B to get all ${last}`);
  await sleep(300);
  expect(seqs(onB, '/cl/recover')).toEqual(Array.from({ length: last }, (_, i) => i + 1));
  expect(await metricSum(b, 'c10m_redis_recovered_messages_total')).toBeGreaterThan(0);
  expect(await metricSum(b, 'c10m_redis_lost_messages_total')).toBe(0);
});
