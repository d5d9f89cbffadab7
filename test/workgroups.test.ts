// Several workgroups on one port (issue 4): connections IP-hashed to a
// workgroup (or spread by the kernel in --benchmark-mode), a publish in any
// workgroup reaching subscribers in every workgroup exactly once and in seq
// order, slots reused without leaking messages or acks to a successor, a
// workgroup that dies restarted without disturbing the others, tiny rings
// that spill instead of losing, and the per-address cap.
//
// Where a session landed is read from ping's `wg`; source addresses are
// chosen with the ws client's localAddress (all of 127.0.0.0/8 is loopback).
import type { Delivery, TestClient } from './helpers/client';
import { startServer, type TestServer } from './helpers/server';
import {
  connectFrom,
  connectIn,
  crashWorkgroup,
  httpPublishFrom,
  isOpen,
  jmx,
  metricSum,
  readyStatus,
  sourceAddresses,
  topicsOwnedBy,
  tryConnectFrom,
  waitFor,
  type PlacedClient,
} from './helpers/workgroups';

jest.setTimeout(60_000);

/** Sessions a test opened: closed after it, whatever happened. */
const open: TestClient[] = [];
function keep<T extends PlacedClient>(p: T): T {
  open.push(p.client);
  return p;
}
afterEach(async () => {
  await Promise.all(open.splice(0).map((c) => c.close()));
});

const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);
const byTopic = (c: TestClient, topic: string): Delivery[] => c.deliveries.filter((d) => d.topic === topic);

/** The (epoch, seq) an ack reply carries. */
function ackOf(reply: Record<string, unknown> | undefined): { epoch: number; seq: number } {
  if (reply?.ok !== true) throw new Error(`publish not acked: ${JSON.stringify(reply)}`);
  return { epoch: reply.epoch as number, seq: reply.seq as number };
}

describe('where sessions land', () => {
  test.each([2, 3])('--workgroups %i: sessions from 40 addresses reach every workgroup; one address always lands in the same one', async (n) => {
    const server = await startServer(['--workgroups', String(n)]);
    try {
      const addresses = sourceAddresses(40);
      const landed = new Map<string, number[]>();
      for (const address of addresses) {
        const placed = await Promise.all([0, 1, 2].map(() => connectFrom(server, address)));
        landed.set(
          address,
          placed.map((p) => p.wg),
        );
        await Promise.all(placed.map((p) => p.client.close()));
      }
      const perWorkgroup = new Array(n).fill(0);
      for (const [address, wgs] of landed) {
        expect({ address, wgs }).toEqual({ address, wgs: [wgs[0], wgs[0], wgs[0]] });
        expect(wgs[0]).toBeGreaterThanOrEqual(0);
        expect(wgs[0]).toBeLessThan(n);
        perWorkgroup[wgs[0]]++;
      }
      // Every workgroup gets a fair share of the addresses (expected 40/n each).
      for (const count of perWorkgroup) expect(count).toBeGreaterThanOrEqual(Math.floor(40 / n / 3));
      // Many sessions held at once from one address: still one workgroup.
      const many = await Promise.all(Array.from({ length: 24 }, () => connectFrom(server, '127.0.0.77')));
      expect(new Set(many.map((p) => p.wg)).size).toBe(1);
      await Promise.all(many.map((p) => p.client.close()));
    } finally {
      await server.stop();
    }
  });

  test('--benchmark-mode: connections from one address spread over the workgroups (kernel 4-tuple hash)', async () => {
    const server = await startServer(['--workgroups', '2', '--benchmark-mode']);
    try {
      const placed = await Promise.all(Array.from({ length: 24 }, () => connectFrom(server, '127.0.0.78')));
      const wgs = placed.map((p) => p.wg);
      await Promise.all(placed.map((p) => p.client.close()));
      // All 24 in one workgroup by chance: probability 2^-23.
      expect(new Set(wgs)).toEqual(new Set([0, 1]));
    } finally {
      await server.stop();
    }
  });
});

