// What an attacker with a bare TCP socket can send: malformed upgrades,
// illegal WebSocket frames, slowloris, smuggling-prone HTTP, pipelining.
// Each case gets its documented answer (or the connection is cut), and
// afterwards the server is alive and a normal client still connects,
// subscribes and receives a publish.
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { ownerOf } from '../workgroups/topics';
import { connect, httpPublish } from './helpers/client';
import { RawWebSocket } from './helpers/raw-ws';
import { startServer, type TestServer } from './helpers/server';

let server: TestServer;
let healthN = 0;

beforeAll(async () => {
  server = await startServer(['--workgroups', '2']);
});
afterEach(async () => {
  // The server is alive and serves a normal session end to end.
  expect(server.proc.exitCode).toBeNull();
  const topic = `/health/${++healthN}`;
  const c = await connect(server.url());
  try {
    expect((await c.sub([topic])).ok).toBe(true);
    expect((await httpPublish(server.port, { topic, data: healthN })).status).toBe(200);
    await c.until(() => c.deliveries.length === 1, 3000, 'health delivery');
    expect(c.deliveries[0].data).toBe(healthN);
  } finally {
    await c.close();
  }
});
afterAll(async () => {
  expect(await server.stop()).toBe(0);
});

/** A topic whose owner is workgroup `w` of 2. */
function topicOwnedBy(w: number, stem: string): string {
  for (let i = 0; ; i++) if (ownerOf(`/${stem}/${i}`, 2) === w) return `/${stem}/${i}`;
}

interface HttpAnswer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** Splits what the server wrote into HTTP responses (bodies by Content-Length). */
function parseResponses(text: string): HttpAnswer[] {
  const out: HttpAnswer[] = [];
  let rest = text;
  while (rest.length > 0) {
    const end = rest.indexOf('\r\n\r\n');
    if (end < 0) break;
    const lines = rest.slice(0, end).split('\r\n');
    const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(lines[0])?.[1] ?? 0);
    const headers: Record<string, string> = {};
    for (const l of lines.slice(1)) {
      const i = l.indexOf(':');
      headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
    }
    const len = Number(headers['content-length'] ?? 0);
    out.push({ status, headers, body: rest.slice(end + 4, end + 4 + len) });
    rest = rest.slice(end + 4 + len);
  }
  return out;
}

/**
 * Writes chunks (gapMs apart) on one connection; returns what came back once
 * `responses` answers were read, the server closed, or waitMs passed.
 */
function exchange(port: number, chunks: (string | Buffer)[], opts: { gapMs?: number; waitMs?: number; responses?: number } = {}): Promise<{ text: string; answers: HttpAnswer[]; closed: boolean }> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    let text = '';
    let done = false;
    const finish = (closed: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      s.destroy();
      resolve({ text, answers: parseResponses(text), closed });
    };
    const timer = setTimeout(() => finish(false), opts.waitMs ?? 2000);
    s.setEncoding('latin1');
    s.on('data', (d: string) => {
      text += d;
      if (opts.responses !== undefined && parseResponses(text).length >= opts.responses) finish(false);
    });
    s.on('error', () => finish(true));
    s.on('close', () => finish(true));
    s.on('connect', async () => {
      for (const c of chunks) {
        if (done) return;
        s.write(c);
        if (opts.gapMs) await new Promise((r) => setTimeout(r, opts.gapMs));
      }
    });
  });
}

const KEY = () => randomBytes(16).toString('base64');

/** An upgrade request; `headers` replace or (null) remove the defaults. */
function upgradeRequest(headers: Record<string, string | null> = {}, path = '/v1/ws'): string {
  const h: Record<string, string | null> = { Host: '127.0.0.1', Upgrade: 'websocket', Connection: 'Upgrade', 'Sec-WebSocket-Key': KEY(), 'Sec-WebSocket-Version': '13', ...headers };
  return (
    `GET ${path} HTTP/1.1\r\n` +
    Object.entries(h)
      .filter(([, v]) => v !== null)
      .map(([k, v]) => `${k}: ${v}\r\n`)
      .join('') +
    '\r\n'
  );
}

