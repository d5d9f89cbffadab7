// The subscriber side of wildcard subscriptions (protocol/wildcard.ts):
// sessions of this workgroup subscribed to patterns, and how they come to
// receive each concrete topic.
//
// A pattern subscription asks every owner workgroup (PATTERN record, or a
// direct call to our own): each marks our interest in the pattern and
// answers with its journal position (workgroups/pattern-owner.ts). From
// that answer on, every message of a matching topic that owner sequences
// reaches this workgroup, and the session is live for that owner's topics.
// A session is never sent a message itself: it is subscribed in uWS to the
// concrete topic's key, the first time a message of that topic arrives here
// (firstSeen: one trie match per topic, not per message) or when it becomes
// live for the topic's owner (every topic seen here so far). So a message
// costs a pattern session what it costs an exact one (nothing in JS), and a
// message costs a workgroup with patterns one Set lookup.
//
// Resume: the client gives the horizon it was given (a position per owner)
// and the last (epoch, seq) of every concrete topic it has seen. Each owner
// answers with the topics that had messages after the horizon; for those,
// and for every topic the client has seen, the workgroup sends an ordinary
// resume (OwnerPort.subscribe with RESUME) on the session's behalf. Until
// that one's subDone the topic is excluded from the pattern's live path, so
// its replay and its live messages meet with no gap and no duplicate, as
// for an exact topic; a topic the history no longer covers is reported in
// the reply like an exact one (cache_miss, epoch_mismatch).
import type { WebSocket } from '../native-io/uws';
import type { SubCommand } from '../protocol/codec';
import { ENCODING_MSGPACK, errorReply, type EncodingId } from '../protocol/codec';
import { ErrorCode, ProtocolError, type CommandId } from '../protocol/errors';
import { Stat } from '../protocol/stats';
import { wildcardMatches, type PatternResume } from '../protocol/wildcard';
import type { WorkgroupContext } from './context';
import { OWNER_TIMEOUT_MS, type Delivery, type PatternHooks, type PendingSub, type SessionData, type SubContext } from './delivery';
import { PatternFlag, PatternStatus, type PatternOwnerPort, type PatternSubscriberPort } from './pattern-owner';
import { PatternTrie } from './pattern-trie';
import type { OwnerPort } from './ports';
import { RecordFlag, SUB_STATUS_REASON, SubStatus, withResumeOutcome } from './records';
import { ownerOf } from './topics';

/** One session's subscription to one pattern. */
class SessionPattern {
  /** Bit o: owner o has answered; the session receives its matching topics. */
  live = 0;
  closed = false;
  /** Topics whose resume on this pattern's behalf is in flight: not subscribed by the live path until their subDone (made at the first). */
  excluded: Set<string> | null = null;
  /** While the sub command waits: the owners still to answer, and the reply being built. */
  pending: PendingPattern | null = null;
  /** The pattern up to its first wildcard (`/prices/` of `/prices/*`): a cheap first test of a topic. */
  readonly literal: string;
  constructor(
    readonly slot: number,
    readonly generation: number,
    readonly source: string,
    /** 'j' or 'm': the session's uWS key prefix. */
    readonly prefix: string,
  ) {
    const star = source.indexOf('*');
    const rest = source.indexOf('>');
    this.literal = source.slice(0, Math.min(star < 0 ? source.length : star, rest < 0 ? source.length : rest));
  }
}

interface PendingPattern {
  ctx: SubContext;
  createdMs: number;
  owners: number;
  resume: PatternResume | null;
  /** Exact topics of the same command: their own resume covers them. */
  exact: string[];
  reply: { pattern: true; horizon: number[]; topics: Record<string, Record<string, unknown>>; recovered?: boolean; reason?: string };
}

/** A resume sent on a pattern's behalf: a PendingSub the pattern answers (workgroups/delivery.ts hands its subDone here). */
export interface PatternPendingSub extends PendingSub {
  pattern: SessionPattern;
  reply: Record<string, Record<string, unknown>>;
  /** The position resumed from (the client's, or the one before the first message it missed). */
  from: [number, number];
}

export interface PatternSubsHost extends Pick<WorkgroupContext, 'id' | 'count' | 'options' | 'stats' | 'slab' | 'local'> {
  takeToken(): number;
  owner(w: number): OwnerPort;
  patternOwner(w: number): PatternOwnerPort;
  socket(slot: number): WebSocket<SessionData> | undefined;
  reply(ws: WebSocket<SessionData>, slot: number, encoding: EncodingId, reply: Record<string, unknown>): void;
  hasLocalInterest(topic: string): boolean;
  dropInterest(topic: string): void;
  /** --auth jwt: whether the session's token covers everything the pattern can match. */
  canSubscribePattern(slot: number, pattern: string): boolean;
}