describe('delivery across workgroups (--workgroups 3)', () => {
  const N = 3;
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer(['--workgroups', String(N)]);
  });
  afterAll(async () => {
    await server?.stop();
  });

  test('publishes from every workgroup reach subscribers in every workgroup, both encodings, exactly once, in seq order, one epoch per topic (40 topics x 50 messages)', async () => {
    const TOPICS = 40;
    const MESSAGES = 50;
    // Topics owned by each workgroup, interleaved.
    const owned = range(0, N - 1).map((w) => topicsOwnedBy(w, N, Math.ceil(TOPICS / N), 'fan'));
    const topics = range(0, TOPICS - 1).map((i) => owned[i % N][Math.floor(i / N)]);
    const subs: PlacedClient[] = [];
    const pubs: PlacedClient[] = [];
    for (let w = 0; w < N; w++) {
      subs.push(keep(await connectIn(server, w, 'json')), keep(await connectIn(server, w, 'msgpack')));
      pubs.push(keep(await connectIn(server, w, w === 0 ? 'msgpack' : 'json')));
    }
    expect(subs.map((s) => s.wg)).toEqual([0, 0, 1, 1, 2, 2]);

    const epochOf = new Map<string, number>();
    for (const s of subs) {
      const reply = await s.client.sub(topics);
      expect(reply.ok).toBe(true);
      const states = reply.topics as Record<string, { epoch: number; seq: number }>;
      for (const t of topics) {
        expect({ t, seq: states[t].seq }).toEqual({ t, seq: 0 });
        if (!epochOf.has(t)) epochOf.set(t, states[t].epoch);
        expect({ t, epoch: states[t].epoch }).toEqual({ t, epoch: epochOf.get(t) });
      }
    }

    // Message k of topic i comes from publisher (i + k) % N: every topic gets publishes from every workgroup.
    for (let k = 0; k < MESSAGES; k++) {
      for (let i = 0; i < TOPICS; i++) {
        const p = (i + k) % N;
        pubs[p].client.send({ id: `${i}#${k}`, op: 'pub', topic: topics[i], data: { i, k, p }, ack: true });
      }
    }
    const total = TOPICS * MESSAGES;
    const acksOf = (c: TestClient) => [...c.replies.keys()].filter((id) => typeof id === 'string' && id.includes('#')).length;
    const expectedAcks = (p: number) => range(0, TOPICS - 1).reduce((n, i) => n + range(0, MESSAGES - 1).filter((k) => (i + k) % N === p).length, 0);
    await Promise.all(pubs.map((p, n) => p.client.until(() => acksOf(p.client) === expectedAcks(n), 20_000, `acks of publisher ${n}`)));

    // The seq each ack names, per topic: 1..50, and which message got it.
    const kAtSeq = topics.map(() => new Map<number, number>());
    for (let k = 0; k < MESSAGES; k++) {
      for (let i = 0; i < TOPICS; i++) {
        const ack = ackOf(pubs[(i + k) % N].client.replies.get(`${i}#${k}`));
        expect({ topic: topics[i], epoch: ack.epoch }).toEqual({ topic: topics[i], epoch: epochOf.get(topics[i]) });
        kAtSeq[i].set(ack.seq, k);
      }
    }
    for (let i = 0; i < TOPICS; i++) {
      expect([...kAtSeq[i].keys()].sort((a, b) => a - b)).toEqual(range(1, MESSAGES));
      // One publisher's messages to a topic are sequenced in the order it sent them.
      const inSeqOrder = range(1, MESSAGES).map((seq) => kAtSeq[i].get(seq) as number);
      for (let p = 0; p < N; p++) {
        const mine = inSeqOrder.filter((k) => (i + k) % N === p);
        expect({ topic: topics[i], p, ks: mine }).toEqual({ topic: topics[i], p, ks: [...mine].sort((a, b) => a - b) });
      }
    }

    for (const s of subs) {
      const c = s.client;
      await c.until(() => c.deliveries.length >= total, 20_000, `${total} deliveries in workgroup ${s.wg} (${c.encoding})`);
      await c.request({ op: 'ping' });
      expect(c.deliveries.length).toBe(total);
      for (let i = 0; i < TOPICS; i++) {
        const got = byTopic(c, topics[i]);
        const where = { wg: s.wg, encoding: c.encoding, topic: topics[i] };
        expect({ ...where, seqs: got.map((d) => d.seq) }).toEqual({ ...where, seqs: range(1, MESSAGES) });
        expect({ ...where, epochs: new Set(got.map((d) => d.epoch)) }).toEqual({ ...where, epochs: new Set([epochOf.get(topics[i])]) });
        // The message at seq s is the one whose ack said s.
        expect({ ...where, ks: got.map((d) => (d.data as { k: number }).k) }).toEqual({ ...where, ks: got.map((d) => kAtSeq[i].get(d.seq)) });
        for (const d of got) expect(d.data).toEqual({ i, k: (d.data as { k: number }).k, p: ((d.data as { k: number }).k + i) % N });
      }
    }
  });

  test('HTTP POST /v1/publish in every workgroup reaches subscribers in every workgroup, in order, with the seq it answered', async () => {
    const topics = range(0, N - 1).flatMap((w) => topicsOwnedBy(w, N, 2, 'http'));
    // One source address per workgroup for the HTTP publishes: where a WebSocket from it lands.
    const addressOf: (string | undefined)[] = new Array(N).fill(undefined);
    for (const address of sourceAddresses(64, 2000)) {
      if (addressOf.every((a) => a !== undefined)) break;
      const p = await connectFrom(server, address);
      await p.client.close();
      if (addressOf[p.wg] === undefined) addressOf[p.wg] = address;
    }
    expect(range(0, N - 1).every((w) => addressOf[w] !== undefined)).toBe(true);
    const subs: PlacedClient[] = [];
    for (let w = 0; w < N; w++) subs.push(keep(await connectIn(server, w, 'json')), keep(await connectIn(server, w, 'msgpack')));
    const epochOf = new Map<string, number>();
    for (const s of subs) {
      const states = (await s.client.sub(topics)).topics as Record<string, { epoch: number; seq: number }>;
      for (const t of topics) {
        if (!epochOf.has(t)) epochOf.set(t, states[t].epoch);
        expect(states[t]).toEqual({ epoch: epochOf.get(t), seq: 0 });
      }
    }
    const httpBefore = await Promise.all(range(0, N - 1).map((w) => metricSum(server, 'c10m_http_publishes_total', { workgroup: String(w) })));
    const ROUNDS = 6;
    for (let r = 0; r < ROUNDS; r++) {
      for (const t of topics) {
        const from = (r + topics.indexOf(t)) % N;
        const res = await httpPublishFrom(server, addressOf[from]!, { topic: t, data: { r, from } });
        expect(res).toEqual({ status: 200, body: { epoch: epochOf.get(t), seq: r + 1 } });
      }
    }
    // Each workgroup took its share of the HTTP publishes (the address's workgroup served it).
    const httpAfter = await Promise.all(range(0, N - 1).map((w) => metricSum(server, 'c10m_http_publishes_total', { workgroup: String(w) })));
    expect(httpAfter.map((v, w) => v - httpBefore[w])).toEqual(new Array(N).fill((ROUNDS * topics.length) / N));
    for (const s of subs) {
      const c = s.client;
      await c.until(() => c.deliveries.length >= ROUNDS * topics.length, 10_000, 'HTTP deliveries');
      await c.request({ op: 'ping' });
      for (const t of topics) {
        const got = byTopic(c, t);
        expect({ wg: s.wg, t, seqs: got.map((d) => d.seq) }).toEqual({ wg: s.wg, t, seqs: range(1, ROUNDS) });
        expect(got.map((d) => d.data)).toEqual(range(0, ROUNDS - 1).map((r) => ({ r, from: (r + topics.indexOf(t)) % N })));
        expect(got.every((d) => d.epoch === epochOf.get(t))).toBe(true);
      }
      expect(c.deliveries.length).toBe(ROUNDS * topics.length);
    }
  });
});

