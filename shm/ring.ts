// Ring: a single-producer/single-consumer byte ring between two workgroups,
// over a SharedArrayBuffer (from native-io's allocShared, or any other). It
// never assumes the peers are threads of one process: everything it shares
// lives in the buffer, and everything else is local to one side. Here: the
// layout, Ring (create, init, reset, stats), RingProducer and RingConsumer.
// Built on them: RingSender (shm/ring-sender.ts: the spill when the ring is
// full) and RingInbox (shm/ring-inbox.ts: one workgroup's inbound rings,
// sleeping on its Doorbell, shm/doorbell.ts).
//
// Concurrency rules (also in docs/CONCURRENCY.md):
// - Exactly one producer and one consumer per ring at any time.
// - The producer alone writes `tail`, the record bytes in [tail, head+capacity),
//   and the producer counters. The consumer alone writes `head`, `spaceSeq`
//   and the consumer counters. Nobody writes the constants line after init
//   (except Ring.reset, with both sides stopped).
// - `spaceWanted` is set (> 0) by the producer and cleared (compareExchange to
//   0) by the consumer. (The Doorbell's words: shm/doorbell.ts.)
// - A record is written (length word and payload, plain stores) before the
//   producer publishes it with Atomics.store(tail); the consumer reads tail
//   with Atomics.load before it reads a record. The consumer is done with a
//   record before it gives the space back with Atomics.store(head). JS Atomics
//   are sequentially consistent, so these pairs order the plain accesses.
// - head and tail are free-running 32-bit positions: used = (tail - head)
//   mod 2^32, offset = position & (capacity - 1). So full and empty differ
//   without a spare slot, and capacity is a power of two up to 2^30.
//
// Layout (byte offsets from the ring's start; every line is 64 bytes so that
// the producer's and the consumer's hot words never share a cache line):
//   line 0 (constants)  0: magic, 4: version, 8: capacity, 12: generation
//   line 1 (consumer)  64: head, 68: spaceSeq, 72: recordsRead (f64), 80: bytesRead (f64)
//   line 2 (producer) 128: tail, 132: flushed, 136: recordsWritten, 144: bytesWritten,
//                     152: fullEvents, 160: spilledRecords, 168: wraps (f64 each)
//   line 3 (shared)   192: spaceWanted (free bytes the waiting producer needs)
//   data              256: capacity bytes of records
// A record is [length: int32][payload][pad to 4 bytes]. A length of -1 is a
// wrap marker: the rest of the data area up to its end is skipped, so every
// record is contiguous and is read in place as a range of `data`.
//
// Wake-ups: a producer that publishes a record rings the consumer's Doorbell
// (shm/doorbell.ts), which notifies only while the consumer sleeps; a
// batched producer publishes `flushed` and rings once per turn (and every
// 256 records) instead, and a consumer about to sleep looks at `flushed`
// (RingConsumer.hasAnnounced; docs/CONCURRENCY.md). A
// producer whose ring is full spills (RingSender) and sleeps on the ring's
// spaceSeq (RingProducer.waitForSpace) until the consumer has freed the
// space it needs. Atomics.notify reaches only waiters of this process:
// across processes the Doorbell and the space wait are the two things that
// must change (futex).

import type { Doorbell } from './doorbell';
import { waitAsync } from './doorbell';

const MAGIC = 0x52494e47; // "RING"
const VERSION = 1;

/** Bytes before the data area. */
export const RING_HEADER_BYTES = 256;
/** Bytes of a record's length word. */
export const RECORD_HEADER_BYTES = 4;
/** Smallest and largest data area. */
export const RING_MIN_DATA_BYTES = 16;
export const RING_MAX_DATA_BYTES = 1 << 30;

const WRAP = -1;

