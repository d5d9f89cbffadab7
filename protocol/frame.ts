// Delivery frames: built once per message and per encoding, never per subscriber.
//
// Binary delivery frame (msgpack sessions), big-endian, 24-byte header:
//   0      magic 0xC1 (never a valid first byte of msgpack: tells a delivery from a reply)
//   1      version (1)
//   2      flags (FrameFlag)
//   3      topic length in bytes (topics are at most 255 bytes)
//   4..7   epoch, uint32
//   8..15  seq, uint64 (two uint32 halves; JS keeps seq below 2^53)
//   16..23 publish timestamp, microseconds since the Unix epoch, uint64
//   24..   topic (ASCII), then the msgpack-encoded data to the end of the frame
//   With FrameFlag.CONFLATED (only to sessions that asked for conflation,
//   protocol/conflation.ts): 24..27 the skipped count, uint32, and the topic at 28.
//
// JSON delivery frame (JSON sessions), one text frame:
//   {"op":"msg","topic":T,"epoch":E,"seq":S,"ts":MICROS,"data":D}
//   plus "replay":true on recovered messages and "snapshot":true on a retained snapshot,
//   and "conflated":N (messages skipped before this one) on a conflated subscription's frames.

export const FRAME_MAGIC = 0xc1;
export const FRAME_VERSION = 1;
export const FRAME_HEADER_BYTES = 24;

/** Flag bits of byte 2 of a binary delivery frame (and the JSON frame's booleans). */
export const FrameFlag = {
  /** Replayed from the cache on resume, not live. */
  REPLAY: 1 << 0,
  /** The topic's retained snapshot, sent first on subscribe. */
  SNAPSHOT: 1 << 1,
  /** A conflated subscription's frame: a uint32 skipped count follows the header (protocol/conflation.ts). */
  CONFLATED: 1 << 2,
} as const;

const TWO_32 = 4294967296;

let scratch = new Uint8Array(64 * 1024);
let scratchView = new DataView(scratch.buffer);

/**
 * Encodes a binary delivery frame into a module-level scratch buffer and returns a view of it.
 * The view is valid until the next call: hand it to uWS (which copies) or copy it.
 * No allocation beyond the returned view, unless the frame outgrows the scratch buffer.
 */
export function encodeBinaryFrame(topic: string, epoch: number, seq: number, tsMicros: number, flags: number, data: Uint8Array): Uint8Array {
  const topicBytes = topic.length;
  const total = FRAME_HEADER_BYTES + topicBytes + data.length;
  if (total > scratch.length) {
    scratch = new Uint8Array(Math.max(total, scratch.length * 2));
    scratchView = new DataView(scratch.buffer);
  }
  writeBinaryHeader(scratch, scratchView, 0, topic, epoch, seq, tsMicros, flags);
  scratch.set(data, FRAME_HEADER_BYTES + topicBytes);
  return scratch.subarray(0, total);
}

/** Writes the header and topic at `offset` of `out`; returns the offset where the data goes. */
export function writeBinaryHeader(out: Uint8Array, view: DataView, offset: number, topic: string, epoch: number, seq: number, tsMicros: number, flags: number): number {
  out[offset] = FRAME_MAGIC;
  out[offset + 1] = FRAME_VERSION;
  out[offset + 2] = flags;
  out[offset + 3] = topic.length;
  view.setUint32(offset + 4, epoch >>> 0);
  view.setUint32(offset + 8, Math.floor(seq / TWO_32));
  view.setUint32(offset + 12, seq >>> 0);
  view.setUint32(offset + 16, Math.floor(tsMicros / TWO_32));
  view.setUint32(offset + 20, tsMicros >>> 0);
  let p = offset + FRAME_HEADER_BYTES;
  for (let i = 0; i < topic.length; i++) out[p++] = topic.charCodeAt(i);
  return p;
}

/** Builds the JSON delivery frame text. `dataJson` is the data already encoded as JSON text. */
export function encodeJsonFrame(topic: string, epoch: number, seq: number, tsMicros: number, flags: number, dataJson: string): string {
  // Topic names are validated to [A-Za-z0-9_.:/-], which need no JSON escaping.
  let extra = '';
  if (flags & FrameFlag.REPLAY) extra += ',"replay":true';
  if (flags & FrameFlag.SNAPSHOT) extra += ',"snapshot":true';
  return `{"op":"msg","topic":"${topic}","epoch":${epoch >>> 0},"seq":${seq},"ts":${tsMicros}${extra},"data":${dataJson}}`;
}

export interface DecodedBinaryFrame {
  topic: string;
  epoch: number;
  seq: number;
  tsMicros: number;
  flags: number;
  /** FrameFlag.CONFLATED: messages of the topic skipped before this one; else 0. */
  conflated: number;
  /** The msgpack-encoded data (a view into the frame). */
  payload: Uint8Array;
}

/** True when the bytes are a binary delivery frame (as opposed to a msgpack reply map). */
export function isBinaryFrame(bytes: Uint8Array): boolean {
  return bytes.length >= FRAME_HEADER_BYTES && bytes[0] === FRAME_MAGIC;
}

/** Parses a binary delivery frame; throws on a frame that is too short or of another version. */
export function decodeBinaryFrame(bytes: Uint8Array): DecodedBinaryFrame {
  if (!isBinaryFrame(bytes)) throw new Error('not a c10m delivery frame');
  if (bytes[1] !== FRAME_VERSION) throw new Error(`delivery frame version ${bytes[1]} is not supported`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const topicLength = bytes[3];
  const conflated = (bytes[2] & FrameFlag.CONFLATED) !== 0;
  const at = conflated ? FRAME_HEADER_BYTES + 4 : FRAME_HEADER_BYTES;
  if (bytes.length < at + topicLength) throw new Error('delivery frame is truncated');
  let topic = '';
  for (let i = 0; i < topicLength; i++) topic += String.fromCharCode(bytes[at + i]);
  return {
    topic,
    epoch: view.getUint32(4),
    seq: view.getUint32(8) * TWO_32 + view.getUint32(12),
    tsMicros: view.getUint32(16) * TWO_32 + view.getUint32(20),
    flags: bytes[2],
    conflated: conflated ? view.getUint32(FRAME_HEADER_BYTES) : 0,
    payload: bytes.subarray(at + topicLength),
  };
}

/**
 * Microseconds since the Unix epoch, from the monotonic clock anchored at the
 * wall clock (works in Node, workers and browsers). No allocation.
 */
export function nowMicros(): number {
  return Math.round((performance.timeOrigin + performance.now()) * 1000);
}
