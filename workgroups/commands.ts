// One session's commands: a frame is counted against the session's budget,
// parsed (JSON or msgpack), and handled: ping, sub, unsub, pub. A sub asks
// each topic's owner through OwnerPort.subscribe and waits for its subDone
// (workgroups/delivery.ts); a pub is checked once and handed to its topic's
// owner through OwnerPort.publish. Nothing thrown here crosses into uWS: a
// command that fails inside the server is answered INTERNAL, and a session
// that keeps making it fail is closed.
import type { WorkgroupContext } from './context';
import type { WebSocket } from '../native-io/uws';
import {
  ENCODING_JSON,
  ENCODING_MSGPACK,
  type EncodingId,
  type Command,
  type AuthCommand,
  type PubCommand,
  type SubCommand,
  errorReply,
  parseJsonCommand,
  parseMsgpackCommand,
  dataToJson,
  dataToMsgpack,
} from '../protocol/codec';
import { CloseCode, CloseReason, ErrorCode, ProtocolError, type CommandId } from '../protocol/errors';
import { nowMicros } from '../protocol/frame';
import { Stat } from '../protocol/stats';
import type { WorkgroupOptions } from '../shm/workgroup-init';
import type { Delivery, SessionData, SubContext } from './delivery';
import type { Links } from './links';
import type { PublishRequest } from './ports';
import { RecordFlag } from './records';
import { BUDGET_CLOSE, BUDGET_DROP, BUDGET_REFUSE, SessionFlag, SessionState, type SessionSlab } from './slab';
import { ownerOf, type LocalTopics } from './topics';
import { isFailure, type AuthFailure, type Verified } from './auth';
import { Entitlement } from './entitlement';
import { topicOfKey } from './conflation';
import type { PatternSubs } from './pattern-subs';

/** A session that sent this many bad commands is closed (1008). */
export const MAX_ERRORS_PER_SESSION = 100;
/** A session whose commands failed inside the server this many times is closed (1011): whatever it sends, it is not worth another stack trace. */
export const MAX_INTERNAL_ERRORS_PER_SESSION = 10;
/** Room for the command envelope around a publish's data (id, op, topic, flags). */
export const ENVELOPE_BYTES = 1024;

const EMPTY_BUFFER = Buffer.alloc(0);
const OVERLOADED_MESSAGE = 'the server is overloaded (its workgroups are behind on deliveries); nothing was published; retry shortly';

/** What commands need of their workgroup. */
export interface CommandsHost extends WorkgroupContext {
  /** Counts and logs (rate-limited) a failure caught at the edge. */
  failed(cause: string, err: unknown): void;
}

/** What commands need of the sessions (workgroups/sessions.ts): the way to answer one. */
export interface CommandsSessions {
  reply(ws: WebSocket<SessionData>, slot: number, encoding: EncodingId, reply: Record<string, unknown>): void;
  reconnectWindowMs(): number;
}

const NOT_AUTHENTICATED = 'this session has not authenticated: send {"op":"auth","token":..} first (or give the token at the upgrade)';

export class Commands {
  private readonly id: number;
  private readonly count: number;
  /** --engine redis: every publish may fail in flight, so each gets a token (see publishFromSession). */
  private readonly redisEngine: boolean;
  private readonly options: WorkgroupOptions;
  private readonly stats: Float64Array;
  private readonly slab: SessionSlab;
  private readonly local: LocalTopics;
  private nextToken = 1;
  /** The RATE_LIMITED answer's sentence, made once from the options. */
  private readonly rateLimitedMessage: string;
  /** Fault injection (tests): commands left to fail inside their handler. */
  private toFail = 0;
  /** Wildcard subscriptions (set by the workgroup). */
  patterns: PatternSubs | null = null;

