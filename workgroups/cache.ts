// Per-topic message cache: the history that resume replays from, and the
// topics' retained snapshots.
//
// Concurrency: the topic owner's thread is the only reader and writer. The
// arenas may be SharedArrayBuffers, but nothing here uses Atomics; no other
// thread may touch them while the owner runs.
//
// History layout: one log for all topics
// - Messages are appended, in arrival order, to a log of segments (arena
//   chunks of arenaChunkBytes from the allocator passed in). Each entry is a
//   24-byte header and the payload padded to 8 bytes:
//     +0  f64  publish timestamp, micros
//     +8  u32  payload length (low 24 bits) | flags << 24
//     +12 u32  topic id, or DEAD once the entry is evicted or moved
//     +16 u32  position of the topic's next (newer) entry, or NONE
//     +20 u32  position of the topic's previous (older) entry, or NONE
//   A position is (segment << posShift) | (offset / 8). Seqs are not
//   stored: a topic's cached seqs are consecutive, firstSeq + index.
// - A topic is a doubly linked list through the log, oldest first; its row
//   (typed arrays indexed by TopicTable's ids) holds head, tail, count,
//   bytes and seqs. Every eviction removes a topic's oldest entry.
// - Log order is arrival order, so the globally oldest live entry is the
//   first live one from the log's tail: the global budget and expire() walk
//   the tail, skipping dead entries, and free a segment once passed.
// - Evictions by a topic's own limits leave dead entries inside the log.
//   Dead entries at the tail are passed for free whenever a new segment is
//   opened. Beyond that the cleaner takes the tail segment, copies its live
//   entries to the head (relinking them) and frees the segment. It runs when
//   the log is more than 1.25x the live bytes (plus two segments), and
//   always before the log would pass its cap of 1.25 x maxTotalBytes plus
//   two segments; it copies at most 4 segments for one new segment, then
//   evicts the tail's live entries instead (evictedForSpace). Copied entries lose their place in the global order: the
//   next global eviction reaches them one log lap later than their age
//   says. The age limit is still exact for reads (see trimAge).
//
// Cost per cached message beyond its payload: the 24-byte header, 0-7 bytes
// of padding (3.5 on average), and the log's dead space, at most 25% of the
// live bytes plus two segments in the long run (measured by
// bench/lab/cache-cost.ts). Nothing per message on the JS heap.
//
// Limits: a topic keeps at most maxMessagesPerTopic messages and
// maxBytesPerTopic stored bytes (header + padded payload); all topics keep
// at most maxTotalBytes stored bytes, the oldest evicted first. Messages
// older than maxAgeSeconds are never returned: the age is checked against
// the latest clock the cache has seen (the newest appended timestamp or the
// last expire(now)) whenever a topic is appended to or read, and expire(now),
// called about once a second, evicts old messages from the log's tail.
//
// Snapshots (retained messages): one per topic, in a separate block arena
// (buddy allocator, blocks of 256 bytes to one chunk), outside maxTotalBytes:
// they are bounded by one per topic and by their expiry, and evicting a
// retained message for a burst of history would be the wrong trade. Counted
// in snapshotBytes.

import { defaultAllocator, takeChunk, type ArenaAllocator } from './arena';
import { grown } from './grow';
import { SnapshotStore, type SnapshotView } from './snapshots';

export type { ArenaAllocator } from './arena';
export type { SnapshotView } from './snapshots';

/** Flag bits of a cached message or snapshot (one byte; one comment per bit). */
export const CacheFlag = {
  /** The data is msgpack bytes; unset means JSON text (UTF-8). */
  MSGPACK: 1 << 0,
  /** The message was published with retain: true. */
  RETAINED: 1 << 1,
  // Bits 2-7 spare.
} as const;

export interface MessageCacheOptions {
  /** Most messages kept per topic. 0 turns caching off. Default 1000. */
  maxMessagesPerTopic?: number;
  /** Oldest message kept, in seconds (Infinity: no age limit). Default 180. */
  maxAgeSeconds?: number;
  /** Most stored bytes (24-byte header + payload padded to 8) per topic. Default 1 MiB. */
  maxBytesPerTopic?: number;
  /** Most stored bytes over all topics; the oldest messages go first. At most 16 GiB. Default 256 MiB. */
  maxTotalBytes?: number;
  /** Arena chunk size: a power of two from 64 KiB to 16 MiB; also the largest cacheable entry. Default 2 MiB (one huge page). */
  arenaChunkBytes?: number;
  /** Gives the arena chunks, e.g. (n) => native-io allocShared(n).buffer. Default new ArrayBuffer. */
  allocate?: ArenaAllocator;
  /**
   * Gives an arena chunk later, e.g. (n) => native-io allocSharedAsync(n)
   * (mapped and faulted in on another thread). With it, the log keeps one
   * chunk ready for its next segment, asked for when the last one is taken,
   * so that growing the log does not stop the owner's loop for the mapping
   * and the first write to each page (1–11 ms per 2 MiB segment measured,
   * docs/PERFORMANCE.md). Without it, or while none is ready, `allocate`.
   */
  prefetch?: (bytes: number) => Promise<ArrayBufferLike | Uint8Array>;
}

