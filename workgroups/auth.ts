// Entitlement (--auth jwt): a token is verified once (jose: signature,
// alg, exp and nbf with a small clock skew, iss and aud when configured),
// its subscribe and publish claims compiled once into pattern sets
// (protocol/patterns.ts), and the session keeps three words in the slab:
// its grant's id, its token's expiry, and (beside the slab, like the
// sockets) its subject's hash, the string too when its patterns name {sub}
// (workgroups/entitlement.ts). A check is per command, never per message.
//
// Grants are interned by their claims: a million users whose tokens name
// the same patterns (with {sub} standing for each user) share one grant;
// the subject is what differs. An HS256/384/512 token that is plainly valid
// is checked in place (one HMAC, no later turn, no cache entry: cheaper
// than jose's asynchronous path, whose buffers fragment the workgroup's
// malloc arena by ~100 B per verification, and than a cached token's
// ~300 B); jose decides every other token (public keys, a JWKS, anything
// unusual, and every refusal, so that its reasons are the ones given), and
// those are cached (bounded), so that a client that reconnects with the
// same token costs no second signature check.
import { createHmac, createPublicKey, createSecretKey, timingSafeEqual, type KeyObject } from 'node:crypto';
import type { JWTPayload, JWTVerifyGetKey } from 'jose';
import { MAX_AUTH_TOKEN_CHARS } from '../protocol/codec';
import { ErrorCode } from '../protocol/errors';
import { PatternSet } from '../protocol/patterns';
import type { AuthOptions } from '../shm/workgroup-init';

/** Longest token accepted (at the upgrade, in band, over HTTP). */
export const MAX_TOKEN_CHARS = MAX_AUTH_TOKEN_CHARS;
/** Verified tokens kept, per workgroup, so that a reconnect with the same token costs no signature check. */
const VERIFIED_CACHE_ENTRIES = 4096;
/** Longest subject kept (a topic segment cannot be longer anyway). */
const MAX_SUBJECT_CHARS = 255;

/** What a verified token grants: interned by its claims (id > 0), shared by every session whose token names them. */
export interface Grant {
  readonly id: number;
  /** The claims it was made of, as interned. */
  readonly key: string;
  readonly subscribe: PatternSet;
  readonly publish: PatternSet;
  /** Whether a pattern names {sub}: only then does a session keep its subject's string (workgroups/entitlement.ts). */
  readonly usesSubject: boolean;
}

/** A verified token: its grant, subject and expiry (unix seconds, 0: none). */
export interface Verified {
  grant: Grant;
  sub: string | null;
  exp: number;
}

export interface AuthFailure {
  code: typeof ErrorCode.UNAUTHORIZED | typeof ErrorCode.TOKEN_EXPIRED | typeof ErrorCode.UNAVAILABLE;
  message: string;
}

export function isFailure(v: Verified | AuthFailure): v is AuthFailure {
  return (v as AuthFailure).code !== undefined;
}

/** The credential of `Authorization: Bearer <credential>` (scheme case-insensitive), '' when none. */
export function bearerOf(header: string): string {
  return header.length > 7 && header.slice(0, 7).toLowerCase() === 'bearer ' ? header.slice(7).trim() : '';
}

/** WWW-Authenticate of a 401 for a credential that was sent and refused (RFC 6750 3.1). */
export function bearerChallenge(f: AuthFailure): string {
  return `Bearer error="invalid_token", error_description="${f.code === ErrorCode.TOKEN_EXPIRED ? 'the token expired' : 'the credential is not valid'}"`;
}

/** The grants of one workgroup, interned by claims and counted by reference (sessions and the verified cache). */
export class GrantTable {
  private readonly byKey = new Map<string, Grant>();
  private grants: (Grant | undefined)[] = [undefined];
  private refs = new Uint32Array(64);
  private readonly freeIds: number[] = [];

  get size(): number {
    return this.byKey.size;
  }

