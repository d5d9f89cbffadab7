// Guaranteed delivery (issue 5), end to end on real servers and sockets:
// resume after a disconnect replays exactly what was missed (both
// encodings, every owner/session workgroup pair), a resume from another
// epoch gets the current epoch from seq 1, a resume the cache cannot
// serve says why and gets the snapshot, retained snapshots (replace, expiry,
// qos standard), a slow consumer cut off without hurting its neighbours, the
// global cache budget evicting the oldest topics first, no duplicate or gap
// when messages arrive during a replay, and publish acks' (epoch, seq).
//
// "Before the reply" is measured: subscribeMarked() notes how many
// deliveries had arrived when the sub reply did.
import { connect, httpPublish, type Delivery, type TestClient } from './helpers/client';
import { firstBreak, otherEpoch, publishMany, range, sleep, subscribeMarked, type Ack } from './helpers/guaranteed';
import { RawWebSocket } from './helpers/raw-ws';
import { startServer, type TestServer } from './helpers/server';
import { connectIn, httpPublishFrom, jmx, metricSum, sourceAddresses, topicsOwnedBy, waitFor } from './helpers/workgroups';

jest.setTimeout(60_000);

type Encoding = 'json' | 'msgpack';
const other = (e: Encoding): Encoding => (e === 'json' ? 'msgpack' : 'json');

/** Sessions a test opened: closed after it, whatever happened. */
const open: TestClient[] = [];
function keep(c: TestClient): TestClient {
  open.push(c);
  return c;
}

/**
 * Every test has its own server (a crash in one cannot fail the next): its
 * sessions are closed, then it stops. A server that died during the test
 * (a signal, an exit) is reported, since the test's own error is then only
 * a closed socket.
 */
async function stopAfterTest(server: TestServer | undefined): Promise<void> {
  const dropped = open.some((c) => c.closeCode === 1006);
  await Promise.all(open.splice(0).map((c) => c.close()));
  if (!server) return;
  const name = expect.getState().currentTestName;
  if (dropped && server.proc.exitCode === null && server.proc.signalCode === null)
    await new Promise((r) => {
      server.proc.once('exit', r);
      setTimeout(r, 500);
    });
  const died = server.proc.signalCode ?? server.proc.exitCode;
  if (died !== null) console.error(`[guaranteed] the server died during "${name}": ${died}; stderr: ${server.stderr.join('').slice(0, 2000)}`);
  const errors = server.logs.filter((l) => typeof l.level === 'number' && l.level >= 50);
  if (errors.length > 0) console.error(`[guaranteed] server errors during "${name}": ${JSON.stringify(errors.slice(0, 3)).slice(0, 3000)}`);
  await server.stop();
}

/** Text long enough that msgpack decoders take their bulk-string path (real payloads have such strings). */
const text = (i: number) => `message ${i} `.padEnd(100 + (i % 60), 'abcdefghij');

async function client(server: TestServer, encoding: Encoding = 'json'): Promise<TestClient> {
  return keep(await connect(server.url(), encoding));
}

const seqsOf = (ds: Delivery[]) => ds.map((d) => d.seq);
const byTopic = (c: TestClient, topic: string) => c.deliveries.filter((d) => d.topic === topic);

/** Fresh subscription, `n` messages seen live, then the session closes: the position it had. */
async function seeThenLeave(server: TestServer, pub: TestClient, topic: string, n: number, encoding: Encoding = 'json', sub?: TestClient): Promise<{ epoch: number; last: number }> {
  const s = sub ?? (await client(server, encoding));
  const first = await subscribeMarked(s, [topic]);
  expect(first.reply.ok).toBe(true);
  const { epoch, seq } = first.topics[topic];
  expect(Number.isInteger(epoch) && epoch > 0 && epoch <= 0xffffffff).toBe(true);
  if (n > 0) {
    await publishMany(pub, topic, n, (i) => ({ phase: 'seen', i }));
    await s.until(() => byTopic(s, topic).length >= n, 10_000, `${n} live deliveries on ${topic}`);
  }
  const seen = byTopic(s, topic);
  expect(firstBreak(seqsOf(seen), seq + 1, seq + n)).toBeNull();
  await s.close();
  return { epoch, last: seq + n };
}

// ---------------------------------------------------------------------------