export interface SeqRange {
  first: number;
  last: number;
}

/** visit(seq, tsMicros, flags, data): data is a view into the arena, valid only during the call. */
export type CacheVisitor = (seq: number, tsMicros: number, flags: number, data: Uint8Array) => void;
/** Like CacheVisitor with no allocation at all: the payload is arena[offset, offset + length). */
/** Returning false stops the visit after this message (a paced replay); anything else goes on. */
export type CacheRawVisitor = (seq: number, tsMicros: number, flags: number, arena: Uint8Array, offset: number, length: number) => boolean | void;

/** Bytes of an entry's header; the payload follows, padded to 8 bytes. */
export const CACHE_ENTRY_HEADER_BYTES = 24;
const ENTRY_HEADER = CACHE_ENTRY_HEADER_BYTES;
const H_LEN = 8;
const H_TOPIC = 12;
const H_NEXT = 16;
const H_PREV = 20;
const NONE = 0xffffffff;
const DEAD = 0xffffffff;
const LEN_MASK = 0xffffff;
/** Log size that starts the cleaner: this many times the live bytes, plus two segments. */
const CLEAN_RATIO = 1.25;
/** Segments the cleaner copies for one new head segment before it evicts instead (bounds the pause). */
const MAX_CLEAN_PER_HEAD = 4;
/** Free segments kept for reuse; more are released to the allocator's owner (the GC). */
const SPARE_SEGMENTS = 2;
const INITIAL_TOPICS = 1024;

function positiveNumber(value: number | undefined, fallback: number, name: string, allowInfinity: boolean): number {
  const v = value ?? fallback;
  if (typeof v !== 'number' || Number.isNaN(v) || v <= 0 || (!allowInfinity && !Number.isFinite(v))) {
    throw new RangeError(`MessageCache: ${name} must be a positive number${allowInfinity ? ' or Infinity' : ''}, got ${String(value)}`);
  }
  return v;
}

export class MessageCache {
  readonly maxMessagesPerTopic: number;
  readonly maxAgeMicros: number;
  readonly maxBytesPerTopic: number;
  readonly maxTotalBytes: number;
  readonly arenaChunkBytes: number;
  /** Most segments the log may hold: 1.25 x maxTotalBytes plus two. */
  readonly maxSegments: number;

  // ---- Stats: current totals, and counts since construction ----
  /** Messages cached now. */
  messages = 0;
  /** Payload bytes cached now. */
  bytes = 0;
  /** Stored bytes cached now (headers + padded payloads): what maxTotalBytes bounds. */
  storedBytes = 0;
  /** Topics with at least one cached message. */
  topics = 0;
  evictedForCount = 0;
  evictedForTopicBytes = 0;
  evictedForAge = 0;
  evictedForTotalBytes = 0;
  /** Evicted by the cleaner because the log was at its cap and could not be compacted in time. */
  evictedForSpace = 0;
  /** Discarded because a seq did not follow the topic's last one (its history restarted), or a message was uncacheable. */
  evictedForGap = 0;
  /** Messages too big to cache (the topic's history is cleared, so a resume from before them reports a gap). */
  uncacheable = 0;
  /** Bytes the cleaner copied, and segments it reclaimed. */
  cleanerCopiedBytes = 0;
  cleanerSegments = 0;

  private readonly allocate: ArenaAllocator;
  private readonly prefetch: ((bytes: number) => Promise<ArrayBufferLike | Uint8Array>) | null;
  /** A chunk given by prefetch, not yet a segment (counted in arenaBytes). */
  private ready: { buffer: ArrayBufferLike; offset: number } | null = null;
  private prefetching = false;
  /** Segments made from a prefetched chunk, and prefetches that failed (then `allocate` is used). */
  prefetchedSegments = 0;
  prefetchFailures = 0;
  private readonly posShift: number;
  private readonly posMask: number;

