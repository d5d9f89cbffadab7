// The subscriber side of a workgroup: what a topic's owner (this workgroup
// or another) sends to it, written to its sessions. Deliveries go to uWS's
// topics (one publish per encoding with subscribers, the frame encoded
// once); replayed messages and snapshots go to the one session whose
// subscription is pending; subDone subscribes that session in uWS exactly
// then (no gap, no duplicate); acks answer publishers, WebSocket or HTTP.
// It also keeps what waits for an owner's answer (acks and subscriptions
// by token), and fails what an owner does not answer in time.
import type { WorkgroupContext } from './context';
import type { HttpResponse, TemplatedApp, WebSocket } from '../native-io/uws';
import { ENCODING_JSON, ENCODING_MSGPACK, dataToJson, errorReply, packr, unpackr, type EncodingId } from '../protocol/codec';
import { ErrorCode, ProtocolError, type CommandId } from '../protocol/errors';
import { FrameFlag, encodeBinaryFrame, encodeJsonFrame, nowMicros } from '../protocol/frame';
import { HeldFrames } from './held';
import { Conflation, subscriptionKey } from './conflation';
import { Stat, recordLatency } from '../protocol/stats';
import type { HttpExchange, HttpPublishEndpoint } from './http-publish';
import type { LogLimiter } from './log';
import type { SubscriberPort } from './ports';
import { AckStatus, RecordFlag, SubStatus, asBuffer, readReplayBatch, withResumeOutcome } from './records';
import { SessionFlag, type SessionSlab } from './slab';
import type { LocalTopics } from './topics';
import type { SseSide } from './sse';

/** A subscription or an ack the topic's owner has not answered after this long fails with OWNER_TIMEOUT. */
export const OWNER_TIMEOUT_MS = 10_000;

const EMPTY_BUFFER = Buffer.alloc(0);

/** Deliveries to a topic with at least this many subscribers in the workgroup are held for the end of the turn (workgroups/held.ts). */
export const HOLD_MIN_SUBSCRIBERS = 64;

/** The only thing uWS keeps for a socket of ours. */
export interface SessionData {
  slot: number;
}

/** Where an ack goes back to. */
export interface AckTarget {
  slot: number;
  generation: number;
  id: CommandId | null;
  /** HTTP publishes: the response, and its exchange (answered by http-publish.ts). */
  res: HttpResponse | null;
  http: HttpExchange | null;
  createdMs: number;
  /** The publisher asked for no ack: answer only a refusal (the token exists so that a refusal can reach it). */
  silent: boolean;
}

/** One sub command waiting for the owners of its topics. */
export interface SubContext {
  slot: number;
  generation: number;
  id: CommandId;
  encoding: EncodingId;
  remaining: number;
  topics: Record<string, Record<string, unknown>>;
  /** Keys this command subscribed in uWS (undone if the command fails). */
  added: string[];
  failed: boolean;
  /** The sub's conflation interval in ms (workgroups/conflation.ts), 0 for none. */
  conflateMs: number;
}

export interface PendingSub {
  ctx: SubContext;
  topic: string;
  createdMs: number;
  /** Counted against the session's subscription limit while pending (the topic was not subscribed). */
  fresh: boolean;
  /** An unsub of the topic came after this sub: answer it, but do not subscribe. */
  cancelled: boolean;
  /** A resume sent on a wildcard pattern's behalf: that pattern (workgroups/pattern-subs.ts answers it). */
  pattern?: object;
}

/** What the subscriber side asks of wildcard subscriptions (workgroups/pattern-subs.ts). */
export interface PatternHooks {
  /** Session patterns here (0: nothing to do per delivery). */
  readonly size: number;
  onDeliver(topic: string): void;
  topicDone(p: PendingSub, epoch: number, seq: number, status: number, replayed: number): void;
  exactDone(slot: number, topic: string): void;
  close(slot: number): void;
}

/** What the subscriber side needs of its workgroup. */
export interface DeliveryHost extends WorkgroupContext {
  readonly errors: LogLimiter;
  readonly httpPublish: HttpPublishEndpoint;
  app(): TemplatedApp;
}

/** What the subscriber side needs of the sessions (workgroups/sessions.ts): their sockets, and the ways to answer them. */
export interface DeliverySessions {
  socket(slot: number): WebSocket<SessionData> | undefined;
  reply(ws: WebSocket<SessionData>, slot: number, encoding: EncodingId, reply: Record<string, unknown>): void;
  sendToSession(ws: WebSocket<SessionData>, slot: number, bytes: string | Uint8Array, binary: boolean): void;
  hasLocalInterest(topic: string): boolean;
  /** No session here wants the topic any more: tell its owner. */
  dropInterest(topic: string): void;
}

