// The owner role on Redis (--engine redis): the engine contract's side for
// the topics hashed to this workgroup, with Redis doing the sequencing and
// keeping the history, so that every node of a cluster sees one order.
//
// A publish goes to Redis (workgroups/redis-store.ts: one script: next seq,
// stream, snapshot, channel) and is acked with what Redis gave it. This
// node sees the message only when it follows the topic: it subscribes to a
// topic's channel while one of its workgroups has subscribers of it (and a
// short linger after the last leaves), so a node receives only the topics
// it wants. What it receives goes through the in-memory owner's accept():
// the node's cache, the snapshot, one deliver per workgroup with interest.
//
// A followed topic goes through these states:
//
//   SUBSCRIBING ──Redis confirmed──▶ SYNCING ──head read──▶ LIVE
//                                       ▲                    │
//                                       └── seq jump, epoch ─┘
//                                           change, reconnect: the stream
//                                           read from the last seq seen
//
// Messages that come while not LIVE wait in order in the follow's buffer;
// subscriptions wait in its pending list and are answered on LIVE, before
// the buffered messages, so every deliver after a subDone has a higher seq.
// A resume reads the node's cache first; what the cache lacks is read from
// the Redis stream into the cache, then replayed by the in-memory owner's
// paced replays, as with the memory engine.
import { CacheFlag } from './cache';
import type { Logger } from './log';
import type { Owner } from './owner';
import type { OwnerPort } from './ports';
import type { ReplayLinks } from './replay';
import { AckStatus, RecordFlag, SubStatus } from './records';
import { NOT_SENT, RedisStore, type StoredMessage, type StoreLimits } from './redis-store';
import { nowMicros } from '../protocol/frame';
import { Stat } from '../protocol/stats';
import type { RedisOptions } from '../shm/workgroup-init';
import type { TopicTable } from './topics';

/** A topic nobody here subscribes to any more is let go in Redis after this long (churn does not thrash). */
export const FOLLOW_LINGER_MS = 2000;
/** An ack held for its message's local delivery is sent anyway after this long. */
const HELD_ACK_MS = 1000;
/** Stream reads a resume tries before it is answered as a cache miss. */
const FILL_ATTEMPTS = 3;
/** Messages read from a stream per call. */
const READ_BATCH = 1000;

const SUBSCRIBING = 0;
const SYNCING = 1;
const LIVE = 2;

interface PendingSub {
  from: number;
  token: number;
  flags: number;
  resumeEpoch: number;
  resumeSeq: number;
  /** The stream was read for it already (read once, then the cache decides). */
  filled: boolean;
}

interface HeldAck {
  from: number;
  token: number;
  epoch: number;
  seq: number;
  atMs: number;
}

/** One topic this node follows in Redis. */
interface Follow {
  topic: string;
  tid: number;
  state: number;
  /** Messages received while not LIVE, in order. */
  buffer: StoredMessage[];
  bufferEpochs: number[];
  pending: PendingSub[];
  /** Acks of publishes from here, waiting for their message's delivery here (a publisher that subscribes sees its message first). */
  held: HeldAck[];
  /** When the last interest went (0: someone is interested). */
  idleSinceMs: number;
  /** A stream read (catch-up) is in flight. */
  reading: boolean;
  /** Its head has been read once (its position is Redis's). */
  synced: boolean;
}

export class RedisOwner implements OwnerPort {
  readonly store: RedisStore;
  private readonly follows = new Map<string, Follow>();
  private readonly byTid = new Map<number, Follow>();
  /** Topics to subscribe to in Redis at the end of this turn (one SUBSCRIBE for all). */
  private toFollow: Follow[] = [];
  private followScheduled = false;
  private closed = false;

  constructor(
    private readonly inner: Owner,
    private readonly topics: TopicTable,
    private readonly links: ReplayLinks,
    private readonly stats: Float64Array,
    private readonly maxTopics: number,
    private readonly limits: StoreLimits,
    redis: RedisOptions,
    private readonly log: Logger,
    private readonly onError: (cause: string, err: unknown) => void,
  ) {
    this.store = new RedisStore(
      redis,
      limits,
      stats,
      { message: (t, e, m) => this.onMessage(t, e, m), resubscribed: () => this.onResubscribed(), availability: (up) => this.onAvailability(up) },
      onError,
      (message) => this.log.warn({}, message),
    );
  }

