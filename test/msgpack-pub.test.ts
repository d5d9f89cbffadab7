// The msgpack pub fast path (protocol/msgpack-pub.ts): a pub command's
// envelope read in place and its data kept as the publisher's bytes. It must
// answer every frame exactly as the general path (msgpackr, then
// validateCommand) does: the same command or the same error, and data bytes
// that decode to the same value. Checked on a seeded random corpus of
// commands, on every truncation of them, and on the envelope variations a
// client library may produce (map16, key order, unknown keys, duplicates).
import { Packr } from 'msgpackr';
import { ENCODING_MSGPACK, packr, parseMsgpackCommand, unpackr, validateCommand, type Command } from '../protocol/codec';
import { ProtocolError } from '../protocol/errors';
import { checkMsgpackData } from '../protocol/data';
import { readRawPub, skip } from '../protocol/msgpack-pub';

/** The general path, as it was before the fast one existed. */
function generalPath(bytes: Uint8Array): Command | ProtocolError {
  let value: unknown;
  try {
    value = unpackr.unpack(bytes);
  } catch {
    return new ProtocolError('BAD_MSGPACK', 'frame is not valid msgpack');
  }
  return validateCommand(value);
}

/** Deterministic PRNG (mulberry32). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randomValue(r: () => number, depth: number): unknown {
  const k = Math.floor(r() * (depth > 3 ? 9 : 12));
  switch (k) {
    case 0:
      return null;
    case 1:
      return r() < 0.5;
    case 2:
      return Math.floor(r() * 256) - 128; // fixints, int8, uint8
    case 3:
      return Math.floor(r() * 2 ** 32) * (r() < 0.5 ? -1 : 1); // 16/32-bit and beyond
    case 4:
      return Math.floor(r() * 2 ** 52); // uint64 range, exact
    case 5:
      return r() * 1e6 - 5e5; // float64
    case 6:
      return 'x'.repeat(Math.floor(r() * 40)) + (r() < 0.3 ? 'é漢🙂' : ''); // fixstr, str8, UTF-8
    case 7:
      return 'y'.repeat(Math.floor(r() * 70_000 * (r() < 0.1 ? 1 : 0.002))); // str16 and str32 sometimes
    case 8: {
      const b = new Uint8Array(Math.floor(r() * (r() < 0.1 ? 70_000 : 300)));
      for (let i = 0; i < b.length; i++) b[i] = (i * 31) & 0xff;
      return b;
    } // bin8/16/32
    case 9:
      return Array.from({ length: Math.floor(r() * (r() < 0.05 ? 20 : 5)) }, () => randomValue(r, depth + 1));
    case 10: {
      const o: Record<string, unknown> = {};
      const n = Math.floor(r() * (r() < 0.05 ? 20 : 5));
      for (let i = 0; i < n; i++) o[`k${i}${'z'.repeat(Math.floor(r() * 3))}`] = randomValue(r, depth + 1);
      return o;
    }
    default:
      return new Date(Math.floor(r() * 4e12)); // timestamp extension
  }
}

/** What a command means, comparable across both paths (data decoded). */
function meaning(c: Command | ProtocolError): unknown {
  if (c instanceof ProtocolError) return { error: c.code, id: c.id, message: c.message };
  if (c.op !== 'pub') return c;
  const { raw, data, ...rest } = c;
  return { ...rest, data: raw !== null ? unpackr.unpack(raw) : data };
}

