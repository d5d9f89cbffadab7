// The fast path for the one command that comes once per message: a msgpack
// `pub`. It reads the command's map field by field and keeps the `data`
// value as the raw msgpack bytes the publisher sent (a view into the frame),
// so a message is neither decoded nor re-encoded on its way to msgpack
// subscribers: the delivery frame carries the publisher's bytes.
//
// Anything unusual (another op, a non-scalar envelope field, a malformed or
// truncated value, trailing bytes) returns null, and the caller takes the
// general path (msgpackr), so both paths give the same answers to every
// frame. Whether the data may be published (protocol/data.ts) is checked
// on the kept bytes by the caller, on both paths. No allocation but the
// strings read and the result object.

/** The envelope of a msgpack pub, with data still encoded. */
export interface RawPub {
  id: unknown;
  op: unknown;
  topic: unknown;
  ack: unknown;
  retain: unknown;
  ts: unknown;
  idempotencyKey: unknown;
  /** The data value's msgpack bytes (a view into the frame), or null when the map has no data field. */
  raw: Uint8Array | null;
  /** The same view, undefined without a data field: the object can be validated as a command as it is. */
  data: Uint8Array | undefined;
}

const textDecoder = new TextDecoder('utf-8');
const NOT_SCALAR = Symbol('not scalar');

/** Reads a msgpack pub command without decoding its data, or returns null (use the general path). */
export function readRawPub(b: Uint8Array): RawPub | null {
  const out = readRawEnvelope(b);
  return out !== null && out.op === 'pub' ? out : null;
}

/**
 * Reads a map of scalar fields and one `data` value kept encoded, whatever
 * its op (none, for an HTTP publish body), or returns null (use the general path).
 */
export function readRawEnvelope(b: Uint8Array): RawPub | null {
  const len = b.length;
  if (len === 0) return null;
  let p = 0;
  let n: number;
  const t = b[p++];
  if (t >= 0x80 && t <= 0x8f) n = t & 0x0f;
  else if (t === 0xde) {
    if (p + 2 > len) return null;
    n = (b[p] << 8) | b[p + 1];
    p += 2;
  } else return null;
  const out: RawPub = { id: undefined, op: undefined, topic: undefined, ack: undefined, retain: undefined, ts: undefined, idempotencyKey: undefined, raw: null, data: undefined };
  for (let i = 0; i < n; i++) {
    // Key: a string of at most 31 bytes (our keys are short); anything else takes the general path.
    if (p >= len) return null;
    const k = b[p++];
    if (k < 0xa0 || k > 0xbf) return null;
    const kl = k & 0x1f;
    if (p + kl > len) return null;
    const ks = p;
    p += kl;
    if (kl === 4 && b[ks] === 100 && b[ks + 1] === 97 && b[ks + 2] === 116 && b[ks + 3] === 97) {
      // "data": skip over the value, keep its bytes.
      const end = skip(b, p);
      if (end < 0) return null;
      out.raw = b.subarray(p, end);
      out.data = out.raw;
      p = end;
      continue;
    }
    const v = scalar(b, p);
    if (v === NOT_SCALAR) return null;
    p = scalarEnd;
    switch (keyOf(b, ks, kl)) {
      case KEY_ID:
        out.id = v;
        break;
      case KEY_OP:
        out.op = v;
        break;
      case KEY_TOPIC:
        out.topic = v;
        break;
      case KEY_ACK:
        out.ack = v;
        break;
      case KEY_RETAIN:
        out.retain = v;
        break;
      case KEY_TS:
        out.ts = v;
        break;
      case KEY_IDEMPOTENCY_KEY:
        out.idempotencyKey = v;
        break;
      default:
        break; // unknown keys are ignored, as on the general path
    }
  }
  if (p !== len) return null;
  return out;
}

const KEY_OTHER = 0;
const KEY_ID = 1;
const KEY_OP = 2;
const KEY_TOPIC = 3;
const KEY_ACK = 4;
const KEY_RETAIN = 5;
const KEY_TS = 6;
const KEY_IDEMPOTENCY_KEY = 7;
const IDEMPOTENCY_KEY = 'idempotencyKey';

