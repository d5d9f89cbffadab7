// Every kind of bad input gets its documented error reply or close code, the
// server keeps running, and a bystander session on the same server sees nothing of it.
import WebSocket from 'ws';
import { packr } from '../protocol/codec';
import { CloseCode, ErrorCode } from '../protocol/errors';
import { connect, httpPublish, type TestClient } from './helpers/client';
import { startServer, type TestServer } from './helpers/server';

const MAX = 4096;
let server: TestServer;
let bystander: TestClient;
let publisher: TestClient;
let expectedBystanderSeq = 0;
const clients: TestClient[] = [];
async function client(encoding: 'json' | 'msgpack' = 'json') {
  const c = await connect(server.url(), encoding);
  clients.push(c);
  return c;
}

beforeAll(async () => {
  server = await startServer(['--workgroups', '1', '--max-payload-bytes', String(MAX)]);
  bystander = await connect(server.url());
  publisher = await connect(server.url());
  await bystander.sub(['/bystander']);
});
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  // The bystander still gets every message, in order, after each bad input.
  expectedBystanderSeq++;
  await publisher.pub('/bystander', expectedBystanderSeq);
  await bystander.until(() => bystander.deliveries.length === expectedBystanderSeq, 3000, 'bystander delivery');
  expect(bystander.deliveries.map((d) => d.data)).toEqual(Array.from({ length: expectedBystanderSeq }, (_, i) => i + 1));
  expect(bystander.closeCode).toBeNull();
});
afterAll(async () => {
  await bystander.close();
  await publisher.close();
  expect(await server.stop()).toBe(0);
});

async function expectError(c: TestClient, frame: string | Uint8Array, code: string, id: unknown = null) {
  const before = c.unsolicited.length;
  c.sendRaw(frame);
  if (id === null) {
    await c.until(() => c.unsolicited.length > before, 3000, `error ${code}`);
    expect(c.unsolicited[before]).toMatchObject({ id: null, error: { code } });
  } else {
    await c.until(() => c.replies.has(id), 3000, `error ${code}`);
    expect(c.replies.get(id)).toMatchObject({ id, error: { code } });
  }
  // The session stays usable.
  expect((await c.request({ op: 'ping' })).ok).toBe(true);
}

test('malformed JSON gets BAD_JSON', async () => {
  const c = await client();
  await expectError(c, '{"id":1,"op":', ErrorCode.BAD_JSON);
});

test('malformed msgpack gets BAD_MSGPACK', async () => {
  const c = await client('msgpack');
  await expectError(c, new Uint8Array([0xc1, 0xff, 0x00]), ErrorCode.BAD_MSGPACK);
});

test('a command that is not a map gets BAD_REQUEST', async () => {
  const c = await client();
  await expectError(c, '[1,2,3]', ErrorCode.BAD_REQUEST);
  await expectError(c, '"sub"', ErrorCode.BAD_REQUEST);
});

test('unknown op gets UNKNOWN_OP with the id', async () => {
  const c = await client();
  await expectError(c, '{"id":7,"op":"explode"}', ErrorCode.UNKNOWN_OP, 7);
});

test('missing or bad id gets MISSING_ID', async () => {
  const c = await client();
  await expectError(c, '{"op":"ping"}', ErrorCode.MISSING_ID);
  await expectError(c, '{"id":{"a":1},"op":"ping"}', ErrorCode.MISSING_ID);
});

test('wrong types get BAD_REQUEST', async () => {
  const c = await client();
  await expectError(c, '{"id":1,"op":"sub","topics":"/a"}', ErrorCode.BAD_REQUEST, 1);
  await expectError(c, '{"id":2,"op":"sub","topics":[]}', ErrorCode.BAD_REQUEST, 2);
  await expectError(c, '{"id":3,"op":"pub","topic":"/a","data":1,"ack":"yes"}', ErrorCode.BAD_REQUEST, 3);
  await expectError(c, '{"id":4,"op":"sub","topics":["/a"],"resume":{"/a":["x",1]}}', ErrorCode.BAD_REQUEST, 4);
  await expectError(c, '{"id":5,"op":"sub","topics":["/a"],"qos":"best"}', ErrorCode.BAD_REQUEST, 5);
  await expectError(c, '{"id":6,"op":"pub","topic":"/a"}', ErrorCode.BAD_DATA, 6);
});

test('bad topic names get BAD_TOPIC', async () => {
  const c = await client();
  // `/a/*` and `/a/>` are patterns (wildcard.test.ts); wildcards inside a segment or before the end are not.
  const bad = ['a/b', '/', '/a//b', '/a/', '/a b', '/a/*b', '/a/>/b', '/é', '/' + 'x'.repeat(255), 42];
  for (let i = 0; i < bad.length; i++) {
    await expectError(c, JSON.stringify({ id: i, op: 'sub', topics: [bad[i]] }), ErrorCode.BAD_TOPIC, i);
  }
  await expectError(c, JSON.stringify({ id: 'p', op: 'pub', topic: '/a/*', data: 1 }), ErrorCode.BAD_TOPIC, 'p');
});

