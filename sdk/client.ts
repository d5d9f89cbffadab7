// The c10m client: one WebSocket session (reconnected as needed), the
// subscriptions it keeps across reconnects, and the publishes it sends or
// queues. Browser and Node alike; see sdk/README.md for the API.
import type { Encoding } from './encoding';
import { CloseCode, ErrorCode } from '../protocol/errors';
import { topicError } from '../protocol/topic';
import { isWildcard } from '../protocol/wildcard';
import { PatternSubscriptions } from './patterns';
import { MAX_RECONNECT_WINDOW_MS, ReconnectSchedule, backoffDelayMs, realClock, resolveBackoff, type Clock } from './backoff';
import { Emitter } from './emitter';
import { C10mError, SdkErrorCode } from './errors';
import { hintDelayMs, readRefusal, type UpgradeRefusal } from './refusal';
import type { Gap, SubReplyTopic } from './stream';
import { holdToken, refreshAtMs, type HeldToken } from './token';
import { pingDelayMs } from './ping-schedule';
import { SseSocket, TransportChoice } from './sse-transport';
import { OPEN, type WebSocketConstructor, type WebSocketLike } from './transport';
import { defaultWebSocket } from './websocket';
import { decodeIncoming, encodeCommand, type Message, type Reply } from './wire';
import { idempotencyKeyOption, newTopicState, publishAck, requeueKeyed, subCommandGroups } from './options';

import type { PendingRequest, QueuedPublish, TokenState, TopicState } from './types';
import type { ConnectOptions, SubscribeOptions, PublishOptions, PublishAck, ConnectionState, ClientEvents, MessageHandler, Subscription, ClientStats } from './types';
export type { ConnectOptions, SubscribeOptions, PublishOptions, PublishAck, ConnectionState, ClientEvents, MessageHandler, Subscription, ClientStats } from './types';

const DEFAULTS = { maxQueuedPublishes: 1000, requestTimeoutMs: 10_000, connectTimeoutMs: 10_000, pingIntervalMs: 25_000, refreshAheadMs: 30_000 };
/** Most topics in one sub command (protocol/codec.ts MAX_TOPICS_PER_COMMAND). */
const TOPICS_PER_SUB = 1024;
/** Close codes that mean the client sent something the server will not take. */
const CLIENT_FAULT_CODES = new Set<number>([CloseCode.UNSUPPORTED_DATA, CloseCode.POLICY_VIOLATION, CloseCode.MESSAGE_TOO_BIG]);

/** Opens a client. It connects in the background: publish and subscribe at once, or await client.ready(). */
export function connect(url: string | string[], options: ConnectOptions = {}): C10mClient {
  return new C10mClient(url, options);
}

export class C10mClient extends Emitter<ClientEvents> {
  readonly urls: string[];
  readonly encoding: Encoding;
  readonly stats: ClientStats = { delivered: 0, duplicates: 0, gaps: 0, connections: 0 };
  private _state: ConnectionState = 'connecting';
  private readonly options: Required<Omit<ConnectOptions, 'token' | 'getToken' | 'reconnect' | 'WebSocket' | 'clock' | 'random' | 'encoding' | 'transport'>>;
  private readonly WebSocketImpl: WebSocketConstructor;
  private readonly clock: Clock;
  private readonly schedule: ReconnectSchedule | null;
  private ws: WebSocketLike | null = null;
  private urlIndex = 0;
  private nextId = 1;
  private readonly topics = new Map<string, TopicState>();
  private readonly requests = new Map<number, PendingRequest>();
  private readonly queue: QueuedPublish[] = [];
  private connectTimer: unknown = null;
  private pingTimer: unknown = null;
  /** The node's reconnectWindowMs from the last ping reply (0: none): reconnects after losing it are spread over at least this. */
  private reconnectWindowMs = 0;
  private everConnected = false;
  private readyWaiters: { resolve: () => void; reject: (e: C10mError) => void }[] = [];
  private closedPromise: Promise<void> | null = null;
  private readonly auth: TokenState;
  /** WebSocket or SSE for the next attempt (sdk/sse-transport.ts). */
  private readonly transport: TransportChoice;
  /** Wildcard subscriptions (sdk/patterns.ts). */
  private readonly patterns = new PatternSubscriptions(
    this,
    (event, payload) => this.emit(event, payload),
    (kind, cmd) => {
      const id = this.nextId++;
      this.requests.set(id, { kind, timer: null });
      this.send({ id, ...cmd });
      return id;
    },
  );

