// Publishing over HTTP (POST /v1/publish) from Node, for back ends that do not
// want a WebSocket. One keep-alive agent per publisher, so that a stream of
// publishes reuses a few TCP connections instead of opening one each.
// Node-only (node:http): not part of the browser bundle.
import http from 'node:http';
import https from 'node:https';
import { packr, unpackr } from '../protocol/codec';
import type { Encoding } from './encoding';
import { ErrorCode } from '../protocol/errors';
import { topicError } from '../protocol/topic';
import { C10mError, SdkErrorCode } from './errors';
import { idempotencyKeyOption } from './options';

export interface HttpPublisherOptions {
  /** Body encoding: "json" (default) or "msgpack" (content-type application/msgpack). */
  encoding?: Encoding;
  /**
   * A JWT (its publish claim must cover the topics) or an API key of the
   * server's --api-keys-file, sent as `authorization: Bearer <token>` with
   * every publish. Needed when the server runs with --auth jwt.
   */
  token?: string;
  /**
   * Instead of `token`: called before every publish for the credential to
   * send (cache it in the function and return a fresh one before it
   * expires). A throw or rejection fails the publish with UNAUTHORIZED,
   * nothing sent.
   */
  getToken?: () => string | Promise<string>;
  /** Most sockets the keep-alive agent opens to the server. Default 16. */
  maxSockets?: number;
  /** Time a publish may take, connection included. Default 10 s. */
  timeoutMs?: number;
  /**
   * A publish with an idempotencyKey that fails in a way that may be passing (the connection broke, no answer in
   * time, 503 UNAVAILABLE or OVERLOADED, 504 OWNER_TIMEOUT) is sent again this many times, with the same key,
   * after 100 ms, 200 ms, ...: the server publishes it once. Default 2; publishes without a key are never retried.
   */
  retries?: number;
}

export interface HttpPublishAck {
  epoch: number;
  seq: number;
  /** The idempotency key was already published: epoch and seq are that publish's, nothing was published now. */
  duplicate?: boolean;
}

/** Failures a keyed publish is retried after: the publish may not have been applied, and trying again may work. */
const RETRIED = new Set<string>([SdkErrorCode.CONNECTION_LOST, SdkErrorCode.TIMEOUT, ErrorCode.UNAVAILABLE, ErrorCode.OVERLOADED, ErrorCode.OWNER_TIMEOUT]);

export class HttpPublisher {
  readonly endpoint: URL;
  readonly encoding: Encoding;
  private readonly agent: http.Agent;
  private readonly transport: typeof http | typeof https;
  private readonly headers: Record<string, string>;
  private readonly timeoutMs: number;
  private readonly getToken: (() => string | Promise<string>) | null;
  private readonly retries: number;
  private readonly sockets = new WeakSet<object>();
  /** TCP connections opened so far (keep-alive keeps this small). */
  connectionsOpened = 0;

  /** `baseUrl`: http(s)://host:port of a c10m node's public port (a path other than / is used as is). */
  constructor(baseUrl: string, options: HttpPublisherOptions = {}) {
    const u = new URL(baseUrl);
    if (u.protocol === 'ws:') u.protocol = 'http:';
    if (u.protocol === 'wss:') u.protocol = 'https:';
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new TypeError(`an HTTP publisher URL is http:// or https://, not ${u.protocol}`);
    if (u.pathname === '/' || u.pathname === '' || u.pathname === '/v1/ws') u.pathname = '/v1/publish';
    this.endpoint = u;
    this.encoding = options.encoding ?? 'json';
    this.transport = u.protocol === 'https:' ? https : http;
    this.agent = new this.transport.Agent({ keepAlive: true, maxSockets: options.maxSockets ?? 16 });
    this.timeoutMs = options.timeoutMs ?? 10_000;
    this.retries = Math.max(0, Math.floor(options.retries ?? 2));
    this.headers = { 'content-type': this.encoding === 'msgpack' ? 'application/msgpack' : 'application/json', accept: 'application/json' };
    if (options.token !== undefined && options.getToken !== undefined) throw new TypeError('give an HTTP publisher token or getToken, not both');
    if (options.token !== undefined) this.headers.authorization = bearer(options.token);
    this.getToken = options.getToken ?? null;
  }

