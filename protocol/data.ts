// The data a publish may carry: only what both encodings deliver without
// loss or failure (PROTOCOL.md, "Data both encodings carry"). A publish is
// checked once, where it arrives; nothing accepted may later fail to convert
// for a subscriber of the other encoding (a delivery, a snapshot, a replay).
//
// Two checkers, one rule: checkMsgpackData walks the publisher's msgpack
// bytes without decoding them (the fast path keeps those bytes), and
// checkJsonData walks a decoded value (JSON.parse's, or msgpackr's on the
// general path). Both are iterative or bounded by MAX_DATA_DEPTH: hostile
// input never reaches the stack limit.

/** Most levels of arrays and maps in a publish's data (a scalar alone is depth 0). */
export const MAX_DATA_DEPTH = 64;

/** The range of integers a JSON number carries exactly. */
const MAX_EXACT = Number.MAX_SAFE_INTEGER;

/** Milliseconds a JS Date can hold either side of 1970 (what a JSON subscriber's ISO string is made from). */
const MAX_DATE_MS = 8.64e15;

const TOO_DEEP = `data is nested more than ${MAX_DATA_DEPTH} levels of arrays and maps`;
const NOT_FINITE = 'data holds NaN or Infinity, which JSON cannot carry';
const BAD_KEY = 'a map key in data is not a string or an integer; JSON objects have string keys';
const TRUNCATED = 'data is not valid msgpack';

function outsideExact(n: bigint | number): string {
  return `integer ${n} is outside ±2^53−1, which JSON carries exactly; send it as a string`;
}

// Per level of the walk: items left (a map counts keys and values) and whether it is a map. Reused: no allocation per call.
const left = new Float64Array(MAX_DATA_DEPTH + 1);
const isMap = new Uint8Array(MAX_DATA_DEPTH + 1);

/**
 * Why msgpack data (exactly one value, b[start..end)) cannot be delivered in
 * both encodings, or null when it can. Never decodes, never throws, never
 * recurses; allocates only the error sentence.
 */
export function checkMsgpackData(b: Uint8Array, start = 0, end = b.length): string | null {
  let p = start;
  let depth = 0;
  for (;;) {
    // A map's items alternate key, value, starting with a key: an even count left means a key.
    const key = depth > 0 && isMap[depth] === 1 && left[depth] % 2 === 0;
    if (depth > 0) left[depth]--;
    if (p >= end) return TRUNCATED;
    const t = b[p++];
    let count = -1; // items of a container, -1 for a scalar
    let map = 0;
    let bytes = 0; // bytes of the scalar after its header
    if (t <= 0x7f || t >= 0xe0) {
      // fixint
    } else if (t <= 0x8f) {
      count = (t & 0x0f) * 2;
      map = 1;
    } else if (t <= 0x9f) count = t & 0x0f;
    else if (t <= 0xbf) bytes = t & 0x1f;
    else {
      if (key && !(t >= 0xcc && t <= 0xd3 && t !== 0xca && t !== 0xcb) && t !== 0xd9 && t !== 0xda && t !== 0xdb) return BAD_KEY;
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
          bytes = 4;
          break;
        case 0xca:
          if (p + 4 > end) return TRUNCATED;
          if ((b[p] & 0x7f) === 0x7f && (b[p + 1] & 0x80) !== 0) return NOT_FINITE;
          bytes = 4;
          break;
        case 0xcb:
          if (p + 8 > end) return TRUNCATED;
          if ((b[p] & 0x7f) === 0x7f && (b[p + 1] & 0xf0) === 0xf0) return NOT_FINITE;
          bytes = 8;
          break;
        case 0xcf: {
          if (p + 8 > end) return TRUNCATED;
          if (u32(b, p) >= 0x200000) return outsideExact((BigInt(u32(b, p)) << 32n) | BigInt(u32(b, p + 4)));
          bytes = 8;
          break;
        }
        case 0xd3: {
          if (p + 8 > end) return TRUNCATED;
          const v = i32(b, p) * 0x100000000 + u32(b, p + 4);
          if (v > MAX_EXACT || v < -MAX_EXACT) return outsideExact((BigInt(i32(b, p)) << 32n) | BigInt(u32(b, p + 4)));
          bytes = 8;
          break;
        }
        case 0xc4:
        case 0xd9:
          if (p + 1 > end) return TRUNCATED;
          bytes = b[p];
          p += 1;
          break;
        case 0xc5:
        case 0xda:
          if (p + 2 > end) return TRUNCATED;
          bytes = (b[p] << 8) | b[p + 1];
          p += 2;
          break;
        case 0xc6:
        case 0xdb:
          if (p + 4 > end) return TRUNCATED;
          bytes = u32(b, p);
          p += 4;
          break;
        case 0xdc:
          if (p + 2 > end) return TRUNCATED;
          count = (b[p] << 8) | b[p + 1];
          p += 2;
          break;
        case 0xdd:
          if (p + 4 > end) return TRUNCATED;
          count = u32(b, p);
          p += 4;
          break;
        case 0xde:
          if (p + 2 > end) return TRUNCATED;
          count = ((b[p] << 8) | b[p + 1]) * 2;
          map = 1;
          p += 2;
          break;
        case 0xdf:
          if (p + 4 > end) return TRUNCATED;
          count = u32(b, p) * 2;
          map = 1;
          p += 4;
          break;
        // Extensions: fixext 1/2/4/8/16, ext 8/16/32; a type byte, then the body.
        case 0xd4:
        case 0xd5:
        case 0xd6:
        case 0xd7:
        case 0xd8:
        case 0xc7:
        case 0xc8:
        case 0xc9: {
          let n: number;
          if (t >= 0xd4) n = 1 << (t - 0xd4);
          else if (t === 0xc7) {
            if (p + 1 > end) return TRUNCATED;
            n = b[p];
            p += 1;
          } else if (t === 0xc8) {
            if (p + 2 > end) return TRUNCATED;
            n = (b[p] << 8) | b[p + 1];
            p += 2;
          } else {
            if (p + 4 > end) return TRUNCATED;
            n = u32(b, p);
            p += 4;
          }
          if (p + 1 + n > end) return TRUNCATED;
          const type = (b[p] << 24) >> 24;
          p += 1;
          if (type !== -1) return `data holds a msgpack extension of type ${type}; only the timestamp (type -1) converts to JSON`;
          const err = timestampError(b, p, n);
          if (err !== null) return err;
          bytes = n;
          break;
        }
        default:
          return TRUNCATED; // 0xc1: never used
      }
    }
    if (key && t >= 0x80 && t <= 0x9f) return BAD_KEY;
    if (count >= 0) {
      if (depth >= MAX_DATA_DEPTH) return TOO_DEEP;
      // More items than bytes left cannot be valid (and keeps `count` small).
      if (count > end - p) return TRUNCATED;
      if (count > 0) {
        depth++;
        left[depth] = count;
        isMap[depth] = map;
      }
    } else {
      if (p + bytes > end) return TRUNCATED;
      p += bytes;
    }
    while (depth > 0 && left[depth] === 0) depth--;
    if (depth === 0) return p === end ? null : TRUNCATED;
  }
}