// Int32 indexes into the header.
const I_MAGIC = 0;
const I_VERSION = 1;
const I_CAPACITY = 2;
const I_GENERATION = 3;
const I_HEAD = 16;
const I_SPACE_SEQ = 17;
const I_TAIL = 32;
/** The tail as of the producer's last doorbell check: records before it may have been announced while the consumer was awake. */
const I_FLUSHED = 33;
const I_SPACE_WANTED = 48;
// Float64 indexes into the header (counters: written by one side, read by anyone; a stats reader may see a value one record old).
const F_RECORDS_READ = 9;
const F_BYTES_READ = 10;
const F_RECORDS_WRITTEN = 17;
const F_BYTES_WRITTEN = 18;
const F_FULL_EVENTS = 19;
const F_SPILLED_RECORDS = 20;
const F_WRAPS = 21;

/** Bytes a record of payloadBytes takes in the data area. */
export function recordBytes(payloadBytes: number): number {
  return (RECORD_HEADER_BYTES + payloadBytes + 3) & ~3;
}

function isPowerOfTwo(n: number): boolean {
  return Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;
}

function checkOffset(sab: SharedArrayBuffer, byteOffset: number, dataBytes: number): void {
  if (!(sab instanceof SharedArrayBuffer)) throw new TypeError('ring: expected a SharedArrayBuffer');
  if (!Number.isInteger(byteOffset) || byteOffset < 0 || byteOffset % 64 !== 0) {
    throw new RangeError(`ring: byteOffset ${byteOffset} must be a non-negative multiple of 64`);
  }
  if (byteOffset + RING_HEADER_BYTES + dataBytes > sab.byteLength) {
    throw new RangeError(`ring: ${RING_HEADER_BYTES + dataBytes} bytes at offset ${byteOffset} do not fit in a buffer of ${sab.byteLength} bytes`);
  }
}

/** Views over one ring's header, checked to be an initialised ring. */
function attach(sab: SharedArrayBuffer, byteOffset: number): { header: Int32Array; counters: Float64Array; capacity: number } {
  checkOffset(sab, byteOffset, 0);
  const header = new Int32Array(sab, byteOffset, RING_HEADER_BYTES >> 2);
  if (Atomics.load(header, I_MAGIC) !== MAGIC || header[I_VERSION] !== VERSION) {
    throw new Error(`ring: no ring at offset ${byteOffset} of this buffer (call Ring.init or Ring.create first)`);
  }
  const capacity = header[I_CAPACITY];
  checkOffset(sab, byteOffset, capacity);
  return { header, counters: new Float64Array(sab, byteOffset, RING_HEADER_BYTES >> 3), capacity };
}

export interface RingStats {
  capacity: number;
  generation: number;
  /** Bytes committed and not yet released by the consumer (including wrap padding). */
  usedBytes: number;
  recordsWritten: number;
  bytesWritten: number;
  recordsRead: number;
  bytesRead: number;
  /** Times a RingSender found the ring full and started spilling. */
  fullEvents: number;
  /** Records that went through a RingSender's spill queue. */
  spilledRecords: number;
  wraps: number;
}

