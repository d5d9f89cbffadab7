// Admission at the upgrade, before any session state exists: how many new
// sessions one client address may open per second (AddressRate,
// --max-sessions-per-second-per-ip), and how many the node takes per second
// (Admission, --admission-rate, split evenly among workgroups), so that a
// crowd of clients coming back at once (a restart, a network blip) is let
// in at a pace the node keeps up with instead of all in one second.
//
// The node rate gives every refused upgrade a place: the earliest second
// ahead with room, reserved for it, and a signed ticket for that second.
// The client comes back then (retryAfterMs, with jitter inside the second)
// with the ticket and is admitted even though the rate of that second is
// spent by then: its place was counted when it was given. So a crowd of N
// refused at once is spread over N / rate seconds, and a client that comes
// back at its time is not refused again.
//
// Places no one claims (a browser cannot read a 503's body; a client gave
// up) are not lost: a second's unclaimed places are given to the upgrades
// without a ticket of the next second. Late holders (up to
// TICKET_GRACE_SECONDS) are still honored; they then come on top of the
// rate, which bounds the excess to the late ones.
//
// The core is pure: the clock (nowMs), the ticket key and the jitter's
// random source are passed in, so that it is tested without sockets.
// Concurrency: each workgroup has its own instances (one thread); nothing
// is shared. A ticket is signed with its workgroup's key, made at start:
// a ticket presented to another workgroup (IP hashing sends an address to
// one workgroup, but --benchmark-mode does not) or to a restarted one is
// not honored; that client is then treated as new (admitted if the second
// has room, else given a new place).
import { createHmac, timingSafeEqual } from 'node:crypto';
import { SecondTable } from './second-table';

/** How far ahead places are given, in seconds; past it a refused client gets a hint without a place (and without a ticket). */
export const ADMISSION_HORIZON_SECONDS = 120;
/** A ticket is honored from its second until this many seconds after it. */
export const TICKET_GRACE_SECONDS = 5;
/** ...and this many ms before its second (timers may fire a little early, clocks drift). */
export const TICKET_EARLY_MS = 500;
/** Per-second buckets kept: a power of two above the horizon, so that the seconds from now to the horizon never share one. */
const BUCKETS = 128;
/** Bytes of a ticket: second (4), nonce (4), MAC (16); 32 characters in base64url. */
const TICKET_BYTES = 24;
const MAC_BYTES = 16;
const TICKET_RE = /^[A-Za-z0-9_-]{32}$/;

/** What admit() decided. */
export const Admit = {
  /** The second had room. */
  ADMITTED: 0,
  /** A valid ticket whose time has come: admitted on its reserved place. */
  TICKET_HONORED: 1,
  /** Refused: answer 503 with retryAfterMs and ticket (see Admission). */
  REFUSED: 2,
} as const;
export type Admit = (typeof Admit)[keyof typeof Admit];

export class Admission {
  /** After REFUSED: when to come back, in ms from now (inside the second of the place given). */
  retryAfterMs = 0;
  /** After REFUSED: the ticket for that place, or null when the horizon was full (no place given). */
  ticket: string | null = null;
  /** After admit(): a ticket came with the upgrade and was not honored (forged, used, expired, another workgroup's or an earlier process's). */
  ticketRefused = false;

  private readonly bucketSecond = new Float64Array(BUCKETS);
  /** Places given ahead for the bucket's second (tickets). */
  private readonly reserved = new Uint32Array(BUCKETS);
  /** Tickets of the bucket's second honored so far (late ones included). */
  private readonly claimed = new Uint32Array(BUCKETS);
  /** Upgrades without a ticket admitted in the bucket's second. */
  private readonly direct = new Uint32Array(BUCKETS);
  /** The earliest second ahead that may still have room for a place (places are given in order of time). */
  private cursor = 0;
  /** Tickets are numbered; a number is used once (the used ones of the grace window are kept in `used`). */
  private nextNonce = 1;
  private readonly used: SecondTable;
  private readonly payload = Buffer.alloc(8);

  /**
   * ratePerSecond: this workgroup's share of --admission-rate (> 0, may be
   * fractional: second t then has floor((t+1)r) - floor(tr) places).
   * key: the ticket MAC key (random, per workgroup and start).
   */
  constructor(
    private readonly ratePerSecond: number,
    private readonly key: Buffer,
    private readonly random: () => number = Math.random,
  ) {
    if (!(ratePerSecond > 0)) throw new RangeError('the admission rate must be above 0');
    // The tickets honored in a grace window are at most the places of its seconds.
    this.used = new SecondTable(Math.min(1 << 18, 4 * (TICKET_GRACE_SECONDS + 1) * (Math.ceil(ratePerSecond) + 1)));
  }

  /** Places of second t (the rate, spread over seconds when it is not whole). */
  capacity(t: number): number {
    const r = this.ratePerSecond;
    return Math.floor((t + 1) * r) - Math.floor(t * r);
  }

