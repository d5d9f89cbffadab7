// The cluster scenario's saturation part (bench/scenarios/cluster.ts):
// acked publishes/s through one Redis at rising rates, and Redis alone
// running c10m's publish script (redis-benchmark).

import { spawn } from 'node:child_process';
import { scriptsFor } from '../../workgroups/redis-store';
import { pubConfig, startPublisher, type Progress, type RunOptions } from '../harness';
import type { Publisher } from '../pub';
import { type BenchRedis } from '../redis';
import { type Target } from '../targets';
import { DEFAULTS, KEPT_UP, SATURATION_WARMUP_SECONDS, REDIS_ALONE_PER_SEC, type Proc, Live, sleep, CpuWindow, limitedBy } from './cluster-common';

export interface SatStep {
  nodes: number;
  rate: number;
  published: number;
  acked: number;
  ackedPerSec: number;
  ackP50Ms: number | null;
  ackP99Ms: number | null;
  errors: number;
  firstError: string | null;
  keptUp: boolean;
  cpu: Map<string, number>;
  machinePct: number | null;
  limitedBy: string;
}

/** One saturation step: publishers with acks through `nodes` at `rate` in all for `seconds`. */
export async function saturationStep(nodes: Target[], redisProc: Proc, rate: number, seconds: number, o: RunOptions, live: Live): Promise<SatStep> {
  const size = o.size ?? DEFAULTS.size;
  const topics = o.topics ?? DEFAULTS.saturationTopics;
  const share = rate / nodes.length;
  const pubs: Publisher[] = [];
  try {
    for (const n of nodes) {
      const p = await startPublisher({
        ...pubConfig(n, { size, topicCount: topics, schedule: [{ atSeconds: 0, rate: share }], durationSeconds: seconds, maxMessages: Math.ceil(share * seconds), connections: o.pubConnections }),
        topicPattern: '/sat/{n}',
        ack: true,
      });
      pubs.push(p);
      live.pubs.add(p);
    }
    const procs: Proc[] = [redisProc, ...nodes.map((n, i) => ({ name: `node ${'ABC'[i]}`, pid: n.pid })), ...pubs.map((p) => ({ name: 'benchpub', pid: p.pid }))];
    const cpu = new CpuWindow(procs);
    for (const p of pubs) p.go();
    const finals = await Promise.all(pubs.map((p) => p.done));
    const w = cpu.end();
    const acked = finals.reduce((n, f) => n + f.acked, 0);
    const published = finals.reduce((n, f) => n + f.published, 0);
    const ackSeconds = Math.max(...finals.map((f) => f.ackSeconds));
    const ackedPerSec = ackSeconds > 0 ? Math.round(acked / ackSeconds) : 0;
    const errors = finals.reduce((n, f) => n + f.errors, 0);
    const lat = finals.map((f) => f.ackLatency).filter((x) => x !== null);
    return {
      nodes: nodes.length,
      rate,
      published,
      acked,
      ackedPerSec,
      // With two publishers, the slower one's.
      ackP50Ms: lat.length ? Math.max(...lat.map((x) => x.p50Ms)) : null,
      ackP99Ms: lat.length ? Math.max(...lat.map((x) => x.p99Ms)) : null,
      errors,
      firstError: finals.find((f) => f.firstError)?.firstError ?? null,
      keptUp: errors === 0 && acked === published && published >= Math.floor(rate * seconds * KEPT_UP) && ackedPerSec >= rate * KEPT_UP,
      cpu: w.pct,
      machinePct: w.machinePct,
      limitedBy: limitedBy(w.pct, w.machinePct),
    };
  } finally {
    for (const p of pubs) {
      p.kill();
      live.pubs.delete(p);
    }
  }
}

/** The rates of --rates through `nodes`, after an unreported warm-up at the first, until a step falls behind. */
export async function saturationRamp(nodes: Target[], redisProc: Proc, o: RunOptions, progress: Progress, live: Live): Promise<SatStep[]> {
  const rates = o.rates ?? DEFAULTS.rates;
  const stepSeconds = o.stepSeconds ?? DEFAULTS.stepSeconds;
  const label = `saturation ${nodes.length} node${nodes.length > 1 ? 's' : ''}`;
  const steps: SatStep[] = [];
  progress.phase(label, 'steps', rates.length);
  // JIT, the topics' first publishes: not in the figures.
  await saturationStep(nodes, redisProc, rates[0], Math.min(SATURATION_WARMUP_SECONDS, stepSeconds / 2), o, live);
  await sleep(500);
  for (const rate of rates) {
    const step = await saturationStep(nodes, redisProc, rate, stepSeconds, o, live);
    steps.push(step);
    progress.update(steps.length, `${rate}/s offered → ${step.ackedPerSec}/s acked, redis ${step.cpu.get('redis-server') ?? '–'}%`);
    if (!step.keptUp) break;
    // Let Redis and the nodes drain before the next step.
    await sleep(500);
  }
  progress.stop();
  return steps;
}