  // Segments, by id (null: never allocated or released).
  private segU8: (Uint8Array | null)[] = [];
  private segU32: (Uint32Array | null)[] = [];
  private segF64: (Float64Array | null)[] = [];
  private segEnd = new Uint32Array(16);
  private segLive = new Float64Array(16);
  private freeSegs: number[] = [];
  private releasedSegIds: number[] = [];
  private segIdsUsed = 0;
  private segAllocated = 0;
  // The log: ring of segment ids, oldest (tail) first.
  private order = new Int32Array(16);
  private orderHead = 0;
  private orderLen = 0;
  /** Offset in the tail segment of the first entry not yet passed. */
  private tailOff = 0;
  /** Newest clock seen (appended timestamps, expire's now): the age limit's reference. */
  private latestNowMicros = -Infinity;

  // Per-topic rows.
  private headPos = new Uint32Array(INITIAL_TOPICS).fill(NONE);
  private tailPos = new Uint32Array(INITIAL_TOPICS).fill(NONE);
  private count = new Uint32Array(INITIAL_TOPICS);
  private stored = new Uint32Array(INITIAL_TOPICS);
  private payload = new Uint32Array(INITIAL_TOPICS);
  private firstSeqs = new Float64Array(INITIAL_TOPICS);
  /** Seq of the last message appended (cached or not); 0 before any. */
  private lastSeqs = new Float64Array(INITIAL_TOPICS);
  /** The retained messages, one per topic, in their own block arena. */
  private readonly snaps: SnapshotStore;

  private iterating = false;

  constructor(options: MessageCacheOptions = {}) {
    const maxMessages = options.maxMessagesPerTopic ?? 1000;
    if (!Number.isInteger(maxMessages) || maxMessages < 0) {
      throw new RangeError(`MessageCache: maxMessagesPerTopic must be an integer >= 0, got ${String(options.maxMessagesPerTopic)}`);
    }
    this.maxMessagesPerTopic = maxMessages;
    this.maxAgeMicros = positiveNumber(options.maxAgeSeconds, 180, 'maxAgeSeconds', true) * 1e6;
    this.maxBytesPerTopic = Math.min(positiveNumber(options.maxBytesPerTopic, 1 << 20, 'maxBytesPerTopic', false), 0xffffffff);
    this.maxTotalBytes = positiveNumber(options.maxTotalBytes, 256 * (1 << 20), 'maxTotalBytes', false);
    if (this.maxTotalBytes > 16 * 2 ** 30) throw new RangeError(`MessageCache: maxTotalBytes must be at most 16 GiB, got ${this.maxTotalBytes}`);
    const chunk = options.arenaChunkBytes ?? 2 * (1 << 20);
    if (!Number.isInteger(chunk) || chunk < 1 << 16 || chunk > 1 << 24 || (chunk & (chunk - 1)) !== 0) {
      throw new RangeError(`MessageCache: arenaChunkBytes must be a power of two from 65536 to 2^24, got ${String(options.arenaChunkBytes)}`);
    }
    this.arenaChunkBytes = chunk;
    this.posShift = 31 - Math.clz32(chunk) - 3;
    this.posMask = (1 << this.posShift) - 1;
    this.maxSegments = Math.ceil((this.maxTotalBytes * CLEAN_RATIO) / chunk) + 2;
    this.allocate = options.allocate ?? defaultAllocator;
    this.prefetch = options.prefetch ?? null;
    this.snaps = new SnapshotStore(chunk, this.allocate, INITIAL_TOPICS);
  }

  get enabled(): boolean {
    return this.maxMessagesPerTopic > 0;
  }

  /** All evictions (drops excluded). */
  get evictions(): number {
    return this.evictedForCount + this.evictedForTopicBytes + this.evictedForAge + this.evictedForTotalBytes + this.evictedForSpace + this.evictedForGap;
  }

  /** Bytes of the log's segments (live, dead and not yet written). */
  get logBytes(): number {
    return this.orderLen * this.arenaChunkBytes;
  }

  /** Bytes of arena chunks held: the log's segments, spare segments and the snapshot arena. */
  get arenaBytes(): number {
    return (this.segAllocated + (this.ready === null ? 0 : 1)) * this.arenaChunkBytes + this.snaps.arenaBytes;
  }

