// POST /v1/publish (and its CORS preflight): the request's framing, origin
// and content type, the body, and the answer. The Workgroup sequences the
// message (or sends it to the topic's owner) through HttpPublishHost.
//
// Pipelining. uWS v20.30 (HttpContext.h, the request handler given to the
// parser) closes the connection when a request's head is parsed while an
// earlier response on it is still pending ("denying async pipelining ... We
// still support sync pipelining"); the earlier request gets onAborted. The
// parser handles every request in one read before it returns, so pause()
// does not help: two requests in one write, or two writes that land in the
// kernel buffer while the socket is paused, reach the parser together.
// Seen on loopback: 3 requests in one write with a 50 ms async answer got
// nothing back and a closed socket; with pause()/resume() and separate
// writes the first was answered and the second aborted. So every publish
// is answered before its request handler returns: a topic of this
// workgroup is sequenced in place; a topic of another workgroup waits here,
// reading our inbound rings (the owner's ack, and anything else that comes,
// so that two workgroups waiting on each other both go on), for at most
// HTTP_ACK_WAIT_MS, then 504 OWNER_TIMEOUT; an owner that has not ticked for
// OWNER_STALE_MS is not waited for at all (503 OVERLOADED, nothing
// published), so one stalled workgroup does not stall the others through
// their HTTP publishes. The cost: this workgroup's loop
// stands still for one round trip to the owner per HTTP publish (tens of
// microseconds when the owner is idle, its current turn when it is busy).
//
// --auth jwt. Every publish carries `Authorization: Bearer <credential>`:
// an API key of --api-keys-file (looked up by the SHA-256 digest of the
// credential, so that no comparison runs over the key's own bytes) or a
// JWT (its publish claim, {sub} its sub). A key, an HS* JWT plainly valid
// and a JWT this workgroup's verifier has cached (workgroups/auth.ts) are
// checked in place and the publish keeps the path above. Any other JWT is
// verified by jose, which is asynchronous: the verification starts when
// the head is read (while the body arrives) and the publish is answered
// from a later turn, like --engine redis publishes. The cost: the first
// publish of a new token on a connection may be answered asynchronously,
// and then a request pipelined behind it on that connection is refused by
// uWS (the connection closed, the first request aborted); later publishes
// with the same token are checked in place. Seen on loopback: RS*/ES*/EdDSA
// (crypto.verify on the thread pool) and --jwks-url (a fetch) answer in a
// later turn; an HS* token jose decides (a refusal) resolves in the
// microtasks Node runs as the uWS handler returns, before the next
// pipelined request is parsed.
import { createHash } from 'node:crypto';
import type { HttpRequest, HttpResponse, TemplatedApp } from '../native-io/uws';
import { ENCODING_JSON, ENCODING_MSGPACK, type EncodingId, unpackr } from '../protocol/codec';
import { ErrorCode, ProtocolError } from '../protocol/errors';
import { findRawData, readRawEnvelope } from '../protocol/msgpack-pub';
import { validatePublishFields, type PublishFields } from '../protocol/publish';
import { PatternSet } from '../protocol/patterns';
import { Stat } from '../protocol/stats';
import { MAX_TOKEN_CHARS, bearerChallenge, bearerOf, isFailure, type AuthFailure, type Verified } from './auth';
import { CorsPolicy } from './cors';
import type { Entitlement } from './entitlement';
import type { Logger } from './log';
import type { WorkgroupOptions } from '../shm/workgroup-init';
import type { PublishRequest } from './ports';

/** Longest an HTTP publish waits for another workgroup's ack, its loop stopped (see above). */
export const HTTP_ACK_WAIT_MS = 500;
/** How long a browser may cache a preflight answer. */
const PREFLIGHT_MAX_AGE_SECONDS = '600';
const ACCEPTED_TYPES = 'application/json or application/msgpack';
const OVERLOADED_MESSAGE = 'the server is overloaded (its workgroups are behind on deliveries); nothing was published; retry shortly';

