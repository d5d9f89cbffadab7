// The HS* check in place (workgroups/auth.ts hmacClaims) against jose's
// jwtVerify with the verifier's options: whatever the check accepts, jose
// accepts with the same claims (never wider), and a plain valid token is
// taken in place (not handed to jose). Tokens are signed here, including
// crafted headers and encodings jose's signer would not produce.
import { createHmac, createSecretKey } from 'node:crypto';
import fc from 'fast-check';
import { jwtVerify } from 'jose';
import { hmacClaims } from '../workgroups/auth';
import type { AuthOptions } from '../shm/workgroup-init';

const SECRET = 'a test secret of some length, 32+ bytes long';
const KEY = createSecretKey(Buffer.from(SECRET, 'utf8'));
const NOW = 1_800_000_000;
const DIGEST: Record<string, string> = { HS256: 'sha256', HS384: 'sha384', HS512: 'sha512' };

function options(o: Partial<AuthOptions> = {}): AuthOptions {
  return { mode: 'jwt', secret: SECRET, publicKeyPem: '', jwksUrl: '', jwksCooldownSeconds: 30, issuer: '', audience: '', clockSkewSeconds: 5, timeoutSeconds: 10, apiKeys: [], ...o };
}

const b64 = (v: unknown) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v), 'utf8').toString('base64url');

/** A compact JWS over these raw segments, signed with `secret` by the header's alg (HS256 when it names none). */
function sign(header: unknown, payload: unknown, secret = SECRET): string {
  const input = `${b64(header)}.${b64(payload)}`;
  const alg = (header as { alg?: string }).alg ?? 'HS256';
  return `${input}.${createHmac(DIGEST[alg] ?? 'sha256', secret)
    .update(input)
    .digest('base64url')}`;
}

async function jose(token: string, o: AuthOptions): Promise<Record<string, unknown> | null> {
  try {
    const r = await jwtVerify(token, KEY, {
      algorithms: ['HS256', 'HS384', 'HS512'],
      issuer: o.issuer === '' ? undefined : o.issuer,
      audience: o.audience === '' ? undefined : o.audience,
      clockTolerance: o.clockSkewSeconds,
      currentDate: new Date(NOW * 1000),
    });
    return r.payload as Record<string, unknown>;
  } catch {
    return null;
  }
}

/** The check in place never accepts what jose refuses, and gives jose's claims. */
async function agrees(token: string, o: AuthOptions): Promise<'in place' | 'to jose'> {
  const mine = hmacClaims(token, KEY, o, NOW);
  if (mine !== null) expect(await jose(token, o)).toEqual(mine);
  return mine === null ? 'to jose' : 'in place';
}

const claims = { sub: 'alice', subscribe: ['/user/{sub}/>'], exp: NOW + 60, iat: NOW };
const H = { alg: 'HS256', typ: 'JWT' };
const last = (t: string, c: string) => t.slice(0, -1) + c;

test.each([
  ['a plain HS256 token', sign(H, claims), {}, 'in place'],
  ['HS384', sign({ alg: 'HS384' }, claims), {}, 'in place'],
  ['HS512', sign({ alg: 'HS512' }, claims), {}, 'in place'],
  ['no exp, no iat', sign(H, { sub: 'x' }), {}, 'in place'],
  ['a non-ASCII subject', sign(H, { sub: 'zoë-日本' }), {}, 'in place'],
  ['exp within the clock skew', sign(H, { exp: NOW - 4 }), {}, 'in place'],
  ['nbf within the clock skew', sign(H, { nbf: NOW + 5 }), {}, 'in place'],
  ['iss and aud as configured (aud a list)', sign(H, { iss: 'me', aud: ['x', 'you'] }), { issuer: 'me', audience: 'you' }, 'in place'],
  ['another secret', sign(H, claims, 'another secret'), {}, 'to jose'],
  ['alg none', `${b64({ alg: 'none' })}.${b64(claims)}.`, {}, 'to jose'],
  [
    'alg RS256 over an HMAC',
    `${sign(H, claims)
      .split('.')
      .slice(0, 2)
      .join('.')
      .replace(b64(H), b64({ alg: 'RS256' }))}.x`,
    {},
    'to jose',
  ],
  [
    'the alg of the header swapped (HS512 header, HS256 MAC)',
    (() => {
      const input = `${b64({ alg: 'HS512' })}.${b64(claims)}`;
      return `${input}.${createHmac('sha256', SECRET).update(input).digest('base64url')}`;
    })(),
    {},
    'to jose',
  ],
  ['a crit header', sign({ alg: 'HS256', crit: ['exp'] }, claims), {}, 'to jose'],
  ['crit b64 false', sign({ alg: 'HS256', crit: ['b64'], b64: false }, claims), {}, 'to jose'],
  ['expired beyond the skew', sign(H, { exp: NOW - 5 }), {}, 'to jose'],
  ['not yet valid beyond the skew', sign(H, { nbf: NOW + 6 }), {}, 'to jose'],
  ['exp a string', sign(H, { exp: String(NOW + 60) }), {}, 'to jose'],
  ['iat a string', sign(H, { iat: 'now' }), {}, 'to jose'],
  ['another issuer', sign(H, { iss: 'them' }), { issuer: 'me' }, 'to jose'],
  ['no issuer', sign(H, {}), { issuer: 'me' }, 'to jose'],
  ['another audience', sign(H, { aud: ['x'] }), { audience: 'you' }, 'to jose'],
  ['claims a list', sign(H, [1, 2]), {}, 'to jose'],
  ['claims not JSON', sign(H, 'not json'), {}, 'to jose'],
  ['a header not JSON', sign('{alg', claims), {}, 'to jose'],
  ['a header a list', sign(['HS256'], claims), {}, 'to jose'],
  ['four segments', `${sign(H, claims)}.x`, {}, 'to jose'],
  ['two segments', sign(H, claims).split('.').slice(0, 2).join('.'), {}, 'to jose'],
  ['the signature padded', `${sign(H, claims)}=`, {}, 'to jose'],
  ['the signature one character changed', last(sign(H, claims), 'A'), {}, 'to jose'],
] as const)('%s', async (_name, token, o, expected) => {
  expect(await agrees(token, options(o))).toBe(expected);
});

test('over generated claims and signatures, never wider than jose', async () => {
  const time = fc.oneof(fc.constant(undefined), fc.integer({ min: NOW - 20, max: NOW + 20 }), fc.double({ min: NOW - 20, max: NOW + 20, noNaN: true }), fc.string());
  await fc.assert(
    fc.asyncProperty(
      fc.record({ exp: time, nbf: time, iat: time, sub: fc.oneof(fc.string(), fc.integer()), aud: fc.oneof(fc.constant(undefined), fc.constant('you'), fc.array(fc.constantFrom('you', 'x'))) }),
      fc.constantFrom('HS256', 'HS384', 'HS512', 'none'),
      fc.integer({ min: 0, max: 2 }),
      async (c, alg, tamper) => {
        const payload = Object.fromEntries(Object.entries(c).filter(([, v]) => v !== undefined));
        let token = sign({ alg }, payload);
        if (tamper === 1) token = last(token, token.endsWith('A') ? 'B' : 'A');
        if (tamper === 2) token = token.replace('.', '.e');
        await agrees(token, options({ audience: c.aud === undefined ? '' : 'you' }));
      },
    ),
    { numRuns: 300 },
  );
});