  /** Bytes of the typed arrays beside the arenas (topic rows, segment table, and the snapshot store's rows, unit table and heap). */
  get metadataBytes(): number {
    // headPos, tailPos, count, stored, payload (4 bytes each), firstSeqs, lastSeqs (8 each).
    const rows = this.headPos.length * (4 * 5 + 8 * 2);
    return rows + this.segEnd.byteLength + this.segLive.byteLength + this.order.byteLength + this.snaps.metadataBytes;
  }

  // ---- History ----

  /**
   * Caches a message. seq must be the topic's last seq + 1; any other seq
   * restarts the topic's cached history from this message (counted in
   * evictedForGap). Evicts what the limits require, this topic's oldest
   * first, then the globally oldest. Allocates only a new segment, rarely.
   */
  append(topicId: number, seq: number, tsMicros: number, flags: number, data: Uint8Array): void {
    this.assertNotIterating();
    if (topicId >= this.count.length) this.growTopics(topicId);
    if (this.count[topicId] > 0 && seq !== this.lastSeqs[topicId] + 1) {
      this.evictedForGap += this.count[topicId];
      this.clearHistory(topicId);
    }
    this.lastSeqs[topicId] = seq;
    if (this.maxMessagesPerTopic === 0) return;

    const len = data.length;
    const size = ENTRY_HEADER + ((len + 7) & ~7);
    if (len > LEN_MASK || size > this.maxBytesPerTopic || size > this.maxTotalBytes || size > this.arenaChunkBytes) {
      this.uncacheable++;
      this.evictedForGap += this.count[topicId];
      this.clearHistory(topicId);
      return;
    }
    if (tsMicros > this.latestNowMicros) this.latestNowMicros = tsMicros;

    if (this.count[topicId] > 0) {
      this.trimAge(topicId);
      while (this.count[topicId] >= this.maxMessagesPerTopic) {
        this.evictFront(topicId);
        this.evictedForCount++;
      }
      while (this.count[topicId] > 0 && this.stored[topicId] + size > this.maxBytesPerTopic) {
        this.evictFront(topicId);
        this.evictedForTopicBytes++;
      }
    }
    while (this.storedBytes + size > this.maxTotalBytes) this.evictOldest();

    let h = this.headSegment();
    if (h < 0 || this.segEnd[h] + size > this.arenaChunkBytes) h = this.makeRoom(size);

    const off = this.segEnd[h];
    const pos = ((h << this.posShift) | (off >>> 3)) >>> 0;
    const u32 = this.segU32[h] as Uint32Array;
    const w = off >>> 2;
    (this.segF64[h] as Float64Array)[off >>> 3] = tsMicros;
    u32[w + 2] = len | ((flags & 0xff) << 24);
    u32[w + 3] = topicId;
    u32[w + 4] = NONE;
    const prev = this.tailPos[topicId];
    u32[w + 5] = prev;
    (this.segU8[h] as Uint8Array).set(data, off + ENTRY_HEADER);
    this.segEnd[h] = off + size;
    this.segLive[h] += size;
    if (prev !== NONE) {
      this.setLink(prev, H_NEXT, pos);
    } else {
      this.headPos[topicId] = pos;
      this.firstSeqs[topicId] = seq;
      this.topics++;
    }
    this.tailPos[topicId] = pos;
    this.count[topicId]++;
    this.stored[topicId] += size;
    this.payload[topicId] += len;
    this.messages++;
    this.storedBytes += size;
    this.bytes += len;
  }

  /** The seqs cached for the topic, or null when none. Allocates the result; firstSeq and countOf give the numbers alone. */
  range(topicId: number): SeqRange | null {
    if (topicId >= this.count.length) return null;
    this.trimAge(topicId);
    if (this.count[topicId] === 0) return null;
    const first = this.firstSeqs[topicId];
    return { first, last: first + this.count[topicId] - 1 };
  }

  /** Messages cached for the topic. */
  countOf(topicId: number): number {
    if (topicId >= this.count.length) return 0;
    this.trimAge(topicId);
    return this.count[topicId];
  }

  /** Seq of the oldest cached message, or 0 when none. */
  firstSeq(topicId: number): number {
    return this.countOf(topicId) > 0 ? this.firstSeqs[topicId] : 0;
  }

  /** Seq of the last message appended to the topic (cached or not, until drop), 0 before any. */
  lastSeq(topicId: number): number {
    return topicId < this.count.length ? this.lastSeqs[topicId] : 0;
  }