  constructor(
    private readonly host: CommandsHost,
    private readonly delivery: Delivery,
    private readonly links: Pick<Links, 'owner' | 'statsOf' | 'overloaded'>,
    private readonly sessions: CommandsSessions,
    private readonly entitlement: Entitlement,
  ) {
    this.id = host.id;
    this.count = host.count;
    this.options = host.options;
    this.redisEngine = host.options.engine === 'redis';
    this.stats = host.stats;
    this.slab = host.slab;
    this.local = host.local;
    const o = host.options;
    const limits = [o.maxCommandsPerSecond > 0 ? `${o.maxCommandsPerSecond} commands` : '', o.maxBytesPerSecond > 0 ? `${o.maxBytesPerSecond} bytes` : ''];
    this.rateLimitedMessage = `over this session's budget of ${limits.filter((x) => x !== '').join(' or ')} per second; nothing was done; slow down`;
  }

  /** Fault injection (tests, C10M_FAULT_INJECTION=1): the next `count` commands throw inside their handler. */
  failNext(count: number): void {
    this.toFail = count;
  }

  onMessage(ws: WebSocket<SessionData>, message: ArrayBuffer, isBinary: boolean): void {
    const slot = ws.getUserData().slot;
    // The command's id, once parsed: an INTERNAL answer names the command it answers.
    let id: CommandId | null = null;
    try {
      this.slab.recordIn(slot, message.byteLength, this.host.nowSec);
      this.stats[Stat.BYTES_IN] += message.byteLength;
      const encoding: EncodingId = this.slab.flags(slot) & SessionFlag.MSGPACK ? ENCODING_MSGPACK : ENCODING_JSON;
      if (isBinary !== (encoding === ENCODING_MSGPACK)) {
        this.stats[Stat.PROTOCOL_ERRORS]++;
        ws.end(CloseCode.UNSUPPORTED_DATA, encoding === ENCODING_JSON ? 'binary frame on a JSON session' : 'text frame on a msgpack session');
        return;
      }
      if (message.byteLength > this.options.maxPayloadBytes + ENVELOPE_BYTES) {
        this.stats[Stat.PROTOCOL_ERRORS]++;
        ws.end(CloseCode.MESSAGE_TOO_BIG, `frame over ${this.options.maxPayloadBytes + ENVELOPE_BYTES} bytes`);
        return;
      }
      // The session's budget for this second, counted before any parsing: a flood costs a counter per frame.
      const o = this.options;
      const budget = this.slab.spend(slot, message.byteLength, this.host.nowSec, o.maxCommandsPerSecond, o.maxBytesPerSecond);
      if (budget === BUDGET_CLOSE) {
        this.stats[Stat.RATE_LIMITED]++;
        this.stats[Stat.RATE_LIMIT_CLOSES]++;
        this.slab.setState(slot, SessionState.CLOSING);
        ws.end(CloseCode.RATE_LIMITED, CloseReason[CloseCode.RATE_LIMITED]);
        return;
      }
      if (budget === BUDGET_DROP) {
        // Refused with no answer: the session had its share of RATE_LIMITED replies this second, and
        // keeps sending; it is closed (4001) when it reaches twice its budget.
        this.stats[Stat.RATE_LIMITED]++;
        return;
      }
      const bytes = new Uint8Array(message);
      const cmd = encoding === ENCODING_JSON ? parseJsonCommand(bytes) : parseMsgpackCommand(bytes);
      if (cmd instanceof ProtocolError) return this.rejectCommand(ws, slot, encoding, cmd);
      id = cmd.id;
      if (budget === BUDGET_REFUSE) {
        // Not a bad command: counted apart, and not against the session's 100 bad commands.
        this.stats[Stat.RATE_LIMITED]++;
        return this.sessions.reply(ws, slot, encoding, errorReply(new ProtocolError(ErrorCode.RATE_LIMITED, this.rateLimitedMessage, cmd.id)));
      }
      this.handleCommand(ws, slot, encoding, cmd);
    } catch (err) {
      // Never throw across the uWS boundary: answer, count and log (a few lines a minute), and
      // close a session that keeps making the server fail.
      this.host.failed('command', err);
      if (this.slab.state(slot) !== SessionState.OPEN) return;
      if (this.slab.addInternalError(slot) >= MAX_INTERNAL_ERRORS_PER_SESSION) {
        this.slab.setState(slot, SessionState.CLOSING);
        ws.end(CloseCode.INTERNAL_ERROR, `${MAX_INTERNAL_ERRORS_PER_SESSION} commands of this session failed inside the server`);
        return;
      }
      try {
        this.sessions.reply(ws, slot, this.slab.flags(slot) & SessionFlag.MSGPACK ? ENCODING_MSGPACK : ENCODING_JSON, errorReply(new ProtocolError(ErrorCode.INTERNAL, 'internal error', id)));
      } catch {
        // The socket is gone: nothing to tell it.
      }
    }
  }

