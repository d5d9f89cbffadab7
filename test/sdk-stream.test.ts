// The SDK's per-topic rules (sdk/stream.ts): no duplicate is delivered, and
// every skipped seq is reported as exactly one gap. Pure logic, fed with the
// sequences a server can produce (live, replayed, snapshot, after a restart).
import { TopicStream, type Gap } from '../sdk/stream';

const live = (epoch: number, seq: number) => ({ epoch, seq, replay: false, snapshot: false });
const replay = (epoch: number, seq: number) => ({ epoch, seq, replay: true, snapshot: false });
const snapshot = (epoch: number, seq: number) => ({ epoch, seq, replay: false, snapshot: true });

function feed(s: TopicStream, ds: ReturnType<typeof live>[]): { delivered: number[]; gaps: Gap[] } {
  const delivered: number[] = [];
  const gaps: Gap[] = [];
  for (const d of ds) {
    const r = s.accept(d);
    if (r.gap) gaps.push(r.gap);
    if (r.deliver) delivered.push(d.seq);
  }
  return { delivered, gaps };
}

test('a fresh subscription takes the reply position and delivers what follows, once', () => {
  const s = new TopicStream('/t');
  expect(s.position()).toBeNull();
  expect(s.onSubReply({ epoch: 9, seq: 4 }, null)).toEqual({ gap: null, recovered: null });
  const { delivered, gaps } = feed(s, [live(9, 5), live(9, 6), live(9, 6), live(9, 5), live(9, 7)]);
  expect(delivered).toEqual([5, 6, 7]);
  expect(gaps).toEqual([]);
  expect(s.position()).toEqual([9, 7]);
});

test('a live jump is delivered and its missing range reported once', () => {
  const s = new TopicStream('/t');
  s.onSubReply({ epoch: 1, seq: 0 }, null);
  const { delivered, gaps } = feed(s, [live(1, 1), live(1, 5), live(1, 6)]);
  expect(delivered).toEqual([1, 5, 6]);
  expect(gaps).toEqual([{ topic: '/t', reason: 'seq_jump', epoch: 1, fromSeq: 2, toSeq: 4, lastEpoch: 1, lastSeq: 1 }]);
});

test('a recovered resume lets the replays through, drops what was already seen, and reports no gap', () => {
  const s = new TopicStream('/t');
  s.onSubReply({ epoch: 3, seq: 10 }, null);
  feed(s, [live(3, 11), live(3, 12)]);
  const r = s.onSubReply({ epoch: 3, seq: 15, recovered: true, replayed: 3 }, [3, 12]);
  expect(r.gap).toBeNull();
  expect(r.recovered).toEqual({ topic: '/t', epoch: 3, fromSeq: 12, replayed: 3 });
  // The server may resend the last seen one; replays, then live.
  const { delivered, gaps } = feed(s, [replay(3, 12), replay(3, 13), replay(3, 14), replay(3, 15), live(3, 15), live(3, 16)]);
  expect(delivered).toEqual([13, 14, 15, 16]);
  expect(gaps).toEqual([]);
});

test('a resume the server could not recover is one gap from lastSeq+1 to the reply seq', () => {
  const s = new TopicStream('/t');
  s.onSubReply({ epoch: 3, seq: 12 }, null);
  const r = s.onSubReply({ epoch: 3, seq: 40, recovered: false, reason: 'cache_miss' }, [3, 12]);
  expect(r.recovered).toBeNull();
  expect(r.gap).toEqual({ topic: '/t', reason: 'cache_miss', epoch: 3, fromSeq: 13, toSeq: 40, lastEpoch: 3, lastSeq: 12 });
  expect(feed(s, [live(3, 40), live(3, 41)]).delivered).toEqual([41]);
});

test('a server without recovery (no "recovered" field): nothing missed is a recovery, something missed is a gap', () => {
  const same = new TopicStream('/t');
  same.onSubReply({ epoch: 3, seq: 12 }, null);
  expect(same.onSubReply({ epoch: 3, seq: 12 }, [3, 12])).toEqual({ gap: null, recovered: { topic: '/t', epoch: 3, fromSeq: 12, replayed: 0 } });
  const behind = new TopicStream('/t');
  behind.onSubReply({ epoch: 3, seq: 12 }, null);
  expect(behind.onSubReply({ epoch: 3, seq: 14 }, [3, 12]).gap).toMatchObject({ reason: 'not_recovered', fromSeq: 13, toSeq: 14 });
});