describe('msgpack pub fast path', () => {
  test("a typical publish (bin data, ts, ack) takes the fast path and keeps the publisher's bytes", () => {
    const data = new Uint8Array(512).fill(7);
    const frame = packr.pack({ id: 12, op: 'pub', topic: '/bench/t/1', data, ack: false, ts: 1_764_000_000_000_000 });
    const cmd = parseMsgpackCommand(frame);
    if (cmd instanceof ProtocolError || cmd.op !== 'pub') throw new Error(`not a pub: ${JSON.stringify(cmd)}`);
    expect(cmd.raw).not.toBeNull();
    expect(Buffer.from(cmd.raw as Uint8Array).equals(Buffer.from(packr.pack(data)))).toBe(true);
    // A view into the frame, not a copy.
    expect((cmd.raw as Uint8Array).buffer).toBe(frame.buffer);
    expect(cmd).toMatchObject({ id: 12, topic: '/bench/t/1', ack: false, retain: false, ts: 1_764_000_000_000_000 });
    expect(ENCODING_MSGPACK).toBe(1);
  });

  test('1,000 random publishes: the same command as the general path, data decoding to the same value', () => {
    const r = rng(42);
    let fast = 0;
    for (let i = 0; i < 1000; i++) {
      const cmd: Record<string, unknown> = { id: r() < 0.5 ? i : `id-${i}`, op: 'pub', topic: `/t/${i % 7}`, data: randomValue(r, 0) };
      if (r() < 0.5) cmd.ack = r() < 0.5;
      if (r() < 0.3) cmd.retain = r() < 0.5;
      if (r() < 0.3) cmd.ts = Math.floor(r() * 2 ** 52);
      const frame = packr.pack(cmd);
      const got = parseMsgpackCommand(frame);
      expect({ i, got: meaning(got) }).toEqual({ i, got: meaning(generalPath(frame)) });
      if (readRawPub(frame) !== null) fast++;
    }
    // Nearly all take the fast path (the others: ext types the fast path leaves to msgpackr).
    expect(fast).toBeGreaterThan(950);
  });

  test('topics and ids of every length from 0 to 40 characters, ASCII and not, read as the general path reads them', () => {
    for (let l = 0; l <= 40; l++) {
      for (const topic of ['/' + 'abcdefghij'.repeat(5).slice(0, Math.max(0, l - 1)), '/é' + 'x'.repeat(Math.max(0, l - 2))]) {
        const t = topic.slice(0, Math.max(1, l));
        const frame = packr.pack({ id: 'k'.repeat(l), op: 'pub', topic: t, data: 1 });
        const fast = readRawPub(frame);
        expect(fast).not.toBeNull();
        expect({ l, topic: fast?.topic, id: fast?.id }).toEqual({ l, topic: t, id: 'k'.repeat(l) });
        expect({ l, got: meaning(parseMsgpackCommand(frame)) }).toEqual({ l, got: meaning(generalPath(frame)) });
      }
    }
  });

  test("every truncation of a publish gives the general path's answer (BAD_MSGPACK), never a command", () => {
    const r = rng(7);
    for (let i = 0; i < 40; i++) {
      const frame = packr.pack({ id: i, op: 'pub', topic: '/cut', data: randomValue(r, 0), ack: true, ts: 123456789012 });
      for (let n = 0; n < frame.length; n++) {
        const cut = frame.subarray(0, n);
        expect({ i, n, got: meaning(parseMsgpackCommand(cut)) }).toEqual({ i, n, got: meaning(generalPath(cut)) });
      }
    }
  });

  test('envelope variations: map16, key order, unknown keys, duplicate keys, bad field types, other ops', () => {
    const cases: Uint8Array[] = [];
    const p16 = new Packr({ useRecords: false, variableMapSize: false }); // always map16 headers
    cases.push(p16.pack({ id: 1, op: 'pub', topic: '/a', data: { x: 1 } }));
    cases.push(packr.pack({ data: [1, 2, 3], topic: '/a', op: 'pub', id: 'z' }));
    cases.push(packr.pack({ id: 1, op: 'pub', topic: '/a', data: 'x', extra: 5, other: 'y' }));
    cases.push(packr.pack({ id: 1, op: 'pub', topic: '/a', data: 'x', nested: { a: [1] } })); // non-scalar unknown key: general path
    cases.push(packr.pack({ id: 1, op: 'pub', topic: '/a' })); // no data
    cases.push(packr.pack({ id: 1, op: 'pub', topic: '/a', data: null })); // nil data is data
    cases.push(packr.pack({ id: 1, op: 'pub', topic: 'bad topic', data: 1 }));
    cases.push(packr.pack({ id: 1, op: 'pub', topic: '/a', data: 1, ack: 'yes' }));
    cases.push(packr.pack({ id: 1, op: 'pub', topic: '/a', data: 1, ts: -5 }));
    cases.push(packr.pack({ id: 1, op: 'pub', topic: '/a', data: 1, ts: 2 ** 60 }));
    cases.push(packr.pack({ op: 'pub', topic: '/a', data: 1 })); // no id
    // Envelope numbers of every width the fast path reads itself (int8/16/32, uint16/32, float64).
    for (const id of [-100, -1234, -70000, -2147483648, 65535, 4294967295, 3.5]) cases.push(packr.pack({ id, op: 'pub', topic: '/a', data: 1 }));
    cases.push(packr.pack({ id: 1, op: 'sub', topics: ['/a'] }));
    cases.push(packr.pack({ id: 1, op: 'ping' }));
    cases.push(packr.pack([1, 2]));
    // Duplicate keys, written by hand: fixmap of 5 with "data" twice (the last wins, as in msgpackr).
    const dupFrame = Uint8Array.from([
      0x85, 0xa2, 0x69, 0x64, 0x01, 0xa2, 0x6f, 0x70, 0xa3, 0x70, 0x75, 0x62, 0xa5, 0x74, 0x6f, 0x70, 0x69, 0x63, 0xa2, 0x2f, 0x61, 0xa4, 0x64, 0x61, 0x74, 0x61, 0x01, 0xa4, 0x64, 0x61, 0x74, 0x61,
      0x02,
    ]);
    cases.push(dupFrame);
    // Trailing bytes after the map.
    cases.push(Uint8Array.from([...packr.pack({ id: 1, op: 'pub', topic: '/a', data: 1 }), 0x00]));
    for (const [i, frame] of cases.entries()) {
      expect({ i, got: meaning(parseMsgpackCommand(frame)) }).toEqual({ i, got: meaning(generalPath(frame)) });
    }
    expect(readRawPub(cases[0])).not.toBeNull(); // map16 envelope: fast
    const dup = parseMsgpackCommand(dupFrame);
    expect(dup).toMatchObject({ op: 'pub', raw: Uint8Array.from([0x02]) });
    // An extension other than the timestamp inside data (ext type 5): msgpackr cannot decode it; both paths refuse it as data.
    const ext5 = Uint8Array.from([
      0x84, 0xa2, 0x69, 0x64, 0x01, 0xa2, 0x6f, 0x70, 0xa3, 0x70, 0x75, 0x62, 0xa5, 0x74, 0x6f, 0x70, 0x69, 0x63, 0xa2, 0x2f, 0x61, 0xa4, 0x64, 0x61, 0x74, 0x61, 0xd4, 0x05, 0x00,
    ]);
    expect(readRawPub(ext5)).not.toBeNull();
    expect(meaning(parseMsgpackCommand(ext5))).toMatchObject({ error: 'BAD_DATA', id: 1 });
    expect(generalPath(ext5)).toMatchObject({ code: 'BAD_MSGPACK' });
  });

  test('skip: the end of every value, -1 for truncated ones; structure only, at any depth and extension type', () => {
    const r = rng(99);
    for (let i = 0; i < 500; i++) {
      const v = packr.pack(randomValue(r, 0));
      expect(skip(v, 0)).toBe(v.length);
      if (v.length > 1) expect(skip(v.subarray(0, v.length - 1), 0)).toBe(-1);
    }
    // 60,000 levels: no recursion, no stack overflow (the data rule refuses past 64: checkMsgpackData).
    const deep = new Uint8Array(60_001).fill(0x91);
    deep[60_000] = 0x01;
    expect(skip(deep, 0)).toBe(deep.length);
    expect(checkMsgpackData(deep)).toMatch(/nested more than 64/);
    expect(skip(Uint8Array.from([0xd4, 0x05, 0x00]), 0)).toBe(3);
    expect(checkMsgpackData(Uint8Array.from([0xd4, 0x05, 0x00]))).toMatch(/extension of type 5/);
    expect(skip(Uint8Array.from([0xc1]), 0)).toBe(-1);
    // An array header claiming more items than there are bytes.
    expect(skip(Uint8Array.from([0xdd, 0xff, 0xff, 0xff, 0xff]), 0)).toBe(-1);
  });
});
