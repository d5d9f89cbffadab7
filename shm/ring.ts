// Ring: a single-producer/single-consumer byte ring between two workgroups,
// over a SharedArrayBuffer (from native-io's allocShared, or any other). It
// never assumes the peers are threads of one process: everything it shares
// lives in the buffer, and everything else is local to one side.
//
// Concurrency rules (also in docs/CONCURRENCY.md):
// - Exactly one producer and one consumer per ring at any time.
// - The producer alone writes `tail`, the record bytes in [tail, head+capacity),
//   and the producer counters. The consumer alone writes `head`, `spaceSeq`
//   and the consumer counters. Nobody writes the constants line after init
//   (except Ring.reset, with both sides stopped).
// - `spaceWanted` is set (> 0) by the producer and cleared (compareExchange to
//   0) by the consumer. Doorbell `sleeping` is set by the consumer and
//   cleared by either side; `bell` is bumped by producers (Atomics.add).
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
//   line 2 (producer) 128: tail, 136: recordsWritten, 144: bytesWritten,
//                     152: fullEvents, 160: spilledRecords, 168: wraps (f64 each)
//   line 3 (shared)   192: spaceWanted (free bytes the waiting producer needs)
//   data              256: capacity bytes of records
// A record is [length: int32][payload][pad to 4 bytes]. A length of -1 is a
// wrap marker: the rest of the data area up to its end is skipped, so every
// record is contiguous and is read in place as a range of `data`.
//
// Wake-ups: a consumer that finds all its rings empty sleeps on its Doorbell
// (Atomics.waitAsync); producers notify it only while it says it is asleep,
// so a busy consumer costs its producers one load per record and no
// notification. A producer whose ring is full spills (RingSender) and sleeps
// on the ring's spaceSeq until the consumer has freed the space it needs.
// Atomics.notify reaches only waiters of this process: across processes the
// Doorbell and the space wait are the two things that must change (futex).

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

// Atomics.waitAsync is ES2024; Node 20 has it, our lib setting (ES2022) does not declare it.
type WaitAsyncResult = { async: false; value: 'not-equal' | 'timed-out' } | { async: true; value: Promise<'ok' | 'timed-out'> };
const waitAsync = (Atomics as unknown as { waitAsync(a: Int32Array, i: number, v: number, t?: number): WaitAsyncResult }).waitAsync;
if (typeof waitAsync !== 'function') throw new Error('ring: Atomics.waitAsync is missing (Node 20 or later is required)');

/**
 * The wake-up word of one consuming workgroup, shared by all its producers.
 * Layout: bell (int32) at 0, sleeping (int32) at 64. Only the RingInbox of
 * that workgroup sleeps on it.
 */
export class Doorbell {
  static readonly BYTES = 128;
  private static readonly I_BELL = 0;
  private static readonly I_SLEEPING = 16;
  readonly words: Int32Array;
  /** Notifications this side sent (local count). */
  notifies = 0;

  /** A new SharedArrayBuffer for one doorbell. */
  static create(): SharedArrayBuffer {
    return new SharedArrayBuffer(Doorbell.BYTES);
  }

  constructor(sab: SharedArrayBuffer, byteOffset = 0) {
    if (!(sab instanceof SharedArrayBuffer)) throw new TypeError('doorbell: expected a SharedArrayBuffer');
    if (byteOffset % 64 !== 0 || byteOffset + Doorbell.BYTES > sab.byteLength)
      throw new RangeError(`doorbell: ${Doorbell.BYTES} bytes at offset ${byteOffset} (a multiple of 64) must fit in the buffer`);
    this.words = new Int32Array(sab, byteOffset, Doorbell.BYTES >> 2);
  }

  /**
   * Producer side, after publishing a record: wakes the consumer if it sleeps.
   * No allocation; one shared load while the consumer is awake.
   */
  ring(): void {
    const w = this.words;
    // Only the producer that clears `sleeping` notifies: one notification per sleep.
    if (Atomics.load(w, Doorbell.I_SLEEPING) !== 0 && Atomics.compareExchange(w, Doorbell.I_SLEEPING, 1, 0) === 1) {
      Atomics.add(w, Doorbell.I_BELL, 1);
      Atomics.notify(w, Doorbell.I_BELL);
      this.notifies++;
    }
  }

  /** Whether the consumer says it sleeps (stats, tests). */
  isSleeping(): boolean {
    return Atomics.load(this.words, Doorbell.I_SLEEPING) !== 0;
  }

  /** Consumer side: announce sleep; returns the bell value to wait on. Re-check every ring after this. */
  prepareSleep(): number {
    Atomics.store(this.words, Doorbell.I_SLEEPING, 1);
    return Atomics.load(this.words, Doorbell.I_BELL);
  }

