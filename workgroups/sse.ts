// GET /v1/sse: Server-Sent Events streams, the transport for networks that
// break WebSockets. A stream names its topics in the request and gets their
// messages as `data:` events (the JSON delivery frame), each with an `id:`
// holding the stream's position in every topic (protocol/sse.ts), so that a
// browser's automatic reconnect (Last-Event-ID) resumes through the same
// path as a WebSocket sub with `resume`: the topic's owner replays what the
// stream missed, or the stream is told of the gap (`event: gap`).
//
// A stream is not a uWS WebSocket, so uWS's topic tree does not reach it:
// this workgroup keeps its own table, topic -> streams (and each one's
// index of the topic), written to on delivery. A topic with no SSE stream
// costs the delivery one check. Per stream and message: its id and the
// event appended to the stream's writes of the turn (one string made per
// message for all the streams of that topic alone), and one corked write
// per stream at the end of the turn. Each stream holds its response, its
// topics and positions, and two closures (onAborted, onWritable).
//
// Subscribing: for each topic, OwnerPort.subscribe with a token of this
// workgroup's (the tokens of WebSocket subs come from the same counter);
// the owner's replays and subDone for that token come here through the
// Delivery's hooks. The stream joins the topic's table at subDone (the
// rings are FIFO: every later delivery has a higher seq), and once every
// topic is done it gets `event: ready`, the WebSocket sub reply's entries.
//
// Slow readers. uWS's HttpResponse.write returns false once its socket
// buffers what the kernel did not take, and says nothing of how much
// (getWriteOffset stays 0 for a chunked response: seen with uWS v20.30 on
// loopback, 5 MB written to a reader that read nothing); a later write
// that returns true found that buffer empty. So a stream counts
// the characters written since its last write that returned true; past
// --max-backpressure-bytes (plus what it was replayed, as for WebSocket
// sessions) it is cut, and its client resumes from its last id. With an
// onWritable handler uWS stops draining the buffer by itself: the handler
// drains it with a comment line (harmless between events), and it also
// keeps uWS's 10 s HTTP timeout (armed by a failed write) from cutting an
// idle stream once drained.
import type { HttpRequest, HttpResponse, TemplatedApp } from '../native-io/uws';
import { dataToJson, unpackr } from '../protocol/codec';
import { ErrorCode, type ErrorCode as ErrorCodeT } from '../protocol/errors';
import { FrameFlag, encodeJsonFrame } from '../protocol/frame';
import { MAX_SSE_TOPICS, decodeResumeId, positionText, topicListHash } from '../protocol/sse';
import { Stat } from '../protocol/stats';
import { topicError } from '../protocol/topic';
import { MAX_TOKEN_CHARS, bearerChallenge, isFailure, type AuthFailure, type Verified } from './auth';
import type { WorkgroupContext } from './context';
import { CorsPolicy } from './cors';
import { Entitlement } from './entitlement';
import type { LogLimiter, Logger } from './log';
import type { OwnerPort } from './ports';
import { RecordFlag, SUB_STATUS_REASON, SubStatus, withResumeOutcome } from './records';
import { ownerOf } from './topics';

/** Default seconds between heartbeat comments on a stream that had nothing else to say (--sse-heartbeat-seconds). */
export const DEFAULT_SSE_HEARTBEAT_SECONDS = 15;
/** A topic's owner that has not answered a stream's subscription after this long: the topic fails (OWNER_TIMEOUT). */
const SSE_OWNER_TIMEOUT_MS = 10_000;
const EMPTY_ENTRIES: Record<string, Record<string, unknown>> = {};

/** What the subscriber side (workgroups/delivery.ts) hands to the SSE streams: the hooks, one check each. */
export interface SseSide {
  /** At least one topic has a live SSE stream here. */
  readonly active: boolean;
  /** The topic has a live SSE stream here. */
  has(topic: string): boolean;
  /** Topics with live SSE streams here. */
  topics(): IterableIterator<string>;
  /** The pending subscription `token` is an SSE stream's. */
  owns(token: number): boolean;
  deliver(topic: string, epoch: number, seq: number, tsMicros: number, msgpack: number, data: Uint8Array, json: string | null): void;
  replay(token: number, topic: string, epoch: number, seq: number, tsMicros: number, flags: number, data: Uint8Array): void;
  corked(token: number, write: () => void): boolean;
  subDone(token: number, epoch: number, seq: number, status: number, replayed: number): void;
}