export const Ring = {
  /** Total buffer bytes for a ring with dataBytes of data area. */
  bytesFor(dataBytes: number): number {
    return RING_HEADER_BYTES + dataBytes;
  },

  /** A new SharedArrayBuffer holding one empty ring. For rings in a native-io arena, use Ring.init. */
  create(dataBytes: number): SharedArrayBuffer {
    const sab = new SharedArrayBuffer(Ring.bytesFor(dataBytes));
    Ring.init(sab, dataBytes, 0);
    return sab;
  },

  /**
   * Writes an empty ring's header at byteOffset (a multiple of 64) of sab,
   * which must be zeroed or hold no live ring. dataBytes: a power of two from
   * 16 to 2^30. Done once, before either side attaches.
   */
  init(sab: SharedArrayBuffer, dataBytes: number, byteOffset = 0): void {
    if (!isPowerOfTwo(dataBytes) || dataBytes < RING_MIN_DATA_BYTES || dataBytes > RING_MAX_DATA_BYTES) {
      throw new RangeError(`ring: dataBytes ${dataBytes} must be a power of two from ${RING_MIN_DATA_BYTES} to ${RING_MAX_DATA_BYTES}`);
    }
    checkOffset(sab, byteOffset, dataBytes);
    new Uint8Array(sab, byteOffset, RING_HEADER_BYTES).fill(0);
    const header = new Int32Array(sab, byteOffset, RING_HEADER_BYTES >> 2);
    header[I_VERSION] = VERSION;
    header[I_CAPACITY] = dataBytes;
    Atomics.store(header, I_MAGIC, MAGIC);
  },

  /**
   * Empties a ring and zeroes its counters, bumping its generation. Only when
   * neither side is running (both workgroups stopped): a live producer or
   * consumer keeps cached positions that this would contradict. To drop the
   * backlog while the producer runs, the consumer calls RingConsumer.discard.
   */
  reset(sab: SharedArrayBuffer, byteOffset = 0): void {
    const { header, counters } = attach(sab, byteOffset);
    const generation = (header[I_GENERATION] + 1) | 0;
    Atomics.store(header, I_HEAD, 0);
    Atomics.store(header, I_TAIL, 0);
    Atomics.store(header, I_FLUSHED, 0);
    Atomics.store(header, I_SPACE_WANTED, 0);
    for (const i of [F_RECORDS_READ, F_BYTES_READ, F_RECORDS_WRITTEN, F_BYTES_WRITTEN, F_FULL_EVENTS, F_SPILLED_RECORDS, F_WRAPS]) counters[i] = 0;
    Atomics.store(header, I_GENERATION, generation);
  },

  /** Largest payload a record of this ring can carry: capacity - 4. */
  maxPayloadBytes(sab: SharedArrayBuffer, byteOffset = 0): number {
    return attach(sab, byteOffset).capacity - RECORD_HEADER_BYTES;
  },

  /** Counters, readable from any thread without disturbing either side. */
  stats(sab: SharedArrayBuffer, byteOffset = 0): RingStats {
    const { header, counters, capacity } = attach(sab, byteOffset);
    const head = Atomics.load(header, I_HEAD);
    const tail = Atomics.load(header, I_TAIL);
    return {
      capacity,
      generation: header[I_GENERATION],
      usedBytes: (tail - head) >>> 0,
      recordsWritten: counters[F_RECORDS_WRITTEN],
      bytesWritten: counters[F_BYTES_WRITTEN],
      recordsRead: counters[F_RECORDS_READ],
      bytesRead: counters[F_BYTES_READ],
      fullEvents: counters[F_FULL_EVENTS],
      spilledRecords: counters[F_SPILLED_RECORDS],
      wraps: counters[F_WRAPS],
    };
  },
};

/** Thrown for a record that can never fit in the ring. */
export class RecordTooLargeError extends RangeError {
  readonly code = 'RING_RECORD_TOO_LARGE';
  constructor(
    readonly payloadBytes: number,
    readonly maxPayloadBytes: number,
  ) {
    super(`ring: a record of ${payloadBytes} bytes can never fit; this ring carries at most ${maxPayloadBytes} bytes per record`);
    this.name = 'RecordTooLargeError';
  }
}

/**
 * The producing side of a ring. Records are encoded in place: reserve
 * returns where the payload goes in `data`, commit publishes it.
 */
export class RingProducer {
  /** The ring's data area; payload offsets from reserve index into it. */
  readonly data: Uint8Array;
  /** The same bytes as a DataView, for encoders that write numbers. */
  readonly view: DataView;
  readonly capacity: number;
  readonly maxPayloadBytes: number;
  readonly generation: number;
  private readonly words: Int32Array;
  private readonly header: Int32Array;
  private readonly counters: Float64Array;
  private readonly mask: number;
  private readonly doorbell: Doorbell | null;
  private tail: number;
  /** Last head seen; only ever behind the real head, so free space is under-estimated, never over. */
  private headCache: number;
  /** Position of the reserved record's length word, or -1 when nothing is reserved. */
  private reservedAt = -1;
  private reservedBytes = 0;
  /** Batched: the doorbell is rung once per turn, not once per record (see announce). */
  private readonly batched: boolean;
  private pending = false;
  /** Records committed since the last flush. */
  private sinceFlush = 0;