test('a publish of 0 bytes and of exactly the maximum size are accepted; one byte more is PAYLOAD_TOO_LARGE', async () => {
  const sub = await client();
  await sub.sub(['/size']);
  const c = await client();
  expect((await c.pub('/size', '')).ok).toBe(true); // "" is the empty string: 0 bytes of text
  const exact = 'x'.repeat(MAX - 2); // JSON encoding adds the two quotes
  expect((await c.pub('/size', exact)).ok).toBe(true);
  const over = await c.pub('/size', exact + 'y');
  expect(over.error).toMatchObject({ code: ErrorCode.PAYLOAD_TOO_LARGE });
  await sub.until(() => sub.deliveries.length === 2);
  expect(sub.deliveries.map((d) => (d.data as string).length)).toEqual([0, MAX - 2]);
  // msgpack: exactly MAX bytes of encoded data (bin 16 header is 3 bytes)
  const m = await client('msgpack');
  expect((await m.pub('/size', new Uint8Array(MAX - 3))).ok).toBe(true);
  expect((await m.pub('/size', new Uint8Array(MAX - 2))).error).toMatchObject({ code: ErrorCode.PAYLOAD_TOO_LARGE });
  // HTTP: an empty body is an error, the max size is accepted
  expect((await httpPublish(server.port, '')).status).toBe(400);
  expect((await httpPublish(server.port, { topic: '/size', data: exact })).status).toBe(200);
  expect((await httpPublish(server.port, { topic: '/size', data: exact + 'y' })).body.error).toMatchObject({ code: ErrorCode.PAYLOAD_TOO_LARGE });
  expect((await httpPublish(server.port, { topic: '/size', data: 'x'.repeat(MAX * 4) })).status).toBe(413);
  expect((await httpPublish(server.port, '{not json')).body.error).toMatchObject({ code: ErrorCode.BAD_JSON });
  expect((await httpPublish(server.port, { topic: 'bad', data: 1 })).body.error).toMatchObject({ code: ErrorCode.BAD_TOPIC });
});

test('an oversize frame closes the session with 1009', async () => {
  const c = await client();
  c.sendRaw(JSON.stringify({ id: 1, op: 'pub', topic: '/a', data: 'x'.repeat(MAX * 2) }));
  expect(await c.closed).toBe(CloseCode.MESSAGE_TOO_BIG);
});

test('a binary frame on a JSON session closes with 1003', async () => {
  const c = await client('json');
  c.sendRaw(packr.pack({ id: 1, op: 'ping' }), true);
  expect(await c.closed).toBe(CloseCode.UNSUPPORTED_DATA);
});

test('a text frame on a msgpack session closes with 1003', async () => {
  const c = await client('msgpack');
  c.sendRaw('{"id":1,"op":"ping"}', false);
  expect(await c.closed).toBe(CloseCode.UNSUPPORTED_DATA);
});

test('invalid UTF-8 in a text frame is cut by uWS at the TCP level (1006, documented in PROTOCOL.md)', async () => {
  // ws refuses to send invalid UTF-8 text, so write the frame by hand on the raw socket.
  const c = await client('json');
  const payload = Buffer.from([0x7b, 0xff, 0xfe, 0x7d]);
  const mask = Buffer.from([1, 2, 3, 4]);
  const masked = Buffer.from(payload.map((b, i) => b ^ mask[i % 4]));
  const frame = Buffer.concat([Buffer.from([0x81, 0x80 | payload.length]), mask, masked]);
  (c.ws as unknown as { _socket: import('node:net').Socket })._socket.write(frame);
  const code = await c.closed;
  // uWebSockets.js validates UTF-8 itself and closes without a close frame; it never reaches our handler.
  expect(code).toBe(1006);
});

test('a flood of bad commands closes the session with 1008 and nobody else notices', async () => {
  const c = await client();
  for (let i = 0; i < 150; i++) c.sendRaw('garbage');
  expect(await c.closed).toBe(CloseCode.POLICY_VIOLATION);
});

test('a bad encoding in the URL is refused at upgrade with 400', async () => {
  const ws = new WebSocket(`${server.url()}?encoding=xml`);
  const status = await new Promise<number>((resolve) => ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0)));
  expect(status).toBe(400);
});

test('unknown HTTP routes get 404 with a JSON error', async () => {
  const res = await fetch(`http://127.0.0.1:${server.port}/nope`);
  expect(res.status).toBe(404);
  expect((await res.json()).error.code).toBe(ErrorCode.NOT_FOUND);
});