  constructor(url: string | string[], options: ConnectOptions = {}) {
    super();
    const list = Array.isArray(url) ? url : [url];
    if (list.length === 0) throw new TypeError('connect() needs at least one URL');
    this.encoding = options.encoding ?? 'json';
    if (this.encoding !== 'json' && this.encoding !== 'msgpack') throw new TypeError('encoding must be "json" or "msgpack"');
    // Without the token: these show in events and logs. It is added per attempt (attemptUrl).
    this.urls = list.map((u) => sessionUrl(u, this.encoding, undefined));
    this.options = {
      maxQueuedPublishes: options.maxQueuedPublishes ?? DEFAULTS.maxQueuedPublishes,
      requestTimeoutMs: options.requestTimeoutMs ?? DEFAULTS.requestTimeoutMs,
      connectTimeoutMs: options.connectTimeoutMs ?? DEFAULTS.connectTimeoutMs,
      pingIntervalMs: options.pingIntervalMs ?? DEFAULTS.pingIntervalMs,
      refreshAheadMs: options.refreshAheadMs ?? DEFAULTS.refreshAheadMs,
    };
    if (!(this.options.refreshAheadMs >= 0) || !Number.isFinite(this.options.refreshAheadMs)) throw new RangeError('refreshAheadMs must be a finite number >= 0');
    if (options.getToken !== undefined && typeof options.getToken !== 'function') throw new TypeError('getToken must be a function');
    if (options.token !== undefined && (typeof options.token !== 'string' || options.token === '')) throw new TypeError('token must be a non-empty string');
    this.clock = options.clock ?? realClock;
    const backoff = resolveBackoff(options.reconnect === false ? undefined : options.reconnect);
    this.schedule = options.reconnect === false ? null : new ReconnectSchedule(backoff, this.clock, options.random ?? Math.random);
    this.auth = {
      getToken: options.getToken ?? null,
      held: options.token === undefined ? null : holdToken(options.token),
      fresh: false,
      needFresh: false,
      unauthorizedInARow: 0,
      opaqueFailuresInARow: 0,
      admitTicket: null,
      attemptGen: 0,
      refreshTimer: null,
      refreshAttempt: 0,
      backoff,
      random: options.random ?? Math.random,
    };
    this.WebSocketImpl = options.WebSocket ?? defaultWebSocket();
    this.transport = new TransportChoice(options.transport ?? (options.WebSocket !== undefined ? 'websocket' : 'auto'));
    this.open();
  }

  get state(): ConnectionState {
    return this._state;
  }

  /** The URL of the current (or next) connection. */
  get url(): string {
    return this.urls[this.urlIndex % this.urls.length];
  }

  /** Number of publishes waiting for a connection. */
  get queuedPublishes(): number {
    return this.queue.length;
  }

  /** Resolves when connected (at once if connected now); rejects if the client closes first. */
  ready(): Promise<void> {
    if (this._state === 'connected') return Promise.resolve();
    if (this._state === 'closed') return Promise.reject(new C10mError(SdkErrorCode.CLOSED, 'the client is closed'));
    return new Promise((resolve, reject) => this.readyWaiters.push({ resolve, reject }));
  }

  // ---- subscribe ------------------------------------------------------

  /**
   * Subscribes `onMessage` to a topic. Throws C10mError(BAD_TOPIC) for an invalid name.
   * Several handlers of one topic share one server subscription (and the qos of the first).
   */
  subscribe<T = unknown>(topic: string, onMessage: MessageHandler<T>, options: SubscribeOptions = {}): Subscription {
    // A pattern (/prices/*, /chat/>): every matching topic, resumed across reconnects (sdk/patterns.ts).
    if (typeof topic === 'string' && isWildcard(topic) && this._state !== 'closed') {
      // SSE streams carry exact topics only: a pattern needs the WebSocket.
      if (this.transport.mode === 'sse') throw new C10mError(ErrorCode.BAD_REQUEST, `${topic}: wildcard patterns need transport 'websocket' or 'auto'`, topic);
      return this.patterns.subscribe(topic, onMessage);
    }
    const err = topicError(topic);
    if (err !== null) throw new C10mError(ErrorCode.BAD_TOPIC, `${String(topic).slice(0, 300)}: ${err}`, String(topic));
    if (this._state === 'closed') throw new C10mError(SdkErrorCode.CLOSED, 'the client is closed', topic);
    if (typeof onMessage !== 'function') throw new TypeError('subscribe() needs a message handler');
    let t = this.topics.get(topic);
    const handler = onMessage as MessageHandler<never>;
    if (t === undefined) {
      t = newTopicState(topic, options);
      this.topics.set(topic, t);
      t.handlers.add(handler);
      if (this.isOpen()) this.sendSub([t]);
    } else {
      t.handlers.add(handler);
    }
    const state = t;
    const ready = new Promise<PublishAck>((resolve, reject) => {
      if (state.confirmed && state.stream.epoch !== null) resolve({ epoch: state.stream.epoch, seq: state.stream.seq });
      else state.readyWaiters.push({ resolve, reject });
    });
    // A subscription nobody awaits must not produce an unhandled rejection.
    ready.catch(() => undefined);
    return {
      topic,
      ready,
      unsubscribe: () => this.removeHandler(state, handler),
    };
  }