/** What a publish's credential allows: its publish patterns and the subject {sub} stands for. */
interface Allowed {
  readonly publish: PatternSet;
  readonly sub: string | null;
  /** For FORBIDDEN's message: "API key billing", "this token". */
  readonly who: string;
}

/** One HTTP publish in flight: its response, whether it is finished, and the CORS origin to answer to. */
export class HttpExchange {
  /** Answered, or the client went away: the response must not be touched. */
  finished = false;
  constructor(
    readonly res: HttpResponse,
    /** Access-Control-Allow-Origin of every answer, or null (no CORS headers). */
    readonly allowOrigin: string | null,
  ) {}
}

/** What the Workgroup lends the endpoint. */
export interface HttpPublishHost {
  readonly stats: Float64Array;
  readonly log: Logger;
  readonly options: WorkgroupOptions;
  readonly count: number;
  /** Largest body accepted: --max-payload-bytes plus room for the envelope. */
  readonly maxBodyBytes: number;
  isDraining(): boolean;
  overloaded(): boolean;
  makePublish(topic: string, encoding: EncodingId, data: unknown, retain: boolean, ts: number | null, raw: Uint8Array | null): PublishRequest | ProtocolError;
  /**
   * Sequences the publish (or sends it to its owner) with an ack target for
   * `ex`; answer() is called when the ack comes. Returns its token.
   */
  submit(req: PublishRequest, ex: HttpExchange): number;
  /** False when the topic's owner is another workgroup that has not ticked lately (stalled, restarting): waiting for it would stop this loop for nothing. */
  ownerResponsive(topic: string): boolean;
  /** Waits (loop stopped, rings read) until the ack of `token` was answered; false after timeoutMs (the ack target is then dropped). */
  awaitAck(token: number, timeoutMs: number): boolean;
  /**
   * The engine answers later, from another event-loop turn (--engine redis:
   * a Redis round trip cannot be waited for with the loop stopped): the
   * answer is written when the ack comes, and a pipelined request on the
   * same connection is refused by uWS (see above).
   */
  readonly asyncAcks: boolean;
  /** --auth jwt (entitlement.on): the verifier of the publishes' tokens. */
  readonly entitlement: Entitlement;
  /** The workgroup's clock (unix seconds, updated once a second). */
  nowSec(): number;
  /** False once the workgroup closed: a verification that ends after it answers nothing. */
  isOpen(): boolean;
}

/** The request headers we read, all of them seen through forEach (getHeader returns only the first of a name). */
interface RequestHeads {
  contentLength: string;
  contentLengths: number;
  transferEncoding: boolean;
  contentType: string;
  origin: string;
  host: string;
  /** Read only with --auth jwt. */
  authorization: string;
  authorizations: number;
}

function readHeads(req: HttpRequest, withAuth: boolean): RequestHeads {
  const h: RequestHeads = { contentLength: '', contentLengths: 0, transferEncoding: false, contentType: '', origin: '', host: '', authorization: '', authorizations: 0 };
  // Keys come lowercased from uWS.
  req.forEach((key, value) => {
    if (key === 'content-length') {
      h.contentLengths++;
      h.contentLength = value;
    } else if (key === 'transfer-encoding') h.transferEncoding = true;
    else if (key === 'content-type') h.contentType = value;
    else if (key === 'origin') h.origin = value;
    else if (key === 'host') h.host = value;
    else if (withAuth && key === 'authorization') {
      h.authorizations++;
      h.authorization = value;
    }
  });
  return h;
}

/** The index of an API key: its SHA-256 digest (base64). */
function keyDigest(credential: string): string {
  return createHash('sha256').update(credential, 'utf8').digest('base64');
}

/** No Authorization header (or not Bearer): 401 with a bare `WWW-Authenticate: Bearer`. */
const NO_CREDENTIAL: AuthFailure = { code: ErrorCode.UNAUTHORIZED, message: 'this server needs Authorization: Bearer <token or API key> (--auth jwt)' };
/** A verification that threw (a bug): the publish is refused, never let through. */
const UNVERIFIED: AuthFailure = { code: ErrorCode.UNAUTHORIZED, message: 'the token could not be verified' };

