// --auth jwt on real servers: tokens signed here (HS256, ES256 with a PEM
// public key, RS256 from a JWKS served by a local HTTP server whose keys
// rotate), refused at the upgrade for every reason a token can be wrong,
// permissions with *, > and {sub}, the auth command (first token and
// refresh, revocation), the auth timeout (4002) and expiry (4003).
import http from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import WebSocket from 'ws';
import { SignJWT, exportJWK, exportSPKI, generateKeyPair, type KeyLike } from 'jose';
import { TestClient } from './helpers/client';
import { runCli, startServer, type TestServer } from './helpers/server';

const SECRET = 'test-secret-of-more-than-thirty-two-bytes-0123456789';
const KEY = new TextEncoder().encode(SECRET);
const now = () => Math.floor(Date.now() / 1000);

interface Claims {
  sub?: string;
  subscribe?: unknown;
  publish?: unknown;
  exp?: number;
  nbf?: number;
  aud?: string;
  iss?: string;
}

function hs256(c: Claims, key: Uint8Array = KEY): Promise<string> {
  const { exp, nbf, aud, iss, sub, ...rest } = c;
  let j = new SignJWT(rest as Record<string, unknown>).setProtectedHeader({ alg: 'HS256' }).setIssuedAt();
  if (sub !== undefined) j = j.setSubject(sub);
  j = j.setExpirationTime(exp ?? now() + 3600);
  if (nbf !== undefined) j = j.setNotBefore(nbf);
  if (aud !== undefined) j = j.setAudience(aud);
  if (iss !== undefined) j = j.setIssuer(iss);
  return j.sign(key);
}