  private rejectCommand(ws: WebSocket<SessionData>, slot: number, encoding: EncodingId, err: ProtocolError): void {
    this.stats[Stat.PROTOCOL_ERRORS]++;
    if (this.slab.addError(slot) > MAX_ERRORS_PER_SESSION) {
      ws.end(CloseCode.POLICY_VIOLATION, `more than ${MAX_ERRORS_PER_SESSION} bad commands`);
      return;
    }
    this.sessions.reply(ws, slot, encoding, errorReply(err));
  }

  private handleCommand(ws: WebSocket<SessionData>, slot: number, encoding: EncodingId, cmd: Command): void {
    if (this.toFail > 0) {
      this.toFail--;
      throw new Error('fault injection: a command handler failed');
    }
    if (this.entitlement.on && cmd.op !== 'auth' && cmd.op !== 'ping' && this.entitlement.isPending(slot)) {
      // Not a bad command: the client is early, not wrong.
      return this.sessions.reply(ws, slot, encoding, errorReply(new ProtocolError(ErrorCode.UNAUTHORIZED, NOT_AUTHENTICATED, cmd.id)));
    }
    switch (cmd.op) {
      case 'auth':
        return this.authenticate(ws, slot, encoding, cmd);
      case 'ping': {
        // With --admission-rate, the window over which the client spreads its first reconnect should it lose the node.
        const window = this.sessions.reconnectWindowMs();
        const reply = window < 0 ? { id: cmd.id, ok: true, ts: nowMicros(), wg: this.id } : { id: cmd.id, ok: true, ts: nowMicros(), wg: this.id, reconnectWindowMs: window };
        this.sessions.reply(ws, slot, encoding, reply);
        return;
      }
      case 'sub':
        return this.subscribe(ws, slot, encoding, cmd);
      case 'unsub':
        if (cmd.patterns !== null) this.patterns?.unsubscribe(ws, slot, cmd.patterns);
        this.unsubscribe(ws, slot, encoding, cmd.topics);
        this.sessions.reply(ws, slot, encoding, { id: cmd.id, ok: true });
        return;
      case 'pub':
        return this.publishFromSession(ws, slot, encoding, cmd);
    }
  }

  private unsubscribe(ws: WebSocket<SessionData>, slot: number, encoding: EncodingId, topics: string[]): void {
    const prefix = encoding === ENCODING_MSGPACK ? 'm' : 'j';
    let removed = 0;
    if (this.delivery.perSlot.has(slot)) this.delivery.cancelPendingSubs(slot, topics);
    // Messages delivered before the unsub still reach the session (as when uWS had them).
    this.delivery.flushDeliveries();
    // uWS calls onSubscriptionCount for each, which drops the interest when it was the last one.
    const patterns = this.patterns !== null && this.patterns.has(slot) ? this.patterns : null;
    for (const topic of topics) {
      const key = this.delivery.conflation.subscribedKey(ws, prefix, topic);
      if (key === null) continue;
      // A pattern of the session that matches the topic keeps its uWS subscription.
      const kept = patterns === null ? -1 : patterns.keeps(slot, topic);
      if (kept >= 0) removed += kept;
      else if (ws.unsubscribe(key)) removed++;
    }
    this.slab.addSubscriptions(slot, -removed);
    this.stats[Stat.SUBSCRIPTIONS] -= removed;
  }

