// A publish is accepted only if its data can be delivered in both encodings
// (protocol/PROTOCOL.md, "Data both encodings carry"), checked once at the
// publish on every way in: WebSocket JSON, WebSocket msgpack (fast path and
// general path), HTTP JSON and HTTP msgpack. A refused publish reaches no
// subscriber, no snapshot and no replay: the topic's subscribers of both
// encodings keep getting the good messages, and the node stays up.
import { packr, unpackr } from '../protocol/codec';
import { decodeBinaryFrame, isBinaryFrame } from '../protocol/frame';
import { connect, type TestClient } from './helpers/client';
import { startServer, type TestServer } from './helpers/server';
import { connectIn } from './helpers/workgroups';

let server: TestServer;
let jsonSub: TestClient;
let msgpackSub: TestClient;
let jsonPub: TestClient;
let msgpackPub: TestClient;
/** Binary payloads (the data bytes) msgpackSub got, per topic, in order. */
const rawPayloads = new Map<string, Buffer[]>();
/** The good data published per topic, in order (what every subscriber must see). */
const good = new Map<string, unknown[]>();
const topics = ['/d/int', '/d/deep', '/d/ext', '/d/float', '/d/keys', '/d/fields'];

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const U64_2_60 = hex('cf 10 00 00 00 00 00 00 00');
const U64_2_40 = hex('cf 00 00 01 00 00 00 00 00');
const I64_MINUS_2_60 = hex('d3 f0 00 00 00 00 00 00 00');
const EXT5 = hex('d4 05 00');
const TIMESTAMP_1S = hex('d6 ff 00 00 00 01');
const NAN64 = hex('cb 7f f8 00 00 00 00 00 00');
const INF32 = hex('ca 7f 80 00 00');
const ARRAY_KEY = hex('81 92 01 02 01'); // {[1,2]: 1}
const INT_KEY = hex('81 01 a1 61'); // {1: "a"}

/** A msgpack pub frame with `data` as the given bytes; `general` adds a non-scalar field, which sends it down the general path. */
function pubFrame(id: number, topic: string, data: Uint8Array, general = false, retain = false): Buffer {
  const fields: Buffer[] = [];
  const put = (k: string, v: unknown) => fields.push(Buffer.from(packr.pack(k)), Buffer.from(packr.pack(v)));
  put('id', id);
  put('op', 'pub');
  put('topic', topic);
  put('ack', true);
  if (retain) put('retain', true);
  if (general) put('meta', [1, { a: 2 }]);
  fields.push(Buffer.from(packr.pack('data')), Buffer.from(data));
  const n = fields.length / 2;
  return Buffer.concat([Buffer.from([0x80 | n]), ...fields]);
}

function httpBody(topic: string, data: Uint8Array): Buffer {
  return Buffer.concat([hex('82'), Buffer.from(packr.pack('topic')), Buffer.from(packr.pack(topic)), Buffer.from(packr.pack('data')), Buffer.from(data)]);
}

async function post(body: string | Uint8Array, contentType: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`http://127.0.0.1:${server.port}/v1/publish`, { method: 'POST', headers: { 'content-type': contentType }, body });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : {} };
}

let nextId = 1000;
async function msgpackPubRaw(topic: string, data: Uint8Array, general = false, retain = false): Promise<Record<string, unknown>> {
  const id = nextId++;
  msgpackPub.sendRaw(pubFrame(id, topic, data, general, retain));
  await msgpackPub.until(() => msgpackPub.replies.has(id), 5000, `reply ${id}`);
  return msgpackPub.replies.get(id) as Record<string, unknown>;
}

async function jsonPubText(topic: string, dataText: string, extra = ''): Promise<Record<string, unknown>> {
  const id = nextId++;
  jsonPub.sendRaw(`{"id":${id},"op":"pub","topic":"${topic}","ack":true${extra},"data":${dataText}}`);
  await jsonPub.until(() => jsonPub.replies.has(id), 5000, `reply ${id}`);
  return jsonPub.replies.get(id) as Record<string, unknown>;
}

function expectRefused(reply: Record<string, unknown>, message: RegExp) {
  expect(reply).toMatchObject({ error: { code: 'BAD_DATA' } });
  expect((reply.error as { message: string }).message).toMatch(message);
}