export class PatternSubs implements PatternSubscriberPort, PatternHooks {
  /** Session patterns in this workgroup (0: the delivery path skips everything here). */
  size = 0;
  private readonly trie = new PatternTrie<SessionPattern>();
  private readonly bySlot = new Map<number, SessionPattern[]>();
  /** Exact subscriptions of sessions that hold patterns: a pattern's unsub leaves them. */
  private readonly exactBySlot = new Map<number, Set<string>>();
  private readonly tokens = new Map<number, SessionPattern>();
  /** Topics delivered here since patterns exist: matched once each (firstSeen). */
  private readonly known = new Set<string>();
  private readonly perWorkgroup: number;
  private matchTopic = '';
  private readonly subscribeMatching = (e: SessionPattern): void => {
    const t = this.matchTopic;
    if (e.closed || !(e.live & (1 << ownerOf(t, this.host.count))) || e.excluded?.has(t) === true) return;
    this.subscribeSession(e, t);
  };

  constructor(
    private readonly host: PatternSubsHost,
    private readonly delivery: Delivery,
    private readonly maxPerSession: number,
    maxPerNode: number,
  ) {
    this.perWorkgroup = Math.max(1, Math.ceil(maxPerNode / host.count));
  }

  /** Whether the session holds patterns (commands' unsub asks before it unsubscribes an exact topic). */
  has(slot: number): boolean {
    return this.bySlot.has(slot);
  }

  /** The refusal of a sub command's patterns (limits, engine, entitlement), or null. Before anything is done. */
  check(slot: number, cmd: SubCommand, ws: WebSocket<SessionData>): ProtocolError | null {
    const patterns = cmd.patterns as string[];
    const o = this.host.options;
    if (o.engine === 'redis') return new ProtocolError(ErrorCode.BAD_REQUEST, 'wildcard subscriptions need --engine memory in this version; subscribe to topics by name', cmd.id);
    for (const p of patterns) {
      if (this.host.canSubscribePattern(slot, p)) continue;
      this.host.stats[Stat.AUTH_FORBIDDEN]++;
      return new ProtocolError(ErrorCode.FORBIDDEN, `this session's token does not allow subscribing to every topic ${p} matches; nothing was subscribed`, cmd.id);
    }
    const mine = this.bySlot.get(slot);
    let fresh = 0;
    for (const p of patterns) if (mine === undefined || !mine.some((e) => e.source === p)) fresh++;
    if ((mine?.length ?? 0) + fresh > this.maxPerSession) {
      return new ProtocolError(ErrorCode.TOO_MANY_PATTERNS, `at most ${this.maxPerSession} patterns per session (--max-patterns-per-session); nothing was subscribed`, cmd.id);
    }
    if (this.size + fresh > this.perWorkgroup) {
      return new ProtocolError(ErrorCode.TOO_MANY_PATTERNS, `the node holds its share of --max-patterns (${this.perWorkgroup} in this workgroup); nothing was subscribed`, cmd.id);
    }
    if (mine === undefined && fresh > 0) {
      // From now on exact subscriptions of the session are told apart from the ones its patterns made.
      const exact = new Set<string>();
      for (const key of ws.getTopics()) exact.add(key.slice(1));
      this.exactBySlot.set(slot, exact);
    }
    return null;
  }

  /** The patterns of a sub command (counted in ctx.remaining by the caller): asked of every owner. */
  subscribe(ws: WebSocket<SessionData>, ctx: SubContext, cmd: SubCommand): void {
    const h = this.host;
    const prefix = ctx.encoding === ENCODING_MSGPACK ? 'm' : 'j';
    for (const source of cmd.patterns as string[]) {
      const existing = this.bySlot.get(ctx.slot)?.find((e) => e.source === source);
      if (existing !== undefined) {
        // Already subscribed: nothing to resume, the subscription goes on.
        ctx.topics[source] = { pattern: true, horizon: null };
        this.complete(ctx);
        continue;
      }
      const e = new SessionPattern(ctx.slot, ctx.generation, source, prefix);
      const resume = cmd.patternResume?.[source] ?? null;
      e.pending = { ctx, createdMs: Date.now(), owners: h.count, resume, exact: cmd.topics, reply: { pattern: true, horizon: new Array<number>(2 * h.count).fill(0), topics: {} } };
      const token = h.takeToken();
      this.tokens.set(token, e);
      this.trie.add(source, e);
      let list = this.bySlot.get(ctx.slot);
      if (list === undefined) this.bySlot.set(ctx.slot, (list = []));
      list.push(e);
      this.size++;
      h.stats[Stat.PATTERN_SUBSCRIPTIONS] = this.size;
      // A horizon from a node with another number of workgroups names no owner here: every owner reports it lost.
      const fits = resume !== null && resume.horizon.length === 2 * h.count;
      for (let o = 0; o < h.count; o++) {
        const flags = PatternFlag.SUB | (resume !== null ? PatternFlag.RESUME : 0);
        h.patternOwner(o).pattern(h.id, token, source, flags, fits ? resume.horizon[2 * o] : 0, fits ? resume.horizon[2 * o + 1] : 0);
      }
    }
  }

