// The native benchsub client's frame parser (bench/loadgen/src/loadgen.h), fed
// through its test entry point: frames of every length class (7, 16 and
// 64-bit lengths), fragmented messages with a control frame in between, and
// every split of the input into reads. Also its histogram layout against
// hdr-histogram-js and the JS fallback's.
import * as hdr from 'hdr-histogram-js';
import { BucketHistogram, histogramBucketForTest, loadgenStatus, parseFramesForTest, type ParserEvent } from '../bench/loadgen';
import { packr } from '../protocol/codec';
import { encodeBinaryFrame } from '../protocol/frame';

/** A server frame (never masked) with the shortest length encoding, or `lengthBytes` forced. */
function frame(opcode: number, payload: Uint8Array, fin = true, lengthBytes?: 0 | 2 | 8): Buffer {
  const n = payload.length;
  const form = lengthBytes ?? (n < 126 ? 0 : n < 65536 ? 2 : 8);
  const head = Buffer.alloc(2 + form);
  head[0] = (fin ? 0x80 : 0) | opcode;
  if (form === 0) head[1] = n;
  else if (form === 2) {
    head[1] = 126;
    head.writeUInt16BE(n, 2);
  } else {
    head[1] = 127;
    head.writeBigUInt64BE(BigInt(n), 2);
  }
  return Buffer.concat([head, payload]);
}

/** A delivery frame whose whole payload is `total` bytes long. */
function delivery(ts: number, total: number): Buffer {
  const topic = '/t/1';
  // msgpack bin: 0xc4 (<256), 0xc5 (<65536) or 0xc6, then the bytes.
  const header = 24 + topic.length;
  const room = total - header;
  const binHead = room - 2 < 256 ? 2 : room - 3 < 65536 ? 3 : 5;
  const data = packr.pack(Buffer.alloc(room - binHead, 7));
  const f = Buffer.from(encodeBinaryFrame(topic, 9, 1, ts, 0, data));
  expect(f.length).toBe(total);
  return f;
}

const NOW = 1_800_000_000_000_000;

interface Case {
  name: string;
  bytes: Buffer;
  events: Record<string, unknown>[];
}

function stream(): Case {
  const parts: Buffer[] = [];
  const events: Record<string, unknown>[] = [];
  const small = delivery(NOW - 250, 100); // 7-bit length
  parts.push(frame(2, small));
  events.push({ type: 'delivery', ts: NOW - 250, bytes: 100, latency: 250 });
  parts.push(frame(9, Buffer.from('ping!')));
  events.push({ type: 'ping', payload: Buffer.from('ping!') });
  const reply = Buffer.from(packr.pack({ id: 1, ok: true }));
  parts.push(frame(2, reply));
  events.push({ type: 'message', opcode: 2, head: reply, bytes: reply.length });
  const medium = delivery(NOW - 1_000, 5_000); // 16-bit length
  parts.push(frame(2, medium));
  events.push({ type: 'delivery', ts: NOW - 1_000, bytes: 5_000, latency: 1_000 });
  parts.push(frame(2, delivery(NOW - 2, 126))); // smallest 16-bit length
  events.push({ type: 'delivery', ts: NOW - 2, bytes: 126, latency: 2 });
  // Longer than the 96 bytes of a message's head the parser keeps (enough for a ping reply's reconnectWindowMs).
  const text = Buffer.from('{"id":2,"error":{"code":"BAD_TOPIC","message":"a topic name is /-separated segments of letters, digits and _-."}}');
  parts.push(frame(1, text));
  events.push({ type: 'message', opcode: 1, head: text.subarray(0, 96), bytes: text.length });
  // A delivery in three fragments, the header itself split, a pong in between.
  const fragmented = delivery(NOW - 40, 300);
  parts.push(frame(2, fragmented.subarray(0, 10), false));
  parts.push(frame(10, Buffer.alloc(0)));
  events.push({ type: 'pong' });
  parts.push(frame(0, fragmented.subarray(10, 200), false));
  parts.push(frame(0, fragmented.subarray(200), true));
  events.push({ type: 'delivery', ts: NOW - 40, bytes: 300, latency: 40 });
  const large = delivery(NOW - 7_000_000, 70_000); // 64-bit length
  parts.push(frame(2, large));
  events.push({ type: 'delivery', ts: NOW - 7_000_000, bytes: 70_000, latency: 7_000_000 });
  parts.push(frame(2, delivery(NOW - 3, 65_535))); // largest 16-bit length
  events.push({ type: 'delivery', ts: NOW - 3, bytes: 65_535, latency: 3 });
  parts.push(frame(2, delivery(NOW - 5, 200), true, 8)); // a short frame in the 64-bit form
  events.push({ type: 'delivery', ts: NOW - 5, bytes: 200, latency: 5 });
  parts.push(frame(2, Buffer.alloc(0)));
  events.push({ type: 'message', opcode: 2, head: Buffer.alloc(0), bytes: 0 });
  // From a publisher whose clock runs ahead: recorded as 0.
  parts.push(frame(2, delivery(NOW + 10, 60)));
  events.push({ type: 'delivery', ts: NOW + 10, bytes: 60, latency: 0 });
  parts.push(frame(8, Buffer.from([0x03, 0xe8, 0x62, 0x79, 0x65])));
  events.push({ type: 'close', code: 1000 });
  return { name: 'mixed stream', bytes: Buffer.concat(parts), events };
}