  /** Topics subscribed now, with their last (epoch, seq). */
  positions(): Record<string, [number, number] | null> {
    const out: Record<string, [number, number] | null> = {};
    for (const [topic, t] of this.topics) out[topic] = t.stream.position();
    return out;
  }

  private removeHandler(t: TopicState, handler: MessageHandler<never>): void {
    if (!t.handlers.delete(handler) || t.handlers.size > 0) return;
    if (this.topics.get(t.topic) !== t) return;
    this.topics.delete(t.topic);
    for (const w of t.readyWaiters) w.reject(new C10mError(SdkErrorCode.CLOSED, 'unsubscribed before the server confirmed', t.topic));
    t.readyWaiters = [];
    if (this.isOpen()) {
      const id = this.nextId++;
      this.requests.set(id, { kind: 'unsub', topic: t.topic, timer: null });
      this.send({ id, op: 'unsub', topics: [t.topic] });
    }
  }

  private sendSub(states: TopicState[]): void {
    // One command per qos and conflation interval (they apply to every topic of a command).
    for (const group of subCommandGroups(states, TOPICS_PER_SUB)) {
      const { qos, conflateMs } = group[0];
      const id = this.nextId++;
      const resume: Record<string, [number, number]> = {};
      let resuming = false;
      for (const t of group) {
        t.pendingSubId = id;
        t.resumedFrom = t.stream.position();
        t.early = [];
        if (t.resumedFrom !== null) {
          resume[t.topic] = t.resumedFrom;
          resuming = true;
        }
      }
      this.requests.set(id, { kind: 'sub', timer: null });
      const cmd: Record<string, unknown> = { id, op: 'sub', topics: group.map((t) => t.topic), qos };
      if (resuming) cmd.resume = resume;
      if (conflateMs > 0) cmd.conflate = conflateMs;
      this.send(cmd);
    }
  }

  // ---- publish --------------------------------------------------------

  /**
   * Publishes data to a topic. Resolves with {epoch, seq} once the server has
   * sequenced it (ack, the default), or once sent (ack: false). While
   * disconnected, publishes wait in a bounded queue and go out, in order,
   * when the connection is back.
   */
  publish(topic: string, data: unknown, options?: PublishOptions & { ack?: true }): Promise<PublishAck>;
  publish(topic: string, data: unknown, options: PublishOptions & { ack: false }): Promise<undefined>;
  publish(topic: string, data: unknown, options?: PublishOptions): Promise<PublishAck | undefined>;
  publish(topic: string, data: unknown, options: PublishOptions = {}): Promise<PublishAck | undefined> {
    const err = topicError(topic);
    if (err !== null) return Promise.reject(new C10mError(ErrorCode.BAD_TOPIC, `${String(topic).slice(0, 300)}: ${err}`, String(topic)));
    if (data === undefined) return Promise.reject(new C10mError(ErrorCode.BAD_DATA, 'a publish needs data (undefined cannot be sent)', topic));
    if (this._state === 'closed') return Promise.reject(new C10mError(SdkErrorCode.CLOSED, 'the client is closed', topic));
    const ack = options.ack !== false;
    const retain = options.retain === true;
    const idempotencyKey = idempotencyKeyOption(topic, options.idempotencyKey);
    if (idempotencyKey instanceof C10mError) return Promise.reject(idempotencyKey);
    return new Promise((resolve, reject) => {
      const p: QueuedPublish = { topic, data, ack, retain, idempotencyKey, resolve, reject };
      if (this.isOpen() && this.queue.length === 0) return this.sendPublish(p);
      if (this.queue.length >= this.options.maxQueuedPublishes) {
        return reject(new C10mError(SdkErrorCode.QUEUE_FULL, `not connected and ${this.queue.length} publishes are already queued (maxQueuedPublishes)`, topic));
      }
      this.queue.push(p);
    });
  }

  private sendPublish(p: QueuedPublish): void {
    const id = this.nextId++;
    const cmd: Record<string, unknown> = { id, op: 'pub', topic: p.topic, data: p.data, ack: p.ack };
    if (p.retain) cmd.retain = true;
    if (p.idempotencyKey !== undefined) cmd.idempotencyKey = p.idempotencyKey;
    if (p.ack) {
      const timer = this.clock.setTimeout(() => {
        if (this.requests.delete(id)) p.reject(new C10mError(SdkErrorCode.TIMEOUT, `no ack within ${this.options.requestTimeoutMs} ms`, p.topic));
      }, this.options.requestTimeoutMs);
      this.requests.set(id, { kind: 'pub', topic: p.topic, resolve: p.resolve, reject: p.reject, timer, publish: p });
    } else {
      // Errors for an unacked publish still come back with its id; they are reported as 'error' events.
      this.requests.set(id, { kind: 'pub', topic: p.topic, timer: null });
    }
    try {
      this.send(cmd);
    } catch (e) {
      // An unencodable value (msgpack) or a cycle (JSON).
      const req = this.requests.get(id);
      this.requests.delete(id);
      if (req?.timer) this.clock.clearTimeout(req.timer);
      p.reject(new C10mError(ErrorCode.BAD_DATA, `data cannot be encoded as ${this.encoding}: ${(e as Error).message}`, p.topic));
      return;
    }
    if (!p.ack) p.resolve(undefined);
  }