/** What the streams need of their workgroup besides its context. */
export interface SseHost extends WorkgroupContext {
  readonly log: Logger;
  readonly errors: LogLimiter;
  isOpen(): boolean;
  failed(cause: string, err: unknown): void;
}

/** The workgroup's parts the streams call. */
export interface SsePorts {
  readonly entitlement: Entitlement;
  takeToken(): number;
  owner(workgroup: number): OwnerPort;
  /** Any session or stream here still wants the topic (or has a subscription of it in flight). */
  hasLocalInterest(topic: string): boolean;
  dropInterest(topic: string): void;
}

/** One SSE stream: its response, topics, and position in each. */
class SseStream {
  closed = false;
  /** Cut as a slow reader inside a cork: closed once the cork returns. */
  cut = false;
  /** Events of this turn, written at its end in one write. */
  out = '';
  /** Characters written since the last write that found uWS's buffer empty. */
  unsent = 0;
  /** Characters replayed since then: allowed on top of the limit. */
  allowance = 0;
  /** Topics whose owner has not answered yet. */
  pending = 0;
  /** nowSec of the last write (heartbeats go to streams idle longer than the interval). */
  lastWriteSec = 0;
  /** The ready event's entries, until it is written. */
  entries: Record<string, Record<string, unknown>> = EMPTY_ENTRIES;
  // Plain arrays, not typed ones: a typed array costs about 150 B of heap and backing store even for one element.
  readonly epochs: number[];
  readonly seqs: number[];
  /** positionText of each topic: the id is the hash and these, joined. */
  readonly parts: string[];
  /** 1 while the stream is in the topic's table. */
  readonly live: number[];

  constructor(
    readonly res: HttpResponse,
    readonly topics: string[],
    readonly hash: string,
    /** The token's exp (unix seconds), 0: none. */
    readonly expSec: number,
    positions: [number, number][] | null,
  ) {
    const n = topics.length;
    this.epochs = [];
    this.seqs = [];
    this.live = [];
    this.parts = [];
    for (let i = 0; i < n; i++) {
      this.epochs.push(positions === null ? 0 : positions[i][0]);
      this.seqs.push(positions === null ? 0 : positions[i][1]);
      this.live.push(0);
      this.parts.push(positionText(this.epochs[i], this.seqs[i]));
    }
  }

  id(): string {
    let id = this.hash;
    for (let i = 0; i < this.parts.length; i++) id += '_' + this.parts[i];
    return id;
  }
}

interface PendingTopic {
  stream: SseStream;
  index: number;
  createdMs: number;
}

export class SseEndpoint implements SseSide {
  /** Topic -> its live streams here, each with the topic's index in it. */
  private readonly byTopic = new Map<string, Map<SseStream, number>>();
  private readonly streams = new Set<SseStream>();
  private readonly pendingSubs = new Map<number, PendingTopic>();
  private readonly cors: CorsPolicy;
  private readonly stats: Float64Array;
  private readonly heartbeatSeconds: number;
  private readonly limit: number;
  /** Most replayed characters allowed on top of the limit (as uWS's hard limit for WebSocket sessions). */
  private readonly maxAllowance: number;
  private timer: NodeJS.Timeout | null = null;
  private lastHeartbeatSec = 0;
  // The write in progress (one per thread at a time): no closure per write.
  private wStream: SseStream | null = null;
  private wText = '';
  private readonly corkedWrite = (): void => {
    const s = this.wStream as SseStream;
    const n = this.wText.length;
    if (s.res.write(this.wText)) {
      s.unsent = 0;
      s.allowance = 0;
    } else {
      s.unsent += n;
      if (s.unsent > this.limit + Math.min(s.allowance, this.maxAllowance)) s.cut = true;
    }
  };

  constructor(
    private readonly host: SseHost,
    private readonly ports: SsePorts,
  ) {
    const o = host.options;
    this.stats = host.stats;
    this.cors = new CorsPolicy(o.corsOrigins);
    this.heartbeatSeconds = o.sseHeartbeatSeconds ?? DEFAULT_SSE_HEARTBEAT_SECONDS;
    this.limit = o.maxBackpressureBytes;
    this.maxAllowance = o.maxBackpressureBytes + Math.min(4 * o.cacheTopicBytes, 64 * 1024 * 1024);
    this.stats[Stat.SSE_SESSIONS] = 0;
    this.stats[Stat.SSE_SUBSCRIPTIONS] = 0;
  }