function plain(events: ParserEvent[]): Record<string, unknown>[] {
  return events.map((e) => ({ ...e }));
}

jest.setTimeout(120_000);

describe('loadgen frame parser', () => {
  test('the addon is built and loaded', () => {
    const s = loadgenStatus();
    expect(s.error).toBeNull();
    expect(s.native).toBe(true);
  });

  const c = stream();

  test('whole input: every frame of every length class', () => {
    expect(plain(parseFramesForTest([c.bytes], NOW))).toEqual(c.events);
  });

  test('every split into two reads gives the same events', () => {
    let mismatches = 0;
    let firstBad = -1;
    const want = JSON.stringify(c.events);
    for (let i = 0; i <= c.bytes.length; i++) {
      const got = JSON.stringify(plain(parseFramesForTest([c.bytes.subarray(0, i), c.bytes.subarray(i)], NOW)));
      if (got !== want) {
        mismatches++;
        if (firstBad < 0) firstBad = i;
      }
    }
    expect({ mismatches, firstBad }).toEqual({ mismatches: 0, firstBad: -1 });
  });

  test('every split into three reads within the headers of the first frames', () => {
    // The first 400 bytes hold seven frame headers (and the three-fragment message starts near).
    const want = JSON.stringify(c.events);
    let mismatches = 0;
    for (let i = 0; i <= 400; i++) {
      for (let j = i; j <= 400; j += 3) {
        const got = JSON.stringify(plain(parseFramesForTest([c.bytes.subarray(0, i), c.bytes.subarray(i, j), c.bytes.subarray(j)], NOW)));
        if (got !== want) mismatches++;
      }
    }
    expect(mismatches).toBe(0);
  });

  test('one byte per read', () => {
    const chunks: Buffer[] = [];
    for (let i = 0; i < c.bytes.length; i++) chunks.push(c.bytes.subarray(i, i + 1));
    expect(plain(parseFramesForTest(chunks, NOW))).toEqual(c.events);
  });

  test('random reads of 1 to 1500 bytes', () => {
    let seed = 12345;
    const rand = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
    for (let round = 0; round < 50; round++) {
      const chunks: Buffer[] = [];
      for (let at = 0; at < c.bytes.length;) {
        const n = 1 + Math.floor(rand() * 1500);
        chunks.push(c.bytes.subarray(at, at + n));
        at += n;
      }
      expect(plain(parseFramesForTest(chunks, NOW))).toEqual(c.events);
    }
  });

  test.each([
    ['a masked frame', Buffer.from([0x82, 0x81, 1, 2, 3, 4, 5]), 'masked frame from the server'],
    ['reserved bits', Buffer.from([0xc2, 0x00]), 'reserved bits set in a frame header (no extension was negotiated)'],
    ['a reserved data opcode', Buffer.from([0x83, 0x00]), 'reserved data opcode'],
    ['a reserved control opcode', Buffer.from([0x8b, 0x00]), 'reserved control opcode'],
    ['a fragmented ping', Buffer.from([0x09, 0x00]), 'fragmented control frame'],
    ['a ping over 125 bytes', Buffer.from([0x89, 126, 0, 126]), 'control frame longer than 125 bytes'],
    ['a continuation with no message', Buffer.from([0x80, 0x00]), 'continuation frame outside a fragmented message'],
    ['a new message inside a fragmented one', Buffer.from([0x02, 0x01, 0x00, 0x82, 0x00]), 'new data frame inside a fragmented message'],
    ['a 64-bit length with its top bit set', Buffer.from([0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0]), '64-bit frame length with the most significant bit set'],
    ['a close frame of one byte', Buffer.from([0x88, 0x01, 0x03]), 'close frame with a 1-byte payload'],
  ])('%s is a protocol error, reported once, in any split', (_name, bytes, message) => {
    for (let i = 0; i <= bytes.length; i++) {
      const events = parseFramesForTest([bytes.subarray(0, i), bytes.subarray(i), Buffer.from([0x82, 0x00])], NOW);
      expect(events.filter((e) => e.type === 'error')).toEqual([{ type: 'error', message }]);
      expect(events[events.length - 1].type).toBe('error');
    }
  });

  test('a close frame without a code reports 1005', () => {
    expect(plain(parseFramesForTest([Buffer.from([0x88, 0x00])], NOW))).toEqual([{ type: 'close', code: 1005 }]);
  });
});

describe('loadgen histogram layout', () => {
  const values = [0, 1, 2, 1023, 1024, 2047, 2048, 2049, 2050, 4095, 4096, 4097, 10_000, 123_456, 999_999, 1_000_000, 2 ** 20, 2 ** 20 + 1, 36_000_000, 3_599_999_999];
  for (let v = 3; v < 2 ** 33; v = Math.floor(v * 1.37) + 1) values.push(v);

  test('every bucket is one bucket of hdr-histogram-js (1 µs, 3 digits)', () => {
    const h = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 2 ** 34, numberOfSignificantValueDigits: 3, useWebAssembly: false }) as unknown as {
      lowestEquivalentValue(v: number): number;
    };
    for (const v of values) {
      const b = histogramBucketForTest(v);
      expect([v, b.lowest]).toEqual([v, h.lowestEquivalentValue(v)]);
    }
  });

  test('the JS fallback uses the same buckets', () => {
    for (const v of values) {
      const b = histogramBucketForTest(v);
      expect([v, BucketHistogram.index(v), BucketHistogram.lowest(b.index)]).toEqual([v, b.index, b.lowest]);
    }
  });
});
