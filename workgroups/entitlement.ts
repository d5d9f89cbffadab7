// What each session of a workgroup may do (--auth jwt): its grant and its
// token's expiry in the slab, its subject beside it (like the sockets), the
// verifier and the grant table. Sessions ask it at the upgrade and sweep
// expiries with it; commands ask it once per sub, pub and auth command.
// With --auth none it is off: every check is one boolean.
//
// A session's permissions cost 4 B beside the slab's 8 (its subject's
// 32-bit hash, for the refresh's "same sub" check) when its grant's
// patterns do not name {sub}; when they do, the subject's string too (its
// pointer 8 B, the string 16 B + its characters, rounded up to 8).
import type { HttpRequest } from '../native-io/uws';
import type { AuthOptions } from '../shm/workgroup-init';
import { GrantTable, Verifier, bearerOf, type AuthFailure, type Verified } from './auth';
import { SessionFlag, type SessionSlab } from './slab';

/** What the expiry sweep says of a session. */
export const AUTH_OK = 0;
export const AUTH_EXPIRED = 1;
export const AUTH_TIMED_OUT = 2;

export class Entitlement {
  readonly on: boolean;
  readonly verifier: Verifier | null;
  readonly grants = new GrantTable();
  /** The subject of each slot whose grant names {sub} (null or absent otherwise: a token without sub, or not kept). */
  private readonly subjects: (string | null)[] = [];
  /** Each slot's subject as subjectHash() (0: none). */
  private subjectHashes = new Uint32Array(0);

  constructor(
    readonly options: AuthOptions,
    private readonly slab: SessionSlab,
  ) {
    this.on = options.mode === 'jwt';
    this.verifier = this.on ? new Verifier(options, this.grants) : null;
  }

  /** The token of an upgrade: the token query parameter, else Authorization: Bearer; '' when none. */
  static tokenOf(req: HttpRequest): string {
    const q = req.getQuery('token');
    if (q !== undefined && q !== '') return q;
    return bearerOf(req.getHeader('authorization'));
  }

  /** Verifies a token (the cache first). The Verified holds a grant reference: attach() it or release() it. */
  verify(token: string, nowSec: number): Promise<Verified | AuthFailure> {
    return (this.verifier as Verifier).verify(token, nowSec);
  }

  /** The verdict on a token when it needs no later turn (cached, or an HS token checked in place), else null: verify() it. */
  verifyNow(token: string, nowSec: number): Verified | AuthFailure | null {
    return (this.verifier as Verifier).verifyNow(token, nowSec);
  }

  release(v: Verified): void {
    this.grants.release(v.grant.id);
  }

  /** The session now holds this token (its grant reference moves to the session; the old one, if any, is released). */
  attach(slot: number, v: Verified): void {
    this.grants.release(this.slab.grant(slot));
    this.slab.setAuth(slot, v.grant.id, v.exp, false);
    this.setSubject(slot, v.sub, v.grant.usesSubject);
  }

  private setSubject(slot: number, sub: string | null, keep: boolean): void {
    if (keep || slot < this.subjects.length) this.subjects[slot] = keep ? sub : null;
    if (slot >= this.subjectHashes.length) {
      const bigger = new Uint32Array(Math.max(1024, this.subjectHashes.length * 2, slot + 1));
      bigger.set(this.subjectHashes);
      this.subjectHashes = bigger;
    }
    this.subjectHashes[slot] = subjectHash(sub);
  }

  /** Whether a token's subject is the session's (a refresh must keep it). */
  sameSubject(slot: number, sub: string | null): boolean {
    const kept = this.subjects[slot];
    if (kept !== undefined && kept !== null) return kept === sub;
    return slot < this.subjectHashes.length && this.subjectHashes[slot] === subjectHash(sub);
  }

  /** An unauthenticated session: only auth and ping until one is accepted, for timeoutSeconds. */
  pending(slot: number, nowSec: number): void {
    this.slab.setAuth(slot, 0, nowSec + this.options.timeoutSeconds, true);
    this.setSubject(slot, null, false);
  }

  isPending(slot: number): boolean {
    return (this.slab.flags(slot) & SessionFlag.AUTH_PENDING) !== 0;
  }

  /** The session closed: its grant reference goes. */
  detach(slot: number): void {
    if (!this.on) return;
    this.grants.release(this.slab.grant(slot));
    this.slab.setAuth(slot, 0, 0, false);
    this.setSubject(slot, null, false);
  }

  canSubscribe(slot: number, topic: string): boolean {
    if (!this.on) return true;
    const g = this.grants.get(this.slab.grant(slot));
    return g !== undefined && g.subscribe.allows(topic, this.subjects[slot] ?? null);
  }

  /** A wildcard subscription: allowed when one of the token's subscribe patterns covers all it can match. */
  canSubscribePattern(slot: number, pattern: string): boolean {
    if (!this.on) return true;
    const g = this.grants.get(this.slab.grant(slot));
    return g !== undefined && g.subscribe.allowsPattern(pattern, this.subjects[slot] ?? null);
  }

  canPublish(slot: number, topic: string): boolean {
    if (!this.on) return true;
    const g = this.grants.get(this.slab.grant(slot));
    return g !== undefined && g.publish.allows(topic, this.subjects[slot] ?? null);
  }

  /** Whether a verified token allows subscribing to a topic (a refresh's check of what the session holds). */
  static allowsSubscribe(v: Verified, topic: string): boolean {
    return v.grant.subscribe.allows(topic, v.sub);
  }

  /** The sweep's verdict on an open session at nowSec: AUTH_OK, AUTH_EXPIRED or AUTH_TIMED_OUT. */
  check(slot: number, nowSec: number): number {
    const exp = this.slab.tokenExpSec(slot);
    if (exp === 0 || nowSec < exp + (this.isPending(slot) ? 0 : this.options.clockSkewSeconds)) return AUTH_OK;
    return this.isPending(slot) ? AUTH_TIMED_OUT : AUTH_EXPIRED;
  }
}

/** A subject as 32 bits (FNV-1a over its UTF-16 code units; never 0, which is no subject). */
export function subjectHash(sub: string | null): number {
  if (sub === null) return 0;
  let h = 0x811c9dc5;
  for (let i = 0; i < sub.length; i++) h = Math.imul(h ^ sub.charCodeAt(i), 0x01000193);
  return h >>> 0 || 1;
}