  constructor(sab: SharedArrayBuffer, byteOffset = 0, doorbell: Doorbell | null = null, batched = false) {
    this.batched = batched;
    const { header, counters, capacity } = attach(sab, byteOffset);
    this.header = header;
    this.counters = counters;
    this.capacity = capacity;
    this.maxPayloadBytes = capacity - RECORD_HEADER_BYTES;
    this.generation = header[I_GENERATION];
    this.mask = capacity - 1;
    this.data = new Uint8Array(sab, byteOffset + RING_HEADER_BYTES, capacity);
    this.view = new DataView(sab, byteOffset + RING_HEADER_BYTES, capacity);
    this.words = new Int32Array(sab, byteOffset + RING_HEADER_BYTES, capacity >> 2);
    this.doorbell = doorbell;
    // A restarted producer continues after the last committed record; anything it had reserved is gone.
    this.tail = Atomics.load(header, I_TAIL);
    this.headCache = Atomics.load(header, I_HEAD);
  }

  /** Free bytes as of now (reads head). */
  freeBytes(): number {
    this.headCache = Atomics.load(this.header, I_HEAD);
    return this.capacity - ((this.tail - this.headCache) >>> 0);
  }

  /**
   * Free bytes the ring needs before reserve(payloadBytes) can succeed from
   * the current tail (the record, plus the skipped end of the data area if
   * it would wrap). At most capacity.
   */
  bytesNeeded(payloadBytes: number): number {
    const need = recordBytes(payloadBytes);
    const toEnd = this.capacity - (this.tail & this.mask);
    return toEnd >= need ? need : toEnd + need > this.capacity ? toEnd : toEnd + need;
  }

  /**
   * Reserves a record of payloadBytes; returns the payload's offset in
   * `data`, or -1 when the ring is full (try again after the consumer moves).
   * Throws RecordTooLargeError if it can never fit. Write the payload, then
   * commit. No allocation.
   */
  reserve(payloadBytes: number): number {
    if (this.reservedAt !== -1) throw new Error('ring: reserve called twice without commit');
    if (!(payloadBytes >= 0 && payloadBytes <= this.maxPayloadBytes)) {
      throw new RecordTooLargeError(payloadBytes, this.maxPayloadBytes);
    }
    const need = recordBytes(payloadBytes);
    const capacity = this.capacity;
    let tail = this.tail;
    let off = tail & this.mask;
    const toEnd = capacity - off;
    let free = capacity - ((tail - this.headCache) >>> 0);
    if (toEnd < need) {
      // The record would straddle the end: skip to the start behind a wrap marker.
      if (free < toEnd + need) free = this.freeBytes();
      if (free < toEnd) return -1;
      if (free < toEnd + need) {
        // Publish the marker alone, so that the record fits at 0 once the consumer passes it.
        this.words[off >> 2] = WRAP;
        this.tail = tail = (tail + toEnd) | 0;
        this.counters[F_WRAPS]++;
        Atomics.store(this.header, I_TAIL, tail);
        // A sleeping consumer must pass the marker to free the space: wake it.
        this.announce();
        return -1;
      }
      this.words[off >> 2] = WRAP;
      this.counters[F_WRAPS]++;
      tail = (tail + toEnd) | 0;
      this.tail = tail;
      off = 0;
      free -= toEnd;
      // The marker is published with the record's commit.
    } else if (free < need) {
      free = this.freeBytes();
      if (free < need) return -1;
    }
    this.reservedAt = tail;
    this.reservedBytes = payloadBytes;
    return off + RECORD_HEADER_BYTES;
  }

  /**
   * Publishes the reserved record, with payloadBytes (default: as reserved;
   * may be less, never more) and rings the consumer's doorbell if it sleeps.
   * No allocation.
   */
  commit(payloadBytes: number = this.reservedBytes): void {
    const at = this.reservedAt;
    if (at === -1) throw new Error('ring: commit without reserve');
    if (!(payloadBytes >= 0 && payloadBytes <= this.reservedBytes)) {
      const reserved = this.reservedBytes;
      this.cancel();
      throw new RangeError(`ring: commit of ${payloadBytes} bytes exceeds the ${reserved} reserved (the reservation is cancelled)`);
    }
    this.reservedAt = -1;
    this.words[(at & this.mask) >> 2] = payloadBytes;
    const tail = (at + recordBytes(payloadBytes)) | 0;
    this.tail = tail;
    const c = this.counters;
    c[F_RECORDS_WRITTEN]++;
    c[F_BYTES_WRITTEN] += payloadBytes;
    Atomics.store(this.header, I_TAIL, tail);
    this.announce();
  }