  /** Owner `owner` took the pattern subscription `token` (and, on a resume, names the topics with messages after the horizon). */
  patternDone(owner: number, token: number, status: number, journalEpoch: number, position: number, topics: Uint8Array): void {
    const e = this.tokens.get(token);
    if (e === undefined) return;
    const pd = e.pending as PendingPattern;
    const h = this.host;
    pd.reply.horizon[2 * owner] = journalEpoch;
    pd.reply.horizon[2 * owner + 1] = position;
    if (status === PatternStatus.HORIZON_LOST) {
      h.stats[Stat.PATTERN_HORIZONS_LOST]++;
      pd.reply.recovered = false;
      pd.reply.reason = 'horizon_lost';
    }
    if (!e.closed && pd.resume !== null) {
      // What to resume from this owner: every topic the client has seen, and every other that had messages since the horizon.
      const from = new Map<string, [number, number]>();
      if (topics.length > 0) for (const [t, ep, s] of JSON.parse(Buffer.from(topics).toString('utf8')) as [string, number, number][]) from.set(t, [ep, s]);
      for (const [t, pos] of Object.entries(pd.resume.topics)) if (ownerOf(t, h.count) === owner) from.set(t, pos);
      for (const [t, [ep, s]] of from) {
        if (pd.exact.includes(t)) continue;
        (e.excluded ??= new Set()).add(t);
        this.resumeTopic(e, pd, owner, t, ep, s);
      }
    }
    e.live |= 1 << owner;
    if (!e.closed) {
      for (const t of this.known) {
        if (t.startsWith(e.literal) && ownerOf(t, h.count) === owner && e.excluded?.has(t) !== true && wildcardMatches(e.source, t)) this.subscribeSession(e, t);
      }
    }
    if (--pd.owners > 0) return;
    this.tokens.delete(token);
    e.pending = null;
    pd.ctx.topics[e.source] = pd.reply;
    this.complete(pd.ctx);
  }

  private resumeTopic(e: SessionPattern, pd: PendingPattern, owner: number, topic: string, epoch: number, seq: number): void {
    const h = this.host;
    const token = h.takeToken();
    const p: PatternPendingSub = { ctx: pd.ctx, topic, createdMs: Date.now(), fresh: false, cancelled: false, pattern: e, reply: pd.reply.topics, from: [epoch, seq] };
    this.delivery.subs.set(token, p);
    h.local.add(topic);
    pd.ctx.remaining++;
    h.owner(owner).subscribe(h.id, token, topic, RecordFlag.RESUME, epoch, seq);
  }

  /** The owner answered a resume sent on a pattern's behalf (out of delivery.subs already): the session goes live on the topic now. */
  topicDone(pending: PendingSub, epoch: number, seq: number, status: number, replayed: number): void {
    const p = pending as PatternPendingSub;
    const h = this.host;
    const e = p.pattern;
    const topic = p.topic;
    h.local.done(topic);
    e.excluded?.delete(topic);
    const ctx = p.ctx;
    const open = h.slab.isOpen(ctx.slot, ctx.generation) && !e.closed;
    let entry: Record<string, unknown>;
    if (status === SubStatus.TOO_MANY_TOPICS || status === SubStatus.UNAVAILABLE) {
      entry = { recovered: false, reason: SUB_STATUS_REASON[status] };
    } else {
      if (open) this.subscribeSession(e, topic);
      entry = withResumeOutcome({ epoch, seq, from: p.from }, status, replayed);
    }
    p.reply[topic] = entry;
    if (!open && !h.hasLocalInterest(topic)) h.dropInterest(topic);
    this.complete(ctx);
  }

  /** One part of a sub command is answered: the reply goes once all are. */
  private complete(ctx: SubContext): void {
    if (--ctx.remaining !== 0 || ctx.failed || !this.host.slab.isOpen(ctx.slot, ctx.generation)) return;
    const ws = this.host.socket(ctx.slot);
    if (ws !== undefined) this.host.reply(ws, ctx.slot, ctx.encoding, { id: ctx.id as CommandId, ok: true, topics: ctx.topics });
  }

  /** Called for every delivery while size > 0: one Set lookup, a trie match the first time a topic arrives here. */
  onDeliver(topic: string): void {
    if (this.known.has(topic)) return;
    this.known.add(topic);
    this.matchTopic = topic;
    this.trie.match(topic, this.subscribeMatching);
  }

