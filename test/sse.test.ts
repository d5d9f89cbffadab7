// GET /v1/sse, the Server-Sent Events transport, read by node:http clients:
// deliveries as events with a resume id, the ready event, resume after a cut
// with Last-Event-ID (no loss, no duplicate), gap events, heartbeats, a slow
// reader cut, bad input answered 4xx while the node keeps serving, tokens
// under --auth jwt, and the transport label of the metrics.
import net from 'node:net';
import { SignJWT } from 'jose';
import { packr } from '../protocol/codec';
import { encodeResumeId } from '../protocol/sse';
import { httpPublish } from './helpers/client';
import { startServer, type TestServer } from './helpers/server';
import { openSse, stream, type SseReader } from './helpers/sse';

jest.setTimeout(60_000);

let server: TestServer;
const open: SseReader[] = [];

beforeAll(async () => {
  // Two workgroups: most topics are owned by the other one (rings); a small cache for the gap case.
  server = await startServer(['--workgroups', '2', '--sse-heartbeat-seconds', '1', '--cache-messages', '50']);
});

afterAll(async () => {
  for (const r of open) r.cut();
  await server?.stop();
});

async function sse(path: string, headers: Record<string, string> = {}): Promise<SseReader> {
  const r = await stream(server.port, path, headers);
  open.push(r);
  return r;
}

async function publish(topic: string, data: unknown, retain = false): Promise<{ epoch: number; seq: number }> {
  const r = await httpPublish(server.port, { topic, data, retain });
  expect(r.status).toBe(200);
  return r.body as { epoch: number; seq: number };
}

async function metric(text: RegExp): Promise<number> {
  const body = await (await fetch(server.adminUrl('/metrics'))).text();
  let sum = 0;
  for (const line of body.split('\n')) if (text.test(line)) sum += Number(line.split(' ').pop());
  return sum;
}

function seqsOf(r: SseReader, topic: string): number[] {
  return r
    .messages()
    .filter((m) => m.topic === topic && m.snapshot !== true)
    .map((m) => m.seq);
}

const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

test('a stream gets ready, then every message as a JSON delivery frame with a resume id; msgpack bytes come as $base64', async () => {
  const r = await sse('/v1/sse?topics=/s1/a,/s1/b');
  expect(r.res.headers['content-type']).toBe('text/event-stream');
  await r.until(() => r.ofType('ready').length === 1, 10_000, 'ready');
  const ready = r.ofType('ready')[0] as { topics: Record<string, { epoch: number; seq: number }>; heartbeatMs: number };
  expect(Object.keys(ready.topics).sort()).toEqual(['/s1/a', '/s1/b']);
  expect(ready.heartbeatMs).toBe(1000);
  const a1 = await publish('/s1/a', { n: 1 });
  const b1 = await publish('/s1/b', 'two');
  const res = await fetch(`http://127.0.0.1:${server.port}/v1/publish`, {
    method: 'POST',
    headers: { 'content-type': 'application/msgpack' },
    body: packr.pack({ topic: '/s1/a', data: Buffer.from([1, 2, 3]) }),
  });
  expect(res.status).toBe(200);
  await r.until(() => r.messages().length === 3, 10_000, '3 messages');
  const m = r.messages();
  expect(m[0]).toMatchObject({ op: 'msg', topic: '/s1/a', epoch: a1.epoch, seq: a1.seq, data: { n: 1 } });
  expect(m[1]).toMatchObject({ topic: '/s1/b', epoch: b1.epoch, seq: b1.seq, data: 'two' });
  expect(m[2]).toMatchObject({ topic: '/s1/a', seq: a1.seq + 1, data: { $base64: 'AQID' } });
  // The id holds both topics' positions, in the order of the topics parameter.
  const last = r.events[r.events.length - 1];
  expect(last.id).toBe(encodeResumeId(['/s1/a', '/s1/b'], [a1.epoch, b1.epoch], [a1.seq + 1, b1.seq]));
});

