// The Redis engine (workgroups/redis-owner.ts), in process, against the
// engine contract's conformance suite and recording SubscriberPorts, with a
// real redis-server: no uWS, no threads, no rings. Workgroup 0 is the owner.
import { Owner } from '../workgroups/owner';
import { RedisOwner } from '../workgroups/redis-owner';
import { TopicTable } from '../workgroups/topics';
import type { RedisOptions } from '../shm/workgroup-init';
import { inProcessParts, runEngineContract, type EngineLimits, type EngineUnderTest } from './helpers/engine-contract';
import { startRedis, startRedisCluster, type TestRedis, type TestRedisCluster } from './helpers/redis';
import pino from 'pino';

jest.setTimeout(60_000);

let redis: TestRedis;
let cluster: TestRedisCluster;

beforeAll(async () => {
  [redis, cluster] = await Promise.all([startRedis(), startRedisCluster(3)]);
});

let prefixes = 0;

async function redisEngine(where: () => RedisOptions, count: number, limits: EngineLimits): Promise<EngineUnderTest & { owner: RedisOwner; stats: Float64Array; errors: unknown[] }> {
  const { workgroups, stats, errors, onError, cache, links, local } = inProcessParts(count, limits);
  const topics = new TopicTable();
  let owner: RedisOwner | null = null;
  const inner = new Owner(
    0,
    topics,
    cache,
    stats,
    { maxTopics: limits.maxTopics, cacheSeconds: 3600, snapshotTtlSeconds: 0, keepRow: (tid) => owner !== null && owner.keepRow(tid) },
    links,
    local,
    onError,
  );
  const prefix = `t${process.pid}-${++prefixes}`;
  owner = new RedisOwner(
    inner,
    topics,
    links,
    stats,
    limits.maxTopics,
    { cacheMessages: limits.cacheMessages, cacheSeconds: 3600, snapshotTtlSeconds: 0 },
    { ...where(), prefix },
    pino({ level: 'silent' }),
    (cause, err) => errors.push(new Error(`${cause}: ${(err as Error).message}`)),
  );
  const o = owner;
  await o.store.whenUp(5000);
  if (!o.store.up) throw new Error('redis not reachable');
  return {
    engine: o,
    owner: o,
    stats,
    errors,
    workgroups,
    publishesHoldTopics: false,
    async settle() {
      // Round trips to Redis, then paced replays: wait until nothing changes for a while.
      let last = -1;
      for (let i = 0; i < 200; i++) {
        await new Promise((r) => setTimeout(r, 15));
        const n = workgroups.reduce((a, w) => a + w.answers.length, 0);
        if (n === last && inner.replaying === 0) break;
        last = n;
      }
      if (errors.length > 0) throw errors[0];
    },
    close() {
      o.close();
    },
  };
}

runEngineContract('redis (standalone)', (count, limits) => redisEngine(() => ({ urls: [redis.url], cluster: false, prefix: '' }), count, limits));
runEngineContract('redis (a three-master Redis Cluster)', (count, limits) => redisEngine(() => ({ urls: cluster.urls, cluster: true, prefix: '' }), count, limits));