function refused(c: Allowed | AuthFailure): c is AuthFailure {
  return (c as AuthFailure).code !== undefined;
}

/** A JWT's shape: three base64url parts (the third may be empty only for alg none, which is refused later). */
const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

/** The body's encoding from its content type (parameters such as charset ignored), or null when not accepted. */
export function encodingOf(contentType: string): EncodingId | null {
  const i = contentType.indexOf(';');
  const type = (i < 0 ? contentType : contentType.slice(0, i)).trim().toLowerCase();
  if (type === 'application/json') return ENCODING_JSON;
  if (type === 'application/msgpack' || type === 'application/x-msgpack') return ENCODING_MSGPACK;
  return null;
}

export class HttpPublishEndpoint {
  private readonly cors: CorsPolicy;
  /** The fields of the publish being handled (filled by validatePublishFields; let go of once made into a request). */
  private readonly fields: PublishFields = { topic: '', data: undefined, retain: false, ts: null, idempotencyKey: null, raw: null };
  /** --auth jwt. */
  private readonly authOn: boolean;
  /** --api-keys-file, by the SHA-256 digest of each key: what it allows (patterns compiled once). */
  private readonly apiKeys = new Map<string, Allowed>();

  constructor(private readonly host: HttpPublishHost) {
    this.cors = new CorsPolicy(host.options.corsOrigins);
    this.authOn = host.entitlement.on;
    if (this.authOn) {
      for (const k of host.options.auth.apiKeys) {
        // Checked at start (server/auth-config.ts): a failure here is a bug.
        const publish = PatternSet.compile(k.publish, `API key ${k.name} publish`);
        if (typeof publish === 'string') throw new Error(publish);
        this.apiKeys.set(keyDigest(k.key), { publish, sub: null, who: `API key ${k.name}` });
      }
    }
  }

  register(app: TemplatedApp): void {
    app.post('/v1/publish', (res, req) => this.onHttpPublish(res, req));
    app.options('/v1/publish', (res, req) => this.onPreflight(res, req));
  }

  /** Access-Control-Allow-Origin for a request from `origin`: '' when it needs none (no Origin, same origin), null when refused. */
  private allowOriginFor(origin: string, host: string): string | null {
    if (origin === '' || CorsPolicy.sameOrigin(origin, host)) return '';
    if (!this.cors.allows(origin)) return null;
    return this.cors.any ? '*' : origin;
  }

  private onPreflight(res: HttpResponse, req: HttpRequest): void {
    const allow = this.allowOriginFor(req.getHeader('origin'), req.getHeader('host'));
    if (allow === null || allow === '') {
      return this.httpError(new HttpExchange(res, null), '403 Forbidden', ErrorCode.ORIGIN_NOT_ALLOWED, 'this origin may not publish here (see --cors-origins)');
    }
    res.writeStatus('204 No Content');
    res.writeHeader('access-control-allow-origin', allow);
    res.writeHeader('access-control-allow-methods', 'POST');
    res.writeHeader('access-control-allow-headers', 'content-type, authorization');
    res.writeHeader('access-control-max-age', PREFLIGHT_MAX_AGE_SECONDS);
    res.writeHeader('vary', 'Origin');
    res.endWithoutBody();
  }