describe('slot reuse (--workgroups 2)', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer(['--workgroups', '2']);
  });
  afterAll(async () => {
    await server?.stop();
  });

  test('sessions opened after a subscriber closed (same address, same workgroup) never get its topics', async () => {
    for (let w = 0; w < 2; w++) {
      const mine = [...topicsOwnedBy(w, 2, 1, `reuse${w}`), ...topicsOwnedBy(1 - w, 2, 1, `reuse${w}`)];
      const other = topicsOwnedBy(1 - w, 2, 1, `reuse${w}-other`)[0];
      const first = await connectIn(server, w);
      const address = first.address;
      const control = keep(await connectIn(server, 1 - w));
      const publisher = keep(await connectIn(server, 1 - w));
      await control.client.sub(mine);
      // A subscriber that closes after its subscriptions took effect.
      await first.client.sub(mine);
      for (const t of mine) await publisher.client.pub(t, 'before');
      await first.client.until(() => first.client.deliveries.length === 2, 5000, 'deliveries before close');
      await first.client.close();
      // Subscribers that close while their subscriptions are still on their way to the owner, each
      // followed at once by a successor from the same address: same workgroup, very likely the freed
      // slot. A flood keeps the owner busy so that the answer comes after the successor opened.
      const flooder = keep(await connectIn(server, w));
      const busy = topicsOwnedBy(1 - w, 2, 1, `reuse${w}-busy`)[0];
      const successors: PlacedClient[] = [];
      for (let r = 0; r < 10; r++) {
        for (let k = 0; k < 300; k++) flooder.client.send({ op: 'pub', id: `f${r}-${k}`, topic: busy, data: k });
        const quick = await connectFrom(server, address);
        expect(quick.wg).toBe(w);
        quick.client.send({ id: 'late-sub', op: 'sub', topics: mine });
        const closing = quick.client.close();
        const s = keep(await connectFrom(server, address));
        expect(s.wg).toBe(w);
        successors.push(s);
        await closing;
      }
      await successors[0].client.sub([other]);
      for (let k = 0; k < 20; k++) for (const t of [...mine, other]) publisher.client.send({ id: `${t}-${k}`, op: 'pub', topic: t, data: k, ack: true });
      await publisher.client.until(() => publisher.client.replies.size >= 60 + 2, 10_000, 'acks');
      await control.client.until(() => control.client.deliveries.length === 2 + 40, 10_000, 'control deliveries');
      await successors[0].client.until(() => successors[0].client.deliveries.length === 20, 10_000, 'deliveries of the successor topic');
      for (const s of successors) await s.client.request({ op: 'ping' });
      for (const s of successors) {
        expect(s.client.deliveries.filter((d) => d.topic !== other)).toEqual([]);
        expect(s.client.unsolicited).toEqual([]);
        expect(s.client.replies.has('late-sub')).toBe(false);
      }
      expect(successors[0].client.deliveries.map((d) => d.data)).toEqual(range(0, 19));
      await Promise.all(open.splice(0).map((c) => c.close()));
    }
  });

  test("a publish's ack for a session that closed at once never reaches the session that takes its slot", async () => {
    for (let w = 0; w < 2; w++) {
      // The owner is the other workgroup, so the ack comes back later, over a ring.
      const topic = topicsOwnedBy(1 - w, 2, 1, `ghost${w}`)[0];
      const busy = topicsOwnedBy(1 - w, 2, 1, `ghost${w}-busy`)[0];
      const first = await connectIn(server, w);
      const address = first.address;
      await first.client.close();
      const flooder = keep(await connectIn(server, w));
      const control = keep(await connectIn(server, 1 - w));
      await control.client.sub([topic]);
      const successors: PlacedClient[] = [];
      const ROUNDS = 15;
      for (let r = 0; r < ROUNDS; r++) {
        // Keep the owner busy so that the ack is still on its way when the successor opens.
        for (let k = 0; k < 300; k++) flooder.client.send({ op: 'pub', id: `f${r}-${k}`, topic: busy, data: k });
        const p = await connectFrom(server, address);
        expect(p.wg).toBe(w);
        p.client.send({ id: `ghost-${r}`, op: 'pub', topic, data: r, ack: true });
        const closing = p.client.close();
        const s = keep(await connectFrom(server, address));
        successors.push(s);
        await closing;
      }
      await control.client.until(() => control.client.deliveries.length === ROUNDS, 10_000, 'control deliveries');
      // Every ghost publish was published (once), whoever got its ack.
      expect(control.client.deliveries.map((d) => d.data)).toEqual(range(0, ROUNDS - 1));
      await flooder.client.request({ op: 'ping' });
      for (const s of successors) {
        await s.client.request({ op: 'ping' });
        const ghosts = [...s.client.replies.keys()].filter((id) => String(id).startsWith('ghost'));
        expect(ghosts).toEqual([]);
        expect(s.client.unsolicited).toEqual([]);
        expect(s.client.deliveries).toEqual([]);
      }
      await Promise.all(open.splice(0).map((c) => c.close()));
    }
  });
});

