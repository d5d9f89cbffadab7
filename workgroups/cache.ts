// Per-topic message cache: the history that resume replays from.
//
// Concurrency: the topic owner's thread is the only reader and writer. The
// arenas may be SharedArrayBuffers, but nothing here uses Atomics; another
// thread must never read them while the owner runs.
//
// Layout
// - Message bytes live in arena chunks (arenaChunkBytes each, from the
//   allocator passed in), carved by a buddy allocator into blocks of 256 B
//   to one chunk. Free-list links live inside the free blocks themselves;
//   the only side table is one byte per 256 B unit (unitState).
// - A topic's history is a chain of blocks, oldest first. Entries are
//   written one after another into the tail block; a new block is linked
//   when the next entry does not fit, sized about 1/16 of what the topic
//   holds (so the partly used head and tail blocks waste little), never
//   less than the entry. The head block is freed as soon as its last entry
//   is evicted. Nothing is ever copied or compacted: a block only ever goes
//   from empty to full to freed.
// - Block header (8 bytes): next block's unit id (i32, -1 for the tail),
//   end offset of the written entries within the block (u32).
// - Entry (16-byte header, payload padded to 8 bytes so the next header
//   stays aligned): publish timestamp micros (f64) at +0, payload length
//   (u32) at +8, flags (u8) at +12, 3 spare bytes, payload at +16. The seq
//   is not stored: a topic's cached seqs are consecutive, firstSeq + index.
// - Global order: one FIFO of topic ids (4 bytes per cached message) in
//   arrival order. Since every eviction of any kind removes a topic's
//   oldest entry, a topic's dead FIFO entries are always its first ones in
//   the FIFO; fifoDebt[topic] counts them, so a popped entry is dead while
//   its topic has debt, else it is that topic's current front. The FIFO is
//   compacted when dead entries reach a quarter of it.
// - Per-topic state is a row of typed arrays indexed by topic id (the ids
//   of TopicTable), grown by doubling.
//
// Cost per cached message beyond its payload: 16 B entry header, 0-7 B of
// padding (3.5 B on average), 4 B of FIFO (up to about 2.7x that while dead
// entries wait for compaction), plus the unused end of each topic's tail
// block and consumed start of its head block (about 1/16 of the topic's
// bytes) and the buddy allocator's slack. bench/cache-cost.ts measures it.
//
// Limits: a topic keeps at most maxMessagesPerTopic messages, at most
// maxBytesPerTopic stored bytes (header + padded payload), none older than
// maxAgeSeconds; all topics together at most maxTotalBytes stored bytes,
// evicting the globally oldest message first. The age limit is applied to
// a topic when it appends (against the new message's timestamp) and to all
// topics by expire(now), which walks the global order from the oldest and
// stops at the first young-enough message (timestamps are assumed to grow
// with arrival order, as the owner assigns them).
//
// Snapshots (retained messages): one per topic, in blocks of the same
// arenas, outside maxTotalBytes (they are bounded by one per topic and by
// their expiry, and evicting a retained message for a burst of history
// would be the wrong trade); counted in snapshotBytes.

export type ArenaAllocator = (bytes: number) => ArrayBufferLike;
const defaultAllocator: ArenaAllocator = (bytes) => new ArrayBuffer(bytes);

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
  /** Most stored bytes (16-byte header + payload padded to 8) per topic. Default 1 MiB. */
  maxBytesPerTopic?: number;
  /** Most stored bytes over all topics; the oldest messages go first. Default 256 MiB. */
  maxTotalBytes?: number;
  /** Arena chunk size: a power of two from 64 KiB to 1 GiB; also the largest cacheable entry. Default 4 MiB. */
  arenaChunkBytes?: number;
  /** Gives the arena chunks, e.g. native-io's allocShared(...).buffer. Default new ArrayBuffer. */
  allocate?: ArenaAllocator;
}

export interface SeqRange {
  first: number;
  last: number;
}

export interface SnapshotView {
  seq: number;
  tsMicros: number;
  flags: number;
  /** A view into the arena: valid until the snapshot is replaced, cleared or expired. */
  data: Uint8Array;
  expiresAtMicros: number;
}