describe('resume after a disconnect (--workgroups 1)', () => {
  let server: TestServer;
  beforeEach(async () => {
    server = await startServer(['--workgroups', '1']);
  });
  afterEach(async () => {
    await stopAfterTest(server);
  });

  test.each(['json', 'msgpack'] as Encoding[])('%s: 500 missed messages replayed in order before the reply (recovered, replayed 500), then live with no gap or duplicate', async (enc) => {
    const topic = `/resume/${enc}`;
    const pub = await client(server, other(enc));
    const { epoch, last } = await seeThenLeave(server, pub, topic, 10, enc);

    const missed = await publishMany(pub, topic, 500, (i) => ({ phase: 'missed', i, text: text(i) }));
    expect(missed.every((a) => a.epoch === epoch)).toBe(true);
    expect(
      firstBreak(
        missed.map((a) => a.seq),
        last + 1,
        last + 500,
      ),
    ).toBeNull();

    const again = await client(server, enc);
    const r = await subscribeMarked(again, [topic], { qos: 'guaranteed', resume: { [topic]: [epoch, last] } });
    expect(r.reply).toMatchObject({ ok: true });
    expect(r.topics[topic]).toMatchObject({ epoch, seq: last + 500, recovered: true, replayed: 500 });
    expect(r.before.length).toBe(500);
    expect(firstBreak(seqsOf(r.before), last + 1, last + 500)).toBeNull();
    r.before.forEach((d, i) => {
      expect(d).toEqual({ topic, epoch, seq: last + 1 + i, ts: d.ts, replay: true, data: { phase: 'missed', i, text: text(i) } });
    });

    await publishMany(pub, topic, 20, (i) => ({ phase: 'live', i }));
    await again.until(() => again.deliveries.length >= 520, 10_000, '20 live deliveries after the replay');
    await again.request({ op: 'ping' });
    expect(firstBreak(seqsOf(again.deliveries), last + 1, last + 520)).toBeNull();
    const live = again.deliveries.slice(500);
    expect(live.every((d) => d.replay === undefined && d.snapshot === undefined && d.epoch === epoch)).toBe(true);
    expect(live.map((d) => d.data)).toEqual(range(0, 19).map((i) => ({ phase: 'live', i })));
  });

  test('resume at the last seq: nothing replayed (recovered, replayed 0), live continues', async () => {
    const topic = '/resume/uptodate';
    const pub = await client(server);
    const { epoch, last } = await seeThenLeave(server, pub, topic, 5);
    const again = await client(server);
    const r = await subscribeMarked(again, [topic], { resume: { [topic]: [epoch, last] } });
    expect(r.topics[topic]).toMatchObject({ epoch, seq: last, recovered: true, replayed: 0 });
    expect(r.before).toEqual([]);
    await publishMany(pub, topic, 3, (i) => i);
    await again.until(() => again.deliveries.length >= 3, 10_000, '3 live');
    expect(seqsOf(again.deliveries)).toEqual(range(last + 1, last + 3));
  });
});

// ---------------------------------------------------------------------------

const WG = 3;

