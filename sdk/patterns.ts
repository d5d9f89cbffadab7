// Wildcard subscriptions in the SDK: `client.subscribe('/prices/*', fn)`.
// Per pattern the client keeps the server's horizon and one TopicStream
// per concrete topic it has seen, and on every reconnect resumes the
// pattern with both (protocol/PROTOCOL.md, "Wildcard subscriptions"): it
// gets what it missed on every matching topic, in per-topic order, or a
// `gap` event per topic (and one for the pattern when the server's journal
// no longer reached its horizon: reason "horizon_lost", topic the pattern).
import { ErrorCode } from '../protocol/errors';
import { wildcardError, wildcardMatches } from '../protocol/wildcard';
import { C10mError, SdkErrorCode } from './errors';
import { TopicStream, type Gap, type SubReplyTopic } from './stream';
import type { ClientEvents, ClientStats, MessageHandler, PublishAck, Subscription } from './types';
import type { Message, Reply } from './wire';

interface PatternState {
  pattern: string;
  handlers: Set<MessageHandler<never>>;
  /** The server's horizon for this pattern (null until the first reply). */
  horizon: number[] | null;
  streams: Map<string, TopicStream>;
  /** The sub command in flight, or null. */
  pendingSubId: number | null;
  /** Deliveries held while the sub is pending: applied after its reply. */
  early: Message[];
  confirmed: boolean;
  readyWaiters: { resolve: (a: PublishAck) => void; reject: (e: C10mError) => void }[];
}

/** What the pattern subscriptions read of their client. */
export interface PatternHost {
  readonly state: string;
  readonly stats: ClientStats;
}

/** The client's events a pattern raises. */
export type PatternEmit = <K extends 'gap' | 'recovered' | 'error'>(event: K, payload: ClientEvents[K]) => void;

/** Registers a request (a psub's reply comes back through onSubReply) and sends it; returns its id. */
export type PatternRequest = (kind: 'psub' | 'unsub', cmd: Record<string, unknown>) => number;

export class PatternSubscriptions {
  private readonly patterns = new Map<string, PatternState>();

  constructor(
    private readonly client: PatternHost,
    private readonly emit: PatternEmit,
    private readonly request: PatternRequest,
  ) {}

  private isOpen(): boolean {
    return this.client.state === 'connected';
  }

  private gap(g: Gap): void {
    this.client.stats.gaps++;
    this.emit('gap', g);
  }

  get size(): number {
    return this.patterns.size;
  }

  subscribe<T>(pattern: string, onMessage: MessageHandler<T>): Subscription {
    const err = wildcardError(pattern);
    if (err !== null) throw new C10mError(ErrorCode.BAD_TOPIC, `${String(pattern).slice(0, 300)}: ${err}`, String(pattern));
    let p = this.patterns.get(pattern);
    const handler = onMessage as MessageHandler<never>;
    if (p === undefined) {
      p = { pattern, handlers: new Set([handler]), horizon: null, streams: new Map(), pendingSubId: null, early: [], confirmed: false, readyWaiters: [] };
      this.patterns.set(pattern, p);
      if (this.isOpen()) this.send(p);
    } else p.handlers.add(handler);
    const state = p;
    const ready = new Promise<PublishAck>((resolve, reject) => {
      if (state.confirmed) resolve({ epoch: 0, seq: 0 });
      else state.readyWaiters.push({ resolve, reject });
    });
    ready.catch(() => undefined);
    return { topic: pattern, ready, unsubscribe: () => this.remove(state, handler) };
  }

  /** The resume state of every pattern: its horizon and its topics' positions (tests, persistence). */
  positions(): Record<string, { horizon: number[] | null; topics: Record<string, [number, number] | null> }> {
    const out: Record<string, { horizon: number[] | null; topics: Record<string, [number, number] | null> }> = {};
    for (const [pattern, p] of this.patterns) {
      const topics: Record<string, [number, number] | null> = {};
      for (const [t, s] of p.streams) topics[t] = s.position();
      out[pattern] = { horizon: p.horizon, topics };
    }
    return out;
  }

  /** Connected (again): every pattern is subscribed, resumed where it has a horizon. */
  resubscribe(): void {
    for (const p of this.patterns.values()) this.send(p);
  }

