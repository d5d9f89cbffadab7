// The owner role, in memory: for the topics this workgroup owns (ownerOf),
// their epoch and seq, history (the cache), snapshot and interest (which
// workgroups have subscribers). This is the engine contract's in-memory
// implementation (docs/ARCHITECTURE.md); it answers every workgroup,
// itself included, through their SubscriberPorts, and never touches a
// session or a socket.
//
// Concurrency: the workgroup's thread is the only reader and writer of the
// topic table and the cache.
import { Stat } from '../protocol/stats';
import { nowMicros } from '../protocol/frame';
import { CacheFlag, type MessageCache } from './cache';
import type { OwnerPort, SubscriberPort } from './ports';
import { AckStatus, RecordFlag, SubStatus } from './records';
import { Replays, resumeStart, resumeStatus, type LocalReplay, type ReplayJob, type ReplayLinks, type ReplayOwner } from './replay';
import type { TopicTable } from './topics';
import { IdempotencyKeys } from './idempotency';
import { DEFAULT_IDEMPOTENCY_KEYS_PER_TOPIC, DEFAULT_IDEMPOTENCY_WINDOW_SECONDS } from '../protocol/idempotency';
import type { PatternOwner } from './pattern-owner';

/** Topic rows looked at per second for release (idle, no interest, nothing cached). */
const RELEASE_SCAN_ROWS = 65_536;
/** A topic row with no subscribers and nothing cached is released after this long idle (sooner than --cache-seconds: nothing would be lost). */
export const TOPIC_IDLE_RELEASE_SECONDS = 10;

export interface OwnerOptions {
  /** Topics this workgroup may own at once (its share of --max-topics). */
  maxTopics: number;
  /** The cache's age: an idle row that holds nothing goes after min(this, TOPIC_IDLE_RELEASE_SECONDS). */
  cacheSeconds: number;
  /** Lifetime of a retained snapshot (0: until replaced). */
  snapshotTtlSeconds: number;
  /** Rows that must stay although idle (the Redis engine's followed topics). */
  keepRow?: (tid: number) => boolean;
  /** Idempotent publish: how long a key is remembered, and at most how many per topic (defaults: protocol/idempotency.ts). */
  idempotencyWindowSeconds?: number;
  idempotencyKeysPerTopic?: number;
}

export class Owner implements OwnerPort, ReplayOwner {
  private readonly replays: Replays;
  readonly idempotency: IdempotencyKeys;
  private releaseCursor = 0;
  /** The clock in whole seconds, as of the workgroup's last tick. */
  nowSec = Math.floor(Date.now() / 1000);
  /** Wildcard subscriptions' interest and journal (set by the workgroup). */
  patterns: PatternOwner | null = null;

  constructor(
    private readonly id: number,
    readonly topics: TopicTable,
    readonly cache: MessageCache,
    private readonly stats: Float64Array,
    private readonly options: OwnerOptions,
    /** Where the owner answers: the subscriber side of each workgroup (ourselves or a ring), and the rings' pace. */
    private readonly links: ReplayLinks,
    local: LocalReplay,
    onError: (err: unknown) => void,
  ) {
    this.replays = new Replays(id, topics, cache, links, this, local, onError);
    this.idempotency = new IdempotencyKeys(
      (options.idempotencyWindowSeconds ?? DEFAULT_IDEMPOTENCY_WINDOW_SECONDS) * 1000,
      options.idempotencyKeysPerTopic ?? DEFAULT_IDEMPOTENCY_KEYS_PER_TOPIC,
      stats,
    );
  }

  /** Resumes being replayed (tests, figures). */
  get replaying(): number {
    return this.replays.size;
  }