export class Delivery implements SubscriberPort {
  /** Acks and subscriptions waiting for an owner, by token. */
  readonly acks = new Map<number, AckTarget>();
  readonly subs = new Map<number, PendingSub>();
  /** Subscriptions in flight per session slot (sparse), counted against --max-subscriptions-per-session. */
  readonly perSlot = new Map<number, number>();
  /** Bytes a session may hold beyond --max-backpressure-bytes because we replayed them (decays as they drain). */
  readonly replayAllowance = new Map<number, number>();
  /** Conflating sessions' groups, one per (topic, interval). */
  readonly conflation: Conflation<SessionData>;
  private readonly stats: Float64Array;
  private readonly slab: SessionSlab;
  private readonly local: LocalTopics;
  private readonly errors: LogLimiter;
  /** SSE streams (workgroups/sse.ts): their subscriptions' tokens and topics are routed there. */
  sse: SseSide | null = null;
  /** Wildcard subscriptions (set by the workgroup). */
  patterns: PatternHooks | null = null;

  constructor(
    private readonly host: DeliveryHost,
    private readonly sessions: DeliverySessions,
  ) {
    this.stats = host.stats;
    this.slab = host.slab;
    this.local = host.local;
    this.errors = host.errors;
    this.conflation = new Conflation<SessionData>({
      stats: this.stats,
      app: () => host.app(),
      convertToJson: (topic, seq, data) => this.convertToJson(topic, seq, data),
      convertToMsgpack: (topic, seq, json, data) => this.convertToMsgpack(topic, seq, json, data),
      replayAllowance: this.replayAllowance,
      sendToSession: (ws, slot, bytes, binary) => sessions.sendToSession(ws, slot, bytes, binary),
    });
  }

  /** The pending subscription replayed messages of `token` go to, or null when it is gone (answered, cancelled, failed, session closed). */
  private replayable(token: number): PendingSub | null {
    const p = this.subs.get(token);
    if (p === undefined || p.cancelled || p.ctx.failed || !this.slab.isOpen(p.ctx.slot, p.ctx.generation) || this.sessions.socket(p.ctx.slot) === undefined) return null;
    return p;
  }

  /** The socket replayed messages of `token` go to, or null. */
  private replaySocket(token: number): WebSocket<SessionData> | null {
    const p = this.replayable(token);
    return p === null ? null : (this.sessions.socket(p.ctx.slot) as WebSocket<SessionData>);
  }

  /** Receiver: a batch of replayed messages for one pending subscription, written under one cork. */
  replayBatch(token: number, topic: string, epoch: number, data: Uint8Array, count: number): boolean {
    const a = this.batchIn;
    a.token = token;
    a.topic = topic;
    a.epoch = epoch;
    a.data = asBuffer(data);
    a.count = count;
    // A subscription that is gone takes nothing: its messages are dropped (its owner ends the replay).
    this.corkReplay(token, this.corkedBatch);
    a.data = EMPTY_BUFFER;
    return true;
  }

  /** Runs `write` corked on the socket the replayed messages of `token` go to (one write for many messages); false when it is gone. */
  corkReplay(token: number, write: () => void): boolean {
    if (this.sse !== null && this.sse.owns(token)) return this.sse.corked(token, write);
    const ws = this.replaySocket(token);
    if (ws === null) return false;
    ws.cork(write);
    return true;
  }

  private readonly batchIn: { token: number; topic: string; epoch: number; data: Buffer; count: number } = { token: 0, topic: '', epoch: 0, data: EMPTY_BUFFER, count: 0 };
  private readonly batchEntry = (seq: number, tsMicros: number, flags: number, data: Buffer): void => {
    const a = this.batchIn;
    this.replay(a.token, a.topic, a.epoch, seq, tsMicros, flags, data);
  };
  private readonly corkedBatch = (): void => {
    const a = this.batchIn;
    const read = readReplayBatch(a.data, a.count, this.batchEntry);
    if (read !== a.data.length) {
      this.stats[Stat.INTERNAL_ERRORS]++;
      this.errors.error('replay-batch', { token: a.token, count: a.count, bytes: a.data.length, read }, 'malformed REPLAY_BATCH record');
    }
  };