  /** Rows of followed topics are kept (the in-memory owner's idle release skips them). */
  keepRow(tid: number): boolean {
    return this.byTid.has(tid);
  }

  // ---- OwnerPort ----------------------------------------------------------

  publish(from: number, topic: string, flags: number, data: Uint8Array, _json: string | null, tsMicros: number, receivedAtMicros: number, token: number, idempotencyKey: string | null = null): void {
    if (!this.store.up) {
      this.stats[Stat.PUBLISHES_UNAVAILABLE]++;
      if (token !== 0) this.links.subscriber(from).ack(token, 0, 0, AckStatus.UNAVAILABLE);
      return;
    }
    const wire = flags & (RecordFlag.MSGPACK | RecordFlag.RETAIN);
    this.store.publish(topic, wire, (flags & RecordFlag.RETAIN) !== 0, data, tsMicros, receivedAtMicros, idempotencyKey, (err, epoch, seq, duplicate) => {
      if (this.closed) return;
      if (err !== null) {
        this.stats[Stat.PUBLISHES_UNAVAILABLE]++;
        if (err !== NOT_SENT) this.onError('redis-publish', err);
        if (token !== 0) this.links.subscriber(from).ack(token, 0, 0, err === NOT_SENT ? AckStatus.UNAVAILABLE : AckStatus.UNCERTAIN);
        return;
      }
      if (duplicate) {
        // The key was seen within the window (checked in the publish script): nothing was sequenced or sent.
        this.stats[Stat.IDEMPOTENT_DUPLICATES]++;
        if (token !== 0) this.links.subscriber(from).ack(token, epoch, seq, AckStatus.DUPLICATE);
        return;
      }
      this.stats[Stat.MESSAGES_SEQUENCED]++;
      if (token === 0) return;
      const f = this.follows.get(topic);
      const t = this.topics;
      if (f !== undefined && t.interest[f.tid] !== 0 && !(f.state === LIVE && t.epoch[f.tid] === epoch && t.seq[f.tid] >= seq)) {
        f.held.push({ from, token, epoch, seq, atMs: Date.now() });
        return;
      }
      this.links.subscriber(from).ack(token, epoch, seq, AckStatus.OK);
    });
  }

  subscribe(from: number, token: number, topic: string, flags: number, resumeEpoch: number, resumeSeq: number): void {
    let f = this.follows.get(topic);
    if (f === undefined) {
      if (!this.store.up) {
        this.links.subscriber(from).subDone(token, 0, 0, SubStatus.UNAVAILABLE, 0);
        return;
      }
      const t = this.topics;
      if (t.find(topic) < 0 && t.size >= this.maxTopics) {
        this.stats[Stat.TOPICS_REFUSED]++;
        this.links.subscriber(from).subDone(token, 0, 0, SubStatus.TOO_MANY_TOPICS, 0);
        return;
      }
      f = this.follow(topic);
    }
    this.topics.interest[f.tid] |= 1 << from;
    f.idleSinceMs = 0;
    const sub: PendingSub = { from, token, flags, resumeEpoch, resumeSeq, filled: false };
    if (f.state !== LIVE) f.pending.push(sub);
    else this.subscribeLive(f, sub);
  }

  interest(from: number, topic: string, on: boolean): void {
    if (on) {
      const f = this.follows.get(topic) ?? this.follow(topic);
      this.topics.interest[f.tid] |= 1 << from;
      f.idleSinceMs = 0;
      return;
    }
    const f = this.follows.get(topic);
    if (f === undefined) return;
    this.topics.interest[f.tid] &= ~(1 << from);
    if (this.topics.interest[f.tid] === 0 && f.pending.length === 0) f.idleSinceMs = Date.now();
  }

  /** Workgroup `from` restarted: its interest and its pending subscriptions are gone. */
  forget(from: number): void {
    this.inner.forget(from);
    const now = Date.now();
    for (const f of this.follows.values()) {
      if (f.pending.length > 0) f.pending = f.pending.filter((p) => p.from !== from);
      if (this.topics.interest[f.tid] === 0 && f.pending.length === 0 && f.idleSinceMs === 0) f.idleSinceMs = now;
    }
  }

  resumeReplays(): void {
    this.inner.resumeReplays();
  }

