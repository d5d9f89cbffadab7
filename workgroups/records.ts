// Records that workgroups send each other over their rings (shm/ring.ts).
// Written once into the ring and read in place; no structured clone, no
// JSON. Every record has the same 40-byte header, then the topic (ASCII,
// validated), then the message data (the publisher's encoding: UTF-8 JSON
// text or msgpack bytes) to the end of the record.
//
//   +0  u8   type (RecordType)
//   +1  u8   flags (RecordFlag)
//   +2  u16  topic length
//   +4  u32  token: ack token (PUBLISH, ACK) or subscription token (SUB, REPLAY, SUB_DONE)
//   +8  u32  epoch (DELIVER, ACK, REPLAY, SUB_DONE; SUB: the epoch to resume from)
//   +12 u32  aux: SUB_DONE: messages replayed; HELLO: restarts of the sender; PUBLISH: idempotency key length (the key follows the topic)
//   +16 f64  seq (DELIVER, ACK, REPLAY, SUB_DONE; SUB: the seq to resume after)
//   +24 f64  publish timestamp, micros (PUBLISH, DELIVER, REPLAY)
//   +32 f64  receive timestamp at the first workgroup, micros (PUBLISH, DELIVER): latency is measured from it
//   +40      topic, then data
// All little-endian. The ring's 4-byte length word gives the record's size.

export const RECORD_HEADER = 40;
/** Bytes before each message in a REPLAY_BATCH record's data. */
export const REPLAY_ENTRY_HEADER = 21;

export const RecordType = {
  /** origin → owner: sequence this message (and ack it if token ≠ 0). */
  PUBLISH: 1,
  /** owner → a workgroup with subscribers: deliver this sequenced message. */
  DELIVER: 2,
  /** owner → origin: the publish with this token got (epoch, seq), or was refused (flags: AckStatus). */
  ACK: 3,
  /** subscriber's workgroup → owner: subscribe (mark interest), maybe resume. */
  SUB: 4,
  /** owner → subscriber's workgroup: one message of a resume, or the snapshot, for one pending subscription. */
  REPLAY: 5,
  /** owner → subscriber's workgroup: the subscription is in effect from (epoch, seq) on. */
  SUB_DONE: 6,
  /** subscriber's workgroup → owner: no more subscribers of the topic here. */
  UNINTEREST: 7,
  /** subscriber's workgroup → owner: still subscribers here (re-announced to a restarted owner). */
  INTEREST: 8,
  /** a restarted workgroup → every other: I lost my state; re-announce your interest in my topics. */
  HELLO: 9,
  /**
   * owner → subscriber's workgroup: `aux` consecutive replayed messages of one
   * pending subscription (token, epoch, topic), so that the receiver writes
   * them to the socket under one cork. Data: `aux` entries of
   * REPLAY_ENTRY_HEADER bytes (f64 seq, f64 publish ts micros, u32 length,
   * u8 flags: RecordFlag.MSGPACK) followed by the message bytes.
   */
  REPLAY_BATCH: 10,
  /** subscriber's workgroup → every owner: a session subscribes to a wildcard pattern, or lets go (flags: PatternFlag; epoch, seq: the horizon). */
  PATTERN: 20,
  /** owner → subscriber's workgroup: the pattern is in effect from here (flags: PatternStatus; epoch, seq: journal epoch and position; data: topics to resume). */
  PATTERN_DONE: 21,
} as const;

/** Flag bits (one byte; meaning per record type). */
export const RecordFlag = {
  /** PUBLISH, DELIVER, REPLAY: the data is msgpack (else UTF-8 JSON text). */
  MSGPACK: 1 << 0,
  /** PUBLISH: retain (becomes the topic's snapshot). REPLAY: this is the snapshot, not a replayed message. */
  RETAIN: 1 << 1,
  /** SUB: the subscriber resumes from (epoch, seq). */
  RESUME: 1 << 2,
  /** SUB: quality of service standard (no replay). */
  STANDARD: 1 << 3,
} as const;

/** SUB_DONE status (in the flags byte). */
export const SubStatus = {
  /** A new subscription (no resume asked, or qos standard). */
  FRESH: 0,
  RECOVERED: 1,
  EPOCH_MISMATCH: 2,
  CACHE_MISS: 3,
  UNKNOWN_POSITION: 4,
  /** The owner holds its share of --max-topics and the topic is not one of them: nothing was subscribed. */
  TOO_MANY_TOPICS: 5,
  /** The engine's store (Redis) is unreachable: nothing was subscribed. */
  UNAVAILABLE: 6,
} as const;

/** ACK status (in the flags byte). */
export const AckStatus = {
  /** Sequenced: epoch and seq are the message's. */
  OK: 0,
  /** Refused: the topic would have been one more than the owner's share of --max-topics. */
  TOO_MANY_TOPICS: 1,
  /** Refused: the engine's store (Redis) is unreachable; nothing was sequenced. */
  UNAVAILABLE: 2,
  /** Failed: the store's connection broke with the publish in flight; it may or may not have been sequenced. */
  UNCERTAIN: 3,
  /** Not sequenced again: the publish's idempotency key was seen within the window; epoch and seq are the first publish's. */
  DUPLICATE: 4,
} as const;