  register(app: TemplatedApp): void {
    app.get('/v1/sse', (res, req) => {
      try {
        this.onRequest(res, req);
      } catch (err) {
        this.host.failed('sse', err);
        res.writeStatus('500 Internal Server Error').end();
      }
    });
    this.timer = setInterval(() => {
      try {
        this.sweep(Date.now());
      } catch (err) {
        this.host.failed('sse-sweep', err);
      }
    }, 1000);
    this.timer.unref();
  }

  // ---- the hooks (SseSide) ----------------------------------------------

  get active(): boolean {
    return this.byTopic.size > 0;
  }

  has(topic: string): boolean {
    return this.byTopic.has(topic);
  }

  topics(): IterableIterator<string> {
    return this.byTopic.keys();
  }

  owns(token: number): boolean {
    return this.pendingSubs.size > 0 && this.pendingSubs.has(token);
  }

  /** One message to the topic's live streams: the frame made once, then per stream its id and one write. */
  deliver(topic: string, epoch: number, seq: number, tsMicros: number, msgpack: number, data: Uint8Array, json: string | null): void {
    const streams = this.byTopic.get(topic);
    if (streams === undefined) return;
    const text = json ?? (msgpack ? this.toJson(topic, seq, data) : textOf(data));
    if (text === null) return;
    const tail = '\ndata: ' + encodeJsonFrame(topic, epoch, seq, tsMicros, 0, text) + '\n\n';
    const pos = positionText(epoch, seq);
    // Every stream of this one topic alone has the same id: its event is made once.
    let alone: string | null = null;
    for (const [s, i] of streams) {
      if (s.topics.length === 1) alone ??= 'id: ' + s.hash + '_' + pos + tail;
      this.message(s, i, epoch, seq, pos, tail, s.topics.length === 1 ? alone : null, false);
    }
  }

  replay(token: number, topic: string, epoch: number, seq: number, tsMicros: number, flags: number, data: Uint8Array): void {
    const p = this.pendingSubs.get(token);
    if (p === undefined || p.stream.closed) return;
    p.createdMs = Date.now();
    const snapshot = (flags & RecordFlag.RETAIN) !== 0;
    const text = flags & RecordFlag.MSGPACK ? this.toJson(topic, seq, data) : textOf(data);
    if (text === null) return;
    const frame = encodeJsonFrame(topic, epoch, seq, tsMicros, snapshot ? FrameFlag.SNAPSHOT : FrameFlag.REPLAY, text);
    // The snapshot moves no position (its seq is at most the one subDone gives): no id, the last one stands.
    if (snapshot) {
      this.stats[Stat.SSE_MESSAGES_OUT]++;
      return this.write(p.stream, 'data: ' + frame + '\n\n', true);
    }
    this.stats[Stat.REPLAYED_MESSAGES]++;
    this.message(p.stream, p.index, epoch, seq, positionText(epoch, seq), '\ndata: ' + frame + '\n\n', null, true);
  }

  corked(token: number, write: () => void): boolean {
    const p = this.pendingSubs.get(token);
    if (p === undefined || p.stream.closed) return false;
    // The replayed messages are buffered with the stream's other events of this turn (one write at its end).
    write();
    return true;
  }