async function upgradeStatus(port: number, headers: Record<string, string | null>): Promise<HttpAnswer> {
  const r = await exchange(port, [upgradeRequest(headers)], { responses: 1 });
  expect(r.answers.length).toBeGreaterThanOrEqual(1);
  return r.answers[0];
}

function post(body: string, headers: Record<string, string>, path = '/v1/publish'): string {
  return (
    `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n` +
    Object.entries(headers)
      .map(([k, v]) => `${k}: ${v}\r\n`)
      .join('') +
    `\r\n${body}`
  );
}
const publishBody = (topic: string, data: unknown) => JSON.stringify({ topic, data });

describe('WebSocket handshake', () => {
  test('a well-formed upgrade gets 101 (case-insensitive Upgrade, Connection token list)', async () => {
    expect((await upgradeStatus(server.port, {})).status).toBe(101);
    expect((await upgradeStatus(server.port, { Upgrade: 'WebSocket', Connection: 'keep-alive, Upgrade' })).status).toBe(101);
  });

  test.each([
    ['no Upgrade header', { Upgrade: null }],
    ['Upgrade: websocket2', { Upgrade: 'websocket2' }],
    ['Upgrade: h2c', { Upgrade: 'h2c' }],
    ['no Connection header', { Connection: null }],
    ['Connection without the upgrade token', { Connection: 'keep-alive' }],
    ['Connection: upgrades (not the token)', { Connection: 'upgrades' }],
    ['Sec-WebSocket-Key not base64', { 'Sec-WebSocket-Key': '!!!!!!!!!!!!!!!!!!!!!!==' }],
    ['Sec-WebSocket-Key of 17 bytes', { 'Sec-WebSocket-Key': 'AAAAAAAAAAAAAAAAAAAAAAA=' }],
    ['no Sec-WebSocket-Version', { 'Sec-WebSocket-Version': null }],
  ])('%s is refused 400', async (_name, headers) => {
    const a = await upgradeStatus(server.port, headers as Record<string, string | null>);
    expect(a.status).toBe(400);
    expect(JSON.parse(a.body).error.code).toBe('BAD_REQUEST');
  });

  test('Sec-WebSocket-Version other than 13 is refused 426 with Sec-WebSocket-Version: 13', async () => {
    for (const v of ['8', '12', '14', '13, 8']) {
      const a = await upgradeStatus(server.port, { 'Sec-WebSocket-Version': v });
      expect(a.status).toBe(426);
      expect(a.headers['sec-websocket-version']).toBe('13');
    }
  });

  test('refused upgrades count in c10m_sessions_rejected_total', async () => {
    const rejected = async () => {
      const text = await (await fetch(server.adminUrl('/metrics'))).text();
      // One line per workgroup: the sum.
      return [...text.matchAll(/^c10m_sessions_rejected_total(?:\{[^}]*\})? (\d+)/gm)].reduce((n, m) => n + Number(m[1]), 0);
    };
    const before = await rejected();
    expect((await upgradeStatus(server.port, { Upgrade: null })).status).toBe(400);
    expect((await upgradeStatus(server.port, { 'Sec-WebSocket-Version': '8' })).status).toBe(426);
    // Stats reach the admin port within a second or so.
    const deadline = Date.now() + 3000;
    while ((await rejected()) < before + 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    expect(await rejected()).toBeGreaterThanOrEqual(before + 2);
  });

  test('a subprotocol the server does not speak is never echoed', async () => {
    const a = await upgradeStatus(server.port, { 'Sec-WebSocket-Protocol': 'chat, superchat' });
    expect(a.status).toBe(101);
    expect(a.headers['sec-websocket-protocol']).toBeUndefined();
  });

  test('an Origin is accepted when no --cors-origins is set', async () => {
    expect((await upgradeStatus(server.port, { Origin: 'https://anywhere.example' })).status).toBe(101);
  });

  test('garbage request lines get no 101 and no crash', async () => {
    for (const line of ['HELLO WORLD\r\n\r\n', 'GET\r\n\r\n', '\x00\x01\x02\xff\r\n\r\n', 'GET /v1/ws HTTP/9.9\r\nHost: x\r\n\r\n', `GET /${'a'.repeat(70_000)} HTTP/1.1\r\n\r\n`]) {
      const r = await exchange(server.port, [line], { waitMs: 500 });
      expect(r.text).not.toMatch(/^HTTP\/1\.1 101/);
    }
  });

  test('huge headers get no 101 and no crash', async () => {
    const big = upgradeRequest({ 'X-Big': 'b'.repeat(256 * 1024) });
    const r = await exchange(server.port, [big], { waitMs: 1500 });
    expect(r.text).not.toMatch(/^HTTP\/1\.1 101/);
    const many = upgradeRequest(Object.fromEntries(Array.from({ length: 2000 }, (_, i) => [`X-H${i}`, 'v'])));
    const r2 = await exchange(server.port, [many], { waitMs: 1500 });
    expect(r2.text).not.toMatch(/^HTTP\/1\.1 101/);
  });
});

