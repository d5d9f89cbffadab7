// The ring between workgroups: wrap-around, order and integrity across real
// worker threads, ring-full spilling, oversized records, and wake-ups.
// Workers run the current shm/ring.ts, doorbell.ts, ring-sender.ts and
// ring-inbox.ts, transpiled side by side to a temp folder, through an index
// that re-exports all four.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as ts from 'typescript';
import { Worker } from 'worker_threads';
import { Doorbell } from '../shm/doorbell';
import { RecordTooLargeError, Ring, RingConsumer, RingProducer, recordBytes } from '../shm/ring';
import { RingInbox } from '../shm/ring-inbox';
import { RingSender, SendStatus } from '../shm/ring-sender';
import { packageRoot } from '../native-io/package-root';

let tmpDir = '';
let ringJs = '';

/** The shm/ files the workers need; they import one another by relative path, so they are transpiled side by side. */
const RING_MODULES = ['ring', 'doorbell', 'ring-sender', 'ring-inbox'];

beforeAll(() => {
  tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'c10m-ring-'));
  for (const name of RING_MODULES) {
    const src = fs.readFileSync(path.join(packageRoot(), 'shm', `${name}.ts`), 'utf8');
    const out = ts.transpileModule(src, { compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022 } });
    fs.writeFileSync(path.join(tmpDir, `${name}.js`), out.outputText);
  }
  ringJs = path.join(tmpDir, 'index.js');
  fs.writeFileSync(ringJs, `module.exports = Object.assign({}, ${RING_MODULES.map((m) => `require('./${m}.js')`).join(', ')});\n`);
});

afterAll(() => {
  if (tmpDir) fs.rmSync(tmpDir, { recursive: true, force: true });
});

/** Record i of length len: its index in the first 4 bytes (when they fit), then a pattern of i. */
function fill(buf: Uint8Array, off: number, i: number, len: number): void {
  for (let k = 0; k < len; k++) buf[off + k] = k < 4 ? (i >>> (8 * k)) & 255 : (i * 31 + k) & 255;
}
function check(buf: Uint8Array, off: number, i: number, len: number): boolean {
  for (let k = 0; k < len; k++) if (buf[off + k] !== (k < 4 ? (i >>> (8 * k)) & 255 : (i * 31 + k) & 255)) return false;
  return true;
}

// The same helpers for worker code.
const WORKER_HELPERS = `
function fill(buf, off, i, len) { for (let k = 0; k < len; k++) buf[off + k] = k < 4 ? (i >>> (8 * k)) & 255 : (i * 31 + k) & 255; }
function lengthOf(i, maxLen) { return (i * 7919) % (maxLen + 1); }
`;
function lengthOf(i: number, maxLen: number): number {
  return (i * 7919) % (maxLen + 1);
}