  publish(from: number, topic: string, flags: number, data: Uint8Array, json: string | null, tsMicros: number, receivedAtMicros: number, token: number, idempotencyKey: string | null = null): void {
    // A key seen within the window: answered with the first publish's position, nothing sequenced or delivered.
    const first = idempotencyKey === null ? null : this.idempotency.find(topic, idempotencyKey, Date.now());
    if (first !== null) {
      this.stats[Stat.IDEMPOTENT_DUPLICATES]++;
      if (token !== 0) this.links.subscriber(from).ack(token, first.epoch, first.seq, AckStatus.DUPLICATE);
      return;
    }
    const t = this.topics;
    let tid = t.find(topic);
    if (tid < 0) {
      // A publish without a token was sent before its workgroup saw TOPICS_FULL: taken (the overshoot is what was in flight).
      if (t.size >= this.options.maxTopics && token !== 0) {
        this.stats[Stat.TOPICS_REFUSED]++;
        this.links.subscriber(from).ack(token, 0, 0, AckStatus.TOO_MANY_TOPICS);
        return;
      }
      tid = this.newTopic(topic);
    }
    const seq = t.seq[tid] + 1;
    const epoch = t.epoch[tid];
    this.stats[Stat.MESSAGES_SEQUENCED]++;
    this.accept(tid, topic, epoch, seq, flags, data, json, tsMicros, receivedAtMicros);
    if (idempotencyKey !== null) this.idempotency.remember(topic, idempotencyKey, epoch, seq, Date.now());
    if (token !== 0) this.links.subscriber(from).ack(token, epoch, seq, AckStatus.OK);
  }

  /**
   * A message sequenced (here, or by the Redis engine) as the topic's next:
   * the row's position, the cache, the snapshot when retained, then one
   * deliver per workgroup with interest, never one per subscriber.
   */
  accept(tid: number, topic: string, epoch: number, seq: number, flags: number, data: Uint8Array, json: string | null, tsMicros: number, receivedAtMicros: number): void {
    const t = this.topics;
    t.epoch[tid] = epoch;
    t.seq[tid] = seq;
    t.touchedSec[tid] = this.nowSec;
    const cacheFlags = (flags & RecordFlag.MSGPACK ? CacheFlag.MSGPACK : 0) | (flags & RecordFlag.RETAIN ? CacheFlag.RETAINED : 0);
    this.cache.append(tid, seq, tsMicros, cacheFlags, data);
    if (flags & RecordFlag.RETAIN) {
      const ttl = this.options.snapshotTtlSeconds;
      this.cache.setSnapshot(tid, seq, tsMicros, cacheFlags, data, ttl > 0 ? nowMicros() + ttl * 1e6 : Infinity);
    }
    let mask = t.interest[tid];
    if (this.patterns !== null && this.patterns.on) mask |= this.patterns.onAccept(tid, topic, epoch, seq);
    while (mask !== 0) {
      const w = 31 - Math.clz32(mask);
      mask &= ~(1 << w);
      this.links.subscriber(w).deliver(topic, epoch, seq, tsMicros, receivedAtMicros, flags & RecordFlag.MSGPACK, data, json);
    }
  }

  subscribe(from: number, token: number, topic: string, flags: number, resumeEpoch: number, resumeSeq: number): void {
    const t = this.topics;
    let tid = t.find(topic);
    if (tid < 0) {
      if (t.size >= this.options.maxTopics) {
        this.stats[Stat.TOPICS_REFUSED]++;
        this.links.subscriber(from).subDone(token, 0, 0, SubStatus.TOO_MANY_TOPICS, 0);
        return;
      }
      tid = this.newTopic(topic);
    }
    t.interest[tid] |= 1 << from;
    t.touchedSec[tid] = this.nowSec;
    const epoch = t.epoch[tid];
    const seq = t.seq[tid];
    let status: number = SubStatus.FRESH;
    if (flags & RecordFlag.RESUME) {
      status = resumeStatus(this.cache, tid, epoch, seq, resumeEpoch, resumeSeq);
      const after = resumeStart(this.cache, tid, seq, status, resumeSeq);
      if (after >= 0) {
        // Counted when the replay ends: it may still end unrecovered.
        this.replays.add({ to: from, token, topic, tid, epoch, cursor: after, replayed: 0, status });
        return;
      }
      this.countResume(status);
    }
    this.subDone(from, token, topic, tid, status, 0);
  }