describe('illegal WebSocket frames are cut', () => {
  /** A client frame: masked unless told otherwise. */
  function frame(b0: number, payload: Buffer, opts: { masked?: boolean; len64?: bigint } = {}): Buffer {
    const masked = opts.masked ?? true;
    let head: Buffer;
    if (opts.len64 !== undefined) {
      head = Buffer.alloc(10);
      head[0] = b0;
      head[1] = (masked ? 0x80 : 0) | 127;
      head.writeBigUInt64BE(opts.len64, 2);
    } else if (payload.length < 126) {
      head = Buffer.from([b0, (masked ? 0x80 : 0) | payload.length]);
    } else {
      head = Buffer.alloc(4);
      head[0] = b0;
      head[1] = (masked ? 0x80 : 0) | 126;
      head.writeUInt16BE(payload.length, 2);
    }
    if (!masked) return Buffer.concat([head, payload]);
    const mask = randomBytes(4);
    const p = Buffer.from(payload);
    for (let i = 0; i < p.length; i++) p[i] ^= mask[i & 3];
    return Buffer.concat([head, mask, p]);
  }
  const ping = Buffer.from('{"id":1,"op":"ping"}');

  async function expectCut(bytes: Buffer) {
    const ws = await RawWebSocket.open(server.port, '/v1/ws');
    ws.socket.write(bytes);
    await ws.until(() => ws.closed, 3000, 'the server to cut the connection');
    expect(ws.messages.length).toBe(0);
  }

  test.each([3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf])('reserved opcode %i', async (op) => {
    await expectCut(frame(0x80 | op, ping));
  });
  test.each([0x40, 0x20, 0x10])('RSV bit 0x%s set', async (rsv) => {
    await expectCut(frame(0x81 | rsv, ping));
  });
  test('an unmasked client frame is never taken as a command', async () => {
    // uWS v20.30 does not check the MASK bit: it takes the first 4 payload bytes as the key and
    // waits for 4 more. Padded so that the frame completes: it must not be read as our ping.
    const ws = await RawWebSocket.open(server.port, '/v1/ws');
    ws.socket.write(Buffer.concat([frame(0x81, ping, { masked: false }), Buffer.from('    ')]));
    await new Promise((r) => setTimeout(r, 500));
    expect(ws.messages.filter((m) => m.ok === true)).toEqual([]);
    ws.destroy();
  });
  test('a fragmented ping (FIN=0)', async () => {
    await expectCut(frame(0x09, Buffer.from('x')));
  });
  test('a control frame with a payload over 125 bytes', async () => {
    await expectCut(frame(0x89, Buffer.alloc(126, 0x61)));
  });
  test.each([2n ** 63n, 2n ** 64n - 1n])('a 64-bit length of %s', async (len) => {
    await expectCut(frame(0x81, Buffer.alloc(0), { len64: len }));
  });
});