  subDone(token: number, epoch: number, seq: number, status: number, replayed: number): void {
    const p = this.pendingSubs.get(token);
    if (p === undefined) return;
    this.pendingSubs.delete(token);
    const s = p.stream;
    const i = p.index;
    const topic = s.topics[i];
    this.host.local.done(topic);
    if (status === SubStatus.TOO_MANY_TOPICS || status === SubStatus.UNAVAILABLE) {
      const message = status === SubStatus.UNAVAILABLE ? `redis is unreachable; ${topic} was not subscribed` : `the node holds its limit of topics, and ${topic} is not one of them`;
      this.failTopic(s, topic, status === SubStatus.UNAVAILABLE ? ErrorCode.UNAVAILABLE : ErrorCode.TOO_MANY_TOPICS, message);
      return;
    }
    if (s.closed) {
      if (!this.ports.hasLocalInterest(topic)) this.ports.dropInterest(topic);
      return;
    }
    const entry = withResumeOutcome({ epoch, seq }, status, replayed);
    // What the replays did not bring (a gap they showed was reported as it came).
    if (entry.recovered === false && s.epochs[i] !== 0 && (s.epochs[i] !== epoch || s.seqs[i] !== seq)) this.gap(s, i, SUB_STATUS_REASON[status], epoch, seq);
    this.move(s, i, epoch, seq);
    let streams = this.byTopic.get(topic);
    if (streams === undefined) {
      streams = new Map();
      this.byTopic.set(topic, streams);
    }
    streams.set(s, i);
    s.live[i] = 1;
    this.stats[Stat.SSE_SUBSCRIPTIONS]++;
    s.entries[topic] = entry;
    this.topicDone(s);
  }

  // ---- requests -----------------------------------------------------------

  private onRequest(res: HttpResponse, req: HttpRequest): void {
    const allow = this.allowOriginFor(req.getHeader('origin'), req.getHeader('host'));
    if (allow === null) return this.refuse(res, null, '403 Forbidden', ErrorCode.ORIGIN_NOT_ALLOWED, 'this origin may not open streams here (see --cors-origins)');
    if (this.host.isDraining()) return this.refuse(res, allow, '503 Service Unavailable', ErrorCode.SHUTTING_DOWN, 'server is shutting down; reconnect to another node');
    const param = req.getQuery('topics') ?? '';
    const topics = param === '' ? [] : param.split(',');
    const max = Math.min(MAX_SSE_TOPICS, this.host.options.maxSubscriptionsPerSession);
    if (topics.length > max) return this.refuse(res, allow, '400 Bad Request', ErrorCode.TOO_MANY_SUBSCRIPTIONS, `a stream names at most ${max} topics; this one names ${topics.length}`);
    const seen = new Set<string>();
    for (const topic of topics) {
      const err = topicError(topic);
      if (err !== null) return this.refuse(res, allow, '400 Bad Request', ErrorCode.BAD_TOPIC, `${JSON.stringify(topic.slice(0, 300))}: ${err}`);
      if (seen.has(topic)) return this.refuse(res, allow, '400 Bad Request', ErrorCode.BAD_REQUEST, `${topic} is named twice`);
      seen.add(topic);
    }
    // The browser's Last-Event-ID (its reconnect, to the same URL) is newer than the URL's resume.
    const header = req.getHeader('last-event-id');
    const idText = header !== '' ? header : (req.getQuery('resume') ?? '');
    const positions = idText === '' ? null : decodeResumeId(idText, topics);
    if (typeof positions === 'string') return this.refuse(res, allow, '400 Bad Request', ErrorCode.BAD_REQUEST, `${header !== '' ? 'Last-Event-ID' : 'resume'}: ${positions}`);
    const e = this.ports.entitlement;
    if (!e.on) return this.open(res, allow, topics, positions, null);
    const token = Entitlement.tokenOf(req);
    if (token === '') return this.refuseToken(res, allow, { code: ErrorCode.UNAUTHORIZED, message: 'this server needs a token: the token query parameter, or Authorization: Bearer (--auth jwt)' });
    if (token.length > MAX_TOKEN_CHARS) return this.refuseToken(res, allow, { code: ErrorCode.UNAUTHORIZED, message: `a token is 1 to ${MAX_TOKEN_CHARS} characters` });
    const now = e.verifyNow(token, this.host.nowSec);
    if (now !== null) return isFailure(now) ? this.refuseToken(res, allow, now) : this.open(res, allow, topics, positions, now);
    // Verified by jose in a later turn: the request waits (nothing of the stream exists meanwhile).
    let aborted = false;
    res.onAborted(() => {
      aborted = true;
    });
    e.verify(token, this.host.nowSec).then(
      (v) => {
        if (aborted || !this.host.isOpen()) {
          if (!isFailure(v)) e.release(v);
          return;
        }
        res.cork(() => {
          if (isFailure(v)) return this.refuseToken(res, allow, v);
          if (this.host.isDraining()) {
            e.release(v);
            return this.refuse(res, allow, '503 Service Unavailable', ErrorCode.SHUTTING_DOWN, 'server is shutting down; reconnect to another node');
          }
          this.open(res, allow, topics, positions, v);
        });
      },
      (err) => {
        this.host.failed('sse-auth', err);
        if (!aborted) res.cork(() => res.writeStatus('500 Internal Server Error').end());
      },
    );
  }

