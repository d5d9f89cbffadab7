// Snapshots (retained messages): one per topic, the last one published with
// retain, in a block arena of its own (workgroups/block-arena.ts: blocks of
// 256 bytes up to one chunk), outside the history log's byte budget: they
// are bounded by one per topic and by their expiry, and evicting a retained
// message for a burst of history would be the wrong trade. Expiry is a
// binary min-heap of (expiresAt, topic) whose stale entries are skipped.
//
// Concurrency: the owner workgroup's thread is the only reader and writer.
import type { ArenaAllocator } from './arena';
import { BlockArena, orderFor } from './block-arena';
import { grown } from './grow';

export interface SnapshotView {
  seq: number;
  tsMicros: number;
  flags: number;
  /** A view into the arena: valid until the snapshot is replaced, cleared or expired. */
  data: Uint8Array;
  expiresAtMicros: number;
}

export class SnapshotStore {
  /** Snapshots held, and their bytes. */
  count = 0;
  bytes = 0;
  private block: Int32Array;
  private len: Uint32Array;
  private flags: Uint8Array;
  private seq: Float64Array;
  private ts: Float64Array;
  private expires: Float64Array;
  private readonly arena: BlockArena;
  // Expiry: binary min-heap of (expiresAt, topic); stale entries are skipped.
  private heapAt = new Float64Array(64);
  private heapTopic = new Int32Array(64);
  private heapLen = 0;

  constructor(
    private readonly chunkBytes: number,
    allocate: ArenaAllocator,
    rows: number,
  ) {
    this.arena = new BlockArena(chunkBytes, allocate);
    this.block = new Int32Array(rows).fill(-1);
    this.len = new Uint32Array(rows);
    this.flags = new Uint8Array(rows);
    this.seq = new Float64Array(rows);
    this.ts = new Float64Array(rows);
    this.expires = new Float64Array(rows);
  }

  /** Bytes of arena chunks held. */
  get arenaBytes(): number {
    return this.arena.arenaBytes;
  }

  /** Bytes of the typed arrays beside the arena: the per-topic rows, the unit table and the heap. */
  get metadataBytes(): number {
    // block, len (4 bytes each), flags (1), seq, ts, expires (8 each) per topic row.
    const rows = this.block.length * (4 * 2 + 1 + 8 * 3);
    return rows + this.arena.metadataBytes + this.heapAt.byteLength + this.heapTopic.byteLength;
  }

  has(topicId: number): boolean {
    return topicId < this.block.length && this.block[topicId] >= 0;
  }

  /**
   * Makes (seq, ts, flags, data) the topic's snapshot until replaced, cleared
   * or expiresAtMicros (Infinity: never). Returns false, keeping no snapshot,
   * when data is larger than an arena chunk.
   */
  set(topicId: number, seq: number, tsMicros: number, flags: number, data: Uint8Array, expiresAtMicros: number): boolean {
    if (topicId >= this.block.length) this.grow(topicId);
    const len = data.length;
    if (len > this.chunkBytes) {
      this.clear(topicId);
      return false;
    }
    const order = orderFor(Math.max(len, 1));
    let b = this.block[topicId];
    if (b >= 0 && this.arena.orderOf(b) !== order) {
      this.clear(topicId);
      b = -1;
    }
    if (b < 0) {
      b = this.arena.alloc(order);
      this.block[topicId] = b;
      this.count++;
    } else {
      this.bytes -= this.len[topicId];
    }
    this.arena.bytesOf(b).set(data, this.arena.offsetOf(b));
    this.len[topicId] = len;
    this.flags[topicId] = flags;
    this.seq[topicId] = seq;
    this.ts[topicId] = tsMicros;
    this.expires[topicId] = expiresAtMicros;
    this.bytes += len;
    if (expiresAtMicros !== Infinity) this.heapPush(expiresAtMicros, topicId);
    return true;
  }

  /** The topic's snapshot, or null; with nowMicros, null also once it has expired. */
  get(topicId: number, nowMicros?: number): SnapshotView | null {
    if (topicId >= this.block.length) return null;
    const b = this.block[topicId];
    if (b < 0) return null;
    const expiresAtMicros = this.expires[topicId];
    if (nowMicros !== undefined && expiresAtMicros <= nowMicros) return null;
    const off = this.arena.offsetOf(b);
    const data = this.arena.bytesOf(b).subarray(off, off + this.len[topicId]);
    return { seq: this.seq[topicId], tsMicros: this.ts[topicId], flags: this.flags[topicId], data, expiresAtMicros };
  }

  clear(topicId: number): void {
    if (topicId >= this.block.length) return;
    const b = this.block[topicId];
    if (b < 0) return;
    this.arena.free(b);
    this.block[topicId] = -1;
    this.count--;
    this.bytes -= this.len[topicId];
    this.len[topicId] = 0;
    // Its heap entry is stale now: no block, or a different expiry.
  }

  /** Clears every snapshot that expires at or before nowMicros; returns how many. */
  expire(nowMicros: number): number {
    let n = 0;
    while (this.heapLen > 0 && this.heapAt[0] <= nowMicros) {
      const at = this.heapAt[0];
      const t = this.heapTopic[0];
      this.heapPop();
      if (this.block[t] >= 0 && this.expires[t] === at) {
        this.clear(t);
        n++;
      }
    }
    if (this.heapLen > 2 * this.count + 64) this.heapRebuild();
    return n;
  }

  /** Rows for topic ids up to at least `topicId` (doubling; rare). */
  private grow(topicId: number): void {
    let n = this.block.length;
    while (n <= topicId) n *= 2;
    this.block = grown(this.block, n, -1);
    this.len = grown(this.len, n);
    this.flags = grown(this.flags, n);
    this.seq = grown(this.seq, n);
    this.ts = grown(this.ts, n);
    this.expires = grown(this.expires, n);
  }

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
      if (this.block[t] >= 0 && this.expires[t] === at) {
        this.heapAt[w] = at;
        this.heapTopic[w] = t;
        w++;
      }
    }
    this.heapLen = w;
    for (let i = (w >>> 1) - 1; i >= 0; i--) this.siftDown(i, this.heapAt[i], this.heapTopic[i], w);
  }
}