describe('slowloris', () => {
  test('1,000 sockets dribbling an upgrade header do not stop a normal session', async () => {
    const SOCKETS = 1000;
    const DURATION_MS = 3000;
    const request = upgradeRequest();
    const sockets: net.Socket[] = [];
    let pos = 0;
    const start = Date.now();
    try {
      for (let i = 0; i < SOCKETS; i++) {
        const s = net.connect(server.port, '127.0.0.1');
        s.on('error', () => {});
        sockets.push(s);
      }
      // One byte per socket every 100 ms, for DURATION_MS (bounded: 30 rounds).
      const dribble = setInterval(() => {
        if (pos >= request.length - 4) return;
        const b = request[pos++];
        for (const s of sockets) if (!s.destroyed) s.write(b);
      }, 100);
      try {
        await new Promise((r) => setTimeout(r, 500));
        // Meanwhile a normal session works.
        const c = await connect(server.url());
        const topic = '/slowloris/bystander';
        expect((await c.sub([topic])).ok).toBe(true);
        expect((await httpPublish(server.port, { topic, data: 1 })).status).toBe(200);
        await c.until(() => c.deliveries.length === 1, 3000, 'delivery during slowloris');
        await c.close();
        while (Date.now() - start < DURATION_MS) await new Promise((r) => setTimeout(r, 100));
      } finally {
        clearInterval(dribble);
      }
      expect(server.proc.exitCode).toBeNull();
    } finally {
      for (const s of sockets) s.destroy();
    }
  }, 20_000);

  // uWebSockets gives a connection 10 s (HTTP_IDLE_TIMEOUT_S, checked on a 4 s tick: 8 to 12 s) to complete a
  // request; bytes that do not complete it do not reset the timer, and a header past 4 KiB is cut at once.
  test('a request never completed is cut within 15 s whatever it trickles (header, body, or nothing); a header past 4 KiB at once', async () => {
    /** Connects, writes `head`, then one byte of `drip` every 300 ms; resolves with the ms until the server closed (null: still open at 16 s). */
    const timeToCut = (head: string, drip: string): Promise<{ ms: number | null; answer: string }> =>
      new Promise((resolve) => {
        const s = net.connect(server.port, '127.0.0.1');
        const start = Date.now();
        let answer = '';
        let i = 0;
        const tick = setInterval(() => {
          if (drip !== '' && !s.destroyed) s.write(drip[i++ % drip.length]);
        }, 300);
        const giveUp = setTimeout(() => finish(null), 16_000);
        function finish(ms: number | null) {
          clearInterval(tick);
          clearTimeout(giveUp);
          s.destroy();
          resolve({ ms, answer });
        }
        s.setEncoding('latin1');
        s.on('data', (d: string) => (answer += d));
        s.on('error', () => {});
        s.on('close', () => finish(Date.now() - start));
        s.on('connect', () => s.write(head));
      });
    const upgrade = upgradeRequest();
    const [header, silent, body, big] = await Promise.all([
      // An upgrade request one byte at a time (never reaching its end).
      timeToCut('', upgrade.slice(0, -2) + 'X-Pad: ' + 'a'.repeat(1000)),
      timeToCut('', ''),
      // A publish whose body never arrives in full.
      timeToCut(`POST /v1/publish HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"topic":"/slow","data":"`, 'a'),
      timeToCut(upgrade.slice(0, -2) + 'X-Big: ' + 'b'.repeat(5000), ''),
    ]);
    console.log(`cut after: trickled header ${header.ms} ms, silent ${silent.ms} ms, trickled body ${body.ms} ms, 5 KB header ${big.ms} ms`);
    for (const r of [header, silent, body]) {
      expect(r.ms).not.toBeNull();
      expect(r.ms).toBeGreaterThan(5000);
      expect(r.ms).toBeLessThan(15_000);
      expect(r.answer).toBe('');
    }
    expect(big.ms).not.toBeNull();
    expect(big.ms).toBeLessThan(2000);
    expect(big.answer).not.toMatch(/^HTTP\/1\.1 101/);
  }, 20_000);
});