  // ---- connection -----------------------------------------------------

  private isOpen(): boolean {
    return this._state === 'connected' && this.ws !== null && this.ws.readyState === OPEN;
  }

  private send(cmd: Record<string, unknown>): void {
    (this.ws as WebSocketLike).send(encodeCommand(this.encoding, cmd));
  }

  /** Starts an attempt: fetches a token first when one is needed, then dials. */
  private open(): void {
    const a = this.auth;
    const gen = ++a.attemptGen;
    a.fresh = false;
    if (a.getToken === null || !this.tokenNeeded()) return this.dial();
    // The connect timeout covers getToken() too: one that never answers must not stall the client.
    this.connectTimer = this.clock.setTimeout(() => {
      if (gen !== a.attemptGen) return;
      a.attemptGen++;
      this.connectTimer = null;
      this.tokenFailed(new C10mError(SdkErrorCode.TOKEN_UNAVAILABLE, `getToken() did not answer within ${this.options.connectTimeoutMs} ms (connectTimeoutMs)`));
    }, this.options.connectTimeoutMs);
    this.fetchToken().then(
      (held) => {
        if (gen !== a.attemptGen || this._state === 'closed') return;
        this.clearConnectTimer();
        a.held = held;
        a.fresh = true;
        a.needFresh = false;
        this.emit('token', { exp: held.expMs === null ? null : held.expMs / 1000, inBand: false });
        this.dial();
      },
      (e: C10mError) => {
        if (gen !== a.attemptGen || this._state === 'closed') return;
        this.clearConnectTimer();
        this.tokenFailed(e);
      },
    );
  }

  /** A token is fetched before an attempt when there is none, the server refused the last one, or it is due for refresh. */
  private tokenNeeded(): boolean {
    const a = this.auth;
    if (a.held === null || a.needFresh) return true;
    const at = refreshAtMs(a.held, this.options.refreshAheadMs);
    const now = Date.now();
    return (at !== null && now >= at) || (a.held.expMs !== null && now >= a.held.expMs);
  }

  private async fetchToken(): Promise<HeldToken> {
    let token: unknown;
    try {
      token = await (this.auth.getToken as () => string | Promise<string>)();
    } catch (e) {
      throw new C10mError(SdkErrorCode.TOKEN_UNAVAILABLE, `getToken() failed: ${(e as Error)?.message ?? String(e)}`);
    }
    if (typeof token !== 'string' || token === '')
      throw new C10mError(SdkErrorCode.TOKEN_UNAVAILABLE, `getToken() must return a non-empty string (or a promise of one), not ${token === '' ? 'an empty string' : typeof token}`);
    return holdToken(token, Date.now(), this.auth.random());
  }

  /** No token for this attempt: it fails like a connection that could not open, and the next one comes after the backoff. */
  private tokenFailed(e: C10mError): void {
    this.emit('error', e);
    this.onSocketGone(null, 1006, e.message);
  }

  /** The URL of this attempt: the session URL with the token and, once after a 503 RETRY_LATER, the admission ticket. */
  private attemptUrl(): string {
    const a = this.auth;
    const url = sessionUrl(this.url, this.encoding, a.held?.token, a.admitTicket ?? undefined);
    a.admitTicket = null;
    return url;
  }

  private dial(): void {
    const url = this.attemptUrl();
    let ws: WebSocketLike;
    try {
      ws = this.transport.useSse && this.patterns.size === 0 ? new SseSocket(url) : new this.WebSocketImpl(url);
    } catch (e) {
      this.emit('error', new C10mError(SdkErrorCode.CONNECTION_LOST, `cannot open ${this.url}: ${(e as Error).message}`));
      this.onSocketGone(null, 1006, (e as Error).message);
      return;
    }
    // ws (Node) defaults to Buffers, which the decoder reads without a copy; browsers need arraybuffer, not blob.
    if (ws.binaryType !== 'nodebuffer') ws.binaryType = 'arraybuffer';
    this.ws = ws;
    this.connectTimer = this.clock.setTimeout(() => this.abandon(ws, `no connection within ${this.options.connectTimeoutMs} ms`), this.options.connectTimeoutMs);
    ws.onopen = () => this.onOpen(ws);
    ws.onmessage = (ev) => this.onFrame(ev.data);
    ws.onclose = (ev) => this.onSocketGone(ws, ev.code, ev.reason);
    // A failed connection is followed by a close event, which does the work.
    ws.onerror = noop;
    // Node's ws: read the refusal (401, 429, 503 with its hint); the connect timer bounds the read.
    if (typeof ws.on === 'function')
      ws.on('unexpected-response', (_req, res) => readRefusal(res, (r) => this.abandon(ws, `upgrade refused: HTTP ${r.status}${r.code === null ? '' : ` ${r.code}`}: ${r.message}`, r)));
  }