test('a new epoch (the server restarted) is a gap of unknown range, and the new epoch counts from its reply', () => {
  const s = new TopicStream('/t');
  s.onSubReply({ epoch: 3, seq: 12 }, null);
  // An older server (no replayed field), nothing held: the gap comes once the held deliveries are applied.
  const r = s.onSubReply({ epoch: 77, seq: 2, recovered: false, reason: 'epoch_mismatch' }, [3, 12]);
  expect(r).toEqual({ gap: null, recovered: null });
  expect(s.afterHeld()).toEqual({ topic: '/t', reason: 'epoch_mismatch', epoch: 77, fromSeq: null, toSeq: null, lastEpoch: 3, lastSeq: 12 });
  expect(s.afterHeld()).toBeNull();
  expect(s.position()).toEqual([77, 2]);
  expect(feed(s, [live(77, 3)]).delivered).toEqual([3]);
  // A live change of epoch (no reconnect) is reported too.
  const { delivered, gaps } = feed(s, [live(78, 1)]);
  expect(delivered).toEqual([1]);
  expect(gaps).toEqual([{ topic: '/t', reason: 'epoch_changed', epoch: 78, fromSeq: null, toSeq: null, lastEpoch: 77, lastSeq: 3 }]);
});

test('a retained snapshot is delivered once on a fresh subscription, even at or below the reply seq', () => {
  const s = new TopicStream('/t');
  s.onSubReply({ epoch: 5, seq: 8 }, null);
  const { delivered, gaps } = feed(s, [snapshot(5, 6), snapshot(5, 6), live(5, 9)]);
  expect(delivered).toEqual([6, 9]);
  expect(gaps).toEqual([]);
  // After a recovered resume the client has it already: no second copy.
  s.onSubReply({ epoch: 5, seq: 9, recovered: true, replayed: 0 }, [5, 9]);
  expect(feed(s, [snapshot(5, 6)]).delivered).toEqual([]);
});

/** Applies a sub reply the way the client does: the reply, the deliveries held until it, then afterHeld(). */
function resume(s: TopicStream, reply: Parameters<TopicStream['onSubReply']>[0], from: [number, number], held: ReturnType<typeof live>[]): { delivered: [number, number][]; gaps: Gap[] } {
  const gaps: Gap[] = [];
  const delivered: [number, number][] = [];
  const r = s.onSubReply(reply, from);
  if (r.gap) gaps.push(r.gap);
  for (const d of held) {
    const a = s.accept(d);
    if (a.gap) gaps.push(a.gap);
    if (a.deliver) delivered.push([d.epoch, d.seq]);
  }
  const late = s.afterHeld();
  if (late) gaps.push(late);
  return { delivered, gaps };
}

const oldEpochGap = { topic: '/t', reason: 'epoch_mismatch', epoch: 77, fromSeq: null, toSeq: null, lastEpoch: 3, lastSeq: 12 };
const epoch77 = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => replay(77, from + i));
const pairs = (epoch: number, from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => [epoch, from + i]);