  /**
   * True when every seq in (afterSeq, lastSeq] is cached, so a resume from
   * afterSeq can be replayed whole. True when afterSeq equals lastSeq
   * (nothing missed); false when it is beyond (a history this cache never had).
   */
  covers(topicId: number, afterSeq: number): boolean {
    const last = this.lastSeq(topicId);
    if (afterSeq === last) return true;
    if (afterSeq > last || this.countOf(topicId) === 0) return false;
    return this.firstSeqs[topicId] <= afterSeq + 1;
  }

  /**
   * Visits the cached messages with seq > afterSeq in seq order and returns
   * how many. Visits what is there even when covers() is false (check it
   * first). The visitor must not append, drop or expire (that throws) and
   * must copy or encode the bytes before it returns.
   */
  forEach(topicId: number, afterSeq: number, visit: CacheVisitor): number {
    return this.walk(topicId, afterSeq, visit, null);
  }

  /**
   * forEach with no allocation: the payload is arena[offset, offset + length).
   * The visitor may return false to stop after the message it was given
   * (the count returned includes it).
   */
  forEachRaw(topicId: number, afterSeq: number, visit: CacheRawVisitor): number {
    return this.walk(topicId, afterSeq, null, visit);
  }

  /** Forgets the topic: its history, its last seq and its snapshot (for a topic row about to be released). */
  drop(topicId: number): void {
    this.assertNotIterating();
    if (topicId >= this.count.length) return;
    this.resetHistory(topicId, 0);
    this.snaps.clear(topicId);
  }

  /** Forgets the cached messages, not the snapshot; `lastSeq` is taken as seen (the Redis engine following a topic from Redis's position). */
  resetHistory(topicId: number, lastSeq: number): void {
    this.assertNotIterating();
    if (topicId >= this.count.length) this.growTopics(topicId);
    this.clearHistory(topicId);
    this.lastSeqs[topicId] = lastSeq;
  }

  /** True while the topic has cached messages or a snapshot (so its row must not be released yet). */
  holds(topicId: number): boolean {
    return topicId < this.count.length && (this.countOf(topicId) > 0 || this.snaps.has(topicId));
  }

  /**
   * Evicts messages older than maxAgeSeconds at nowMicros from the log's
   * tail, oldest first over all topics, frees the wholly dead segments
   * there, and returns how many messages it evicted. Call about once a second.
   */
  expire(nowMicros: number): number {
    this.assertNotIterating();
    if (nowMicros > this.latestNowMicros) this.latestNowMicros = nowMicros;
    if (this.maxAgeMicros === Infinity) {
      this.firstLive(); // frees the dead segments at the tail
      return 0;
    }
    const cutoff = this.latestNowMicros - this.maxAgeMicros;
    let n = 0;
    for (;;) {
      const pos = this.firstLive();
      if (pos === NONE) break;
      const s = pos >>> this.posShift;
      const off = (pos & this.posMask) << 3;
      if ((this.segF64[s] as Float64Array)[off >>> 3] >= cutoff) break;
      n += this.evictThrough((this.segU32[s] as Uint32Array)[(off + H_TOPIC) >>> 2], pos);
    }
    this.evictedForAge += n;
    return n;
  }

  // ---- Snapshots (workgroups/snapshots.ts) ----

  get snapshots(): number {
    return this.snaps.count;
  }

  get snapshotBytes(): number {
    return this.snaps.bytes;
  }

  /**
   * Makes (seq, ts, flags, data) the topic's snapshot until replaced, cleared
   * or expiresAtMicros (Infinity: never). Returns false, keeping no snapshot,
   * when data is larger than an arena chunk.
   */
  setSnapshot(topicId: number, seq: number, tsMicros: number, flags: number, data: Uint8Array, expiresAtMicros: number): boolean {
    this.assertNotIterating();
    return this.snaps.set(topicId, seq, tsMicros, flags, data, expiresAtMicros);
  }

  /** The topic's snapshot, or null; with nowMicros, null also once it has expired. */
  snapshot(topicId: number, nowMicros?: number): SnapshotView | null {
    return this.snaps.get(topicId, nowMicros);
  }

  clearSnapshot(topicId: number): void {
    this.snaps.clear(topicId);
  }

  /** Clears every snapshot that expires at or before nowMicros; returns how many. */
  expireSnapshots(nowMicros: number): number {
    this.assertNotIterating();
    return this.snaps.expire(nowMicros);
  }

  // ---- Internals: topics ----