  /** The stream: 200, then one subscription per topic to its owner (which may answer within this call). */
  private open(res: HttpResponse, allow: string, topics: string[], positions: [number, number][] | null, v: Verified | null): void {
    let forbidden = 0;
    const entries: Record<string, Record<string, unknown>> = {};
    if (v !== null) {
      for (const topic of topics) {
        if (Entitlement.allowsSubscribe(v, topic)) continue;
        forbidden++;
        entries[topic] = { error: { code: ErrorCode.FORBIDDEN, message: `this token does not allow subscribing to ${topic}` } };
      }
      this.ports.entitlement.release(v);
      this.stats[Stat.AUTH_FORBIDDEN] += forbidden;
      if (forbidden > 0 && forbidden === topics.length) {
        const what = topics.length === 1 ? topics[0] : `any of these ${topics.length} topics`;
        return this.refuse(res, allow, '403 Forbidden', ErrorCode.FORBIDDEN, `this token does not allow subscribing to ${what}`, 'Bearer error="insufficient_scope"');
      }
      this.stats[Stat.AUTH_ACCEPTED]++;
    }
    const s = new SseStream(res, topics, topicListHash(topics).toString(36), v === null ? 0 : v.exp, positions);
    s.entries = entries;
    s.lastWriteSec = this.host.nowSec;
    res.onAborted(() => this.closeStream(s));
    res.onWritable(() => {
      // uWS drains nothing by itself while this handler is set: a comment line drains it.
      if (s.closed) return true;
      const ok = res.write(':\n');
      if (ok) {
        s.unsent = 0;
        s.allowance = 0;
      }
      return ok;
    });
    res.writeStatus('200 OK').writeHeader('content-type', 'text/event-stream').writeHeader('cache-control', 'no-cache, no-transform').writeHeader('x-accel-buffering', 'no');
    if (allow !== '') res.writeHeader('access-control-allow-origin', allow).writeHeader('vary', 'Origin');
    res.write(': c10m\n\n');
    this.streams.add(s);
    this.stats[Stat.SSE_SESSIONS_OPENED]++;
    this.stats[Stat.SSE_SESSIONS] = this.streams.size;
    s.pending = topics.length - forbidden;
    if (s.pending === 0) return this.ready(s);
    const nowMs = Date.now();
    const id = this.host.id;
    for (let i = 0; i < topics.length; i++) {
      const topic = topics[i];
      if (entries[topic] !== undefined) continue;
      const token = this.ports.takeToken();
      this.pendingSubs.set(token, { stream: s, index: i, createdMs: nowMs });
      this.host.local.add(topic);
      const resume = s.epochs[i] !== 0;
      this.ports.owner(ownerOf(topic, this.host.count)).subscribe(id, token, topic, resume ? RecordFlag.RESUME : 0, s.epochs[i], s.seqs[i]);
    }
  }

  // ---- events -------------------------------------------------------------

  /** A message (live or replayed) to one stream: a gap first if it does not follow the stream's position; a duplicate is dropped. */
  private message(s: SseStream, i: number, epoch: number, seq: number, pos: string, tail: string, event: string | null, replayed: boolean): void {
    if (s.closed) return;
    const e0 = s.epochs[i];
    if (e0 !== 0) {
      if (epoch === e0) {
        if (seq <= s.seqs[i]) return;
        if (seq !== s.seqs[i] + 1) this.gap(s, i, 'seq_jump', epoch, seq - 1);
      } else {
        this.gap(s, i, 'epoch_changed', epoch, seq - 1);
      }
    }
    s.epochs[i] = epoch;
    s.seqs[i] = seq;
    s.parts[i] = pos;
    this.stats[Stat.SSE_MESSAGES_OUT]++;
    this.write(s, event ?? 'id: ' + s.id() + tail, replayed);
  }

  private move(s: SseStream, i: number, epoch: number, seq: number): void {
    s.epochs[i] = epoch;
    s.seqs[i] = seq;
    s.parts[i] = positionText(epoch, seq);
  }