  /** Once a second: lets go of topics idle past the linger, sends acks held too long, retries stalled catch-ups. */
  tick(nowMs: number): void {
    let drop: Follow[] | null = null;
    for (const f of this.follows.values()) {
      if (f.held.length > 0 && nowMs - f.held[0].atMs >= HELD_ACK_MS) this.releaseAcks(f, Infinity, nowMs - HELD_ACK_MS);
      if (f.idleSinceMs !== 0 && nowMs - f.idleSinceMs >= FOLLOW_LINGER_MS && this.topics.interest[f.tid] === 0 && f.pending.length === 0 && f.held.length === 0) {
        (drop ??= []).push(f);
      } else if (f.state === SYNCING && !f.reading && this.store.up) {
        if (f.synced) this.catchUp(f);
        else this.sync(f);
      }
    }
    if (drop !== null) this.unfollow(drop);
  }

  close(): void {
    this.closed = true;
    this.inner.close();
    this.store.close();
  }

  // ---- following topics in Redis ----------------------------------------

  private follow(topic: string): Follow {
    const tid = this.inner.newTopic(topic);
    const f: Follow = { topic, tid, state: SUBSCRIBING, buffer: [], bufferEpochs: [], pending: [], held: [], idleSinceMs: 0, reading: false, synced: false };
    this.follows.set(topic, f);
    this.byTid.set(tid, f);
    this.toFollow.push(f);
    if (!this.followScheduled) {
      this.followScheduled = true;
      setImmediate(() => this.subscribeBatch());
    }
    return f;
  }

  /** One SUBSCRIBE for the topics followed this turn; each is then synced (its head read). */
  private subscribeBatch(): void {
    this.followScheduled = false;
    const batch = this.toFollow.filter((f) => this.follows.get(f.topic) === f);
    this.toFollow = [];
    if (batch.length === 0 || this.closed) return;
    this.store.follow(batch.map((f) => f.topic)).then(
      () => {
        for (const f of batch) if (this.follows.get(f.topic) === f) this.sync(f);
      },
      (err) => {
        // The subscriber connection is down: these are subscribed again (ioredis) when it is back, then synced.
        this.onError('redis-subscribe', err);
        for (const f of batch) if (this.follows.get(f.topic) === f) f.state = SYNCING;
      },
    );
  }

  private unfollow(list: Follow[]): void {
    for (const f of list) {
      this.follows.delete(f.topic);
      this.byTid.delete(f.tid);
      // The row's history stops here: the cache would go stale. The row itself goes when it idles out.
      this.inner.cache.drop(f.tid);
    }
    this.store.unfollow(list.map((f) => f.topic)).catch((err) => this.onError('redis-unsubscribe', err));
  }

  /** Subscribed: read the topic's position and snapshot, then LIVE. */
  private sync(f: Follow): void {
    f.state = SYNCING;
    f.reading = true;
    this.store.head(f.topic).then(
      (h) => {
        f.reading = false;
        if (this.follows.get(f.topic) !== f || this.closed) return;
        const t = this.topics;
        f.synced = true;
        t.epoch[f.tid] = h.epoch;
        t.seq[f.tid] = h.seq;
        const cache = this.inner.cache;
        cache.resetHistory(f.tid, h.seq);
        const s = h.snapshot;
        if (s !== null) {
          const flags = CacheFlag.RETAINED | (s.flags & RecordFlag.MSGPACK ? CacheFlag.MSGPACK : 0);
          cache.setSnapshot(f.tid, s.seq, s.tsMicros, flags, s.data, h.snapshotTtlMs > 0 ? nowMicros() + h.snapshotTtlMs * 1000 : Infinity);
        }
        this.goLive(f);
      },
      (err) => {
        f.reading = false;
        this.onError('redis-head', err);
        // Retried by tick() (SYNCING, not reading) once Redis answers.
      },
    );
  }

  /** LIVE: the waiting subscriptions are answered, then the messages that came meanwhile are applied. */
  private goLive(f: Follow): void {
    f.state = LIVE;
    if (f.held.length > 0) this.releaseAcks(f, this.topics.seq[f.tid], -Infinity);
    const pending = f.pending;
    f.pending = [];
    for (const p of pending) this.subscribeLive(f, p);
    const buffer = f.buffer;
    const epochs = f.bufferEpochs;
    f.buffer = [];
    f.bufferEpochs = [];
    for (let i = 0; i < buffer.length; i++) this.apply(f, epochs[i], buffer[i]);
  }