describe('HTTP publish', () => {
  test('two different Content-Length headers are refused 400', async () => {
    const body = publishBody('/dup/cl', 1);
    const r = await exchange(server.port, [post(body, { 'Content-Type': 'application/json', 'Content-Length': String(body.length), 'content-length': '1' })], { responses: 1 });
    expect(r.answers[0]?.status).toBe(400);
  });

  test('Content-Length with Transfer-Encoding is refused (no 2xx)', async () => {
    const body = publishBody('/dup/te', 1);
    const chunked = `${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`;
    const r = await exchange(server.port, [post(chunked, { 'Content-Type': 'application/json', 'Content-Length': String(chunked.length), 'Transfer-Encoding': 'chunked' })], { responses: 1 });
    // uWS's parser drops this request before routing (the connection is closed); never a 2xx.
    for (const a of r.answers) expect(a.status).toBeGreaterThanOrEqual(400);
  });

  test.each(['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/jsonx', ''])('content type "%s" is refused 415', async (ct) => {
    const body = publishBody('/ct/x', 1);
    const headers: Record<string, string> = { 'Content-Length': String(body.length) };
    if (ct !== '') headers['Content-Type'] = ct;
    const r = await exchange(server.port, [post(body, headers)], { responses: 1 });
    expect(r.answers[0]?.status).toBe(415);
    const err = JSON.parse(r.answers[0].body).error;
    expect(err.code).toBe('UNSUPPORTED_MEDIA_TYPE');
    expect(err.message).toContain('application/json');
    expect(err.message).toContain('application/msgpack');
  });

  test('application/json; charset=utf-8 is accepted', async () => {
    const body = publishBody('/ct/ok', 1);
    const r = await exchange(server.port, [post(body, { 'Content-Type': 'Application/JSON; charset=utf-8', 'Content-Length': String(body.length) })], { responses: 1 });
    expect(r.answers[0]?.status).toBe(200);
  });

  test('an Origin is refused 403 when no --cors-origins is set, without CORS headers', async () => {
    const body = publishBody('/cors/none', 1);
    const r = await exchange(server.port, [post(body, { 'Content-Type': 'application/json', 'Content-Length': String(body.length), Origin: 'https://evil.example' })], { responses: 1 });
    expect(r.answers[0]?.status).toBe(403);
    expect(r.answers[0].headers['access-control-allow-origin']).toBeUndefined();
    const ok = await exchange(server.port, [post(body, { 'Content-Type': 'application/json', 'Content-Length': String(body.length) })], { responses: 1 });
    expect(ok.answers[0]?.status).toBe(200);
    expect(ok.answers[0].headers['access-control-allow-origin']).toBeUndefined();
  });

  describe.each([
    ['in one write', 0],
    ['in separate writes', 5],
  ])('pipelining %s', (_name, gapMs) => {
    test('3 publishes to topics of both owners are all answered, in order', async () => {
      const t0 = topicOwnedBy(0, `pipe${gapMs}`);
      const t1 = topicOwnedBy(1, `pipe${gapMs}`);
      const sub = await connect(server.url());
      try {
        expect((await sub.sub([t0, t1])).ok).toBe(true);
        const topics = [t0, t1, t0];
        const reqs = topics.map((t, i) => {
          const body = publishBody(t, i);
          return post(body, { 'Content-Type': 'application/json', 'Content-Length': String(body.length) });
        });
        const r = await exchange(server.port, gapMs === 0 ? [reqs.join('')] : reqs, { gapMs, responses: 3, waitMs: 5000 });
        expect(r.answers.map((a) => a.status)).toEqual([200, 200, 200]);
        const acks = r.answers.map((a) => JSON.parse(a.body) as { epoch: number; seq: number });
        // Answers in request order: the two publishes to t0 have consecutive seqs.
        expect(acks[2].seq).toBe(acks[0].seq + 1);
        expect(acks[1].seq).toBe(1);
        await sub.until(() => sub.deliveries.length === 3, 3000, 'the three deliveries');
        expect(sub.deliveries.map((d) => [d.topic, d.data, d.seq])).toEqual(
          expect.arrayContaining([
            [t0, 0, acks[0].seq],
            [t1, 1, acks[1].seq],
            [t0, 2, acks[2].seq],
          ]),
        );
      } finally {
        await sub.close();
      }
    });
  });
});

