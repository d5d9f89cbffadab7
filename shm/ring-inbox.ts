// RingInbox: the consuming side of one workgroup, draining all its inbound
// rings (shm/ring.ts) round-robin and sleeping on its Doorbell
// (shm/doorbell.ts) when they are all empty.

import type { Doorbell } from './doorbell';
import type { RecordHandler } from './ring';
import { RingConsumer } from './ring';

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
    // Records announced before it are read now; later ones ring the bell at their producer's flush.
    for (let i = 0; i < this.consumers.length; i++) {
      if (this.consumers[i].hasAnnounced()) {
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