/** A good publish after the refused ones: both subscribers get it, and nothing else arrived in between. */
async function expectTopicStillWorks(topic: string) {
  const list = good.get(topic) ?? [];
  const value = { after: list.length, topic };
  list.push(value);
  good.set(topic, list);
  expect(await jsonPub.pub(topic, value, { retain: true })).toMatchObject({ ok: true });
  for (const c of [jsonSub, msgpackSub]) {
    await c.until(() => c.deliveries.filter((d) => d.topic === topic).length >= list.length, 5000, `${c.encoding} delivery on ${topic}`);
    expect(c.deliveries.filter((d) => d.topic === topic).map((d) => d.data)).toEqual(expected(topic, c.encoding));
  }
}

/** The good data of a topic as a subscriber of that encoding decodes it (JSON has no dates: ISO strings). */
function expected(topic: string, encoding: 'json' | 'msgpack'): unknown[] {
  return (good.get(topic) ?? []).map((v) => (v instanceof Date && encoding === 'json' ? v.toISOString() : v));
}

/** Records a good publish made by the test itself (not by expectTopicStillWorks). */
function recordGood(topic: string, value: unknown) {
  const list = good.get(topic) ?? [];
  list.push(value);
  good.set(topic, list);
}

beforeAll(async () => {
  server = await startServer(['--workgroups', '2']);
  // Subscribers and publishers in both workgroups: deliveries cross the rings both ways.
  jsonSub = (await connectIn(server, 0, 'json')).client;
  msgpackSub = (await connectIn(server, 1, 'msgpack')).client;
  jsonPub = (await connectIn(server, 1, 'json')).client;
  msgpackPub = (await connectIn(server, 0, 'msgpack')).client;
  msgpackSub.ws.on('message', (data: Buffer, isBinary: boolean) => {
    if (!isBinary || !isBinaryFrame(data)) return;
    const f = decodeBinaryFrame(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    const list = rawPayloads.get(f.topic) ?? [];
    list.push(Buffer.from(f.payload));
    rawPayloads.set(f.topic, list);
  });
  await jsonSub.sub(topics);
  await msgpackSub.sub(topics);
}, 20000);

afterAll(async () => {
  for (const c of [jsonSub, msgpackSub, jsonPub, msgpackPub]) await c?.close();
  expect(await server.stop()).toBe(0);
});

test('64-bit integers: 2^60 and -2^60 refused on every way in, 2^40 delivered as a number and byte for byte', async () => {
  const topic = '/d/int';
  expectRefused(await msgpackPubRaw(topic, U64_2_60), /integer 1152921504606846976 is outside ±2\^53−1/);
  expectRefused(await msgpackPubRaw(topic, U64_2_60, true), /outside ±2\^53−1/);
  expectRefused(await msgpackPubRaw(topic, I64_MINUS_2_60, false, true), /integer -1152921504606846976 is outside/);
  const http = await post(httpBody(topic, U64_2_60), 'application/msgpack');
  expect(http.status).toBe(400);
  expect(http.body).toMatchObject({ error: { code: 'BAD_DATA' } });
  await expectTopicStillWorks(topic);

  // Within range, any width: uint64 on the fast path, then the general path.
  expect(await msgpackPubRaw(topic, U64_2_40)).toMatchObject({ ok: true });
  recordGood(topic, 2 ** 40);
  expect(await msgpackPubRaw(topic, U64_2_40, true)).toMatchObject({ ok: true });
  recordGood(topic, 2 ** 40);
  await jsonSub.until(() => jsonSub.deliveries.filter((d) => d.topic === topic).length === 3, 5000, 'json 2^40');
  await msgpackSub.until(() => (rawPayloads.get(topic) ?? []).length === 3, 5000, 'msgpack 2^40');
  expect(
    jsonSub.deliveries
      .filter((d) => d.topic === topic)
      .slice(1)
      .map((d) => d.data),
  ).toEqual([2 ** 40, 2 ** 40]);
  expect((rawPayloads.get(topic) as Buffer[])[1].equals(U64_2_40)).toBe(true);
  expect((rawPayloads.get(topic) as Buffer[])[2].equals(U64_2_40)).toBe(true);
  await expectTopicStillWorks(topic);
});

test('nesting: 65 and 5,000 (and 30,000) levels refused over WebSocket JSON and HTTP JSON; 64 delivered to msgpack subscribers', async () => {
  const topic = '/d/deep';
  const nest = (n: number) => '['.repeat(n) + '1' + ']'.repeat(n);
  for (const n of [65, 5000, 30000]) {
    expectRefused(await jsonPubText(topic, nest(n), ',"retain":true'), /nested more than 64 levels/);
    const http = await post(`{"topic":"${topic}","data":${nest(n)}}`, 'application/json');
    expect({ n, status: http.status, body: http.body }).toMatchObject({ n, status: 400, body: { error: { code: 'BAD_DATA' } } });
  }
  // msgpack too, fast and general path.
  let deep: unknown = 1;
  for (let i = 0; i < 65; i++) deep = [deep];
  expectRefused(await msgpackPubRaw(topic, packr.pack(deep)), /nested more than 64/);
  expectRefused(await msgpackPubRaw(topic, packr.pack(deep), true), /nested more than 64/);
  // 60,000 unbalanced '[' (the most a frame holds) is not JSON, and says so; 100,000 is over the frame limit (1009).
  jsonPub.sendRaw(`{"id":1,"op":"pub","topic":"${topic}","data":${'['.repeat(60_000)}`);
  await jsonPub.until(() => jsonPub.unsolicited.some((m) => (m.error as { code?: string })?.code === 'BAD_JSON'), 5000, 'BAD_JSON');
  const http = await post(`{"topic":"${topic}","data":${'['.repeat(60_000)}`, 'application/json');
  expect(http).toMatchObject({ status: 400, body: { error: { code: 'BAD_JSON' } } });
  await expectTopicStillWorks(topic);

  expect(await jsonPubText(topic, nest(64))).toMatchObject({ ok: true });
  deep = 1;
  for (let i = 0; i < 64; i++) deep = [deep];
  recordGood(topic, deep);
  await msgpackSub.until(() => msgpackSub.deliveries.filter((d) => d.topic === topic).length === 2, 5000, 'msgpack 64 deep');
  expect(msgpackSub.deliveries.filter((d) => d.topic === topic)[1].data).toEqual(deep);
  await expectTopicStillWorks(topic);
});

test('extensions: type 5 refused, the timestamp delivered (JSON: ISO string; msgpack: the bytes)', async () => {
  const topic = '/d/ext';
  expectRefused(await msgpackPubRaw(topic, EXT5), /extension of type 5/);
  expectRefused(await msgpackPubRaw(topic, EXT5, true), /extension of type 5/);
  expectRefused(await msgpackPubRaw(topic, hex('d4 ff 00')), /timestamp extension of 1 bytes/);
  expectRefused(await msgpackPubRaw(topic, hex('c7 0c ff 00 00 00 00 7f ff ff ff ff ff ff ff')), /outside the range of a date/);
  const http = await post(httpBody(topic, EXT5), 'application/msgpack');
  expect(http.status).toBe(400);
  expect(http.body).toMatchObject({ error: { code: 'BAD_DATA' } });
  await expectTopicStillWorks(topic);

  expect(await msgpackPubRaw(topic, TIMESTAMP_1S)).toMatchObject({ ok: true });
  recordGood(topic, new Date(1000));
  await jsonSub.until(() => jsonSub.deliveries.filter((d) => d.topic === topic).length === 2, 5000, 'json timestamp');
  expect(jsonSub.deliveries.filter((d) => d.topic === topic)[1].data).toBe('1970-01-01T00:00:01.000Z');
  await msgpackSub.until(() => (rawPayloads.get(topic) ?? []).length === 2, 5000, 'msgpack timestamp');
  expect((rawPayloads.get(topic) as Buffer[])[1].equals(TIMESTAMP_1S)).toBe(true);
  await expectTopicStillWorks(topic);
});

test('NaN and Infinity refused: msgpack float64/float32 and JSON 1e400', async () => {
  const topic = '/d/float';
  expectRefused(await msgpackPubRaw(topic, NAN64), /NaN or Infinity/);
  expectRefused(await msgpackPubRaw(topic, INF32, true), /NaN or Infinity/);
  expectRefused(await msgpackPubRaw(topic, packr.pack({ a: [1, NaN] }), false, true), /NaN or Infinity/);
  expectRefused(await jsonPubText(topic, '{"x":1e400}'), /NaN or Infinity/);
  const http = await post(httpBody(topic, NAN64), 'application/msgpack');
  expect(http.body).toMatchObject({ error: { code: 'BAD_DATA' } });
  await expectTopicStillWorks(topic);
});

test('map keys: integers and strings accepted, arrays refused', async () => {
  const topic = '/d/keys';
  expectRefused(await msgpackPubRaw(topic, ARRAY_KEY), /map key/);
  expectRefused(await msgpackPubRaw(topic, hex('81 c3 01'), true), /map key/); // {true: 1}: msgpackr would make it "true"
  await expectTopicStillWorks(topic);
  expect(await msgpackPubRaw(topic, INT_KEY)).toMatchObject({ ok: true });
  recordGood(topic, { 1: 'a' });
  await expectTopicStillWorks(topic);
});

test('HTTP and WebSocket take the same fields: retain and ts may be null on both', async () => {
  const topic = '/d/fields';
  const http = await post(JSON.stringify({ topic, data: 'h', retain: null, ts: null }), 'application/json');
  expect(http).toMatchObject({ status: 200, body: { seq: 1 } });
  recordGood(topic, 'h');
  expect(await jsonPubText(topic, '"w"', ',"retain":null,"ts":null')).toMatchObject({ ok: true });
  recordGood(topic, 'w');
  const bad = await post(JSON.stringify({ topic, data: 'x', retain: 1 }), 'application/json');
  expect(bad).toMatchObject({ status: 400, body: { error: { code: 'BAD_REQUEST' } } });
  await expectTopicStillWorks(topic);
});

test('fresh subscribers (resume from seq 0, and the snapshot) get only good messages; every workgroup answers', async () => {
  for (const encoding of ['json', 'msgpack'] as const) {
    const c = await connect(server.url(), encoding);
    const probe = await c.sub(topics);
    const resume: Record<string, [number, number]> = {};
    for (const t of topics) resume[t] = [(probe.topics as Record<string, { epoch: number }>)[t].epoch, 0];
    await c.request({ op: 'unsub', topics });
    const before = c.deliveries.length;
    const reply = await c.sub(topics, { resume });
    for (const t of topics) {
      expect({ t, r: (reply.topics as Record<string, unknown>)[t] }).toMatchObject({ t, r: { recovered: true } });
      const replayed = c.deliveries
        .slice(before)
        .filter((d) => d.topic === t && d.replay)
        .map((d) => d.data);
      expect({ t, replayed }).toEqual({ t, replayed: expected(t, encoding) });
    }
    // The snapshot of every topic is its last good retained publish.
    const snap = await connect(server.url(), encoding);
    await snap.sub(topics, { qos: 'standard' });
    for (const t of topics) {
      const s = snap.deliveries.filter((d) => d.topic === t && d.snapshot);
      expect({ t, encoding, snapshots: s.length }).toEqual({ t, encoding, snapshots: 1 });
      const lastRetained = [...(good.get(t) as unknown[])].reverse().find((v) => typeof v === 'object' && v !== null && 'after' in v);
      expect({ t, snapshot: s[0].data }).toEqual({ t, snapshot: lastRetained });
    }
    await snap.close();
    await c.close();
  }
  expect(server.proc.exitCode).toBeNull();
  for (const w of [0, 1]) {
    for (const encoding of ['json', 'msgpack'] as const) {
      const { client, wg } = await connectIn(server, w, encoding);
      expect(wg).toBe(w);
      expect(await client.request({ op: 'ping' })).toMatchObject({ ok: true, wg: w });
      await client.close();
    }
  }
  for (const c of [jsonSub, msgpackSub, jsonPub, msgpackPub]) expect(c.closeCode).toBeNull();
  // msgpackr still decodes every payload the msgpack subscriber got.
  for (const list of rawPayloads.values()) for (const b of list) expect(() => unpackr.unpack(b)).not.toThrow();
}, 30000);