  private walk(topicId: number, afterSeq: number, visit: CacheVisitor | null, raw: CacheRawVisitor | null): number {
    if (topicId >= this.count.length) return 0;
    this.trimAge(topicId);
    const n = this.count[topicId];
    if (n === 0) return 0;
    const first = this.firstSeqs[topicId];
    let skip = afterSeq - first + 1;
    if (skip >= n) return 0;
    if (skip < 0) skip = 0;
    // Reach the first entry to visit from whichever end is nearer.
    let pos: number;
    if (skip <= n - 1 - skip) {
      pos = this.headPos[topicId];
      for (let i = 0; i < skip; i++) pos = this.link(pos, H_NEXT);
    } else {
      pos = this.tailPos[topicId];
      for (let i = n - 1; i > skip; i--) pos = this.link(pos, H_PREV);
    }
    const shift = this.posShift;
    const mask = this.posMask;
    this.iterating = true;
    try {
      for (let i = skip; i < n; i++) {
        const s = pos >>> shift;
        const off = (pos & mask) << 3;
        const u32 = this.segU32[s] as Uint32Array;
        const u8 = this.segU8[s] as Uint8Array;
        const lenFlags = u32[(off + H_LEN) >>> 2];
        const len = lenFlags & LEN_MASK;
        const ts = (this.segF64[s] as Float64Array)[off >>> 3];
        const start = off + ENTRY_HEADER;
        if (raw !== null) {
          if (raw(first + i, ts, lenFlags >>> 24, u8, start, len) === false) return i - skip + 1;
        } else (visit as CacheVisitor)(first + i, ts, lenFlags >>> 24, u8.subarray(start, start + len));
        pos = u32[(off + H_NEXT) >>> 2];
      }
    } finally {
      this.iterating = false;
    }
    return n - skip;
  }

  /** Evicts the topic's messages older than the age limit at the newest clock seen (not during a visit). */
  private trimAge(t: number): void {
    if (this.count[t] === 0 || this.maxAgeMicros === Infinity || this.iterating) return;
    const cutoff = this.latestNowMicros - this.maxAgeMicros;
    while (this.count[t] > 0) {
      const pos = this.headPos[t];
      if ((this.segF64[pos >>> this.posShift] as Float64Array)[((pos & this.posMask) << 3) >>> 3] >= cutoff) return;
      this.evictFront(t);
      this.evictedForAge++;
    }
  }

  /** Removes the topic's oldest entry, leaving it dead in the log. */
  private evictFront(t: number): void {
    const pos = this.headPos[t];
    const s = pos >>> this.posShift;
    const w = ((pos & this.posMask) << 3) >>> 2;
    const u32 = this.segU32[s] as Uint32Array;
    const len = u32[w + 2] & LEN_MASK;
    const size = ENTRY_HEADER + ((len + 7) & ~7);
    u32[w + 3] = DEAD;
    const next = u32[w + 4];
    this.segLive[s] -= size;
    this.headPos[t] = next;
    if (next !== NONE) this.setLink(next, H_PREV, NONE);
    else this.tailPos[t] = NONE;
    this.count[t]--;
    this.stored[t] -= size;
    this.payload[t] -= len;
    this.firstSeqs[t]++;
    this.messages--;
    this.storedBytes -= size;
    this.bytes -= len;
    if (this.count[t] === 0) this.topics--;
  }

  /** Evicts the topic's oldest entries up to and including the one at pos; returns how many. */
  private evictThrough(t: number, pos: number): number {
    let n = 0;
    for (;;) {
      const front = this.headPos[t];
      this.evictFront(t);
      n++;
      if (front === pos) return n;
    }
  }

  /** Evicts the globally oldest cached message (there must be one), and any older one of its topic moved by the cleaner. */
  private evictOldest(): void {
    const pos = this.firstLive();
    const s = pos >>> this.posShift;
    const t = (this.segU32[s] as Uint32Array)[(((pos & this.posMask) << 3) + H_TOPIC) >>> 2];
    this.evictedForTotalBytes += this.evictThrough(t, pos);
  }

  /** Empties the topic's history, leaving its entries dead in the log. */
  private clearHistory(t: number): void {
    let pos = this.headPos[t];
    while (pos !== NONE) {
      const s = pos >>> this.posShift;
      const w = ((pos & this.posMask) << 3) >>> 2;
      const u32 = this.segU32[s] as Uint32Array;
      this.segLive[s] -= ENTRY_HEADER + (((u32[w + 2] & LEN_MASK) + 7) & ~7);
      u32[w + 3] = DEAD;
      pos = u32[w + 4];
    }
    if (this.count[t] > 0) {
      this.messages -= this.count[t];
      this.storedBytes -= this.stored[t];
      this.bytes -= this.payload[t];
      this.topics--;
    }
    this.headPos[t] = NONE;
    this.tailPos[t] = NONE;
    this.count[t] = 0;
    this.stored[t] = 0;
    this.payload[t] = 0;
  }