  /**
   * Publishes one message; resolves with the {epoch, seq} the server gave it. With an idempotencyKey, a failure
   * that may be passing is retried with the same key (`retries`), and a repeat is answered `duplicate: true`.
   */
  publish(topic: string, data: unknown, options: { retain?: boolean; idempotencyKey?: string } = {}): Promise<HttpPublishAck> {
    const err = topicError(topic);
    if (err !== null) return Promise.reject(new C10mError(ErrorCode.BAD_TOPIC, `${String(topic).slice(0, 300)}: ${err}`, String(topic)));
    if (data === undefined) return Promise.reject(new C10mError(ErrorCode.BAD_DATA, 'a publish needs data (undefined cannot be sent)', topic));
    const key = idempotencyKeyOption(topic, options.idempotencyKey);
    if (key instanceof C10mError) return Promise.reject(key);
    const message: Record<string, unknown> = { topic, data };
    if (options.retain === true) message.retain = true;
    if (key === undefined) return this.publishOnce(topic, message);
    message.idempotencyKey = key;
    const attempt = (n: number): Promise<HttpPublishAck> =>
      this.publishOnce(topic, message).catch((e: unknown) => {
        if (n >= this.retries || !(e instanceof C10mError) || !RETRIED.has(e.code)) throw e;
        return new Promise<void>((resolve) => setTimeout(resolve, 100 * 2 ** n)).then(() => attempt(n + 1));
      });
    return attempt(0);
  }

  private publishOnce(topic: string, message: Record<string, unknown>): Promise<HttpPublishAck> {
    let body: Buffer;
    try {
      body = this.encoding === 'msgpack' ? Buffer.from(packr.pack(message)) : Buffer.from(JSON.stringify(message));
    } catch (e) {
      return Promise.reject(new C10mError(ErrorCode.BAD_DATA, `data cannot be encoded as ${this.encoding}: ${(e as Error).message}`, topic));
    }
    if (this.getToken === null) return this.send(topic, body, this.headers);
    const getToken = this.getToken;
    return new Promise<string>((resolve) => resolve(getToken())).then(
      (token) => this.send(topic, body, { ...this.headers, authorization: bearer(token) }),
      (e: unknown) => {
        throw new C10mError(ErrorCode.UNAUTHORIZED, `getToken failed: ${e instanceof Error ? e.message : String(e)}; nothing was published`, topic);
      },
    );
  }

  private send(topic: string, body: Buffer, headers: Record<string, string>): Promise<HttpPublishAck> {
    return new Promise((resolve, reject) => {
      const req = this.transport.request(this.endpoint, { method: 'POST', agent: this.agent, headers: { ...headers, 'content-length': String(body.length) }, timeout: this.timeoutMs }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', (e) => reject(new C10mError(SdkErrorCode.CONNECTION_LOST, `response failed: ${e.message}`, topic)));
        res.on('end', () => {
          const text = Buffer.concat(chunks);
          const status = res.statusCode ?? 0;
          let reply: Record<string, unknown> | null = null;
          try {
            const ct = String(res.headers['content-type'] ?? '');
            reply = ct.startsWith('application/msgpack') ? (unpackr.unpack(text) as Record<string, unknown>) : JSON.parse(text.toString('utf8'));
          } catch {
            reply = null;
          }
          const error = reply?.error as { code?: string; message?: string } | undefined;
          if (status >= 200 && status < 300 && reply !== null && typeof reply.seq === 'number' && typeof reply.epoch === 'number') {
            resolve(reply.duplicate === true ? { epoch: reply.epoch, seq: reply.seq, duplicate: true } : { epoch: reply.epoch, seq: reply.seq });
          } else if (error && typeof error.code === 'string') {
            reject(new C10mError(error.code as ErrorCode, error.message ?? `HTTP ${status}`, topic, status));
          } else if (status === 401 || status === 403) {
            // A proxy's refusal in front of the server: the same codes as the server's own.
            reject(new C10mError(status === 401 ? ErrorCode.UNAUTHORIZED : ErrorCode.FORBIDDEN, `HTTP ${status}: ${text.toString('utf8').slice(0, 200)}`, topic, status));
          } else {
            reject(new C10mError(SdkErrorCode.BAD_RESPONSE, `HTTP ${status} with a body that is not a c10m reply: ${text.toString('utf8').slice(0, 200)}`, topic, status));
          }
        });
      });
      req.on('socket', (socket) => {
        if (this.sockets.has(socket)) return;
        this.sockets.add(socket);
        this.connectionsOpened++;
      });
      let timedOut = false;
      req.on('timeout', () => {
        timedOut = true;
        req.destroy(new Error(`no answer within ${this.timeoutMs} ms`));
      });
      req.on('error', (e) =>
        reject(new C10mError(timedOut ? SdkErrorCode.TIMEOUT : SdkErrorCode.CONNECTION_LOST, `POST ${this.endpoint.href} failed: ${e.message}; the publish may or may not have been applied`, topic)),
      );
      req.end(body);
    });
  }

  /** Closes the idle keep-alive sockets. Publishes after close() open new ones. */
  close(): void {
    this.agent.destroy();
  }
}

/** The Authorization header's value; a token with a line break would split the request's head. */
function bearer(token: string): string {
  if (typeof token !== 'string' || token === '' || /[\r\n]/.test(token)) throw new C10mError(ErrorCode.UNAUTHORIZED, 'the HTTP publisher token must be a non-empty string on one line');
  return `Bearer ${token}`;
}