  private onHttpPublish(res: HttpResponse, req: HttpRequest): void {
    const h = readHeads(req, this.authOn);
    const allow = this.allowOriginFor(h.origin, h.host);
    const ex = new HttpExchange(res, allow === null || allow === '' ? null : allow);
    // Framing a proxy in front might read differently: refused, and the connection closed (its framing is unknown).
    if (h.contentLengths > 1) return this.httpError(ex, '400 Bad Request', ErrorCode.BAD_REQUEST, 'more than one Content-Length header', true);
    if (h.transferEncoding && h.contentLengths > 0) return this.httpError(ex, '400 Bad Request', ErrorCode.BAD_REQUEST, 'Content-Length together with Transfer-Encoding', true);
    if (h.contentLengths === 1 && !/^[0-9]{1,15}$/.test(h.contentLength)) return this.httpError(ex, '400 Bad Request', ErrorCode.BAD_REQUEST, 'Content-Length is not a number', true);
    if (allow === null) return this.httpError(ex, '403 Forbidden', ErrorCode.ORIGIN_NOT_ALLOWED, `origin ${h.origin} may not publish here (see --cors-origins)`);
    // --auth jwt: what the credential allows, known now (a key, a cached token, a refusal) or once jose has verified it.
    let credential: Allowed | AuthFailure | Promise<Verified | AuthFailure> | null = null;
    if (this.authOn) {
      credential = this.credentialOf(h);
      if (!(credential instanceof Promise) && refused(credential)) return this.refuseCredential(ex, credential);
    }
    const encoding = encodingOf(h.contentType);
    if (encoding === null)
      return this.httpError(
        ex,
        '415 Unsupported Media Type',
        ErrorCode.UNSUPPORTED_MEDIA_TYPE,
        `content-type must be ${ACCEPTED_TYPES} (parameters such as "; charset=utf-8" are allowed); got ${JSON.stringify(h.contentType)}`,
      );
    const limit = this.host.maxBodyBytes;
    const declared = Number(h.contentLength || '0');
    if (declared > limit) return this.httpError(ex, '413 Payload Too Large', ErrorCode.PAYLOAD_TOO_LARGE, `body is ${declared} bytes; the maximum is ${limit}`, true);
    let body: Buffer | null = null;
    // A token being verified: the body, once complete, waits for the verdict (and the verdict for the body).
    let complete = false;
    if (credential instanceof Promise) {
      credential.then(
        (v) => {
          try {
            credential = this.allowedOf(v);
            if (!complete || ex.finished) return;
            if (!this.host.isOpen()) {
              ex.finished = true;
              return;
            }
            const allowed = credential;
            res.cork(() => this.httpPublishBody(ex, encoding, body ?? Buffer.alloc(0), allowed));
          } catch (err) {
            this.failed(ex, err);
          }
        },
        (err) => {
          credential = UNVERIFIED;
          this.failed(ex, err);
        },
      );
    }
    res.onAborted(() => {
      ex.finished = true;
    });
    res.onData((chunk, isLast) => {
      if (ex.finished) return;
      const part = Buffer.from(chunk);
      body = body === null ? Buffer.from(part) : Buffer.concat([body, part]);
      if (body.length > limit) {
        this.httpError(ex, '413 Payload Too Large', ErrorCode.PAYLOAD_TOO_LARGE, `body is over ${limit} bytes`, true);
        ex.finished = true;
        return;
      }
      if (!isLast) return;
      complete = true;
      // Verified later: answered from the verification's turn (see the top of this file).
      if (credential instanceof Promise) return;
      this.httpPublishBody(ex, encoding, body ?? Buffer.alloc(0), credential);
    });
  }

  /**
   * --auth jwt: the credential of the request's Authorization header: an API
   * key (by digest), a token verified in place (cached, or an HS* token
   * plainly valid), a refusal, or a verification
   * under way (its Verified holds a grant reference: allowedOf releases it).
   */
  private credentialOf(h: RequestHeads): Allowed | AuthFailure | Promise<Verified | AuthFailure> {
    if (h.authorizations > 1) return { code: ErrorCode.UNAUTHORIZED, message: 'more than one Authorization header' };
    const credential = bearerOf(h.authorization);
    if (credential === '') return NO_CREDENTIAL;
    if (credential.length > MAX_TOKEN_CHARS) return { code: ErrorCode.UNAUTHORIZED, message: `a token is 1 to ${MAX_TOKEN_CHARS} characters` };
    if (this.apiKeys.size > 0) {
      const key = this.apiKeys.get(keyDigest(credential));
      if (key !== undefined) return key;
    }
    if (!JWT_SHAPE.test(credential)) {
      return { code: ErrorCode.UNAUTHORIZED, message: this.apiKeys.size > 0 ? 'the credential is neither an API key of this server nor a JWT' : 'the token is not a valid JWT' };
    }
    const e = this.host.entitlement;
    const nowSec = this.host.nowSec();
    const now = e.verifyNow(credential, nowSec);
    return now !== null ? this.allowedOf(now) : e.verify(credential, nowSec);
  }

