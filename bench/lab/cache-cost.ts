// Cost of the per-topic message cache (workgroups/cache.ts): memory per
// cached message beyond its payload, append throughput (filling, and in the
// steady state where each append evicts), and replay throughput (forEach).
//
//   npm run lab:build && node dist-lab/bench/lab/cache-cost.js [--quick] [--alloc=js|native]
//     [--messages=1000000] [--topics=10000] [--size=512]
//
// Prints a table and writes bench/results/cache-cost-<date>.json, which
// starts with an environment header. Runs single-threaded, as the topic
// owner does. Re-runs itself with --expose-gc so memory is measured after a
// full collection. --alloc=native takes the arena chunks from native-io's
// allocShared (huge pages when the system has them); default: new ArrayBuffer.
// Throughput is only meaningful on an otherwise idle machine: the header
// records the load average, and each figure its spread over the repeats.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { CACHE_ENTRY_HEADER_BYTES, MessageCache, type ArenaAllocator } from '../../workgroups/cache';
import { arg, flag } from './args';
import { packageRoot } from '../../native-io/package-root';
import { envHeader } from '../env';

const gc = (globalThis as { gc?: () => void }).gc;

const repoRoot = packageRoot;

function settle(): NodeJS.MemoryUsage {
  for (let i = 0; i < 3; i++) (gc as () => void)();
  return process.memoryUsage();
}

interface Spread {
  median: number;
  min: number;
  max: number;
}

function spread(xs: number[]): Spread {
  const s = [...xs].sort((a, b) => a - b);
  return { median: s[Math.floor(s.length / 2)], min: s[0], max: s[s.length - 1] };
}

const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');
const pct = (s: Spread): string => (s.median > 0 ? `±${(((s.max - s.min) / 2 / s.median) * 100).toFixed(1)}%` : '');

function payloads(size: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let k = 0; k < 64; k++) {
    const b = new Uint8Array(size);
    for (let i = 0; i < size; i++) b[i] = (k * 31 + i * 7) & 0xff;
    out.push(b);
  }
  return out;
}

function allocator(kind: string): { allocate: ArenaAllocator; path: string } {
  if (kind === 'native') {
    const nio = require('../../native-io') as typeof import('../../native-io');
    let first = '';
    return {
      allocate: (bytes) => {
        const a = nio.allocShared(bytes);
        if (first === '') first = a.path;
        return a.buffer;
      },
      get path() {
        return `native allocShared (${first || 'unused'}; addon ${nio.nativeStatus().loaded ? 'loaded' : 'not loaded'})`;
      },
    };
  }
  return { allocate: (bytes) => new ArrayBuffer(bytes), path: 'new ArrayBuffer' };
}

interface Config {
  messages: number;
  topics: number;
  size: number;
  reps: number;
  alloc: string;
}

