// Session slab: every session of a workgroup is a slot in a struct of typed
// arrays (one array per field). The uWS user data of a socket holds only
// its slot number; there is no per-session object, closure or Map entry of ours.
//
// The slab grows by whole chunks of CHUNK_SLOTS slots: growing never copies
// the sessions already there. A freed slot goes on a free list and its
// generation is bumped, so anything that kept (slot, generation) for later
// (an ack from another workgroup, a replay) can tell a closed session from
// its successor in the same slot.
//
// Concurrency: the workgroup's thread is the only reader and writer.

export const CHUNK_BITS = 12;
export const CHUNK_SLOTS = 1 << CHUNK_BITS;
const CHUNK_MASK = CHUNK_SLOTS - 1;

/** Session states. */
export const SessionState = {
  FREE: 0,
  OPEN: 1,
  /** Closing by our decision (slow consumer, policy); still in uWS until its close handler. */
  CLOSING: 2,
} as const;

/** Flag bits of a session (one comment per bit). */
export const SessionFlag = {
  /** The session asked for msgpack (binary frames); unset means JSON. */
  MSGPACK: 1 << 0,
  /** Counted in the per-IP connection table (so close must uncount it). */
  IP_COUNTED: 1 << 1,
  /** --auth jwt: opened without a token; only auth and ping until one is accepted (tokenExpSec is then the deadline). */
  AUTH_PENDING: 1 << 2,
  /** Pinged once by the ping-phase walk (workgroups/ping-phase.ts): its uWS idle timer has its own phase. */
  PING_PHASED: 1 << 3,
} as const;

/** Fields: bytes per slot, summed for memory accounting. */
const FIELD_BYTES =
  4 /* generation */ +
  1 /* state */ +
  1 /* flags */ +
  4 /* ipHash */ +
  4 /* connectedAtSec */ +
  4 /* lastActivitySec */ +
  2 /* subscriptions */ +
  2 /* errors */ +
  4 * 4 /* messagesIn, messagesOut, bytesIn, bytesOut */ +
  4 * 3 /* windowSec, windowCommands, windowBytes */ +
  2 /* windowRefused */ +
  1 /* strikes */ +
  1 /* internalErrors */ +
  4 /* grant */ +
  4; /* tokenExpSec */
export const SLAB_BYTES_PER_SESSION = FIELD_BYTES;

/** What spend() says of a command. */
export const BUDGET_OK = 0;
export const BUDGET_REFUSE = 1;
export const BUDGET_CLOSE = 2;
/** Over budget past RATE_LIMIT_REPLIES refusals this second: not even parsed (a flood must cost less than its replies would); the close follows. */
export const BUDGET_DROP = 3;
/** Refusals answered with RATE_LIMITED per session per second; the rest of the window's excess is dropped unparsed, and counted. */
export const RATE_LIMIT_REPLIES = 100;
/** Seconds in a row over budget after which a session is closed rather than refused again. */
export const RATE_LIMIT_STRIKES = 5;
/** Refusals in one second a session may collect before it is closed, when its budget is smaller than this. */
const MIN_REFUSALS_BEFORE_CLOSE = 100;

export type ChunkAllocator = (bytes: number) => ArrayBufferLike;
const defaultAllocator: ChunkAllocator = (bytes) => new ArrayBuffer(bytes);

interface Chunk {
  generation: Uint32Array;
  state: Uint8Array;
  flags: Uint8Array;
  ipHash: Uint32Array;
  connectedAtSec: Uint32Array;
  lastActivitySec: Uint32Array;
  subscriptions: Uint16Array;
  errors: Uint16Array;
  /** The budget window (a second of the workgroup's clock) the three counters below are for. */
  windowSec: Uint32Array;
  /** Commands and command bytes received in that window, and commands refused with RATE_LIMITED. */
  windowCommands: Uint32Array;
  windowBytes: Uint32Array;
  windowRefused: Uint16Array;
  /** Windows in a row in which the session was refused for its budget. */
  strikes: Uint8Array;
  /** Commands of this session that failed inside the server (INTERNAL). */
  internalErrors: Uint8Array;
  /** --auth jwt: the session's grant (workgroups/auth.ts GrantTable id; 0: none). */
  grant: Uint32Array;
  /** --auth jwt: when the session's token expires (unix seconds; 0: never), or, while AUTH_PENDING, its deadline for an auth command. */
  tokenExpSec: Uint32Array;
  /** Per-session traffic counters, modulo 2^32 (4 bytes a field, not 8: they are for inspecting one session, rates come from the stats block). */
  messagesIn: Uint32Array;
  messagesOut: Uint32Array;
  bytesIn: Uint32Array;
  bytesOut: Uint32Array;
}

