// POST /v1/publish under --auth jwt: a JWT's publish claim or an API key of
// --api-keys-file must cover the topic (401 without a valid credential, 403
// outside it), in JSON and msgpack, from fetch, a raw socket and the SDK's
// HTTP publisher; a bad keys file stops the start (exit 2); --auth none
// still publishes without a header.
import { generateKeyPairSync } from 'node:crypto';
import net from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { SignJWT } from 'jose';
import { packr } from '../protocol/codec';
import { C10mError } from '../sdk/errors';
import { HttpPublisher } from '../sdk/http-publisher';
import { connect } from './helpers/client';
import { runCli, startServer, type TestServer } from './helpers/server';

const SECRET = 'test-secret-of-more-than-32-bytes-for-hs256';
const BILLING_KEY = 'billing-key-0123456789abcdefghijklmnopqrstuv';
const FEEDS_KEY = 'feeds-key-0123456789abcdefghijklmnopqrstuvwxyz';

// ES256 (--jwt-public-key-file): jose verifies it on the thread pool, so a token seen first is answered from a later turn.
const ecKeys = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
let dir: string;
let server: TestServer;
let tokenN = 0;

async function sign(claims: Record<string, unknown>, opts: { sub?: string; exp?: number; secret?: string } = {}): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  // jti: every token distinct, so that "first seen" really is (the server caches verified tokens).
  let jwt = new SignJWT({ ...claims, jti: `t${++tokenN}` }).setProtectedHeader({ alg: 'HS256' }).setIssuedAt(now);
  if (opts.sub !== undefined) jwt = jwt.setSubject(opts.sub);
  jwt = jwt.setExpirationTime(opts.exp ?? now + 600);
  return jwt.sign(new TextEncoder().encode(opts.secret ?? SECRET));
}

async function signEs256(claims: Record<string, unknown>): Promise<string> {
  return new SignJWT({ ...claims, jti: `t${++tokenN}` }).setProtectedHeader({ alg: 'ES256' }).setExpirationTime('10m').sign(ecKeys.privateKey);
}

interface Answer {
  status: number;
  body: { epoch?: number; seq?: number; error?: { code: string; message: string } };
  wwwAuthenticate: string | null;
}

async function publish(body: unknown, authorization: string | null, contentType = 'application/json'): Promise<Answer> {
  const headers: Record<string, string> = { 'content-type': contentType };
  if (authorization !== null) headers.authorization = authorization;
  const payload = contentType === 'application/json' ? JSON.stringify(body) : packr.pack(body);
  const res = await fetch(`http://127.0.0.1:${server.port}/v1/publish`, { method: 'POST', headers, body: payload });
  return { status: res.status, body: (await res.json()) as Answer['body'], wwwAuthenticate: res.headers.get('www-authenticate') };
}

function expectOk(a: Answer): void {
  expect({ status: a.status, error: a.body.error }).toEqual({ status: 200, error: undefined });
  expect(typeof a.body.seq).toBe('number');
  expect(typeof a.body.epoch).toBe('number');
}

function expectRefused(a: Answer, status: number, code: string): void {
  expect({ status: a.status, code: a.body.error?.code }).toEqual({ status, code });
  if (status === 401) expect(a.wwwAuthenticate).toMatch(/^Bearer/);
}

/** The sum over workgroups of a counter in /metrics. */
async function counter(name: string): Promise<number> {
  const text = await (await fetch(server.adminUrl('/metrics'))).text();
  let sum = 0;
  for (const m of text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'gm'))) sum += Number(m[1]);
  return sum;
}

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'c10m-http-auth-'));
  const keys = path.join(dir, 'keys.json');
  writeFileSync(
    keys,
    JSON.stringify({
      keys: [
        { name: 'billing', key: BILLING_KEY, publish: ['/orders/>'] },
        { name: 'feeds', key: FEEDS_KEY, publish: ['/prices/*', '/feeds/>'] },
      ],
    }),
  );
  const pem = path.join(dir, 'es256.pem');
  writeFileSync(pem, ecKeys.publicKey.export({ type: 'spki', format: 'pem' }));
  server = await startServer(['--workgroups', '2', '--auth', 'jwt', '--jwt-secret', SECRET, '--jwt-public-key-file', pem, '--api-keys-file', keys]);
});
afterAll(async () => {
  expect(await server.stop()).toBe(0);
  rmSync(dir, { recursive: true, force: true });
});