  /** What a verified token allows (its grant reference released: the pattern set stays valid as a value), or the failure. */
  private allowedOf(v: Verified | AuthFailure): Allowed | AuthFailure {
    if (isFailure(v)) return v;
    const allowed: Allowed = { publish: v.grant.publish, sub: v.sub, who: 'this token' };
    this.host.entitlement.release(v);
    return allowed;
  }

  /** A credential refused: 401 (TOKEN_EXPIRED when expired), 503 when the key set could not be fetched. */
  private refuseCredential(ex: HttpExchange, f: AuthFailure): void {
    this.host.stats[Stat.AUTH_FAILURES]++;
    if (f.code === ErrorCode.UNAVAILABLE) return this.write(ex, '503 Service Unavailable', f.code, f.message, false, '1');
    // RFC 6750 3.1: no error attribute when no credential was sent.
    const header = f === NO_CREDENTIAL ? 'Bearer' : bearerChallenge(f);
    this.write(ex, '401 Unauthorized', f.code, f.message, false, null, header);
  }

  private httpPublishBody(res: HttpExchange, encoding: EncodingId, body: Buffer, credential: Allowed | AuthFailure | null): void {
    const host = this.host;
    try {
      if (host.isDraining()) return this.httpError(res, '503 Service Unavailable', ErrorCode.SHUTTING_DOWN, 'server is shutting down; publish to another node');
      if (credential !== null && refused(credential)) return this.refuseCredential(res, credential);
      if (host.count > 1 && host.overloaded()) {
        host.stats[Stat.PUBLISHES_OVERLOADED]++;
        return this.httpError(res, '503 Service Unavailable', ErrorCode.OVERLOADED, OVERLOADED_MESSAGE, false, '1');
      }
      let value: unknown;
      if (body.length === 0) return this.httpError(res, '400 Bad Request', encoding === ENCODING_JSON ? ErrorCode.BAD_JSON : ErrorCode.BAD_MSGPACK, 'empty body');
      // msgpack: the fields read in place and the data kept as the publisher's bytes, as for a WebSocket pub.
      const fast = encoding === ENCODING_MSGPACK ? readRawEnvelope(body) : null;
      try {
        value = fast !== null ? fast : encoding === ENCODING_JSON ? JSON.parse(body.toString('utf8')) : unpackr.unpack(body);
      } catch {
        return this.httpError(
          res,
          '400 Bad Request',
          encoding === ENCODING_JSON ? ErrorCode.BAD_JSON : ErrorCode.BAD_MSGPACK,
          encoding === ENCODING_JSON ? 'body is not valid JSON' : 'body is not valid msgpack',
        );
      }
      if (typeof value !== 'object' || value === null || Array.isArray(value)) return this.httpError(res, '400 Bad Request', ErrorCode.BAD_REQUEST, 'body must be a map {topic, data}');
      const v = value as Record<string, unknown>;
      // The same field rules as a WebSocket pub (protocol/publish.ts); msgpack data is checked as the publisher's bytes.
      const f = this.fields;
      const err = validatePublishFields(v, fast !== null ? fast.raw : encoding === ENCODING_MSGPACK ? findRawData(body) : null, encoding, f);
      if (err !== null) return this.httpError(res, '400 Bad Request', err.code, err.message);
      if (credential !== null && !credential.publish.allows(f.topic, credential.sub)) {
        f.data = undefined;
        f.raw = null;
        host.stats[Stat.AUTH_FORBIDDEN]++;
        return this.write(res, '403 Forbidden', ErrorCode.FORBIDDEN, `${credential.who} does not allow publishing to ${f.topic}`, false, null, 'Bearer error="insufficient_scope"');
      }
      if (!host.ownerResponsive(f.topic)) {
        host.stats[Stat.PUBLISHES_OVERLOADED]++;
        return this.httpError(
          res,
          '503 Service Unavailable',
          ErrorCode.OVERLOADED,
          "the topic's owner workgroup is not answering (restarting or stalled); nothing was published; retry shortly",
          false,
          '1',
        );
      }
      const req = host.makePublish(f.topic, encoding, f.data, f.retain, f.ts, f.raw);
      f.data = undefined;
      f.raw = null;
      if (req instanceof ProtocolError) return this.httpError(res, '413 Payload Too Large', req.code, req.message);
      req.idempotencyKey = f.idempotencyKey;
      host.stats[Stat.HTTP_PUBLISHES]++;
      const token = host.submit(req, res);
      // Answered before this handler returns (a pipelined request may follow in the same read), unless the engine answers later.
      if (!host.asyncAcks && !host.awaitAck(token, HTTP_ACK_WAIT_MS))
        this.timeout(res, `the topic's owner did not answer within ${HTTP_ACK_WAIT_MS} ms; the message may or may not have been published`);
    } catch (err) {
      this.failed(res, err);
    }
  }