/** The upgrade's outcome: an open client, or the refusal's status and JSON body. */
async function tryConnect(
  url: string,
  headers: Record<string, string> = {},
): Promise<TestClient | { status: number; body: { error: { code: string; message: string } }; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${url}${url.includes('?') ? '&' : '?'}encoding=json`, { headers });
    ws.once('unexpected-response', (_req, res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text), headers: res.headers }));
    });
    ws.once('error', reject);
    ws.once('open', () => {
      ws.removeAllListeners('open');
      // Re-wrap: the helper's client reads frames from here on.
      resolve(wrap(ws));
    });
  });
}

/** The helper's client on an open socket (its constructor attaches the listeners; no frame came yet). */
function wrap(ws: WebSocket): TestClient {
  return new TestClient(ws, 'json');
}

function isClient(x: unknown): x is TestClient {
  return typeof (x as TestClient).request === 'function';
}

async function open(server: TestServer, token: string): Promise<TestClient> {
  const r = await tryConnect(server.url(`/v1/ws?token=${encodeURIComponent(token)}`));
  if (!isClient(r)) throw new Error(`refused: ${r.status} ${JSON.stringify(r.body)}`);
  return r;
}

async function refused(server: TestServer, token: string): Promise<{ status: number; code: string; message: string }> {
  const r = await tryConnect(server.url(`/v1/ws?token=${encodeURIComponent(token)}`));
  if (isClient(r)) {
    await r.close();
    throw new Error('the upgrade was accepted');
  }
  return { status: r.status, code: r.body.error.code, message: r.body.error.message };
}

describe('--auth jwt with an HS256 secret', () => {
  let server: TestServer;
  const clients: TestClient[] = [];
  beforeAll(async () => {
    server = await startServer(['--auth', 'jwt', '--jwt-secret', SECRET, '--jwt-clock-skew-seconds', '0', '--auth-timeout-seconds', '1', '--workgroups', '2']);
  });
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await server.stop();
  });
  const keep = (c: TestClient) => (clients.push(c), c);

  test('a valid token at the upgrade (query or Authorization: Bearer) opens a session', async () => {
    const token = await hs256({ sub: 'alice', subscribe: ['/a'] });
    const c = keep(await open(server, token));
    expect((await c.request({ op: 'ping' })).ok).toBe(true);
    const r = await tryConnect(server.url(), { authorization: `Bearer ${token}` });
    expect(isClient(r)).toBe(true);
    if (isClient(r)) keep(r);
  });

  test('every kind of bad token is refused with 401 before any session exists', async () => {
    const expired = await refused(server, await hs256({ sub: 'a', exp: now() - 60 }));
    expect(expired).toMatchObject({ status: 401, code: 'TOKEN_EXPIRED' });
    const early = await refused(server, await hs256({ sub: 'a', nbf: now() + 600 }));
    expect(early).toMatchObject({ status: 401, code: 'TOKEN_EXPIRED' });
    expect(early.message).toMatch(/nbf/);
    const wrongKey = await refused(server, await hs256({ sub: 'a' }, new TextEncoder().encode('another-secret-of-more-than-thirty-two-bytes!!')));
    expect(wrongKey).toMatchObject({ status: 401, code: 'UNAUTHORIZED' });
    expect(wrongKey.message).toMatch(/signature/);
    // alg none: an unsigned token (header {"alg":"none"}, no signature).
    const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const none = `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ sub: 'a', subscribe: ['/>'], exp: now() + 600 })}.`;
    expect(await refused(server, none)).toMatchObject({ status: 401, code: 'UNAUTHORIZED' });
    expect(await refused(server, 'not-a-jwt')).toMatchObject({ status: 401, code: 'UNAUTHORIZED' });
    const badClaim = await refused(server, await hs256({ sub: 'a', subscribe: ['/a/>/b'] }));
    expect(badClaim).toMatchObject({ status: 401, code: 'UNAUTHORIZED' });
    expect(badClaim.message).toMatch(/last segment/);
    // The figures are read at most once a second: wait for the count of the six refusals.
    let failures = 0;
    for (let i = 0; i < 30 && failures < 6; i++) {
      const m = await fetch(server.adminUrl('/metrics')).then((r) => r.text());
      failures = [...m.matchAll(/^c10m_auth_failures_total\{[^}]*\} (\d+)/gm)].reduce((n, x) => n + Number(x[1]), 0);
      if (failures < 6) await new Promise((r) => setTimeout(r, 100));
    }
    expect(failures).toBe(6);
  });

  test('subscribe: *, > and {sub}; a forbidden topic is refused alone and the session stays', async () => {
    const token = await hs256({ sub: 'alice', subscribe: ['/prices/*', '/chat/>', '/user/{sub}/>'], publish: ['/user/{sub}/out'] });
    const c = keep(await open(server, token));
    const r = await c.sub(['/prices/eur', '/prices/eur/usd', '/chat/room/1', '/chat', '/user/alice/inbox', '/user/bob/inbox']);
    const topics = r.topics as Record<string, { epoch?: number; error?: { code: string } }>;
    expect(r.ok).toBe(true);
    expect(typeof topics['/prices/eur'].epoch).toBe('number');
    expect(typeof topics['/chat/room/1'].epoch).toBe('number');
    expect(typeof topics['/user/alice/inbox'].epoch).toBe('number');
    expect(topics['/prices/eur/usd'].error?.code).toBe('FORBIDDEN');
    expect(topics['/chat'].error?.code).toBe('FORBIDDEN');
    expect(topics['/user/bob/inbox'].error?.code).toBe('FORBIDDEN');
    // Every topic forbidden: an error reply.
    const all = await c.sub(['/secret/x', '/user/bob/inbox']);
    expect((all.error as { code: string }).code).toBe('FORBIDDEN');
    // Publish: only the own /user/alice/out.
    const pubBad = await c.pub('/prices/eur', 1);
    expect((pubBad.error as { code: string }).code).toBe('FORBIDDEN');
    const pubBadNoAck = await c.request({ op: 'pub', topic: '/user/bob/out', data: 1 });
    expect((pubBadNoAck.error as { code: string }).code).toBe('FORBIDDEN');
    const pubOk = await c.pub('/user/alice/out', 1);
    expect(typeof pubOk.seq).toBe('number');
    // FORBIDDEN is not a bad command: 150 of them do not close the session (1008 after 100 bad ones).
    for (let i = 0; i < 150; i++) c.send({ id: `f${i}`, op: 'pub', topic: '/nope', data: i });
    await c.until(() => c.replies.has('f149'), 5000, 'the 150th refusal');
    expect((await c.request({ op: 'ping' })).ok).toBe(true);
    expect(c.closeCode).toBeNull();
    // A refresh keeps the subject: another is refused (the string kept for a {sub} grant), the same accepted.
    const bob = await c.request({ op: 'auth', token: await hs256({ sub: 'bob', subscribe: ['/user/{sub}/>'] }) });
    expect((bob.error as { code: string }).code).toBe('UNAUTHORIZED');
    expect((await c.request({ op: 'auth', token: await hs256({ sub: 'alice', subscribe: ['/user/{sub}/>'] }) })).ok).toBe(true);
    // Counted: 3 sub topics + 2 pubs + 150 pubs refused, in /jmx (read at most once a second).
    let jmx = { AuthForbidden: 0, AuthGrants: 0 };
    for (let i = 0; i < 30 && (jmx.AuthForbidden < 157 || jmx.AuthGrants < 1); i++) {
      jmx = (await fetch(server.adminUrl('/jmx')).then((r) => r.json())) as typeof jmx;
      if (jmx.AuthForbidden < 157 || jmx.AuthGrants < 1) await new Promise((r) => setTimeout(r, 100));
    }
    expect(jmx.AuthForbidden).toBeGreaterThanOrEqual(157);
    expect(jmx.AuthGrants).toBeGreaterThanOrEqual(1);
  });

  test('a message on a permitted topic reaches the permitted subscriber', async () => {
    const sub = keep(await open(server, await hs256({ sub: 'u1', subscribe: ['/news/>'] })));
    const pub = keep(await open(server, await hs256({ sub: 'p1', publish: ['/news/*'] })));
    await sub.sub(['/news/today']);
    await pub.pub('/news/today', { headline: 'x' });
    await sub.until(() => sub.deliveries.length === 1, 5000, 'the delivery');
    expect(sub.deliveries[0].data).toEqual({ headline: 'x' });
  });

  test('a session opened without a token must send auth first; then it works', async () => {
    const r = await tryConnect(server.url());
    if (!isClient(r)) throw new Error(`refused ${r.status}`);
    const c = keep(r);
    const early = await c.sub(['/a']);
    expect((early.error as { code: string }).code).toBe('UNAUTHORIZED');
    expect((await c.request({ op: 'ping' })).ok).toBe(true);
    const bad = await c.request({ op: 'auth', token: 'garbage' });
    expect((bad.error as { code: string }).code).toBe('UNAUTHORIZED');
    const exp = now() + 3600;
    const ok = await c.request({ op: 'auth', token: await hs256({ sub: 'carol', subscribe: ['/a'], exp }) });
    expect(ok).toMatchObject({ ok: true, exp, sub: 'carol' });
    expect(((await c.sub(['/a'])).topics as Record<string, unknown>)['/a']).toHaveProperty('epoch');
  });

  test('no auth command in time: closed with 4002', async () => {
    const r = await tryConnect(server.url());
    if (!isClient(r)) throw new Error(`refused ${r.status}`);
    const started = Date.now();
    const code = await r.closed;
    expect(code).toBe(4002);
    expect(Date.now() - started).toBeLessThan(4000);
  });

  test('an expired token closes the session with 4003; a refresh in band keeps it open', async () => {
    const short = await open(server, await hs256({ sub: 'dan', subscribe: ['/d'], exp: now() + 2 }));
    const refreshed = keep(await open(server, await hs256({ sub: 'erin', subscribe: ['/e'], exp: now() + 2 })));
    const again = await refreshed.request({ op: 'auth', token: await hs256({ sub: 'erin', subscribe: ['/e'], exp: now() + 60 }) });
    expect(again.ok).toBe(true);
    expect(await short.closed).toBe(4003);
    expect(short.closeReason).toMatch(/token expired/);
    await new Promise((r) => setTimeout(r, 1200));
    expect(refreshed.closeCode).toBeNull();
    expect((await refreshed.request({ op: 'ping' })).ok).toBe(true);
  });

  test('a refresh that drops a right unsubscribes the topic (revoked); another subject is refused', async () => {
    const c = keep(await open(server, await hs256({ sub: 'frank', subscribe: ['/r/1', '/r/2'], publish: ['/r/>'] })));
    await c.sub(['/r/1', '/r/2']);
    const r = await c.request({ op: 'auth', token: await hs256({ sub: 'frank', subscribe: ['/r/2'], publish: ['/r/>'] }) });
    expect(r.ok).toBe(true);
    expect(r.revoked).toEqual(['/r/1']);
    await c.pub('/r/1', 'gone');
    await c.pub('/r/2', 'kept');
    await c.until(() => c.deliveries.some((d) => d.topic === '/r/2'), 5000, 'the /r/2 delivery');
    expect(c.deliveries.map((d) => d.topic)).toEqual(['/r/2']);
    const other = await c.request({ op: 'auth', token: await hs256({ sub: 'mallory', subscribe: ['/>'] }) });
    expect((other.error as { code: string }).code).toBe('UNAUTHORIZED');
    // The session keeps frank's rights.
    expect(((await c.sub(['/r/1'])).error as { code: string }).code).toBe('FORBIDDEN');
  });
});

describe('--auth jwt with public keys', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'c10m-auth-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test('ES256 tokens verify with --jwt-public-key-file; --jwt-audience and --jwt-issuer are enforced', async () => {
    const { publicKey, privateKey } = await generateKeyPair('ES256');
    const pem = path.join(dir, 'es256.pem');
    writeFileSync(pem, await exportSPKI(publicKey));
    const server = await startServer(['--auth', 'jwt', '--jwt-public-key-file', pem, '--jwt-audience', 'c10m', '--jwt-issuer', 'https://id.example']);
    try {
      const sign = (aud: string, iss: string) =>
        new SignJWT({ subscribe: ['/x'] }).setProtectedHeader({ alg: 'ES256' }).setSubject('s').setAudience(aud).setIssuer(iss).setExpirationTime('1h').sign(privateKey);
      const c = await open(server, await sign('c10m', 'https://id.example'));
      expect(((await c.sub(['/x'])).topics as Record<string, unknown>)['/x']).toHaveProperty('epoch');
      await c.close();
      expect(await refused(server, await sign('other', 'https://id.example'))).toMatchObject({ status: 401, code: 'UNAUTHORIZED' });
      expect(await refused(server, await sign('c10m', 'https://evil.example'))).toMatchObject({ status: 401, code: 'UNAUTHORIZED' });
      // An HS256 token is refused: no secret is configured (no algorithm confusion with the public key).
      expect(await refused(server, await hs256({ sub: 's', aud: 'c10m', iss: 'https://id.example' }))).toMatchObject({ status: 401 });
    } finally {
      await server.stop();
    }
  });

  test('a JWKS URL: keys fetched, and a rotated key is found (refetch on an unknown kid)', async () => {
    const k1 = await generateKeyPair('RS256');
    const k2 = await generateKeyPair('RS256');
    const jwk = async (k: KeyLike, kid: string) => ({ ...(await exportJWK(k)), kid, alg: 'RS256', use: 'sig' });
    let keys = [await jwk(k1.publicKey, 'k1')];
    let fetches = 0;
    const jwks = http.createServer((_req, res) => {
      fetches++;
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ keys }));
    });
    await new Promise<void>((r) => jwks.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(jwks.address() as AddressInfo).port}/jwks.json`;
    const server = await startServer(['--auth', 'jwt', '--jwks-url', url, '--jwks-cooldown-seconds', '0', '--workgroups', '1']);
    try {
      const sign = (k: KeyLike, kid: string) => new SignJWT({ subscribe: ['/j'] }).setProtectedHeader({ alg: 'RS256', kid }).setSubject('j').setExpirationTime('1h').sign(k);
      const c1 = await open(server, await sign(k1.privateKey, 'k1'));
      await c1.close();
      expect(fetches).toBe(1);
      // Rotation: the issuer adds k2 and retires k1.
      keys = [await jwk(k2.publicKey, 'k2')];
      const c2 = await open(server, await sign(k2.privateKey, 'k2'));
      await c2.close();
      expect(fetches).toBe(2);
      // A kid nobody published: refused, not a crash.
      const k3 = await generateKeyPair('RS256');
      expect(await refused(server, await sign(k3.privateKey, 'k3'))).toMatchObject({ status: 401, code: 'UNAUTHORIZED' });
    } finally {
      await server.stop();
      jwks.close();
    }
  });
});

