// The in-memory owner (workgroups/owner.ts), in process, against the engine
// contract's conformance suite and recording SubscriberPorts: no uWS, no
// threads, no rings. Workgroup 0 is the owner; the others ask it.
import { Owner } from '../workgroups/owner';
import { RecordFlag, SubStatus } from '../workgroups/records';
import { TopicTable } from '../workgroups/topics';
import { Stat } from '../protocol/stats';
import { inProcessParts, runEngineContract, type EngineLimits, type EngineUnderTest } from './helpers/engine-contract';

async function memoryEngine(count: number, limits: EngineLimits): Promise<EngineUnderTest & { owner: Owner; stats: Float64Array; errors: unknown[] }> {
  const { workgroups, stats, errors, onError, cache, links, local } = inProcessParts(count, limits);
  const owner = new Owner(0, new TopicTable(), cache, stats, { maxTopics: limits.maxTopics, cacheSeconds: 3600, snapshotTtlSeconds: 0 }, links, local, onError);
  return {
    engine: owner,
    owner,
    stats,
    errors,
    workgroups,
    async settle() {
      // Replays are paced over event-loop turns (setImmediate).
      for (let i = 0; i < 1000 && owner.replaying > 0; i++) await new Promise((r) => setImmediate(r));
      await new Promise((r) => setImmediate(r));
      if (errors.length > 0) throw errors[0];
    },
    close() {
      owner.close();
    },
  };
}

runEngineContract('in-memory owner', memoryEngine);