describe('a workgroup that dies (C10M_FAULT_INJECTION=1)', () => {
  test.each([
    ['exit', 0],
    ['throw', 1],
  ] as const)('how=%s on workgroup %i: only its sessions close, the other keeps delivering, it restarts and serves every topic again', async (how, victim) => {
    const survivor = 1 - victim;
    const server = await startServer(['--workgroups', '2'], { C10M_FAULT_INJECTION: '1' });
    try {
      const victimTopics = topicsOwnedBy(victim, 2, 3, `kill-${how}`);
      const survivorTopics = topicsOwnedBy(survivor, 2, 3, `kill-${how}`);
      const topics = [...victimTopics, ...survivorTopics];
      const subsS = [keep(await connectIn(server, survivor, 'json')), keep(await connectIn(server, survivor, 'msgpack'))];
      const subsV = [keep(await connectIn(server, victim, 'json')), keep(await connectIn(server, victim, 'msgpack'))];
      const pubS = keep(await connectIn(server, survivor));
      const pubV = keep(await connectIn(server, victim));
      const firstEpoch = new Map<string, number>();
      for (const s of [...subsS, ...subsV]) {
        const states = (await s.client.sub(topics)).topics as Record<string, { epoch: number; seq: number }>;
        for (const t of topics) {
          if (!firstEpoch.has(t)) firstEpoch.set(t, states[t].epoch);
          expect(states[t]).toEqual({ epoch: firstEpoch.get(t), seq: 0 });
        }
      }

      // Before: 10 messages per topic, from both workgroups.
      const acks = new Map<string, { epoch: number; seq: number }[]>(topics.map((t) => [t, []]));
      for (let k = 0; k < 10; k++) {
        for (const t of topics) acks.get(t)!.push(ackOf(await (k % 2 ? pubV : pubS).client.pub(t, { phase: 'before', k })));
      }
      for (const s of [...subsS, ...subsV]) await s.client.until(() => s.client.deliveries.length === 10 * topics.length, 10_000, 'deliveries before the crash');
      expect(await metricSum(server, 'c10m_workgroup_restarts_total', { workgroup: String(victim) })).toBe(0);

      const crashedAt = Date.now();
      expect(await crashWorkgroup(server, victim, how)).toBe(202);
      // The victim's sessions are closed ...
      const victimSessions = [...subsV, pubV].map((p) => p.client);
      await waitFor(() => victimSessions.every((c) => c.closeCode !== null), 10_000, "the victim's sessions to close");
      const closedAfterMs = Date.now() - crashedAt;
      // A dying workgroup tells its sessions 1011 (server fault: reconnect), not a bare drop.
      expect(victimSessions.map((c) => c.closeCode)).toEqual(victimSessions.map(() => 1011));
      // ... the supervisor counts a restart and the node is ready again within a bound.
      await waitFor(async () => (await metricSum(server, 'c10m_workgroup_restarts_total', { workgroup: String(victim) })) === 1, 10_000, 'the restart counted');

      // During the restart: the survivor's own topics keep flowing to its sessions.
      for (let k = 10; k < 20; k++) for (const t of survivorTopics) acks.get(t)!.push(ackOf(await pubS.client.pub(t, { phase: 'during', k })));

      const readyAfterMs = await waitFor(async () => (await readyStatus(server)) === 200, 15_000, '/readyz 200 after the restart');
      expect(readyAfterMs).toBeLessThan(15_000);
      const readyAtMs = Date.now() - crashedAt;
      expect((await jmx(server)).WorkgroupRestarts).toBe(1);
      expect(await metricSum(server, 'c10m_workgroup_restarts_total', { workgroup: String(survivor) })).toBe(0);
      for (const s of [...subsS, pubS]) expect(isOpen(s.client)).toBe(true);

      // New sessions land on the restarted workgroup and are served: subscribe to topics of both owners.
      const fresh = [keep(await connectIn(server, victim, 'json')), keep(await connectIn(server, victim, 'msgpack'))];
      const pubV2 = keep(await connectIn(server, victim));
      const freshStates = new Map<string, { epoch: number; seq: number }>();
      for (const s of fresh) {
        const reply = await s.client.sub(topics);
        expect(reply.ok).toBe(true);
        const states = reply.topics as Record<string, { epoch: number; seq: number }>;
        for (const t of topics) {
          if (!freshStates.has(t)) freshStates.set(t, states[t]);
          expect(states[t]).toEqual(freshStates.get(t));
        }
      }
      // The survivor's topics keep their history; the victim's start a new one (or keep theirs).
      for (const t of survivorTopics) expect(freshStates.get(t)).toEqual({ epoch: firstEpoch.get(t), seq: 20 });

      // After: 10 more per topic, from the survivor and from the restarted workgroup.
      const afterAcks = new Map<string, { epoch: number; seq: number }[]>(topics.map((t) => [t, []]));
      for (let k = 20; k < 30; k++) {
        for (const t of topics) afterAcks.get(t)!.push(ackOf(await (k % 2 ? pubV2 : pubS).client.pub(t, { phase: 'after', k })));
      }
      for (const t of victimTopics) {
        const a = afterAcks.get(t)!;
        // One epoch after the restart, consecutive seqs, following what the new owner told the fresh subscribers.
        expect(new Set(a.map((x) => x.epoch))).toEqual(new Set([freshStates.get(t)!.epoch]));
        expect(a.map((x) => x.seq)).toEqual(range(freshStates.get(t)!.seq + 1, freshStates.get(t)!.seq + 10));
      }
      for (const t of survivorTopics) expect(afterAcks.get(t)).toEqual(range(21, 30).map((seq) => ({ epoch: firstEpoch.get(t), seq })));

      // The survivor's subscribers got everything: their own topics 1..30 in one epoch,
      // the victim's topics 10 before and 10 after, each part consecutive in its epoch.
      for (const s of subsS) {
        const c = s.client;
        const expected = 30 * survivorTopics.length + 20 * victimTopics.length;
        await c.until(() => c.deliveries.length >= expected, 10_000, `survivor deliveries (${c.encoding})`);
        await c.request({ op: 'ping' });
        expect(c.deliveries.length).toBe(expected);
        for (const t of survivorTopics) {
          const got = byTopic(c, t);
          expect({ t, seqs: got.map((d) => d.seq) }).toEqual({ t, seqs: range(1, 30) });
          expect(got.every((d) => d.epoch === firstEpoch.get(t))).toBe(true);
          expect(got.map((d) => (d.data as { k: number }).k)).toEqual(range(0, 29));
        }
        for (const t of victimTopics) {
          const got = byTopic(c, t);
          expect({ t, before: got.slice(0, 10).map((d) => [d.epoch, d.seq]) }).toEqual({ t, before: acks.get(t)!.map((a) => [a.epoch, a.seq]) });
          expect({ t, after: got.slice(10).map((d) => [d.epoch, d.seq]) }).toEqual({ t, after: afterAcks.get(t)!.map((a) => [a.epoch, a.seq]) });
          expect(got.map((d) => (d.data as { k: number }).k)).toEqual([...range(0, 9), ...range(20, 29)]);
        }
      }
      // The restarted workgroup's new sessions get every message published after they subscribed.
      for (const s of fresh) {
        const c = s.client;
        await c.until(() => c.deliveries.length >= 10 * topics.length, 10_000, `deliveries on the restarted workgroup (${c.encoding})`);
        await c.request({ op: 'ping' });
        expect(c.deliveries.length).toBe(10 * topics.length);
        for (const t of topics) {
          const got = byTopic(c, t);
          expect({ t, got: got.map((d) => [d.epoch, d.seq]) }).toEqual({ t, got: afterAcks.get(t)!.map((a) => [a.epoch, a.seq]) });
          expect(got.map((d) => (d.data as { k: number }).k)).toEqual(range(20, 29));
        }
      }
      expect(await readyStatus(server)).toBe(200);
      const epochChanged = victimTopics.filter((t) => freshStates.get(t)!.epoch !== firstEpoch.get(t)).length;

      console.log(
        `how=${how} wg=${victim}: victim sessions closed ${closedAfterMs} ms after the crash (codes ${victimSessions.map((c) => c.closeCode)}), ready again at ${readyAtMs} ms; new epoch for ${epochChanged}/${victimTopics.length} of its topics`,
      );
    } finally {
      await Promise.all(open.splice(0).map((c) => c.close()));
      await server.stop();
    }
  });
});