  private onOpen(ws: WebSocketLike): void {
    if (ws !== this.ws) return;
    this.clearConnectTimer();
    const reconnect = this.everConnected;
    this.everConnected = true;
    this._state = 'connected';
    this.stats.connections++;
    this.schedule?.reset();
    this.auth.unauthorizedInARow = 0;
    this.auth.opaqueFailuresInARow = 0;
    this.auth.refreshAttempt = 0;
    this.scheduleRefresh();
    // Subscriptions first, then the queued publishes: the server handles a session's commands in order.
    if (this.topics.size > 0) this.sendSub([...this.topics.values()]);
    if (this.patterns.size > 0) this.patterns.resubscribe();
    const queued = this.queue.splice(0);
    for (const p of queued) this.sendPublish(p);
    this.startPing();
    this.emit('connected', { url: this.url, reconnect });
    const waiters = this.readyWaiters;
    this.readyWaiters = [];
    for (const w of waiters) w.resolve();
  }

  /** Gives up on a socket at once (no close handshake to wait for) and handles the loss. */
  private abandon(ws: WebSocketLike, reason: string, refusal: UpgradeRefusal | null = null): void {
    if (ws !== this.ws) return;
    this.onSocketGone(ws, 1006, reason, refusal);
    try {
      ws.close();
    } catch {
      // Closing a socket that never opened may throw in some implementations; it is gone either way.
    }
  }

  private detach(ws: WebSocketLike): void {
    ws.onopen = null;
    ws.onmessage = null;
    ws.onclose = null;
    ws.onerror = noop;
  }

  private onSocketGone(ws: WebSocketLike | null, code: number, reason: string, refusal: UpgradeRefusal | null = null): void {
    if (ws !== null) {
      if (ws !== this.ws) return;
      this.detach(ws);
    }
    this.ws = null;
    this.clearConnectTimer();
    this.stopPing();
    this.stopRefresh();
    const wasConnected = this._state === 'connected';
    const url = this.url;
    // Requests in flight on a lost connection: subs are re-sent on reconnect; publishes with an idempotency key are
    // queued to be sent again with it; the others fail (applied or not, we cannot know).
    for (const req of this.requests.values()) if (req.timer) this.clock.clearTimeout(req.timer);
    for (const req of requeueKeyed([...this.requests.values()], this.queue)) {
      if (req.kind === 'pub' && req.reject)
        req.reject(new C10mError(SdkErrorCode.CONNECTION_LOST, `connection lost before the ack (close ${code}); the publish may or may not have been applied`, req.topic, code));
    }
    this.requests.clear();
    for (const t of this.topics.values()) {
      t.pendingSubId = null;
      t.early = [];
    }
    if (CLIENT_FAULT_CODES.has(code)) this.emit('error', new C10mError(SdkErrorCode.REJECTED_BY_SERVER, `server closed the connection: ${code} ${reason}`, undefined, code));
    // The token and admission side: what the next attempt needs, and when it may come.
    if (code === CloseCode.TOKEN_EXPIRED || code === CloseCode.AUTH_TIMEOUT) this.auth.needFresh = true;
    const refused = refusal === null ? null : this.onRefusal(refusal);
    if (ws !== null) this.transport.ended(wasConnected, refusal !== null && refusal.code !== null);
    if (refused === null && ws !== null && !wasConnected) this.onOpaqueFailure(ws);
    if (this.schedule === null) {
      this.finishClose(new C10mError(SdkErrorCode.CLOSED, `connection closed (${code} ${reason}) and reconnect is off`, undefined, code));
      if (wasConnected) this.emit('disconnected', { url, code, reason, willReconnect: false });
      return;
    }
    this._state = 'reconnecting';
    if (wasConnected) this.emit('disconnected', { url, code, reason, willReconnect: true });
    // 1001: this server is going away; go to the next one now (spread over the node's window when it gave one: its whole
    // crowd moves). 4000: we were too slow; resume now. 4003: the token expired; new token, now.
    const shutdownNow = code === CloseCode.SHUTDOWN && this.reconnectWindowMs === 0;
    let now = (shutdownNow || code === CloseCode.SLOW_CONSUMER || code === CloseCode.TOKEN_EXPIRED) && this.schedule.attempt === 0;
    let stay = code === CloseCode.SLOW_CONSUMER || code === CloseCode.TOKEN_EXPIRED;
    const hintMs = refused?.hintMs ?? null;
    if (refused !== null) {
      now = refused.now;
      stay = hintMs !== null;
    }
    if (!stay) this.urlIndex = (this.urlIndex + 1) % this.urls.length;
    const attempt = this.schedule.attempt + 1;
    const delayMs = hintMs !== null ? this.schedule.scheduleIn(() => this.open(), hintMs) : this.schedule.schedule(() => this.open(), now, this.reconnectWindowMs);
    this.emit('reconnecting', { attempt, delayMs, url: this.url });
  }