describe('JWT', () => {
  test("a token's publish claim ({sub} its sub) lets it publish there, and the message is delivered", async () => {
    const subToken = await sign({ subscribe: ['/user/{sub}/>'] }, { sub: 'alice' });
    const c = await connect(`${server.url()}?token=${subToken}`);
    try {
      expect((await c.sub(['/user/alice/inbox'])).ok).toBe(true);
      const token = await sign({ publish: ['/user/{sub}/>'] }, { sub: 'alice' });
      // First seen (verified asynchronously), then cached (checked in place): both publish.
      expectOk(await publish({ topic: '/user/alice/inbox', data: { n: 1 } }, `Bearer ${token}`));
      expectOk(await publish({ topic: '/user/alice/inbox', data: { n: 2 } }, `bearer ${token}`));
      await c.until(() => c.deliveries.length === 2, 3000, 'two deliveries');
      expect(c.deliveries.map((d) => d.data)).toEqual([{ n: 1 }, { n: 2 }]);
    } finally {
      await c.close();
    }
  });

  test('outside the claim: 403 FORBIDDEN, nothing published; no publish claim at all: 403', async () => {
    const before = await counter('c10m_auth_forbidden_total');
    const token = await sign({ publish: ['/user/{sub}/>'] }, { sub: 'alice' });
    expectRefused(await publish({ topic: '/user/bob/inbox', data: 1 }, `Bearer ${token}`), 403, 'FORBIDDEN');
    // The same token, now cached: refused in place all the same.
    const again = await publish({ topic: '/user/bob/inbox', data: 1 }, `Bearer ${token}`);
    expectRefused(again, 403, 'FORBIDDEN');
    expect(again.body.error?.message).toContain('/user/bob/inbox');
    const subscribeOnly = await sign({ subscribe: ['/>'] }, { sub: 'carol' });
    expectRefused(await publish({ topic: '/user/carol/x', data: 1 }, `Bearer ${subscribeOnly}`), 403, 'FORBIDDEN');
    expect((await counter('c10m_auth_forbidden_total')) - before).toBe(3);
  });

  test('expired: 401 TOKEN_EXPIRED; bad signature and garbage: 401 UNAUTHORIZED', async () => {
    const before = await counter('c10m_auth_failures_total');
    const expired = await sign({ publish: ['/>'] }, { sub: 'a', exp: Math.floor(Date.now() / 1000) - 300 });
    const e = await publish({ topic: '/a', data: 1 }, `Bearer ${expired}`);
    expectRefused(e, 401, 'TOKEN_EXPIRED');
    expect(e.wwwAuthenticate).toContain('invalid_token');
    const forged = await sign({ publish: ['/>'] }, { sub: 'a', secret: 'another-secret-of-more-than-32-bytes!!' });
    expectRefused(await publish({ topic: '/a', data: 1 }, `Bearer ${forged}`), 401, 'UNAUTHORIZED');
    expectRefused(await publish({ topic: '/a', data: 1 }, 'Bearer a.b.c'), 401, 'UNAUTHORIZED');
    expect((await counter('c10m_auth_failures_total')) - before).toBe(3);
  });

  test('msgpack bodies are checked alike', async () => {
    const token = await sign({ publish: ['/mp/{sub}'] }, { sub: 'dan' });
    expectOk(await publish({ topic: '/mp/dan', data: { bin: new Uint8Array([1, 2, 3]) } }, `Bearer ${token}`, 'application/msgpack'));
    expectRefused(await publish({ topic: '/mp/eve', data: 1 }, `Bearer ${token}`, 'application/msgpack'), 403, 'FORBIDDEN');
  });

  test('tokens verified in a later turn (ES256, thread pool), many at once, on topics of both workgroups: each answered', async () => {
    const tokens = await Promise.all(Array.from({ length: 20 }, () => signEs256({ publish: ['/many/>'] })));
    const answers = await Promise.all(tokens.map((t, i) => publish({ topic: i % 4 === 3 ? `/other/${i}` : `/many/${i}`, data: i }, `Bearer ${t}`)));
    answers.forEach((a, i) => (i % 4 === 3 ? expectRefused(a, 403, 'FORBIDDEN') : expectOk(a)));
    // A body in several reads, the verification running meanwhile.
    const big = await publish({ topic: '/many/big', data: 'x'.repeat(60_000) }, `Bearer ${await signEs256({ publish: ['/many/>'] })}`);
    expectOk(big);
  });
});