  /** A subscription to a LIVE topic: what its resume needs and the cache lacks is read from the stream first. */
  private subscribeLive(f: Follow, p: PendingSub): void {
    const t = this.topics;
    const tid = f.tid;
    const seq = t.seq[tid];
    if (p.flags & RecordFlag.RESUME && !p.filled) {
      // Another epoch's position: the current epoch from its start.
      const after = p.resumeEpoch === t.epoch[tid] ? p.resumeSeq : 0;
      if (after < seq && !this.inner.cache.covers(tid, after)) {
        p.filled = true;
        this.fill(f, after, () => this.subscribeLive(f, p));
        return;
      }
    }
    this.inner.subscribe(p.from, p.token, f.topic, p.flags, p.resumeEpoch, p.resumeSeq);
  }

  /**
   * Reads the stream after `after` into the cache, ahead of what the cache
   * holds, when the two meet (the cache holds from the stream's last entry
   * on, or nothing after the topic's seq). Then `done`, which asks the cache
   * again: what could not be joined is a cache miss, reported as such.
   */
  private fill(f: Follow, after: number, done: () => void, attempt = 0): void {
    const t = this.topics;
    const epoch = t.epoch[f.tid];
    const cache = this.inner.cache;
    this.store.read(f.topic, epoch, after, Math.max(1, Math.min(this.limits.cacheMessages, 100_000))).then(
      (r) => {
        if (this.follows.get(f.topic) !== f || this.closed) return;
        const tid = f.tid;
        const entries = r.entries;
        // The stream may already hold messages whose pub/sub copy has not come yet (another connection): they are
        // not joined here (they come in order as messages), or the refill would fail on them and the resume
        // be answered as a cache miss for nothing.
        let n = entries.length;
        while (n > 0 && entries[n - 1].seq > t.seq[tid]) n--;
        if (f.state === LIVE && r.epoch === t.epoch[tid] && n > 0 && entries[0].seq === after + 1) {
          const last = entries[n - 1].seq;
          const count = cache.countOf(tid);
          const meets = count === 0 ? cache.lastSeq(tid) <= last : cache.firstSeq(tid) <= last + 1;
          if (meets) {
            const newer: StoredMessage[] = [];
            cache.forEach(tid, last, (seq, ts, flags, data) => {
              newer.push({ seq, tsMicros: ts, receivedAtMicros: ts, flags: flags & CacheFlag.MSGPACK ? RecordFlag.MSGPACK : 0, data: Buffer.from(data) });
            });
            const lastSeq = cache.lastSeq(tid);
            cache.resetHistory(tid, after);
            for (let k = 0; k < n; k++) cache.append(tid, entries[k].seq, entries[k].tsMicros, cacheFlags(entries[k].flags), entries[k].data);
            for (const m of newer) cache.append(tid, m.seq, m.tsMicros, cacheFlags(m.flags), m.data);
            // Nothing after the last cached seq was lost by the refill.
            if (cache.lastSeq(tid) < lastSeq) cache.resetHistory(tid, lastSeq);
          }
        }
        done();
      },
      (err) => {
        this.onError('redis-read', err);
        // Once more before the resume is answered as a cache miss (a reported gap).
        if (attempt < FILL_ATTEMPTS - 1 && !this.closed) setTimeout(() => this.fill(f, after, done, attempt + 1), 500);
        else done();
      },
    );
  }

  // ---- messages from Redis -----------------------------------------------

  private onMessage(topic: string, epoch: number, m: StoredMessage): void {
    const f = this.follows.get(topic);
    if (f === undefined || this.closed) return;
    if (f.state !== LIVE) {
      f.buffer.push(m);
      f.bufferEpochs.push(epoch);
      return;
    }
    this.apply(f, epoch, m);
  }

  /** One message for a LIVE topic: the next one is accepted; a duplicate is dropped; a jump or another epoch is caught up from the stream. */
  private apply(f: Follow, epoch: number, m: StoredMessage): void {
    const t = this.topics;
    const tid = f.tid;
    if (f.state !== LIVE) {
      f.buffer.push(m);
      f.bufferEpochs.push(epoch);
      return;
    }
    if (epoch === t.epoch[tid]) {
      if (m.seq <= t.seq[tid]) return;
      if (m.seq === t.seq[tid] + 1) return this.accept(f, epoch, m);
    } else if (m.seq === 1) {
      // Redis started a new history (it lost the old one): the old epoch's tail, if any, is a gap the clients report.
      return this.accept(f, epoch, m);
    }
    f.state = SYNCING;
    f.buffer.push(m);
    f.bufferEpochs.push(epoch);
    this.catchUp(f);
  }