describe('tiny rings (--ring-bytes 4096 --max-payload-bytes 1024)', () => {
  test('a burst of 4000 publishes of ~500 bytes to topics owned by the other workgroup: every message arrives once, in order; the producer counted ring full events', async () => {
    // A generous backpressure bound: this test is about the rings, not about slow consumers.
    const server = await startServer(['--workgroups', '2', '--ring-bytes', '4096', '--max-payload-bytes', '1024', '--max-backpressure-bytes', String(64 * 1024 * 1024)]);
    try {
      const A = 0;
      const B = 1;
      const TOPICS = 4;
      const PER_TOPIC = 1000;
      const topics = topicsOwnedBy(B, 2, TOPICS, 'tiny');
      const subs = [keep(await connectIn(server, A, 'json')), keep(await connectIn(server, A, 'msgpack')), keep(await connectIn(server, B, 'json')), keep(await connectIn(server, B, 'msgpack'))];
      for (const s of subs) expect((await s.client.sub(topics)).ok).toBe(true);
      const publisher = keep(await connectIn(server, A));
      const fullBefore = await metricSum(server, 'c10m_ring_full_total');
      const pad = 'x'.repeat(480);
      for (let k = 0; k < PER_TOPIC; k++) {
        for (let i = 0; i < TOPICS; i++) publisher.client.send({ id: `${i}#${k}`, op: 'pub', topic: topics[i], data: { k, pad }, ack: true });
      }
      const total = TOPICS * PER_TOPIC;
      // Count acks by their ids: the replies map also holds the ping that placed the publisher.
      const acked = () => {
        let n = 0;
        for (let i = 0; i < TOPICS; i++) for (let k = 0; k < PER_TOPIC; k++) if (publisher.client.replies.has(`${i}#${k}`)) n++;
        return n;
      };
      await publisher.client.until(() => acked() === total, 30_000, `${total} acks`);
      for (let i = 0; i < TOPICS; i++) {
        for (let k = 0; k < PER_TOPIC; k++) {
          const ack = publisher.client.replies.get(`${i}#${k}`);
          expect({ i, k, ok: ack?.ok, seq: ack?.seq }).toEqual({ i, k, ok: true, seq: k + 1 });
        }
      }
      for (const s of subs) {
        const c = s.client;
        await c.until(() => c.deliveries.length >= total, 30_000, `${total} deliveries in workgroup ${s.wg} (${c.encoding})`);
        await c.request({ op: 'ping' });
        expect(isOpen(c)).toBe(true);
        expect(c.deliveries.length).toBe(total);
        for (const t of topics) {
          const got = byTopic(c, t);
          const where = { wg: s.wg, encoding: c.encoding, t };
          expect({ ...where, seqs: got.map((d) => d.seq) }).toEqual({ ...where, seqs: range(1, PER_TOPIC) });
          expect({ ...where, ks: got.map((d) => (d.data as { k: number }).k) }).toEqual({ ...where, ks: range(0, PER_TOPIC - 1) });
          expect(new Set(got.map((d) => d.epoch)).size).toBe(1);
          expect(got.every((d) => (d.data as { pad: string }).pad === pad)).toBe(true);
        }
      }
      // Ring counters are refreshed once a second.
      let full = 0;
      await waitFor(async () => (full = await metricSum(server, 'c10m_ring_full_total')) > fullBefore, 5000, 'c10m_ring_full_total > 0');
      const j = await jmx(server);
      expect(j.RingFullEvents as number).toBeGreaterThan(0);
      expect(await metricSum(server, 'c10m_internal_errors_total')).toBe(0);

      console.log(`tiny rings: ${total} publishes, ring full events ${full} (jmx ${j.RingFullEvents}), ring records out ${j.RingRecords}`);
    } finally {
      await Promise.all(open.splice(0).map((c) => c.close()));
      await server.stop();
    }
  });
});

