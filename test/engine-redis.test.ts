// The Redis engine (workgroups/redis-owner.ts), in process, against the
// engine contract's conformance suite and recording SubscriberPorts, with a
// real redis-server: no uWS, no threads, no rings. Workgroup 0 is the owner.
import { spawn, type ChildProcess } from 'node:child_process';
import { MessageCache } from '../workgroups/cache';
import { Owner } from '../workgroups/owner';
import { RedisOwner } from '../workgroups/redis-owner';
import { TopicTable } from '../workgroups/topics';
import { STATS_SLOTS } from '../protocol/stats';
import { RecordingSubscriber, runEngineContract, type EngineLimits, type EngineUnderTest } from './helpers/engine-contract';
import pino from 'pino';

let redis: ChildProcess;
let redisUrl = '';

beforeAll(async () => {
  for (let attempt = 0; attempt < 20; attempt++) {
    const port = 20000 + Math.floor(Math.random() * 11000);
    const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const ok = await new Promise<boolean>((resolve) => {
      let out = '';
      proc.stdout?.on('data', (c) => {
        out += c;
        if (out.includes('Ready to accept connections')) resolve(true);
      });
      proc.on('exit', () => resolve(false));
    });
    if (ok) {
      redis = proc;
      redisUrl = `redis://127.0.0.1:${port}`;
      return;
    }
  }
  throw new Error('could not start redis-server');
});

afterAll(() => {
  redis?.kill('SIGKILL');
});

let prefixes = 0;

async function redisEngine(count: number, limits: EngineLimits): Promise<EngineUnderTest & { owner: RedisOwner; stats: Float64Array; errors: unknown[] }> {
  const workgroups = Array.from({ length: count }, () => new RecordingSubscriber());
  const stats = new Float64Array(STATS_SLOTS);
  const errors: unknown[] = [];
  const cache = new MessageCache({ maxMessagesPerTopic: limits.cacheMessages, maxAgeSeconds: 3600, arenaChunkBytes: 1 << 16, maxTotalBytes: 1 << 22 });
  const links = { subscriber: (w: number) => workgroups[w], congested: () => false, maxBatchBytes: (_w: number, want: number) => Math.min(want, 512) };
  const local = { corked: (_token: number, write: () => void) => (write(), true) };
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
    (err) => errors.push(err),
  );
  const prefix = `t${process.pid}-${++prefixes}`;
  owner = new RedisOwner(
    inner,
    topics,
    links,
    stats,
    limits.maxTopics,
    { cacheMessages: limits.cacheMessages, cacheSeconds: 3600, snapshotTtlSeconds: 0 },
    { urls: [redisUrl], cluster: false, prefix },
    pino({ level: 'silent' }),
    (cause, err) => errors.push(new Error(`${cause}: ${(err as Error).message}`)),
  );
  const o = owner;
  for (let i = 0; i < 200 && !o.store.up; i++) await new Promise((r) => setTimeout(r, 10));
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

runEngineContract('redis (standalone)', redisEngine);