  /**
   * The auth command: a first token (a session opened without one) or a
   * refresh. A refresh must name the session's subject; topics the new
   * token no longer allows are unsubscribed and listed as revoked. The
   * signature check may be asynchronous (jose, after the cache and the
   * HS* check in place): the answer may come in a later turn, after later
   * commands' answers.
   */
  private authenticate(ws: WebSocket<SessionData>, slot: number, encoding: EncodingId, cmd: AuthCommand): void {
    const e = this.entitlement;
    if (!e.on) return this.sessions.reply(ws, slot, encoding, { id: cmd.id, ok: true, exp: null });
    const generation = this.slab.generation(slot);
    const done = (v: Verified | AuthFailure): void => {
      if (!this.slab.isOpen(slot, generation)) {
        if (!isFailure(v)) e.release(v);
        return;
      }
      ws.cork(() => {
        if (isFailure(v)) {
          this.stats[Stat.AUTH_FAILURES]++;
          return this.sessions.reply(ws, slot, encoding, errorReply(new ProtocolError(v.code, v.message, cmd.id)));
        }
        if (!e.isPending(slot) && !e.sameSubject(slot, v.sub)) {
          e.release(v);
          this.stats[Stat.AUTH_FAILURES]++;
          const msg = `a refresh must carry the session's sub; this token's is ${JSON.stringify(v.sub)}; the session keeps its token`;
          return this.sessions.reply(ws, slot, encoding, errorReply(new ProtocolError(ErrorCode.UNAUTHORIZED, msg, cmd.id)));
        }
        const revoked: string[] = [];
        for (const key of ws.getTopics()) {
          const topic = topicOfKey(key);
          if (!Entitlement.allowsSubscribe(v, topic)) revoked.push(topic);
        }
        if (this.patterns !== null && this.patterns.has(slot)) {
          // Patterns the new token no longer covers go first (their topics with them), then the topics it does not allow.
          const gone = this.patterns.sources(slot).filter((p) => !v.grant.subscribe.allowsPattern(p, v.sub));
          this.patterns.unsubscribe(ws, slot, gone);
          revoked.push(...gone);
        }
        if (revoked.length > 0) this.unsubscribe(ws, slot, encoding, revoked);
        e.attach(slot, v);
        this.stats[Stat.AUTH_ACCEPTED]++;
        const reply: Record<string, unknown> = { id: cmd.id, ok: true, exp: v.exp === 0 ? null : v.exp, sub: v.sub };
        if (revoked.length > 0) reply.revoked = revoked;
        this.sessions.reply(ws, slot, encoding, reply);
      });
    };
    const now = e.verifyNow(cmd.token, this.host.nowSec);
    if (now !== null) return done(now);
    e.verify(cmd.token, this.host.nowSec).then(done, (err) => this.host.failed('auth', err));
  }