/** Runs a producer in a worker thread: it sends n records of lengthOf(i, maxLen) through a RingSender and reports its counts. */
function startProducer(ringSab: SharedArrayBuffer, bellSab: SharedArrayBuffer, n: number, maxLen: number, gapMs = 0): Promise<{ fullEvents: number; spilledRecords: number; notifies: number }> {
  const code = `
const { workerData, parentPort } = require('worker_threads');
const { Doorbell, RingProducer, RingSender, SendStatus } = require(workerData.ringJs);
${WORKER_HELPERS}
const bell = new Doorbell(workerData.bellSab);
const producer = new RingProducer(workerData.ringSab, 0, bell);
let drained = null;
const sender = new RingSender(producer, { maxSpillBytes: 16 * 1024, onDrain: () => { if (drained) { const d = drained; drained = null; d(); } } });
const encode = (data, off, i) => { const len = lengthOf(i, workerData.maxLen); fill(data, off, i, len); return len; };
(async () => {
  for (let i = 0; i < workerData.n; i++) {
    const len = lengthOf(i, workerData.maxLen);
    // Alternate the two ways of sending.
    const status = i % 2 === 0 ? sender.sendEncoded(len, encode, i) : sender.send((() => { const b = new Uint8Array(len); fill(b, 0, i, len); return b; })());
    if (status === SendStatus.BACKPRESSURE) await new Promise((r) => { drained = r; });
    if (workerData.gapMs > 0) {
      // Wait until the consumer sleeps, so that every record must wake it.
      await new Promise((r) => setTimeout(r, workerData.gapMs));
      while (!bell.isSleeping()) await new Promise((r) => setTimeout(r, 1));
    }
    else if (i % 512 === 511) await new Promise((r) => setImmediate(r));
  }
  if (sender.spillRecords > 0) await new Promise((r) => { drained = r; });
  parentPort.postMessage({ fullEvents: sender.fullEvents, spilledRecords: sender.spilledRecords, notifies: bell.notifies });
})();
`;
  return new Promise((resolve, reject) => {
    const w = new Worker(code, { eval: true, workerData: { ringJs, ringSab, bellSab, n, maxLen, gapMs } });
    let result: { fullEvents: number; spilledRecords: number; notifies: number } | null = null;
    w.on('message', (m) => (result = m));
    w.on('error', reject);
    w.on('exit', (code) => (result && code === 0 ? resolve(result) : reject(new Error(`producer exited with ${code} and no result`))));
  });
}

/** Consumes with a RingInbox on this thread until n records have arrived; checks order and content. */
function consumeAll(
  ringSab: SharedArrayBuffer,
  bellSab: SharedArrayBuffer,
  n: number,
  maxLen: number,
  options: { maxRecordsPerTurn?: number; slowEvery?: number } = {},
): { done: Promise<void>; inbox: RingInbox; errors: string[] } {
  const inbox = new RingInbox(new Doorbell(bellSab), { maxRecordsPerTurn: options.maxRecordsPerTurn ?? 256 });
  const errors: string[] = [];
  let next = 0;
  let resolveDone: () => void = () => {};
  const done = new Promise<void>((r) => (resolveDone = r));
  inbox.add(ringSab, (data, offset, length) => {
    const i = next++;
    if (errors.length < 5) {
      if (length !== lengthOf(i, maxLen)) errors.push(`record ${i}: length ${length}, expected ${lengthOf(i, maxLen)}`);
      else if (!check(data, offset, i, length)) errors.push(`record ${i}: corrupt payload`);
      if (offset + length > data.length) errors.push(`record ${i}: straddles the end`);
    }
    if (options.slowEvery && i % options.slowEvery === 0) {
      const until = performance.now() + 1;
      while (performance.now() < until);
    }
    if (next === n) resolveDone();
  });
  inbox.start();
  return { done, inbox, errors };
}