describe(`across workgroups (--workgroups ${WG})`, () => {
  let server: TestServer;
  beforeEach(async () => {
    server = await startServer(['--workgroups', String(WG), '--cache-messages', '10000']);
  });
  afterEach(async () => {
    await stopAfterTest(server);
  });

  test('resume works for every (topic owner, session workgroup) pair, both encodings, publisher in a third workgroup in the other encoding', async () => {
    // Publishers in the other encoding than the subscriber: replays are transcoded too.
    const publishers = new Map<string, TestClient>();
    const publisher = async (w: number, enc: Encoding) => {
      const key = `${w}/${enc}`;
      if (!publishers.has(key)) publishers.set(key, keep((await connectIn(server, w, enc)).client));
      return publishers.get(key) as TestClient;
    };
    const figures: string[] = [];
    for (let owner = 0; owner < WG; owner++) {
      for (let session = 0; session < WG; session++) {
        const enc: Encoding = (owner + session) % 2 === 0 ? 'json' : 'msgpack';
        const [topic] = topicsOwnedBy(owner, WG, 1, `across/o${owner}s${session}`);
        const third = range(0, WG - 1).find((w) => w !== owner && w !== session) as number;
        const pub = await publisher(third, other(enc));
        const first = keep((await connectIn(server, session, enc)).client);
        const { epoch, last } = await seeThenLeave(server, pub, topic, 5, enc, first);
        await publishMany(pub, topic, 100, (i) => ({ owner, session, i, text: text(i) }));
        const placed = await connectIn(server, session, enc);
        const again = keep(placed.client);
        expect(placed.wg).toBe(session);
        const r = await subscribeMarked(again, [topic], { resume: { [topic]: [epoch, last] } });
        const where = `owner ${owner}, session in ${session}, ${enc}`;
        expect({ where, reply: r.reply }).toEqual({ where, reply: expect.objectContaining({ ok: true }) });
        expect({ where, entry: r.topics[topic] }).toEqual({ where, entry: expect.objectContaining({ epoch, seq: last + 100, recovered: true, replayed: 100 }) });
        expect({ where, replayBreak: firstBreak(seqsOf(r.before), last + 1, last + 100) }).toEqual({ where, replayBreak: null });
        expect(r.before.every((d) => d.replay === true && d.epoch === epoch && d.topic === topic)).toBe(true);
        expect(r.before.map((d) => d.data)).toEqual(range(0, 99).map((i) => ({ owner, session, i, text: text(i) })));
        await publishMany(pub, topic, 10, (i) => ({ live: i }));
        await again.until(() => again.deliveries.length >= 110, 10_000, `live after resume (${where})`);
        expect({ where, allBreak: firstBreak(seqsOf(again.deliveries), last + 1, last + 110) }).toEqual({ where, allBreak: null });
        figures.push(`${owner}/${session}`);
        await again.close();
      }
    }
    expect(figures.length).toBe(WG * WG);
  });

  test('a resume from another epoch gets the epoch from seq 1 before the reply (epoch_mismatch, replayed S), no snapshot, then live: same workgroup and across a ring', async () => {
    const pub = keep((await connectIn(server, 2, 'json')).client);
    for (const [session, enc] of [
      [0, 'json'],
      [1, 'msgpack'],
    ] as const) {
      const [topic] = topicsOwnedBy(0, WG, 1, `epoch-replay/s${session}`);
      // Seq 100 is retained: the client has it among the replayed, so no snapshot comes.
      const acks = await publishMany(pub, topic, 300, (i) => ({ i, text: text(i) }), { retain: (i) => i === 99 });
      const epoch = acks[0].epoch;
      const placed = await connectIn(server, session, enc);
      const sub = keep(placed.client);
      expect(placed.wg).toBe(session);
      const r = await subscribeMarked(sub, [topic], { resume: { [topic]: [otherEpoch(epoch), 40] } });
      const where = `session in ${session}, ${enc}`;
      expect({ where, entry: r.topics[topic] }).toEqual({ where, entry: { epoch, seq: 300, recovered: false, reason: 'epoch_mismatch', replayed: 300 } });
      expect({ where, before: r.before.length }).toEqual({ where, before: 300 });
      r.before.forEach((d, i) => expect(d).toEqual({ topic, epoch, seq: i + 1, ts: d.ts, replay: true, data: { i, text: text(i) } }));
      await pub.pub(topic, { live: 1 });
      await sub.until(() => sub.deliveries.length > 300, 10_000, `live after the replay (${where})`);
      expect(sub.deliveries.slice(300)).toEqual([{ topic, epoch, seq: 301, ts: expect.any(Number), data: { live: 1 } }]);
    }
  });

  test('messages published during a replay: the resumed session sees every seq once, replay then live, up to the last', async () => {
    // Owner, subscriber and publisher in three different workgroups (rings both ways).
    const [topic] = topicsOwnedBy(0, WG, 1, 'during-replay');
    const pub = keep((await connectIn(server, 2, 'msgpack')).client);
    const sub = keep((await connectIn(server, 1, 'json')).client);
    const pre = await publishMany(pub, topic, 1200, (i) => ({ pre: i }));
    const epoch = pre[0].epoch;
    let maxAcked = pre[pre.length - 1].seq;
    let finalSeq = maxAcked;
    let published = 0;
    let replyAt = -1; // published count when the test saw the sub reply
    let subSentAt = -1;
    const MAX = 6000;
    const publishing = (async () => {
      while (published < MAX && (replyAt < 0 || published < replyAt + 500)) {
        const acks = await publishMany(pub, topic, 50, (i) => ({ during: published + i }), { window: 50 });
        published += acks.length;
        for (const a of acks) {
          expect(a.epoch).toBe(epoch);
          if (a.seq > maxAcked) maxAcked = a.seq;
        }
        finalSeq = maxAcked;
      }
    })();
    publishing.catch(() => undefined); // awaited below; this only keeps a failure from being reported as unhandled meanwhile
    await waitFor(() => published >= 300, 20_000, '300 publishes under way');
    const from = maxAcked - 1000;
    subSentAt = published;
    const r = await subscribeMarked(sub, [topic], { resume: { [topic]: [epoch, from] } });
    replyAt = published;
    await publishing;
    expect(r.reply).toMatchObject({ ok: true });
    const R = r.topics[topic].seq;
    expect(r.topics[topic]).toMatchObject({ epoch, recovered: true, replayed: R - from });
    expect(R).toBeGreaterThanOrEqual(from + 1000);
    expect(firstBreak(seqsOf(r.before), from + 1, R)).toBeNull();
    expect(r.before.every((d) => d.replay === true)).toBe(true);
    await sub.until(() => sub.deliveries.length > 0 && sub.deliveries[sub.deliveries.length - 1].seq >= finalSeq, 20_000, `delivery of seq ${finalSeq}`);
    await sub.request({ op: 'ping' });
    expect(firstBreak(seqsOf(sub.deliveries), from + 1, finalSeq)).toBeNull();
    const live = sub.deliveries.slice(r.before.length);
    expect(live.length).toBe(finalSeq - R);
    expect(live.length).toBeGreaterThanOrEqual(400);
    expect(live.every((d) => d.replay === undefined && d.epoch === epoch)).toBe(true);
    console.log(
      `[guaranteed] during replay: resumed from ${from}, reply seq ${R} (replayed ${R - from}; ${R - (from + 1000)} published between the resume point's ack and the subscription taking effect; ` +
        `${replyAt - subSentAt} acked while the sub was in flight), live after the reply ${finalSeq - R}, last seq ${finalSeq}`,
    );
  });

  test('publish acks carry {epoch, seq}: consecutive per topic over WebSocket (JSON, msgpack, pipelined) and HTTP, equal to the deliveries', async () => {
    const [topic] = topicsOwnedBy(1, WG, 1, 'acks');
    const sub = keep((await connectIn(server, 0)).client);
    const first = await subscribeMarked(sub, [topic]);
    const { epoch, seq: s0 } = first.topics[topic];
    const jsonPub = keep((await connectIn(server, 0, 'json')).client);
    const mpPub = keep((await connectIn(server, 2, 'msgpack')).client);
    const httpAddresses = sourceAddresses(2, 900);
    const sent = new Map<number, unknown>();
    let expected = s0;
    const check = (ack: { epoch: unknown; seq: unknown }, data: unknown, how: string) => {
      expected++;
      expect({ how, ack }).toEqual({ how, ack: { epoch, seq: expected } });
      sent.set(expected, data);
    };
    for (let round = 0; round < 5; round++) {
      const a = await jsonPub.pub(topic, { round, via: 'ws-json' });
      check({ epoch: a.epoch, seq: a.seq }, { round, via: 'ws-json' }, 'WS JSON');
      expect(a.ok).toBe(true);
      const b = await mpPub.pub(topic, { round, via: 'ws-msgpack' });
      check({ epoch: b.epoch, seq: b.seq }, { round, via: 'ws-msgpack' }, 'WS msgpack');
      const h = await httpPublish(server.port, { topic, data: { round, via: 'http' } });
      expect(h.status).toBe(200);
      expect(Object.keys(h.body).sort()).toEqual(['epoch', 'seq']);
      check(h.body as { epoch: number; seq: number }, { round, via: 'http' }, 'HTTP');
      const hm = await httpPublish(server.port, { topic, data: { round, via: 'http-msgpack' } }, 'application/msgpack');
      expect(hm.status).toBe(200);
      check(hm.body as { epoch: number; seq: number }, { round, via: 'http-msgpack' }, 'HTTP msgpack');
      const hf = await httpPublishFrom(server, httpAddresses[round % 2], { topic, data: { round, via: 'http-from' } });
      expect(hf.status).toBe(200);
      check(hf.body as { epoch: number; seq: number }, { round, via: 'http-from' }, `HTTP from ${httpAddresses[round % 2]}`);
    }
    // Pipelined from one session: acks in send order, consecutive.
    const pipelined = await publishMany(mpPub, topic, 50, (i) => ({ pipelined: i }), { window: 50 });
    pipelined.forEach((a, i) => check(a, { pipelined: i }, `pipelined ${i}`));
    // Concurrent HTTP publishes: their seqs fill the next range, each once.
    const concurrent = await Promise.all(range(0, 19).map((i) => httpPublishFrom(server, httpAddresses[i % 2], { topic, data: { concurrent: i } })));
    expect(concurrent.every((c) => c.status === 200 && c.body.epoch === epoch)).toBe(true);
    const cseqs = concurrent.map((c) => c.body.seq as number);
    expect([...cseqs].sort((x, y) => x - y)).toEqual(range(expected + 1, expected + 20));
    concurrent.forEach((c, i) => sent.set(c.body.seq as number, { concurrent: i }));
    expected += 20;

    await sub.until(() => sub.deliveries.length >= expected - s0, 10_000, 'every acked message delivered');
    await sub.request({ op: 'ping' });
    expect(firstBreak(seqsOf(sub.deliveries), s0 + 1, expected)).toBeNull();
    for (const d of sub.deliveries) {
      expect(d.epoch).toBe(epoch);
      expect({ seq: d.seq, data: d.data }).toEqual({ seq: d.seq, data: sent.get(d.seq) });
    }
  });
});