describe('a resume answered from another epoch, the new epoch replayed from seq 1', () => {
  test('one gap for the old epoch, then every replayed message of the new epoch once, in order, then live', () => {
    const s = new TopicStream('/t');
    s.onSubReply({ epoch: 3, seq: 12 }, null);
    const { delivered, gaps } = resume(s, { epoch: 77, seq: 152, recovered: false, reason: 'epoch_mismatch', replayed: 152 }, [3, 12], epoch77(1, 152));
    expect(gaps).toEqual([oldEpochGap]);
    expect(delivered).toEqual(pairs(77, 1, 152));
    expect(s.position()).toEqual([77, 152]);
    // Live after the reply: at most the reply's seq again (dropped), then on.
    expect(feed(s, [live(77, 152), live(77, 153), live(77, 154)])).toEqual({ delivered: [153, 154], gaps: [] });
  });

  test('a seq the client already had in the old epoch is not mistaken for a duplicate in the new one', () => {
    const s = new TopicStream('/t');
    s.onSubReply({ epoch: 3, seq: 12 }, null);
    // The new epoch is shorter than the client's old position: all of it still comes through.
    const { delivered, gaps } = resume(s, { epoch: 77, seq: 5, recovered: false, reason: 'epoch_mismatch', replayed: 5 }, [3, 12], [...epoch77(1, 5), replay(77, 5)]);
    expect(gaps).toEqual([oldEpochGap]);
    expect(delivered).toEqual(pairs(77, 1, 5));
  });

  test("the epoch changed during a replay: the old epoch's replays, then one gap, then the new epoch from seq 1", () => {
    const s = new TopicStream('/t');
    s.onSubReply({ epoch: 3, seq: 12 }, null);
    const { delivered, gaps } = resume(s, { epoch: 77, seq: 3, recovered: false, reason: 'epoch_mismatch', replayed: 3 }, [3, 12], [replay(3, 13), replay(3, 14), ...epoch77(1, 3)]);
    expect(delivered).toEqual([[3, 13], [3, 14], ...pairs(77, 1, 3)]);
    expect(gaps).toEqual([{ ...oldEpochGap, lastSeq: 14 }]);
  });

  test('replayed short of the reply seq (the cache dropped the rest meanwhile): the old epoch, then the missing range', () => {
    const s = new TopicStream('/t');
    s.onSubReply({ epoch: 3, seq: 12 }, null);
    const { delivered, gaps } = resume(s, { epoch: 77, seq: 40, recovered: false, reason: 'epoch_mismatch', replayed: 25 }, [3, 12], epoch77(1, 25));
    expect(delivered).toEqual(pairs(77, 1, 25));
    expect(gaps).toEqual([oldEpochGap, { topic: '/t', reason: 'cache_miss', epoch: 77, fromSeq: 26, toSeq: 40, lastEpoch: 77, lastSeq: 25 }]);
    expect(feed(s, [live(77, 41)])).toEqual({ delivered: [41], gaps: [] });
  });

  test('a snapshot after a whole replay is a duplicate, not a second copy', () => {
    const s = new TopicStream('/t');
    s.onSubReply({ epoch: 3, seq: 12 }, null);
    const { delivered, gaps } = resume(s, { epoch: 77, seq: 4, recovered: false, reason: 'epoch_mismatch', replayed: 4 }, [3, 12], [...epoch77(1, 4), snapshot(77, 2)]);
    expect(delivered).toEqual(pairs(77, 1, 4));
    expect(gaps).toEqual([oldEpochGap]);
  });
});

describe('a resume answered from another epoch with nothing replayed (its cache no longer holds seq 1)', () => {
  test('the snapshot: one gap before it, the snapshot delivered, then live from the reply seq', () => {
    const s = new TopicStream('/t');
    s.onSubReply({ epoch: 3, seq: 12 }, null);
    const { delivered, gaps } = resume(s, { epoch: 77, seq: 900, recovered: false, reason: 'epoch_mismatch', replayed: 0 }, [3, 12], [snapshot(77, 850)]);
    expect(gaps).toEqual([oldEpochGap]);
    expect(delivered).toEqual([[77, 850]]);
    expect(s.position()).toEqual([77, 900]);
    expect(feed(s, [live(77, 900), live(77, 901)])).toEqual({ delivered: [901], gaps: [] });
  });

  test('live deliveries held with the reply (another topic of the sub was slower): one gap, then them', () => {
    const s = new TopicStream('/t');
    s.onSubReply({ epoch: 3, seq: 12 }, null);
    const { delivered, gaps } = resume(s, { epoch: 77, seq: 900, recovered: false, reason: 'epoch_mismatch', replayed: 0 }, [3, 12], [live(77, 901), live(77, 902)]);
    expect(gaps).toEqual([oldEpochGap]);
    expect(delivered).toEqual(pairs(77, 901, 902));
  });

  test('a later reply clears what an earlier one left owed: no gap from a stale reply', () => {
    const s = new TopicStream('/t');
    s.onSubReply({ epoch: 3, seq: 12 }, null);
    s.onSubReply({ epoch: 77, seq: 5, recovered: false, reason: 'epoch_mismatch', replayed: 5 }, [3, 12]);
    // The connection dropped before the held deliveries came: the client resumes from where it was.
    const { delivered, gaps } = resume(s, { epoch: 77, seq: 6, recovered: false, reason: 'epoch_mismatch', replayed: 6 }, [3, 12], epoch77(1, 6));
    expect(gaps).toEqual([oldEpochGap]);
    expect(delivered).toEqual(pairs(77, 1, 6));
  });
});