describe('--max-connections-per-ip 3 with 2 workgroups', () => {
  test('the 4th session from one address is refused with 429; other addresses (in either workgroup) are not; a freed place is taken again', async () => {
    const CAP = 3;
    const server = await startServer(['--workgroups', '2', '--max-connections-per-ip', String(CAP)]);
    try {
      // Two addresses in each workgroup, each starting with one session.
      const chosen: PlacedClient[] = [];
      for (const address of sourceAddresses(64, 4000)) {
        if ([0, 1].every((w) => chosen.filter((c) => c.wg === w).length === 2)) break;
        const p = await connectFrom(server, address);
        if (chosen.filter((c) => c.wg === p.wg).length < 2) chosen.push(keep(p));
        else await p.client.close();
      }
      expect(chosen.map((c) => c.wg).sort()).toEqual([0, 0, 1, 1]);
      const [x, y] = [chosen.find((c) => c.wg === 0)!, chosen.find((c) => c.wg === 1)!];
      const held = new Map<string, TestClient[]>(chosen.map((c) => [c.address, [c.client]]));
      const rejectedBefore = await metricSum(server, 'c10m_sessions_rejected_total');

      // Fill x and y to the cap; their 4th is refused.
      for (const p of [x, y]) {
        for (let i = 1; i < CAP; i++) {
          const more = keep(await connectFrom(server, p.address));
          expect(more.wg).toBe(p.wg);
          held.get(p.address)!.push(more.client);
        }
        expect((await tryConnectFrom(server, p.address)).status).toBe(429);
        expect((await tryConnectFrom(server, p.address)).status).toBe(429);
      }
      // The other address of each workgroup is unaffected: up to the cap, then refused too.
      for (const p of chosen.filter((c) => c !== x && c !== y)) {
        for (let i = 1; i < CAP; i++) {
          const r = await tryConnectFrom(server, p.address);
          expect({ address: p.address, status: r.status }).toEqual({ address: p.address, status: 101 });
          open.push(r.client!);
        }
        expect((await tryConnectFrom(server, p.address)).status).toBe(429);
      }
      // Every held session is still served.
      for (const list of held.values()) for (const c of list) expect((await c.request({ op: 'ping' })).ok).toBe(true);

      // A freed place is taken again, once the server saw the close; then the cap holds again.
      for (const p of [x, y]) {
        await held.get(p.address)![0].close();
        let status = 0;
        await waitFor(
          async () => {
            const r = await tryConnectFrom(server, p.address);
            status = r.status;
            if (r.client) open.push(r.client);
            return r.status === 101;
          },
          5000,
          `a session from ${p.address} after one closed`,
        );
        expect(status).toBe(101);
        expect((await tryConnectFrom(server, p.address)).status).toBe(429);
      }
      expect((await metricSum(server, 'c10m_sessions_rejected_total')) - rejectedBefore).toBeGreaterThanOrEqual(2 * 2 + 2 + 2);
    } finally {
      await Promise.all(open.splice(0).map((c) => c.close()));
      await server.stop();
    }
  });
});