function makeChunk(buffer: ArrayBufferLike): Chunk {
  // Widest fields first, so every array is aligned.
  let o = 0;
  const u32 = () => {
    const a = new Uint32Array(buffer, o, CHUNK_SLOTS);
    o += CHUNK_SLOTS * 4;
    return a;
  };
  const u16 = () => {
    const a = new Uint16Array(buffer, o, CHUNK_SLOTS);
    o += CHUNK_SLOTS * 2;
    return a;
  };
  const u8 = () => {
    const a = new Uint8Array(buffer, o, CHUNK_SLOTS);
    o += CHUNK_SLOTS;
    return a;
  };
  return {
    messagesIn: u32(),
    messagesOut: u32(),
    bytesIn: u32(),
    bytesOut: u32(),
    generation: u32(),
    ipHash: u32(),
    connectedAtSec: u32(),
    lastActivitySec: u32(),
    windowSec: u32(),
    windowCommands: u32(),
    windowBytes: u32(),
    grant: u32(),
    tokenExpSec: u32(),
    subscriptions: u16(),
    errors: u16(),
    windowRefused: u16(),
    state: u8(),
    flags: u8(),
    strikes: u8(),
    internalErrors: u8(),
  };
}

export class SessionSlab {
  private readonly chunks: Chunk[] = [];
  /** Stack of free slots; top at freeCount - 1. */
  private free = new Int32Array(CHUNK_SLOTS);
  private freeCount = 0;
  private used = 0;

  constructor(private readonly allocate: ChunkAllocator = defaultAllocator) {}

  get capacity(): number {
    return this.chunks.length * CHUNK_SLOTS;
  }
  get size(): number {
    return this.used;
  }
  get bytes(): number {
    return this.chunks.length * CHUNK_SLOTS * FIELD_BYTES;
  }

  /** Takes a free slot (growing by one chunk when none is free) and opens it. */
  open(flags: number, ipHash: number, nowSec: number): number {
    if (this.freeCount === 0) this.grow();
    const slot = this.free[--this.freeCount];
    const c = this.chunks[slot >>> CHUNK_BITS];
    const i = slot & CHUNK_MASK;
    c.state[i] = SessionState.OPEN;
    c.flags[i] = flags;
    c.ipHash[i] = ipHash;
    c.connectedAtSec[i] = nowSec;
    c.lastActivitySec[i] = nowSec;
    c.subscriptions[i] = 0;
    c.errors[i] = 0;
    c.messagesIn[i] = 0;
    c.messagesOut[i] = 0;
    c.bytesIn[i] = 0;
    c.bytesOut[i] = 0;
    c.windowSec[i] = nowSec;
    c.windowCommands[i] = 0;
    c.windowBytes[i] = 0;
    c.windowRefused[i] = 0;
    c.strikes[i] = 0;
    c.internalErrors[i] = 0;
    c.grant[i] = 0;
    c.tokenExpSec[i] = 0;
    this.used++;
    return slot;
  }

  /** Frees a slot: its generation moves on, so stale (slot, generation) pairs no longer match. */
  close(slot: number): void {
    const c = this.chunks[slot >>> CHUNK_BITS];
    const i = slot & CHUNK_MASK;
    if (c.state[i] === SessionState.FREE) return;
    c.state[i] = SessionState.FREE;
    c.generation[i] = (c.generation[i] + 1) >>> 0;
    this.free[this.freeCount++] = slot;
    this.used--;
  }

  private grow(): void {
    const base = this.capacity;
    this.chunks.push(makeChunk(this.allocate(CHUNK_SLOTS * FIELD_BYTES)));
    if (this.free.length < base + CHUNK_SLOTS) {
      // Rare (once per chunk); the free list holds slot numbers only.
      const bigger = new Int32Array(base + CHUNK_SLOTS);
      bigger.set(this.free.subarray(0, this.freeCount));
      this.free = bigger;
    }
    // Push in reverse so the lowest slot is taken first.
    for (let s = base + CHUNK_SLOTS - 1; s >= base; s--) this.free[this.freeCount++] = s;
  }