  private send(p: PatternState): void {
    p.early = [];
    const cmd: Record<string, unknown> = { op: 'sub', topics: [p.pattern] };
    if (p.horizon !== null) {
      const topics: Record<string, [number, number]> = {};
      for (const [t, s] of p.streams) {
        const pos = s.position();
        if (pos !== null) topics[t] = pos;
      }
      cmd.resume = { [p.pattern]: { horizon: p.horizon, topics } };
    }
    p.pendingSubId = this.request('psub', cmd);
  }

  private remove(p: PatternState, handler: MessageHandler<never>): void {
    if (!p.handlers.delete(handler) || p.handlers.size > 0) return;
    if (this.patterns.get(p.pattern) !== p) return;
    this.patterns.delete(p.pattern);
    for (const w of p.readyWaiters) w.reject(new C10mError(SdkErrorCode.CLOSED, 'unsubscribed before the server confirmed', p.pattern));
    p.readyWaiters = [];
    if (this.isOpen()) this.request('unsub', { op: 'unsub', topics: [p.pattern] });
  }

  /** A delivery: handed to every pattern that matches its topic (an exact subscription of the topic gets it too). */
  onDelivery(msg: Message): void {
    for (const p of this.patterns.values()) {
      if (!wildcardMatches(p.pattern, msg.topic)) continue;
      if (p.pendingSubId !== null) p.early.push(msg);
      else this.apply(p, msg);
    }
  }

  private apply(p: PatternState, msg: Message): void {
    let s = p.streams.get(msg.topic);
    if (s === undefined) p.streams.set(msg.topic, (s = new TopicStream(msg.topic)));
    const r = s.accept(msg);
    if (r.gap !== null) this.gap(r.gap);
    if (!r.deliver) return;
    this.client.stats.delivered++;
    for (const h of p.handlers) {
      try {
        (h as MessageHandler)(msg);
      } catch (e) {
        this.emit('error', new C10mError(ErrorCode.INTERNAL, `message handler of ${p.pattern} threw: ${(e as Error)?.message ?? String(e)}`, p.pattern));
      }
    }
  }

  /** The reply to a pattern's sub: its horizon, the concrete topics it resumed, then the deliveries held meanwhile. */
  onSubReply(id: number, reply: Reply, error: C10mError | null): void {
    for (const p of [...this.patterns.values()]) {
      if (p.pendingSubId !== id) continue;
      p.pendingSubId = null;
      const entry = (reply.topics as Record<string, Record<string, unknown>> | undefined)?.[p.pattern];
      if (error !== null || entry === undefined) {
        const e = error ?? new C10mError(ErrorCode.INTERNAL, 'the sub reply does not name this pattern', p.pattern);
        this.patterns.delete(p.pattern);
        for (const w of p.readyWaiters) w.reject(e);
        p.readyWaiters = [];
        this.emit('error', new C10mError(e.code, `subscribe ${p.pattern}: ${e.message}`, p.pattern));
        continue;
      }
      const resumed = p.horizon !== null;
      if (Array.isArray(entry.horizon)) p.horizon = entry.horizon as number[];
      if (resumed && entry.recovered === false) {
        this.gap({ topic: p.pattern, reason: String(entry.reason ?? 'horizon_lost'), epoch: 0, fromSeq: null, toSeq: null, lastEpoch: 0, lastSeq: 0 });
      }
      const touched: TopicStream[] = [];
      for (const [t, e] of Object.entries((entry.topics ?? {}) as Record<string, SubReplyTopic & { from?: [number, number] }>)) {
        let s = p.streams.get(t);
        if (s === undefined) p.streams.set(t, (s = new TopicStream(t)));
        // A topic never seen was resumed from where its first missed message follows (the server says where).
        const from = s.position() ?? e.from ?? null;
        const { gap, recovered } = s.onSubReply(e, from);
        if (gap !== null) this.gap(gap);
        if (recovered !== null) this.emit('recovered', recovered);
        touched.push(s);
      }
      p.confirmed = true;
      const waiters = p.readyWaiters;
      p.readyWaiters = [];
      for (const w of waiters) w.resolve({ epoch: 0, seq: 0 });
      const early = p.early;
      p.early = [];
      for (const msg of early) {
        if (this.patterns.get(p.pattern) !== p) break;
        this.apply(p, msg);
      }
      for (const s of touched) {
        const late = s.afterHeld();
        if (late !== null) this.gap(late);
      }
    }
  }

  /** The client closed for good. */
  clear(error: C10mError): void {
    for (const p of this.patterns.values()) {
      for (const w of p.readyWaiters) w.reject(error);
      p.readyWaiters = [];
    }
    this.patterns.clear();
  }
}