describe('API keys', () => {
  test('a key publishes inside its patterns, 403 outside (json and msgpack)', async () => {
    expectOk(await publish({ topic: '/orders/eu/42', data: { id: 42 } }, `Bearer ${BILLING_KEY}`));
    expectOk(await publish({ topic: '/orders/us', data: { id: 43 } }, `Bearer ${BILLING_KEY}`, 'application/msgpack'));
    const out = await publish({ topic: '/prices/eur', data: 1 }, `Bearer ${BILLING_KEY}`);
    expectRefused(out, 403, 'FORBIDDEN');
    expect(out.body.error?.message).toContain('billing');
    expectRefused(await publish({ topic: '/orders', data: 1 }, `Bearer ${BILLING_KEY}`, 'application/msgpack'), 403, 'FORBIDDEN');
  });

  test('* is one segment, > one or more', async () => {
    const auth = `Bearer ${FEEDS_KEY}`;
    expectOk(await publish({ topic: '/prices/eur', data: 1 }, auth));
    expectRefused(await publish({ topic: '/prices/eur/usd', data: 1 }, auth), 403, 'FORBIDDEN');
    expectRefused(await publish({ topic: '/prices', data: 1 }, auth), 403, 'FORBIDDEN');
    expectOk(await publish({ topic: '/feeds/a', data: 1 }, auth));
    expectOk(await publish({ topic: '/feeds/a/b/c', data: 1 }, auth));
    expectRefused(await publish({ topic: '/feeds', data: 1 }, auth), 403, 'FORBIDDEN');
  });

  test('a wrong key, a key one character off, another scheme, no header: 401 UNAUTHORIZED with WWW-Authenticate: Bearer', async () => {
    const wrong = await publish({ topic: '/orders/1', data: 1 }, `Bearer ${'x'.repeat(40)}`);
    expectRefused(wrong, 401, 'UNAUTHORIZED');
    expect(wrong.wwwAuthenticate).toContain('invalid_token');
    expectRefused(await publish({ topic: '/orders/1', data: 1 }, `Bearer ${BILLING_KEY.slice(0, -1)}w`), 401, 'UNAUTHORIZED');
    expectRefused(await publish({ topic: '/orders/1', data: 1 }, `Basic ${Buffer.from(`u:${BILLING_KEY}`).toString('base64')}`), 401, 'UNAUTHORIZED');
    const none = await publish({ topic: '/orders/1', data: 1 }, null);
    expectRefused(none, 401, 'UNAUTHORIZED');
    expect(none.wwwAuthenticate).toBe('Bearer');
    expect(none.body.error?.message).toMatch(/Authorization: Bearer/);
  });
});

/**
 * Writes each step's text on one connection, waiting after each for the
 * answers it should bring (or waitMs); returns the statuses answered and
 * whether the server closed the connection.
 */
function raw(steps: { text: string; answers: number }[], waitMs = 2000): Promise<{ statuses: number[]; closed: boolean }> {
  return new Promise((resolve) => {
    const s = net.connect(server.port, '127.0.0.1');
    let got = '';
    let step = 0;
    let expected = 0;
    let done = false;
    const statuses = () => [...got.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => Number(m[1]));
    const finish = (closed: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      s.destroy();
      resolve({ statuses: statuses(), closed });
    };
    const timer = setTimeout(() => finish(false), waitMs);
    const next = () => {
      if (step === steps.length) return finish(false);
      expected += steps[step].answers;
      s.write(steps[step++].text);
    };
    s.setEncoding('latin1');
    s.on('data', (d: string) => {
      got += d;
      // Every answer is a JSON body: complete once the text ends with one.
      if (statuses().length >= expected && got.endsWith('}')) next();
    });
    s.on('close', () => finish(true));
    s.on('error', () => finish(true));
    s.on('connect', next);
  });
}