  private subscribe(ws: WebSocket<SessionData>, slot: number, encoding: EncodingId, cmd: SubCommand): void {
    const prefix = encoding === ENCODING_MSGPACK ? 'm' : 'j';
    const max = this.options.maxSubscriptionsPerSession;
    // --auth jwt: the topics the token does not allow are answered FORBIDDEN, each in the reply; the others go on.
    let topics = cmd.topics;
    let forbidden: Record<string, Record<string, unknown>> | null = null;
    if (this.entitlement.on) {
      for (const topic of cmd.topics) {
        if (this.entitlement.canSubscribe(slot, topic)) continue;
        forbidden ??= {};
        forbidden[topic] = { error: { code: ErrorCode.FORBIDDEN, message: `this session's token does not allow subscribing to ${topic}` } };
      }
      if (forbidden !== null) {
        const refused = forbidden;
        topics = cmd.topics.filter((t) => refused[t] === undefined);
        this.stats[Stat.AUTH_FORBIDDEN] += cmd.topics.length - topics.length;
        if (topics.length === 0) {
          const what = cmd.topics.length === 1 ? cmd.topics[0] : `any of these ${cmd.topics.length} topics`;
          return this.sessions.reply(ws, slot, encoding, errorReply(new ProtocolError(ErrorCode.FORBIDDEN, `this session's token does not allow subscribing to ${what}`, cmd.id)));
        }
      }
    }
    let fresh = 0;
    const conflation = this.delivery.conflation;
    for (const topic of topics) if (conflation.subscribedKey(ws, prefix, topic) === null) fresh++;
    const inFlight = this.delivery.perSlot.get(slot) ?? 0;
    if (this.slab.subscriptions(slot) + inFlight + fresh > max) {
      return this.rejectCommand(ws, slot, encoding, new ProtocolError(ErrorCode.TOO_MANY_SUBSCRIPTIONS, `at most ${max} subscriptions per session`, cmd.id));
    }
    if (cmd.patterns !== null) {
      if (cmd.conflate > 0)
        return this.rejectCommand(ws, slot, encoding, new ProtocolError(ErrorCode.BAD_REQUEST, 'conflate applies to topics, not to wildcard patterns: send them in two sub commands', cmd.id));
      const refused = this.patterns === null ? new ProtocolError(ErrorCode.BAD_REQUEST, 'wildcard subscriptions are off', cmd.id) : this.patterns.check(slot, cmd, ws);
      if (refused !== null) return this.rejectCommand(ws, slot, encoding, refused);
    }
    const patternCount = cmd.patterns === null ? 0 : cmd.patterns.length;
    if (topics.length + patternCount === 0) return this.sessions.reply(ws, slot, encoding, { id: cmd.id, ok: true, topics: {} });
    const ctx: SubContext = {
      slot,
      generation: this.slab.generation(slot),
      id: cmd.id,
      encoding,
      remaining: topics.length + patternCount,
      topics: forbidden ?? {},
      added: [],
      failed: false,
      conflateMs: cmd.conflate,
    };
    const nowMs = Date.now();
    const standard = cmd.qos === 'standard';
    if (fresh > 0) this.delivery.perSlot.set(slot, inFlight + fresh);
    for (const topic of topics) {
      const token = this.takeToken();
      this.local.add(topic);
      this.delivery.subs.set(token, { ctx, topic, createdMs: nowMs, fresh: conflation.subscribedKey(ws, prefix, topic) === null, cancelled: false });
      const resume = cmd.resume === null ? undefined : cmd.resume[topic];
      const flags = standard ? RecordFlag.STANDARD : resume !== undefined ? RecordFlag.RESUME : 0;
      const epoch = resume === undefined ? 0 : resume[0];
      const seq = resume === undefined ? 0 : resume[1];
      this.links.owner(ownerOf(topic, this.count)).subscribe(this.id, token, topic, flags, epoch, seq);
    }
    if (cmd.patterns !== null) this.patterns?.subscribe(ws, ctx, cmd);
  }

  takeToken(): number {
    const t = this.nextToken;
    this.nextToken = t >= 0xfffffffe ? 1 : t + 1;
    return t;
  }

