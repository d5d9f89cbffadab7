// Conflation (protocol/conflation.ts, workgroups/conflation.ts): a session
// that subscribes with "conflate": MS gets at most one frame per MS per
// topic, always ending on the latest message, and every frame states how
// many messages were skipped before it, so that nothing is lost silently:
// frames + skipped = messages, and each seq jump is the skipped count.
import { unpackr } from '../protocol/codec';
import { decodeBinaryFrame, isBinaryFrame } from '../protocol/frame';
import { connect, type TestClient } from './helpers/client';
import { startServer, type TestServer } from './helpers/server';
import { metricSum } from './helpers/workgroups';

let server: TestServer;
beforeAll(async () => {
  server = await startServer(['--workgroups', '2']);
});
afterAll(async () => {
  await server.stop();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Frame {
  topic: string;
  seq: number;
  epoch: number;
  conflated: number | undefined;
  replay: boolean;
  data: unknown;
}

/** Every delivery frame of a session, with its conflated count (the test client's list leaves it out). */
function frames(c: TestClient): Frame[] {
  const out: Frame[] = [];
  c.ws.on('message', (data: Buffer, isBinary: boolean) => {
    if (isBinary) {
      const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
      if (!isBinaryFrame(bytes)) return;
      const f = decodeBinaryFrame(bytes);
      out.push({ topic: f.topic, seq: f.seq, epoch: f.epoch, conflated: f.flags & 4 ? f.conflated : undefined, replay: (f.flags & 1) !== 0, data: unpackr.unpack(f.payload) });
    } else {
      const m = JSON.parse(data.toString('utf8'));
      if (m.op === 'msg') out.push({ topic: m.topic, seq: m.seq, epoch: m.epoch, conflated: m.conflated, replay: m.replay === true, data: m.data });
    }
  });
  return out;
}

/** Publishes messages 0..n, one every `everyMs` (every tenth acked, to keep pace); returns the ack of the last (n). */
async function publishSlowly(p: TestClient, topic: string, n: number, everyMs: number): Promise<Record<string, unknown>> {
  for (let i = 0; i < n; i++) {
    if (i % 10 === 9) await p.request({ op: 'pub', topic, data: { n: i }, ack: true });
    else p.send({ id: `p${i}`, op: 'pub', topic, data: { n: i } });
    await sleep(everyMs);
  }
  return p.request({ op: 'pub', topic, data: { n }, ack: true });
}

/** Checks a conflated stream against what was published after the sub reply at `fromSeq`: nothing lost silently, ends on the latest. */
function checkConflated(got: Frame[], fromSeq: number, lastSeq: number): void {
  expect(got.length).toBeGreaterThan(0);
  let prev = fromSeq;
  for (const f of got) {
    expect(typeof f.conflated).toBe('number');
    // The jump from the previous frame is exactly the messages the frame says were skipped.
    expect(f.seq - prev - 1).toBe(f.conflated);
    prev = f.seq;
  }
  expect(got[got.length - 1].seq).toBe(lastSeq);
  expect(got.reduce((n, f) => n + 1 + (f.conflated as number), 0)).toBe(lastSeq - fromSeq);
}

test('a conflating session gets at most one frame per interval, the latest last, and the skipped count explains every jump (JSON and msgpack)', async () => {
  const topic = '/px/EURUSD';
  const j = await connect(server.url());
  const m = await connect(server.url(), 'msgpack');
  const plain = await connect(server.url());
  const jf = frames(j);
  const mf = frames(m);
  const pf = frames(plain);
  const rj = await j.request({ op: 'sub', topics: [topic], conflate: 100 });
  const rm = await m.request({ op: 'sub', topics: [topic], conflate: 100 });
  await plain.sub([topic]);
  expect(rj.ok).toBe(true);
  expect(rm.ok).toBe(true);
  const from = (rj.topics as Record<string, { seq: number }>)[topic].seq;
  const p = await connect(server.url());
  const started = performance.now();
  const last = await publishSlowly(p, topic, 199, 5);
  const lastSeq = last.seq as number;
  // The last message comes at the end of its interval at the latest.
  await j.until(() => jf.length > 0 && jf[jf.length - 1].seq === lastSeq, 5000, 'the latest message (JSON)');
  await m.until(() => mf.length > 0 && mf[mf.length - 1].seq === lastSeq, 5000, 'the latest message (msgpack)');
  const elapsedMs = performance.now() - started;
  await plain.until(() => pf.length === lastSeq - from, 5000, 'every message (plain session)');
  checkConflated(jf, from, lastSeq);
  checkConflated(mf, from, lastSeq);
  expect(jf[jf.length - 1].data).toEqual({ n: 199 });
  expect(mf[mf.length - 1].data).toEqual({ n: 199 });
  // At most one frame per 100 ms of the server's sending, which fits in what the client waited (a slow machine only
  // lowers the count): one more for the frame sent at once, one for intervals measured in whole milliseconds.
  expect(jf.length).toBeLessThanOrEqual(Math.floor(elapsedMs / 100) + 2);
  expect(mf.length).toBeLessThanOrEqual(Math.floor(elapsedMs / 100) + 2);
  expect(jf.length).toBeLessThan(100);
  // The plain session beside them gets every message, unflagged.
  expect(pf.every((f) => f.conflated === undefined)).toBe(true);
  for (const c of [j, m, plain, p]) await c.close();
});

test('sessions of one topic and interval share one group: one frame per interval is handed to uWS for all of them', async () => {
  const topic = '/px/shared';
  const sessions = await Promise.all([0, 1, 2, 3].map(() => connect(server.url())));
  const fs = sessions.map(frames);
  // One workgroup (one client address: the IP hash puts them together): one group.
  const wgs = await Promise.all(sessions.map((s) => s.request({ op: 'ping' }).then((r) => r.wg)));
  expect(new Set(wgs).size).toBe(1);
  for (const s of sessions) expect((await s.request({ op: 'sub', topics: [topic], conflate: 50 })).ok).toBe(true);
  const before = await metrics();
  expect(before.c10m_conflation_groups).toBeGreaterThanOrEqual(1);
  const p = await connect(server.url());
  const last = await publishSlowly(p, topic, 59, 5);
  for (let i = 0; i < sessions.length; i++) await sessions[i].until(() => fs[i].length > 0 && fs[i][fs[i].length - 1].seq === last.seq, 5000, 'the latest');
  const after = await metrics();
  // Every session got the same frames (the group's).
  for (const f of fs) expect(f.map((x) => x.seq)).toEqual(fs[0].map((x) => x.seq));
  expect(after.c10m_conflated_frames_total - before.c10m_conflated_frames_total).toBe(fs[0].length);
  expect(after.c10m_conflated_skipped_total - before.c10m_conflated_skipped_total).toBe(60 - fs[0].length);
  for (const s of sessions) await s.close();
  await p.close();
});

test('a conflating resume gets only the latest missed message, flagged replay, with the others as its skipped count', async () => {
  const topic = '/px/resume';
  const p = await connect(server.url());
  let first: Record<string, unknown> = {};
  for (let i = 1; i <= 20; i++) {
    const r = await p.request({ op: 'pub', topic, data: { n: i }, ack: true });
    if (i === 1) first = r;
  }
  const c = await connect(server.url(), 'msgpack');
  const got = frames(c);
  const reply = await c.request({ op: 'sub', topics: [topic], conflate: 200, resume: { [topic]: [first.epoch, 5] } });
  const entry = (reply.topics as Record<string, Record<string, unknown>>)[topic];
  expect(entry).toMatchObject({ epoch: first.epoch, seq: 20, recovered: true, replayed: 15 });
  // The replayed message came before the reply.
  expect(got).toEqual([{ topic, seq: 20, epoch: first.epoch, conflated: 14, replay: true, data: { n: 20 } }]);
  // Live after it, conflated.
  const last = await p.request({ op: 'pub', topic, data: { n: 21 }, ack: true });
  await c.until(() => got.length === 2, 5000, 'the live message');
  expect(got[1]).toMatchObject({ seq: last.seq, conflated: 0, replay: false });
  await c.close();
  await p.close();
});

test('one subscription per session and topic: subscribing again with another interval or none replaces it, and unsub ends it', async () => {
  const topic = '/px/switch';
  const c = await connect(server.url());
  const got = frames(c);
  const p = await connect(server.url());
  await c.request({ op: 'sub', topics: [topic], conflate: 1000 });
  await c.request({ op: 'sub', topics: [topic], conflate: 20 });
  // Plain again: every message once (no frame from a group is left).
  await c.request({ op: 'sub', topics: [topic] });
  for (let i = 0; i < 10; i++) await p.request({ op: 'pub', topic, data: i, ack: true });
  await c.until(() => got.length >= 10, 5000, 'ten messages');
  await sleep(1100);
  expect(got.map((f) => f.data)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  expect(got.every((f) => f.conflated === undefined)).toBe(true);
  // Conflated again, then unsubscribed: nothing more arrives, and the group is gone.
  const groups = (await metrics()).c10m_conflation_groups;
  await c.request({ op: 'sub', topics: [topic], conflate: 20 });
  expect((await metrics()).c10m_conflation_groups).toBe(groups + 1);
  await c.request({ op: 'unsub', topics: [topic] });
  expect((await metrics()).c10m_conflation_groups).toBe(groups);
  await p.request({ op: 'pub', topic, data: 'after', ack: true });
  await sleep(200);
  expect(got.length).toBe(10);
  await c.close();
  await p.close();
});

test('conflate must be a whole number of milliseconds from 10 to 60000', async () => {
  const c = await connect(server.url());
  for (const conflate of ['100', 5, 9, 60_001, 10.5, -1, true, [100], { ms: 100 }]) {
    const r = await c.request({ op: 'sub', topics: ['/px/bad'], conflate });
    expect(r.error).toEqual({ code: 'BAD_REQUEST', message: 'conflate must be a whole number of milliseconds from 10 to 60000' });
  }
  for (const conflate of [10, 60_000, null]) expect((await c.request({ op: 'sub', topics: ['/px/bad'], conflate })).ok).toBe(true);
  await c.close();
});

/** The node's metrics, summed over label sets. */
async function metrics(): Promise<Record<string, number>> {
  const names = ['c10m_conflation_groups', 'c10m_conflated_frames_total', 'c10m_conflated_skipped_total'];
  const values = await Promise.all(names.map((n) => metricSum(server, n)));
  return Object.fromEntries(names.map((n, i) => [n, values[i]]));
}