describe('in-memory owner, in process', () => {
  test("a resume of one of the owner's own sessions replays through the local cork path, in order", async () => {
    const e = await memoryEngine(1, { cacheMessages: 1000, maxTopics: 10 });
    const [self] = e.workgroups;
    for (let i = 1; i <= 300; i++) e.engine.publish(0, '/own', 0, Buffer.from(String(i)), null, 1, 1, 0);
    e.engine.subscribe(0, 1, '/own', 0, 0, 0);
    await e.settle();
    const epoch = self.of('subDone')[0].epoch;
    e.engine.subscribe(0, 2, '/own', RecordFlag.RESUME, epoch, 100);
    await e.settle();
    expect(
      self
        .of('replay')
        .filter((r) => r.token === 2)
        .map((r) => r.seq),
    ).toEqual(Array.from({ length: 200 }, (_, i) => 101 + i));
    expect(self.of('subDone').find((d) => d.token === 2)).toMatchObject({ status: SubStatus.RECOVERED, replayed: 200, seq: 300 });
    expect(e.stats[Stat.RESUMES_RECOVERED]).toBe(1);
    e.close();
  });

  /**
   * A fresh engine with two workgroups, 10,000 cached on `topic`, and a resume from seq 0 to workgroup 1 that has
   * sent its first turn, not all: the engine, workgroup 1, the resume's epoch and the replays sent so far.
   */
  async function replayUnderWay(topic: string) {
    const e = await memoryEngine(2, { cacheMessages: 20_000, maxTopics: 10 });
    const [, w1] = e.workgroups;
    for (let i = 1; i <= 10_000; i++) e.engine.publish(0, topic, 0, Buffer.from(String(i)), null, 1, 1, 0);
    e.engine.subscribe(1, 1, topic, 0, 0, 0);
    await e.settle();
    const epoch = w1.of('subDone')[0].epoch;
    e.engine.subscribe(1, 2, topic, RecordFlag.RESUME, epoch, 0);
    await new Promise((r) => setImmediate(r));
    expect(e.owner.replaying).toBe(1);
    const sentBefore = w1.of('replay').length;
    expect(sentBefore).toBeGreaterThan(0);
    return { e, w1, first: epoch, sentBefore };
  }

  /** The topic's row goes (as release does to an idle row): its history with it. */
  function dropRow(e: Awaited<ReturnType<typeof memoryEngine>>, topic: string): void {
    const tid = e.owner.topics.find(topic);
    e.owner.cache.drop(tid);
    e.owner.topics.release(tid);
  }

  test('10,000 missed messages to another workgroup go in batches over several turns, all in order', async () => {
    const { e, w1 } = await replayUnderWay('/many');
    // Not all in one turn: a replay yields to the loop.
    expect(w1.of('subDone').find((d) => d.token === 2)).toBeUndefined();
    await e.settle();
    const seqs = w1
      .of('replay')
      .filter((r) => r.token === 2)
      .map((r) => r.seq);
    expect(seqs).toHaveLength(10_000);
    expect(seqs.every((s, i) => s === i + 1)).toBe(true);
    expect(w1.of('subDone').find((d) => d.token === 2)).toMatchObject({ status: SubStatus.RECOVERED, replayed: 10_000 });
    e.close();
  });

  test("a new history under a replay: the replay goes on with the new epoch from seq 1, and ends EPOCH_MISMATCH with the new epoch's count", async () => {
    const { e, w1, first, sentBefore } = await replayUnderWay('/renewed');
    dropRow(e, '/renewed');
    for (let i = 1; i <= 5; i++) e.engine.publish(0, '/renewed', 0, Buffer.from(`new ${i}`), null, 1, 1, 0);
    await e.settle();
    const replays = w1.of('replay').filter((r) => r.token === 2);
    const done = w1.of('subDone').find((d) => d.token === 2)!;
    expect(done.epoch).not.toBe(first);
    // The old epoch's first turn (as sent), then the new epoch whole, then subDone.
    expect(replays.map((r) => [r.epoch, r.seq])).toEqual([...Array.from({ length: sentBefore }, (_, i) => [first, i + 1]), ...Array.from({ length: 5 }, (_, i) => [done.epoch, i + 1])]);
    expect(done).toEqual({ kind: 'subDone', token: 2, epoch: done.epoch, seq: 5, status: SubStatus.EPOCH_MISMATCH, replayed: 5 });
    expect(e.stats[Stat.RESUMES_NOT_RECOVERED]).toBe(1);
    // The new row has the subscriber's interest: live goes on after the reply.
    e.engine.publish(0, '/renewed', 0, Buffer.from('new 6'), null, 1, 1, 0);
    await e.settle();
    expect(w1.of('deliver').map((d) => [d.epoch, d.seq])).toEqual([[done.epoch, 6]]);
    e.close();
  });

  test('the row goes under a replay and nothing follows: EPOCH_MISMATCH at once in the new epoch, nothing more replayed', async () => {
    const { e, w1, first, sentBefore } = await replayUnderWay('/gone-row');
    dropRow(e, '/gone-row');
    await e.settle();
    expect(w1.of('replay')).toHaveLength(sentBefore);
    const done = w1.of('subDone').find((d) => d.token === 2)!;
    expect(done).toMatchObject({ seq: 0, status: SubStatus.EPOCH_MISMATCH, replayed: 0 });
    expect(done.epoch).not.toBe(first);
    // The new row kept the subscriber's interest: the next message reaches it.
    e.engine.publish(0, '/gone-row', 0, Buffer.from('after'), null, 1, 1, 0);
    await e.settle();
    expect(w1.of('deliver').map((d) => [d.epoch, d.seq])).toEqual([[done.epoch, 1]]);
    e.close();
  });

  test('a workgroup that restarted is forgotten: no more delivers to it, its replays dropped', async () => {
    const e = await memoryEngine(2, { cacheMessages: 100, maxTopics: 10 });
    const [, w1] = e.workgroups;
    e.engine.interest(1, '/gone', true);
    e.engine.publish(0, '/gone', 0, Buffer.from('1'), null, 1, 1, 0);
    e.owner.forget(1);
    e.engine.publish(0, '/gone', 0, Buffer.from('2'), null, 1, 1, 0);
    await e.settle();
    expect(w1.of('deliver').map((d) => d.seq)).toEqual([1]);
    e.close();
  });
});
