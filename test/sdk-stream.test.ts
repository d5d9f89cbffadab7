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
  const r = s.onSubReply({ epoch: 77, seq: 2, recovered: false, reason: 'epoch_mismatch' }, [3, 12]);
  expect(r.gap).toEqual({ topic: '/t', reason: 'epoch_mismatch', epoch: 77, fromSeq: null, toSeq: null, lastEpoch: 3, lastSeq: 12 });
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