/** Redis alone: the publish script (one topic, no subscriber), pipelined by redis-benchmark, as fast as Redis answers. */
export interface RedisAlone {
  requests: number;
  /** The topic's seq after the run: every script that ran (an error reply would not count; redis-benchmark may overshoot by a pipeline). */
  sequenced: number;
  perSec: number;
  p50Ms: number | null;
  p99Ms: number | null;
  cpu: Map<string, number>;
  machinePct: number | null;
  limitedBy: string;
  command: string;
}

export async function redisAlone(redis: BenchRedis, o: RunOptions): Promise<RedisAlone | string> {
  const size = o.size ?? DEFAULTS.size;
  const seconds = o.stepSeconds ?? DEFAULTS.stepSeconds;
  const cacheMessages = o.cacheMessagesList?.[0] ?? 1000;
  const script = scriptsFor({ cacheMessages, cacheSeconds: 180, snapshotTtlSeconds: 0 }, 'PUBLISH').publish;
  const sha = String(await redis.command('SCRIPT', 'LOAD', script));
  // The writer's run_id, as the nodes pass it (a history written by another Redis process starts a new epoch).
  const runId = (await redis.info('server')).run_id ?? '';
  const requests = Math.round(REDIS_ALONE_PER_SEC * seconds);
  const topic = 'c10m-bench:{/sat/redis-alone}';
  // The layout of workgroups/redis-store.ts's publish: the meta key, then payload (17-byte header + data), candidate epoch, run_id.
  const args = ['-h', '127.0.0.1', '-p', String(redis.port), '-c', '4', '-P', '32', '-n', String(requests), '--csv'];
  const command = ['EVALSHA', sha, '1', `${topic}:m`, 'a'.repeat(17 + size), '12345', runId];
  const proc = spawn('redis-benchmark', [...args, ...command], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout.on('data', (c: Buffer) => (out += c.toString()));
  proc.stderr.on('data', (c: Buffer) => (out += c.toString()));
  const spawned = await new Promise<boolean>((resolve) => {
    proc.once('spawn', () => resolve(true));
    proc.once('error', () => resolve(false));
  });
  if (!spawned) return 'redis-benchmark is not installed (Debian: it comes with redis-tools): the Redis-alone step was left out';
  const cpu = new CpuWindow([
    { name: 'redis-server', pid: redis.pid },
    { name: 'redis-benchmark', pid: proc.pid as number },
  ]);
  const killer = setTimeout(() => proc.kill('SIGKILL'), (seconds * 4 + 10) * 1000);
  const code = await new Promise<number | null>((resolve) => proc.once('close', (c) => resolve(c)));
  clearTimeout(killer);
  const w = cpu.end();
  // "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
  const row = out
    .split('\n')
    .find((l) => l.startsWith('"EVALSHA'))
    ?.match(/"([^"]*)"/g)
    ?.map((x) => x.slice(1, -1));
  if (code !== 0 || !row || row.length < 8) return `redis-benchmark failed (exit ${code}): ${out.slice(-300)}`;
  // An error reply is as fast as a script: the topic's seq says how many ran.
  const seq = Number(await redis.command('HGET', `${topic}:m`, 's'));
  return {
    requests,
    sequenced: seq,
    perSec: Math.round(Number(row[1])),
    p50Ms: Number(row[4]),
    p99Ms: Number(row[6]),
    cpu: w.pct,
    machinePct: w.machinePct,
    limitedBy: limitedBy(w.pct, w.machinePct),
    command: `redis-benchmark -h 127.0.0.1 -p <port> -c 4 -P 32 -n ${requests} --csv EVALSHA <publish script> 3 <keys of one topic> <channel> <${17 + size}-byte payload> ...`,
  };
}

// ---- interest: Redis's outbound bytes by the nodes that want a topic ----