function request(credential: string, topic: string): string {
  const body = JSON.stringify({ topic, data: 1 });
  return `POST /v1/publish HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAuthorization: Bearer ${credential}\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
}

describe('pipelining (see the top of workgroups/http-publish.ts)', () => {
  test('a key, and a token this workgroup verified before, are checked in place: pipelined requests are all answered', async () => {
    const three = request(BILLING_KEY, '/orders/p1') + request(BILLING_KEY, '/orders/p2') + request(BILLING_KEY, '/orders/p3');
    expect(await raw([{ text: three, answers: 3 }])).toEqual({ statuses: [200, 200, 200], closed: false });
    // ES256: verified on the thread pool, a later turn. Alone first, then cached: two pipelined on the same connection.
    const token = await signEs256({ publish: ['/pipe/>'] });
    const steps = [
      { text: request(token, '/pipe/a'), answers: 1 },
      { text: request(token, '/pipe/b') + request(token, '/pipe/c'), answers: 2 },
    ];
    expect(await raw(steps)).toEqual({ statuses: [200, 200, 200], closed: false });
  });

  test('a token seen for the first time is answered from a later turn: a request pipelined behind it is refused by uWS', async () => {
    const token = await signEs256({ publish: ['/pipe/>'] });
    const r = await raw([{ text: request(token, '/pipe/d') + request(token, '/pipe/e'), answers: 2 }]);
    expect(r.closed).toBe(true);
    expect(r.statuses.filter((st) => st === 200).length).toBeLessThan(2);
    // The server goes on: the same token publishes.
    expectOk(await publish({ topic: '/pipe/f', data: 1 }, `Bearer ${token}`));
  });
});

describe("the SDK's HTTP publisher", () => {
  test('with a token (static or getToken): acks; outside its claim, without one, or expired: C10mError with the server code', async () => {
    const token = await sign({ publish: ['/sdk/{sub}/>'] }, { sub: 'frank' });
    const calls: number[] = [];
    const dynamic = new HttpPublisher(`http://127.0.0.1:${server.port}`, {
      getToken: async () => {
        calls.push(Date.now());
        return token;
      },
    });
    const fixed = new HttpPublisher(`http://127.0.0.1:${server.port}`, { token: BILLING_KEY, encoding: 'msgpack' });
    const anonymous = new HttpPublisher(`http://127.0.0.1:${server.port}`);
    const failing = new HttpPublisher(`http://127.0.0.1:${server.port}`, {
      getToken: () => {
        throw new Error('identity provider down');
      },
    });
    try {
      const ack = await dynamic.publish('/sdk/frank/a', { x: 1 });
      expect(ack.seq).toBeGreaterThan(0);
      await dynamic.publish('/sdk/frank/a', { x: 2 });
      expect(calls).toHaveLength(2);
      await expect(dynamic.publish('/sdk/george/a', 1)).rejects.toMatchObject({ name: 'C10mError', code: 'FORBIDDEN', status: 403 });
      expect((await fixed.publish('/orders/sdk', { id: 1 })).seq).toBeGreaterThan(0);
      await expect(fixed.publish('/prices/eur', 1)).rejects.toMatchObject({ code: 'FORBIDDEN', status: 403 });
      const err = await anonymous.publish('/sdk/frank/a', 1).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(C10mError);
      expect(err).toMatchObject({ code: 'UNAUTHORIZED', status: 401 });
      const expired = new HttpPublisher(`http://127.0.0.1:${server.port}`, { token: await sign({ publish: ['/>'] }, { exp: Math.floor(Date.now() / 1000) - 300 }) });
      await expect(expired.publish('/x', 1)).rejects.toMatchObject({ code: 'TOKEN_EXPIRED', status: 401 });
      expired.close();
      await expect(failing.publish('/x', 1)).rejects.toMatchObject({ code: 'UNAUTHORIZED', message: expect.stringContaining('identity provider down') });
    } finally {
      for (const p of [dynamic, fixed, anonymous, failing]) p.close();
    }
  });
});

describe('--api-keys-file checked at start', () => {
  test.each([
    ['a short key', { keys: [{ name: 'a', key: 'short', publish: ['/a'] }] }, /keys\[0\] \(a\): key must be a string of at least 32 characters/],
    ['a bad pattern', { keys: [{ name: 'b', key: 'k'.repeat(32), publish: ['/a/>/b'] }] }, /keys\[0\] \(b\): .*> may only be the last segment/],
    ['{sub} in a pattern', { keys: [{ name: 'c', key: 'k'.repeat(32), publish: ['/u/{sub}'] }] }, /\{sub\} has no meaning for an API key/],
    ['no keys list', { key: 'x' }, /expected \{"keys"/],
  ])('%s: exit 2 with one sentence', async (_what, content, message) => {
    const file = path.join(dir, `bad-${Math.random().toString(36).slice(2)}.json`);
    writeFileSync(file, JSON.stringify(content));
    const r = await runCli(['serve', '--port', '0', '--admin-port', '0', '--host', '127.0.0.1', '--auth', 'jwt', '--jwt-secret', SECRET, '--api-keys-file', file]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).not.toMatch(/^\s+at .*:\d+/m);
  });
});

describe('--auth none', () => {
  test('publishes without an Authorization header (and ignores one)', async () => {
    const open = await startServer(['--workgroups', '1']);
    try {
      const url = `http://127.0.0.1:${open.port}/v1/publish`;
      const plain = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ topic: '/open', data: 1 }) });
      expect(plain.status).toBe(200);
      const withHeader = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', authorization: 'Bearer whatever' }, body: JSON.stringify({ topic: '/open', data: 2 }) });
      expect(withHeader.status).toBe(200);
      expect(((await withHeader.json()) as { seq: number }).seq).toBe(2);
    } finally {
      expect(await open.stop()).toBe(0);
    }
  });
});
