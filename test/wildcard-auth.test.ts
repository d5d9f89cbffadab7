// Wildcard subscriptions under --auth jwt: a pattern is allowed only when
// one of the token's subscribe patterns covers everything it can match,
// and a refreshed token that no longer covers it revokes it.
import { SignJWT } from 'jose';
import { compilePattern, coversPattern, type CompiledPattern } from '../protocol/patterns';
import { connect } from './helpers/client';
import { startServer, type TestServer } from './helpers/server';

const SECRET = 'test-secret-of-more-than-thirty-two-bytes-0123456789';
const KEY = new TextEncoder().encode(SECRET);

function token(sub: string, subscribe: string[]): Promise<string> {
  return new SignJWT({ subscribe, publish: ['/>'] })
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject(sub)
    .setIssuedAt()
    .setExpirationTime(Math.floor(Date.now() / 1000) + 3600)
    .sign(KEY);
}

test('coversPattern: a claim covers a subscription pattern only when it covers all it can match', () => {
  const c = (p: string): CompiledPattern => compilePattern(p) as CompiledPattern;
  const cases: [string, string, boolean][] = [
    ['/prices/*', '/prices/*', true],
    ['/prices/>', '/prices/*', true],
    ['/prices/>', '/prices/a/>', true],
    ['/prices/*', '/prices/>', false],
    ['/prices/a', '/prices/*', false],
    ['/*/x', '/a/*', false],
    ['/*/x', '/*/x', true],
    ['/>', '/a/*/>', true],
    ['/user/{sub}/>', '/user/alice/*', true],
    ['/user/{sub}/>', '/user/*/x', false],
    ['/a/*', '/a/*/b', false],
  ];
  for (const [claim, pattern, want] of cases) expect([claim, pattern, coversPattern(c(claim), pattern, 'alice')]).toEqual([claim, pattern, want]);
});

describe('on a node with --auth jwt', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer(['--auth', 'jwt', '--jwt-secret', SECRET, '--workgroups', '2']);
  });
  afterAll(async () => {
    await server.stop();
  });

  test('a covered pattern is served; others are FORBIDDEN; a refresh that stops covering it revokes it', async () => {
    const c = await connect(server.url(`/v1/ws?token=${await token('alice', ['/px/*', '/user/{sub}/>'])}`));
    expect((await c.sub(['/px/*'])).ok).toBe(true);
    expect((await c.sub(['/user/alice/*'])).ok).toBe(true);
    for (const p of ['/px/>', '/other/*', '/user/*/x']) expect((await c.sub([p])).error).toMatchObject({ code: 'FORBIDDEN' });
    const pub = await connect(server.url(`/v1/ws?token=${await token('bob', ['/>'])}`));
    await pub.pub('/px/a', 1);
    await pub.pub('/user/alice/inbox', 2);
    await c.until(() => c.deliveries.length === 2, 5000, 'two deliveries');
    const refresh = await c.request({ op: 'auth', token: await token('alice', ['/user/{sub}/>']) });
    expect(refresh.ok).toBe(true);
    expect(refresh.revoked).toEqual(expect.arrayContaining(['/px/*']));
    await pub.pub('/px/a', 3);
    await pub.pub('/user/alice/inbox', 4);
    await c.until(() => c.deliveries.length === 3, 5000, 'the inbox only');
    expect(c.deliveries.map((d) => d.data)).toEqual([1, 2, 4]);
    await Promise.all([c.close(), pub.close()]);
  });
});
