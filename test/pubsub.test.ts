import { connect, httpPublish, type TestClient } from './helpers/client';
import { startServer, type TestServer } from './helpers/server';
import { packr, unpackr } from '../protocol/codec';
import { decodeBinaryFrame, isBinaryFrame } from '../protocol/frame';
import { HOLD_MIN_SUBSCRIBERS } from '../workgroups/delivery';

let server: TestServer;
const clients: TestClient[] = [];
async function client(encoding: 'json' | 'msgpack' = 'json') {
  const c = await connect(server.url(), encoding);
  clients.push(c);
  return c;
}

beforeAll(async () => {
  server = await startServer(['--workgroups', '1']);
});
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
});
afterAll(async () => {
  await server.stop();
});

test('a subscriber receives what is published over WebSocket, with epoch, seq and ts', async () => {
  const sub = await client();
  const reply = await sub.sub(['/news/today']);
  expect(reply.ok).toBe(true);
  const state = (reply.topics as Record<string, { epoch: number; seq: number }>)['/news/today'];
  const pub = await client();
  const before = Date.now() * 1000;
  const ack = await pub.pub('/news/today', { headline: 'hello' });
  expect(ack).toMatchObject({ ok: true, epoch: state.epoch, seq: state.seq + 1 });
  await sub.until(() => sub.deliveries.length === 1);
  const d = sub.deliveries[0];
  expect(d).toMatchObject({ topic: '/news/today', epoch: state.epoch, seq: state.seq + 1, data: { headline: 'hello' } });
  expect(d.ts).toBeGreaterThanOrEqual(before - 1000);
  expect(d.ts).toBeLessThanOrEqual(Date.now() * 1000 + 1000);
});

test('publish over HTTP (JSON and msgpack bodies) reaches subscribers and answers epoch and seq', async () => {
  const sub = await client();
  await sub.sub(['/http/t']);
  const r1 = await httpPublish(server.port, { topic: '/http/t', data: [1, 2, 3] });
  expect(r1.status).toBe(200);
  expect(typeof r1.body.epoch).toBe('number');
  const r2 = await httpPublish(server.port, { topic: '/http/t', data: 'packed' }, 'application/msgpack');
  expect(r2.status).toBe(200);
  expect(r2.body.seq).toBe((r1.body.seq as number) + 1);
  await sub.until(() => sub.deliveries.length === 2);
  expect(sub.deliveries.map((d) => d.data)).toEqual([[1, 2, 3], 'packed']);
});

test('msgpack data reaches msgpack subscribers byte for byte, published over WebSocket and over HTTP', async () => {
  const sub = await client('msgpack');
  const payloads: Buffer[] = [];
  sub.ws.on('message', (data: Buffer, isBinary: boolean) => {
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    if (isBinary && isBinaryFrame(bytes)) payloads.push(Buffer.from(decodeBinaryFrame(bytes).payload));
  });
  await sub.sub(['/bytes']);
  // Encodings msgpackr would not choose itself: a float32, an int8 for a small positive number, a
  // str8 for a short string, a map16 with one entry. Decoding and encoding again would change them.
  const data = Buffer.from([0x94, 0xca, 0x3f, 0xc0, 0x00, 0x00, 0xd0, 0x05, 0xd9, 0x02, 0x68, 0x69, 0xde, 0x00, 0x01, 0xa1, 0x6b, 0xc3]);
  expect(unpackr.unpack(data)).toEqual([1.5, 5, 'hi', { k: true }]);
  expect(Buffer.from(packr.pack([1.5, 5, 'hi', { k: true }])).equals(data)).toBe(false);
  // The envelope written by hand around those bytes: {id, op, topic, data} and {topic, data}.
  const str = (t: string) => Buffer.concat([Buffer.from([0xa0 | t.length]), Buffer.from(t)]);
  const ws = Buffer.concat([Buffer.from([0x84]), str('id'), Buffer.from([0x07]), str('op'), str('pub'), str('topic'), str('/bytes'), str('data'), data]);
  const http = Buffer.concat([Buffer.from([0x82]), str('topic'), str('/bytes'), str('data'), data]);
  const pub = await client('msgpack');
  pub.ws.send(ws);
  await sub.until(() => payloads.length === 1);
  const res = await fetch(`http://127.0.0.1:${server.port}/v1/publish`, { method: 'POST', headers: { 'content-type': 'application/msgpack' }, body: http });
  expect(res.status).toBe(200);
  await sub.until(() => payloads.length === 2);
  expect(payloads.map((b) => b.toString('hex'))).toEqual([data.toString('hex'), data.toString('hex')]);
  // And a JSON subscriber of the same messages gets their value.
  const j = await client('json');
  await j.sub(['/bytes']);
  await fetch(`http://127.0.0.1:${server.port}/v1/publish`, { method: 'POST', headers: { 'content-type': 'application/msgpack' }, body: http });
  await j.until(() => j.deliveries.length === 1);
  expect(j.deliveries[0].data).toEqual([1.5, 5, 'hi', { k: true }]);
});