function keyOf(b: Uint8Array, s: number, l: number): number {
  switch (l) {
    case 2:
      if (b[s] === 105 && b[s + 1] === 100) return KEY_ID; // id
      if (b[s] === 111 && b[s + 1] === 112) return KEY_OP; // op
      if (b[s] === 116 && b[s + 1] === 115) return KEY_TS; // ts
      return KEY_OTHER;
    case 3:
      return b[s] === 97 && b[s + 1] === 99 && b[s + 2] === 107 ? KEY_ACK : KEY_OTHER; // ack
    case 5:
      return b[s] === 116 && b[s + 1] === 111 && b[s + 2] === 112 && b[s + 3] === 105 && b[s + 4] === 99 ? KEY_TOPIC : KEY_OTHER; // topic
    case 6:
      return b[s] === 114 && b[s + 1] === 101 && b[s + 2] === 116 && b[s + 3] === 97 && b[s + 4] === 105 && b[s + 5] === 110 ? KEY_RETAIN : KEY_OTHER; // retain
    case 14:
      for (let i = 0; i < 14; i++) if (b[s + i] !== IDEMPOTENCY_KEY.charCodeAt(i)) return KEY_OTHER;
      return KEY_IDEMPOTENCY_KEY;
    default:
      return KEY_OTHER;
  }
}

/** Where the last scalar() ended (module state: no tuple allocated per field). */
let scalarEnd = 0;

/** Decodes nil, booleans, numbers and strings at p; NOT_SCALAR for anything else or a truncated value. */
function scalar(b: Uint8Array, p: number): unknown {
  const len = b.length;
  if (p >= len) return NOT_SCALAR;
  const t = b[p++];
  let sl = -1;
  if (t <= 0x7f) {
    scalarEnd = p;
    return t;
  }
  if (t >= 0xe0) {
    scalarEnd = p;
    return t - 0x100;
  }
  if (t >= 0xa0 && t <= 0xbf) sl = t & 0x1f;
  else {
    switch (t) {
      case 0xc0:
        scalarEnd = p;
        return null;
      case 0xc2:
        scalarEnd = p;
        return false;
      case 0xc3:
        scalarEnd = p;
        return true;
      case 0xcc:
        if (p + 1 > len) return NOT_SCALAR;
        scalarEnd = p + 1;
        return b[p];
      case 0xcd:
        if (p + 2 > len) return NOT_SCALAR;
        scalarEnd = p + 2;
        return (b[p] << 8) | b[p + 1];
      case 0xce:
        if (p + 4 > len) return NOT_SCALAR;
        scalarEnd = p + 4;
        return u32(b, p);
      case 0xcf: {
        // uint64: exact below 2^53 (timestamps in micros); above, msgpackr gives a BigInt: take the general path.
        if (p + 8 > len) return NOT_SCALAR;
        const hi = u32(b, p);
        if (hi >= 0x200000) return NOT_SCALAR;
        scalarEnd = p + 8;
        return hi * 0x100000000 + u32(b, p + 4);
      }
      case 0xd0:
        if (p + 1 > len) return NOT_SCALAR;
        scalarEnd = p + 1;
        return (b[p] << 24) >> 24;
      case 0xd1:
        if (p + 2 > len) return NOT_SCALAR;
        scalarEnd = p + 2;
        return (((b[p] << 8) | b[p + 1]) << 16) >> 16;
      case 0xd2:
        if (p + 4 > len) return NOT_SCALAR;
        scalarEnd = p + 4;
        return (b[p] << 24) | (b[p + 1] << 16) | (b[p + 2] << 8) | b[p + 3];
      case 0xd3:
        return NOT_SCALAR; // int64: rare in an envelope; the general path
      case 0xca:
        if (p + 4 > len) return NOT_SCALAR;
        scalarEnd = p + 4;
        return new DataView(b.buffer, b.byteOffset + p, 4).getFloat32(0);
      case 0xcb:
        if (p + 8 > len) return NOT_SCALAR;
        scalarEnd = p + 8;
        return new DataView(b.buffer, b.byteOffset + p, 8).getFloat64(0);
      case 0xd9:
        if (p + 1 > len) return NOT_SCALAR;
        sl = b[p];
        p += 1;
        break;
      case 0xda:
        if (p + 2 > len) return NOT_SCALAR;
        sl = (b[p] << 8) | b[p + 1];
        p += 2;
        break;
      default:
        return NOT_SCALAR;
    }
  }
  if (p + sl > len) return NOT_SCALAR;
  scalarEnd = p + sl;
  if (sl <= 16) {
    let ascii = true;
    for (let i = p; i < p + sl; i++)
      if (b[i] > 0x7f) {
        ascii = false;
        break;
      }
    if (ascii) return shortAscii(b, p, sl);
  }
  return textDecoder.decode(b.subarray(p, p + sl));
}