  interest(from: number, topic: string, on: boolean): void {
    const t = this.topics;
    if (on) {
      // Not refused at the limit: a re-announced interest stands for subscriptions the owner took before.
      const tid = this.newTopic(topic);
      t.interest[tid] |= 1 << from;
      t.touchedSec[tid] = this.nowSec;
      return;
    }
    const tid = t.find(topic);
    if (tid >= 0) t.interest[tid] &= ~(1 << from);
  }

  /** Workgroup `from` restarted: its interest in our topics, and the replays to it, are gone. */
  forget(from: number): void {
    const bit = ~(1 << from);
    const t = this.topics;
    this.replays.forget(from);
    this.patterns?.forget(from);
    for (let id = 0; id < t.rows; id++) t.interest[id] &= bit;
  }

  /** A ring drained: replays waiting for it may go on. */
  resumeReplays(): void {
    this.replays.schedule();
  }

  close(): void {
    this.replays.close();
  }

  /** A row for a topic the table does not have yet; keeps the TOPICS_FULL gauge that publishers read. */
  newTopic(topic: string): number {
    const tid = this.topics.intern(topic);
    if (this.topics.size >= this.options.maxTopics) this.stats[Stat.TOPICS_FULL] = 1;
    return tid;
  }

  /** A replay ended: counted, then the subscription's subDone. */
  finish(job: ReplayJob, tid: number, status: number): void {
    this.countResume(status);
    this.subDone(job.to, job.token, job.topic, tid, status, job.replayed);
  }

  private countResume(status: number): void {
    this.stats[status === SubStatus.RECOVERED ? Stat.RESUMES_RECOVERED : Stat.RESUMES_NOT_RECOVERED]++;
  }

  /**
   * The end of a subscription: the snapshot unless the client has every
   * message up to the current seq (recovered, or the current epoch replayed
   * from seq 1), then subDone at the topic's current seq.
   */
  private subDone(to: number, token: number, topic: string, tid: number, status: number, replayed: number): void {
    const t = this.topics;
    const epoch = t.epoch[tid];
    const seq = t.seq[tid];
    const sub: SubscriberPort = this.links.subscriber(to);
    const wholeEpoch = status === SubStatus.EPOCH_MISMATCH && replayed > 0 && replayed === seq;
    if (status !== SubStatus.RECOVERED && !wholeEpoch) {
      const snap = this.cache.snapshot(tid, nowMicros());
      if (snap !== null) {
        const f = RecordFlag.RETAIN | (snap.flags & CacheFlag.MSGPACK ? RecordFlag.MSGPACK : 0);
        sub.replay(token, topic, epoch, snap.seq, snap.tsMicros, f, snap.data);
      }
    }
    sub.subDone(token, epoch, seq, status, replayed);
  }

  /**
   * Once a second: releases topic rows nobody needs (no interest, nothing
   * cached or retained, idle a while). Their next message starts a new
   * history (new epoch), which resuming clients are told about.
   */
  releaseIdleTopics(): void {
    this.idempotency.sweep(Date.now());
    const t = this.topics;
    const rows = t.rows;
    if (rows === 0) return;
    // A row that holds nothing (no cached message, no snapshot) goes after a short idle time: keeping it
    // for the cache's age would only let a sub/unsub or publish loop hold memory.
    const idleBefore = this.nowSec - Math.min(this.options.cacheSeconds, TOPIC_IDLE_RELEASE_SECONDS);
    let id = this.releaseCursor >= rows ? 0 : this.releaseCursor;
    for (let i = 0, n = Math.min(rows, RELEASE_SCAN_ROWS); i < n; i++, id = id + 1 >= rows ? 0 : id + 1) {
      if (t.interest[id] !== 0 || t.touchedSec[id] > idleBefore || t.touchedSec[id] === 0) continue;
      if (this.cache.holds(id)) continue;
      if (this.options.keepRow !== undefined && this.options.keepRow(id)) continue;
      this.cache.drop(id);
      t.release(id);
      t.touchedSec[id] = 0;
      this.stats[Stat.TOPICS_RELEASED]++;
    }
    this.releaseCursor = id;
    if (t.size < this.options.maxTopics) this.stats[Stat.TOPICS_FULL] = 0;
  }
}
