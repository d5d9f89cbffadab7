// The engine contract's conformance suite: what any owner of topics must do
// (docs/ARCHITECTURE.md, "The engine contract"), run against an engine made
// by a factory and observed through recording SubscriberPorts, one per
// workgroup: the in-memory owner (test/engine-memory.test.ts) and the Redis
// engine (test/engine-redis.test.ts) run the same suite.
import { STATS_SLOTS } from '../../protocol/stats';
import { MessageCache } from '../../workgroups/cache';
import type { OwnerPort, SubscriberPort } from '../../workgroups/ports';
import { AckStatus, RecordFlag, SubStatus, readReplayBatch } from '../../workgroups/records';

/** One call an engine made on a workgroup's SubscriberPort. */
export type Answer =
  | { kind: 'deliver'; topic: string; epoch: number; seq: number; data: string }
  | { kind: 'ack'; token: number; epoch: number; seq: number; status: number }
  | { kind: 'replay'; token: number; topic: string; epoch: number; seq: number; flags: number; data: string }
  | { kind: 'subDone'; token: number; epoch: number; seq: number; status: number; replayed: number };

/** A workgroup's SubscriberPort that records what it is told. */
export class RecordingSubscriber implements SubscriberPort {
  readonly answers: Answer[] = [];
  deliver(topic: string, epoch: number, seq: number, _ts: number, _receivedAt: number, _msgpack: number, data: Uint8Array): void {
    this.answers.push({ kind: 'deliver', topic, epoch, seq, data: Buffer.from(data).toString() });
  }
  ack(token: number, epoch: number, seq: number, status: number): void {
    this.answers.push({ kind: 'ack', token, epoch, seq, status });
  }
  replay(token: number, topic: string, epoch: number, seq: number, _ts: number, flags: number, data: Uint8Array): void {
    this.answers.push({ kind: 'replay', token, topic, epoch, seq, flags, data: Buffer.from(data).toString() });
  }
  /** A batch of replayed messages (an engine replaying to another workgroup): recorded one by one, as the workgroup would write them. */
  replayBatch(token: number, topic: string, epoch: number, data: Uint8Array, count: number): boolean {
    const b = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    const read = readReplayBatch(b, count, (seq, _ts, flags, d) => this.replay(token, topic, epoch, seq, 0, flags, d));
    if (read !== b.length) throw new Error(`malformed replay batch: ${read} of ${b.length} bytes read`);
    return true;
  }
  subDone(token: number, epoch: number, seq: number, status: number, replayed: number): void {
    this.answers.push({ kind: 'subDone', token, epoch, seq, status, replayed });
  }
  of<K extends Answer['kind']>(kind: K): Extract<Answer, { kind: K }>[] {
    return this.answers.filter((a) => a.kind === kind) as Extract<Answer, { kind: K }>[];
  }
}

export interface EngineUnderTest {
  engine: OwnerPort;
  /** The SubscriberPort of each workgroup, by id. */
  workgroups: RecordingSubscriber[];
  /** Lets asynchronous work (paced replays, round trips) finish. */
  settle(): Promise<void>;
  close(): void | Promise<void>;
  /**
   * A publish makes the engine hold the topic (the memory engine: its row,
   * seq and cache), so the topic limit refuses publishes too. False for the
   * Redis engine: Redis holds every topic; a node holds only the topics its
   * sessions subscribe to, and the limit refuses only those subscriptions.
   */
  publishesHoldTopics?: boolean;
}

export interface EngineLimits {
  /** Messages the engine keeps per topic for resume. */
  cacheMessages: number;
  /** Topics it may hold at once. */
  maxTopics: number;
}

/**
 * What an engine is built with in process, for `workgroups` workgroups: their recording SubscriberPorts, a stats
 * block, the errors it reports, a message cache of `limits.cacheMessages` per topic, links to the workgroups
 * (never congested, replay batches of at most 512 bytes) and the owner's own sessions (`local`: replayed
 * messages are written under one cork of the session's socket, here a plain call).
 */
export function inProcessParts(workgroups: number, limits: EngineLimits) {
  const subscribers = Array.from({ length: workgroups }, () => new RecordingSubscriber());
  const errors: unknown[] = [];
  return {
    workgroups: subscribers,
    stats: new Float64Array(STATS_SLOTS),
    errors,
    onError: (err: unknown) => void errors.push(err),
    cache: new MessageCache({ maxMessagesPerTopic: limits.cacheMessages, maxAgeSeconds: 3600, arenaChunkBytes: 1 << 16, maxTotalBytes: 1 << 22 }),
    links: { subscriber: (w: number) => subscribers[w], congested: () => false, maxBatchBytes: (_w: number, want: number) => Math.min(want, 512) },
    local: { corked: (_token: number, write: () => void) => (write(), true) },
  };
}