describe('--max-connections-per-ip across a workgroup restart (C10M_FAULT_INJECTION=1)', () => {
  test('addresses whose sessions outlived a restart elsewhere still get no more than the cap', async () => {
    const CAP = 3;
    const server = await startServer(['--workgroups', '2', '--max-connections-per-ip', String(CAP)], { C10M_FAULT_INJECTION: '1' });
    try {
      // Addresses served by workgroup 1, each at the cap.
      const held: PlacedClient[] = [];
      for (const address of sourceAddresses(64, 6000)) {
        if (held.length === 4 * CAP) break;
        const p = await connectFrom(server, address);
        if (p.wg !== 1) {
          await p.client.close();
          continue;
        }
        held.push(keep(p));
        for (let i = 1; i < CAP; i++) held.push(keep(await connectFrom(server, address)));
      }
      expect(held.length).toBe(4 * CAP);
      // Workgroup 0 dies and comes back: its new listen socket joins the port's group behind
      // workgroup 1's, so the addresses above now hash to workgroup 0, where they have no session.
      await server.waitForLog((l) => l.msg === 'connections IP-hashed to workgroups');
      const attachedBefore = server.logs.filter((l) => l.msg === 'connections IP-hashed to workgroups').length;
      expect(await crashWorkgroup(server, 0, 'exit')).toBe(202);
      await waitFor(() => server.logs.filter((l) => l.msg === 'connections IP-hashed to workgroups').length > attachedBefore, 15_000, 'the IP hash attached again after the restart');
      for (const p of held) expect((await p.client.request({ op: 'ping' })).ok).toBe(true);
      const addresses = [...new Set(held.map((p) => p.address))];
      let moved = 0;
      for (const address of addresses) {
        const r = await tryConnectFrom(server, address);
        expect({ address, status: r.status }).toEqual({ address, status: 429 });
        if (r.client) open.push(r.client);
      }
      // The sessions of addresses that moved count wherever they are: a new one from a moved address lands in 0.
      for (const address of sourceAddresses(64, 6000)
        .filter((a) => !addresses.includes(a))
        .slice(0, 8)) {
        const p = await connectFrom(server, address);
        if (p.wg === 0) moved++;
        await p.client.close();
      }
      expect(moved).toBeGreaterThan(0);
    } finally {
      await Promise.all(open.splice(0).map((c) => c.close()));
      await server.stop();
    }
  }, 60_000);
});