// ---------------------------------------------------------------------------

describe('resume the cache cannot serve, and snapshots (--cache-messages 100)', () => {
  let server: TestServer;
  beforeEach(async () => {
    server = await startServer(['--workgroups', '1', '--cache-messages', '100']);
  });
  afterEach(async () => {
    await stopAfterTest(server);
  });

  /** A subscriber that saw 3 messages, left, and missed 500 (one of them retained at index retainAt, if given). */
  async function missed500(topic: string, retainAt: number | null) {
    const pub = await client(server);
    const { epoch, last } = await seeThenLeave(server, pub, topic, 3);
    const acks = await publishMany(pub, topic, 500, (i) => (i === retainAt ? { retained: i } : { i }), { retain: (i) => i === retainAt });
    const final = acks[acks.length - 1].seq;
    expect(final).toBe(last + 500);
    return { pub, epoch, last, final, snapshot: retainAt === null ? null : { seq: last + 1 + retainAt, data: { retained: retainAt } } };
  }

  /** Resumes from `resume` and checks: not recovered for `reason`, only the snapshot (if any) before the reply, then live. */
  async function expectNotRecovered(t: Awaited<ReturnType<typeof missed500>>, topic: string, resume: [number, number], reason: string, encoding: Encoding = 'json') {
    const c = await client(server, encoding);
    const r = await subscribeMarked(c, [topic], { qos: 'guaranteed', resume: { [topic]: resume } });
    expect(r.reply).toMatchObject({ ok: true });
    expect(r.topics[topic]).toMatchObject({ epoch: t.epoch, seq: t.final, recovered: false, reason });
    if (t.snapshot === null) {
      expect(r.before).toEqual([]);
    } else {
      expect(r.before).toEqual([{ topic, epoch: t.epoch, seq: t.snapshot.seq, ts: r.before[0]?.ts, snapshot: true, data: t.snapshot.data }]);
    }
    const ack = await t.pub.pub(topic, { after: reason });
    expect(ack).toMatchObject({ ok: true, epoch: t.epoch, seq: t.final + 1 });
    t.final++;
    await c.until(() => c.deliveries.length > r.before.length, 10_000, 'live after the reply');
    expect(c.deliveries.slice(r.before.length)).toEqual([{ topic, epoch: t.epoch, seq: t.final, ts: expect.any(Number), data: { after: reason } }]);
  }

  test('500 missed with 100 cached: cache_miss, the retained snapshot first (JSON and msgpack); without a snapshot nothing before the reply', async () => {
    const t = await missed500('/miss/snap', 450);
    await expectNotRecovered(t, '/miss/snap', [t.epoch, t.last], 'cache_miss');
    await expectNotRecovered(t, '/miss/snap', [t.epoch, t.last], 'cache_miss', 'msgpack');
    const u = await missed500('/miss/nosnap', null);
    await expectNotRecovered(u, '/miss/nosnap', [u.epoch, u.last], 'cache_miss');
  });

  test('the cache holds exactly the last 100: resume 100 back is recovered, 101 back is cache_miss', async () => {
    const t = await missed500('/miss/edge', null);
    const c = await client(server);
    const r = await subscribeMarked(c, ['/miss/edge'], { resume: { '/miss/edge': [t.epoch, t.final - 100] } });
    expect(r.topics['/miss/edge']).toMatchObject({ epoch: t.epoch, seq: t.final, recovered: true, replayed: 100 });
    expect(firstBreak(seqsOf(r.before), t.final - 99, t.final)).toBeNull();
    await expectNotRecovered(t, '/miss/edge', [t.epoch, t.final - 101], 'cache_miss');
  });

  test('another epoch: epoch_mismatch, with and without a snapshot', async () => {
    const t = await missed500('/mismatch/snap', 10);
    await expectNotRecovered(t, '/mismatch/snap', [otherEpoch(t.epoch), t.final - 5], 'epoch_mismatch');
    const u = await missed500('/mismatch/nosnap', null);
    await expectNotRecovered(u, '/mismatch/nosnap', [otherEpoch(u.epoch), u.final], 'epoch_mismatch', 'msgpack');
  });

  test('a seq ahead of the topic: unknown_position, with and without a snapshot', async () => {
    const t = await missed500('/ahead/snap', 499);
    await expectNotRecovered(t, '/ahead/snap', [t.epoch, t.final + 50], 'unknown_position', 'msgpack');
    await expectNotRecovered(t, '/ahead/snap', [t.epoch, t.final + 1], 'unknown_position');
    const u = await missed500('/ahead/nosnap', null);
    await expectNotRecovered(u, '/ahead/nosnap', [u.epoch, u.final + 1000], 'unknown_position');
  });

  test('a retained message is the snapshot for new subscribers (JSON and msgpack, flag, its seq, data), replaced by a newer retain (WS and HTTP)', async () => {
    const topic = '/snap/basic';
    const pub = await client(server);
    const a = await pub.pub(topic, { v: 'A' }, { retain: true });
    const epoch = a.epoch as number;
    const b = await pub.pub(topic, { v: 'B' });
    expect(b.seq).toBe((a.seq as number) + 1);

    const j = await client(server, 'json');
    const m = await client(server, 'msgpack');
    for (const c of [j, m]) {
      const r = await subscribeMarked(c, [topic]);
      expect(r.topics[topic]).toMatchObject({ epoch, seq: b.seq });
      expect(r.topics[topic].recovered).toBeUndefined();
      expect(r.before).toEqual([{ topic, epoch, seq: a.seq, ts: expect.any(Number), snapshot: true, data: { v: 'A' } }]);
    }
    const c1 = await pub.pub(topic, { v: 'C' });
    for (const c of [j, m]) {
      await c.until(() => c.deliveries.length === 2, 10_000, 'live C');
      expect(c.deliveries[1]).toEqual({ topic, epoch, seq: c1.seq, ts: expect.any(Number), data: { v: 'C' } });
    }

    // A newer retain over WebSocket (msgpack publisher) replaces it.
    const mp = await client(server, 'msgpack');
    const d = await mp.pub(topic, { v: 'D', n: [1, 2], text: text(7) }, { retain: true });
    const s1 = await client(server, 'json');
    const r1 = await subscribeMarked(s1, [topic]);
    expect(r1.before).toEqual([{ topic, epoch, seq: d.seq, ts: expect.any(Number), snapshot: true, data: { v: 'D', n: [1, 2], text: text(7) } }]);

    // And over HTTP.
    const h = await httpPublish(server.port, { topic, data: { v: 'E' }, retain: true });
    expect(h.status).toBe(200);
    expect(h.body).toEqual({ epoch, seq: (d.seq as number) + 1 });
    await pub.pub(topic, { v: 'F' });
    const s2 = await client(server, 'msgpack');
    const r2 = await subscribeMarked(s2, [topic]);
    expect(r2.topics[topic].seq).toBe((d.seq as number) + 2);
    expect(r2.before).toEqual([{ topic, epoch, seq: h.body.seq, ts: expect.any(Number), snapshot: true, data: { v: 'E' } }]);
  });

  test('qos standard gets the snapshot, never a replay and no recovered field, with or without resume', async () => {
    const topic = '/snap/standard';
    const pub = await client(server);
    const { epoch, last } = await seeThenLeave(server, pub, topic, 2);
    const acks = await publishMany(pub, topic, 30, (i) => (i === 20 ? { snap: i } : { i }), { retain: (i) => i === 20 });
    const final = acks[29].seq;
    for (const resume of [undefined, { [topic]: [epoch, last] }, { [topic]: [epoch, final] }, { [topic]: [otherEpoch(epoch), last] }]) {
      for (const enc of ['json', 'msgpack'] as Encoding[]) {
        const c = await client(server, enc);
        const r = await subscribeMarked(c, [topic], { qos: 'standard', ...(resume ? { resume } : {}) });
        const what = `standard, ${enc}, resume ${JSON.stringify(resume)}`;
        expect({ what, ok: r.reply.ok }).toEqual({ what, ok: true });
        const e = r.topics[topic];
        expect({ what, epoch: e.epoch, seq: e.seq, recovered: e.recovered, replayed: e.replayed, reason: e.reason }).toEqual({
          what,
          epoch,
          seq: final,
          recovered: undefined,
          replayed: undefined,
          reason: undefined,
        });
        expect({ what, before: r.before }).toEqual({ what, before: [{ topic, epoch, seq: last + 21, ts: expect.any(Number), snapshot: true, data: { snap: 20 } }] });
        await c.close();
      }
    }
    // The same resume with qos guaranteed is recovered (the cache holds the 30): the standard replies above were a choice.
    const g = await client(server);
    const rg = await subscribeMarked(g, [topic], { resume: { [topic]: [epoch, last] } });
    expect(rg.topics[topic]).toMatchObject({ epoch, seq: final, recovered: true, replayed: 30 });
    expect(rg.before.every((d) => d.replay === true && d.snapshot === undefined)).toBe(true);
  });
});