  private link(pos: number, field: number): number {
    return (this.segU32[pos >>> this.posShift] as Uint32Array)[(((pos & this.posMask) << 3) + field) >>> 2];
  }

  private setLink(pos: number, field: number, value: number): void {
    (this.segU32[pos >>> this.posShift] as Uint32Array)[(((pos & this.posMask) << 3) + field) >>> 2] = value;
  }

  private growTopics(topicId: number): void {
    let n = this.count.length;
    while (n <= topicId) n *= 2;
    this.headPos = grown(this.headPos, n, NONE);
    this.tailPos = grown(this.tailPos, n, NONE);
    this.count = grown(this.count, n);
    this.stored = grown(this.stored, n);
    this.payload = grown(this.payload, n);
    this.firstSeqs = grown(this.firstSeqs, n);
    this.lastSeqs = grown(this.lastSeqs, n);
  }

  private assertNotIterating(): void {
    if (this.iterating) throw new Error('MessageCache: a forEach visitor must not change the cache');
  }

  // ---- Internals: the log ----

  private headSegment(): number {
    return this.orderLen > 0 ? this.order[(this.orderHead + this.orderLen - 1) & (this.order.length - 1)] : -1;
  }

  /**
   * Position of the oldest live entry, or NONE when the log holds none.
   * Passes dead entries for good, freeing each segment it leaves behind.
   */
  private firstLive(): number {
    while (this.orderLen > 0) {
      const s = this.order[this.orderHead];
      const u32 = this.segU32[s] as Uint32Array;
      const end = this.segEnd[s];
      let off = this.tailOff;
      while (off < end) {
        if (u32[(off + H_TOPIC) >>> 2] !== DEAD) {
          this.tailOff = off;
          return ((s << this.posShift) | (off >>> 3)) >>> 0;
        }
        off += ENTRY_HEADER + (((u32[(off + H_LEN) >>> 2] & LEN_MASK) + 7) & ~7);
      }
      if (this.orderLen === 1) {
        // The only segment, all dead: start it over.
        this.segEnd[s] = 0;
        this.segLive[s] = 0;
        this.tailOff = 0;
        return NONE;
      }
      this.popTailSegment();
    }
    return NONE;
  }

  /** Opens a new head segment with room for size bytes, cleaning first when the log is too big; returns it. */
  private makeRoom(size: number): number {
    const seg = this.arenaChunkBytes;
    // Free: pass the dead entries at the tail (each is passed once, so this is amortized O(1)).
    this.firstLive();
    // Soft: keep the log within CLEAN_RATIO x the live bytes, plus two segments.
    for (let i = 0; i < 2 && this.orderLen >= 3 && this.orderLen * seg > this.storedBytes * CLEAN_RATIO + 2 * seg; i++) {
      this.cleanTail(false);
    }
    // Hard: one segment always stays free for the cleaner's copies.
    for (let i = 0; this.orderLen >= this.maxSegments - 1; i++) this.cleanTail(i >= MAX_CLEAN_PER_HEAD);
    const h = this.headSegment();
    if (h >= 0 && this.segEnd[h] + size <= seg) return h;
    this.pushSegment(this.acquireSegment());
    return this.headSegment();
  }

  /** Frees the tail segment: its live entries are copied to the head, or evicted when too old, when evictAll, or when there is no room. */
  private cleanTail(evictAll: boolean): void {
    if (this.orderLen < 2) return;
    const s = this.order[this.orderHead];
    const u32 = this.segU32[s] as Uint32Array;
    const f64 = this.segF64[s] as Float64Array;
    const end = this.segEnd[s];
    const cutoff = this.latestNowMicros - this.maxAgeMicros;
    let off = this.tailOff;
    while (off < end) {
      const size = ENTRY_HEADER + (((u32[(off + H_LEN) >>> 2] & LEN_MASK) + 7) & ~7);
      const t = u32[(off + H_TOPIC) >>> 2];
      if (t !== DEAD) {
        const pos = ((s << this.posShift) | (off >>> 3)) >>> 0;
        if (f64[off >>> 3] < cutoff) this.evictedForAge += this.evictThrough(t, pos);
        else if (evictAll || !this.copyForward(s, off, size, t)) this.evictedForSpace += this.evictThrough(t, pos);
      }
      off += size;
    }
    this.popTailSegment();
    this.cleanerSegments++;
  }

