// The snapshot store's memory: a buddy allocator over arena chunks (one
// retained message per topic, of any size up to a chunk). Blocks are named
// by the global number of their first 256-byte unit; free lists are linked
// through the free blocks themselves.
import { takeChunk, type ArenaAllocator } from './arena';

const UNIT_SHIFT = 8;
const UNIT_BYTES = 1 << UNIT_SHIFT;
/** unitState: -1 = not a block head; 0..31 = head of a free block of that order; ALLOCATED + order = head of an allocated block. */
const ALLOCATED = 32;

/** Smallest block order holding bytes. */
export function orderFor(bytes: number): number {
  if (bytes <= UNIT_BYTES) return 0;
  return 32 - Math.clz32(bytes - 1) - UNIT_SHIFT;
}

/**
 * Blocks of 256 bytes << order, up to one chunk, named by the global number
 * of their first 256-byte unit. Free lists are linked through the free
 * blocks themselves (next, prev unit at their first two words); the only
 * side table is one byte per unit. At most one wholly free chunk is kept.
 */
export class BlockArena {
  arenaBytes = 0;
  private readonly maxOrder: number;
  private readonly unitMask: number;
  private chunkU8: (Uint8Array | null)[] = [];
  private chunkI32: (Int32Array | null)[] = [];
  private freeChunkIds: number[] = [];
  private unitState = new Int8Array(0);
  private readonly freeHead: Int32Array;
  private spareChunks = 0;

  constructor(
    private readonly chunkBytes: number,
    private readonly allocate: ArenaAllocator,
  ) {
    this.maxOrder = 31 - Math.clz32(chunkBytes) - UNIT_SHIFT;
    this.unitMask = (1 << this.maxOrder) - 1;
    this.freeHead = new Int32Array(this.maxOrder + 1).fill(-1);
  }

  get metadataBytes(): number {
    return this.unitState.byteLength;
  }

  orderOf(b: number): number {
    return this.unitState[b] - ALLOCATED;
  }

  /** The chunk's bytes holding block b (at offsetOf(b)). */
  bytesOf(b: number): Uint8Array {
    return this.chunkU8[b >>> this.maxOrder] as Uint8Array;
  }

  offsetOf(b: number): number {
    return (b & this.unitMask) << UNIT_SHIFT;
  }

  alloc(order: number): number {
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
    return u;
  }

  free(b: number): void {
    let u = b;
    let order = this.unitState[u] - ALLOCATED;
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
    const len = this.chunkBytes;
    const { buffer, offset } = takeChunk(this.allocate, len);
    const c = this.freeChunkIds.length > 0 ? (this.freeChunkIds.pop() as number) : this.chunkU8.length;
    this.chunkU8[c] = new Uint8Array(buffer, offset, len);
    this.chunkI32[c] = new Int32Array(buffer, offset, len >>> 2);
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
    this.freeChunkIds.push(c);
    this.arenaBytes -= this.chunkBytes;
  }
}