describe('rings backed up: publishes refused, never queued without bound (C10M_FAULT_INJECTION=1)', () => {
  test('a stalled workgroup fills the ring and the spill to --max-ring-spill-bytes; then publishes get OVERLOADED (WS, not a bad command; HTTP 503) until it catches up; every accepted message is delivered in order', async () => {
    const server = await startServer(['--workgroups', '2', '--ring-bytes', '65536', '--max-payload-bytes', '16384', '--max-ring-spill-bytes', '262144'], { C10M_FAULT_INJECTION: '1' });
    try {
      const [topic] = topicsOwnedBy(0, 2, 1, 'overload');
      const sub = keep(await connectIn(server, 1, 'json'));
      const pub = keep(await connectIn(server, 0, 'msgpack'));
      expect((await sub.client.sub([topic])).ok).toBe(true);
      const stall = await fetch(server.adminUrl('/debug/stall?workgroup=1&ms=5000'), { method: 'POST' });
      expect(stall.status).toBe(202);
      await stall.text();
      // The worker gets the stall by postMessage: let it take effect before publishing (it lasts 5 s).
      await new Promise((r) => setTimeout(r, 200));
      const blob = 'x'.repeat(2000);
      const acked: number[] = [];
      let refused = 0;
      // Bounded: at most 1,000 publishes, 20 in flight.
      for (let i = 0; i < 1000 && refused === 0; i += 20) {
        const replies = await Promise.all(range(i, i + 19).map((k) => pub.client.request({ op: 'pub', topic, data: { k, blob }, ack: true })));
        for (const r of replies) {
          if (r.ok === true) acked.push(r.seq as number);
          else {
            expect(r.error).toMatchObject({ code: 'OVERLOADED' });
            refused++;
          }
        }
      }
      expect(refused).toBeGreaterThan(0);
      // About (64 KiB ring + 256 KiB spill) / 2 KiB were taken before the refusals began.
      expect(acked.length).toBeGreaterThan(100);
      expect(acked.length).toBeLessThan(400);
      // Refusals are not bad commands: 120 more do not close the session with 1008.
      const more = await Promise.all(range(0, 119).map((k) => pub.client.request({ op: 'pub', topic, data: { more: k } })));
      expect(more.every((r) => (r.error as { code?: string } | undefined)?.code === 'OVERLOADED')).toBe(true);
      expect(isOpen(pub.client)).toBe(true);
      const http = await httpPublishFrom(server, pub.address, { topic, data: { http: true } });
      expect(http.status).toBe(503);
      expect(http.body).toMatchObject({ error: { code: 'OVERLOADED' } });
      // The stall ends, the ring drains, publishes are taken again.
      let resumedAfter = 0;
      await waitFor(
        async () => {
          const r = await pub.client.request({ op: 'pub', topic, data: { after: true }, ack: true });
          if (r.ok !== true) return false;
          acked.push(r.seq as number);
          return true;
        },
        20_000,
        'a publish accepted after the stall',
      ).then((ms) => (resumedAfter = ms));
      // Only accepted publishes have seqs: consecutive, and the subscriber gets each once, in order.
      expect(acked).toEqual(range(1, acked.length));
      await sub.client.until(() => sub.client.deliveries.length >= acked.length, 15_000, 'every accepted message delivered');
      await sub.client.request({ op: 'ping' });
      expect(byTopic(sub.client, topic).map((d) => d.seq)).toEqual(acked);
      await waitFor(async () => (await metricSum(server, 'c10m_ring_spill_bytes', { workgroup: '0' })) === 0, 5000, 'spill gauge back to 0');
      const overloaded = await metricSum(server, 'c10m_publishes_overloaded_total');
      expect(overloaded).toBeGreaterThanOrEqual(refused + 120 + 1);
      const peak = await metricSum(server, 'c10m_ring_spill_peak_bytes', { workgroup: '0' });
      expect(peak).toBeGreaterThan(262144);
      expect(peak).toBeLessThan(262144 + 64 * 1024);
      console.log(`overload: ${acked.length} accepted, ${refused} + 121 refused while workgroup 1 stalled; accepted again ${resumedAfter} ms later; spill peak ${peak} bytes`);
    } finally {
      await Promise.all(open.splice(0).map((c) => c.close()));
      await server.stop();
    }
  });
});

describe('an owner that does not answer: pending acks and subscriptions time out (--debug-routes)', () => {
  test('a pub with ack and a sub to topics of a stalled workgroup fail with OWNER_TIMEOUT after 10 s; the session stays, and publishes again once the owner is back', async () => {
    const server = await startServer(['--workgroups', '2', '--debug-routes', '--drain-timeout-seconds', '1']);
    try {
      const [pubTopic, subTopic] = topicsOwnedBy(1, 2, 2, 'owner-timeout');
      const s = keep(await connectIn(server, 0));
      const stall = await fetch(server.adminUrl('/debug/stall?workgroup=1&ms=12000'), { method: 'POST' });
      expect(stall.status).toBe(202);
      await stall.text();
      // The worker gets the stall by postMessage: let it take effect.
      await new Promise((r) => setTimeout(r, 200));
      const started = Date.now();
      const [pub, sub] = await Promise.all([
        s.client.request({ op: 'pub', topic: pubTopic, data: 1, ack: true }, 15_000).then((r) => ({ r, ms: Date.now() - started })),
        s.client.request({ op: 'sub', topics: [subTopic] }, 15_000).then((r) => ({ r, ms: Date.now() - started })),
      ]);
      for (const { r, ms } of [pub, sub]) {
        expect(r.ok).not.toBe(true);
        expect(r.error).toMatchObject({ code: 'OWNER_TIMEOUT' });
        // OWNER_TIMEOUT_MS (10 s), checked once a second.
        expect(ms).toBeGreaterThanOrEqual(10_000);
        expect(ms).toBeLessThan(12_500);
      }
      expect(isOpen(s.client)).toBe(true);
      expect((await s.client.request({ op: 'ping' })).ok).toBe(true);
      // The stall ends: the owner answers again.
      await waitFor(async () => (await s.client.request({ op: 'pub', topic: pubTopic, data: 2, ack: true }, 15_000)).ok === true, 10_000, 'a publish acked after the stall');
      console.log(`owner timeout: pub failed after ${pub.ms} ms, sub after ${sub.ms} ms`);
    } finally {
      await Promise.all(open.splice(0).map((c) => c.close()));
      await server.stop();
    }
  });
});