describe('--auth configuration errors exit 2 with one sentence', () => {
  const cases: [string, string[], RegExp][] = [
    ['jwt without a key', ['--auth', 'jwt'], /needs a key/],
    ['a short secret', ['--auth', 'jwt', '--jwt-secret', 'short'], /at least 32/],
    ['a key with --auth none', ['--jwt-secret', SECRET], /--auth none/],
    ['a JWKS over plain http to another host', ['--auth', 'jwt', '--jwks-url', 'http://keys.example.com/jwks.json'], /https/],
    ['a missing public key file', ['--auth', 'jwt', '--jwt-public-key-file', '/nonexistent/key.pem'], /not found/],
  ];
  test.each(cases)('%s', async (_name, args, re) => {
    const r = await runCli(['serve', '--port', '0', '--admin-port', '0', ...args]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(re);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });
});

describe('--auth none on a public host', () => {
  test('warns at start and in /readyz', async () => {
    const server = await startServer(['--host', '0.0.0.0']);
    try {
      expect(server.logs.some((l) => typeof l.msg === 'string' && l.msg.includes('--auth none on a public --host'))).toBe(true);
      const r = (await fetch(server.adminUrl('/readyz')).then((x) => x.json())) as { warnings: string[] };
      expect(r.warnings[0]).toMatch(/anyone who reaches the port/);
    } finally {
      await server.stop();
    }
  });
});