test('a cut stream resumed with Last-Event-ID gets what it missed, in order, with no loss and no duplicate', async () => {
  const topics = ['/s2/x', '/s2/y', '/s2/z'];
  const first = await sse(`/v1/sse?topics=${topics.join(',')}`);
  await first.until(() => first.ofType('ready').length === 1, 10_000, 'ready');
  for (let i = 0; i < 10; i++) for (const t of topics) await publish(t, { i });
  await first.until(() => first.messages().length === 30, 10_000, '30 messages');
  // Cut in the middle of a burst: whatever arrived is kept, and its last id resumes.
  const burst = (async () => {
    for (let i = 10; i < 40; i++) for (const t of topics) await publish(t, { i });
  })();
  await first.until(() => first.messages().length >= 40, 10_000, 'part of the burst');
  first.cut();
  await burst;
  const lastId = first.lastId;
  const seenBefore = first.messages().length;
  const second = await sse(`/v1/sse?topics=${topics.join(',')}`, { 'last-event-id': lastId });
  await second.until(() => second.ofType('ready').length === 1, 10_000, 'ready after resume');
  const ready = second.ofType('ready')[0] as { topics: Record<string, { recovered: boolean }> };
  for (const t of topics) expect(ready.topics[t].recovered).toBe(true);
  // Live after the resume.
  for (const t of topics) await publish(t, { i: 40 });
  await second.until(() => second.messages().length + seenBefore >= 123, 10_000, 'every message');
  for (const t of topics) {
    const seqs = [...seqsOf(first, t).filter((s) => s <= 40), ...seqsOf(second, t)];
    expect(seqs).toEqual(range(1, 41));
  }
  expect(second.ofType('gap')).toEqual([]);
  expect(second.messages().every((m, i, all) => m.replay === true || all.slice(i).every((n) => n.replay !== true))).toBe(true);
});

test('a resume the cache no longer covers gets a gap event, then the live stream', async () => {
  const topic = '/s3/gap';
  const a = await publish(topic, 0);
  const first = await sse(`/v1/sse?topics=${topic}`);
  await first.until(() => first.ofType('ready').length === 1, 10_000, 'ready');
  await publish(topic, 1);
  await first.until(() => first.messages().length === 1, 10_000, 'one message');
  first.cut();
  // 80 more: past --cache-messages 50.
  for (let i = 0; i < 80; i++) await publish(topic, i);
  const second = await sse(`/v1/sse?topics=${topic}`, { 'last-event-id': first.lastId });
  await second.until(() => second.ofType('ready').length === 1, 10_000, 'ready');
  const gaps = second.ofType('gap');
  expect(gaps).toEqual([{ topic, reason: 'cache_miss', from: [a.epoch, a.seq + 1], to: [a.epoch, a.seq + 81] }]);
  // A position from an epoch the topic never had: the gap is reported before its current epoch's messages.
  const third = await sse(`/v1/sse?topics=${topic}&resume=${encodeResumeId([topic], [(a.epoch ^ 1) >>> 0 || 7], [3])}`);
  await third.until(() => third.ofType('ready').length === 1, 10_000, 'ready');
  expect(third.ofType('gap')[0]).toMatchObject({ topic, from: [(a.epoch ^ 1) >>> 0 || 7, 3] });
  await publish(topic, 'live');
  await second.until(() => second.messages().length === 1, 10_000, 'live after the gap');
  expect(second.messages()[0]).toMatchObject({ seq: a.seq + 82, data: 'live' });
});

test('an idle stream gets heartbeat comments', async () => {
  const r = await sse('/v1/sse?topics=/s4/idle');
  await r.until(() => r.comments.filter((c) => c === 'hb').length >= 2, 10_000, 'two heartbeats');
});

test('the retained snapshot comes first to a new stream, without moving its position', async () => {
  const topic = '/s5/snap';
  const p = await publish(topic, { v: 'kept' }, true);
  const r = await sse(`/v1/sse?topics=${topic}`);
  await r.until(() => r.ofType('ready').length === 1, 10_000, 'ready');
  expect(r.messages()).toEqual([expect.objectContaining({ topic, seq: p.seq, snapshot: true, data: { v: 'kept' } })]);
  expect(r.events.find((e) => e.event === 'message')?.id).toBeNull();
});