  /**
   * Tells the consumer about what was committed: at once, or (batched) at
   * the end of this turn for everything the turn committed (flushProducers).
   */
  private announce(): void {
    if (!this.batched) {
      Atomics.store(this.header, I_FLUSHED, this.tail);
      if (this.doorbell !== null) this.doorbell.ring();
    } else if (++this.sinceFlush >= FLUSH_EVERY_RECORDS) {
      // A long turn: the consumer gets the records so far now, and works beside us.
      this.flush();
    } else if (!this.pending) {
      this.pending = true;
      pendingProducers.push(this);
      if (!flushScheduled) {
        flushScheduled = true;
        setImmediate(flushProducers);
      }
    }
  }

  /**
   * Batched: publishes the tail as flushed, then rings the doorbell (which
   * notifies only a sleeping consumer). In this order, a consumer that
   * announced sleep and finds no record before `flushed` either sees this
   * flush's records or is rung by it (RingConsumer.hasAnnounced).
   */
  flush(): void {
    if (!this.pending && this.sinceFlush === 0) return;
    this.pending = false;
    this.sinceFlush = 0;
    Atomics.store(this.header, I_FLUSHED, this.tail);
    if (this.doorbell !== null) this.doorbell.ring();
  }

  /** Drops the reserved record unpublished (e.g. its encoder threw). */
  cancel(): void {
    this.reservedAt = -1;
    this.reservedBytes = 0;
  }

  /** Copies bytes in as one record; false when the ring is full. */
  tryWrite(bytes: Uint8Array): boolean {
    const off = this.reserve(bytes.length);
    if (off < 0) return false;
    this.data.set(bytes, off);
    this.commit();
    return true;
  }

  /** Counts a ring-full event / a spilled record in the shared stats (RingSender's). */
  countFull(): void {
    this.counters[F_FULL_EVENTS]++;
  }
  countSpilled(): void {
    this.counters[F_SPILLED_RECORDS]++;
  }

  /**
   * Calls onSpace once free space reaches `bytes` (at once if it already
   * has), without polling: the consumer notifies after it releases space.
   * At most one wait at a time per ring.
   */
  waitForSpace(bytes: number, onSpace: () => void): void {
    const h = this.header;
    Atomics.store(h, I_SPACE_WANTED, bytes);
    const seq = Atomics.load(h, I_SPACE_SEQ);
    // Re-check after announcing, so a release between the check and the wait is not missed.
    if (this.freeBytes() >= bytes) {
      Atomics.store(h, I_SPACE_WANTED, 0);
      queueMicrotask(onSpace);
      return;
    }
    const r = waitAsync(h, I_SPACE_SEQ, seq);
    if (r.async) r.value.then(onSpace, onSpace);
    else queueMicrotask(onSpace);
  }
}

/** A batched producer flushes at least every this many records, so that a long turn does not keep its consumer idle. */
const FLUSH_EVERY_RECORDS = 256;

/** Batched producers with records committed this turn, and whether their flush is scheduled. */
const pendingProducers: RingProducer[] = [];
let flushScheduled = false;

/**
 * Flushes every batched producer that committed since the last flush: at the
 * end of the turn (setImmediate), or now, before a caller waits with its
 * loop stopped.
 */
export function flushProducers(): void {
  flushScheduled = false;
  for (let i = 0; i < pendingProducers.length; i++) pendingProducers[i].flush();
  pendingProducers.length = 0;
}

/** Called once per record: the payload is data[offset, offset + length), valid only during the call. */
export type RecordHandler = (data: Uint8Array, offset: number, length: number) => void;