describe('CORS (--cors-origins)', () => {
  let cors: TestServer;
  const GOOD = 'https://good.example';
  beforeAll(async () => {
    cors = await startServer(['--workgroups', '2', '--cors-origins', `${GOOD},http://localhost:3000`]);
  });
  afterAll(async () => {
    expect(await cors?.stop()).toBe(0);
  });

  const preflight = (origin: string) =>
    `OPTIONS /v1/publish HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: ${origin}\r\nAccess-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type\r\n\r\n`;

  test('a preflight from an allowed origin is answered', async () => {
    const r = await exchange(cors.port, [preflight(GOOD)], { responses: 1 });
    const a = r.answers[0];
    expect(a.status).toBe(204);
    expect(a.headers['access-control-allow-origin']).toBe(GOOD);
    expect(a.headers['access-control-allow-methods']).toBe('POST');
    expect(a.headers['access-control-allow-headers']).toMatch(/content-type/);
    expect(a.headers['access-control-allow-headers']).toMatch(/authorization/);
    expect(Number(a.headers['access-control-max-age'])).toBeGreaterThan(0);
    expect(a.headers.vary).toMatch(/Origin/);
  });

  test('a preflight from another origin is refused 403', async () => {
    const r = await exchange(cors.port, [preflight('https://evil.example')], { responses: 1 });
    expect(r.answers[0].status).toBe(403);
    expect(r.answers[0].headers['access-control-allow-origin']).toBeUndefined();
  });

  test('a publish from an allowed origin carries Access-Control-Allow-Origin; another origin gets 403', async () => {
    const body = publishBody('/cors/a', 1);
    const h = { 'Content-Type': 'application/json', 'Content-Length': String(body.length) };
    const ok = await exchange(cors.port, [post(body, { ...h, Origin: GOOD })], { responses: 1 });
    expect(ok.answers[0].status).toBe(200);
    expect(ok.answers[0].headers['access-control-allow-origin']).toBe(GOOD);
    expect(ok.answers[0].headers.vary).toMatch(/Origin/);
    const bad = await exchange(cors.port, [post(body, { ...h, Origin: 'https://evil.example' })], { responses: 1 });
    expect(bad.answers[0].status).toBe(403);
    // Errors to an allowed origin carry the header too, so that the page can read them.
    const err = await exchange(cors.port, [post('{', { ...h, 'Content-Length': '1', Origin: GOOD })], { responses: 1 });
    expect(err.answers[0].status).toBe(400);
    expect(err.answers[0].headers['access-control-allow-origin']).toBe(GOOD);
  });

  test('an upgrade from a disallowed Origin is refused 403; allowed or no Origin gets 101', async () => {
    expect((await upgradeStatus(cors.port, { Origin: 'https://evil.example' })).status).toBe(403);
    expect((await upgradeStatus(cors.port, { Origin: GOOD })).status).toBe(101);
    expect((await upgradeStatus(cors.port, { Origin: null })).status).toBe(101);
  });
});
