// The SDK's side of entitlement and admission (issue 16), against a spec peer
// on loopback (test/helpers/fake-auth-server.ts: real sockets, the wire
// protocol of protocol/PROTOCOL.md, tokens signed here with jose): getToken()
// at connect, the refresh ahead of exp sent in band, close 4003 -> new token
// and an immediate reconnect, 401 at the upgrade -> new token, 503
// RETRY_LATER and 429 hints honored (with the admission ticket), FORBIDDEN
// per topic and "revoked" topics dropped. Then the pure parts: reading exp,
// the refresh time, the hint of a refusal.
import { SignJWT } from 'jose';
import WebSocket from 'ws';
import { SpecPeer } from './helpers/fake-auth-server';
import { nextEvent, until } from './helpers/sdk';
import { connect, type C10mClient, type ConnectOptions } from '../sdk/client';
import { C10mError } from '../sdk/errors';
import { hintDelayMs, parseRefusal } from '../sdk/refusal';
import { base64UrlDecode, holdToken, jwtExp, refreshAtMs } from '../sdk/token';
import type { WebSocketLike } from '../sdk/transport';

jest.setTimeout(20_000);

const SECRET = new TextEncoder().encode('spec-peer-secret-of-at-least-32-bytes!');
const FAST = { initialDelayMs: 20, maxDelayMs: 200, factor: 2 };
let peer: SpecPeer;
const clients: C10mClient[] = [];

beforeEach(async () => {
  peer = await SpecPeer.start(SECRET);
});
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await peer.stop();
});

function client(opts: ConnectOptions): C10mClient {
  const c = connect(peer.url, { reconnect: FAST, pingIntervalMs: 0, ...opts });
  clients.push(c);
  return c;
}

/** An HS256 token valid for `lifetimeS` seconds (exp is whole seconds: 1 s less of it may be left). */
function mint(o: { sub?: string; lifetimeS?: number; subscribe?: string[]; secret?: Uint8Array } = {}): Promise<string> {
  const nowS = Math.floor(Date.now() / 1000);
  return new SignJWT({ subscribe: o.subscribe ?? ['/>'] })
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject(o.sub ?? 'alice')
    .setIssuedAt(nowS)
    .setExpirationTime(nowS + (o.lifetimeS ?? 60))
    .sign(o.secret ?? SECRET);
}