// ---------------------------------------------------------------------------

describe('snapshot expiry (--snapshot-ttl-seconds 1)', () => {
  let server: TestServer;
  beforeEach(async () => {
    server = await startServer(['--workgroups', '1', '--snapshot-ttl-seconds', '1']);
  });
  afterEach(async () => {
    await stopAfterTest(server);
  });

  test('a snapshot is sent while fresh and no longer after 2.5 s (fresh, standard, unrecovered resume); a new retain sets one again', async () => {
    const topic = '/ttl/a';
    const pub = await client(server);
    const x = await pub.pub(topic, { v: 'X' }, { retain: true });
    const epoch = x.epoch as number;
    const fresh = await client(server);
    const r0 = await subscribeMarked(fresh, [topic]);
    expect(r0.before).toEqual([{ topic, epoch, seq: x.seq, ts: expect.any(Number), snapshot: true, data: { v: 'X' } }]);

    await sleep(2500);
    for (const extra of [{}, { qos: 'standard' }, { resume: { [topic]: [epoch, (x.seq as number) + 10] } }]) {
      const c = await client(server, 'msgpack');
      const r = await subscribeMarked(c, [topic], extra);
      const what = JSON.stringify(extra);
      expect({ what, before: r.before }).toEqual({ what, before: [] });
      expect({ what, epoch: r.topics[topic].epoch, seq: r.topics[topic].seq }).toEqual({ what, epoch, seq: x.seq });
      await c.close();
    }
    // A resume from another epoch still gets the message from the history (a replay: the snapshot is what expired).
    const other = await client(server, 'msgpack');
    const r2 = await subscribeMarked(other, [topic], { resume: { [topic]: [otherEpoch(epoch), 1] } });
    expect(r2.before).toEqual([{ topic, epoch, seq: x.seq, ts: expect.any(Number), replay: true, data: { v: 'X' } }]);
    expect(r2.topics[topic]).toEqual({ epoch, seq: x.seq, recovered: false, reason: 'epoch_mismatch', replayed: 1 });

    const y = await pub.pub(topic, { v: 'Y' }, { retain: true });
    const late = await client(server);
    const r1 = await subscribeMarked(late, [topic]);
    expect(r1.before).toEqual([{ topic, epoch, seq: y.seq, ts: expect.any(Number), snapshot: true, data: { v: 'Y' } }]);
  });
});

