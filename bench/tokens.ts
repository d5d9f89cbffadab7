// Tokens for runs against a node started with --auth jwt (bench run --auth
// jwt): each benchsub session gets its own HS256 token, minted with jose in
// the benchsub process that opens it, and benchpub one for itself. The
// secret is random per run and reaches the node through C10M_JWT_SECRET
// (never a flag: flags show in ps).
import { randomBytes } from 'node:crypto';
import { SignJWT } from 'jose';

/** A token lives this long: longer than any run, so that no session is closed with 4003 while measured. */
const TOKEN_LIFETIME_SECONDS = 4 * 3600;

/** A fresh HS256 secret (32 random bytes, hex). */
export function newJwtSecret(): string {
  return randomBytes(32).toString('hex');
}

/** The claims of benchsub session n: its own subject, and the bench's topic tree to subscribe to. */
export function sessionClaims(n: number): { sub: string; subscribe: string[] } {
  return { sub: `s${n}`, subscribe: ['/bench/>'] };
}

/** benchpub's claims: publish anywhere under the bench's topic tree. */
export const PUBLISHER_CLAIMS = { sub: 'benchpub', publish: ['/bench/>'] };

/** One HS256 token for these claims (`sub` becomes the subject). */
export async function mintToken(secret: string, claims: { sub: string; subscribe?: string[]; publish?: string[] }): Promise<string> {
  const { sub, ...rest } = claims;
  return new SignJWT(rest)
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject(sub)
    .setIssuedAt()
    .setExpirationTime(Math.floor(Date.now() / 1000) + TOKEN_LIFETIME_SECONDS)
    .sign(Buffer.from(secret, 'utf8'));
}

/** Tokens of sessions first … first + count − 1, in order. */
export async function mintSessionTokens(secret: string, first: number, count: number): Promise<string[]> {
  const out: string[] = new Array<string>(count);
  for (let i = 0; i < count; i++) out[i] = await mintToken(secret, sessionClaims(first + i));
  return out;
}