/** Reason strings of recovered:false, by SubStatus. */
export const SUB_STATUS_REASON: readonly string[] = ['', '', 'epoch_mismatch', 'cache_miss', 'unknown_position', 'too_many_topics', 'unavailable'];

/**
 * A sub reply's topic entry with what its resume brought: recovered and replayed, or recovered:false and the reason
 * (after a new epoch, `replayed` is what came of it from seq 1: the client needs it to keep them). Returns `entry`.
 */
export function withResumeOutcome(entry: Record<string, unknown>, status: number, replayed: number): Record<string, unknown> {
  if (status === SubStatus.RECOVERED) {
    entry.recovered = true;
    entry.replayed = replayed;
  } else if (status !== SubStatus.FRESH) {
    entry.recovered = false;
    entry.reason = SUB_STATUS_REASON[status];
    if (status === SubStatus.EPOCH_MISMATCH) entry.replayed = replayed;
  }
  return entry;
}

/** One outbound record's fields. Reused (one per workgroup): no allocation per record. */
export class RecordOut {
  type = 0;
  flags = 0;
  token = 0;
  epoch = 0;
  aux = 0;
  seq = 0;
  ts = 0;
  receivedAt = 0;
  topic = '';
  /** The data bytes (copied into the record), or null. */
  data: Uint8Array | null = null;

  /** Bytes the record needs. */
  size(): number {
    return RECORD_HEADER + this.topic.length + (this.data === null ? 0 : this.data.length);
  }
}

// Buffers over ring memory, made once per ring (RingProducer.data is fixed);
// spill buffers of a full ring are fresh arrays and get a fresh view.
const bufferOf = new WeakMap<Uint8Array, Buffer>();

export function asBuffer(bytes: Uint8Array): Buffer {
  let b = bufferOf.get(bytes);
  if (b === undefined) {
    b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    if (bytes.byteLength >= 65536) bufferOf.set(bytes, b);
  }
  return b;
}

/** RingSender encoder: writes r at bytes[offset...] and returns its size. */
export function writeRecord(bytes: Uint8Array, offset: number, r: RecordOut): number {
  const b = asBuffer(bytes);
  b[offset] = r.type;
  b[offset + 1] = r.flags;
  b.writeUInt16LE(r.topic.length, offset + 2);
  b.writeUInt32LE(r.token >>> 0, offset + 4);
  b.writeUInt32LE(r.epoch >>> 0, offset + 8);
  b.writeUInt32LE(r.aux >>> 0, offset + 12);
  b.writeDoubleLE(r.seq, offset + 16);
  b.writeDoubleLE(r.ts, offset + 24);
  b.writeDoubleLE(r.receivedAt, offset + 32);
  let o = offset + RECORD_HEADER;
  if (r.topic.length > 0) o += b.write(r.topic, o, 'latin1');
  if (r.data !== null) {
    b.set(r.data, o);
    o += r.data.length;
  }
  return o - offset;
}

/** One inbound record's fields, read in place. `data` is a view into the ring: valid during the handler only. */
export class RecordIn {
  type = 0;
  flags = 0;
  token = 0;
  epoch = 0;
  aux = 0;
  seq = 0;
  ts = 0;
  receivedAt = 0;
  topic = '';
  data: Buffer = Buffer.alloc(0);

  read(b: Buffer, offset: number, length: number): this {
    this.type = b[offset];
    this.flags = b[offset + 1];
    const topicLength = b.readUInt16LE(offset + 2);
    this.token = b.readUInt32LE(offset + 4);
    this.epoch = b.readUInt32LE(offset + 8);
    this.aux = b.readUInt32LE(offset + 12);
    this.seq = b.readDoubleLE(offset + 16);
    this.ts = b.readDoubleLE(offset + 24);
    this.receivedAt = b.readDoubleLE(offset + 32);
    const t = offset + RECORD_HEADER;
    this.topic = topicLength === 0 ? '' : b.toString('latin1', t, t + topicLength);
    this.data = b.subarray(t + topicLength, offset + length);
    return this;
  }
}

/** Writes one REPLAY_BATCH entry at b[offset...] (b must have REPLAY_ENTRY_HEADER + data.length bytes there); returns the bytes written. */
export function writeReplayEntry(b: Buffer, offset: number, seq: number, tsMicros: number, flags: number, data: Uint8Array): number {
  b.writeDoubleLE(seq, offset);
  b.writeDoubleLE(tsMicros, offset + 8);
  b.writeUInt32LE(data.length, offset + 16);
  b[offset + 20] = flags;
  b.set(data, offset + REPLAY_ENTRY_HEADER);
  return REPLAY_ENTRY_HEADER + data.length;
}

/** Reads the `count` entries of a REPLAY_BATCH's data in order; returns the bytes read (less than data.length: malformed). */
export function readReplayBatch(b: Buffer, count: number, visit: (seq: number, tsMicros: number, flags: number, data: Buffer) => void): number {
  let o = 0;
  for (let i = 0; i < count; i++) {
    if (o + REPLAY_ENTRY_HEADER > b.length) break;
    const end = o + REPLAY_ENTRY_HEADER + b.readUInt32LE(o + 16);
    if (end > b.length) break;
    visit(b.readDoubleLE(o), b.readDoubleLE(o + 8), b[o + 20], b.subarray(o + REPLAY_ENTRY_HEADER, end));
    o = end;
  }
  return o;
}