// ---------------------------------------------------------------------------

describe('a slow consumer (--max-backpressure-bytes 65536)', () => {
  let server: TestServer;
  beforeEach(async () => {
    server = await startServer(['--workgroups', '1', '--max-backpressure-bytes', '65536']);
  });
  afterEach(async () => {
    await stopAfterTest(server);
  });

  test('a socket that stops reading is closed by the server (4000, or dropped); a normal subscriber on the topic gets every message in order', async () => {
    const topic = '/slow/topic';
    const closesBefore = await metricSum(server, 'c10m_slow_consumer_closes_total');

    const raw = await RawWebSocket.open(server.port, '/v1/ws?encoding=json');
    raw.sendJson({ id: 'rawsub', op: 'sub', topics: [topic] });
    await raw.until(() => raw.messages.some((m) => m.id === 'rawsub'), 10_000, 'the raw sub reply');
    const rawReply = raw.messages.find((m) => m.id === 'rawsub') as { ok: boolean; topics: Record<string, { epoch: number; seq: number }> };
    expect(rawReply.ok).toBe(true);
    const { epoch, seq: s0 } = rawReply.topics[topic];
    raw.pause();

    const normal = await client(server, 'json');
    const nr = await subscribeMarked(normal, [topic]);
    expect(nr.topics[topic]).toMatchObject({ epoch, seq: s0 });
    let maxDelayMicros = 0;
    let seen = normal.deliveries.length;
    normal.ws.on('message', () => {
      if (normal.deliveries.length === seen) return;
      seen = normal.deliveries.length;
      maxDelayMicros = Math.max(maxDelayMicros, Date.now() * 1000 - normal.deliveries[seen - 1].ts);
    });

    // About 8 MB/s in batches of 25 x 8 KiB: the server's own check (every 100 ms) sees the backlog long before
    // uWS's hard limit would. Keep going until the server gave up on the raw socket, then 200 more.
    const pub = await client(server, 'json');
    const pad = 'p'.repeat(8192);
    let published = 0;
    let closedAt = -1;
    const MAX = 4000;
    while (published < MAX && (closedAt < 0 || published < closedAt + 200)) {
      await publishMany(pub, topic, 25, (i) => ({ i: published + i, pad }), { window: 25 });
      published += 25;
      await sleep(25);
      if (closedAt < 0 && published % 100 === 0 && (await metricSum(server, 'c10m_slow_consumer_closes_total')) > closesBefore) closedAt = published;
    }
    expect({ published, slowConsumerClosed: closedAt > 0 }).toEqual({ published, slowConsumerClosed: true });

    // Read what the kernel kept for the raw socket: the connection must end (close frame 4000, a FIN or a reset).
    raw.resume();
    await raw.until(() => raw.closed, 20_000, 'the server to close the raw socket');
    const rawSeqs = raw.messages.filter((m) => m.op === 'msg').map((m) => m.seq as number);
    const how = raw.closeCode !== null ? `close frame ${raw.closeCode} (${raw.closeReason})` : raw.error ? `reset (${raw.error.code}), no close frame: 1006` : 'FIN without a close frame: 1006';
    if (raw.closeCode !== null) expect(raw.closeCode).toBe(4000);

    await normal.until(() => normal.deliveries.length >= published, 30_000, `all ${published} deliveries at the normal subscriber`);
    await normal.request({ op: 'ping' });
    expect(normal.closeCode).toBeNull();
    expect(firstBreak(seqsOf(normal.deliveries), s0 + 1, s0 + published)).toBeNull();
    expect(normal.deliveries.every((d, i) => (d.data as { i: number }).i === i && d.epoch === epoch)).toBe(true);
    const closes = (await metricSum(server, 'c10m_slow_consumer_closes_total')) - closesBefore;
    expect(closes).toBeGreaterThanOrEqual(1);
    expect((await jmx(server)).SlowConsumerDisconnects).toBeGreaterThanOrEqual(1);
    const rawBreak = firstBreak(rawSeqs, s0 + 1, s0 + rawSeqs.length);
    console.log(
      `[guaranteed] slow consumer: ${published} x 8 KiB published, server closed the raw socket by publish ${closedAt}; raw socket: ${how}, ${raw.bytesReceived} bytes and ${rawSeqs.length} deliveries read ` +
        `(${rawBreak === null ? 'consecutive' : `not consecutive: ${rawBreak}`}); slow consumer closes ${closes}; normal subscriber: ${normal.deliveries.length} in order, max delivery delay ${(maxDelayMicros / 1000).toFixed(1)} ms`,
    );
  });
});