/** visit(seq, tsMicros, flags, data): data is a view into the arena, valid only during the call. */
export type CacheVisitor = (seq: number, tsMicros: number, flags: number, data: Uint8Array) => void;
/** Like CacheVisitor with no allocation at all: the payload is arena[offset, offset + length). */
export type CacheRawVisitor = (seq: number, tsMicros: number, flags: number, arena: Uint8Array, offset: number, length: number) => void;

const ENTRY_HEADER = 16;
const BLOCK_HEADER = 8;
const UNIT_SHIFT = 8;
const UNIT_BYTES = 1 << UNIT_SHIFT;
/** New tail blocks are about stored >> BLOCK_FRACTION_SHIFT bytes. */
const BLOCK_FRACTION_SHIFT = 4;
/** unitState: -1 = not a block head; 0..31 = free block head of that order; ALLOCATED + order = allocated block head. */
const ALLOCATED = 32;
const INITIAL_TOPICS = 1024;
const INITIAL_FIFO = 4096;

export const CACHE_ENTRY_HEADER_BYTES = ENTRY_HEADER;

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

  // ---- Stats (counts since construction, or current totals) ----
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
  /** Messages discarded because a seq did not follow the topic's last one (the history restarted). */
  evictedForGap = 0;
  /** Messages too big to cache (the topic's history is cleared, so resume from before them reports a gap). */
  uncacheable = 0;
  snapshots = 0;
  snapshotBytes = 0;
  /** Bytes of allocated blocks (history and snapshots), headers and unused ends included. */
  blockBytes = 0;
  /** Bytes of arena chunks held. */
  arenaBytes = 0;

  private readonly allocate: ArenaAllocator;
  private readonly maxOrder: number;
  private readonly unitMask: number;

  // Arena chunks and their views, indexed by chunk number (null: released).
  private chunkU8: (Uint8Array | null)[] = [];
  private chunkI32: (Int32Array | null)[] = [];
  private chunkU32: (Uint32Array | null)[] = [];
  private chunkF64: (Float64Array | null)[] = [];
  private freeChunkIds: number[] = [];
  private unitState = new Int8Array(0);
  private freeHead: Int32Array;
  /** Wholly free chunks on the free lists; more than one is released. */
  private spareChunks = 0;

  // Per-topic rows.
  private headUnit = new Int32Array(INITIAL_TOPICS).fill(-1);
  private tailUnit = new Int32Array(INITIAL_TOPICS).fill(-1);
  /** Offset of the oldest entry within the head block. */
  private headPos = new Uint32Array(INITIAL_TOPICS);
  private count = new Uint32Array(INITIAL_TOPICS);
  private stored = new Uint32Array(INITIAL_TOPICS);
  private payload = new Uint32Array(INITIAL_TOPICS);
  private firstSeqs = new Float64Array(INITIAL_TOPICS);
  /** Seq of the last message appended (cached or not); 0 before any. */
  private lastSeqs = new Float64Array(INITIAL_TOPICS);
  private fifoDebt = new Uint32Array(INITIAL_TOPICS);
  private snapUnit = new Int32Array(INITIAL_TOPICS).fill(-1);
  private snapLen = new Uint32Array(INITIAL_TOPICS);
  private snapFlags = new Uint8Array(INITIAL_TOPICS);
  private snapSeq = new Float64Array(INITIAL_TOPICS);
  private snapTs = new Float64Array(INITIAL_TOPICS);
  private snapExpires = new Float64Array(INITIAL_TOPICS);

  // Global arrival order: ring of topic ids.
  private fifo = new Int32Array(INITIAL_FIFO);
  private fifoHead = 0;
  private fifoLen = 0;

  // Snapshot expiry: binary min-heap of (expiresAt, topic), stale entries skipped.
  private heapAt = new Float64Array(64);
  private heapTopic = new Int32Array(64);
  private heapLen = 0;

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
    const chunk = options.arenaChunkBytes ?? 4 * (1 << 20);
    if (!Number.isInteger(chunk) || chunk < 65536 || chunk > 1 << 30 || (chunk & (chunk - 1)) !== 0) {
      throw new RangeError(`MessageCache: arenaChunkBytes must be a power of two from 65536 to 2^30, got ${String(options.arenaChunkBytes)}`);
    }
    this.arenaChunkBytes = chunk;
    this.maxOrder = 31 - Math.clz32(chunk) - UNIT_SHIFT;
    this.unitMask = (1 << this.maxOrder) - 1;
    this.freeHead = new Int32Array(this.maxOrder + 1).fill(-1);
    this.allocate = options.allocate ?? defaultAllocator;
  }

  get enabled(): boolean {
    return this.maxMessagesPerTopic > 0;
  }

  /** All evictions (not drops): count, topic bytes, age, total bytes and gaps. */
  get evictions(): number {
    return this.evictedForCount + this.evictedForTopicBytes + this.evictedForAge + this.evictedForTotalBytes + this.evictedForGap;
  }

  /** Bytes of the typed arrays beside the arenas (topic rows, FIFO, unit table, heap). */
  get metadataBytes(): number {
    const rows = this.headUnit.length * (4 * 9 + 1 + 8 * 5);
    return rows + this.fifo.byteLength + this.unitState.byteLength + this.heapAt.byteLength + this.heapTopic.byteLength;
  }

  // ---- History ----

  /**
   * Caches a message. seq must be the topic's last seq + 1; any other seq
   * restarts the topic's cached history from this message (counted in
   * evictedForGap). Evicts what the limits require, this topic first,
   * then the globally oldest. No allocation except a new block or chunk.
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
    if (size > this.maxBytesPerTopic || size > this.maxTotalBytes || size + BLOCK_HEADER > this.arenaChunkBytes) {
      this.uncacheable++;
      this.evictedForGap += this.count[topicId];
      this.clearHistory(topicId);
      return;
    }

    if (this.count[topicId] > 0) {
      const cutoff = tsMicros - this.maxAgeMicros;
      while (this.count[topicId] > 0 && this.frontTs(topicId) < cutoff) {
        this.evictFront(topicId);
        this.fifoDebt[topicId]++;
        this.evictedForAge++;
      }
      while (this.count[topicId] >= this.maxMessagesPerTopic) {
        this.evictFront(topicId);
        this.fifoDebt[topicId]++;
        this.evictedForCount++;
      }
      while (this.count[topicId] > 0 && this.stored[topicId] + size > this.maxBytesPerTopic) {
        this.evictFront(topicId);
        this.fifoDebt[topicId]++;
        this.evictedForTopicBytes++;
      }
    }
    while (this.storedBytes + size > this.maxTotalBytes) this.evictOldest();

    // Find room at the tail.
    let tail = this.tailUnit[topicId];
    if (this.count[topicId] === 0) {
      if (tail >= 0 && this.blockSize(tail) < size + BLOCK_HEADER) {
        this.freeBlock(tail);
        tail = -1;
      }
      if (tail < 0) tail = this.allocBlock(orderFor(size + BLOCK_HEADER));
      this.setNext(tail, -1);
      this.setEnd(tail, BLOCK_HEADER);
      this.headUnit[topicId] = tail;
      this.tailUnit[topicId] = tail;
      this.headPos[topicId] = BLOCK_HEADER;
      this.firstSeqs[topicId] = seq;
      this.topics++;
    } else if (this.blockSize(tail) - this.getEnd(tail) < size) {
      const order = Math.min(this.maxOrder, Math.max(orderFor(size + BLOCK_HEADER), floorOrder(this.stored[topicId] >>> BLOCK_FRACTION_SHIFT)));
      const next = this.allocBlock(order);
      this.setNext(next, -1);
      this.setEnd(next, BLOCK_HEADER);
      this.setNext(tail, next);
      this.tailUnit[topicId] = tail = next;
    }

    // Write the entry.
    const c = tail >>> this.maxOrder;
    const blockBase = (tail & this.unitMask) << UNIT_SHIFT;
    const end = this.getEnd(tail);
    const off = blockBase + end;
    (this.chunkF64[c] as Float64Array)[off >>> 3] = tsMicros;
    (this.chunkU32[c] as Uint32Array)[(off + 8) >>> 2] = len;
    const u8 = this.chunkU8[c] as Uint8Array;
    u8[off + 12] = flags;
    u8.set(data, off + ENTRY_HEADER);
    this.setEnd(tail, end + size);

    this.count[topicId]++;
    this.stored[topicId] += size;
    this.payload[topicId] += len;
    this.pushFifo(topicId);
    this.messages++;
    this.storedBytes += size;
    this.bytes += len;
  }

  /** The seqs cached for the topic, or null when none. Allocates the result; see firstSeq/lastCachedSeq for the numbers alone. */
  range(topicId: number): SeqRange | null {
    if (topicId >= this.count.length || this.count[topicId] === 0) return null;
    const first = this.firstSeqs[topicId];
    return { first, last: first + this.count[topicId] - 1 };
  }

  /** Messages cached for the topic. */
  countOf(topicId: number): number {
    return topicId < this.count.length ? this.count[topicId] : 0;
  }

  /** Seq of the oldest cached message, or 0 when none. */
  firstSeq(topicId: number): number {
    return topicId < this.count.length && this.count[topicId] > 0 ? this.firstSeqs[topicId] : 0;
  }

  /** Seq of the last message appended to the topic (cached or not, until drop), 0 before any. */
  lastSeq(topicId: number): number {
    return topicId < this.count.length ? this.lastSeqs[topicId] : 0;
  }

  /**
   * True when every seq in (afterSeq, lastSeq] is cached: a resume from
   * afterSeq can be replayed whole. True when afterSeq equals lastSeq
   * (nothing missed); false when afterSeq is beyond it (a history this
   * cache never had).
   */
  covers(topicId: number, afterSeq: number): boolean {
    const last = this.lastSeq(topicId);
    if (afterSeq === last) return true;
    if (afterSeq > last || this.count[topicId] === 0) return false;
    return this.firstSeqs[topicId] <= afterSeq + 1;
  }

  /**
   * Visits the cached messages with seq > afterSeq, in seq order, and returns
   * how many. Visits what is there even when covers() is false (check it
   * first). The visitor must not append, drop or expire (it throws), and
   * must copy or encode the bytes before it returns.
   */
  forEach(topicId: number, afterSeq: number, visit: CacheVisitor): number {
    return this.walk(topicId, afterSeq, visit, null);
  }

  /** forEach with no allocation: the payload is arena[offset, offset + length). */
  forEachRaw(topicId: number, afterSeq: number, visit: CacheRawVisitor): number {
    return this.walk(topicId, afterSeq, null, visit);
  }

  /** Forgets the topic: its history, its last seq and its snapshot (for a topic row about to be released). */
  drop(topicId: number): void {
    this.assertNotIterating();
    if (topicId >= this.count.length) return;
    this.clearHistory(topicId);
    this.lastSeqs[topicId] = 0;
    this.clearSnapshot(topicId);
  }

  /** True while the topic has cached messages or a snapshot (so its row must not be released). */
  holds(topicId: number): boolean {
    return topicId < this.count.length && (this.count[topicId] > 0 || this.snapUnit[topicId] >= 0);
  }

  /**
   * Evicts every message older than maxAgeSeconds at nowMicros, oldest first
   * over all topics; returns how many. Call about once a second.
   */
  expire(nowMicros: number): number {
    this.assertNotIterating();
    if (this.maxAgeMicros === Infinity) return 0;
    const cutoff = nowMicros - this.maxAgeMicros;
    const mask = this.fifo.length - 1;
    let n = 0;
    while (this.fifoLen > 0) {
      const t = this.fifo[this.fifoHead];
      if (this.fifoDebt[t] > 0) {
        this.fifoDebt[t]--;
      } else if (this.frontTs(t) < cutoff) {
        this.evictFront(t);
        this.releaseIfEmpty(t);
        n++;
      } else {
        break;
      }
      this.fifoHead = (this.fifoHead + 1) & mask;
      this.fifoLen--;
    }
    this.evictedForAge += n;
    return n;
  }

  // ---- Snapshots ----

  /**
   * Makes (seq, ts, flags, data) the topic's snapshot until replaced, cleared
   * or expiresAtMicros (Infinity: never). Returns false, keeping no snapshot,
   * when data is larger than an arena chunk.
   */
  setSnapshot(topicId: number, seq: number, tsMicros: number, flags: number, data: Uint8Array, expiresAtMicros: number): boolean {
    this.assertNotIterating();
    if (topicId >= this.count.length) this.growTopics(topicId);
    const len = data.length;
    if (len > this.arenaChunkBytes) {
      this.clearSnapshot(topicId);
      return false;
    }
    const order = orderFor(Math.max(len, 1));
    let u = this.snapUnit[topicId];
    if (u >= 0 && this.unitState[u] - ALLOCATED !== order) {
      this.clearSnapshot(topicId);
      u = -1;
    }
    if (u < 0) {
      u = this.allocBlock(order);
      this.snapUnit[topicId] = u;
      this.snapshots++;
    } else {
      this.snapshotBytes -= this.snapLen[topicId];
    }
    const c = u >>> this.maxOrder;
    (this.chunkU8[c] as Uint8Array).set(data, (u & this.unitMask) << UNIT_SHIFT);
    this.snapLen[topicId] = len;
    this.snapFlags[topicId] = flags;
    this.snapSeq[topicId] = seq;
    this.snapTs[topicId] = tsMicros;
    this.snapExpires[topicId] = expiresAtMicros;
    this.snapshotBytes += len;
    if (expiresAtMicros !== Infinity) this.heapPush(expiresAtMicros, topicId);
    return true;
  }

  /** The topic's snapshot, or null; with nowMicros, null also once it has expired. */
  snapshot(topicId: number, nowMicros?: number): SnapshotView | null {
    if (topicId >= this.count.length) return null;
    const u = this.snapUnit[topicId];
    if (u < 0) return null;
    const expiresAtMicros = this.snapExpires[topicId];
    if (nowMicros !== undefined && expiresAtMicros <= nowMicros) return null;
    const base = (u & this.unitMask) << UNIT_SHIFT;
    const data = (this.chunkU8[u >>> this.maxOrder] as Uint8Array).subarray(base, base + this.snapLen[topicId]);
    return { seq: this.snapSeq[topicId], tsMicros: this.snapTs[topicId], flags: this.snapFlags[topicId], data, expiresAtMicros };
  }

  clearSnapshot(topicId: number): void {
    if (topicId >= this.count.length) return;
    const u = this.snapUnit[topicId];
    if (u < 0) return;
    this.freeBlock(u);
    this.snapUnit[topicId] = -1;
    this.snapshots--;
    this.snapshotBytes -= this.snapLen[topicId];
    this.snapLen[topicId] = 0;
    // Its heap entry goes stale: snapUnit < 0 or a different expiry.
  }

  /** Clears every snapshot that expires at or before nowMicros; returns how many. */
  expireSnapshots(nowMicros: number): number {
    this.assertNotIterating();
    let n = 0;
    while (this.heapLen > 0 && this.heapAt[0] <= nowMicros) {
      const at = this.heapAt[0];
      const t = this.heapTopic[0];
      this.heapPop();
      if (this.snapUnit[t] >= 0 && this.snapExpires[t] === at) {
        this.clearSnapshot(t);
        n++;
      }
    }
    if (this.heapLen > 2 * this.snapshots + 64) this.heapRebuild();
    return n;
  }

  // ---- Internals: history ----

  private walk(topicId: number, afterSeq: number, visit: CacheVisitor | null, raw: CacheRawVisitor | null): number {
    if (topicId >= this.count.length) return 0;
    const n = this.count[topicId];
    if (n === 0) return 0;
    const first = this.firstSeqs[topicId];
    let skip = afterSeq - first + 1;
    if (skip >= n) return 0;
    if (skip < 0) skip = 0;
    let u = this.headUnit[topicId];
    let pos = this.headPos[topicId];
    this.iterating = true;
    try {
      for (let i = 0; i < n; i++) {
        const c = u >>> this.maxOrder;
        const blockBase = (u & this.unitMask) << UNIT_SHIFT;
        const off = blockBase + pos;
        const u32 = this.chunkU32[c] as Uint32Array;
        const len = u32[(off + 8) >>> 2];
        if (i >= skip) {
          const u8 = this.chunkU8[c] as Uint8Array;
          const ts = (this.chunkF64[c] as Float64Array)[off >>> 3];
          if (raw !== null) raw(first + i, ts, u8[off + 12], u8, off + ENTRY_HEADER, len);
          else (visit as CacheVisitor)(first + i, ts, u8[off + 12], u8.subarray(off + ENTRY_HEADER, off + ENTRY_HEADER + len));
        }
        pos += ENTRY_HEADER + ((len + 7) & ~7);
        if (pos >= u32[(blockBase + 4) >>> 2] && i + 1 < n) {
          u = (this.chunkI32[c] as Int32Array)[blockBase >>> 2];
          pos = BLOCK_HEADER;
        }
      }
    } finally {
      this.iterating = false;
    }
    return n - skip;
  }

  private frontTs(t: number): number {
    const u = this.headUnit[t];
    const off = ((u & this.unitMask) << UNIT_SHIFT) + this.headPos[t];
    return (this.chunkF64[u >>> this.maxOrder] as Float64Array)[off >>> 3];
  }

  /** Removes the topic's oldest entry; the caller accounts for its FIFO entry (debt or pop) and the reason. */
  private evictFront(t: number): void {
    const u = this.headUnit[t];
    const c = u >>> this.maxOrder;
    const blockBase = (u & this.unitMask) << UNIT_SHIFT;
    let pos = this.headPos[t];
    const u32 = this.chunkU32[c] as Uint32Array;
    const len = u32[(blockBase + pos + 8) >>> 2];
    const size = ENTRY_HEADER + ((len + 7) & ~7);
    pos += size;
    this.count[t]--;
    this.stored[t] -= size;
    this.payload[t] -= len;
    this.firstSeqs[t]++;
    this.messages--;
    this.storedBytes -= size;
    this.bytes -= len;
    if (pos >= u32[(blockBase + 4) >>> 2] && u !== this.tailUnit[t]) {
      this.headUnit[t] = (this.chunkI32[c] as Int32Array)[blockBase >>> 2];
      this.freeBlock(u);
      pos = BLOCK_HEADER;
    }
    this.headPos[t] = pos;
    if (this.count[t] === 0) this.topics--;
  }

  /** Evicts the globally oldest cached message (there must be one). */
  private evictOldest(): void {
    const mask = this.fifo.length - 1;
    for (;;) {
      const t = this.fifo[this.fifoHead];
      this.fifoHead = (this.fifoHead + 1) & mask;
      this.fifoLen--;
      if (this.fifoDebt[t] > 0) {
        this.fifoDebt[t]--;
        continue;
      }
      this.evictFront(t);
      this.releaseIfEmpty(t);
      this.evictedForTotalBytes++;
      return;
    }
  }

  private releaseIfEmpty(t: number): void {
    if (this.count[t] === 0 && this.tailUnit[t] >= 0) {
      this.freeBlock(this.tailUnit[t]);
      this.headUnit[t] = -1;
      this.tailUnit[t] = -1;
    }
  }

  /** Empties the topic's history and frees its blocks (its FIFO entries become debt). */
  private clearHistory(t: number): void {
    const n = this.count[t];
    if (n > 0) {
      this.fifoDebt[t] += n;
      this.messages -= n;
      this.storedBytes -= this.stored[t];
      this.bytes -= this.payload[t];
      this.topics--;
    }
    let u = this.headUnit[t];
    while (u >= 0) {
      const next = u === this.tailUnit[t] ? -1 : this.getNext(u);
      this.freeBlock(u);
      u = next;
    }
    this.headUnit[t] = -1;
    this.tailUnit[t] = -1;
    this.count[t] = 0;
    this.stored[t] = 0;
    this.payload[t] = 0;
  }

  private pushFifo(t: number): void {
    if (this.fifoLen === this.fifo.length) {
      // Compact when at least a quarter is dead (amortized: at most 4 moves per dead entry), else grow.
      if (this.fifoLen - this.messages >= this.fifoLen >>> 2) this.compactFifo();
      else this.growFifo();
    }
    this.fifo[(this.fifoHead + this.fifoLen) & (this.fifo.length - 1)] = t;
    this.fifoLen++;
  }

  private compactFifo(): void {
    const fifo = this.fifo;
    const mask = fifo.length - 1;
    const debt = this.fifoDebt;
    let w = 0;
    for (let i = 0; i < this.fifoLen; i++) {
      const t = fifo[(this.fifoHead + i) & mask];
      if (debt[t] > 0) debt[t]--;
      else fifo[(this.fifoHead + w++) & mask] = t;
    }
    this.fifoLen = w;
  }

  private growFifo(): void {
    const old = this.fifo;
    const mask = old.length - 1;
    const next = new Int32Array(old.length * 2);
    for (let i = 0; i < this.fifoLen; i++) next[i] = old[(this.fifoHead + i) & mask];
    this.fifo = next;
    this.fifoHead = 0;
  }

  private growTopics(topicId: number): void {
    let n = this.count.length;
    while (n <= topicId) n *= 2;
    const i32 = (a: Int32Array) => { const b = new Int32Array(n).fill(-1); b.set(a); return b; };
    const u32 = (a: Uint32Array) => { const b = new Uint32Array(n); b.set(a); return b; };
    const f64 = (a: Float64Array) => { const b = new Float64Array(n); b.set(a); return b; };
    this.headUnit = i32(this.headUnit);
    this.tailUnit = i32(this.tailUnit);
    this.snapUnit = i32(this.snapUnit);
    this.headPos = u32(this.headPos);
    this.count = u32(this.count);
    this.stored = u32(this.stored);
    this.payload = u32(this.payload);
    this.fifoDebt = u32(this.fifoDebt);
    this.snapLen = u32(this.snapLen);
    this.firstSeqs = f64(this.firstSeqs);
    this.lastSeqs = f64(this.lastSeqs);
    this.snapSeq = f64(this.snapSeq);
    this.snapTs = f64(this.snapTs);
    this.snapExpires = f64(this.snapExpires);
    const flags = new Uint8Array(n);
    flags.set(this.snapFlags);
    this.snapFlags = flags;
  }

  private assertNotIterating(): void {
    if (this.iterating) throw new Error('MessageCache: a forEach visitor must not change the cache');
  }

  // ---- Internals: blocks (buddy allocator over the arena chunks) ----

  private blockSize(u: number): number {
    return UNIT_BYTES << (this.unitState[u] - ALLOCATED);
  }

  private getNext(u: number): number {
    return (this.chunkI32[u >>> this.maxOrder] as Int32Array)[((u & this.unitMask) << UNIT_SHIFT) >>> 2];
  }

  private setNext(u: number, next: number): void {
    (this.chunkI32[u >>> this.maxOrder] as Int32Array)[((u & this.unitMask) << UNIT_SHIFT) >>> 2] = next;
  }

  private getEnd(u: number): number {
    return (this.chunkU32[u >>> this.maxOrder] as Uint32Array)[(((u & this.unitMask) << UNIT_SHIFT) + 4) >>> 2];
  }

  private setEnd(u: number, end: number): void {
    (this.chunkU32[u >>> this.maxOrder] as Uint32Array)[(((u & this.unitMask) << UNIT_SHIFT) + 4) >>> 2] = end;
  }

  private allocBlock(order: number): number {
    let j = order;
    while (j <= this.maxOrder && this.freeHead[j] < 0) j++;
    if (j > this.maxOrder) {
      this.addChunk();
      j = this.maxOrder;
    }
    const u = this.freeHead[j];
    this.unlinkFree(u, j);
    if (j === this.maxOrder) this.spareChunks--;
    while (j > order) {
      j--;
      this.pushFree(u + (1 << j), j);
    }
    this.unitState[u] = ALLOCATED + order;
    this.blockBytes += UNIT_BYTES << order;
    return u;
  }

  private freeBlock(u: number): void {
    let order = this.unitState[u] - ALLOCATED;
    this.blockBytes -= UNIT_BYTES << order;
    this.unitState[u] = -1;
    while (order < this.maxOrder) {
      const buddy = u ^ (1 << order);
      if (this.unitState[buddy] !== order) break;
      this.unlinkFree(buddy, order);
      this.unitState[buddy] = -1;
      if (buddy < u) u = buddy;
      order++;
    }
    if (order === this.maxOrder) {
      if (this.spareChunks >= 1) {
        this.releaseChunk(u >>> this.maxOrder);
        return;
      }
      this.spareChunks++;
    }
    this.pushFree(u, order);
  }

  private pushFree(u: number, order: number): void {
    const i32 = this.chunkI32[u >>> this.maxOrder] as Int32Array;
    const w = ((u & this.unitMask) << UNIT_SHIFT) >>> 2;
    const head = this.freeHead[order];
    i32[w] = head;
    i32[w + 1] = -1;
    if (head >= 0) (this.chunkI32[head >>> this.maxOrder] as Int32Array)[(((head & this.unitMask) << UNIT_SHIFT) >>> 2) + 1] = u;
    this.freeHead[order] = u;
    this.unitState[u] = order;
  }

  private unlinkFree(u: number, order: number): void {
    const i32 = this.chunkI32[u >>> this.maxOrder] as Int32Array;
    const w = ((u & this.unitMask) << UNIT_SHIFT) >>> 2;
    const next = i32[w];
    const prev = i32[w + 1];
    if (prev >= 0) (this.chunkI32[prev >>> this.maxOrder] as Int32Array)[((prev & this.unitMask) << UNIT_SHIFT) >>> 2] = next;
    else this.freeHead[order] = next;
    if (next >= 0) (this.chunkI32[next >>> this.maxOrder] as Int32Array)[(((next & this.unitMask) << UNIT_SHIFT) >>> 2) + 1] = prev;
  }

  private addChunk(): void {
    const buffer = this.allocate(this.arenaChunkBytes);
    if (buffer.byteLength < this.arenaChunkBytes) {
      throw new RangeError(`MessageCache: the allocator gave ${buffer.byteLength} bytes for a chunk of ${this.arenaChunkBytes}`);
    }
    const c = this.freeChunkIds.length > 0 ? (this.freeChunkIds.pop() as number) : this.chunkU8.length;
    const len = this.arenaChunkBytes;
    this.chunkU8[c] = new Uint8Array(buffer, 0, len);
    this.chunkI32[c] = new Int32Array(buffer, 0, len >>> 2);
    this.chunkU32[c] = new Uint32Array(buffer, 0, len >>> 2);
    this.chunkF64[c] = new Float64Array(buffer, 0, len >>> 3);
    const units = (c + 1) << this.maxOrder;
    if (units > this.unitState.length) {
      const s = new Int8Array(Math.max(units, this.unitState.length * 2)).fill(-1);
      s.set(this.unitState);
      this.unitState = s;
    }
    this.unitState.fill(-1, c << this.maxOrder, units);
    this.arenaBytes += len;
    this.spareChunks++;
    this.pushFree(c << this.maxOrder, this.maxOrder);
  }

  private releaseChunk(c: number): void {
    this.chunkU8[c] = null;
    this.chunkI32[c] = null;
    this.chunkU32[c] = null;
    this.chunkF64[c] = null;
    this.freeChunkIds.push(c);
    this.arenaBytes -= this.arenaChunkBytes;
  }

  // ---- Internals: snapshot expiry heap ----

  private heapPush(at: number, t: number): void {
    if (this.heapLen === this.heapAt.length) {
      const a = new Float64Array(this.heapLen * 2);
      a.set(this.heapAt);
      this.heapAt = a;
      const b = new Int32Array(this.heapLen * 2);
      b.set(this.heapTopic);
      this.heapTopic = b;
    }
    let i = this.heapLen++;
    while (i > 0) {
      const p = (i - 1) >>> 1;
      if (this.heapAt[p] <= at) break;
      this.heapAt[i] = this.heapAt[p];
      this.heapTopic[i] = this.heapTopic[p];
      i = p;
    }
    this.heapAt[i] = at;
    this.heapTopic[i] = t;
  }

  private heapPop(): void {
    const n = --this.heapLen;
    if (n === 0) return;
    this.siftDown(0, this.heapAt[n], this.heapTopic[n], n);
  }

  private siftDown(i: number, at: number, t: number, n: number): void {
    for (;;) {
      let child = 2 * i + 1;
      if (child >= n) break;
      if (child + 1 < n && this.heapAt[child + 1] < this.heapAt[child]) child++;
      if (this.heapAt[child] >= at) break;
      this.heapAt[i] = this.heapAt[child];
      this.heapTopic[i] = this.heapTopic[child];
      i = child;
    }
    this.heapAt[i] = at;
    this.heapTopic[i] = t;
  }

  /** Drops stale entries (replaced or cleared snapshots) and re-heapifies. */
  private heapRebuild(): void {
    let w = 0;
    for (let i = 0; i < this.heapLen; i++) {
      const t = this.heapTopic[i];
      const at = this.heapAt[i];
      if (this.snapUnit[t] >= 0 && this.snapExpires[t] === at) {
        this.heapAt[w] = at;
        this.heapTopic[w] = t;
        w++;
      }
    }
    this.heapLen = w;
    for (let i = (w >>> 1) - 1; i >= 0; i--) this.siftDown(i, this.heapAt[i], this.heapTopic[i], w);
  }
}

/** Smallest block order holding bytes. */
function orderFor(bytes: number): number {
  if (bytes <= UNIT_BYTES) return 0;
  return 32 - Math.clz32(bytes - 1) - UNIT_SHIFT;
}

/** Largest block order not above bytes (0 below one unit). */
function floorOrder(bytes: number): number {
  if (bytes < UNIT_BYTES) return 0;
  return 31 - Math.clz32(bytes) - UNIT_SHIFT;
}