  /**
   * A refused upgrade read through Node's ws. 401: a new token before the next
   * attempt (at once when the refused one was not fresh); two in a row that
   * answer fresh tokens are reported. 503 RETRY_LATER and 429 RATE_LIMITED:
   * the server's hint replaces the jittered delay, and the ticket goes back
   * on the next attempt to the same node.
   */
  private onRefusal(r: UpgradeRefusal): { now: boolean; hintMs: number | null } {
    const a = this.auth;
    a.opaqueFailuresInARow = 0;
    if (r.status === 401) {
      a.needFresh = true;
      const fresh = a.fresh || a.getToken === null;
      a.unauthorizedInARow = fresh ? a.unauthorizedInARow + 1 : 0;
      if (a.getToken === null || a.unauthorizedInARow >= 2) {
        const code = r.code === ErrorCode.TOKEN_EXPIRED ? ErrorCode.TOKEN_EXPIRED : ErrorCode.UNAUTHORIZED;
        const why = a.getToken === null ? 'the token option was refused' : `${a.unauthorizedInARow} tokens in a row from getToken() were refused`;
        this.emit('error', new C10mError(code, `${why}: ${r.message}`, undefined, 401));
      }
      return { now: a.getToken !== null && !fresh, hintMs: null };
    }
    const hintMs = hintDelayMs(r);
    if (hintMs !== null && r.code === ErrorCode.RETRY_LATER) a.admitTicket = r.ticket;
    return { now: false, hintMs };
  }

  /** A browser sees a refused upgrade as a failed connection: after two in a row, the next attempt gets a new token. */
  private onOpaqueFailure(ws: WebSocketLike): void {
    const a = this.auth;
    // Node's ws reads refusals: its unreadable failures are the network's, not the token's.
    if (a.getToken === null || typeof ws.on === 'function') return;
    if (++a.opaqueFailuresInARow < 2) return;
    a.opaqueFailuresInARow = 0;
    a.needFresh = true;
  }

  private clearConnectTimer(): void {
    if (this.connectTimer !== null) this.clock.clearTimeout(this.connectTimer);
    this.connectTimer = null;
  }

  private startPing(): void {
    const every = this.options.pingIntervalMs;
    if (every <= 0) return;
    let n = 0;
    const tick = () => {
      this.pingTimer = this.clock.setTimeout(tick, pingDelayMs(++n, every, this.auth.random));
      const ws = this.ws;
      if (ws === null || !this.isOpen()) return;
      const id = this.nextId++;
      const timer = this.clock.setTimeout(() => {
        if (this.requests.delete(id)) this.abandon(ws, `no ping reply within ${this.options.requestTimeoutMs} ms`);
      }, this.options.requestTimeoutMs);
      this.requests.set(id, { kind: 'ping', timer });
      this.send({ id, op: 'ping' });
    };
    // The first soon after the open (the node's reconnectWindowMs known early), the second at a random phase: sdk/ping-schedule.ts.
    this.pingTimer = this.clock.setTimeout(tick, pingDelayMs(0, every, this.auth.random));
  }

  private stopPing(): void {
    if (this.pingTimer !== null) this.clock.clearTimeout(this.pingTimer);
    this.pingTimer = null;
  }

  // ---- token refresh --------------------------------------------------

  /** Arms the refresh of the token in use, at refreshAtMs() (or after `delayMs`, a retry). Only while connected. */
  private scheduleRefresh(delayMs?: number): void {
    this.stopRefresh();
    const a = this.auth;
    if (a.getToken === null || a.held === null) return;
    let delay = delayMs;
    if (delay === undefined) {
      const at = refreshAtMs(a.held, this.options.refreshAheadMs);
      if (at === null) return;
      delay = Math.max(0, at - Date.now());
    }
    a.refreshTimer = this.clock.setTimeout(() => {
      a.refreshTimer = null;
      this.refresh();
    }, delay);
  }

  private stopRefresh(): void {
    if (this.auth.refreshTimer !== null) this.clock.clearTimeout(this.auth.refreshTimer);
    this.auth.refreshTimer = null;
  }

  /** Fetches a token and sends it in band ({op:"auth"}); the session keeps its old one until the server accepts the new. */
  private refresh(): void {
    const ws = this.ws;
    if (ws === null || !this.isOpen()) return;
    this.fetchToken().then(
      (held) => {
        if (this.ws !== ws || !this.isOpen()) return;
        // The same token again (an application cache that renews only at expiry) is not a renewal: retry later.
        if (held.token === this.auth.held?.token) return this.refreshFailed(null);
        const id = this.nextId++;
        const timer = this.clock.setTimeout(() => {
          if (this.requests.delete(id)) this.refreshFailed(new C10mError(SdkErrorCode.TIMEOUT, `no reply to the auth command within ${this.options.requestTimeoutMs} ms`));
        }, this.options.requestTimeoutMs);
        this.requests.set(id, { kind: 'auth', held, timer });
        this.send({ id, op: 'auth', token: held.token });
      },
      (e: C10mError) => {
        if (this.ws === ws) this.refreshFailed(e);
      },
    );
  }