  private failed(ex: HttpExchange, err: unknown): void {
    this.host.stats[Stat.INTERNAL_ERRORS]++;
    this.host.log.error({ err }, 'HTTP publish failed');
    this.httpError(ex, '500 Internal Server Error', ErrorCode.INTERNAL, 'internal error');
  }

  /** The owner's ack: 200 {epoch, seq}. */
  answer(ex: HttpExchange, epoch: number, seq: number, duplicate = false): void {
    if (ex.finished) return;
    ex.finished = true;
    const res = ex.res;
    res.cork(() => {
      res.writeHeader('content-type', 'application/json');
      if (ex.allowOrigin !== null) res.writeHeader('access-control-allow-origin', ex.allowOrigin).writeHeader('vary', 'Origin');
      res.end(duplicate ? `{"epoch":${epoch},"seq":${seq},"duplicate":true}` : `{"epoch":${epoch},"seq":${seq}}`);
    });
  }

  /** The owner refused the publish (e.g. TOO_MANY_TOPICS): an error answer. */
  fail(ex: HttpExchange, status: string, code: ErrorCode, message: string, retryAfter: string | null = null): void {
    this.httpError(ex, status, code, message, false, retryAfter);
  }

  /** The owner did not answer in time: 504 OWNER_TIMEOUT. */
  timeout(ex: HttpExchange, message: string): void {
    if (!ex.finished) this.httpError(ex, '504 Gateway Timeout', ErrorCode.OWNER_TIMEOUT, message);
  }

  private httpError(ex: HttpExchange, status: string, code: ErrorCode, message: string, close = false, retryAfter: string | null = null): void {
    // Only the client's faults (4xx) are protocol errors, as on the WebSocket path: a 503
    // (OVERLOADED, SHUTTING_DOWN, TOO_MANY_TOPICS), 504 or 500 is the server's state, counted elsewhere.
    // 401 and 403 FORBIDDEN go through write() and count as AUTH_FAILURES / AUTH_FORBIDDEN instead.
    if (status.startsWith('4')) this.host.stats[Stat.PROTOCOL_ERRORS]++;
    this.write(ex, status, code, message, close, retryAfter);
  }

  /** An error answer, counted by the caller. */
  private write(ex: HttpExchange, status: string, code: ErrorCode, message: string, close: boolean, retryAfter: string | null, wwwAuthenticate: string | null = null): void {
    if (ex.finished) return;
    ex.finished = true;
    const res = ex.res;
    res.cork(() => {
      res.writeStatus(status).writeHeader('content-type', 'application/json');
      if (ex.allowOrigin !== null) res.writeHeader('access-control-allow-origin', ex.allowOrigin).writeHeader('vary', 'Origin');
      if (retryAfter !== null) res.writeHeader('retry-after', retryAfter);
      if (wwwAuthenticate !== null) res.writeHeader('www-authenticate', wwwAuthenticate);
      res.end(JSON.stringify({ error: { code, message } }), close);
    });
  }
}