// ---------------------------------------------------------------------------

describe('the global cache budget (--workgroups 1 --cache-bytes 2097152)', () => {
  let server: TestServer;
  beforeEach(async () => {
    server = await startServer(['--workgroups', '1', '--cache-bytes', '2097152']);
  });
  afterEach(async () => {
    await stopAfterTest(server);
  });

  test('about 5 MB over 50 topics: the oldest topics are cache_miss, the newest recovered; evictions counted; cache bytes within the budget', async () => {
    const TOPICS = 50;
    const PER = 100;
    const pad = 'z'.repeat(1000);
    const pub = await client(server);
    const topics = range(0, TOPICS - 1).map((t) => `/budget/t${t}`);
    const firsts: Ack[] = [];
    for (const [t, topic] of topics.entries()) {
      const acks = await publishMany(pub, topic, PER, (i) => ({ t, i, pad }));
      expect(
        firstBreak(
          acks.map((a) => a.seq),
          acks[0].seq,
          acks[0].seq + PER - 1,
        ),
      ).toBeNull();
      firsts.push(acks[0]);
    }
    // Resume every topic from its first message: 99 missed each.
    const c = await client(server);
    const resume: Record<string, [number, number]> = {};
    topics.forEach((topic, t) => (resume[topic] = [firsts[t].epoch, firsts[t].seq]));
    const r = await subscribeMarked(c, topics, { resume });
    expect(r.reply).toMatchObject({ ok: true });
    const status = topics.map((topic) => r.topics[topic]);
    const recovered = status.map((s) => s.recovered === true);
    const firstRecovered = recovered.indexOf(true);
    const summary = status.map((s, t) => `${t}:${s.recovered ? 'R' : s.reason}`).join(' ');
    // Oldest first out: a run of cache_miss, then only recovered topics, the newest among them.
    expect({ summary, oldestMissedAndSomeRecovered: firstRecovered > 0 }).toEqual({ summary, oldestMissedAndSomeRecovered: true });
    expect({ summary, recoveredAreTheNewest: recovered.slice(firstRecovered).every(Boolean) }).toEqual({ summary, recoveredAreTheNewest: true });
    expect(status.slice(0, firstRecovered).every((s) => s.recovered === false && s.reason === 'cache_miss')).toBe(true);
    // A topic's 100 messages are about 105 KB stored: 2 MiB holds at most 20 topics' worth (the last one partly).
    expect(TOPICS - firstRecovered).toBeLessThanOrEqual(20);
    expect(TOPICS - firstRecovered).toBeGreaterThanOrEqual(5);
    topics.forEach((topic, t) => {
      const mine = r.before.filter((d) => d.topic === topic);
      if (recovered[t]) {
        expect(status[t]).toMatchObject({ epoch: firsts[t].epoch, seq: firsts[t].seq + PER - 1, replayed: PER - 1 });
        expect({ topic, replayBreak: firstBreak(seqsOf(mine), firsts[t].seq + 1, firsts[t].seq + PER - 1) }).toEqual({ topic, replayBreak: null });
        expect(mine.every((d, k) => d.replay === true && (d.data as { i: number }).i === k + 1)).toBe(true);
      } else {
        expect(mine).toEqual([]);
      }
    });
    // Counters and gauges reach the stats block on the workgroup's once-a-second tick.
    await waitFor(async () => (await metricSum(server, 'c10m_cache_evictions_total')) > 0, 5000, 'c10m_cache_evictions_total > 0');
    await sleep(1100);
    const evictions = await metricSum(server, 'c10m_cache_evictions_total');
    // At least what the missing topics lost (each cache_miss topic lost at least its first message after the resume point).
    expect(evictions).toBeGreaterThanOrEqual(firstRecovered);
    const cacheBytes = await metricSum(server, 'c10m_cache_bytes');
    expect(cacheBytes).toBeLessThanOrEqual(2097152);
    expect(cacheBytes).toBeGreaterThan(1024 * 1024);
    const j = await jmx(server);
    expect(j.CacheEvictions).toBe(evictions);
    expect(j.ResumesNotRecovered as number).toBeGreaterThanOrEqual(firstRecovered);
    console.log(
      `[guaranteed] cache budget: ${TOPICS} topics x ${PER} x ~1 KiB; recovered from topic ${firstRecovered} on (${TOPICS - firstRecovered} newest topics), evictions ${evictions}, cache bytes ${cacheBytes}`,
    );
  });
});