describe('single thread', () => {
  test('wrap-around: every record size up to the capacity, many times around', () => {
    for (const capacity of [16, 32, 64, 128]) {
      const sab = Ring.create(capacity);
      const p = new RingProducer(sab);
      const c = new RingConsumer(sab);
      expect(p.maxPayloadBytes).toBe(capacity - 4);
      let seq = 0;
      let wrapsAlone = 0;
      for (let len = 0; len <= p.maxPayloadBytes; len++) {
        // Enough records to go around the ring at least 5 times at this size.
        const rounds = Math.ceil((5 * capacity) / recordBytes(len)) + 3;
        for (let r = 0; r < rounds; r++) {
          let off = p.reserve(len);
          if (off < 0) {
            // Even an empty ring may hold only the wrap marker before a record that needs it all: the consumer passes the marker.
            expect(p.bytesNeeded(len)).toBeLessThanOrEqual(capacity);
            expect(c.read(() => {})).toBe(0);
            off = p.reserve(len);
            wrapsAlone++;
          }
          expect(off).toBeGreaterThanOrEqual(0);
          expect(off + len).toBeLessThanOrEqual(capacity);
          fill(p.data, off, seq, len);
          p.commit();
          let got = -1;
          const n = c.read((data, o, l) => {
            expect(l).toBe(len);
            expect(o + l).toBeLessThanOrEqual(capacity);
            expect(check(data, o, seq, l)).toBe(true);
            got = l;
          });
          expect(n).toBe(1);
          expect(got).toBe(len);
          seq++;
        }
      }
      const stats = Ring.stats(sab);
      expect(stats.recordsWritten).toBe(seq);
      expect(stats.recordsRead).toBe(seq);
      expect(stats.usedBytes).toBe(0);
      expect(stats.wraps).toBeGreaterThan(wrapsAlone);
      expect(wrapsAlone).toBeGreaterThan(0);
    }
  });

  test('wrap-around with a backlog: mixed sizes, partial reads, the ring kept full', () => {
    const capacity = 64;
    const sab = Ring.create(capacity);
    const p = new RingProducer(sab);
    const c = new RingConsumer(sab);
    let written = 0;
    let read = 0;
    let rand = 12345;
    const rnd = (m: number): number => (rand = (rand * 1103515245 + 12345) & 0x7fffffff) % m;
    const lens: number[] = [];
    const bad: number[] = [];
    while (read < 20000) {
      // Write until full.
      for (;;) {
        const len = rnd(p.maxPayloadBytes + 1);
        const off = p.reserve(len);
        if (off < 0) break;
        fill(p.data, off, written, len);
        p.commit();
        lens.push(len);
        written++;
      }
      // Read a few.
      c.read(
        (data, o, l) => {
          if (l !== lens[read] || o + l > capacity || !check(data, o, read, l)) bad.push(read);
          read++;
        },
        1 + rnd(3),
      );
    }
    expect(bad).toEqual([]);
    c.read((data, o, l) => {
      expect(check(data, o, read, l)).toBe(true);
      read++;
    });
    expect(read).toBe(written);
    expect(Ring.stats(sab).usedBytes).toBe(0);
  });

  test('commit may shorten a reserved record; tryWrite copies one in', () => {
    const sab = Ring.create(64);
    const p = new RingProducer(sab);
    const c = new RingConsumer(sab);
    const off = p.reserve(40);
    p.data.set([1, 2, 3], off);
    p.commit(3);
    expect(p.tryWrite(new Uint8Array([9, 8]))).toBe(true);
    const seen: number[][] = [];
    c.read((d, o, l) => seen.push(Array.from(d.subarray(o, o + l))));
    expect(seen).toEqual([
      [1, 2, 3],
      [9, 8],
    ]);
    expect(() => p.commit()).toThrow(/commit without reserve/);
    p.reserve(4);
    expect(() => p.commit(5)).toThrow(/exceeds the 4 reserved/);
    // The bad commit cancelled the reservation; an encoder that throws cancels its own.
    const sender = new RingSender(p);
    expect(() =>
      sender.sendEncoded(
        8,
        () => {
          throw new Error('encoder failed');
        },
        null,
      ),
    ).toThrow('encoder failed');
    expect(sender.send(new Uint8Array([7]))).toBe(SendStatus.RING);
    seen.length = 0;
    c.read((d, o, l) => seen.push(Array.from(d.subarray(o, o + l))));
    expect(seen).toEqual([[7]]);
    sender.close();
  });

  test('a record bigger than the ring is a clear error, the largest that fits goes through', () => {
    const sab = Ring.create(64);
    const p = new RingProducer(sab);
    const c = new RingConsumer(sab);
    expect(() => p.reserve(61)).toThrow(RecordTooLargeError);
    expect(() => p.reserve(61)).toThrow(/a record of 61 bytes can never fit; this ring carries at most 60 bytes per record/);
    const sender = new RingSender(p);
    try {
      expect(() => sender.send(new Uint8Array(1000))).toThrow(RecordTooLargeError);
      expect(() => sender.sendEncoded(1000, () => 0, null)).toThrow(RecordTooLargeError);
      // The largest record, from a position that forces the wrap marker first.
      expect(sender.send(new Uint8Array(8))).toBe(SendStatus.RING);
      expect(c.read(() => {})).toBe(1);
      const big = new Uint8Array(60);
      fill(big, 0, 77, 60);
      // Does not fit behind the marker until the consumer passes it.
      expect(sender.send(big)).toBe(SendStatus.SPILLED);
      expect(() => sender.send(new Uint8Array(61))).toThrow(RecordTooLargeError);
      let ok = false;
      c.read((d, o, l) => (ok = l === 60 && check(d, o, 77, 60)));
      expect(sender.flushNow()).toBe(true);
      c.read((d, o, l) => (ok = l === 60 && check(d, o, 77, 60)));
      expect(ok).toBe(true);
    } finally {
      sender.close();
    }
    expect(() => Ring.create(100)).toThrow(/power of two/);
    expect(() => Ring.create(8)).toThrow(/power of two from 16/);
  });

  test('ring full: records spill, are counted, and arrive in order once the consumer frees space', async () => {
    const sab = Ring.create(64);
    const p = new RingProducer(sab);
    const c = new RingConsumer(sab);
    let drains = 0;
    const sender = new RingSender(p, { maxSpillBytes: 200, onDrain: () => drains++ });
    const statuses: number[] = [];
    for (let i = 0; i < 100; i++) {
      const b = new Uint8Array(12);
      fill(b, 0, i, 12);
      statuses.push(sender.send(b));
    }
    // 64 bytes hold four 16-byte records; the rest spill, and beyond 200 spilled bytes the sender says so.
    expect(statuses.slice(0, 4)).toEqual([0, 0, 0, 0]);
    expect(statuses[4]).toBe(SendStatus.SPILLED);
    expect(statuses[99]).toBe(SendStatus.BACKPRESSURE);
    expect(sender.fullEvents).toBe(1);
    expect(sender.spilledRecords).toBe(96);
    expect(sender.spillRecords).toBe(96);
    expect(Ring.stats(sab).fullEvents).toBe(1);
    expect(Ring.stats(sab).spilledRecords).toBe(96);
    let got = 0;
    const deadline = Date.now() + 5000;
    while (got < 100 && Date.now() < deadline) {
      c.read((d, o, l) => {
        expect(l).toBe(12);
        expect(check(d, o, got, l)).toBe(true);
        got++;
      });
      // The consumer's release notifies the waiting sender; let its promise run.
      await new Promise((r) => setImmediate(r));
    }
    expect(got).toBe(100);
    expect(sender.spillRecords).toBe(0);
    expect(drains).toBe(1);
    // New records go straight to the ring again.
    expect(sender.send(new Uint8Array(4))).toBe(SendStatus.RING);
    sender.close();
  });

  test('a record that needs the whole ring reaches a sleeping consumer (wrap marker published alone wakes it)', async () => {
    const ringSab = Ring.create(64);
    const bell = new Doorbell(Doorbell.create());
    const sender = new RingSender(new RingProducer(ringSab, 0, bell));
    const got: number[] = [];
    const inbox = new RingInbox(bell);
    inbox.add(ringSab, (d, o, l) => got.push(l));
    inbox.start();
    try {
      expect(sender.send(new Uint8Array(8))).toBe(SendStatus.RING);
      const deadline = Date.now() + 5000;
      while (got.length < 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
      await new Promise((r) => setTimeout(r, 20));
      const sleepsBefore = inbox.sleeps;
      expect(sleepsBefore).toBeGreaterThan(0);
      const big = new Uint8Array(60);
      expect(sender.send(big)).toBe(SendStatus.SPILLED);
      while (got.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
      expect(got).toEqual([8, 60]);
      expect(inbox.wakeups).toBeGreaterThanOrEqual(2);
    } finally {
      inbox.close();
      sender.close();
    }
  });

  test('a handler that throws costs only its own record: the inbox reports it and goes on', async () => {
    const ringSab = Ring.create(256);
    const bell = new Doorbell(Doorbell.create());
    const p = new RingProducer(ringSab, 0, bell);
    const errors: unknown[] = [];
    const seen: number[] = [];
    const inbox = new RingInbox(bell, { onError: (e) => errors.push(e) });
    inbox.add(ringSab, (d, o) => {
      seen.push(d[o]);
      if (d[o] === 1) throw new Error('bad record');
    });
    for (let i = 0; i < 4; i++) p.tryWrite(new Uint8Array([i]));
    inbox.start();
    const deadline = Date.now() + 5000;
    while (seen.length < 4 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    inbox.close();
    expect(seen).toEqual([0, 1, 2, 3]);
    expect(errors.map((e) => (e as Error).message)).toEqual(['bad record']);
    expect(inbox.handlerErrors).toBe(1);
    expect(inbox.records).toBe(4);
    expect(Ring.stats(ringSab).usedBytes).toBe(0);
  });

  test('restart: a new producer continues after committed records; discard and reset empty the ring', () => {
    const sab = Ring.create(64);
    const p1 = new RingProducer(sab);
    p1.tryWrite(new Uint8Array([1]));
    p1.reserve(8); // reserved, never committed: dies with p1
    const p2 = new RingProducer(sab);
    p2.tryWrite(new Uint8Array([2]));
    const c1 = new RingConsumer(sab);
    const seen: number[] = [];
    c1.read((d, o) => seen.push(d[o]), 1);
    const c2 = new RingConsumer(sab);
    c2.read((d, o) => seen.push(d[o]));
    expect(seen).toEqual([1, 2]);
    p2.tryWrite(new Uint8Array([3]));
    expect(c2.discard()).toBe(8);
    expect(c2.read(() => {})).toBe(0);
    const before = Ring.stats(sab).generation;
    Ring.reset(sab);
    const s = Ring.stats(sab);
    expect(s.generation).toBe(before + 1);
    expect(s.usedBytes).toBe(0);
    expect(s.recordsWritten).toBe(0);
  });

  test('rings live at an offset in a larger buffer (a native-io arena)', () => {
    const arena = new SharedArrayBuffer(2 * Ring.bytesFor(64) + Doorbell.BYTES);
    Ring.init(arena, 64, 0);
    Ring.init(arena, 64, Ring.bytesFor(64));
    const a = new RingProducer(arena, 0);
    const b = new RingProducer(arena, Ring.bytesFor(64));
    a.tryWrite(new Uint8Array([1]));
    b.tryWrite(new Uint8Array([2]));
    const seen: number[] = [];
    new RingConsumer(arena, Ring.bytesFor(64)).read((d, o) => seen.push(d[o]));
    new RingConsumer(arena, 0).read((d, o) => seen.push(d[o]));
    expect(seen).toEqual([2, 1]);
    expect(() => new RingProducer(arena, 32)).toThrow(/multiple of 64/);
    expect(() => new RingProducer(new SharedArrayBuffer(1024))).toThrow(/no ring at offset 0/);
  });
});

describe('across worker threads', () => {
  test('records arrive in order and intact (4 KiB ring, 200k records of 0..300 bytes)', async () => {
    const n = 200_000;
    const maxLen = 300;
    const ringSab = Ring.create(4096);
    const bellSab = Doorbell.create();
    const consumer = consumeAll(ringSab, bellSab, n, maxLen);
    const produced = await startProducer(ringSab, bellSab, n, maxLen);
    await consumer.done;
    consumer.inbox.close();
    expect(consumer.errors).toEqual([]);
    const stats = Ring.stats(ringSab);
    expect(stats.recordsWritten).toBe(n);
    expect(stats.recordsRead).toBe(n);
    expect(stats.usedBytes).toBe(0);
    expect(stats.spilledRecords).toBe(produced.spilledRecords);
  });

  test('ring full across threads: a slow consumer, a tiny ring; spills are counted, nothing is lost, order kept', async () => {
    const n = 5000;
    const maxLen = 40;
    const ringSab = Ring.create(64);
    const bellSab = Doorbell.create();
    const consumer = consumeAll(ringSab, bellSab, n, maxLen, { maxRecordsPerTurn: 4, slowEvery: 100 });
    const produced = await startProducer(ringSab, bellSab, n, maxLen);
    await consumer.done;
    consumer.inbox.close();
    expect(consumer.errors).toEqual([]);
    expect(produced.fullEvents).toBeGreaterThan(0);
    expect(produced.spilledRecords).toBeGreaterThan(0);
    const stats = Ring.stats(ringSab);
    expect(stats.fullEvents).toBe(produced.fullEvents);
    expect(stats.spilledRecords).toBe(produced.spilledRecords);
    expect(stats.recordsRead).toBe(n);
  });

  test('a sleeping consumer is woken for each record sent while it sleeps', async () => {
    const n = 20;
    const ringSab = Ring.create(1024);
    const bellSab = Doorbell.create();
    const consumer = consumeAll(ringSab, bellSab, n, 100);
    // Let it fall asleep first.
    await new Promise((r) => setTimeout(r, 50));
    expect(consumer.inbox.sleeps).toBeGreaterThan(0);
    const produced = await startProducer(ringSab, bellSab, n, 100, 10);
    await consumer.done;
    consumer.inbox.close();
    expect(consumer.errors).toEqual([]);
    // The producer sent each record to a sleeping consumer, so it rang for each. The consumer, which never polls,
    // got them all, nearly always through a wake-up (a record can also land in its re-check just before it waits).
    expect(produced.notifies).toBe(n);
    expect(consumer.inbox.wakeups).toBeGreaterThanOrEqual(n / 2);
  });

  test('a busy consumer gets far fewer wake-ups than records', async () => {
    const n = 200_000;
    const ringSab = Ring.create(64 * 1024);
    const bellSab = Doorbell.create();
    const consumer = consumeAll(ringSab, bellSab, n, 64, { maxRecordsPerTurn: 1024 });
    const produced = await startProducer(ringSab, bellSab, n, 64);
    await consumer.done;
    consumer.inbox.close();
    expect(consumer.errors).toEqual([]);
    // A notification can land while the consumer re-checks before sleeping, so there are at least as many as wake-ups.
    expect(produced.notifies).toBeGreaterThanOrEqual(consumer.inbox.wakeups);
    expect(produced.notifies).toBeLessThan(n / 20);
    expect(consumer.inbox.wakeups).toBeLessThan(n / 20);
    expect(consumer.inbox.records).toBe(n);
  });

  test('an inbox drains several rings fairly, each in order', async () => {
    const n = 20_000;
    const maxLen = 50;
    const bellSab = Doorbell.create();
    const rings = [Ring.create(1024), Ring.create(1024), Ring.create(1024)];
    const inbox = new RingInbox(new Doorbell(bellSab), { maxRecordsPerTurn: 64 });
    const errors: string[] = [];
    const next = [0, 0, 0];
    let total = 0;
    let resolveDone: () => void = () => {};
    const done = new Promise<void>((r) => (resolveDone = r));
    rings.forEach((sab, r) =>
      inbox.add(sab, (data, offset, length) => {
        const i = next[r]++;
        if (errors.length < 5 && (length !== lengthOf(i, maxLen) || !check(data, offset, i, length))) errors.push(`ring ${r} record ${i} wrong`);
        if (++total === 3 * n) resolveDone();
      }),
    );
    inbox.start();
    await Promise.all(rings.map((sab) => startProducer(sab, bellSab, n, maxLen)));
    await done;
    inbox.close();
    expect(errors).toEqual([]);
    expect(next).toEqual([n, n, n]);
  });
});