  /** The grant for these claims (one more reference), or a sentence saying what is wrong with them. */
  acquire(subscribe: unknown, publish: unknown): Grant | string {
    const key = JSON.stringify([subscribe ?? null, publish ?? null]);
    const known = this.byKey.get(key);
    if (known !== undefined) {
      this.refs[known.id]++;
      return known;
    }
    const s = PatternSet.compile(subscribe, 'subscribe');
    if (typeof s === 'string') return s;
    const p = PatternSet.compile(publish, 'publish');
    if (typeof p === 'string') return p;
    const id = this.freeIds.pop() ?? this.grants.length;
    const usesSubject = s.patterns.some((x) => x.usesSubject) || p.patterns.some((x) => x.usesSubject);
    const grant: Grant = { id, key, subscribe: s, publish: p, usesSubject };
    if (id >= this.refs.length) {
      const r = new Uint32Array(this.refs.length * 2);
      r.set(this.refs);
      this.refs = r;
    }
    this.grants[id] = grant;
    this.refs[id] = 1;
    this.byKey.set(key, grant);
    return grant;
  }

  /** One more reference to a grant already held. */
  retain(id: number): void {
    if (id !== 0) this.refs[id]++;
  }

  release(id: number): void {
    if (id === 0 || this.refs[id] === 0) return;
    if (--this.refs[id] > 0) return;
    this.byKey.delete((this.grants[id] as Grant).key);
    this.grants[id] = undefined;
    this.freeIds.push(id);
  }

  get(id: number): Grant | undefined {
    return this.grants[id];
  }
}

type Jose = typeof import('jose');
let joseModule: Jose | null = null;
/** jose, loaded at the first Verifier: a node without --auth jwt never pays for it (1.1 MB of heap per isolate). */
function jose(): Jose {
  return (joseModule ??= require('jose') as Jose);
}

/** Verifies tokens with the configured keys; one per workgroup. */
export class Verifier {
  private readonly secret: KeyObject | null;
  private readonly publicKey: KeyObject | null;
  private readonly jwks: JWTVerifyGetKey | null;
  private readonly algorithms: string[];
  private readonly cache = new Map<string, Verified>();