test('a reader that stops reading is cut once it holds more than --max-backpressure-bytes; the node keeps serving', async () => {
  const topic = '/s6/slow';
  const before = await metric(/^c10m_slow_consumer_closes_total\{.*transport="sse"/);
  const sock = net.connect(server.port, '127.0.0.1');
  await new Promise<void>((resolve) => sock.once('connect', () => resolve()));
  sock.write(`GET /v1/sse?topics=${topic} HTTP/1.1\r\nHost: x\r\n\r\n`);
  let got = '';
  sock.setEncoding('utf8');
  await new Promise<void>((resolve) => {
    const onData = (c: string) => {
      got += c;
      if (got.includes('event: ready')) {
        sock.off('data', onData);
        resolve();
      }
    };
    sock.on('data', onData);
  });
  sock.pause();
  let closed = false;
  sock.on('close', () => (closed = true));
  const big = 'x'.repeat(60_000);
  // At most 64 MB, and stop as soon as the server counted the cut.
  for (let i = 0; i < 1000; i++) {
    await publish(topic, big);
    if (i % 20 === 19 && (await metric(/^c10m_slow_consumer_closes_total\{.*transport="sse"/)) > before) break;
  }
  expect(await metric(/^c10m_slow_consumer_closes_total\{.*transport="sse"/)).toBe(before + 1);
  sock.resume();
  await new Promise<void>((resolve) => (closed ? resolve() : sock.on('close', () => resolve())));
  const r = await sse(`/v1/sse?topics=${topic}`);
  await r.until(() => r.ofType('ready').length === 1, 10_000, 'a new stream after the cut');
});

test('bad input is refused with a clear 4xx, and the node keeps serving', async () => {
  const cases: [string, Record<string, string>, number, string][] = [
    ['/v1/sse?topics=a/b', {}, 400, 'BAD_TOPIC'],
    ['/v1/sse?topics=/a/*', {}, 400, 'BAD_TOPIC'],
    ['/v1/sse?topics=/a,,/b', {}, 400, 'BAD_TOPIC'],
    ['/v1/sse?topics=/a,/a', {}, 400, 'BAD_REQUEST'],
    [
      `/v1/sse?topics=${range(1, 33)
        .map((i) => `/t${i}`)
        .join(',')}`,
      {},
      400,
      'TOO_MANY_SUBSCRIPTIONS',
    ],
    ['/v1/sse?topics=/a&resume=garbage', {}, 400, 'BAD_REQUEST'],
    [`/v1/sse?topics=/a&resume=${encodeResumeId(['/b'], [1], [1])}`, {}, 400, 'BAD_REQUEST'],
    [`/v1/sse?topics=/a,/b&resume=${encodeResumeId(['/a'], [1], [1])}`, {}, 400, 'BAD_REQUEST'],
    ['/v1/sse?topics=/a', { 'last-event-id': 'not an id' }, 400, 'BAD_REQUEST'],
    [`/v1/sse?topics=/a`, { 'last-event-id': encodeResumeId(['/a'], [0], [5]) }, 400, 'BAD_REQUEST'],
  ];
  for (const [path, headers, status, code] of cases) {
    const { answer } = await openSse(server.port, path, headers);
    expect({ path, status: answer.status, code: answer.body?.error?.code }).toEqual({ path, status, code });
    expect(answer.body?.error?.message.length).toBeGreaterThan(10);
  }
  const r = await sse('/v1/sse?topics=/s7/after');
  await r.until(() => r.ofType('ready').length === 1, 10_000, 'a good stream after the bad ones');
  await publish('/s7/after', 1);
  await r.until(() => r.messages().length === 1, 10_000, 'its message');
});

test('metrics count SSE streams and their deliveries under transport="sse"', async () => {
  const r = await sse('/v1/sse?topics=/s8/m');
  await r.until(() => r.ofType('ready').length === 1, 10_000, 'ready');
  const out = await metric(/^c10m_messages_out_total\{.*transport="sse"/);
  await publish('/s8/m', 1);
  await r.until(() => r.messages().length === 1, 10_000, 'a message');
  expect(await metric(/^c10m_sessions\{.*transport="sse"/)).toBeGreaterThanOrEqual(1);
  expect(await metric(/^c10m_subscriptions\{.*transport="sse"/)).toBeGreaterThanOrEqual(1);
  expect(await metric(/^c10m_messages_out_total\{.*transport="sse"/)).toBe(out + 1);
  const sessions = await metric(/^c10m_sessions\{.*transport="sse"/);
  r.cut();
  const deadline = Date.now() + 5000;
  while ((await metric(/^c10m_sessions\{.*transport="sse"/)) !== sessions - 1 && Date.now() < deadline) await new Promise((res) => setTimeout(res, 50));
  expect(await metric(/^c10m_sessions\{.*transport="sse"/)).toBe(sessions - 1);
});

describe('--auth jwt', () => {
  const SECRET = 'test-secret-of-more-than-32-bytes-for-hs256';
  let authServer: TestServer;
  beforeAll(async () => {
    authServer = await startServer(['--workgroups', '2', '--auth', 'jwt', '--jwt-secret', SECRET, '--jwt-clock-skew-seconds', '0']);
  });
  afterAll(async () => {
    await authServer?.stop();
  });
  const sign = (claims: Record<string, unknown>, exp = Math.floor(Date.now() / 1000) + 600) =>
    new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setSubject('u1').setExpirationTime(exp).sign(new TextEncoder().encode(SECRET));

  test('no token, a bad one, an expired one: 401; a topic the token does not allow: 403, or an error entry beside the allowed ones', async () => {
    const port = authServer.port;
    const none = await openSse(port, '/v1/sse?topics=/a');
    expect([none.answer.status, none.answer.body?.error?.code]).toEqual([401, 'UNAUTHORIZED']);
    const bad = await openSse(port, '/v1/sse?topics=/a&token=abc.def.ghi');
    expect([bad.answer.status, bad.answer.body?.error?.code]).toEqual([401, 'UNAUTHORIZED']);
    expect(bad.answer.headers['www-authenticate']).toMatch(/invalid_token/);
    const expired = await openSse(port, `/v1/sse?topics=/a&token=${await sign({ subscribe: ['/a'] }, Math.floor(Date.now() / 1000) - 5)}`);
    expect([expired.answer.status, expired.answer.body?.error?.code]).toEqual([401, 'TOKEN_EXPIRED']);
    const token = await sign({ subscribe: ['/ok/>'] });
    const forbidden = await openSse(port, `/v1/sse?topics=/no&token=${token}`);
    expect([forbidden.answer.status, forbidden.answer.body?.error?.code]).toEqual([403, 'FORBIDDEN']);
    const r = await stream(port, `/v1/sse?topics=/ok/1,/no&token=${token}`);
    open.push(r);
    await r.until(() => r.ofType('ready').length === 1, 10_000, 'ready');
    const ready = r.ofType('ready')[0] as { topics: Record<string, { error?: { code: string } }> };
    expect(ready.topics['/no'].error?.code).toBe('FORBIDDEN');
    expect(ready.topics['/ok/1'].error).toBeUndefined();
    // A bearer header works too.
    const h = await stream(port, '/v1/sse?topics=/ok/2', { authorization: `Bearer ${token}` });
    open.push(h);
    await h.until(() => h.ofType('ready').length === 1, 10_000, 'ready with a bearer header');
  });

  test('a stream whose token expires is ended with event: end TOKEN_EXPIRED', async () => {
    const token = await sign({ subscribe: ['/exp'] }, Math.floor(Date.now() / 1000) + 2);
    const r = await stream(authServer.port, `/v1/sse?topics=/exp&token=${token}`);
    open.push(r);
    await r.until(() => r.ended, 15_000, 'the end of the stream');
    expect(r.ofType('end')).toEqual([{ code: 'TOKEN_EXPIRED', message: expect.any(String) }]);
  });
});

test('a draining node ends its streams with event: end SHUTTING_DOWN', async () => {
  const s = await startServer(['--workgroups', '1', '--drain-timeout-seconds', '2']);
  const r = await stream(s.port, '/v1/sse?topics=/s9/drain');
  await r.until(() => r.ofType('ready').length === 1, 10_000, 'ready');
  const stopped = s.stop();
  await r.until(() => r.ended, 10_000, 'the end of the stream');
  expect(r.ofType('end')).toEqual([{ code: 'SHUTTING_DOWN', message: expect.any(String) }]);
  expect(await stopped).toBe(0);
});