/** Appends n messages round-robin over the topics, continuing each topic's seq. */
function appendRound(cache: MessageCache, seq: Float64Array, topics: number, n: number, data: Uint8Array[], tsStart: number): number {
  const t0 = process.hrtime.bigint();
  let ts = tsStart;
  for (let i = 0; i < n; i++) {
    const t = i % topics;
    cache.append(t, ++seq[t], ts, 0, data[i & 63]);
    ts += 1;
  }
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

function memoryAndThroughput(c: Config): Record<string, unknown> {
  const data = payloads(c.size);
  const entryBytes = CACHE_ENTRY_HEADER_BYTES + ((c.size + 7) & ~7);
  const perTopic = Math.ceil(c.messages / c.topics);
  const a = allocator(c.alloc);
  const now = Date.now() * 1000;

  // 1. Memory: fill exactly perTopic messages per topic, nothing evicted.
  const before = settle();
  const cache = new MessageCache({
    maxMessagesPerTopic: perTopic,
    maxAgeSeconds: Infinity,
    maxBytesPerTopic: 1 << 30,
    maxTotalBytes: 16 * 2 ** 30,
    allocate: a.allocate,
  });
  const seq = new Float64Array(c.topics);
  const fillSeconds = appendRound(cache, seq, c.topics, c.messages, data, now);
  const after = settle();
  const n = cache.messages;
  const payloadBytes = cache.bytes;
  const memory = {
    messages: n,
    topics: cache.topics,
    payloadBytes,
    storedBytes: cache.storedBytes,
    logBytes: cache.logBytes,
    arenaBytes: cache.arenaBytes,
    metadataBytes: cache.metadataBytes,
    metadataBytesPerTopic: cache.metadataBytes / c.topics,
    rssDeltaBytes: after.rss - before.rss,
    heapUsedDeltaBytes: after.heapUsed - before.heapUsed,
    arrayBuffersDeltaBytes: after.arrayBuffers - before.arrayBuffers,
    perMessageBeyondPayload: {
      entryHeaderAndPadding: (cache.storedBytes - payloadBytes) / n,
      log: (cache.logBytes - payloadBytes) / n,
      arenaAndMetadata: (cache.arenaBytes + cache.metadataBytes - payloadBytes) / n,
      rss: (after.rss - before.rss - payloadBytes) / n,
    },
  };

  // 2. Steady state: every append evicts that topic's oldest (count limit).
  const steady: number[] = [];
  let ts = now + c.messages;
  const copiedBefore = cache.cleanerCopiedBytes;
  for (let r = 0; r < c.reps; r++) {
    const s = appendRound(cache, seq, c.topics, c.messages, data, ts);
    ts += c.messages;
    steady.push(c.messages / s);
  }
  const steadyMemory = {
    storedBytes: cache.storedBytes,
    logBytes: cache.logBytes,
    arenaBytes: cache.arenaBytes,
    metadataBytes: cache.metadataBytes,
    cleanerCopiedPerAppendedByte: (cache.cleanerCopiedBytes - copiedBefore) / (c.reps * c.messages * entryBytes),
    perMessageBeyondPayload: {
      log: (cache.logBytes - cache.bytes) / cache.messages,
      arenaAndMetadata: (cache.arenaBytes + cache.metadataBytes - cache.bytes) / cache.messages,
    },
  };

  // 3. Replay: every topic's whole history, then the last 10 of each (a typical resume).
  const fullRates: number[] = [];
  const rawRates: number[] = [];
  const tailRates: number[] = [];
  let sink = 0;
  const visit = (_seq: number, _ts: number, flags: number, d: Uint8Array): void => {
    sink += d[d.length - 1] + flags;
  };
  const visitRaw = (_seq: number, _ts: number, flags: number, arena: Uint8Array, offset: number, length: number): void => {
    sink += arena[offset + length - 1] + flags;
  };
  let replayed = 0;
  for (let r = 0; r < c.reps; r++) {
    let t0 = process.hrtime.bigint();
    let v = 0;
    for (let t = 0; t < c.topics; t++) v += cache.forEach(t, 0, visit);
    fullRates.push(v / (Number(process.hrtime.bigint() - t0) / 1e9));
    replayed = v;
    t0 = process.hrtime.bigint();
    v = 0;
    for (let t = 0; t < c.topics; t++) v += cache.forEachRaw(t, 0, visitRaw);
    rawRates.push(v / (Number(process.hrtime.bigint() - t0) / 1e9));
    t0 = process.hrtime.bigint();
    let resumes = 0;
    for (let k = 0; k < 5; k++) {
      for (let t = 0; t < c.topics; t++) {
        cache.forEach(t, seq[t] - 10, visit);
        resumes++;
      }
    }
    tailRates.push(resumes / (Number(process.hrtime.bigint() - t0) / 1e9));
  }
  if (sink === -1) console.log('');

  // 4. Global budget bound: default limits, 256 MiB, 10x the budget appended; each append evicts the globally oldest.
  const budget = new MessageCache({ allocate: a.allocate });
  const seq2 = new Float64Array(c.topics);
  const budgetFill = Math.ceil((budget.maxTotalBytes / entryBytes) * 1.05);
  appendRound(budget, seq2, c.topics, budgetFill, data, now);
  const budgetRates: number[] = [];
  const budgetCopiedBefore = budget.cleanerCopiedBytes;
  for (let r = 0; r < c.reps; r++) {
    const s = appendRound(budget, seq2, c.topics, c.messages, data, now + budgetFill + r * c.messages);
    budgetRates.push(c.messages / s);
  }

  return {
    config: { messages: c.messages, topics: c.topics, payloadBytes: c.size, reps: c.reps },
    memory,
    steadyMemory,
    appendPerSecond: {
      fill: c.messages / fillSeconds,
      steadyCountEvicting: spread(steady),
      steadyBudgetEvicting: spread(budgetRates),
    },
    budgetCase: {
      maxTotalBytes: budget.maxTotalBytes,
      storedBytes: budget.storedBytes,
      logBytes: budget.logBytes,
      arenaBytes: budget.arenaBytes,
      messages: budget.messages,
      evictedForTotalBytes: budget.evictedForTotalBytes,
      evictedForSpace: budget.evictedForSpace,
      cleanerCopiedPerAppendedByte: (budget.cleanerCopiedBytes - budgetCopiedBefore) / (c.reps * c.messages * entryBytes),
    },
    replayPerSecond: {
      messagesPerReplayPass: replayed,
      forEach: spread(fullRates),
      forEachRaw: spread(rawRates),
      resumesOfLast10: spread(tailRates),
    },
    allocatorPath: a.path,
  };
}

function main(): void {
  if (!gc) {
    const r = spawnSync(process.execPath, ['--expose-gc', ...process.execArgv, __filename, ...process.argv.slice(2)], { stdio: 'inherit' });
    process.exit(r.status ?? 1);
  }
  const quick = flag('quick');
  const c: Config = {
    messages: Number(arg('messages', quick ? '200000' : '1000000')),
    topics: Number(arg('topics', quick ? '2000' : '10000')),
    size: Number(arg('size', '512')),
    reps: quick ? 1 : 3,
    alloc: arg('alloc', 'js'),
  };
  const r = memoryAndThroughput(c);
  const env = { ...envHeader(packageRoot()), arenaAllocator: r.allocatorPath as string };
  console.log(`cache-cost: ${env.cpu}, ${env.cores} cores, node ${env.node}, ${env.kernel}, commit ${env.gitCommit}, arenas: ${env.arenaAllocator}`);
  const m = r.memory as Record<string, number> & { perMessageBeyondPayload: Record<string, number> };
  const per = m.perMessageBeyondPayload;
  console.log(`\nmemory: ${fmt(m.messages)} messages of ${c.size} B over ${fmt(m.topics)} topics`);
  console.log('                                   total bytes   per message beyond payload');
  console.log(`payload                      ${fmt(m.payloadBytes).padStart(15)}`);
  console.log(`stored (header + padding)    ${fmt(m.storedBytes).padStart(15)}   ${per.entryHeaderAndPadding.toFixed(1).padStart(8)}`);
  console.log(`log segments in use          ${fmt(m.logBytes).padStart(15)}   ${per.log.toFixed(1).padStart(8)}`);
  console.log(`arena chunks + metadata      ${fmt(m.arenaBytes + m.metadataBytes).padStart(15)}   ${per.arenaAndMetadata.toFixed(1).padStart(8)}`);
  console.log(`process RSS delta            ${fmt(m.rssDeltaBytes).padStart(15)}   ${per.rss.toFixed(1).padStart(8)}`);
  const sm = r.steadyMemory as { logBytes: number; arenaBytes: number; metadataBytes: number; cleanerCopiedPerAppendedByte: number; perMessageBeyondPayload: Record<string, number> };
  console.log(`log, steady (count-evicting) ${fmt(sm.logBytes).padStart(15)}   ${sm.perMessageBeyondPayload.log.toFixed(1).padStart(8)}`);
  console.log(`arena + metadata, steady     ${fmt(sm.arenaBytes + sm.metadataBytes).padStart(15)}   ${sm.perMessageBeyondPayload.arenaAndMetadata.toFixed(1).padStart(8)}`);
  console.log(`cleaner copies per appended byte, count-evicting: ${sm.cleanerCopiedPerAppendedByte.toFixed(3)}`);
  const bc = r.budgetCase as Record<string, number>;
  console.log(
    `budget case (defaults, 256 MiB): ${fmt(bc.messages)} messages, stored ${fmt(bc.storedBytes)}, log ${fmt(bc.logBytes)}, arena ${fmt(bc.arenaBytes)}, cleaner copies per appended byte ${bc.cleanerCopiedPerAppendedByte.toFixed(3)}`,
  );
  console.log(`V8 heap used delta           ${fmt(m.heapUsedDeltaBytes).padStart(15)}   ${(m.heapUsedDeltaBytes / m.messages).toFixed(1).padStart(8)}`);
  const ap = r.appendPerSecond as { fill: number; steadyCountEvicting: Spread; steadyBudgetEvicting: Spread };
  const rp = r.replayPerSecond as { forEach: Spread; forEachRaw: Spread; resumesOfLast10: Spread };
  console.log(`\nthroughput (median of ${c.reps}, ± half the range)`);
  console.log(`append, filling                        ${fmt(ap.fill).padStart(12)} msg/s`);
  console.log(`append, each evicts by count           ${fmt(ap.steadyCountEvicting.median).padStart(12)} msg/s ${pct(ap.steadyCountEvicting)}`);
  console.log(`append, each evicts by global budget   ${fmt(ap.steadyBudgetEvicting.median).padStart(12)} msg/s ${pct(ap.steadyBudgetEvicting)}`);
  console.log(`replay forEach (Uint8Array views)      ${fmt(rp.forEach.median).padStart(12)} msg/s ${pct(rp.forEach)}`);
  console.log(`replay forEachRaw (no allocation)      ${fmt(rp.forEachRaw.median).padStart(12)} msg/s ${pct(rp.forEachRaw)}`);
  console.log(`resume of the last 10 messages         ${fmt(rp.resumesOfLast10.median).padStart(12)} resumes/s ${pct(rp.resumesOfLast10)}`);

  const result = { benchmark: 'cache-cost', environment: env, ...r };
  const dir = path.join(repoRoot(), 'bench', 'results');
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `cache-cost-${(env.date as string).slice(0, 10)}${c.alloc === 'native' ? '-native' : ''}${quick ? '-quick' : ''}.json`);
  fs.writeFileSync(file, JSON.stringify(result, null, 2) + '\n');
  console.log(`\nwrote ${path.relative(process.cwd(), file)}`);
}

main();