  /**
   * Decides one upgrade at nowMs, with the `admit` query parameter ('' when
   * absent). On REFUSED, retryAfterMs and ticket say what to answer. Allocates
   * only for a ticket (its MAC).
   */
  admit(nowMs: number, ticket: string): Admit {
    this.ticketRefused = false;
    this.ticket = null;
    this.retryAfterMs = 0;
    const s = Math.floor(nowMs / 1000);
    if (ticket !== '') {
      const t = this.redeem(ticket, nowMs, s);
      if (t === HONORED) return Admit.TICKET_HONORED;
      if (t > 0) {
        // Early: its place is still ahead; the same ticket, come back then.
        this.ticket = ticket;
        this.retryAfterMs = this.hintMs(t, nowMs);
        return Admit.REFUSED;
      }
      this.ticketRefused = true;
    }
    if (this.room(s) > 0) {
      this.direct[this.bucket(s)]++;
      return Admit.ADMITTED;
    }
    // A place: the earliest second ahead with room (seconds before the cursor are full).
    const last = s + ADMISSION_HORIZON_SECONDS;
    let t = Math.max(this.cursor, s + 1);
    while (t <= last && this.reservedAt(t) >= this.capacity(t)) t++;
    this.cursor = t;
    if (t > last) {
      // Every second of the horizon is taken: come back after it, spread over the next horizon.
      this.retryAfterMs = (last + 1) * 1000 - nowMs + Math.floor(this.random() * ADMISSION_HORIZON_SECONDS * 1000);
      return Admit.REFUSED;
    }
    this.reserved[this.bucket(t)]++;
    const nonce = this.nextNonce;
    this.nextNonce = (nonce + 1) >>> 0 || 1;
    this.ticket = this.sign(t, nonce);
    this.retryAfterMs = this.hintMs(t, nowMs);
    return Admit.REFUSED;
  }

  /** How far ahead places are given now, in seconds (0: no one is waiting). */
  backlogSeconds(nowMs: number): number {
    return Math.max(0, this.cursor - Math.floor(nowMs / 1000));
  }

  /** Upgrades without a ticket that second s may still admit: its places not given ahead, plus the places of s - 1 no one claimed. */
  private room(s: number): number {
    const b = this.bucket(s);
    const p = this.at(s - 1);
    const unclaimed = p < 0 ? 0 : Math.max(0, this.reserved[p] - this.claimed[p]);
    return this.capacity(s) - this.reserved[b] - this.direct[b] + unclaimed;
  }

  /** ms from nowMs to a random moment inside second t (never before nowMs). */
  private hintMs(t: number, nowMs: number): number {
    return Math.max(1, t * 1000 + Math.floor(this.random() * 1000) - nowMs);
  }

  /** The bucket of second t, emptied first if it held an older second. */
  private bucket(t: number): number {
    const b = t % BUCKETS;
    if (this.bucketSecond[b] !== t) {
      this.bucketSecond[b] = t;
      this.reserved[b] = 0;
      this.claimed[b] = 0;
      this.direct[b] = 0;
    }
    return b;
  }

  /** The bucket of second t if it holds t, else -1 (read only). */
  private at(t: number): number {
    const b = t % BUCKETS;
    return this.bucketSecond[b] === t ? b : -1;
  }

  private reservedAt(t: number): number {
    const b = this.at(t);
    return b < 0 ? 0 : this.reserved[b];
  }

  private sign(second: number, nonce: number): string {
    const out = Buffer.allocUnsafe(TICKET_BYTES);
    out.writeUInt32BE(second >>> 0, 0);
    out.writeUInt32BE(nonce, 4);
    createHmac('sha256', this.key).update(out.subarray(0, 8)).digest().copy(out, 8, 0, MAC_BYTES);
    return out.toString('base64url');
  }

  /**
   * HONORED (and marked used), the second of a valid ticket whose time has
   * not come yet (> 0), or 0: not honored (malformed, forged, expired, used).
   */
  private redeem(ticket: string, nowMs: number, s: number): number {
    if (!TICKET_RE.test(ticket)) return 0;
    const raw = Buffer.from(ticket, 'base64url');
    if (raw.length !== TICKET_BYTES) return 0;
    raw.copy(this.payload, 0, 0, 8);
    const mac = createHmac('sha256', this.key).update(this.payload).digest().subarray(0, MAC_BYTES);
    if (!timingSafeEqual(mac, raw.subarray(8))) return 0;
    const t = raw.readUInt32BE(0);
    const nonce = raw.readUInt32BE(4);
    if (nowMs < t * 1000 - TICKET_EARLY_MS) return t;
    if (s - t > TICKET_GRACE_SECONDS) return 0;
    // Single use: the first presentation counts 1; a reuse more; 0 when the table has no room (not honored).
    if (this.used.add(nonce, t, s - TICKET_GRACE_SECONDS) !== 1) return 0;
    const b = this.at(t);
    if (b >= 0) this.claimed[b]++;
    return HONORED;
  }
}

const HONORED = -1;

/** What AddressRate.take() decided. */
export const AddressVerdict = {
  OK: 0,
  /** Over --max-sessions-per-second-per-ip this second: 429. */
  OVER: 1,
  /** The table has no room around this address (too many addresses this second): 503. */
  FULL: 2,
} as const;
export type AddressVerdict = (typeof AddressVerdict)[keyof typeof AddressVerdict];

/** Slots of an address table: 12 bytes each (384 KiB); at most this many distinct addresses a second per workgroup, fewer around a crowded home. */
export const ADDRESS_RATE_SLOTS = 32768;

/**
 * New sessions per second per client address, counted in this workgroup
 * (IP hashing keeps an address in one workgroup; with --benchmark-mode an
 * address is spread and the limit holds per workgroup). Every upgrade that
 * reaches it counts, refused or not: a client hammering the port stays over
 * until it slows down.
 */
export class AddressRate {
  private readonly table: SecondTable;

  constructor(
    private readonly limitPerSecond: number,
    slots = ADDRESS_RATE_SLOTS,
  ) {
    this.table = new SecondTable(slots);
  }

  /** Counts one upgrade from the address (its hash) at nowMs. No allocation. */
  take(addressHash: number, nowMs: number): AddressVerdict {
    const s = Math.floor(nowMs / 1000);
    const n = this.table.add(addressHash, s, s);
    if (n === 0) return AddressVerdict.FULL;
    return n > this.limitPerSecond ? AddressVerdict.OVER : AddressVerdict.OK;
  }
}