  /** One replayed message (or the snapshot) for a subscription waiting for SUB_DONE. */
  replay(token: number, topic: string, epoch: number, seq: number, ts: number, flags: number, data: Uint8Array): void {
    if (this.sse !== null && this.sse.owns(token)) return this.sse.replay(token, topic, epoch, seq, ts, flags, data);
    const p = this.replayable(token);
    if (p === null) return;
    // A long replay is progress: the owner timeout counts from its last message (to the tick's second).
    p.createdMs = this.host.nowSec * 1000;
    const ctx = p.ctx;
    const ws = this.sessions.socket(ctx.slot) as WebSocket<SessionData>;
    const snapshot = (flags & RecordFlag.RETAIN) !== 0;
    // A conflating resume gets only the latest replayed message, written at subDone.
    if (ctx.conflateMs > 0 && !snapshot) return this.conflation.holdReplay(p, topic, epoch, seq, ts, flags, data);
    const frameFlags = snapshot ? FrameFlag.SNAPSHOT : FrameFlag.REPLAY;
    let frame: string | Uint8Array;
    if (ctx.encoding === ENCODING_JSON) {
      const json = flags & RecordFlag.MSGPACK ? this.convertToJson(topic, seq, data) : textOf(data);
      if (json === null) return;
      frame = encodeJsonFrame(topic, epoch, seq, ts, frameFlags, json);
    } else {
      const payload = flags & RecordFlag.MSGPACK ? data : this.convertToMsgpack(topic, seq, null, data);
      if (payload === null) return;
      frame = encodeBinaryFrame(topic, epoch, seq, ts, frameFlags, payload);
    }
    const bytes = frame.length;
    if (!snapshot) this.stats[Stat.REPLAYED_MESSAGES]++;
    this.stats[Stat.MESSAGES_OUT]++;
    this.stats[Stat.BYTES_OUT] += bytes;
    this.replayAllowance.set(ctx.slot, (this.replayAllowance.get(ctx.slot) ?? 0) + bytes);
    this.sessions.sendToSession(ws, ctx.slot, frame, ctx.encoding === ENCODING_MSGPACK);
  }

  /** The owner answered one topic of a sub command: subscribe the session in uWS now (no gap, no duplicate). */
  subDone(token: number, epoch: number, seq: number, status: number, replayed: number): void {
    if (this.sse !== null && this.sse.owns(token)) return this.sse.subDone(token, epoch, seq, status, replayed);
    const p = this.subs.get(token);
    if (p === undefined) return;
    this.subs.delete(token);
    if (p.pattern !== undefined) return (this.patterns as PatternHooks).topicDone(p, epoch, seq, status, replayed);
    if (status === SubStatus.TOO_MANY_TOPICS) {
      return this.failSub(
        p,
        ErrorCode.TOO_MANY_TOPICS,
        `the node holds its limit of topics (--max-topics ${this.host.options.maxTopics * this.host.count}), and ${p.topic} is not one of them; nothing was subscribed`,
      );
    }
    if (status === SubStatus.UNAVAILABLE) return this.failSub(p, ErrorCode.UNAVAILABLE, `redis is unreachable; ${p.topic} was not subscribed; subscribe again shortly`);
    const topic = p.topic;
    this.local.done(topic);
    const ctx = p.ctx;
    this.settlePending(p);
    const open = this.slab.isOpen(ctx.slot, ctx.generation) && !ctx.failed;
    if (ctx.conflateMs > 0) this.conflation.endReplay(p, open && !p.cancelled ? this.sessions.socket(ctx.slot) : undefined, ctx.slot, ctx.encoding);
    if (open) {
      const ws = this.sessions.socket(ctx.slot) as WebSocket<SessionData>;
      const key = subscriptionKey(ctx.encoding === ENCODING_MSGPACK ? 'm' : 'j', topic, ctx.conflateMs);
      if (!p.cancelled && !ws.isSubscribed(key)) {
        // Messages delivered before this subscription are not its own.
        this.flushDeliveries();
        // One subscription per session and topic: another interval (or none) is replaced, not added.
        if (!this.conflation.subscribe(ws, key, topic, ctx.conflateMs)) {
          ctx.added.push(key);
          this.slab.addSubscriptions(ctx.slot, 1);
          this.stats[Stat.SUBSCRIPTIONS]++;
        }
      }
      this.patterns?.exactDone(ctx.slot, topic);
      ctx.topics[topic] = withResumeOutcome({ epoch, seq }, status, replayed);
    }
    if ((!open || p.cancelled) && !this.sessions.hasLocalInterest(topic)) this.sessions.dropInterest(topic);
    if (--ctx.remaining === 0 && open) {
      const ws = this.sessions.socket(ctx.slot) as WebSocket<SessionData>;
      this.sessions.reply(ws, ctx.slot, ctx.encoding, { id: ctx.id, ok: true, topics: ctx.topics });
    }
  }