  /** Retries with the reconnect backoff while the token in use is valid; past its exp the server closes with 4003, and the reconnect fetches one. */
  private refreshFailed(error: C10mError | null): void {
    const a = this.auth;
    if (error !== null) this.emit('error', error);
    const delayMs = backoffDelayMs(a.refreshAttempt++, a.backoff, a.random);
    const expMs = a.held?.expMs ?? null;
    if (expMs === null || Date.now() + delayMs >= expMs) return;
    this.scheduleRefresh(delayMs);
  }

  private onAuthReply(req: PendingRequest, reply: Reply, error: C10mError | null): void {
    if (error !== null) return this.refreshFailed(new C10mError(error.code, `token refresh refused: ${error.message}`));
    const a = this.auth;
    a.held = req.held as HeldToken;
    a.refreshAttempt = 0;
    this.emit('token', { exp: a.held.expMs === null ? null : a.held.expMs / 1000, inBand: true });
    // Topics the new token no longer allows: the server has unsubscribed them.
    if (Array.isArray(reply.revoked)) {
      for (const topic of reply.revoked) {
        const t = typeof topic === 'string' ? this.topics.get(topic) : undefined;
        if (t !== undefined) this.dropTopic(t, new C10mError(ErrorCode.FORBIDDEN, `${t.topic}: the refreshed token does not allow it; the server unsubscribed it`, t.topic));
      }
    }
    this.scheduleRefresh();
  }

  // ---- incoming -------------------------------------------------------

  private onFrame(data: unknown): void {
    const incoming = decodeIncoming(this.encoding, data);
    if (incoming.kind === 'msg') return this.onDelivery(incoming.msg);
    if (incoming.kind === 'reply') return this.onReply(incoming.reply);
    this.emit('error', new C10mError(ErrorCode.BAD_REQUEST, `server sent a frame the client cannot read: ${incoming.why}`));
  }

  private onDelivery(msg: Message): void {
    if (this.patterns.size > 0) this.patterns.onDelivery(msg);
    const t = this.topics.get(msg.topic);
    // A delivery racing an unsubscribe.
    if (t === undefined) return;
    if (t.pendingSubId !== null) {
      t.early.push(msg);
      return;
    }
    this.apply(t, msg);
  }

  private apply(t: TopicState, msg: Message): void {
    const r = t.stream.accept(msg);
    if (r.gap !== null) this.reportGap(r.gap);
    if (!r.deliver) {
      this.stats.duplicates++;
      return;
    }
    this.stats.delivered++;
    for (const h of t.handlers) {
      try {
        (h as MessageHandler)(msg);
      } catch (e) {
        this.emit('error', new C10mError(ErrorCode.INTERNAL, `message handler of ${t.topic} threw: ${(e as Error)?.message ?? String(e)}`, t.topic));
      }
    }
  }

  private reportGap(gap: Gap): void {
    this.stats.gaps++;
    this.emit('gap', gap);
  }

  private onReply(reply: Reply): void {
    const id = reply.id;
    const req = typeof id === 'number' ? this.requests.get(id) : undefined;
    if (req === undefined) {
      if (reply.error) this.emit('error', new C10mError(reply.error.code as ErrorCode, reply.error.message));
      return;
    }
    this.requests.delete(id as number);
    if (req.timer) this.clock.clearTimeout(req.timer);
    const error = reply.error ? new C10mError(reply.error.code as ErrorCode, reply.error.message, req.topic) : null;
    switch (req.kind) {
      case 'pub':
        if (error) {
          if (req.reject) req.reject(error);
          else this.emit('error', error);
        } else req.resolve?.(publishAck(reply));
        return;
      case 'sub':
        return this.onSubReply(id as number, reply, error);
      case 'psub':
        return this.patterns.onSubReply(id as number, reply, error);
      case 'unsub':
        if (error) this.emit('error', error);
        return;
      case 'ping': {
        const w = reply.reconnectWindowMs;
        this.reconnectWindowMs = typeof w === 'number' && w > 0 && Number.isFinite(w) ? Math.min(w, MAX_RECONNECT_WINDOW_MS) : 0;
        return;
      }
      case 'auth':
        return this.onAuthReply(req, reply, error);
    }
  }

  /** Forgets a topic the server will not serve: its ready rejects, 'error' is emitted, and it is not resubscribed. */
  private dropTopic(t: TopicState, error: C10mError): void {
    if (this.topics.get(t.topic) === t) this.topics.delete(t.topic);
    for (const w of t.readyWaiters) w.reject(error);
    t.readyWaiters = [];
    this.emit('error', error);
  }