  /** `event: gap`: the messages after the stream's position up to (epoch, seq) are lost (no id: a reconnect before the next message reports it again). */
  private gap(s: SseStream, i: number, reason: string, epoch: number, seq: number): void {
    this.stats[Stat.SSE_GAPS]++;
    const data = { topic: s.topics[i], reason, from: [s.epochs[i], s.seqs[i]], to: [epoch, seq] };
    this.write(s, 'event: gap\ndata: ' + JSON.stringify(data) + '\n\n', false);
  }

  private topicDone(s: SseStream): void {
    if (--s.pending === 0 && !s.closed) this.ready(s);
  }

  /** `event: ready`: every topic took effect (or failed); the WebSocket sub reply's entries, and the heartbeat interval. */
  private ready(s: SseStream): void {
    const data = JSON.stringify({ topics: s.entries, heartbeatMs: this.heartbeatSeconds * 1000 });
    s.entries = EMPTY_ENTRIES;
    this.write(s, 'id: ' + s.id() + '\nevent: ready\ndata: ' + data + '\n\n', false);
  }

  private failTopic(s: SseStream, topic: string, code: ErrorCodeT, message: string): void {
    if (!s.closed) {
      s.entries[topic] = { error: { code, message } };
      this.topicDone(s);
    }
    if (!this.ports.hasLocalInterest(topic)) this.ports.dropInterest(topic);
  }

