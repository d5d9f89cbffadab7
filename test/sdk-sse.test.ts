// The SDK over the SSE transport (sdk/sse-transport.ts) against a real
// server: transport "sse" subscribes, publishes (POST /v1/publish) and
// resumes after its stream is cut with no loss and no duplicate, in both
// encodings; transport "auto" behind a proxy that refuses WebSocket
// upgrades falls back to SSE; a topic added or dropped while connected
// keeps the others whole.
import { SignJWT } from 'jose';
import { startServer, type TestServer } from './helpers/server';
import { until } from './helpers/sdk';
import { UpgradeRefusingProxy } from './helpers/http-proxy';
import { httpPublish } from './helpers/client';
import { connect, type C10mClient } from '../sdk/client';
import type { Gap } from '../sdk/stream';
import type { Message } from '../sdk/wire';

jest.setTimeout(60_000);

const FAST = { initialDelayMs: 20, maxDelayMs: 200, factor: 2 };
let server: TestServer;
let proxy: UpgradeRefusingProxy;
const clients: C10mClient[] = [];

beforeAll(async () => {
  server = await startServer(['--workgroups', '2', '--sse-heartbeat-seconds', '1']);
  proxy = new UpgradeRefusingProxy(server.port);
  await proxy.listen();
});

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
});

afterAll(async () => {
  await proxy?.close();
  await server?.stop();
});

function client(url: string, opts: Parameters<typeof connect>[1] = {}): C10mClient {
  const c = connect(url, { reconnect: FAST, ...opts });
  clients.push(c);
  return c;
}

const seqs = (msgs: Message[]) => msgs.map((m) => m.seq);
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

for (const encoding of ['json', 'msgpack'] as const) {
  test(`transport "sse" (${encoding}): subscribe, publish with ack, and resume after the stream is cut`, async () => {
    const c = client(`ws://127.0.0.1:${proxy.port}`, { transport: 'sse', encoding });
    const topic = `/sdk-sse/${encoding}`;
    const got: Message[] = [];
    const gaps: Gap[] = [];
    c.on('gap', (g) => gaps.push(g));
    const sub = c.subscribe(topic, (m) => got.push(m));
    await sub.ready;
    const first = await c.publish(topic, { n: 1 });
    expect(first.seq).toBe(1);
    for (let i = 2; i <= 10; i++) await c.publish(topic, { n: i });
    await until(() => got.length === 10, '10 messages');
    // Cut every stream; publish meanwhile from elsewhere.
    const reconnected = new Promise<void>((resolve) => c.on('connected', (e) => e.reconnect && resolve()));
    expect(proxy.dropAll()).toBeGreaterThan(0);
    for (let i = 11; i <= 30; i++) await httpPublish(server.port, { topic, data: { n: i } });
    await reconnected;
    await until(() => got.length === 30, '30 messages after the cut');
    await c.publish(topic, { n: 31 });
    await until(() => got.length === 31, 'a live message after the resume');
    expect(seqs(got)).toEqual(range(1, 31));
    expect(got.map((m) => (m.data as { n: number }).n)).toEqual(range(1, 31));
    expect(gaps).toEqual([]);
    expect(c.stats.duplicates).toBe(0);
  });
}

test('transport "auto" behind a proxy that refuses WebSocket upgrades falls back to SSE', async () => {
  const refusedBefore = proxy.refusedUpgrades;
  const sseBefore = proxy.sseRequests;
  const c = client(`ws://127.0.0.1:${proxy.port}`);
  const topic = '/sdk-sse/auto';
  const got: Message[] = [];
  await c.subscribe(topic, (m) => got.push(m)).ready;
  expect(proxy.refusedUpgrades).toBeGreaterThan(refusedBefore);
  expect(proxy.sseRequests).toBeGreaterThan(sseBefore);
  await httpPublish(server.port, { topic, data: 'through SSE' });
  await until(() => got.length === 1, 'a message over the fallback');
  expect(got[0].data).toBe('through SSE');
});

test('a topic added and another dropped while connected: the others lose nothing and get nothing twice', async () => {
  const c = client(`ws://127.0.0.1:${server.port}`, { transport: 'sse' });
  const a: Message[] = [];
  const b: Message[] = [];
  const subA = c.subscribe('/sdk-sse/a', (m) => a.push(m));
  await subA.ready;
  const burst = (async () => {
    for (let i = 0; i < 40; i++) await httpPublish(server.port, { topic: '/sdk-sse/a', data: i });
  })();
  const subB = c.subscribe('/sdk-sse/b', (m) => b.push(m));
  await subB.ready;
  await c.publish('/sdk-sse/b', 'b1');
  await burst;
  await until(() => a.length === 40 && b.length === 1, 'both topics');
  subB.unsubscribe();
  for (let i = 40; i < 50; i++) await httpPublish(server.port, { topic: '/sdk-sse/a', data: i });
  await until(() => a.length === 50, 'a after b left');
  expect(a.map((m) => m.data)).toEqual(range(0, 49));
  expect(seqs(a)).toEqual(range(1, 50));
  expect(c.stats.duplicates).toBe(0);
});

test('a stream refused for a bad topic list fails that subscription alone', async () => {
  const c = client(`ws://127.0.0.1:${server.port}`, { transport: 'sse' });
  const good = c.subscribe('/sdk-sse/fine', () => undefined);
  await good.ready;
  const errors: string[] = [];
  c.on('error', (e) => errors.push(e.code));
  // 33 topics: over the stream's limit of 32.
  const subs = range(1, 32).map((i) => c.subscribe(`/sdk-sse/many/${i}`, () => undefined));
  const results = await Promise.allSettled(subs.map((s) => s.ready));
  expect(results.every((r) => r.status === 'rejected')).toBe(true);
  expect(errors).toContain('TOO_MANY_SUBSCRIPTIONS');
  expect(c.state).toBe('connected');
  expect(Object.keys(c.positions())).toEqual(['/sdk-sse/fine']);
});

test('--auth jwt: the token goes in the stream query and the publishes; a topic it does not allow fails alone', async () => {
  const SECRET = 'test-secret-of-more-than-32-bytes-for-hs256';
  const auth = await startServer(['--workgroups', '1', '--auth', 'jwt', '--jwt-secret', SECRET]);
  try {
    const token = await new SignJWT({ subscribe: ['/jwt/>'], publish: ['/jwt/>'] })
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject('u1')
      .setExpirationTime(Math.floor(Date.now() / 1000) + 600)
      .sign(new TextEncoder().encode(SECRET));
    const c = client(`ws://127.0.0.1:${auth.port}`, { transport: 'sse', token });
    const got: Message[] = [];
    await c.subscribe('/jwt/a', (m) => got.push(m)).ready;
    const ack = await c.publish('/jwt/a', 'signed');
    await until(() => got.length === 1, 'the message');
    expect(got[0]).toMatchObject({ data: 'signed', seq: ack.seq });
    await expect(c.publish('/other', 'no')).rejects.toMatchObject({ code: 'FORBIDDEN' });
    await expect(c.subscribe('/other', () => undefined).ready).rejects.toMatchObject({ code: 'FORBIDDEN' });
    expect(c.state).toBe('connected');
  } finally {
    await auth.stop();
  }
});