  // Field access. Each is one shift and one mask; no allocation.
  isOpen(slot: number, generation: number): boolean {
    const c = this.chunks[slot >>> CHUNK_BITS];
    if (c === undefined) return false;
    const i = slot & CHUNK_MASK;
    return c.state[i] === SessionState.OPEN && c.generation[i] === generation;
  }
  state(slot: number): number {
    return this.chunks[slot >>> CHUNK_BITS].state[slot & CHUNK_MASK];
  }
  setState(slot: number, s: number): void {
    this.chunks[slot >>> CHUNK_BITS].state[slot & CHUNK_MASK] = s;
  }
  generation(slot: number): number {
    return this.chunks[slot >>> CHUNK_BITS].generation[slot & CHUNK_MASK];
  }
  flags(slot: number): number {
    return this.chunks[slot >>> CHUNK_BITS].flags[slot & CHUNK_MASK];
  }
  setFlag(slot: number, bit: number): void {
    this.chunks[slot >>> CHUNK_BITS].flags[slot & CHUNK_MASK] |= bit;
  }
  ipHash(slot: number): number {
    return this.chunks[slot >>> CHUNK_BITS].ipHash[slot & CHUNK_MASK];
  }
  connectedAtSec(slot: number): number {
    return this.chunks[slot >>> CHUNK_BITS].connectedAtSec[slot & CHUNK_MASK];
  }
  subscriptions(slot: number): number {
    return this.chunks[slot >>> CHUNK_BITS].subscriptions[slot & CHUNK_MASK];
  }
  addSubscriptions(slot: number, delta: number): void {
    this.chunks[slot >>> CHUNK_BITS].subscriptions[slot & CHUNK_MASK] += delta;
  }
  /** Counts one bad command; returns the session's total. */
  addError(slot: number): number {
    return ++this.chunks[slot >>> CHUNK_BITS].errors[slot & CHUNK_MASK];
  }
  /** Records one command received. */
  recordIn(slot: number, bytes: number, nowSec: number): void {
    const c = this.chunks[slot >>> CHUNK_BITS];
    const i = slot & CHUNK_MASK;
    c.messagesIn[i]++;
    c.bytesIn[i] += bytes;
    c.lastActivitySec[i] = nowSec;
  }
  /**
   * Counts one command of `bytes` against the session's budget for this
   * second. Returns BUDGET_OK, BUDGET_REFUSE (answer RATE_LIMITED),
   * BUDGET_DROP (refused without an answer: the session had its
   * RATE_LIMIT_REPLIES this second) or BUDGET_CLOSE (the session keeps going
   * over: close it). A limit of 0 is no limit. No allocation: called once per command.
   */
  spend(slot: number, bytes: number, nowSec: number, maxCommands: number, maxBytes: number): number {
    const c = this.chunks[slot >>> CHUNK_BITS];
    const i = slot & CHUNK_MASK;
    if (c.windowSec[i] !== nowSec) {
      // A new window: a session refused in the last one has one more strike, one that was not starts over.
      const gap = nowSec - c.windowSec[i];
      c.strikes[i] = c.windowRefused[i] > 0 && gap === 1 ? Math.min(c.strikes[i] + 1, 255) : 0;
      c.windowSec[i] = nowSec;
      c.windowCommands[i] = 0;
      c.windowBytes[i] = 0;
      c.windowRefused[i] = 0;
    }
    const commands = ++c.windowCommands[i];
    const used = (c.windowBytes[i] += bytes);
    if ((maxCommands === 0 || commands <= maxCommands) && (maxBytes === 0 || used <= maxBytes)) return BUDGET_OK;
    const refused = ++c.windowRefused[i];
    // Sending at twice its budget, or over it RATE_LIMIT_STRIKES seconds in a row, is not a client backing off.
    if (c.strikes[i] >= RATE_LIMIT_STRIKES || refused > Math.max(maxCommands, MIN_REFUSALS_BEFORE_CLOSE) || refused === 0xffff) return BUDGET_CLOSE;
    return refused <= RATE_LIMIT_REPLIES ? BUDGET_REFUSE : BUDGET_DROP;
  }
  grant(slot: number): number {
    return this.chunks[slot >>> CHUNK_BITS].grant[slot & CHUNK_MASK];
  }
  tokenExpSec(slot: number): number {
    return this.chunks[slot >>> CHUNK_BITS].tokenExpSec[slot & CHUNK_MASK];
  }
  /** Sets the session's grant and its token's expiry (or auth deadline); clears or sets AUTH_PENDING. */
  setAuth(slot: number, grant: number, expSec: number, pending: boolean): void {
    const c = this.chunks[slot >>> CHUNK_BITS];
    const i = slot & CHUNK_MASK;
    c.grant[i] = grant;
    c.tokenExpSec[i] = expSec;
    c.flags[i] = pending ? c.flags[i] | SessionFlag.AUTH_PENDING : c.flags[i] & ~SessionFlag.AUTH_PENDING;
  }
  /** Counts one command that failed inside the server; returns the session's total. */
  addInternalError(slot: number): number {
    const c = this.chunks[slot >>> CHUNK_BITS];
    const i = slot & CHUNK_MASK;
    if (c.internalErrors[i] < 255) c.internalErrors[i]++;
    return c.internalErrors[i];
  }
  /** Records one frame sent directly to this session (replies, replays; fan-out is counted per topic). */
  recordOut(slot: number, bytes: number): void {
    const c = this.chunks[slot >>> CHUNK_BITS];
    const i = slot & CHUNK_MASK;
    c.messagesOut[i]++;
    c.bytesOut[i] += bytes;
  }
}