  private accept(f: Follow, epoch: number, m: StoredMessage): void {
    this.inner.accept(f.tid, f.topic, epoch, m.seq, m.flags & (RecordFlag.MSGPACK | RecordFlag.RETAIN), m.data, null, m.tsMicros, m.receivedAtMicros);
    if (f.held.length > 0) this.releaseAcks(f, m.seq, Infinity);
  }

  /** Sends the held acks up to `seq` (or held since before `beforeMs`). */
  private releaseAcks(f: Follow, seq: number, beforeMs: number): void {
    let keep: HeldAck[] | null = null;
    for (const a of f.held) {
      if (a.seq <= seq || a.atMs < beforeMs || a.epoch !== this.topics.epoch[f.tid]) this.links.subscriber(a.from).ack(a.token, a.epoch, a.seq, AckStatus.OK);
      else (keep ??= []).push(a);
    }
    f.held = keep ?? [];
  }

  /**
   * The topic missed messages (a seq jump, another epoch, a lost
   * connection): reads the stream after the last seq delivered here (or
   * the new epoch from its start) and applies it, then what came meanwhile.
   * What the stream no longer holds is skipped: subscribers see the jump
   * and report the gap.
   */
  private catchUp(f: Follow): void {
    if (f.reading) return;
    f.state = SYNCING;
    f.reading = true;
    const t = this.topics;
    this.store.read(f.topic, t.epoch[f.tid], t.seq[f.tid], READ_BATCH).then(
      (r) => {
        f.reading = false;
        if (this.follows.get(f.topic) !== f || this.closed) return;
        const tid = f.tid;
        // r.epoch 0: no history in Redis at all (flushed, restarted empty): the next publish starts one (seq 1).
        if (r.epoch !== 0) {
          const sameEpoch = r.epoch === t.epoch[tid];
          let expected = sameEpoch ? t.seq[tid] + 1 : 1;
          for (const m of r.entries) {
            if (sameEpoch && m.seq <= t.seq[tid]) continue;
            if (m.seq > expected) this.stats[Stat.REDIS_LOST] += m.seq - expected;
            this.stats[Stat.REDIS_RECOVERED]++;
            this.inner.accept(tid, f.topic, r.epoch, m.seq, m.flags & (RecordFlag.MSGPACK | RecordFlag.RETAIN), m.data, null, m.tsMicros, m.receivedAtMicros);
            expected = m.seq + 1;
          }
          if (r.entries.length === 0 && !sameEpoch) {
            // A new epoch whose stream holds nothing yet: follow it from its current seq.
            t.epoch[tid] = r.epoch;
            t.seq[tid] = r.seq;
            this.inner.cache.resetHistory(tid, r.seq);
          } else if (t.seq[tid] < r.seq && r.entries.length < READ_BATCH) {
            // The stream ends before the head (trimmed, or no stream): the rest is lost here.
            this.stats[Stat.REDIS_LOST] += r.seq - t.seq[tid];
            t.epoch[tid] = r.epoch;
            t.seq[tid] = r.seq;
            this.inner.cache.resetHistory(tid, r.seq);
          }
          if (f.held.length > 0) this.releaseAcks(f, t.seq[tid], -Infinity);
          if (r.entries.length >= READ_BATCH && t.seq[tid] < r.seq) {
            // More to read: stay SYNCING and read on.
            this.catchUp(f);
            return;
          }
        }
        this.goLive(f);
      },
      (err) => {
        f.reading = false;
        this.onError('redis-catch-up', err);
        // tick() retries while SYNCING.
      },
    );
  }

  /** The subscription connection came back: every LIVE topic may have missed messages while it was down. */
  private onResubscribed(): void {
    for (const f of this.follows.values()) {
      if (f.state === LIVE) this.catchUp(f);
      else if (f.state === SYNCING && !f.reading) {
        if (f.synced) this.catchUp(f);
        else this.sync(f);
      }
    }
  }

  private onAvailability(up: boolean): void {
    if (up) this.log.info({ urls: this.store.options.urls.length }, 'redis connected');
    else this.log.warn({}, 'redis unreachable: publishes are refused with UNAVAILABLE until it is back');
  }
}

function cacheFlags(flags: number): number {
  return (flags & RecordFlag.MSGPACK ? CacheFlag.MSGPACK : 0) | (flags & RecordFlag.RETAIN ? CacheFlag.RETAINED : 0);
}
