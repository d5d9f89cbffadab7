// Doorbell: the wake-up word of one consuming workgroup, shared by all its
// producers, over a SharedArrayBuffer; and the Atomics.waitAsync shim that
// it and the ring's space wait (RingProducer.waitForSpace, shm/ring.ts) use.
//
// Concurrency rules (also in docs/CONCURRENCY.md):
// - Doorbell `sleeping` is set by the consumer and cleared by either side;
//   `bell` is bumped by producers (Atomics.add).
//
// Wake-ups: a consumer that finds all its rings empty sleeps on its Doorbell
// (Atomics.waitAsync); producers notify it only while it says it is asleep,
// so a busy consumer costs its producers one load per record and no
// notification. Atomics.notify reaches only waiters of this process: across
// processes the Doorbell and the ring's space wait are the two things that
// must change (futex).

// Atomics.waitAsync is ES2024; Node 20 has it, our lib setting (ES2022) does not declare it.
type WaitAsyncResult = { async: false; value: 'not-equal' | 'timed-out' } | { async: true; value: Promise<'ok' | 'timed-out'> };
export const waitAsync = (Atomics as unknown as { waitAsync(a: Int32Array, i: number, v: number, t?: number): WaitAsyncResult }).waitAsync;
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