  private subscribeSession(e: SessionPattern, topic: string): void {
    if (!this.host.slab.isOpen(e.slot, e.generation)) return;
    const ws = this.host.socket(e.slot);
    if (ws === undefined) return;
    const key = e.prefix + topic;
    if (ws.isSubscribed(key)) return;
    // Messages delivered before this subscription are not its own.
    this.delivery.flushDeliveries();
    ws.subscribe(key);
  }

  /** An exact subscription of a session with patterns took effect (delivery.subDone). */
  exactDone(slot: number, topic: string): void {
    this.exactBySlot.get(slot)?.add(topic);
  }

  /**
   * An exact unsub of a session with patterns: -1 when the caller
   * unsubscribes as usual; else a pattern of the session still matches and
   * the uWS subscription stays (1: an exact subscription ended, 0: there was none).
   */
  keeps(slot: number, topic: string): number {
    const exact = this.exactBySlot.get(slot)?.delete(topic) === true ? 1 : 0;
    const mine = this.bySlot.get(slot);
    return mine !== undefined && mine.some((e) => wildcardMatches(e.source, topic)) ? exact : -1;
  }

  /** The session's patterns (a token refresh checks them). */
  sources(slot: number): string[] {
    return (this.bySlot.get(slot) ?? []).map((e) => e.source);
  }

  /** An unsub naming patterns: each is let go of, and the topics only it held are unsubscribed in uWS. */
  unsubscribe(ws: WebSocket<SessionData>, slot: number, patterns: string[]): void {
    const mine = this.bySlot.get(slot);
    if (mine === undefined) return;
    const gone: SessionPattern[] = [];
    for (const source of patterns) {
      const e = mine.find((x) => x.source === source && !x.closed);
      if (e === undefined) continue;
      this.release(e);
      gone.push(e);
    }
    if (gone.length === 0) return;
    const left = this.bySlot.get(slot) ?? [];
    const exact = this.exactBySlot.get(slot);
    this.delivery.flushDeliveries();
    for (const key of ws.getTopics()) {
      const t = key.slice(1);
      if (exact?.has(t) || !gone.some((e) => wildcardMatches(e.source, t)) || left.some((e) => wildcardMatches(e.source, t))) continue;
      ws.unsubscribe(key);
    }
    if (left.length === 0) this.exactBySlot.delete(slot);
  }

  /** Fails pattern subscriptions some owner has not answered in OWNER_TIMEOUT_MS (it may have restarted): the command fails, the pattern goes. */
  failOverdue(nowMs: number): void {
    for (const [token, e] of this.tokens) {
      const pd = e.pending as PendingPattern;
      if (pd.createdMs > nowMs - OWNER_TIMEOUT_MS) continue;
      this.tokens.delete(token);
      e.pending = null;
      if (!e.closed) this.release(e);
      const ctx = pd.ctx;
      if (ctx.failed) continue;
      ctx.failed = true;
      const ws = this.host.slab.isOpen(ctx.slot, ctx.generation) ? this.host.socket(ctx.slot) : undefined;
      const message = `a workgroup did not answer the subscription of ${e.source} in time; nothing of it was subscribed; subscribe again`;
      if (ws !== undefined) this.host.reply(ws, ctx.slot, ctx.encoding, errorReply(new ProtocolError(ErrorCode.OWNER_TIMEOUT, message, ctx.id)));
    }
  }

  /** The session closed: its patterns go (uWS drops its topics). */
  close(slot: number): void {
    const mine = this.bySlot.get(slot);
    if (mine === undefined) return;
    for (const e of [...mine]) this.release(e);
    this.exactBySlot.delete(slot);
  }

  /** Owner `from` restarted: it lost our patterns; they are told again (its topics start new epochs anyway). */
  reannounce(from: number): void {
    const h = this.host;
    for (const list of this.bySlot.values()) {
      for (const e of list) {
        if (e.closed) continue;
        // One PATTERN per session pattern: the owner counts them, and each session's release sends one back.
        h.patternOwner(from).pattern(h.id, 0, e.source, PatternFlag.SUB, 0, 0);
      }
    }
  }

  private release(e: SessionPattern): void {
    const h = this.host;
    e.closed = true;
    this.trie.remove(e.source, e);
    const list = this.bySlot.get(e.slot) as SessionPattern[];
    list.splice(list.indexOf(e), 1);
    if (list.length === 0) this.bySlot.delete(e.slot);
    this.size--;
    h.stats[Stat.PATTERN_SUBSCRIPTIONS] = this.size;
    for (let o = 0; o < h.count; o++) h.patternOwner(o).pattern(h.id, 0, e.source, 0, 0, 0);
    // Its resumes still in flight replay nothing more (their answers still count toward the sub's reply).
    if (e.excluded !== null && e.excluded.size > 0) for (const p of this.delivery.subs.values()) if ((p as PatternPendingSub).pattern === e) p.cancelled = true;
    if (this.size === 0) this.known.clear();
  }
}