/** A timestamp extension body of n bytes at p: 4, 8 or 12 bytes, within what a Date holds. */
function timestampError(b: Uint8Array, p: number, n: number): string | null {
  if (n === 4 || n === 8) return null; // uint32 seconds, or 34-bit seconds: always a valid Date
  if (n !== 12) return `data holds a timestamp extension of ${n} bytes; a timestamp has 4, 8 or 12`;
  const seconds = i32(b, p + 4) * 0x100000000 + u32(b, p + 8);
  if (Math.abs(seconds * 1000) > MAX_DATE_MS - 1000) return 'data holds a timestamp outside the range of a date (±8.64e15 ms around 1970)';
  return null;
}

function u32(b: Uint8Array, p: number): number {
  return ((b[p] << 24) >>> 0) + ((b[p + 1] << 16) | (b[p + 2] << 8) | b[p + 3]);
}

function i32(b: Uint8Array, p: number): number {
  return (b[p] << 24) | (b[p + 1] << 16) | (b[p + 2] << 8) | b[p + 3];
}

/**
 * Why a decoded data value (JSON.parse's, or msgpackr's) cannot be delivered
 * in both encodings, or null when it can. Recursion stops at MAX_DATA_DEPTH,
 * so hostile nesting cannot overflow the stack. Accepts what JSON.parse
 * gives and what msgpackr gives for accepted msgpack: null, booleans, finite
 * numbers, BigInts within ±2^53−1, strings, bytes, valid Dates, arrays and
 * plain maps.
 */
export function checkJsonData(value: unknown): string | null {
  return checkValue(value, 0);
}

function checkValue(v: unknown, depth: number): string | null {
  switch (typeof v) {
    case 'string':
    case 'boolean':
      return null;
    case 'number':
      return Number.isFinite(v) ? null : NOT_FINITE;
    case 'bigint':
      return v > BigInt(MAX_EXACT) || v < -BigInt(MAX_EXACT) ? outsideExact(v) : null;
    case 'object':
      break;
    default:
      return `data holds a value of type ${typeof v}, which neither encoding carries`;
  }
  if (v === null || v instanceof Uint8Array) return null;
  if (v instanceof Date) return Math.abs(v.getTime()) <= MAX_DATE_MS ? null : 'data holds a timestamp outside the range of a date (±8.64e15 ms around 1970)';
  if (depth >= MAX_DATA_DEPTH) return TOO_DEEP;
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) {
      const err = checkValue(v[i], depth + 1);
      if (err !== null) return err;
    }
    return null;
  }
  const proto = Object.getPrototypeOf(v);
  if (proto !== Object.prototype && proto !== null) return 'data holds an object that is neither an array nor a plain map';
  for (const k in v as Record<string, unknown>) {
    const err = checkValue((v as Record<string, unknown>)[k], depth + 1);
    if (err !== null) return err;
  }
  return null;
}