test('JSON and msgpack subscribers on one topic receive the same message', async () => {
  const j = await client('json');
  const m = await client('msgpack');
  await j.sub(['/mixed']);
  await m.sub(['/mixed']);
  const p = await client('msgpack');
  const data = { n: 42, s: 'text', nested: { list: [true, null, 1.5] } };
  await p.pub('/mixed', data);
  await j.until(() => j.deliveries.length === 1);
  await m.until(() => m.deliveries.length === 1);
  expect(j.deliveries[0].data).toEqual(data);
  expect(m.deliveries[0].data).toEqual(data);
  expect(m.deliveries[0].seq).toBe(j.deliveries[0].seq);
  expect(m.deliveries[0].epoch).toBe(j.deliveries[0].epoch);
});

test('many topics: each subscriber gets exactly its own topics, in seq order', async () => {
  const topics = Array.from({ length: 50 }, (_, i) => `/many/t${i}`);
  const subs = await Promise.all(topics.slice(0, 10).map(() => client()));
  await Promise.all(subs.map((s, i) => s.sub(topics.slice(i * 5, i * 5 + 5))));
  const pub = await client();
  for (let round = 0; round < 3; round++) for (const t of topics) pub.send({ id: `${t}-${round}`, op: 'pub', topic: t, data: round });
  await pub.request({ op: 'ping' });
  for (let i = 0; i < subs.length; i++) {
    const s = subs[i];
    await s.until(() => s.deliveries.length === 15, 5000, `15 deliveries for sub ${i}`);
    const mine = topics.slice(i * 5, i * 5 + 5);
    for (const t of mine) {
      const got = s.deliveries.filter((d) => d.topic === t);
      expect(got.map((d) => d.data)).toEqual([0, 1, 2]);
      expect(got.map((d) => d.seq)).toEqual([got[0].seq, got[0].seq + 1, got[0].seq + 2]);
    }
    expect(s.deliveries.every((d) => mine.includes(d.topic))).toBe(true);
  }
});

test('unsubscribe stops delivery', async () => {
  const sub = await client();
  await sub.sub(['/u/a', '/u/b']);
  const pub = await client();
  await pub.pub('/u/a', 1);
  await sub.until(() => sub.deliveries.length === 1);
  expect((await sub.request({ op: 'unsub', topics: ['/u/a'] })).ok).toBe(true);
  await pub.pub('/u/a', 2);
  await pub.pub('/u/b', 3);
  await sub.until(() => sub.deliveries.length === 2);
  await sub.request({ op: 'ping' });
  expect(sub.deliveries.map((d) => [d.topic, d.data])).toEqual([
    ['/u/a', 1],
    ['/u/b', 3],
  ]);
});

test('a publish without ack gets no reply; ping answers', async () => {
  const c = await client();
  c.send({ id: 'quiet', op: 'pub', topic: '/q', data: 1 });
  const pong = await c.request({ op: 'ping' });
  expect(pong.ok).toBe(true);
  expect(typeof pong.ts).toBe('number');
  expect(c.replies.has('quiet')).toBe(false);
});

test("a session's deliveries of publishes it pipelined reach it before the reply to a command sent after them", async () => {
  const s = await client('msgpack');
  await s.sub(['/order/own']);
  // Enough subscribers that the workgroup holds the topic's frames for the end of the turn (HOLD_MIN_SUBSCRIBERS).
  const others = await Promise.all(Array.from({ length: HOLD_MIN_SUBSCRIBERS }, () => client('msgpack')));
  await Promise.all(others.map((o) => o.sub(['/order/own'])));
  let deliveredAtReply = -1;
  s.ws.on('message', () => {
    if (deliveredAtReply < 0 && s.replies.has('after')) deliveredAtReply = s.deliveries.length;
  });
  // One write: the server reads the 100 publishes and the ping in one turn.
  const frames = [...Array.from({ length: 100 }, (_, i) => packr.pack({ id: i, op: 'pub', topic: '/order/own', data: i })), packr.pack({ id: 'after', op: 'ping' })];
  const sock = (s.ws as unknown as { _socket: { cork(): void; uncork(): void } })._socket;
  sock.cork();
  for (const f of frames) s.ws.send(f, { binary: true });
  sock.uncork();
  await s.until(() => s.deliveries.length === 100 && s.replies.has('after'));
  expect(deliveredAtReply).toBe(100);
  expect(s.deliveries.map((d) => d.data)).toEqual(Array.from({ length: 100 }, (_, i) => i));
});