const fcc = String.fromCharCode;

/**
 * An ASCII string of at most 16 bytes in one allocation (String.fromCharCode
 * with a fixed number of arguments, as msgpackr does): 19 ns for 13 bytes
 * where appending a character at a time took 80 ns and made a string per
 * character (the largest garbage per publish: 424 of 1,390 bytes, docs/PERFORMANCE.md).
 */
function shortAscii(b: Uint8Array, p: number, l: number): string {
  switch (l) {
    case 0:
      return '';
    case 1:
      return fcc(b[p]);
    case 2:
      return fcc(b[p], b[p + 1]);
    case 3:
      return fcc(b[p], b[p + 1], b[p + 2]);
    case 4:
      return fcc(b[p], b[p + 1], b[p + 2], b[p + 3]);
    case 5:
      return fcc(b[p], b[p + 1], b[p + 2], b[p + 3], b[p + 4]);
    case 6:
      return fcc(b[p], b[p + 1], b[p + 2], b[p + 3], b[p + 4], b[p + 5]);
    case 7:
      return fcc(b[p], b[p + 1], b[p + 2], b[p + 3], b[p + 4], b[p + 5], b[p + 6]);
    case 8:
      return fcc(b[p], b[p + 1], b[p + 2], b[p + 3], b[p + 4], b[p + 5], b[p + 6], b[p + 7]);
    case 9:
      return fcc(b[p], b[p + 1], b[p + 2], b[p + 3], b[p + 4], b[p + 5], b[p + 6], b[p + 7], b[p + 8]);
    case 10:
      return fcc(b[p], b[p + 1], b[p + 2], b[p + 3], b[p + 4], b[p + 5], b[p + 6], b[p + 7], b[p + 8], b[p + 9]);
    case 11:
      return fcc(b[p], b[p + 1], b[p + 2], b[p + 3], b[p + 4], b[p + 5], b[p + 6], b[p + 7], b[p + 8], b[p + 9], b[p + 10]);
    case 12:
      return fcc(b[p], b[p + 1], b[p + 2], b[p + 3], b[p + 4], b[p + 5], b[p + 6], b[p + 7], b[p + 8], b[p + 9], b[p + 10], b[p + 11]);
    case 13:
      return fcc(b[p], b[p + 1], b[p + 2], b[p + 3], b[p + 4], b[p + 5], b[p + 6], b[p + 7], b[p + 8], b[p + 9], b[p + 10], b[p + 11], b[p + 12]);
    case 14:
      return fcc(b[p], b[p + 1], b[p + 2], b[p + 3], b[p + 4], b[p + 5], b[p + 6], b[p + 7], b[p + 8], b[p + 9], b[p + 10], b[p + 11], b[p + 12], b[p + 13]);
    case 15:
      return fcc(b[p], b[p + 1], b[p + 2], b[p + 3], b[p + 4], b[p + 5], b[p + 6], b[p + 7], b[p + 8], b[p + 9], b[p + 10], b[p + 11], b[p + 12], b[p + 13], b[p + 14]);
    case 16:
      return fcc(b[p], b[p + 1], b[p + 2], b[p + 3], b[p + 4], b[p + 5], b[p + 6], b[p + 7], b[p + 8], b[p + 9], b[p + 10], b[p + 11], b[p + 12], b[p + 13], b[p + 14], b[p + 15]);
    default:
      throw new RangeError(`shortAscii: ${l} bytes`);
  }
}

function u32(b: Uint8Array, p: number): number {
  return ((b[p] << 24) >>> 0) + ((b[p + 1] << 16) | (b[p + 2] << 8) | b[p + 3]);
}

/**
 * The end of the one msgpack value at p, or -1 when it is truncated or holds
 * the never-used byte 0xc1. Structure only, at any depth and for any
 * extension type: whether the data may be published is protocol/data.ts's
 * question. No recursion: one count of values still to read.
 */