  constructor(
    private readonly options: AuthOptions,
    readonly grants: GrantTable,
  ) {
    this.secret = options.secret === '' ? null : createSecretKey(Buffer.from(options.secret, 'utf8'));
    this.publicKey = options.publicKeyPem === '' ? null : createPublicKey(options.publicKeyPem);
    this.jwks =
      options.jwksUrl === '' ? null : jose().createRemoteJWKSet(new URL(options.jwksUrl), { cooldownDuration: options.jwksCooldownSeconds * 1000, timeoutDuration: 5000, cacheMaxAge: 10 * 60_000 });
    const algs = new Set<string>();
    if (this.secret !== null) for (const a of ['HS256', 'HS384', 'HS512']) algs.add(a);
    if (this.publicKey !== null) for (const a of algorithmsFor(this.publicKey)) algs.add(a);
    if (this.jwks !== null) for (const a of ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA']) algs.add(a);
    this.algorithms = [...algs];
  }

  /** A cached verification still valid at nowSec (one more reference to its grant), or null. No signature check. */
  cached(token: string, nowSec: number): Verified | null {
    const v = this.cache.get(token);
    if (v === undefined) return null;
    if (v.exp !== 0 && v.exp + this.options.clockSkewSeconds <= nowSec) {
      this.cache.delete(token);
      this.grants.release(v.grant.id);
      return null;
    }
    this.grants.retain(v.grant.id);
    return v;
  }

  /**
   * A verdict without a later turn (one more grant reference when verified), or null when jose must decide:
   * the cache, then an HS256/384/512 token checked in place when it is plainly valid. Never throws.
   */
  verifyNow(token: string, nowSec: number): Verified | AuthFailure | null {
    const hit = this.cached(token, nowSec);
    if (hit !== null) return hit;
    if (token.length === 0 || token.length > MAX_TOKEN_CHARS) return { code: ErrorCode.UNAUTHORIZED, message: `a token is 1 to ${MAX_TOKEN_CHARS} characters` };
    const payload = this.secret === null ? null : hmacClaims(token, this.secret, this.options, nowSec);
    return payload === null ? null : this.grantOf(payload, null);
  }

  /** Verifies a token: its grant (one more reference, the caller's to release) or why not. Never throws. */
  async verify(token: string, nowSec: number): Promise<Verified | AuthFailure> {
    const now = this.verifyNow(token, nowSec);
    if (now !== null) return now;
    let payload: JWTPayload;
    try {
      const r = await jose().jwtVerify(token, (header, t) => this.keyFor(header.alg, header, t), {
        algorithms: this.algorithms,
        issuer: this.options.issuer === '' ? undefined : this.options.issuer,
        audience: this.options.audience === '' ? undefined : this.options.audience,
        clockTolerance: this.options.clockSkewSeconds,
        currentDate: new Date(nowSec * 1000),
      });
      payload = r.payload;
    } catch (err) {
      return failureOf(err);
    }
    return this.grantOf(payload, token);
  }

  /** The grant and subject of verified claims (one more grant reference), cached under `token` unless null. */
  private grantOf(payload: JWTPayload, token: string | null): Verified | AuthFailure {
    const sub = payload.sub;
    if (sub !== undefined && (typeof sub !== 'string' || sub.length > MAX_SUBJECT_CHARS))
      return { code: ErrorCode.UNAUTHORIZED, message: `the token's sub must be a string of at most ${MAX_SUBJECT_CHARS} characters` };
    const grant = this.grants.acquire(payload.subscribe, payload.publish);
    if (typeof grant === 'string') return { code: ErrorCode.UNAUTHORIZED, message: grant };
    const v: Verified = { grant, sub: sub ?? null, exp: typeof payload.exp === 'number' ? Math.floor(payload.exp) : 0 };
    if (token === null) return v;
    // The cache holds its own reference.
    if (this.cache.size >= VERIFIED_CACHE_ENTRIES) {
      const [oldToken, old] = this.cache.entries().next().value as [string, Verified];
      this.cache.delete(oldToken);
      this.grants.release(old.grant.id);
    }
    this.grants.retain(grant.id);
    this.cache.set(token, v);
    return v;
  }

  private keyFor(alg: string | undefined, header: Parameters<JWTVerifyGetKey>[0], token: Parameters<JWTVerifyGetKey>[1]): KeyObject | ReturnType<JWTVerifyGetKey> {
    if (alg !== undefined && alg.startsWith('HS')) {
      if (this.secret !== null) return this.secret;
    } else if (this.jwks !== null && (header.kid !== undefined || this.publicKey === null)) return this.jwks(header, token);
    else if (this.publicKey !== null) return this.publicKey;
    throw new (jose().errors.JOSEAlgNotAllowed)(`no key for alg ${String(alg)}`);
  }
}

const HMAC_DIGESTS: Record<string, string> = { HS256: 'sha256', HS384: 'sha384', HS512: 'sha512' };
const utf8 = new TextDecoder();

/** A base64url segment as JSON (decoded as jose decodes it), or undefined. */
function jsonOf(segment: string): unknown {
  try {
    return JSON.parse(utf8.decode(Buffer.from(segment, 'base64url'))) as unknown;
  } catch {
    return undefined;
  }
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * The claims of a compact HS256/384/512 JWT signed with this secret and valid at nowSec by every check jwtVerify
 * makes with our options (alg, no crit, a JSON object, iss and aud when configured, iat a number, nbf and exp with
 * the clock skew), or null: then jose decides (a refusal comes from jose, with its reason). Accepts nothing jose
 * would refuse: the signature is compared with the canonical base64url of the HMAC (a token jose would accept in
 * another encoding of its signature goes to jose).
 */
export function hmacClaims(token: string, secret: KeyObject, o: AuthOptions, nowSec: number): JWTPayload | null {
  const a = token.indexOf('.');
  const b = a < 0 ? -1 : token.indexOf('.', a + 1);
  if (b < 0 || token.indexOf('.', b + 1) >= 0) return null;
  const header = jsonOf(token.slice(0, a));
  if (!isPlainObject(header) || header.crit !== undefined || typeof header.alg !== 'string') return null;
  const digest = HMAC_DIGESTS[header.alg];
  if (digest === undefined) return null;
  const mac = createHmac(digest, secret).update(token.slice(0, b)).digest('base64url');
  const signature = token.slice(b + 1);
  if (mac.length !== signature.length || !timingSafeEqual(Buffer.from(mac, 'latin1'), Buffer.from(signature, 'latin1'))) return null;
  const p = jsonOf(token.slice(a + 1, b));
  if (!isPlainObject(p)) return null;
  if (o.issuer !== '' && p.iss !== o.issuer) return null;
  if (o.audience !== '' && !(p.aud === o.audience || (Array.isArray(p.aud) && p.aud.includes(o.audience)))) return null;
  if (p.iat !== undefined && typeof p.iat !== 'number') return null;
  if (p.nbf !== undefined && (typeof p.nbf !== 'number' || p.nbf > nowSec + o.clockSkewSeconds)) return null;
  if (p.exp !== undefined && (typeof p.exp !== 'number' || p.exp <= nowSec - o.clockSkewSeconds)) return null;
  return p as JWTPayload;
}

/** The JWS algorithms a public key can verify. */
export function algorithmsFor(key: KeyObject): string[] {
  switch (key.asymmetricKeyType) {
    case 'rsa':
      return ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512'];
    case 'rsa-pss':
      return ['PS256', 'PS384', 'PS512'];
    case 'ec': {
      const curve = key.asymmetricKeyDetails?.namedCurve;
      return curve === 'prime256v1' ? ['ES256'] : curve === 'secp384r1' ? ['ES384'] : curve === 'secp521r1' ? ['ES512'] : [];
    }
    case 'ed25519':
    case 'ed448':
      return ['EdDSA'];
    default:
      return [];
  }
}

/** A jose error as the client is told it (never a stack, never the key). */
function failureOf(err: unknown): AuthFailure {
  const joseErrors = jose().errors;
  if (err instanceof joseErrors.JWTExpired) return { code: ErrorCode.TOKEN_EXPIRED, message: 'the token has expired (exp); fetch a new one' };
  if (err instanceof joseErrors.JWTClaimValidationFailed) {
    if (err.claim === 'nbf') return { code: ErrorCode.TOKEN_EXPIRED, message: 'the token is not valid yet (nbf)' };
    return { code: ErrorCode.UNAUTHORIZED, message: `the token's ${err.claim} claim is not accepted: ${err.reason}` };
  }
  if (err instanceof joseErrors.JWKSTimeout || (err instanceof Error && !(err instanceof joseErrors.JOSEError) && /fetch|ECONN|ENOTFOUND|socket/i.test(err.message))) {
    return { code: ErrorCode.UNAVAILABLE, message: 'the key set (--jwks-url) could not be fetched; retry shortly' };
  }
  if (err instanceof joseErrors.JWKSNoMatchingKey) return { code: ErrorCode.UNAUTHORIZED, message: 'no key of the key set matches the token (kid)' };
  if (err instanceof joseErrors.JOSEAlgNotAllowed) return { code: ErrorCode.UNAUTHORIZED, message: 'the token is signed with an algorithm this server does not accept' };
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) return { code: ErrorCode.UNAUTHORIZED, message: 'the token signature is not valid' };
  if (err instanceof joseErrors.JOSEError) return { code: ErrorCode.UNAUTHORIZED, message: 'the token is not a valid JWT' };
  return { code: ErrorCode.UNAUTHORIZED, message: 'the token could not be verified' };
}
