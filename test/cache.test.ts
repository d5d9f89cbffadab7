// The per-topic message cache (workgroups/cache.ts): limits, global order,
// replay bytes across blocks and chunks, snapshots; plus a randomized run
// against a plain-array model of the same rules.
import { MessageCache, CacheFlag, type MessageCacheOptions } from '../workgroups/cache';
import { seeded as rng } from './helpers/random';

const SEC = 1_000_000;
const T0 = 1_700_000_000 * SEC;

/** Deterministic payload for (topic, seq) of the given length. */
function payload(topic: number, seq: number, len: number): Uint8Array {
  const b = new Uint8Array(len);
  let x = (topic * 2654435761 + seq * 40503) >>> 0;
  for (let i = 0; i < len; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

interface Seen {
  seq: number;
  ts: number;
  flags: number;
  data: Uint8Array;
}

function replay(cache: MessageCache, topic: number, after: number): Seen[] {
  const out: Seen[] = [];
  const n = cache.forEach(topic, after, (seq, ts, flags, data) => {
    out.push({ seq, ts, flags, data: data.slice() });
  });
  expect(n).toBe(out.length);
  return out;
}

function seqs(cache: MessageCache, topic: number, after = 0): number[] {
  return replay(cache, topic, after).map((m) => m.seq);
}

function stored(len: number): number {
  return 24 + ((len + 7) & ~7);
}

function fill(cache: MessageCache, topic: number, from: number, to: number, len: number, ts = T0, tsStep = 0): void {
  for (let s = from; s <= to; s++) cache.append(topic, s, ts + (s - from) * tsStep, 0, payload(topic, s, len));
}

describe('limits', () => {
  test('keeps the last N messages of a topic', () => {
    const cache = new MessageCache({ maxMessagesPerTopic: 10 });
    fill(cache, 3, 1, 25, 40);
    expect(cache.range(3)).toEqual({ first: 16, last: 25 });
    expect(seqs(cache, 3)).toEqual([16, 17, 18, 19, 20, 21, 22, 23, 24, 25]);
    expect(cache.messages).toBe(10);
    expect(cache.evictedForCount).toBe(15);
    expect(cache.evictions).toBe(15);
    expect(cache.bytes).toBe(10 * 40);
    expect(cache.storedBytes).toBe(10 * stored(40));
  });

  test('keeps at most maxBytesPerTopic stored bytes per topic', () => {
    const cache = new MessageCache({ maxBytesPerTopic: 10 * stored(100) });
    fill(cache, 1, 1, 30, 100);
    fill(cache, 2, 1, 5, 100);
    expect(cache.range(1)).toEqual({ first: 21, last: 30 });
    expect(cache.range(2)).toEqual({ first: 1, last: 5 });
    expect(cache.evictedForTopicBytes).toBe(20);
    // A bigger message pushes out as many old ones as it needs.
    cache.append(1, 31, T0, 0, payload(1, 31, 350));
    expect(cache.range(1)).toEqual({ first: 24, last: 31 });
    expect(cache.storedBytes - 5 * stored(100)).toBe(7 * stored(100) + stored(350));
    expect(7 * stored(100) + stored(350)).toBeLessThanOrEqual(10 * stored(100));
    expect(8 * stored(100) + stored(350)).toBeGreaterThan(10 * stored(100));
  });

  test('drops messages older than maxAgeSeconds, on append, on read and on expire()', () => {
    const cache = new MessageCache({ maxAgeSeconds: 10 });
    // Topic 2: one message, never another.
    cache.append(2, 1, T0 + SEC / 2, 0, payload(2, 1, 8));
    // Topic 1: one message a second for 20 s.
    for (let s = 1; s <= 20; s++) cache.append(1, s, T0 + s * SEC, 0, payload(1, s, 8));
    // On append at 20 s, topic 1's messages older than 10 s (ts < 10 s) went already.
    expect(cache.evictedForAge).toBe(9);
    expect(cache.messages).toBe(12);
    // expire(now) takes the oldest over all topics: topic 2's seq 1 first.
    expect(cache.expire(T0 + 10.4 * SEC)).toBe(1);
    expect(cache.range(2)).toBeNull();
    expect(cache.range(1)).toEqual({ first: 10, last: 20 });
    // At 25 s, older than 15 s: seqs 10..14.
    expect(cache.expire(T0 + 25 * SEC)).toBe(5);
    expect(cache.range(1)).toEqual({ first: 15, last: 20 });
    expect(cache.covers(1, 14)).toBe(true);
    expect(cache.covers(1, 13)).toBe(false);
    expect(cache.expire(T0 + 100 * SEC)).toBe(6);
    expect(cache.messages).toBe(0);
    expect(cache.topics).toBe(0);
    expect(cache.storedBytes).toBe(0);
  });

  test('a read never returns a message older than the limit at the newest clock seen', () => {
    const cache = new MessageCache({ maxAgeSeconds: 10 });
    cache.append(2, 1, T0, 0, payload(2, 1, 8));
    cache.append(2, 2, T0 + 5 * SEC, 0, payload(2, 2, 8));
    expect(cache.range(2)).toEqual({ first: 1, last: 2 });
    // Another topic's message at 12 s moves the clock: topic 2's seq 1 is 12 s old now.
    cache.append(3, 1, T0 + 12 * SEC, 0, payload(3, 1, 8));
    expect(cache.range(2)).toEqual({ first: 2, last: 2 });
    expect(seqs(cache, 2)).toEqual([2]);
    expect(cache.covers(2, 0)).toBe(false);
    expect(cache.covers(2, 1)).toBe(true);
  });

  test('no age limit with maxAgeSeconds Infinity', () => {
    const cache = new MessageCache({ maxAgeSeconds: Infinity });
    fill(cache, 1, 1, 5, 10, T0, 1000 * SEC);
    expect(cache.expire(T0 + 1e6 * SEC)).toBe(0);
    expect(cache.range(1)).toEqual({ first: 1, last: 5 });
  });

  test('the global budget evicts the oldest messages across topics first', () => {
    const per = stored(100);
    const cache = new MessageCache({ maxTotalBytes: 20 * per });
    // Interleave three topics: arrival order A1 B1 C1 A2 B2 C2 ...
    for (let s = 1; s <= 6; s++) for (const t of [0, 1, 2]) cache.append(t, s, T0 + s, 0, payload(t, s, 100));
    expect(cache.messages).toBe(18);
    // Three more on topic 3 push the total to 21: the oldest (A1) goes.
    for (let s = 1; s <= 3; s++) cache.append(3, s, T0 + 10 + s, 0, payload(3, s, 100));
    expect(cache.messages).toBe(20);
    expect(cache.evictedForTotalBytes).toBe(1);
    expect(cache.range(0)).toEqual({ first: 2, last: 6 });
    expect(cache.range(1)).toEqual({ first: 1, last: 6 });
    // Five more: B1 C1 A2 B2 C2 go, in that order.
    for (let s = 4; s <= 8; s++) cache.append(3, s, T0 + 10 + s, 0, payload(3, s, 100));
    expect(cache.evictedForTotalBytes).toBe(6);
    expect(cache.range(0)).toEqual({ first: 3, last: 6 });
    expect(cache.range(1)).toEqual({ first: 3, last: 6 });
    expect(cache.range(2)).toEqual({ first: 3, last: 6 });
    expect(cache.range(3)).toEqual({ first: 1, last: 8 });
    expect(cache.storedBytes).toBeLessThanOrEqual(20 * per);
  });

  test('global eviction skips messages a topic already evicted for its own limits', () => {
    const per = stored(64);
    const cache = new MessageCache({ maxMessagesPerTopic: 3, maxTotalBytes: 8 * per });
    // Topic 0 gets 10 messages (7 evicted by count), then a quiet topic 1 gets 2.
    fill(cache, 0, 1, 10, 64);
    fill(cache, 1, 1, 2, 64);
    expect(cache.messages).toBe(5);
    // Topics 2 and 3 add 3 and 1: 9 > 8, so the oldest live message goes: topic 0's seq 8, not a dead one.
    fill(cache, 2, 1, 3, 64);
    expect(cache.evictedForTotalBytes).toBe(0);
    fill(cache, 3, 1, 1, 64);
    expect(cache.range(0)).toEqual({ first: 9, last: 10 });
    expect(cache.range(1)).toEqual({ first: 1, last: 2 });
    expect(cache.range(2)).toEqual({ first: 1, last: 3 });
    expect(cache.evictedForTotalBytes).toBe(1);
  });

  test('a message bigger than the per-topic limit is not cached and clears the history before it', () => {
    const cache = new MessageCache({ maxBytesPerTopic: 4096 });
    fill(cache, 1, 1, 5, 100);
    cache.append(1, 6, T0, 0, new Uint8Array(5000));
    expect(cache.uncacheable).toBe(1);
    expect(cache.range(1)).toBeNull();
    expect(cache.lastSeq(1)).toBe(6);
    expect(cache.covers(1, 3)).toBe(false);
    expect(cache.covers(1, 6)).toBe(true);
    cache.append(1, 7, T0, 0, payload(1, 7, 100));
    expect(cache.range(1)).toEqual({ first: 7, last: 7 });
    expect(cache.covers(1, 6)).toBe(true);
    expect(cache.covers(1, 5)).toBe(false);
  });

  test('a seq that does not follow the last one restarts the topic history', () => {
    const cache = new MessageCache();
    fill(cache, 1, 1, 5, 10);
    cache.append(1, 9, T0, 0, payload(1, 9, 10));
    expect(cache.range(1)).toEqual({ first: 9, last: 9 });
    expect(cache.evictedForGap).toBe(5);
    expect(cache.covers(1, 5)).toBe(false);
    cache.append(1, 1, T0, 0, payload(1, 1, 10));
    expect(cache.range(1)).toEqual({ first: 1, last: 1 });
    expect(cache.messages).toBe(1);
  });

  test('rejects limits that make no sense', () => {
    expect(() => new MessageCache({ maxMessagesPerTopic: -1 })).toThrow(RangeError);
    expect(() => new MessageCache({ maxMessagesPerTopic: 1.5 })).toThrow(RangeError);
    expect(() => new MessageCache({ maxAgeSeconds: 0 })).toThrow(RangeError);
    expect(() => new MessageCache({ maxBytesPerTopic: 0 })).toThrow(RangeError);
    expect(() => new MessageCache({ maxTotalBytes: Infinity })).toThrow(RangeError);
    expect(() => new MessageCache({ arenaChunkBytes: 100_000 })).toThrow(RangeError);
  });
});

describe('covers and range', () => {
  test('after count evictions', () => {
    const cache = new MessageCache({ maxMessagesPerTopic: 100 });
    fill(cache, 7, 1, 500, 20);
    expect(cache.range(7)).toEqual({ first: 401, last: 500 });
    expect(cache.firstSeq(7)).toBe(401);
    expect(cache.lastSeq(7)).toBe(500);
    expect(cache.covers(7, 500)).toBe(true);
    expect(cache.covers(7, 450)).toBe(true);
    expect(cache.covers(7, 400)).toBe(true);
    expect(cache.covers(7, 399)).toBe(false);
    expect(cache.covers(7, 0)).toBe(false);
    expect(cache.covers(7, 501)).toBe(false);
    expect(seqs(cache, 7, 495)).toEqual([496, 497, 498, 499, 500]);
    expect(seqs(cache, 7, 500)).toEqual([]);
    // A partial replay when not covered: what is there, from the first.
    expect(seqs(cache, 7, 10).length).toBe(100);
  });

  test('unknown and empty topics', () => {
    const cache = new MessageCache();
    expect(cache.range(5)).toBeNull();
    expect(cache.covers(5, 0)).toBe(true);
    expect(cache.covers(5, 1)).toBe(false);
    expect(cache.covers(50_000, 0)).toBe(true);
    expect(
      cache.forEach(50_000, 0, () => {
        throw new Error('no visit');
      }),
    ).toBe(0);
    expect(cache.firstSeq(5)).toBe(0);
    expect(cache.holds(5)).toBe(false);
  });

  test('after drop', () => {
    const cache = new MessageCache();
    fill(cache, 2, 1, 50, 30);
    fill(cache, 3, 1, 10, 30);
    expect(cache.holds(2)).toBe(true);
    cache.drop(2);
    expect(cache.holds(2)).toBe(false);
    expect(cache.range(2)).toBeNull();
    expect(cache.lastSeq(2)).toBe(0);
    expect(cache.covers(2, 0)).toBe(true);
    expect(cache.messages).toBe(10);
    expect(cache.topics).toBe(1);
    // The id can be reused for a new topic whose seqs start again at 1.
    fill(cache, 2, 1, 3, 30);
    expect(seqs(cache, 2)).toEqual([1, 2, 3]);
    expect(seqs(cache, 3)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  });
});

describe('replay', () => {
  test('forEach gives seq, timestamp, flags and bytes intact in order', () => {
    const cache = new MessageCache();
    for (let s = 1; s <= 20; s++) cache.append(1, s, T0 + s * 1000, s % 2 === 0 ? CacheFlag.MSGPACK : 0, payload(1, s, s * 13));
    const got = replay(cache, 1, 0);
    expect(got.map((m) => m.seq)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    for (const m of got) {
      expect(m.ts).toBe(T0 + m.seq * 1000);
      expect(m.flags).toBe(m.seq % 2 === 0 ? CacheFlag.MSGPACK : 0);
      expect(Buffer.from(m.data).equals(Buffer.from(payload(1, m.seq, m.seq * 13)))).toBe(true);
    }
  });

  test('forEachRaw visits the same bytes without views', () => {
    const cache = new MessageCache();
    fill(cache, 4, 1, 30, 77);
    const seen: number[] = [];
    const n = cache.forEachRaw(4, 10, (seq, _ts, _flags, arena, offset, length) => {
      expect(length).toBe(77);
      expect(Buffer.from(arena.buffer, arena.byteOffset + offset, length).equals(Buffer.from(payload(4, seq, 77)))).toBe(true);
      seen.push(seq);
    });
    expect(n).toBe(20);
    expect(seen).toEqual(Array.from({ length: 20 }, (_, i) => i + 11));
  });

  test('empty payloads', () => {
    const cache = new MessageCache();
    fill(cache, 1, 1, 5, 0);
    const got = replay(cache, 1, 2);
    expect(got.map((m) => [m.seq, m.data.length])).toEqual([
      [3, 0],
      [4, 0],
      [5, 0],
    ]);
    expect(cache.storedBytes).toBe(5 * 24);
  });

  test('bytes intact across blocks and arena chunks, while blocks are freed and reused', () => {
    let chunks = 0;
    const cache = new MessageCache({
      arenaChunkBytes: 65536,
      maxMessagesPerTopic: 200,
      maxBytesPerTopic: 1 << 20,
      allocate: (bytes) => {
        chunks++;
        return new SharedArrayBuffer(bytes);
      },
    });
    // Five topics with sizes that do not divide a block, some near the chunk size.
    const sizes = [1, 333, 4097, 20000, 60000];
    const last = [0, 0, 0, 0, 0];
    for (let round = 0; round < 400; round++) {
      for (let t = 0; t < sizes.length; t++) {
        if (t === 4 && round % 7 !== 0) continue;
        const s = ++last[t];
        cache.append(t, s, T0 + round, t, payload(t, s, sizes[t] + (s % 5)));
      }
    }
    expect(chunks).toBeGreaterThan(10);
    for (let t = 0; t < sizes.length; t++) {
      const got = replay(cache, t, 0);
      const r = cache.range(t);
      expect(r).not.toBeNull();
      expect(got.length).toBe(cache.countOf(t));
      expect(got[0].seq).toBe(r?.first);
      expect(got[got.length - 1].seq).toBe(last[t]);
      for (let i = 0; i < got.length; i++) {
        const m = got[i];
        if (i > 0) expect(m.seq).toBe(got[i - 1].seq + 1);
        expect(m.flags).toBe(t);
        expect(Buffer.from(m.data).equals(Buffer.from(payload(t, m.seq, sizes[t] + (m.seq % 5))))).toBe(true);
      }
    }
    // The 60000-byte entries need a whole 64 KiB chunk each.
    expect(cache.countOf(4)).toBeGreaterThan(1);
  });

  test('arena chunks are released when emptied and reused after', () => {
    let allocations = 0;
    const cache = new MessageCache({
      arenaChunkBytes: 65536,
      allocate: (n) => {
        allocations++;
        return new ArrayBuffer(n);
      },
    });
    for (let t = 0; t < 50; t++) fill(cache, t, 1, 40, 1000, T0);
    expect(cache.arenaBytes).toBeGreaterThanOrEqual(cache.storedBytes);
    expect(cache.logBytes).toBeLessThan(cache.storedBytes + 65536);
    for (let t = 0; t < 50; t++) cache.drop(t);
    expect(cache.messages).toBe(0);
    // The dead segments go once expire() passes them; at most the head and two spares stay.
    cache.expire(T0);
    expect(cache.logBytes).toBeLessThanOrEqual(65536);
    expect(cache.arenaBytes).toBeLessThanOrEqual(3 * 65536);
    const before = allocations;
    for (let t = 0; t < 50; t++) fill(cache, t, 1, 40, 1000, T0);
    expect(allocations - before).toBeGreaterThan(0);
    for (let t = 0; t < 50; t++) {
      const got = replay(cache, t, 0);
      expect(got.length).toBe(40);
      for (const m of got) expect(Buffer.from(m.data).equals(Buffer.from(payload(t, m.seq, 1000)))).toBe(true);
    }
  });

  test('prefetch: after the first segment, each new one is a chunk given ahead of need; a failed or bad prefetch falls back to allocate', async () => {
    const chunk = 65536;
    let allocations = 0;
    let asked = 0;
    let mode: 'ok' | 'reject' | 'short' = 'ok';
    const given: ArrayBuffer[] = [];
    const cache = new MessageCache({
      arenaChunkBytes: chunk,
      maxMessagesPerTopic: 100_000,
      maxBytesPerTopic: 64 * 1024 * 1024,
      allocate: (n) => {
        allocations++;
        return new ArrayBuffer(n);
      },
      prefetch: async (n) => {
        asked++;
        if (mode === 'reject') throw new Error('no memory today');
        const b = new ArrayBuffer(mode === 'short' ? n - 8 : n);
        if (mode === 'ok') given.push(b);
        return b;
      },
    });
    const settle = () => new Promise((r) => setImmediate(r));
    // About 60 messages of 1,000 bytes per 64 KiB segment: 600 messages fill ten segments.
    let seq = 0;
    const grow = async (segments: number) => {
      for (let i = 0; i < segments; i++) {
        for (let k = 0; k < 60; k++) cache.append(1, ++seq, T0, 0, payload(1, seq, 1000));
        await settle();
      }
    };
    await grow(10);
    // The first segment from allocate; every later one from a prefetched chunk, asked for when the one before was taken.
    expect(allocations).toBe(1);
    expect(cache.prefetchedSegments).toBeGreaterThanOrEqual(9);
    expect(asked).toBe(cache.prefetchedSegments + 1);
    // The chunk waiting for the next segment is counted as held memory.
    expect(cache.arenaBytes).toBeGreaterThanOrEqual(cache.logBytes + chunk);
    mode = 'reject';
    await settle(); // (the request in flight was already answered; the next ones fail)
    const before = { allocations, prefetched: cache.prefetchedSegments };
    await grow(5);
    expect(cache.prefetchFailures).toBeGreaterThanOrEqual(3);
    expect(allocations - before.allocations).toBeGreaterThanOrEqual(3);
    mode = 'short';
    await grow(3);
    expect(cache.prefetchFailures).toBeGreaterThanOrEqual(5);
    // Whatever the chunks came from, every message is intact.
    const got = replay(cache, 1, 0);
    expect(got.length).toBe(seq);
    for (const m of got) if (!Buffer.from(m.data).equals(Buffer.from(payload(1, m.seq, 1000)))) throw new Error(`message ${m.seq} damaged`);
    expect(given.length).toBeGreaterThanOrEqual(9);
  });

  test('a quiet topic stays oldest while a hot topic churns through the log', () => {
    // The hot topic's count evictions leave the log full of dead entries; the cleaner moves the quiet topic's forward.
    const cache = new MessageCache({ maxMessagesPerTopic: 5, maxTotalBytes: 100 * stored(8) });
    fill(cache, 9, 1, 5, 8);
    fill(cache, 1, 1, 100_000, 8);
    expect(cache.range(9)).toEqual({ first: 1, last: 5 });
    expect(cache.range(1)).toEqual({ first: 99_996, last: 100_000 });
    expect(cache.metadataBytes).toBeLessThan(200_000);
    // Fill up to the budget with other topics: then the quiet topic's messages go first.
    for (let t = 10; t < 28; t++) fill(cache, t, 1, 5, 8);
    expect(cache.messages).toBe(100);
    expect(cache.evictedForTotalBytes).toBe(0);
    fill(cache, 28, 1, 1, 8);
    expect(cache.range(9)).toEqual({ first: 2, last: 5 });
    fill(cache, 29, 1, 4, 8);
    expect(cache.range(9)).toBeNull();
    expect(cache.range(10)).toEqual({ first: 1, last: 5 });
    expect(cache.range(1)).toEqual({ first: 99_996, last: 100_000 });
  });

  test('chunks carved from one big SharedArrayBuffer (an allocator giving Uint8Array views)', () => {
    const chunk = 65536;
    const big = new SharedArrayBuffer(8 * chunk + 8);
    let next = 8; // not at the buffer's start, to prove offsets are honoured
    const cache = new MessageCache({
      arenaChunkBytes: chunk,
      maxTotalBytes: 4 * chunk,
      allocate: (bytes) => {
        if (next + bytes > big.byteLength) throw new Error('arena exhausted');
        const v = new Uint8Array(big, next, bytes);
        next += bytes;
        return v;
      },
    });
    for (let s = 1; s <= 300; s++) cache.append(s % 7, Math.ceil(s / 7), T0 + s, 0, payload(s % 7, Math.ceil(s / 7), 700));
    cache.setSnapshot(3, 1, T0, CacheFlag.RETAINED, payload(3, 1, 100), Infinity);
    for (let t = 0; t < 7; t++) for (const m of replay(cache, t, 0)) expect(Buffer.from(m.data).equals(Buffer.from(payload(t, m.seq, 700)))).toBe(true);
    expect(Buffer.from(cache.snapshot(3)?.data ?? []).equals(Buffer.from(payload(3, 1, 100)))).toBe(true);
    expect(() => new MessageCache({ arenaChunkBytes: chunk, allocate: () => new Uint8Array(big, 4, chunk) }).append(1, 1, T0, 0, new Uint8Array(1))).toThrow(RangeError);
  });

  test('a visitor may not change the cache', () => {
    const cache = new MessageCache();
    fill(cache, 1, 1, 3, 8);
    expect(() => cache.forEach(1, 0, () => cache.append(1, 4, T0, 0, new Uint8Array(1)))).toThrow(/visitor/);
    // And the cache is usable afterwards.
    cache.append(1, 4, T0, 0, payload(1, 4, 8));
    expect(seqs(cache, 1)).toEqual([1, 2, 3, 4]);
  });
});

describe('cleaner', () => {
  test('quiet topics keep their history through many laps of a hot topic, and the log stays small', () => {
    const chunk = 65536;
    const cache = new MessageCache({ arenaChunkBytes: chunk, maxMessagesPerTopic: 50 });
    for (let q = 100; q < 110; q++) fill(cache, q, 1, 20, 300 + q);
    let hotSeq = 0;
    for (let round = 0; round < 30; round++) {
      // About 10 log segments of hot traffic per round, all but 50 messages dead at once.
      for (let i = 0; i < 1000; i++) cache.append(1, ++hotSeq, T0 + hotSeq, 3, payload(1, hotSeq, 600 + (hotSeq % 40)));
      // A quiet topic gets one message every third round.
      if (round % 3 === 0) {
        const q = 100 + ((round / 3) % 10);
        cache.append(q, cache.lastSeq(q) + 1, T0 + hotSeq, 0, payload(q, cache.lastSeq(q) + 1, 300 + q));
      }
      expect(cache.logBytes).toBeLessThanOrEqual(cache.storedBytes * 1.25 + 3 * chunk);
    }
    expect(cache.cleanerSegments).toBeGreaterThan(100);
    expect(cache.cleanerCopiedBytes).toBeGreaterThan(0);
    expect(cache.evictedForSpace).toBe(0);
    expect(cache.evictedForTotalBytes).toBe(0);
    for (let q = 100; q < 110; q++) {
      const got = replay(cache, q, 0);
      expect(got.length).toBe(cache.lastSeq(q));
      expect(got.map((m) => m.seq)).toEqual(Array.from({ length: got.length }, (_, i) => i + 1));
      for (const m of got) expect(Buffer.from(m.data).equals(Buffer.from(payload(q, m.seq, 300 + q)))).toBe(true);
    }
    const hot = replay(cache, 1, 0);
    expect(hot.map((m) => m.seq)).toEqual(Array.from({ length: 50 }, (_, i) => hotSeq - 49 + i));
    for (const m of hot) {
      expect(m.flags).toBe(3);
      expect(Buffer.from(m.data).equals(Buffer.from(payload(1, m.seq, 600 + (m.seq % 40))))).toBe(true);
    }
    // Replays from the middle, reached from either end of the topic's list.
    expect(seqs(cache, 1, hotSeq - 3)).toEqual([hotSeq - 2, hotSeq - 1, hotSeq]);
    expect(seqs(cache, 1, hotSeq - 48)).toEqual(Array.from({ length: 48 }, (_, i) => hotSeq - 47 + i));
  });

  test('the budget evicts the oldest when every message is live', () => {
    const chunk = 65536;
    const cache = new MessageCache({ arenaChunkBytes: chunk, maxTotalBytes: 4 * chunk, maxMessagesPerTopic: 3 });
    // 2,000 topics of 3 live messages each: about 1.6 MiB wanted, 256 KiB allowed.
    for (let round = 1; round <= 3; round++) for (let t = 0; t < 2000; t++) cache.append(t, round, T0 + round, 0, payload(t, round, 250));
    const kept = Math.floor((4 * chunk) / stored(250));
    expect(cache.messages).toBe(kept);
    expect(cache.logBytes).toBeLessThanOrEqual(cache.maxSegments * chunk);
    expect(cache.evictedForTotalBytes).toBe(6000 - kept);
    expect(cache.evictedForSpace).toBe(0);
    // The newest survive: round 3's last topics, one message each.
    expect(cache.range(1999)).toEqual({ first: 3, last: 3 });
    expect(cache.range(2000 - kept)).toEqual({ first: 3, last: 3 });
    expect(cache.range(1999 - kept)).toBeNull();
    for (let t = 1990; t < 2000; t++) for (const m of replay(cache, t, 0)) expect(Buffer.from(m.data).equals(Buffer.from(payload(t, m.seq, 250)))).toBe(true);
  });

  test('at the log cap with a fully live tail, it copies a bounded amount, then evicts', () => {
    const chunk = 65536;
    const cache = new MessageCache({ arenaChunkBytes: chunk, maxTotalBytes: 16 * chunk, maxMessagesPerTopic: 10 });
    // 14 segments of quiet, live messages, then a hot topic whose messages die ten appends later.
    const quiet = Math.floor((14 * chunk) / stored(250));
    for (let t = 10; t < 10 + quiet; t++) cache.append(t, 1, T0, 0, payload(t, 1, 250));
    let hotSeq = 0;
    for (let i = 0; i < 20_000; i++) {
      cache.append(1, ++hotSeq, T0 + hotSeq, 0, payload(1, hotSeq, 250));
      if (i % 100 === 0) expect(cache.logBytes).toBeLessThanOrEqual(cache.maxSegments * chunk);
    }
    expect(cache.evictedForSpace).toBeGreaterThan(0);
    expect(cache.cleanerCopiedBytes).toBeGreaterThan(0);
    expect(cache.storedBytes).toBeLessThanOrEqual(16 * chunk);
    expect(seqs(cache, 1)).toEqual(Array.from({ length: 10 }, (_, i) => hotSeq - 9 + i));
    let left = 0;
    for (let t = 10; t < 10 + quiet; t++) {
      for (const m of replay(cache, t, 0)) {
        expect(Buffer.from(m.data).equals(Buffer.from(payload(t, 1, 250)))).toBe(true);
        left++;
      }
    }
    expect(left).toBe(quiet - cache.evictedForSpace);
    expect(left).toBeGreaterThan(0);
  });
});

describe('caching off', () => {
  test('maxMessagesPerTopic 0 keeps nothing and covers only the present', () => {
    let allocations = 0;
    const cache = new MessageCache({
      maxMessagesPerTopic: 0,
      allocate: (n) => {
        allocations++;
        return new ArrayBuffer(n);
      },
    });
    expect(cache.enabled).toBe(false);
    fill(cache, 1, 1, 100, 512);
    expect(cache.messages).toBe(0);
    expect(cache.bytes).toBe(0);
    expect(cache.range(1)).toBeNull();
    expect(cache.lastSeq(1)).toBe(100);
    expect(cache.covers(1, 100)).toBe(true);
    expect(cache.covers(1, 99)).toBe(false);
    expect(
      cache.forEach(1, 0, () => {
        throw new Error('no visit');
      }),
    ).toBe(0);
    expect(allocations).toBe(0);
  });
});

describe('snapshots', () => {
  test('set, replace, read, expire', () => {
    const cache = new MessageCache();
    expect(cache.snapshot(1)).toBeNull();
    expect(cache.setSnapshot(1, 10, T0, CacheFlag.RETAINED, payload(1, 10, 300), T0 + 60 * SEC)).toBe(true);
    expect(cache.setSnapshot(2, 3, T0, CacheFlag.MSGPACK | CacheFlag.RETAINED, payload(2, 3, 5), T0 + 30 * SEC)).toBe(true);
    expect(cache.setSnapshot(3, 7, T0, 0, payload(3, 7, 5), Infinity)).toBe(true);
    expect(cache.snapshots).toBe(3);
    expect(cache.snapshotBytes).toBe(310);
    const s1 = cache.snapshot(1);
    expect(s1?.seq).toBe(10);
    expect(s1?.tsMicros).toBe(T0);
    expect(s1?.flags).toBe(CacheFlag.RETAINED);
    expect(Buffer.from(s1?.data ?? []).equals(Buffer.from(payload(1, 10, 300)))).toBe(true);
    // Replace topic 1's with a later one (a longer expiry).
    cache.setSnapshot(1, 11, T0 + SEC, CacheFlag.RETAINED, payload(1, 11, 2000), T0 + 90 * SEC);
    expect(cache.snapshot(1)?.seq).toBe(11);
    expect(Buffer.from(cache.snapshot(1)?.data ?? []).equals(Buffer.from(payload(1, 11, 2000)))).toBe(true);
    expect(cache.snapshotBytes).toBe(2010);
    // At 60 s only topic 2's has expired; topic 1's first expiry is stale.
    expect(cache.snapshot(2, T0 + 31 * SEC)).toBeNull();
    expect(cache.expireSnapshots(T0 + 60 * SEC)).toBe(1);
    expect(cache.snapshot(2)).toBeNull();
    expect(cache.snapshot(1)?.seq).toBe(11);
    expect(cache.expireSnapshots(T0 + 90 * SEC)).toBe(1);
    expect(cache.snapshot(1)).toBeNull();
    expect(cache.expireSnapshots(T0 + 1e9 * SEC)).toBe(0);
    expect(cache.snapshot(3)?.seq).toBe(7);
    expect(cache.snapshots).toBe(1);
    cache.clearSnapshot(3);
    expect(cache.snapshots).toBe(0);
    expect(cache.snapshotBytes).toBe(0);
  });

  test('snapshots are outside the history budget and survive history eviction', () => {
    const cache = new MessageCache({ maxTotalBytes: 10 * stored(100) });
    cache.setSnapshot(1, 1, T0, 0, payload(1, 1, 100), Infinity);
    fill(cache, 1, 1, 50, 100);
    fill(cache, 2, 1, 50, 100);
    expect(cache.storedBytes).toBeLessThanOrEqual(10 * stored(100));
    expect(Buffer.from(cache.snapshot(1)?.data ?? []).equals(Buffer.from(payload(1, 1, 100)))).toBe(true);
    expect(cache.holds(1)).toBe(true);
    cache.drop(1);
    expect(cache.snapshot(1)).toBeNull();
    expect(cache.holds(1)).toBe(false);
  });

  test('many replacements keep the expiry heap small', () => {
    const cache = new MessageCache();
    for (let i = 1; i <= 10_000; i++) cache.setSnapshot(i % 10, i, T0 + i, 0, payload(0, i, 16), T0 + i * SEC);
    expect(cache.snapshots).toBe(10);
    expect(cache.expireSnapshots(T0 + 9990 * SEC)).toBe(0);
    expect(cache.metadataBytes).toBeLessThan(1_000_000);
    expect(cache.expireSnapshots(T0 + 10_000 * SEC)).toBe(10);
  });
});

describe('many topics', () => {
  test('20,000 topics: every history intact, memory released on expiry', () => {
    const cache = new MessageCache({ maxMessagesPerTopic: 30, maxAgeSeconds: 60 });
    const topics = 20_000;
    for (let round = 1; round <= 40; round++) {
      for (let t = 0; t < topics; t++) {
        if (t % 3 === 0 && round > 10) continue; // a third of the topics go quiet
        cache.append(t, round, T0 + round * SEC, t & 1, payload(t, round, 24 + (t % 50)));
      }
    }
    expect(cache.topics).toBe(topics);
    for (let t = 0; t < topics; t += 997) {
      const got = replay(cache, t, 0);
      const lastRound = t % 3 === 0 ? 10 : 40;
      expect(got.map((m) => m.seq)).toEqual(Array.from({ length: lastRound === 10 ? 10 : 30 }, (_, i) => lastRound - (lastRound === 10 ? 10 : 30) + 1 + i));
      for (const m of got) expect(Buffer.from(m.data).equals(Buffer.from(payload(t, m.seq, 24 + (t % 50))))).toBe(true);
    }
    // At 71 s, messages older than 11 s are gone: the quiet topics entirely.
    cache.expire(T0 + 71 * SEC);
    expect(cache.range(0)).toBeNull();
    expect(cache.range(1)).toEqual({ first: 11, last: 40 });
    expect(cache.topics).toBe(topics - Math.ceil(topics / 3));
    cache.expire(T0 + 1000 * SEC);
    expect(cache.messages).toBe(0);
    expect(cache.topics).toBe(0);
    expect(cache.storedBytes).toBe(0);
    expect(cache.logBytes).toBeLessThanOrEqual(cache.arenaChunkBytes);
  });
});

// ---- Model check: the same rules over plain arrays ----

type Limits = Required<Pick<MessageCacheOptions, 'maxMessagesPerTopic' | 'maxAgeSeconds' | 'maxBytesPerTopic' | 'maxTotalBytes'>>;
interface ModelMsg {
  topic: number;
  seq: number;
  ts: number;
  flags: number;
  data: Uint8Array;
  size: number;
}

/**
 * The cache's rules without its log: per-topic arrays, one arrival-ordered
 * list for the global order, the age checked against the newest clock.
 */
class Model {
  topics = new Map<number, ModelMsg[]>();
  last = new Map<number, number>();
  /** Every message appended since its topic's history last restarted, by "topic/seq". */
  appended = new Map<string, ModelMsg>();
  order: ModelMsg[] = [];
  orderHead = 0;
  dead = new Set<ModelMsg>();
  total = 0;
  latest = -Infinity;
  constructor(private o: Limits) {}
  list(t: number): ModelMsg[] {
    let l = this.topics.get(t);
    if (!l) {
      l = [];
      this.topics.set(t, l);
    }
    return l;
  }
  private evictFront(t: number): void {
    const m = this.list(t).shift() as ModelMsg;
    this.dead.add(m);
    this.total -= m.size;
  }
  private clear(t: number): void {
    const l = this.list(t);
    while (l.length) this.evictFront(t);
    for (const k of [...this.appended.keys()]) if (k.startsWith(`${t}/`)) this.appended.delete(k);
  }
  private popOldest(): ModelMsg | undefined {
    while (this.orderHead < this.order.length && this.dead.has(this.order[this.orderHead])) this.dead.delete(this.order[this.orderHead++]);
    return this.order[this.orderHead];
  }
  trimAge(t: number): void {
    const l = this.list(t);
    const cutoff = this.latest - this.o.maxAgeSeconds * SEC;
    while (l.length && l[0].ts < cutoff) this.evictFront(t);
  }
  append(t: number, seq: number, ts: number, flags: number, data: Uint8Array): void {
    const l = this.list(t);
    if (l.length > 0 && seq !== (this.last.get(t) ?? 0) + 1) this.clear(t);
    this.last.set(t, seq);
    if (this.o.maxMessagesPerTopic === 0) return;
    const size = stored(data.length);
    if (size > this.o.maxBytesPerTopic || size > this.o.maxTotalBytes) {
      this.clear(t);
      return;
    }
    this.latest = Math.max(this.latest, ts);
    this.trimAge(t);
    while (l.length >= this.o.maxMessagesPerTopic) this.evictFront(t);
    let bytes = l.reduce((a, m) => a + m.size, 0);
    while (l.length && bytes + size > this.o.maxBytesPerTopic) {
      bytes -= l[0].size;
      this.evictFront(t);
    }
    while (this.total + size > this.o.maxTotalBytes) {
      const m = this.popOldest() as ModelMsg;
      this.evictFront(m.topic);
    }
    const m = { topic: t, seq, ts, flags, data: data.slice(), size };
    l.push(m);
    this.order.push(m);
    this.appended.set(`${t}/${seq}`, m);
    this.total += size;
  }
  expire(now: number): void {
    this.latest = Math.max(this.latest, now);
    const cutoff = this.latest - this.o.maxAgeSeconds * SEC;
    for (;;) {
      const m = this.popOldest();
      if (!m || m.ts >= cutoff) return;
      this.evictFront(m.topic);
    }
  }
  drop(t: number): void {
    this.clear(t);
    this.last.set(t, 0);
  }
}

describe('model check', () => {
  // exact: no global budget pressure, so the cache must hold exactly what the model holds.
  // Otherwise the cleaner may move entries out of arrival order, and the check is of invariants:
  // each topic holds a suffix of its history, ending at its last seq, with every byte intact, within the budget.
  const configs: [string, Limits, boolean][] = [
    ['count-bound', { maxMessagesPerTopic: 20, maxAgeSeconds: 1000, maxBytesPerTopic: 1 << 20, maxTotalBytes: 1 << 30 }, true],
    ['topic-bytes-bound', { maxMessagesPerTopic: 1000, maxAgeSeconds: 1000, maxBytesPerTopic: 6000, maxTotalBytes: 1 << 30 }, true],
    ['age-bound', { maxMessagesPerTopic: 1000, maxAgeSeconds: 5, maxBytesPerTopic: 1 << 20, maxTotalBytes: 1 << 30 }, true],
    ['budget-bound', { maxMessagesPerTopic: 1000, maxAgeSeconds: 1000, maxBytesPerTopic: 1 << 20, maxTotalBytes: 150_000 }, false],
    ['everything', { maxMessagesPerTopic: 40, maxAgeSeconds: 8, maxBytesPerTopic: 9000, maxTotalBytes: 60_000 }, false],
  ];
  test.each(configs)('%s: the cache matches the model after random operations', (_name, o, exact) => {
    const cache = new MessageCache({ ...o, arenaChunkBytes: 65536 });
    const model = new Model(o);
    const rand = rng(12345 + o.maxTotalBytes + o.maxAgeSeconds);
    let now = T0;
    const topics = 25;
    for (let step = 0; step < 15_000; step++) {
      now += Math.floor(rand() * 5000);
      const r = rand();
      const t = Math.floor(rand() * rand() * topics); // skewed: low ids are hot
      if (r < 0.9) {
        const next = (model.last.get(t) ?? 0) + (rand() < 0.003 ? 3 : 1);
        const len = rand() < 0.02 ? Math.floor(rand() * 12000) : Math.floor(rand() * 700);
        const data = payload(t, next, len);
        cache.append(t, next, now, len & 3, data);
        model.append(t, next, now, len & 3, data);
      } else if (r < 0.995) {
        cache.expire(now);
        model.expire(now);
      } else {
        cache.drop(t);
        model.drop(t);
      }
      if (step % 1000 === 0 || step === 14_999) {
        let messages = 0;
        for (let k = 0; k < topics; k++) {
          model.trimAge(k);
          const want = model.list(k);
          const got = replay(cache, k, 0);
          const last = model.last.get(k) ?? 0;
          expect(cache.lastSeq(k)).toBe(last);
          messages += got.length;
          if (exact) {
            expect(cache.range(k)).toEqual(want.length ? { first: want[0].seq, last: want[want.length - 1].seq } : null);
            expect(got.length).toBe(want.length);
          }
          for (let i = 0; i < got.length; i++) {
            const m = model.appended.get(`${k}/${got[i].seq}`) as ModelMsg;
            expect(m).toBeDefined();
            if (exact) expect(got[i].seq).toBe(want[i].seq);
            if (i > 0) expect(got[i].seq).toBe(got[i - 1].seq + 1);
            expect(got[i].ts).toBe(m.ts);
            expect(got[i].flags).toBe(m.flags);
            expect(Buffer.from(got[i].data).equals(Buffer.from(m.data))).toBe(true);
          }
          if (got.length) {
            expect(got[got.length - 1].seq).toBe(last);
            expect(got[0].ts).toBeGreaterThanOrEqual(model.latest - o.maxAgeSeconds * SEC);
            expect(cache.covers(k, got[0].seq - 1)).toBe(true);
            expect(cache.covers(k, got[0].seq - 2)).toBe(false);
          }
        }
        expect(cache.messages).toBe(messages);
        if (exact) expect(cache.storedBytes).toBe(model.total);
        expect(cache.storedBytes).toBeLessThanOrEqual(o.maxTotalBytes);
        expect(cache.logBytes).toBeLessThanOrEqual(cache.maxSegments * 65536);
      }
    }
  });
});
