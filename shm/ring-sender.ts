// RingSender: a ring producer that never loses a record. When the ring
// (shm/ring.ts) is full, records go to a local spill queue (this workgroup's
// memory only), flushed in order before any new record once the consumer
// frees space; the sender waits for that space on the ring's spaceSeq.

import type { RingProducer } from './ring';
import { RecordTooLargeError } from './ring';

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