  /**
   * Hands one message to this workgroup's subscribers: one uWS publish per
   * encoding that has subscribers here, the frame encoded once, held until
   * the end of the turn (workgroups/held.ts). No allocation per subscriber.
   */
  deliver(topic: string, epoch: number, seq: number, ts: number, receivedAt: number, msgpack: number, data: Uint8Array, json: string | null): void {
    if (this.patterns !== null && this.patterns.size !== 0) this.patterns.onDeliver(topic);
    if (this.sse !== null && this.sse.active) this.sse.deliver(topic, epoch, seq, ts, msgpack, data, json);
    if (this.conflation.topics > 0) this.conflation.offer(topic, epoch, seq, ts, msgpack, data, json);
    const app = this.host.app();
    const keyJson = 'j' + topic;
    const keyMsgpack = 'm' + topic;
    const nJson = app.numSubscribers(keyJson);
    const nMsgpack = app.numSubscribers(keyMsgpack);
    if (nJson + nMsgpack === 0) return;
    // A topic with few subscribers here goes to uWS at once when nothing is held (nothing to overtake): uWS
    // drains it at the end of this loop iteration, where held frames (setImmediate runs after uWS's drain)
    // would wait for the next one. Holding pays where a subscriber gets many messages in one turn.
    if (nJson + nMsgpack < HOLD_MIN_SUBSCRIBERS && this.held.count === 0 && !this.flushing) {
      return this.publishNow(app, topic, epoch, seq, ts, receivedAt, msgpack, data, json, keyJson, keyMsgpack, nJson, nMsgpack);
    }
    if (this.held.full) this.flushDeliveries();
    const held = this.held;
    // Data is checked at the publish so that both encodings can carry it; if a conversion still
    // fails, that message is lost for that encoding only (counted and logged), never the workgroup.
    if (nJson > 0) {
      const text = json ?? (msgpack ? this.convertToJson(topic, seq, data) : textOf(data));
      if (text !== null) {
        const frame = encodeJsonFrame(topic, epoch, seq, ts, 0, text);
        held.addText(keyJson, frame, nMsgpack > 0 ? -1 : receivedAt);
        this.stats[Stat.BYTES_OUT] += nJson * frame.length;
      }
    }
    if (nMsgpack > 0) {
      const payload = msgpack ? data : this.convertToMsgpack(topic, seq, json, data);
      if (payload !== null) {
        const before = held.used;
        held.addBinary(keyMsgpack, topic, epoch, seq, ts, 0, payload, receivedAt);
        this.stats[Stat.BYTES_OUT] += nMsgpack * (held.used - before);
      }
    }
    this.stats[Stat.MESSAGES_OUT] += nJson + nMsgpack;
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(this.flushBound);
    }
  }

  private publishNow(
    app: TemplatedApp,
    topic: string,
    epoch: number,
    seq: number,
    ts: number,
    receivedAt: number,
    msgpack: number,
    data: Uint8Array,
    json: string | null,
    keyJson: string,
    keyMsgpack: string,
    nJson: number,
    nMsgpack: number,
  ): void {
    if (nJson > 0) {
      const text = json ?? (msgpack ? this.convertToJson(topic, seq, data) : textOf(data));
      if (text !== null) {
        const frame = encodeJsonFrame(topic, epoch, seq, ts, 0, text);
        app.publish(keyJson, frame, false);
        this.stats[Stat.BYTES_OUT] += nJson * frame.length;
      }
    }
    if (nMsgpack > 0) {
      const payload = msgpack ? data : this.convertToMsgpack(topic, seq, json, data);
      if (payload !== null) {
        const frame = encodeBinaryFrame(topic, epoch, seq, ts, 0, payload);
        app.publish(keyMsgpack, frame, true);
        this.stats[Stat.BYTES_OUT] += nMsgpack * frame.length;
      }
    }
    this.stats[Stat.MESSAGES_OUT] += nJson + nMsgpack;
    recordLatency(this.stats, nowMicros() - receivedAt);
  }

  /** Frames delivered this turn, not yet handed to uWS; and the other set, handed over while a flush runs. */
  private held = new HeldFrames();
  private spare = new HeldFrames();
  private flushing = false;
  private flushScheduled = false;
  private readonly flushBound = (): void => {
    this.flushScheduled = false;
    this.flushDeliveries();
  };

  /**
   * Hands the held frames to uWS, in order. Runs at the end of the turn, and
   * before anything else reaches a session (a reply, a replayed message, a
   * subscribe or unsubscribe in uWS), so that nothing overtakes them. A
   * flush asked for during a flush (a callback of uWS) waits for it to end.
   */
  flushDeliveries(): void {
    if (this.flushing || this.held.count === 0) return;
    this.flushing = true;
    try {
      const app = this.host.app();
      // Frames delivered while these go (uWS callbacks) go to the other set, after these.
      while (this.held.count > 0) {
        const h = this.held;
        this.held = this.spare;
        this.spare = h;
        const now = nowMicros();
        let start = 0;
        for (let i = 0; i < h.count; i++) {
          const text = h.texts[i];
          const end = h.ends[i];
          if (text !== null) app.publish(h.keys[i], text, false);
          else app.publish(h.keys[i], h.bytes.subarray(start, end), true);
          start = end;
          if (h.receivedAt[i] >= 0) recordLatency(this.stats, now - h.receivedAt[i]);
        }
        h.clear();
      }
    } finally {
      this.flushing = false;
    }
  }

  /** msgpack data as JSON text for JSON subscribers, or null (counted, logged) when it cannot be converted. */
  private convertToJson(topic: string, seq: number, data: Uint8Array): string | null {
    try {
      return dataToJson(unpackData(data));
    } catch (err) {
      this.stats[Stat.DELIVERY_ERRORS]++;
      this.errors.error('convert-to-json', { topic, seq, err: (err as Error).message }, 'a message could not be converted for JSON subscribers');
      return null;
    }
  }

  /** JSON data as msgpack for msgpack subscribers, or null (counted, logged) when it cannot be converted. */
  private convertToMsgpack(topic: string, seq: number, json: string | null, data: Uint8Array): Uint8Array | null {
    try {
      return packr.pack(JSON.parse(json ?? textOf(data)));
    } catch (err) {
      this.stats[Stat.DELIVERY_ERRORS]++;
      this.errors.error('convert-to-msgpack', { topic, seq, err: (err as Error).message }, 'a message could not be converted for msgpack subscribers');
      return null;
    }
  }

  ack(token: number, epoch: number, seq: number, status: number): void {
    const ack = this.acks.get(token);
    if (ack === undefined) return;
    this.acks.delete(token);
    // DUPLICATE: an idempotency key seen within the window; (epoch, seq) are the first publish's.
    const duplicate = status === AckStatus.DUPLICATE;
    const refused = status !== AckStatus.OK && !duplicate;
    if (ack.http !== null) {
      if (!refused) return this.host.httpPublish.answer(ack.http, epoch, seq, duplicate);
      const r = this.refusal(status);
      return this.host.httpPublish.fail(ack.http, '503 Service Unavailable', r.code, r.message, r.retryAfter);
    }
    if (ack.silent && !refused) return;
    if (!this.slab.isOpen(ack.slot, ack.generation)) return;
    const ws = this.sessions.socket(ack.slot);
    if (ws === undefined) return;
    const encoding: EncodingId = this.slab.flags(ack.slot) & SessionFlag.MSGPACK ? ENCODING_MSGPACK : ENCODING_JSON;
    if (refused) {
      const r = this.refusal(status);
      return this.sessions.reply(ws, ack.slot, encoding, errorReply(new ProtocolError(r.code, r.message, ack.id as CommandId)));
    }
    this.sessions.reply(ws, ack.slot, encoding, duplicate ? { id: ack.id, ok: true, epoch, seq, duplicate } : { id: ack.id, ok: true, epoch, seq });
  }

  /** What a refused publish is told (AckStatus other than OK): made only for a refusal, never per ack. */
  private refusal(status: number): { code: ErrorCode; message: string; retryAfter: string } {
    if (status === AckStatus.UNAVAILABLE) return { code: ErrorCode.UNAVAILABLE, message: 'redis is unreachable; nothing was published; retry shortly', retryAfter: '1' };
    if (status === AckStatus.UNCERTAIN) {
      return { code: ErrorCode.UNAVAILABLE, message: 'redis did not answer this publish (the connection broke or it timed out); it may or may not have been published', retryAfter: '1' };
    }
    const limit = this.host.options.maxTopics * this.host.count;
    return { code: ErrorCode.TOO_MANY_TOPICS, message: `the node holds its limit of topics (--max-topics ${limit}); nothing was published`, retryAfter: '10' };
  }

  /** Fails acks and subscriptions an owner has not answered in OWNER_TIMEOUT_MS (it may have restarted). */
  failOverdue(nowMs: number): void {
    const before = nowMs - OWNER_TIMEOUT_MS;
    for (const [token, ack] of this.acks) {
      if (ack.createdMs > before) continue;
      this.acks.delete(token);
      const message = "the topic's owner did not answer in time; the message may or may not have been published";
      if (ack.http !== null) {
        this.host.httpPublish.timeout(ack.http, message);
      } else if (this.slab.isOpen(ack.slot, ack.generation)) {
        const ws = this.sessions.socket(ack.slot) as WebSocket<SessionData>;
        const encoding: EncodingId = this.slab.flags(ack.slot) & SessionFlag.MSGPACK ? ENCODING_MSGPACK : ENCODING_JSON;
        this.sessions.reply(ws, ack.slot, encoding, errorReply(new ProtocolError(ErrorCode.OWNER_TIMEOUT, message, ack.id as CommandId)));
      }
    }
    for (const [token, p] of this.subs) {
      if (p.createdMs > before) continue;
      this.subs.delete(token);
      this.failSub(p, ErrorCode.OWNER_TIMEOUT, `the owner of ${p.topic} did not answer in time; nothing was subscribed; subscribe again`);
    }
  }

  /** One topic of a sub command failed (already out of pendingSubs): the whole command fails, once, and what it subscribed is undone. */
  private failSub(p: PendingSub, code: ErrorCode, message: string): void {
    this.settlePending(p);
    if (p.ctx.conflateMs > 0) this.conflation.endReplay(p, undefined, 0, p.ctx.encoding);
    this.local.done(p.topic);
    const ctx = p.ctx;
    ctx.remaining--;
    if (!ctx.failed) {
      ctx.failed = true;
      if (this.slab.isOpen(ctx.slot, ctx.generation)) {
        const ws = this.sessions.socket(ctx.slot) as WebSocket<SessionData>;
        let undone = 0;
        this.flushDeliveries();
        for (const key of ctx.added) if (ws.unsubscribe(key)) undone++;
        this.slab.addSubscriptions(ctx.slot, -undone);
        this.stats[Stat.SUBSCRIPTIONS] -= undone;
        this.sessions.reply(ws, ctx.slot, ctx.encoding, errorReply(new ProtocolError(code, message, ctx.id)));
      }
    }
    if (!this.sessions.hasLocalInterest(p.topic)) this.sessions.dropInterest(p.topic);
  }

  /** A pending subscription is answered (or given up): it no longer counts against the session's limit. */
  private settlePending(p: PendingSub): void {
    if (!p.fresh) return;
    const ctx = p.ctx;
    if (!this.slab.isOpen(ctx.slot, ctx.generation)) return;
    const n = (this.perSlot.get(ctx.slot) ?? 1) - 1;
    if (n > 0) this.perSlot.set(ctx.slot, n);
    else this.perSlot.delete(ctx.slot);
  }

  /** An unsub overtakes the session's subscriptions still in flight for those topics. */
  cancelPendingSubs(slot: number, topics: string[]): void {
    const generation = this.slab.generation(slot);
    for (const p of this.subs.values()) {
      // A resume on a pattern's behalf is the pattern's: an exact unsub does not stop it.
      if (p.ctx.slot === slot && p.ctx.generation === generation && topics.includes(p.topic) && p.pattern === undefined) p.cancelled = true;
    }
  }
}

/**
 * Msgpack data as a value. Ring records and cache arenas are shared memory,
 * and msgpackr misreads a view over a SharedArrayBuffer ("Unexpected end of
 * buffer", or garbage), so such data is copied out first. Only when an
 * encoding must be converted (a msgpack publish to a JSON subscriber).
 */
function unpackData(data: Uint8Array): unknown {
  return unpackr.unpack(data.buffer instanceof SharedArrayBuffer ? Uint8Array.prototype.slice.call(data) : data);
}

/** Bytes of a JSON payload as text. */
export function textOf(data: Uint8Array): string {
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('utf8');
}