describe('paced replays', () => {
  let server: TestServer | undefined;
  afterEach(async () => {
    await stopAfterTest(server);
    server = undefined;
  });

  test('--workgroups 2, 64 KiB rings: ten sessions resume 1,000 messages each at once through a ring 150 times smaller than the replay: every one gets all of them in order, and the owner queues no more than two batch records per replay', async () => {
    server = await startServer(['--workgroups', '2', '--ring-bytes', '65536', '--max-payload-bytes', '16384', '--cache-messages', '2000', '--cache-topic-bytes', String(4 * 1024 * 1024)]);
    const CLIENTS = 10;
    const N = 1000;
    // Owner 0, subscribers in 1: every replayed message crosses the ring 0 -> 1.
    const [topic] = topicsOwnedBy(0, 2, 1, 'paced');
    const pub = keep((await connectIn(server, 0, 'msgpack')).client);
    const big = (i: number) => `${i} `.padEnd(1000, 'xyzzy');
    const acks = await publishMany(pub, topic, N, (i) => ({ i, big: big(i) }), { window: 100 });
    const epoch = acks[0].epoch;
    const last = acks[N - 1].seq;
    expect(acks[0].seq).toBe(1);
    const subs: TestClient[] = [];
    for (let k = 0; k < CLIENTS; k++) {
      const placed = await connectIn(server, 1, k % 2 === 0 ? 'json' : 'msgpack');
      expect(placed.wg).toBe(1);
      subs.push(keep(placed.client));
    }
    // All at once: the owner has ten replays of ~1 MB each under way together.
    const results = await Promise.all(subs.map((c) => subscribeMarked(c, [topic], { resume: { [topic]: [epoch, 0] } }, 30_000)));
    results.forEach((r, k) => {
      const where = `client ${k}`;
      expect({ where, entry: r.topics[topic] }).toEqual({ where, entry: expect.objectContaining({ epoch, seq: last, recovered: true, replayed: N }) });
      expect({ where, replayBreak: firstBreak(seqsOf(r.before), 1, N) }).toEqual({ where, replayBreak: null });
      expect(r.before.every((d, i) => d.replay === true && (d.data as { i: number; big: string }).i === i && (d.data as { big: string }).big === big(i))).toBe(true);
    });
    // Live after the replays, no gap.
    await publishMany(pub, topic, 5, (i) => ({ live: i }));
    for (const c of subs) await c.until(() => c.deliveries.length >= N + 5, 10_000, 'live after the paced replay');
    for (const c of subs) expect(firstBreak(seqsOf(c.deliveries), 1, N + 5)).toBeNull();
    // The ring did fill (the pacing was exercised), and the owner's spill stayed at a few records.
    await waitFor(async () => (await metricSum(server as TestServer, 'c10m_ring_full_total', { workgroup: '0' })) > 0, 5000, 'ring 0 -> 1 found full');
    await sleep(1100);
    const peak = await metricSum(server, 'c10m_ring_spill_peak_bytes', { workgroup: '0' });
    const replayed = await metricSum(server, 'c10m_replayed_messages_total');
    expect(replayed).toBe(CLIENTS * N);
    expect(peak).toBeGreaterThan(0);
    // Unpaced, the owner would queue the whole replay here (about 10 MB).
    // At most two batch records (an eighth of the ring each) per replay.
    expect(peak).toBeLessThan(CLIENTS * 2 * (8 * 1024 + 1100) + 16 * 1024);
    console.log(`[guaranteed] paced replay: ${CLIENTS} x ${N} x ~1 KiB through a 64 KiB ring; owner spill peak ${peak} bytes; replayed ${replayed}`);
  });

  test('--workgroups 1: one sub resuming six topics of 20,000 messages: the replays take turns (every topic starts before any one ends), each complete and in order', async () => {
    server = await startServer(['--workgroups', '1', '--max-commands-per-second', '0', '--cache-messages', '20000', '--cache-topic-bytes', String(8 * 1024 * 1024)]);
    const TOPICS = 6;
    const N = 20_000;
    const topics = range(0, TOPICS - 1).map((k) => `/fair/${k}`);
    const pub = await client(server, 'msgpack');
    const epochs = new Map<string, number>();
    for (const t of topics) epochs.set(t, (await publishMany(pub, t, N, (i) => i, { window: 1000 }))[0].epoch);
    // One command, so the six replays start in the same turn; one socket, so the order seen is the order sent.
    const sub = await client(server, 'msgpack');
    const resume = Object.fromEntries(topics.map((t) => [t, [epochs.get(t), 0]]));
    const r = await subscribeMarked(sub, topics, { resume }, 60_000);
    expect(r.reply.ok).toBe(true);
    const first: number[] = [];
    const last: number[] = [];
    for (const t of topics) {
      expect(r.topics[t]).toMatchObject({ epoch: epochs.get(t), seq: N, recovered: true, replayed: N });
      const mine = r.before.filter((d) => d.topic === t);
      expect({ t, replayBreak: firstBreak(seqsOf(mine), 1, N) }).toEqual({ t, replayBreak: null });
      first.push(r.before.findIndex((d) => d.topic === t));
      last.push(r.before.map((d) => d.topic).lastIndexOf(t));
    }
    console.log(`[guaranteed] fair replays: first replayed message of each topic at ${first.join(',')}; last at ${last.join(',')} (of ${r.before.length})`);
    // Served one after another, the sixth topic would start after the first had ended.
    expect(Math.max(...first)).toBeLessThan(Math.min(...last));
  });
});