  private publishFromSession(ws: WebSocket<SessionData>, slot: number, encoding: EncodingId, cmd: PubCommand): void {
    if (!this.entitlement.canPublish(slot, cmd.topic)) {
      this.stats[Stat.AUTH_FORBIDDEN]++;
      return this.sessions.reply(ws, slot, encoding, errorReply(new ProtocolError(ErrorCode.FORBIDDEN, `this session's token does not allow publishing to ${cmd.topic}`, cmd.id)));
    }
    // Not the client's fault (as OVERLOADED below, and as HTTP counts it): not a protocol error, not a bad command.
    if (this.host.isDraining()) return this.sessions.reply(ws, slot, encoding, errorReply(new ProtocolError(ErrorCode.SHUTTING_DOWN, 'server is shutting down; publish to another node', cmd.id)));
    if (this.count > 1 && this.links.overloaded()) {
      // Not the client's fault: not counted as a bad command.
      this.stats[Stat.PUBLISHES_OVERLOADED]++;
      return this.sessions.reply(ws, slot, encoding, errorReply(new ProtocolError(ErrorCode.OVERLOADED, OVERLOADED_MESSAGE, cmd.id)));
    }
    const req = this.makePublish(cmd.topic, encoding, cmd.data, cmd.retain, cmd.ts, cmd.raw);
    if (req instanceof ProtocolError) {
      return this.rejectCommand(ws, slot, encoding, new ProtocolError(req.code, req.message, cmd.id));
    }
    req.idempotencyKey = cmd.idempotencyKey;
    let token = 0;
    // An owner at its topic limit may refuse a publish, and with Redis any publish may fail (Redis unreachable or
    // not answering): then even one that asked for no ack needs a way back (an error reply; success stays silent).
    if (cmd.ack || this.redisEngine || this.links.statsOf(ownerOf(cmd.topic, this.count))[Stat.TOPICS_FULL] === 1) {
      token = this.takeToken();
      this.delivery.acks.set(token, { slot, generation: this.slab.generation(slot), id: cmd.id, res: null, http: null, createdMs: Date.now(), silent: !cmd.ack });
    }
    this.routePublish(req, token);
  }

  /** Encodes a publish's data once, in the publisher's encoding, and checks its size. */
  makePublish(topic: string, encoding: EncodingId, data: unknown, retain: boolean, ts: number | null, raw: Uint8Array | null = null): PublishRequest | ProtocolError {
    let json: string | null = null;
    let bytes: Uint8Array;
    let flags = retain ? RecordFlag.RETAIN : 0;
    if (encoding === ENCODING_JSON) {
      json = dataToJson(data);
      bytes = Buffer.from(json, 'utf8');
    } else {
      // The publisher's own bytes when the fast parser kept them (no decode, no re-encode).
      bytes = raw ?? dataToMsgpack(data);
      flags |= RecordFlag.MSGPACK;
    }
    if (bytes.length > this.options.maxPayloadBytes) {
      return new ProtocolError(ErrorCode.PAYLOAD_TOO_LARGE, `data is ${bytes.length} bytes encoded; the maximum is ${this.options.maxPayloadBytes}`);
    }
    this.stats[Stat.MESSAGES_IN]++;
    const receivedAtMicros = nowMicros();
    // One request object reused: routePublish consumes it before the next publish is read.
    const req = this.pubReq;
    req.topic = topic;
    req.flags = flags;
    req.data = bytes;
    req.json = json;
    req.tsMicros = ts ?? receivedAtMicros;
    req.receivedAtMicros = receivedAtMicros;
    return req;
  }

  private readonly pubReq: PublishRequest = { topic: '', flags: 0, data: EMPTY_BUFFER, json: null, tsMicros: 0, receivedAtMicros: 0, idempotencyKey: null };

  routePublish(req: PublishRequest, token: number): void {
    this.links.owner(ownerOf(req.topic, this.count)).publish(this.id, req.topic, req.flags, req.data, req.json, req.tsMicros, req.receivedAtMicros, token, req.idempotencyKey);
    req.idempotencyKey = null;
    // The frame's bytes are copied by now (cache, frames, ring): let go of them.
    req.data = EMPTY_BUFFER;
    req.json = null;
  }

  // ---- the owner's side -----------------------------------------------
}