  /**
   * Adds one event (or comment) to the stream's writes of this turn. They go
   * out at its end, one write per stream (as uWS commits its pub/sub once
   * per loop iteration): a write per event cost a send() each, 25 µs per
   * event at 2,000 streams of one topic.
   */
  private write(s: SseStream, text: string, replayed: boolean): void {
    if (s.closed) return;
    if (replayed) s.allowance += text.length;
    this.stats[Stat.BYTES_OUT] += text.length;
    s.lastWriteSec = this.host.nowSec;
    if (s.out === '') this.dirty.push(s);
    s.out += text;
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(this.flushBound);
    }
  }

  private dirty: SseStream[] = [];
  private flushScheduled = false;
  private readonly flushBound = (): void => {
    this.flushScheduled = false;
    try {
      this.flush();
    } catch (err) {
      this.host.failed('sse-flush', err);
    }
  };

  /** Writes every stream's events of this turn, corked; a stream over its limit is cut. */
  private flush(): void {
    const list = this.dirty;
    this.dirty = [];
    for (let k = 0; k < list.length; k++) this.flushStream(list[k]);
  }

  private flushStream(s: SseStream): void {
    if (s.closed || s.out === '') return;
    this.wStream = s;
    this.wText = s.out;
    s.out = '';
    s.res.cork(this.corkedWrite);
    this.wStream = null;
    this.wText = '';
    if (s.cut) this.cutSlow(s);
  }

  private cutSlow(s: SseStream): void {
    if (s.closed) return;
    this.stats[Stat.SSE_SLOW_CLOSES]++;
    this.closeStream(s);
    s.res.close();
  }

  /** `event: end` ({code, message}) and the end of the response: the stream is over (EventSource reconnects by itself). */
  private end(s: SseStream, code: ErrorCodeT, message: string): void {
    if (s.closed) return;
    const res = s.res;
    this.write(s, 'event: end\ndata: ' + JSON.stringify({ code, message }) + '\n\n', false);
    this.flushStream(s);
    if (s.closed) return;
    this.closeStream(s);
    res.cork(() => res.end());
  }

  /** The stream is gone (client away, cut, ended): out of every topic's table; the owners told of topics no one here wants any more. */
  private closeStream(s: SseStream): void {
    if (s.closed) return;
    s.closed = true;
    this.streams.delete(s);
    for (let i = 0; i < s.topics.length; i++) {
      if (s.live[i] === 0) continue;
      s.live[i] = 0;
      const topic = s.topics[i];
      const streams = this.byTopic.get(topic);
      if (streams !== undefined && streams.delete(s) && streams.size === 0) this.byTopic.delete(topic);
      this.stats[Stat.SSE_SUBSCRIPTIONS]--;
      if (!this.ports.hasLocalInterest(topic)) this.ports.dropInterest(topic);
    }
    this.stats[Stat.SSE_SESSIONS_CLOSED]++;
    this.stats[Stat.SSE_SESSIONS] = this.streams.size;
  }

  // ---- once a second ------------------------------------------------------

  /** Heartbeats to idle streams, expired tokens, and subscriptions their owners did not answer. */
  private sweep(nowMs: number): void {
    const nowSec = Math.floor(nowMs / 1000);
    if (this.pendingSubs.size > 0) {
      const before = nowMs - SSE_OWNER_TIMEOUT_MS;
      for (const [token, p] of this.pendingSubs) {
        if (p.createdMs > before) continue;
        this.pendingSubs.delete(token);
        const topic = p.stream.topics[p.index];
        this.host.local.done(topic);
        this.failTopic(p.stream, topic, ErrorCode.OWNER_TIMEOUT, `the owner of ${topic} did not answer in time; reconnect to subscribe again`);
      }
    }
    if (nowSec - this.lastHeartbeatSec < 1) return;
    this.lastHeartbeatSec = nowSec;
    const skew = this.ports.entitlement.options.clockSkewSeconds;
    const every = this.heartbeatSeconds;
    for (const s of this.streams) {
      if (s.expSec !== 0 && nowSec >= s.expSec + skew) {
        this.stats[Stat.AUTH_EXPIRED_CLOSES]++;
        this.end(s, ErrorCode.TOKEN_EXPIRED, 'the token expired; reconnect with a new one');
        continue;
      }
      if (nowSec - s.lastWriteSec >= every) this.write(s, ': hb\n\n', false);
    }
  }

  /** Draining: every stream is told (SHUTTING_DOWN) and ended. */
  endAll(): void {
    for (const s of [...this.streams]) this.end(s, ErrorCode.SHUTTING_DOWN, 'server is shutting down; reconnect to another node');
  }

  close(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    for (const s of [...this.streams]) this.closeStream(s);
  }

  // ---- helpers --------------------------------------------------------------

  /** Access-Control-Allow-Origin for a request from `origin`: '' when it needs none, null when refused. Without --cors-origins every origin may read (as every origin may open a WebSocket). */
  private allowOriginFor(origin: string, host: string): string | null {
    if (origin === '' || CorsPolicy.sameOrigin(origin, host)) return '';
    if (!this.cors.configured) return '*';
    if (!this.cors.allows(origin)) return null;
    return this.cors.any ? '*' : origin;
  }

  private refuseToken(res: HttpResponse, allow: string, f: AuthFailure): void {
    this.stats[Stat.AUTH_FAILURES]++;
    if (f.code === ErrorCode.UNAVAILABLE) return this.refuse(res, allow, '503 Service Unavailable', f.code, f.message, null, '1');
    this.refuse(res, allow, '401 Unauthorized', f.code, f.message, bearerChallenge(f));
  }

  private refuse(res: HttpResponse, allow: string | null, status: string, code: ErrorCodeT, message: string, wwwAuthenticate: string | null = null, retryAfter: string | null = null): void {
    this.stats[Stat.SSE_SESSIONS_REJECTED]++;
    if (status.startsWith('400')) this.stats[Stat.PROTOCOL_ERRORS]++;
    res.writeStatus(status).writeHeader('content-type', 'application/json');
    if (allow !== null && allow !== '') res.writeHeader('access-control-allow-origin', allow).writeHeader('vary', 'Origin');
    if (wwwAuthenticate !== null) res.writeHeader('www-authenticate', wwwAuthenticate);
    if (retryAfter !== null) res.writeHeader('retry-after', retryAfter);
    res.end(JSON.stringify({ error: { code, message } }));
  }

  /** msgpack data as JSON text, or null (counted, logged). */
  private toJson(topic: string, seq: number, data: Uint8Array): string | null {
    try {
      return dataToJson(unpackr.unpack(data.buffer instanceof SharedArrayBuffer ? Uint8Array.prototype.slice.call(data) : data));
    } catch (err) {
      this.stats[Stat.DELIVERY_ERRORS]++;
      this.host.errors.error('sse-convert-to-json', { topic, seq, err: (err as Error).message }, 'a message could not be converted for SSE streams');
      return null;
    }
  }
}

function textOf(data: Uint8Array): string {
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('utf8');
}