const enc = (v: unknown): Uint8Array => Buffer.from(JSON.stringify(v));

/** Registers the suite; `make` builds a fresh engine with `workgroups` SubscriberPorts and the given limits. */
export function runEngineContract(name: string, make: (workgroups: number, limits: EngineLimits) => Promise<EngineUnderTest>): void {
  describe(`engine contract: ${name}`, () => {
    let e: EngineUnderTest;
    afterEach(async () => {
      await e?.close();
    });

    const publish = (from: number, topic: string, data: unknown, token = 0, retain = false) => e.engine.publish(from, topic, retain ? RecordFlag.RETAIN : 0, enc(data), null, 1, 1, token);

    test('publishes get seq 1, 2, 3 ... in one epoch, in order, and acks carry them after the delivers', async () => {
      e = await make(2, { cacheMessages: 100, maxTopics: 100 });
      const [w0, w1] = e.workgroups;
      e.engine.subscribe(1, 1, '/c/order', 0, 0, 0);
      await e.settle();
      const done = w1.of('subDone')[0];
      expect(done).toMatchObject({ token: 1, seq: 0, status: SubStatus.FRESH });
      for (let i = 1; i <= 50; i++) publish(0, '/c/order', i, 100 + i);
      await e.settle();
      const delivers = w1.of('deliver');
      expect(delivers.map((d) => d.seq)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
      expect(delivers.map((d) => d.data)).toEqual(Array.from({ length: 50 }, (_, i) => String(i + 1)));
      expect(new Set(delivers.map((d) => d.epoch))).toEqual(new Set([done.epoch]));
      expect(w0.of('ack').map((a) => [a.token, a.seq, a.epoch, a.status])).toEqual(Array.from({ length: 50 }, (_, i) => [101 + i, i + 1, done.epoch, AckStatus.OK]));
      // The publisher's workgroup has no interest: it gets acks only.
      expect(w0.of('deliver')).toEqual([]);
    });

    test('delivers go to the workgroups with interest, once each, and stop when interest goes', async () => {
      e = await make(3, { cacheMessages: 100, maxTopics: 100 });
      const [w0, w1, w2] = e.workgroups;
      e.engine.interest(1, '/c/interest', true);
      e.engine.interest(2, '/c/interest', true);
      // Interest takes effect once the engine has it (the Redis engine subscribes to the topic's channel first).
      await e.settle();
      publish(0, '/c/interest', 'a');
      await e.settle();
      e.engine.interest(2, '/c/interest', false);
      publish(0, '/c/interest', 'b');
      await e.settle();
      expect(w1.of('deliver').map((d) => d.data)).toEqual(['"a"', '"b"']);
      expect(w2.of('deliver').map((d) => d.data)).toEqual(['"a"']);
      expect(w0.of('deliver')).toEqual([]);
    });

    test('a resume the history covers replays what was missed, in order, then subDone(recovered) at the current seq', async () => {
      e = await make(2, { cacheMessages: 100, maxTopics: 100 });
      const [, w1] = e.workgroups;
      for (let i = 1; i <= 20; i++) publish(0, '/c/resume', i);
      e.engine.subscribe(1, 7, '/c/resume', 0, 0, 0);
      await e.settle();
      const epoch = w1.of('subDone')[0].epoch;
      e.engine.subscribe(1, 8, '/c/resume', RecordFlag.RESUME, epoch, 12);
      await e.settle();
      const replays = w1.of('replay').filter((r) => r.token === 8);
      expect(replays.map((r) => r.seq)).toEqual([13, 14, 15, 16, 17, 18, 19, 20]);
      expect(replays.every((r) => r.epoch === epoch && (r.flags & RecordFlag.RETAIN) === 0)).toBe(true);
      expect(w1.of('subDone').find((d) => d.token === 8)).toEqual({ kind: 'subDone', token: 8, epoch, seq: 20, status: SubStatus.RECOVERED, replayed: 8 });
      // Nothing missed: recovered at once, nothing replayed.
      e.engine.subscribe(1, 9, '/c/resume', RecordFlag.RESUME, epoch, 20);
      await e.settle();
      expect(w1.of('subDone').find((d) => d.token === 9)).toMatchObject({ status: SubStatus.RECOVERED, seq: 20, replayed: 0 });
    });

    test('a resume the history does not cover, from another epoch, or from a seq not reached yet is reported, never silently', async () => {
      e = await make(2, { cacheMessages: 5, maxTopics: 100 });
      const [, w1] = e.workgroups;
      for (let i = 1; i <= 20; i++) publish(0, '/c/gap', i);
      e.engine.subscribe(1, 1, '/c/gap', 0, 0, 0);
      await e.settle();
      const epoch = w1.of('subDone')[0].epoch;
      e.engine.subscribe(1, 2, '/c/gap', RecordFlag.RESUME, epoch, 3);
      e.engine.subscribe(1, 3, '/c/gap', RecordFlag.RESUME, (epoch + 1) >>> 0 || 1, 3);
      e.engine.subscribe(1, 4, '/c/gap', RecordFlag.RESUME, epoch, 21);
      await e.settle();
      const status = (token: number) => w1.of('subDone').find((d) => d.token === token)?.status;
      expect(status(2)).toBe(SubStatus.CACHE_MISS);
      expect(status(3)).toBe(SubStatus.EPOCH_MISMATCH);
      expect(status(4)).toBe(SubStatus.UNKNOWN_POSITION);
      // A reported gap replays nothing (from another epoch too: seq 1 is no longer held): the subscription goes on from the current seq.
      expect(w1.of('replay').filter((r) => r.token >= 2)).toEqual([]);
      expect(
        w1
          .of('subDone')
          .filter((d) => d.token >= 2)
          .every((d) => d.seq === 20),
      ).toBe(true);
    });

    test('a resume from another epoch gets the current epoch from seq 1 and status EPOCH_MISMATCH', async () => {
      e = await make(2, { cacheMessages: 100, maxTopics: 100 });
      const [w0, w1] = e.workgroups;
      // Seq 10 is retained: the client gets it among the replayed messages, not a second time as the snapshot.
      for (let i = 1; i <= 30; i++) publish(0, '/c/epoch', `m${i}`, 0, i === 10);
      e.engine.subscribe(1, 1, '/c/epoch', 0, 0, 0);
      await e.settle();
      const epoch = w1.of('subDone')[0].epoch;
      const oldEpoch = (epoch + 1) >>> 0 || 1;
      // A client of the topic's old history (a restarted node), resuming in another workgroup and in workgroup 0.
      e.engine.subscribe(1, 2, '/c/epoch', RecordFlag.RESUME, oldEpoch, 12);
      e.engine.subscribe(0, 3, '/c/epoch', RecordFlag.RESUME, oldEpoch, 45);
      await e.settle();
      for (const [w, token] of [
        [w1, 2],
        [w0, 3],
      ] as const) {
        const mine = w.answers.filter((a) => 'token' in a && a.token === token);
        const replays = mine.filter((a) => a.kind === 'replay');
        expect(replays.map((r) => [r.epoch, r.seq, r.data, r.flags & RecordFlag.RETAIN])).toEqual(Array.from({ length: 30 }, (_, i) => [epoch, i + 1, `"m${i + 1}"`, 0]));
        // subDone last: every replayed message reaches the session before the subscription's answer.
        expect(mine[mine.length - 1]).toEqual({ kind: 'subDone', token, epoch, seq: 30, status: SubStatus.EPOCH_MISMATCH, replayed: 30 });
        expect(mine).toHaveLength(31);
      }
      // Then live, after the reply's seq.
      publish(0, '/c/epoch', 'm31');
      await e.settle();
      expect(w1.of('deliver').map((d) => [d.epoch, d.seq])).toEqual([[epoch, 31]]);
      expect(w0.of('deliver').map((d) => [d.epoch, d.seq])).toEqual([[epoch, 31]]);
    });

    test('a retained message is the snapshot a fresh subscriber gets before subDone; a recovered resume does not get it', async () => {
      e = await make(2, { cacheMessages: 100, maxTopics: 100 });
      const [, w1] = e.workgroups;
      publish(0, '/c/snap', 'first', 0, true);
      publish(0, '/c/snap', 'second', 0, true);
      publish(0, '/c/snap', 'not retained');
      e.engine.subscribe(1, 1, '/c/snap', 0, 0, 0);
      await e.settle();
      const snaps = w1.of('replay').filter((r) => r.token === 1);
      expect(snaps).toHaveLength(1);
      expect(snaps[0]).toMatchObject({ seq: 2, data: '"second"' });
      expect(snaps[0].flags & RecordFlag.RETAIN).toBe(RecordFlag.RETAIN);
      const done = w1.of('subDone').find((d) => d.token === 1)!;
      expect(done).toMatchObject({ seq: 3, status: SubStatus.FRESH });
      expect(w1.answers.indexOf(snaps[0])).toBeLessThan(w1.answers.indexOf(done));
      e.engine.subscribe(1, 2, '/c/snap', RecordFlag.RESUME, done.epoch, 3);
      await e.settle();
      expect(w1.of('replay').filter((r) => r.token === 2)).toEqual([]);
    });

    test('a topic past the limit is refused through the ack or subDone; the topics it holds go on', async () => {
      e = await make(2, { cacheMessages: 10, maxTopics: 2 });
      const [w0, w1] = e.workgroups;
      if (e.publishesHoldTopics !== false) {
        publish(0, '/c/a', 1, 1);
        publish(0, '/c/b', 1, 2);
        publish(0, '/c/c', 1, 3);
        e.engine.subscribe(1, 4, '/c/d', 0, 0, 0);
        e.engine.subscribe(1, 5, '/c/a', 0, 0, 0);
        publish(0, '/c/a', 2, 6);
        await e.settle();
        expect(w0.of('ack').map((a) => [a.token, a.status])).toEqual([
          [1, AckStatus.OK],
          [2, AckStatus.OK],
          [3, AckStatus.TOO_MANY_TOPICS],
          [6, AckStatus.OK],
        ]);
        expect(w1.of('subDone').map((d) => [d.token, d.status])).toEqual([
          [4, SubStatus.TOO_MANY_TOPICS],
          [5, SubStatus.FRESH],
        ]);
        expect(w1.of('deliver').map((d) => [d.topic, d.seq])).toEqual([['/c/a', 2]]);
        return;
      }
      // Publishes are not held here: all taken. The node holds two subscribed topics; a third is refused.
      publish(0, '/c/a', 1, 1);
      publish(0, '/c/b', 1, 2);
      publish(0, '/c/c', 1, 3);
      e.engine.subscribe(1, 4, '/c/a', 0, 0, 0);
      e.engine.subscribe(1, 5, '/c/b', 0, 0, 0);
      e.engine.subscribe(1, 6, '/c/d', 0, 0, 0);
      await e.settle();
      publish(0, '/c/a', 2, 7);
      await e.settle();
      // Acks of different topics may come in any order (each carries its token).
      expect(
        w0
          .of('ack')
          .map((a) => [a.token, a.status])
          .sort((a, b) => a[0] - b[0]),
      ).toEqual([
        [1, AckStatus.OK],
        [2, AckStatus.OK],
        [3, AckStatus.OK],
        [7, AckStatus.OK],
      ]);
      // In token order: the refusal comes at once, the others after Redis answered.
      expect(
        w1
          .of('subDone')
          .map((d) => [d.token, d.status])
          .sort((a, b) => a[0] - b[0]),
      ).toEqual([
        [4, SubStatus.FRESH],
        [5, SubStatus.FRESH],
        [6, SubStatus.TOO_MANY_TOPICS],
      ]);
      expect(w1.of('deliver').map((d) => [d.topic, d.seq])).toEqual([['/c/a', 2]]);
    });

    test('a publish repeating an idempotency key is not sequenced again: its ack carries the first (epoch, seq)', async () => {
      e = await make(2, { cacheMessages: 100, maxTopics: 100 });
      const [w0, w1] = e.workgroups;
      e.engine.subscribe(1, 1, '/c/idem', 0, 0, 0);
      await e.settle();
      const keyed = (topic: string, data: string, token: number, key: string) => e.engine.publish(0, topic, 0, enc(data), null, 1, 1, token, key);
      // Sent together (no settle between): the check and the sequencing are one step, so only the first is published.
      keyed('/c/idem', 'a', 11, 'key-1');
      keyed('/c/idem', 'a again', 12, 'key-1');
      keyed('/c/idem', 'b', 13, 'key-2');
      await e.settle();
      keyed('/c/idem', 'a once more', 14, 'key-1');
      // Keys are per topic.
      keyed('/c/idem-other', 'c', 15, 'key-1');
      await e.settle();
      const acks = new Map(w0.of('ack').map((a) => [a.token, a]));
      const first = acks.get(11);
      expect(first).toMatchObject({ seq: 1, status: AckStatus.OK });
      expect(acks.get(12)).toMatchObject({ epoch: first?.epoch, seq: 1, status: AckStatus.DUPLICATE });
      expect(acks.get(13)).toMatchObject({ epoch: first?.epoch, seq: 2, status: AckStatus.OK });
      expect(acks.get(14)).toMatchObject({ epoch: first?.epoch, seq: 1, status: AckStatus.DUPLICATE });
      expect(acks.get(15)).toMatchObject({ seq: 1, status: AckStatus.OK });
      expect(w1.of('deliver').map((d) => d.data)).toEqual(['"a"', '"b"']);
    });
  });
}