  /** Moves the live entry at (s, off) to the head of the log and relinks it; false when the log is at its cap. */
  private copyForward(s: number, off: number, size: number, t: number): boolean {
    let h = this.headSegment();
    if (this.segEnd[h] + size > this.arenaChunkBytes) {
      if (this.orderLen >= this.maxSegments) return false;
      this.pushSegment(this.acquireSegment());
      h = this.headSegment();
    }
    const dst = this.segEnd[h];
    (this.segU8[h] as Uint8Array).set((this.segU8[s] as Uint8Array).subarray(off, off + size), dst);
    this.segEnd[h] = dst + size;
    this.segLive[h] += size;
    this.segLive[s] -= size;
    (this.segU32[s] as Uint32Array)[(off + H_TOPIC) >>> 2] = DEAD;
    const pos = ((h << this.posShift) | (dst >>> 3)) >>> 0;
    const u32 = this.segU32[h] as Uint32Array;
    const prev = u32[(dst + H_PREV) >>> 2];
    const next = u32[(dst + H_NEXT) >>> 2];
    if (prev !== NONE) this.setLink(prev, H_NEXT, pos);
    else this.headPos[t] = pos;
    if (next !== NONE) this.setLink(next, H_PREV, pos);
    else this.tailPos[t] = pos;
    this.cleanerCopiedBytes += size;
    return true;
  }

  private pushSegment(s: number): void {
    if (this.orderLen === this.order.length) {
      const old = this.order;
      const next = new Int32Array(old.length * 2);
      for (let i = 0; i < this.orderLen; i++) next[i] = old[(this.orderHead + i) & (old.length - 1)];
      this.order = next;
      this.orderHead = 0;
    }
    if (this.orderLen === 0) this.tailOff = 0;
    this.order[(this.orderHead + this.orderLen) & (this.order.length - 1)] = s;
    this.orderLen++;
  }

  private popTailSegment(): void {
    const s = this.order[this.orderHead];
    this.orderHead = (this.orderHead + 1) & (this.order.length - 1);
    this.orderLen--;
    this.tailOff = 0;
    this.segEnd[s] = 0;
    this.segLive[s] = 0;
    if (this.freeSegs.length < SPARE_SEGMENTS) {
      this.freeSegs.push(s);
      return;
    }
    this.segU8[s] = null;
    this.segU32[s] = null;
    this.segF64[s] = null;
    this.releasedSegIds.push(s);
    this.segAllocated--;
  }

  private acquireSegment(): number {
    if (this.freeSegs.length > 0) return this.freeSegs.pop() as number;
    const bytes = this.arenaChunkBytes;
    let chunk = this.ready;
    if (chunk !== null) {
      this.ready = null;
      this.prefetchedSegments++;
    } else {
      chunk = takeChunk(this.allocate, bytes);
    }
    const { buffer, offset } = chunk;
    // The next new segment's chunk, asked for now, while the log has room to grow into it.
    if (this.prefetch !== null && !this.prefetching && this.segAllocated + 2 <= this.maxSegments) this.prefetchChunk(this.prefetch);
    const s = this.releasedSegIds.length > 0 ? (this.releasedSegIds.pop() as number) : this.segIdsUsed++;
    if (s >= this.segEnd.length) {
      const e = new Uint32Array(this.segEnd.length * 2);
      e.set(this.segEnd);
      this.segEnd = e;
      const l = new Float64Array(this.segLive.length * 2);
      l.set(this.segLive);
      this.segLive = l;
    }
    this.segU8[s] = new Uint8Array(buffer, offset, bytes);
    this.segU32[s] = new Uint32Array(buffer, offset, bytes >>> 2);
    this.segF64[s] = new Float64Array(buffer, offset, bytes >>> 3);
    this.segEnd[s] = 0;
    this.segLive[s] = 0;
    this.segAllocated++;
    return s;
  }

  private prefetchChunk(prefetch: (bytes: number) => Promise<ArrayBufferLike | Uint8Array>): void {
    this.prefetching = true;
    const bytes = this.arenaChunkBytes;
    prefetch(bytes).then(
      (r) => {
        this.prefetching = false;
        if (this.ready !== null) return;
        try {
          this.ready = takeChunk(() => r, bytes);
        } catch {
          this.prefetchFailures++;
        }
      },
      () => {
        // Not fatal: the next segment comes from `allocate`, on this thread, which says why if it fails too.
        this.prefetching = false;
        this.prefetchFailures++;
      },
    );
  }
}