  private onSubReply(id: number, reply: Reply, error: C10mError | null): void {
    const entries = (reply.topics ?? {}) as Record<string, SubReplyTopic & { error?: { code: string; message: string } }>;
    for (const t of [...this.topics.values()]) {
      if (t.pendingSubId !== id) continue;
      t.pendingSubId = null;
      const entry = entries[t.topic];
      // A topic refused alone (FORBIDDEN) has {"error":{...}} as its entry.
      const topicError = entry?.error ? new C10mError(entry.error.code as ErrorCode, entry.error.message, t.topic) : null;
      if (error !== null || topicError !== null || entry === undefined) {
        const e = error ?? topicError ?? new C10mError(ErrorCode.INTERNAL, 'the sub reply does not name this topic', t.topic);
        this.dropTopic(t, new C10mError(e.code, `subscribe ${t.topic}: ${e.message}`, t.topic));
        continue;
      }
      const { gap, recovered } = t.stream.onSubReply(entry, t.resumedFrom);
      if (gap !== null) this.reportGap(gap);
      if (recovered !== null) this.emit('recovered', recovered);
      t.confirmed = true;
      const waiters = t.readyWaiters;
      t.readyWaiters = [];
      for (const w of waiters) w.resolve({ epoch: entry.epoch, seq: entry.seq });
      const early = t.early;
      t.early = [];
      for (const msg of early) {
        // A handler may have unsubscribed the topic meanwhile.
        if (this.topics.get(t.topic) !== t) break;
        this.apply(t, msg);
      }
      // A resume answered from another epoch: its gap, if the held deliveries did not show where the epochs meet.
      const late = this.topics.get(t.topic) === t ? t.stream.afterHeld() : null;
      if (late !== null) this.reportGap(late);
    }
  }

  // ---- close ----------------------------------------------------------

  /** Closes the connection for good: queued and unacked publishes fail with CLOSED. Resolves when the socket is closed. */
  close(): Promise<void> {
    if (this.closedPromise !== null) return this.closedPromise;
    const ws = this.ws;
    const wasConnected = this._state === 'connected';
    const url = this.url;
    this.schedule?.cancel();
    this.clearConnectTimer();
    this.stopPing();
    this.stopRefresh();
    this.auth.attemptGen++;
    this.ws = null;
    for (const [id, req] of this.requests) {
      if (req.timer) this.clock.clearTimeout(req.timer);
      req.reject?.(new C10mError(SdkErrorCode.CLOSED, 'the client was closed before the ack', req.topic));
      this.requests.delete(id);
    }
    for (const t of this.topics.values()) {
      for (const w of t.readyWaiters) w.reject(new C10mError(SdkErrorCode.CLOSED, 'the client was closed', t.topic));
      t.readyWaiters = [];
    }
    this.topics.clear();
    this.patterns.clear(new C10mError(SdkErrorCode.CLOSED, 'the client was closed'));
    this.finishClose(new C10mError(SdkErrorCode.CLOSED, 'the client was closed'));
    if (wasConnected) this.emit('disconnected', { url, code: CloseCode.NORMAL, reason: 'closed by the client', willReconnect: false });
    this.closedPromise = new Promise<void>((resolve) => {
      if (ws === null) return resolve();
      this.detach(ws);
      if (ws.readyState === 3 /* CLOSED */) return resolve();
      const timer = setTimeout(resolve, 2000);
      ws.onclose = () => {
        clearTimeout(timer);
        resolve();
      };
      try {
        ws.close(CloseCode.NORMAL, 'client closed');
      } catch {
        clearTimeout(timer);
        resolve();
      }
    });
    return this.closedPromise;
  }

  private finishClose(error: C10mError): void {
    this._state = 'closed';
    for (const p of this.queue.splice(0)) p.reject(new C10mError(error.code, `${error.message}; the queued publish was not sent`, p.topic));
    const waiters = this.readyWaiters;
    this.readyWaiters = [];
    for (const w of waiters) w.reject(error);
  }
}

function noop(): void {}

/** ws://host:port[/path] (or http(s)://, turned into ws(s)://) with /v1/ws as the default path and the session query. */
export function sessionUrl(url: string, encoding: Encoding, token: string | undefined, admit?: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new TypeError(`not a URL: ${url}`);
  }
  if (u.protocol === 'http:') u.protocol = 'ws:';
  else if (u.protocol === 'https:') u.protocol = 'wss:';
  if (u.protocol !== 'ws:' && u.protocol !== 'wss:') throw new TypeError(`a c10m URL is ws://, wss://, http:// or https://, not ${u.protocol}`);
  if (u.pathname === '/' || u.pathname === '') u.pathname = '/v1/ws';
  u.searchParams.set('encoding', encoding);
  if (token !== undefined) u.searchParams.set('token', token);
  if (admit !== undefined) u.searchParams.set('admit', admit);
  return u.toString();
}