/** The consuming side of a ring: reads records in place, in order. */
export class RingConsumer {
  readonly data: Uint8Array;
  readonly view: DataView;
  readonly capacity: number;
  readonly generation: number;
  private readonly words: Int32Array;
  private readonly header: Int32Array;
  private readonly counters: Float64Array;
  private readonly mask: number;
  private head: number;
  /** Records the last read call handled (including one whose handler threw). */
  lastReadRecords = 0;
  /** Last tail seen; never ahead of the real tail. */
  private tailCache: number;

  constructor(sab: SharedArrayBuffer, byteOffset = 0) {
    const { header, counters, capacity } = attach(sab, byteOffset);
    this.header = header;
    this.counters = counters;
    this.capacity = capacity;
    this.generation = header[I_GENERATION];
    this.mask = capacity - 1;
    this.data = new Uint8Array(sab, byteOffset + RING_HEADER_BYTES, capacity);
    this.view = new DataView(sab, byteOffset + RING_HEADER_BYTES, capacity);
    this.words = new Int32Array(sab, byteOffset + RING_HEADER_BYTES, capacity >> 2);
    // A restarted consumer resumes after the last record its predecessor released.
    this.head = Atomics.load(header, I_HEAD);
    this.tailCache = Atomics.load(header, I_TAIL);
  }

  /**
   * True when a record the producer announced (RingProducer.flush, or every
   * commit of an unbatched producer) is still unread. A consumer that has
   * announced sleep may sleep when this is false: what came after the
   * announcement rings its doorbell at the producer's flush.
   */
  hasAnnounced(): boolean {
    return ((Atomics.load(this.header, I_FLUSHED) - this.head) | 0) > 0;
  }

  /** True when no committed record is waiting (reads tail). */
  isEmpty(): boolean {
    this.tailCache = Atomics.load(this.header, I_TAIL);
    return this.tailCache === this.head;
  }

  /**
   * Calls handler for up to maxRecords records, in order, then releases
   * their space (one head store per call). Returns how many it handled. If
   * the handler throws, that record counts as consumed and the error is
   * rethrown. No allocation.
   */
  read(handler: RecordHandler, maxRecords = 0x7fffffff): number {
    let head = this.head;
    let tail = this.tailCache;
    if (tail === head) {
      tail = this.tailCache = Atomics.load(this.header, I_TAIL);
      if (tail === head) return 0;
    }
    const words = this.words;
    const data = this.data;
    const mask = this.mask;
    let n = 0;
    let bytes = 0;
    try {
      while (n < maxRecords) {
        if (tail === head) {
          tail = this.tailCache = Atomics.load(this.header, I_TAIL);
          if (tail === head) break;
        }
        const off = head & mask;
        const length = words[off >> 2];
        if (length === WRAP) {
          head = (head + this.capacity - off) | 0;
          continue;
        }
        head = (head + recordBytes(length)) | 0;
        n++;
        bytes += length;
        handler(data, off + RECORD_HEADER_BYTES, length);
      }
    } finally {
      this.lastReadRecords = n;
      this.release(head, n, bytes);
    }
    return n;
  }

  /** Drops every committed record without reading it (e.g. a restarted workgroup discarding a backlog). Returns the bytes dropped. */
  discard(): number {
    const tail = (this.tailCache = Atomics.load(this.header, I_TAIL));
    const dropped = (tail - this.head) >>> 0;
    this.release(tail, 0, 0);
    return dropped;
  }

  private release(head: number, records: number, bytes: number): void {
    if (head === this.head) return;
    this.head = head;
    const c = this.counters;
    c[F_RECORDS_READ] += records;
    c[F_BYTES_READ] += bytes;
    const h = this.header;
    Atomics.store(h, I_HEAD, head);
    // A producer waits for space: notify once it has what it asked for.
    const wanted = Atomics.load(h, I_SPACE_WANTED);
    if (wanted !== 0 && this.capacity - ((this.tailCache - head) >>> 0) >= wanted) {
      if (Atomics.compareExchange(h, I_SPACE_WANTED, wanted, 0) === wanted) {
        Atomics.add(h, I_SPACE_SEQ, 1);
        Atomics.notify(h, I_SPACE_SEQ);
      }
    }
  }
}