export function skip(b: Uint8Array, p: number): number {
  const len = b.length;
  let pending = 1;
  while (pending > 0) {
    if (p >= len) return -1;
    pending--;
    const t = b[p++];
    let bytes = 0; // raw bytes after the header
    if (t <= 0x7f || t >= 0xe0) continue;
    if (t <= 0x8f) pending += (t & 0x0f) * 2;
    else if (t <= 0x9f) pending += t & 0x0f;
    else if (t <= 0xbf) bytes = t & 0x1f;
    else {
      switch (t) {
        case 0xc0:
        case 0xc2:
        case 0xc3:
          break;
        case 0xcc:
        case 0xd0:
          bytes = 1;
          break;
        case 0xcd:
        case 0xd1:
          bytes = 2;
          break;
        case 0xce:
        case 0xd2:
        case 0xca:
          bytes = 4;
          break;
        case 0xcf:
        case 0xd3:
        case 0xcb:
          bytes = 8;
          break;
        case 0xc4:
        case 0xd9:
          if (p + 1 > len) return -1;
          bytes = b[p];
          p += 1;
          break;
        case 0xc5:
        case 0xda:
          if (p + 2 > len) return -1;
          bytes = (b[p] << 8) | b[p + 1];
          p += 2;
          break;
        case 0xc6:
        case 0xdb:
          if (p + 4 > len) return -1;
          bytes = u32(b, p);
          p += 4;
          break;
        case 0xdc:
          if (p + 2 > len) return -1;
          pending += (b[p] << 8) | b[p + 1];
          p += 2;
          break;
        case 0xdd:
          if (p + 4 > len) return -1;
          pending += u32(b, p);
          p += 4;
          break;
        case 0xde:
          if (p + 2 > len) return -1;
          pending += ((b[p] << 8) | b[p + 1]) * 2;
          p += 2;
          break;
        case 0xdf:
          if (p + 4 > len) return -1;
          pending += u32(b, p) * 2;
          p += 4;
          break;
        // Extensions (fixext 1..16, ext 8/16/32): the type byte and the body.
        case 0xd4:
          bytes = 2;
          break;
        case 0xd5:
          bytes = 3;
          break;
        case 0xd6:
          bytes = 5;
          break;
        case 0xd7:
          bytes = 9;
          break;
        case 0xd8:
          bytes = 17;
          break;
        case 0xc7:
          if (p + 1 > len) return -1;
          bytes = b[p] + 1;
          p += 1;
          break;
        case 0xc8:
          if (p + 2 > len) return -1;
          bytes = ((b[p] << 8) | b[p + 1]) + 1;
          p += 2;
          break;
        case 0xc9:
          if (p + 4 > len) return -1;
          bytes = u32(b, p) + 1;
          p += 4;
          break;
        default:
          return -1; // 0xc1: never used
      }
    }
    // Each value pending takes at least a byte: more than the bytes left cannot be valid.
    if (pending + bytes > len - p) return -1;
    p += bytes;
  }
  return p;
}

/**
 * The bytes of the `data` value of a msgpack map (the last one, as msgpackr
 * keeps the last of duplicate keys), or null: for the general path, which
 * decoded the frame but checks the data as the publisher encoded it.
 */
export function findRawData(b: Uint8Array): Uint8Array | null {
  const len = b.length;
  if (len === 0) return null;
  let p = 0;
  let n: number;
  const t = b[p++];
  if (t >= 0x80 && t <= 0x8f) n = t & 0x0f;
  else if (t === 0xde && len >= 3) {
    n = (b[1] << 8) | b[2];
    p = 3;
  } else if (t === 0xdf && len >= 5) {
    n = u32(b, 1);
    p = 5;
  } else return null;
  let found: Uint8Array | null = null;
  for (let i = 0; i < n; i++) {
    const k = p;
    p = skip(b, p);
    if (p < 0) return null;
    const isData = (p - k === 5 && b[k] === 0xa4) || (p - k === 6 && b[k] === 0xd9 && b[k + 1] === 4);
    const end = skip(b, p);
    if (end < 0) return null;
    if (isData && b[p - 4] === 100 && b[p - 3] === 97 && b[p - 2] === 116 && b[p - 1] === 97) found = b.subarray(p, end);
    p = end;
  }
  return found;
}