function errorsOf(c: C10mClient): C10mError[] {
  const errors: C10mError[] = [];
  c.on('error', (e) => errors.push(e));
  return errors;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('getToken() is called at connect and its token is the query parameter; the URL shown keeps it out', async () => {
  const token = await mint();
  let calls = 0;
  const c = client({
    getToken: async () => {
      calls++;
      return token;
    },
  });
  const ev = await nextEvent(c, 'token');
  await c.ready();
  expect(calls).toBe(1);
  expect(ev).toEqual({ exp: expect.any(Number), inBand: false });
  expect(peer.upgrades.map((u) => [u.status, u.token])).toEqual([[101, token]]);
  expect(c.url).not.toContain('token=');
});

test('refresh ahead of exp: a new token goes in band (auth), and the session outlives the first one', async () => {
  const issued: string[] = [];
  const c = client({
    refreshAheadMs: 1500,
    getToken: async () => {
      issued.push(await mint({ lifetimeS: 4 }));
      return issued[issued.length - 1];
    },
  });
  const errors = errorsOf(c);
  const disconnects: number[] = [];
  c.on('disconnected', (e) => disconnects.push(e.code));
  const refreshed = nextEvent(c, 'token', (e) => e.inBand, 6000);
  await c.ready();
  const firstExpMs = JSON.parse(Buffer.from(issued[0].split('.')[1], 'base64url').toString()).exp * 1000;
  const ev = await refreshed;
  const auths = peer.commandsOf('auth');
  expect(auths).toHaveLength(1);
  expect(auths[0].token).toBe(issued[1]);
  expect(auths[0].token).not.toBe(issued[0]);
  // Sent ahead: refreshAheadMs (1.5 s) before the first token's exp, give or take the round trip.
  expect(Date.now()).toBeLessThan(firstExpMs - 700);
  expect(ev.exp).toBeGreaterThanOrEqual(firstExpMs / 1000);
  // Past the first token's exp the peer would close with 4003 had the refresh not been taken.
  await sleep(firstExpMs + 300 - Date.now());
  expect(disconnects).toEqual([]);
  expect(peer.upgrades).toHaveLength(1);
  expect(c.stats.connections).toBe(1);
  expect(c.state).toBe('connected');
  expect(errors).toEqual([]);
});

test('"revoked" in the auth reply: FORBIDDEN per topic, dropped, not resubscribed', async () => {
  let calls = 0;
  const c = client({
    refreshAheadMs: 1500,
    getToken: () => mint({ lifetimeS: 4, subscribe: calls++ === 0 ? ['/a/>', '/b/>'] : ['/a/>'] }),
  });
  const errors = errorsOf(c);
  const a = c.subscribe('/a/x', () => undefined);
  const b = c.subscribe('/b/y', () => undefined);
  await Promise.all([a.ready, b.ready]);
  const revoked = await nextEvent(c, 'error', (e) => e.code === 'FORBIDDEN', 6000);
  expect(revoked.topic).toBe('/b/y');
  expect(Object.keys(c.positions())).toEqual(['/a/x']);
  const reconnected = nextEvent(c, 'connected', (e) => e.reconnect);
  peer.closeAll(1011, 'peer restarts the session');
  await reconnected;
  await until(() => peer.commandsOf('sub').length === 2, 'the resubscription');
  expect(peer.commandsOf('sub')[1].topics).toEqual(['/a/x']);
  expect(errors.map((e) => [e.code, e.topic])).toEqual([['FORBIDDEN', '/b/y']]);
});

test('close 4003 (refresh failed until exp): a new token and a reconnect at once, not after the backoff', async () => {
  let calls = 0;
  let tokenServiceDown = false;
  const c = client({
    // A backoff of ~5 s: a reconnect within it was immediate; the failed refresh is not retried before exp.
    reconnect: { initialDelayMs: 5000, maxDelayMs: 5000, factor: 2 },
    random: () => 0.999,
    refreshAheadMs: 1500,
    getToken: async () => {
      calls++;
      if (tokenServiceDown) throw new Error('token service down');
      tokenServiceDown = calls === 1;
      return mint({ lifetimeS: 3 });
    },
  });
  const errors = errorsOf(c);
  let closedAt = 0;
  c.on('disconnected', (e) => {
    if (e.code !== 4003) return;
    closedAt = Date.now();
    tokenServiceDown = false;
  });
  const reconnecting = nextEvent(c, 'reconnecting', () => true, 8000);
  const reconnected = nextEvent(c, 'connected', (e) => e.reconnect, 8000);
  await c.ready();
  expect((await reconnecting).delayMs).toBe(0);
  await reconnected;
  expect(Date.now() - closedAt).toBeLessThan(1000);
  expect(errors.map((e) => e.code)).toEqual(['TOKEN_UNAVAILABLE']);
  expect(calls).toBe(3);
  expect(peer.upgrades.map((u) => u.status)).toEqual([101, 101]);
  expect(peer.upgrades[1].token).not.toBe(peer.upgrades[0].token);
  expect(peer.commandsOf('auth')).toEqual([]);
});

test('401 at the upgrade: a new token before the next attempt (at once for a token that was not fresh)', async () => {
  let calls = 0;
  const c = client({
    token: 'stale-static-token',
    getToken: () => mint({ secret: calls++ === 0 ? new TextEncoder().encode('another-secret-entirely-32-bytes-long') : SECRET }),
  });
  const errors = errorsOf(c);
  await c.ready();
  expect(peer.upgrades.map((u) => u.status)).toEqual([401, 401, 101]);
  expect(peer.upgrades[0].token).toBe('stale-static-token');
  expect(calls).toBe(2);
  // One refused fresh token is not reported; two in a row would be.
  expect(errors).toEqual([]);
});

test('fresh tokens refused twice in a row: error UNAUTHORIZED, retries go on with backoff', async () => {
  const wrong = new TextEncoder().encode('another-secret-entirely-32-bytes-long');
  let calls = 0;
  const c = client({
    reconnect: { initialDelayMs: 100, maxDelayMs: 400, factor: 2 },
    getToken: () => {
      calls++;
      return mint({ secret: wrong });
    },
  });
  const err = await nextEvent(c, 'error', (e) => e.code === 'UNAUTHORIZED');
  expect(err.status).toBe(401);
  expect(peer.upgrades.filter((u) => u.status === 401).length).toBe(2);
  await sleep(1000);
  // Not spinning: every attempt waits its backoff (a spin would be hundreds of attempts).
  const attempts = peer.upgrades.length;
  expect(attempts).toBeGreaterThanOrEqual(3);
  expect(attempts).toBeLessThan(20);
  expect(calls).toBe(attempts);
  expect(c.state).toBe('reconnecting');
});

test('503 RETRY_LATER: waits retryAfterMs (the exact figure, not the rounded Retry-After) and comes back with admit=<ticket>', async () => {
  peer.admitWithTickets(1, 700);
  const c = client({ getToken: () => mint() });
  const reconnecting = nextEvent(c, 'reconnecting');
  await c.ready();
  // Retry-After says 1 (at least 1 whole second); the body's 700 ms is what the server reserved.
  expect((await reconnecting).delayMs).toBe(700);
  const [refused, admitted] = peer.upgrades;
  expect(refused.status).toBe(503);
  expect(refused.admit).toBeNull();
  expect(admitted.status).toBe(101);
  expect(admitted.admit).toMatch(/^[A-Za-z0-9_-]{16}$/);
  expect(admitted.atMs - refused.atMs).toBeGreaterThanOrEqual(695);
  // The ticket goes on that one attempt only.
  const again = nextEvent(c, 'connected', (e) => e.reconnect);
  peer.closeAll(1011);
  await again;
  expect(peer.upgrades.map((u) => [u.status, u.admit === null])).toEqual([
    [503, true],
    [101, false],
    [101, true],
  ]);
});

test('429 RATE_LIMITED: waits retryAfterMs', async () => {
  let refused = false;
  peer.admission = () => {
    if (refused) return null;
    refused = true;
    return { status: 429, code: 'RATE_LIMITED', message: 'too many new sessions from this address', retryAfterMs: 400 };
  };
  const c = client({ getToken: () => mint() });
  const reconnecting = nextEvent(c, 'reconnecting');
  await c.ready();
  expect((await reconnecting).delayMs).toBe(400);
  const [first, second] = peer.upgrades;
  expect([first.status, second.status]).toEqual([429, 101]);
  expect(second.atMs - first.atMs).toBeGreaterThanOrEqual(395);
  expect(second.admit).toBeNull();
});

test('FORBIDDEN for one topic of a sub: only that ready rejects; it is dropped and not resubscribed', async () => {
  const c = client({ getToken: () => mint({ sub: 'alice', subscribe: ['/user/{sub}/>'] }) });
  const errors = errorsOf(c);
  const own = c.subscribe('/user/alice/inbox', () => undefined);
  const other = c.subscribe('/user/bob/inbox', () => undefined);
  await expect(own.ready).resolves.toEqual({ epoch: 1, seq: 0 });
  const refusal = await other.ready.catch((e: unknown) => e);
  expect(refusal).toBeInstanceOf(C10mError);
  expect(refusal).toMatchObject({ code: 'FORBIDDEN', topic: '/user/bob/inbox' });
  expect(peer.commandsOf('sub')[0].topics).toEqual(['/user/alice/inbox', '/user/bob/inbox']);
  expect(errors.map((e) => [e.code, e.topic])).toEqual([['FORBIDDEN', '/user/bob/inbox']]);
  expect(Object.keys(c.positions())).toEqual(['/user/alice/inbox']);
  const again = nextEvent(c, 'connected', (e) => e.reconnect);
  peer.closeAll(1011);
  await again;
  await until(() => peer.commandsOf('sub').length === 2, 'the resubscription');
  expect(peer.commandsOf('sub')[1].topics).toEqual(['/user/alice/inbox']);
});

/** ws behind the WHATWG interface only (no 'unexpected-response'): a browser's view of a refused upgrade, a failed connection. */
class BrowserViewWebSocket implements WebSocketLike {
  private readonly inner: WebSocket;
  constructor(url: string) {
    this.inner = new WebSocket(url);
  }
  get binaryType(): string {
    return this.inner.binaryType;
  }
  set binaryType(t: string) {
    this.inner.binaryType = t as WebSocket['binaryType'];
  }
  get readyState(): number {
    return this.inner.readyState;
  }
  get bufferedAmount(): number {
    return this.inner.bufferedAmount;
  }
  send(data: string | Uint8Array): void {
    this.inner.send(data);
  }
  close(code?: number, reason?: string): void {
    this.inner.close(code, reason);
  }
  set onopen(f: WebSocketLike['onopen']) {
    this.inner.onopen = f;
  }
  set onmessage(f: WebSocketLike['onmessage']) {
    this.inner.onmessage = f as WebSocket['onmessage'];
  }
  set onclose(f: WebSocketLike['onclose']) {
    this.inner.onclose = f;
  }
  set onerror(f: WebSocketLike['onerror']) {
    this.inner.onerror = f;
  }
  get onopen(): WebSocketLike['onopen'] {
    return this.inner.onopen as WebSocketLike['onopen'];
  }
  get onmessage(): WebSocketLike['onmessage'] {
    return this.inner.onmessage as WebSocketLike['onmessage'];
  }
  get onclose(): WebSocketLike['onclose'] {
    return this.inner.onclose as WebSocketLike['onclose'];
  }
  get onerror(): WebSocketLike['onerror'] {
    return this.inner.onerror as WebSocketLike['onerror'];
  }
}

test('no readable refusal (a browser): after two failed attempts in a row the next one gets a new token', async () => {
  let calls = 0;
  const c = client({
    WebSocket: BrowserViewWebSocket,
    token: 'stale-static-token',
    getToken: () => {
      calls++;
      return mint();
    },
  });
  await c.ready();
  expect(peer.upgrades.map((u) => u.status)).toEqual([401, 401, 101]);
  expect(calls).toBe(1);
});

describe('pure parts', () => {
  test('jwtExp reads exp from the payload without verifying; anything else is null', async () => {
    const token = await mint({ lifetimeS: 60, sub: 'zoë' });
    expect(jwtExp(token)).toBe(JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString()).exp);
    expect(jwtExp(token)).toBeGreaterThan(Date.now() / 1000 + 58);
    expect(jwtExp(await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).sign(SECRET))).toBeNull();
    for (const bad of ['', 'opaque-api-token', 'a.b', 'a.!!!.c', `x.${Buffer.from('[1]').toString('base64url')}.y`, `x.${Buffer.from('{"exp":"soon"}').toString('base64url')}.y`])
      expect(jwtExp(bad)).toBeNull();
    const bytes = Buffer.from([0, 1, 250, 251, 252, 253, 254, 255, 62, 63]);
    expect(Buffer.from(base64UrlDecode(bytes.toString('base64url')) as Uint8Array)).toEqual(bytes);
  });

  test('refreshAtMs: refreshAheadMs before exp, at most half the lifetime left, at least 1 s after receipt', () => {
    const at = (leftMs: number, aheadMs: number) => {
      const held = { token: 't', expMs: 1_000_000 + leftMs, receivedAtMs: 1_000_000 };
      const r = refreshAtMs(held, aheadMs);
      return r === null ? null : r - held.receivedAtMs;
    };
    expect(at(600_000, 30_000)).toBe(570_000);
    expect(at(20_000, 30_000)).toBe(10_000);
    expect(at(1_500, 30_000)).toBe(1_000);
    expect(at(-5, 30_000)).toBeNull();
    expect(refreshAtMs(holdToken('not-a-jwt'), 30_000)).toBeNull();
  });

  test('hintDelayMs: 503 RETRY_LATER and 429 take the body retryAfterMs, else the header, capped at 240 s', () => {
    const body = (o: object) => JSON.stringify({ error: o });
    expect(hintDelayMs(parseRefusal(503, '1', body({ code: 'RETRY_LATER', retryAfterMs: 2300, ticket: 't' })))).toBe(2300);
    expect(hintDelayMs(parseRefusal(503, '2', body({ code: 'RETRY_LATER', retryAfterMs: 2300 })))).toBe(2300);
    expect(hintDelayMs(parseRefusal(503, '3', body({ code: 'RETRY_LATER' })))).toBe(3000);
    expect(hintDelayMs(parseRefusal(503, '2', '<html>proxy</html>'))).toBeNull();
    expect(hintDelayMs(parseRefusal(503, '1', body({ code: 'SHUTTING_DOWN' })))).toBeNull();
    expect(hintDelayMs(parseRefusal(429, '1', body({ code: 'RATE_LIMITED', retryAfterMs: 250 })))).toBe(250);
    expect(hintDelayMs(parseRefusal(503, '86400', body({ code: 'RETRY_LATER' })))).toBe(240_000);
    expect(parseRefusal(503, null, body({ code: 'RETRY_LATER', retryAfterMs: 10, ticket: 'abc' })).ticket).toBe('abc');
  });
});