  /** Consumer side: awake again (found work during the re-check, or woken). */
  awake(): void {
    Atomics.store(this.words, Doorbell.I_SLEEPING, 0);
  }

  /** Consumer side: calls onWake once the bell moves from bellValue (at once if it already has). */
  wait(bellValue: number, onWake: () => void): void {
    const r = waitAsync(this.words, Doorbell.I_BELL, bellValue);
    if (r.async) r.value.then(onWake, onWake);
    else queueMicrotask(onWake);
  }

  /** Wakes a sleeping consumer unconditionally (used by close). */
  wakeNow(): void {
    Atomics.store(this.words, Doorbell.I_SLEEPING, 0);
    Atomics.add(this.words, Doorbell.I_BELL, 1);
    Atomics.notify(this.words, Doorbell.I_BELL);
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

  constructor(sab: SharedArrayBuffer, byteOffset = 0, doorbell: Doorbell | null = null) {
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
        if (this.doorbell !== null) this.doorbell.ring();
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

/** What RingSender.send did with a record (modelled on uWS's send result). */
export const SendStatus = {
  /** Written to the ring. */
  RING: 0,
  /** Queued locally (ring full or spill not yet flushed); it will go out in order. */
  SPILLED: 1,
  /** Queued, and the spill is above maxSpillBytes: stop producing until onDrain. */
  BACKPRESSURE: 2,
} as const;
export type SendStatus = (typeof SendStatus)[keyof typeof SendStatus];

/** Encodes a payload at data[offset...] (at most maxBytes) and returns the bytes written. */
export type RecordEncoder<T> = (data: Uint8Array, offset: number, arg: T) => number;

export interface RingSenderOptions {
  /** Spill bytes above which send answers BACKPRESSURE (records are still kept). Default 64 MiB. */
  maxSpillBytes?: number;
  /** Called when the spill has been flushed into the ring. */
  onDrain?: () => void;
  /** Called after each retry that moved records from the spill into the ring (spillBytes went down), drained or not. */
  onFlush?: () => void;
  /**
   * How to retry a spill: 'notify' (default) sleeps until the consumer has
   * released the space needed; 'immediate' retries on setImmediate.
   */
  retry?: 'notify' | 'immediate';
  /** Keep the event loop alive while waiting to flush (a pending waitAsync does not). Default true. */
  keepAlive?: boolean;
}

/**
 * A producer that never loses a record: when the ring is full, records are
 * copied to a local queue, flushed in order before any new record as the
 * consumer frees space. Counts full events and spilled records (in the
 * ring's shared stats too).
 */
export class RingSender {
  readonly producer: RingProducer;
  /** Times the ring was found full with an empty spill. */
  fullEvents = 0;
  /** Records that went through the spill. */
  spilledRecords = 0;
  /** Records and bytes in the spill now. */
  spillRecords = 0;
  spillBytes = 0;
  /** The most bytes the spill has held at once. */
  peakSpillBytes = 0;
  /** Retries of the spill (wake-ups from the space wait, or setImmediate turns). */
  flushAttempts = 0;
  /** Since when the spill has been non-empty (ms, performance.now()), or -1. */
  spillSinceMs = -1;
  private readonly maxSpillBytes: number;
  private readonly onDrain: (() => void) | null;
  private readonly onFlush: (() => void) | null;
  private readonly retryImmediate: boolean;
  private readonly keepAlive: boolean;
  private spill: Uint8Array[] = [];
  private spillHead = 0;
  private waiting = false;
  private closed = false;
  private keepAliveTimer: NodeJS.Timeout | null = null;
  private readonly flushBound = (): void => this.onSpace();

  constructor(producer: RingProducer, options: RingSenderOptions = {}) {
    this.producer = producer;
    this.maxSpillBytes = options.maxSpillBytes ?? 64 * 1024 * 1024;
    this.onDrain = options.onDrain ?? null;
    this.onFlush = options.onFlush ?? null;
    this.retryImmediate = options.retry === 'immediate';
    this.keepAlive = options.keepAlive ?? true;
  }

  /** Sends bytes as one record (copied once: into the ring, or into the spill when full). */
  send(bytes: Uint8Array): SendStatus {
    const p = this.producer;
    if (this.spillRecords === 0) {
      const off = p.reserve(bytes.length);
      if (off >= 0) {
        p.data.set(bytes, off);
        p.commit();
        return SendStatus.RING;
      }
    } else if (bytes.length > p.maxPayloadBytes) {
      throw new RecordTooLargeError(bytes.length, p.maxPayloadBytes);
    } else if (this.flushNow()) {
      return this.send(bytes);
    }
    return this.toSpill(bytes.slice());
  }

  /**
   * Sends a record that encode writes directly into the ring (no copy), or
   * into a spill buffer of maxBytes when the ring is full. Pass a
   * module-level encoder and its argument: no closure per record.
   */
  sendEncoded<T>(maxBytes: number, encode: RecordEncoder<T>, arg: T): SendStatus {
    const p = this.producer;
    if (this.spillRecords === 0) {
      const off = p.reserve(maxBytes);
      if (off >= 0) {
        let n: number;
        try {
          n = encode(p.data, off, arg);
        } catch (err) {
          p.cancel();
          throw err;
        }
        p.commit(n);
        return SendStatus.RING;
      }
    } else if (maxBytes > p.maxPayloadBytes) {
      throw new RecordTooLargeError(maxBytes, p.maxPayloadBytes);
    } else if (this.flushNow()) {
      return this.sendEncoded(maxBytes, encode, arg);
    }
    const buf = new Uint8Array(maxBytes);
    const n = encode(buf, 0, arg);
    return this.toSpill(n === maxBytes ? buf : buf.subarray(0, n));
  }

  /** Tries to flush the spill now; true when it is empty (and then onDrain has been called if it was not). */
  flushNow(): boolean {
    if (this.spillRecords === 0) return true;
    if (!this.flush()) return false;
    this.drained();
    return true;
  }

  private flush(): boolean {
    const p = this.producer;
    const spill = this.spill;
    while (this.spillRecords > 0) {
      const rec = spill[this.spillHead];
      const off = p.reserve(rec.length);
      if (off < 0) return false;
      p.data.set(rec, off);
      p.commit();
      spill[this.spillHead] = EMPTY;
      this.spillHead++;
      this.spillRecords--;
      this.spillBytes -= rec.length;
    }
    this.spill = [];
    this.spillHead = 0;
    this.spillSinceMs = -1;
    return true;
  }

  /** Stops retrying; records still in the spill are not sent (see spillRecords). */
  close(): void {
    this.closed = true;
    this.setKeepAlive(false);
  }

  private toSpill(rec: Uint8Array): SendStatus {
    if (this.spillRecords === 0) {
      this.fullEvents++;
      this.producer.countFull();
      this.spillSinceMs = performance.now();
    }
    this.spill.push(rec);
    this.spillRecords++;
    this.spillBytes += rec.length;
    if (this.spillBytes > this.peakSpillBytes) this.peakSpillBytes = this.spillBytes;
    this.spilledRecords++;
    this.producer.countSpilled();
    if (!this.waiting) this.armRetry();
    else this.setKeepAlive(true);
    return this.spillBytes > this.maxSpillBytes ? SendStatus.BACKPRESSURE : SendStatus.SPILLED;
  }

  private armRetry(): void {
    if (this.closed) return;
    this.waiting = true;
    this.setKeepAlive(true);
    if (this.retryImmediate) setImmediate(this.flushBound);
    else this.producer.waitForSpace(this.producer.bytesNeeded(this.spill[this.spillHead].length), this.flushBound);
  }

  private onSpace(): void {
    this.waiting = false;
    this.flushAttempts++;
    if (this.closed || this.spillRecords === 0) return;
    const before = this.spillBytes;
    if (this.flush()) this.drained();
    else {
      if (this.spillBytes < before && this.onFlush !== null) this.onFlush();
      this.armRetry();
    }
  }

  private drained(): void {
    this.setKeepAlive(false);
    if (this.onDrain !== null) this.onDrain();
  }

  private setKeepAlive(on: boolean): void {
    if (!this.keepAlive) return;
    if (on && this.keepAliveTimer === null) this.keepAliveTimer = setInterval(noop, 1 << 30);
    else if (!on && this.keepAliveTimer !== null) {
      clearInterval(this.keepAliveTimer);
      this.keepAliveTimer = null;
    }
  }
}

const EMPTY = new Uint8Array(0);
function noop(): void {}

export interface RingInboxOptions {
  /** Records handled per turn before yielding to the event loop (socket I/O) with setImmediate. Default 1024. */
  maxRecordsPerTurn?: number;
  /** Keep the event loop alive while asleep (a pending waitAsync does not). Default false: a workgroup's uWS App does. */
  keepAlive?: boolean;
  /** A handler threw: the record is consumed, the inbox goes on. Default: rethrown asynchronously. */
  onError?: (err: unknown) => void;
}

/**
 * The consuming side of one workgroup: all its inbound rings, one doorbell.
 * Each turn drains the rings round-robin up to maxRecordsPerTurn records,
 * then yields (setImmediate) if work remains, or sleeps on the doorbell.
 */
export class RingInbox {
  readonly doorbell: Doorbell;
  /** Turns run, wake-ups from the doorbell, sleeps, records handled. */
  turns = 0;
  wakeups = 0;
  sleeps = 0;
  records = 0;
  handlerErrors = 0;
  private readonly maxRecordsPerTurn: number;
  private readonly keepAlive: boolean;
  private readonly onError: ((err: unknown) => void) | null;
  private consumers: RingConsumer[] = [];
  private handlers: RecordHandler[] = [];
  private next = 0;
  private state: 'stopped' | 'running' | 'scheduled' | 'sleeping' = 'stopped';
  private keepAliveTimer: NodeJS.Timeout | null = null;
  private readonly turnBound = (): void => this.turn();
  private readonly wakeBound = (): void => this.onWake();

  constructor(doorbell: Doorbell, options: RingInboxOptions = {}) {
    this.doorbell = doorbell;
    this.maxRecordsPerTurn = options.maxRecordsPerTurn ?? 1024;
    this.keepAlive = options.keepAlive ?? false;
    this.onError = options.onError ?? null;
  }

  /** Adds an inbound ring with its handler. */
  add(sab: SharedArrayBuffer, handler: RecordHandler, byteOffset = 0): RingConsumer {
    const c = new RingConsumer(sab, byteOffset);
    this.consumers.push(c);
    this.handlers.push(handler);
    if (this.state === 'sleeping') this.doorbell.wakeNow();
    return c;
  }

  /** Removes an inbound ring (its unread records stay in it). */
  remove(consumer: RingConsumer): void {
    const i = this.consumers.indexOf(consumer);
    if (i < 0) return;
    this.consumers.splice(i, 1);
    this.handlers.splice(i, 1);
    this.next = 0;
  }

  start(): void {
    if (this.state !== 'stopped') return;
    this.state = 'scheduled';
    if (this.keepAlive) this.keepAliveTimer = setInterval(noop, 1 << 30);
    setImmediate(this.turnBound);
  }

  /** Stops after the current turn; unread records stay in the rings. */
  close(): void {
    const wasSleeping = this.state === 'sleeping';
    this.state = 'stopped';
    if (this.keepAliveTimer !== null) clearInterval(this.keepAliveTimer);
    this.keepAliveTimer = null;
    if (wasSleeping) this.doorbell.wakeNow();
  }

  /**
   * Drains now, outside a turn (a caller that waits with its loop stopped):
   * up to maxRecordsPerTurn records; 0 when stopped or inside a turn. The
   * turn machinery is untouched: a later turn finds what is left.
   */
  pollNow(): number {
    if (this.state === 'stopped' || this.state === 'running') return 0;
    return this.drain();
  }

  /** Drains up to maxRecordsPerTurn records, round-robin over the rings. */
  private drain(): number {
    const consumers = this.consumers;
    const n = consumers.length;
    if (n === 0) return 0;
    let budget = this.maxRecordsPerTurn;
    // A fair share per ring per pass, so one busy peer cannot starve the others.
    const quantum = Math.max(1, Math.ceil(budget / n));
    let idlePasses = 0;
    let i = this.next;
    while (budget > 0 && idlePasses < n) {
      if (i >= n) i = 0;
      let got: number;
      try {
        got = consumers[i].read(this.handlers[i], budget < quantum ? budget : quantum);
      } catch (err) {
        got = consumers[i].lastReadRecords;
        this.handlerErrors++;
        this.reportError(err);
      }
      budget -= got;
      this.records += got;
      idlePasses = got === 0 ? idlePasses + 1 : 0;
      i++;
    }
    this.next = i;
    return this.maxRecordsPerTurn - budget;
  }

  private turn(): void {
    if (this.state === 'stopped') return;
    this.state = 'running';
    this.turns++;
    const handled = this.drain();
    if (this.state !== 'running') return;
    if (handled >= this.maxRecordsPerTurn) {
      this.state = 'scheduled';
      setImmediate(this.turnBound);
      return;
    }
    // Announce sleep, then look again: a record committed before the announcement is seen here,
    // one committed after it rings the bell (producers read `sleeping` after publishing tail).
    const bell = this.doorbell.prepareSleep();
    for (let i = 0; i < this.consumers.length; i++) {
      if (!this.consumers[i].isEmpty()) {
        this.doorbell.awake();
        this.state = 'scheduled';
        setImmediate(this.turnBound);
        return;
      }
    }
    this.state = 'sleeping';
    this.sleeps++;
    this.doorbell.wait(bell, this.wakeBound);
  }

  private onWake(): void {
    if (this.state !== 'sleeping') return;
    this.wakeups++;
    this.doorbell.awake();
    this.turn();
  }

  private reportError(err: unknown): void {
    if (this.onError !== null) this.onError(err);
    else
      queueMicrotask(() => {
        throw err;
      });
  }
}
