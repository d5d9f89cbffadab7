// Issue 18's proof: `c10m bench run million`. One command raises what the
// kernel needs for the run (bench/scenarios/million-system.ts, put back at
// the end), starts Redis and `c10m serve --processes auto --max-sessions N
// --engine redis`, opens N sessions from a benchsub fleet (each process at
// most ~19,000 sockets: the descriptor limit here is a hard 20,000) plus a
// sample of real SDK sessions (bench/sdk-sample.ts), each subscribed to one
// of the topics, and measures:
//   1. the ramp: connects per second, every session held and subscribed,
//      none refused;
//   2. memory: user space (RSS of every node process, top included, minus
//      the empty server's) and kernel (slab, socket pages, conntrack) per
//      session;
//   3. the reference load scaled: every session one message a minute
//      (topics/60 publishes/s round robin), publish-to-receive latency over
//      --hold-seconds, every delivery counted;
//   4. one broadcast: one message on every topic at once (a benchpub burst,
//      every message stamped with its start), the time until the last
//      session has it;
//   5. the storm: every node process SIGKILLed at once, the top restarts
//      them, the fleet reconnects and resubscribes (loadgen reconnect); the
//      time to all back and the refusals; the SDK sample, published to
//      throughout, must get every acked message in order or a reported gap;
//   6. the projection to 10,000,000 sessions on a 64 GB server.
import { availableParallelism, loadavg } from 'node:os';
import { connectFleet, countChecks, cpuOf, expectedDeliveries, fleetFigures, pubConfig, Sampler, settle, startPublisher, summarize, type Progress, type RunOptions } from '../harness';
import type { Publisher } from '../pub';
import { killAllRedis, startRedis, type BenchRedis } from '../redis';
import type { ChartPanel, Check, ScenarioResult, Table } from '../report';
import { SdkSample, type SampleFigures } from '../sdk-sample';
import type { SubscriberFleet } from '../sub';
import { startTarget, type Target } from '../targets';
import { AUTO_HEADROOM } from '../../server/processes';
import { DESCRIPTOR_RESERVE_BASE, DESCRIPTOR_RESERVE_PER_WORKGROUP } from '../../sysctl/costs';
import { nodeProcesses, raiseSysctls, readKernel, restoreSysctls, rssSum, sysctlPlan, type KernelReading, type NodeProcesses, type SysctlChange } from './million-system';

export interface MillionOptions {
  sessions: number;
  holdSeconds: number;
  messageBytes: number;
  /** Connects per second the whole fleet aims at (0: as fast as max-pending allows). */
  rampRate: number;
  /** Server processes: a count, or auto (from --max-sessions and the descriptor limit). */
  serverProcesses: number | 'auto';
  /** Real SDK sessions among the N (one extra process), for the no-loss proof. */
  sampleSessions: number;
  /** benchsub sessions ping this often (0: no pings: the hold carries the message load only). */
  pingIntervalMs: number;
  /** Bound on the ramp, and on the storm's return. */
  connectTimeoutSeconds: number;
}

export const DEFAULTS = {
  sessions: 1_000_000,
  topics: 1000,
  holdSeconds: 600,
  messageBytes: 512,
  rampRate: 5000,
  sampleSessions: 1000,
  /** Sample topics (their own: the benchsub topics' deliveries stay exactly countable). */
  sampleTopics: 10,
  /** Sockets per benchsub process (its descriptor limit is 20,000). */
  perBenchsub: 19_000,
  maxPending: 256,
  /** Each topic published once per this many seconds (the reference: one message a minute per session). */
  periodSeconds: 60,
  warmupSeconds: 5,
  settleSeconds: 10,
  /** Publishing to the SDK sample before the kill, and after all are back. */
  sampleLeadSeconds: 5,
  /** Below this much MemAvailable the ramp stops where it is (the machine's own reserve). */
  memoryFloorBytes: 1.5 * 2 ** 30,
  /** The projection: a 64 GB server, each process allowed this many descriptors (a container's usual nr_open). */
  projectionSessions: 10_000_000,
  projectionMemoryBytes: 64 * 2 ** 30,
  projectionDescriptors: 1_048_576,
  /** The published record: 10,000,000 sessions on 12 cores. */
  record: { p50Ms: 18, p99Ms: 585, maxMs: 1700 },
  targetP99Ms: 50,
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const round = (v: number, digits = 2) => Math.round(v * 10 ** digits) / 10 ** digits;
const kb = (bytes: number) => round(bytes / 1024, 3);
const mb = (bytes: number) => round(bytes / 2 ** 20, 1);

/** `count` loopback source addresses 127.1.x.y (none ending in 0 or 255). */
export function millionAddresses(count: number, second = 1): string[] {
  return Array.from({ length: count }, (_, k) => `127.${second}.${1 + Math.floor(k / 250)}.${1 + (k % 250)}`);
}

/** Polls the admin port's /readyz until 200; the seconds it took, or null after timeoutMs. */
async function untilReady(target: Target, timeoutMs: number): Promise<number | null> {
  const started = Date.now();
  while (Date.now() - started < timeoutMs) {
    try {
      if ((await fetch(`http://127.0.0.1:${target.adminPort}/readyz`)).status === 200) return (Date.now() - started) / 1000;
    } catch {
      // not yet
    }
    await sleep(200);
  }
  return null;
}

interface TimedSample {
  t: number;
  live: number;
  connectsPerSec: number;
  memAvailableMB: number;
  serverRssMB: number;
}

/** A per-second record of the fleet's live sessions and the machine's memory, from `startMs`. */
function recorder(fleet: () => SubscriberFleet | null, procs: () => NodeProcesses | null, startMs: number): { samples: TimedSample[]; stop: () => void } {
  const samples: TimedSample[] = [];
  let lastLive = 0;
  const timer = setInterval(() => {
    const s = fleet()?.stats();
    const p = procs();
    const live = s?.live ?? 0;
    samples.push({ t: round((Date.now() - startMs) / 1000, 1), live, connectsPerSec: live - lastLive, memAvailableMB: mb(readKernel().memAvailableBytes), serverRssMB: p ? mb(rssSum(p)) : 0 });
    lastLive = live;
  }, 1000);
  return { samples, stop: () => clearInterval(timer) };
}

/** The ramp's chart: sessions live, and connects per second (x 10, on the same axis). */
function rampChart(samples: TimedSample[]): ChartPanel {
  return {
    title: 'Ramp: sessions live and connects per second',
    xLabel: 'seconds since the ramp began',
    yLabel: 'sessions',
    series: [
      { name: 'live', points: samples.map((x) => [x.t, x.live] as [number, number]) },
      { name: 'connects/s x 10', points: samples.map((x) => [x.t, x.connectsPerSec * 10] as [number, number]) },
    ],
  };
}

/** The server's CPU (% of one core) over the next 5 s. */
async function readCpuPct(p: NodeProcesses): Promise<number> {
  const pids = [p.top, ...p.members];
  const c0 = cpuOf(pids);
  const t0 = performance.now();
  await sleep(5000);
  return round(((cpuOf(pids) - c0) / ((performance.now() - t0) / 1000)) * 100, 1);
}

export async function million(o: RunOptions, progress: Progress): Promise<Omit<ScenarioResult, 'env' | 'scenario'>> {
  const m = o.million as MillionOptions;
  const N = m.sessions;
  const sampleN = Math.min(m.sampleSessions, Math.floor(N / 10));
  const native = N - sampleN;
  const topics = o.topics ?? Math.min(DEFAULTS.topics, native);
  if (topics > native) throw new Error(`--topics ${topics}: more topics than benchsub sessions (${native})`);
  const sampleTopics = Math.min(DEFAULTS.sampleTopics, Math.max(1, sampleN));
  const benchsubs = Math.max(1, Math.ceil(native / DEFAULTS.perBenchsub));
  // Source addresses: four per benchsub process (each holds at most ~4,750 of its ports), at least 16.
  const addresses = o.sourceAddresses.length >= benchsubs * 4 ? o.sourceAddresses : millionAddresses(Math.max(16, benchsubs * 4));
  const size = m.messageBytes;
  const rate = topics / DEFAULTS.periodSeconds;
  const notes: string[] = [];
  const checks: Check[] = [];
  const log = (line: string) => process.stderr.write(`million: ${line}\n`);

  // 1. The kernel, for this run only.
  const plan = sysctlPlan(N, addresses.length);
  for (const c of plan) log(`${c.key} = ${c.current ?? '(absent)'}: ${c.raisedTo === null ? 'kept' : `raised to ${c.raisedTo} for the run`} (${c.why})`);
  let changes: SysctlChange[] = [];
  let target: Target | null = null;
  let redis: BenchRedis | null = null;
  let fleet: SubscriberFleet | null = null;
  let sample: SdkSample | null = null;
  const publishers: Publisher[] = [];
  const killAll = () => {
    fleet?.kill();
    sample?.kill();
    for (const p of publishers) p.kill();
    if (target?.pid) {
      try {
        process.kill(target.pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
    killAllRedis();
  };
  const onSignal = (signal: NodeJS.Signals) => {
    killAll();
    for (const c of restoreSysctls()) process.stderr.write(`million: ${signal}: ${c.key} put back to ${c.old}\n`);
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  let procs: NodeProcesses | null = null;
  let rec: { samples: TimedSample[]; stop: () => void } | null = null;
  try {
    changes = raiseSysctls(plan);

    // 2. Redis and the server; the empty server's memory.
    redis = await startRedis();
    const serveArgs = ['--benchmark-mode', '--processes', String(m.serverProcesses), '--max-sessions', String(N), '--engine', 'redis', '--redis-url', redis.url];
    const startedAt = Date.now();
    target = await startTarget('c10m', { name: 'c10m', workgroups: 1, serveArgs, readyTimeoutMs: 180_000 });
    const readySeconds = await untilReady(target, 120_000);
    if (readySeconds === null) throw new Error('/readyz did not answer 200 within 120 s of "c10m listening"');
    const startSeconds = round((Date.now() - startedAt) / 1000, 1);
    const autoLine = target.output.map((l) => /"auto":"([^"]+)"/.exec(l)?.[1]).find((x) => x !== undefined) ?? null;
    if (autoLine) log(`--processes auto: ${autoLine}`);
    await sleep(DEFAULTS.settleSeconds * 1000);
    procs = await nodeProcesses(target);
    const serverProcesses = procs.members.length;
    const emptyRss = rssSum(procs);
    const kernel0 = readKernel();
    log(`${serverProcesses} node processes listening ${startSeconds} s after the start; RSS summed over them and the top: ${mb(emptyRss)} MB empty`);

    // 3. The SDK sample first, while the machine is quiet (1,000 JS clients starve behind a million-session ramp).
    sample = new SdkSample({
      url: target.subUrl.replace(/\?.*$/, ''),
      clients: sampleN,
      topics: sampleTopics,
      topicPrefix: '/million/sample/',
      addresses: millionAddresses(4, 2),
      periodMs: 1000,
      maxRounds: 3600,
      readyTimeoutMs: 300_000,
    });
    if (sampleN > 0) await sample.start();

    // The ramp.
    const rampStart = Date.now();
    let stoppedForMemory: KernelReading | null = null;
    const fleetRef: { f: SubscriberFleet | null } = { f: null };
    rec = recorder(
      () => fleetRef.f,
      () => procs,
      rampStart,
    );
    const connectTimeoutSeconds = m.connectTimeoutSeconds;
    const connected = await connectFleet(
      target,
      {
        connections: native,
        processes: benchsubs,
        topicsPerSession: 1,
        topicCount: topics,
        connectRate: m.rampRate,
        maxPending: o.maxPending ?? DEFAULTS.maxPending,
        reconnect: true,
        pingIntervalMs: m.pingIntervalMs,
        onFleet: (f) => (fleetRef.f = f),
        stopWhen: () => {
          const k = readKernel();
          if (k.memAvailableBytes >= DEFAULTS.memoryFloorBytes) return false;
          stoppedForMemory = k;
          return true;
        },
      },
      { ...o, sourceAddresses: addresses, connectTimeoutSeconds },
      progress,
      'ramp',
    );
    fleet = connected.fleet;
    const rampSeconds = connected.seconds;
    const ramped = fleet.stats();
    const rampSamples = rec.samples.slice();
    rec.stop();
    const seconds = [...(await fleet.secondCounts()).entries()].sort((a, b) => a[0] - b[0]);
    const peakConnects = seconds.reduce((x, [, c]) => Math.max(x, c.upgrades), 0);
    log(`ramp: ${ramped.live} of ${native} live in ${round(rampSeconds, 1)} s, ${ramped.refused503 + ramped.refused429 + ramped.refusedOther} refused, ${ramped.connectErrors} connect errors`);
    if (stoppedForMemory !== null) {
      const k = stoppedForMemory as KernelReading;
      notes.push(
        `the ramp stopped at ${ramped.live} sessions: MemAvailable fell to ${mb(k.memAvailableBytes)} MB (floor ${mb(DEFAULTS.memoryFloorBytes)} MB); slab ${mb(k.slabBytes)} MB, socket pages ${mb(k.tcpMemBytes)} MB, server RSS ${mb(rssSum(procs))} MB`,
      );
    }
    checks.push({
      name: `ramp: ${native.toLocaleString('en-US')} benchsub sessions held and subscribed`,
      ok: connected.allReady && ramped.live === native,
      detail: `${ramped.live} live (subscribed) in ${round(rampSeconds, 1)} s, ${ramped.failed} failed`,
    });
    checks.push({
      name: 'ramp: no upgrade refused',
      ok: ramped.refused503 + ramped.refused429 + ramped.refusedOther === 0,
      detail: `${ramped.refused503} 503, ${ramped.refused429} 429, ${ramped.refusedOther} other; ${ramped.connectErrors} connect errors, ${ramped.retries} retries`,
    });
    if (!connected.allReady || ramped.live !== native) {
      // Short of N (the ramp's time bound, or memory): what it holds, what it cost, and what ran out; nothing further.
      const held = ramped.live + sampleN;
      const k = readKernel();
      const rss = rssSum(procs);
      const cpu = readCpuPct(procs);
      const why = stoppedForMemory !== null ? 'memory' : `the ramp's time bound (${connectTimeoutSeconds} s)`;
      notes.push(
        `the ramp stopped at ${held} of ${N} sessions on ${why}, ${round(rampSeconds, 1)} s after it began, at ${rampSamples.length ? rampSamples[rampSamples.length - 1].connectsPerSec : 0} connects/s (peak ${peakConnects}); ` +
          `MemAvailable ${mb(k.memAvailableBytes)} MB; server RSS ${mb(rss)} MB (${mb(emptyRss)} MB empty); server CPU ${await cpu}% of one core over 5 s with the fleet still connecting; load average ${loadavg()[0].toFixed(1)}`,
      );
      const partial = {
        sessions: N,
        heldSessions: held,
        serverProcesses,
        benchsubProcesses: benchsubs,
        rampSeconds: round(rampSeconds, 1),
        meanConnectsPerSec: Math.round(ramped.live / rampSeconds),
        peakConnectsPerSec: peakConnects,
        rampRefused: ramped.refused503 + ramped.refused429 + ramped.refusedOther,
        rampConnectErrors: ramped.connectErrors,
        emptyRssMB: mb(emptyRss),
        heldRssMB: mb(rss),
        userKBPerSession: kb((rss - emptyRss) / held),
        slabKBPerSession: kb((k.slabBytes - kernel0.slabBytes) / held),
        socketPagesKBPerSession: kb((k.tcpMemBytes - kernel0.tcpMemBytes) / held),
        memAvailableHeldMB: mb(k.memAvailableBytes),
      };
      return {
        params: { sessions: N, topics, holdSeconds: m.holdSeconds, messageBytes: size, rampRate: m.rampRate, serverProcesses: String(m.serverProcesses), sampleSessions: sampleN },
        columns: [
          { key: 'heldSessions', label: 'sessions held', better: 'higher' },
          { key: 'serverProcesses', label: 'server processes', better: 'none' },
          { key: 'meanConnectsPerSec', label: 'connects/s (mean)', better: 'higher' },
          { key: 'userKBPerSession', label: 'user KB/session', better: 'lower' },
          { key: 'slabKBPerSession', label: 'slab KB/session (both ends)', better: 'lower' },
          { key: 'memAvailableHeldMB', label: 'MemAvailable MB', better: 'none' },
        ],
        targets: [{ name: 'c10m', figures: partial }],
        ratios: [],
        latency: null,
        checks,
        notes,
        charts: [
          rampChart(rampSamples),
          {
            title: 'Memory during the ramp (MB)',
            xLabel: 'seconds since the ramp began',
            yLabel: 'MB',
            series: [{ name: 'MemAvailable', points: rampSamples.map((x) => [x.t, x.memAvailableMB] as [number, number]) }],
          },
        ],
        series: { ramp: rampSamples as unknown as Record<string, number | null>[] },
      };
    }

    // The processes report once a second: their sums, once they reach N (or after 15 s).
    let heldSessions = 0;
    let heldSubscriptions = 0;
    for (const until = Date.now() + 15_000; Date.now() < until && (heldSessions < N || heldSubscriptions < N); await sleep(500)) {
      const list = ((await target.jmx())?.Processes ?? []) as { ConnectedSessions?: number; Subscriptions?: number }[];
      heldSessions = list.reduce((a, p) => a + (p.ConnectedSessions ?? 0), 0);
      heldSubscriptions = list.reduce((a, p) => a + (p.Subscriptions ?? 0), 0);
    }
    checks.push({
      name: `the server holds all ${N.toLocaleString('en-US')} sessions, each with its subscription`,
      ok: heldSessions >= N && heldSubscriptions >= N,
      detail: `/jmx, summed over the processes: ConnectedSessions ${heldSessions}, Subscriptions ${heldSubscriptions} (${native} benchsub + ${sampleN} SDK sessions, and the sample's publisher)`,
    });

    // 4. Memory with every session held; the server's CPU while nothing is published (timers, sweeps).
    const idleCpu0 = cpuOf([procs.top, ...procs.members]);
    const idleAt = performance.now();
    await sleep(DEFAULTS.settleSeconds * 1000);
    const idleCpuPct = round(((cpuOf([procs.top, ...procs.members]) - idleCpu0) / ((performance.now() - idleAt) / 1000)) * 100, 1);
    const heldRss = rssSum(procs);
    const kernel1 = readKernel();
    const userPerSession = (heldRss - emptyRss) / N;
    const slabPerSession = (kernel1.slabBytes - kernel0.slabBytes) / N;
    const unreclaimPerSession = (kernel1.sunreclaimBytes - kernel0.sunreclaimBytes) / N;
    const tcpMemPerSession = (kernel1.tcpMemBytes - kernel0.tcpMemBytes) / N;
    const conntrackPerSession = kernel1.conntrack !== null && kernel0.conntrack !== null ? (kernel1.conntrack - kernel0.conntrack) / N : null;
    log(`idle: server CPU ${idleCpuPct}% (every node process and the top, nothing published, ${DEFAULTS.settleSeconds} s)`);
    log(`memory: user ${kb(userPerSession)} KB/session; kernel slab ${kb(slabPerSession)} KB, socket pages ${kb(tcpMemPerSession)} KB per session (both ends)`);

    // 5. The reference load scaled: each topic once a minute, for --hold-seconds.
    const view: Target = { ...target, cpuSeconds: () => cpuOf([(procs as NodeProcesses).top, ...(procs as NodeProcesses).members]), rssBytes: () => rssSum(procs as NodeProcesses) };
    const pub = await startPublisher(pubConfig(target, { size, topicCount: topics, schedule: [{ atSeconds: 0, rate }], durationSeconds: m.holdSeconds }));
    publishers.push(pub);
    const sampler = new Sampler(
      fleet,
      view,
      () => pub.stats,
      (s) => progress.update(s.t, `${s.deliveredPerSec} msg/s, p99 ${s.p99Ms ?? '-'} ms, server cpu ${s.serverCpuPct ?? '-'}%`),
    );
    progress.phase('c10m', 'hold', Math.ceil(m.holdSeconds));
    const holdBefore = fleet.stats().messages;
    sampler.start();
    pub.go();
    const warmup = Math.min(DEFAULTS.warmupSeconds, m.holdSeconds / 4);
    const warmupTimer = setTimeout(() => fleet?.restartLatency(), warmup * 1000);
    const holdFinal = await pub.done;
    clearTimeout(warmupTimer);
    const holdWant = expectedDeliveries(holdFinal.published, topics, native, 1);
    const holdSettled = await settle(fleet, holdBefore + holdWant, 30_000);
    const window = sampler.stop();
    progress.stop();
    await sleep(400);
    const hold = summarize(fleet.latency);
    const holdAll = summarize(fleet.latencyAll);
    checks.push({
      name: 'hold: deliveries equal the publishes times the subscribers of their topic',
      ok: holdSettled && fleet.stats().messages - holdBefore === holdWant && holdFinal.errors === 0,
      detail: `${fleet.stats().messages - holdBefore} delivered, ${holdWant} owed for ${holdFinal.published} publishes; ${holdFinal.errors} publish errors`,
    });

    // 6. One broadcast: a message on every topic at once.
    fleet.restartLatency();
    const burstBefore = fleet.stats().messages;
    const bpub = await startPublisher({ ...pubConfig(target, { size, topicCount: topics, schedule: [{ atSeconds: 0, rate: topics }], durationSeconds: 120, maxMessages: topics }), burst: true });
    publishers.push(bpub);
    bpub.go();
    const burstFinal = await bpub.done;
    const burstSettled = await settle(fleet, burstBefore + native, 120_000);
    await sleep(600);
    const burst = summarize(fleet.latency);
    checks.push({
      name: 'broadcast: every session got its message',
      ok: burstSettled && fleet.stats().messages - burstBefore === native && burstFinal.published === topics,
      detail: `${fleet.stats().messages - burstBefore} delivered of ${native}, ${burstFinal.published} publishes; the last ${round(burst.maxMs / 1000, 3)} s after the burst began`,
    });
    checks.push(...(await countChecks(fleet, [holdFinal.published, burstFinal.published], topics, native, 1, 'hold + broadcast')));

    // 7. The storm: every node process SIGKILLed at once; the top restarts them.
    if (sampleN > 0) sample.go();
    await sleep(DEFAULTS.sampleLeadSeconds * 1000);
    const before = fleet.stats();
    const killed = (await nodeProcesses(target)).members;
    const killAt = Date.now();
    const stormRec = recorder(
      () => fleet,
      () => null,
      killAt,
    );
    progress.phase('c10m', 'storm', native);
    for (const pid of killed) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    // Listening again: every process a new one (its report no longer names a killed pid), then /readyz 200.
    for (const until = Date.now() + connectTimeoutSeconds * 1000; Date.now() < until; await sleep(200)) {
      const now = await nodeProcesses(target).catch(() => null);
      if (now && now.members.length === killed.length && now.members.every((p) => !killed.includes(p))) break;
    }
    const readyAgain = await untilReady(target, connectTimeoutSeconds * 1000);
    const listeningAgain = readyAgain === null ? null : (Date.now() - killAt) / 1000;
    const back = await fleet.until(
      (s) => s.closed - before.closed >= native && s.live >= native,
      connectTimeoutSeconds * 1000,
      (s) => progress.update(s.live, `live, ${s.refused503 + s.refused429 + s.refusedOther - before.refused503 - before.refused429 - before.refusedOther} refused`),
    );
    progress.stop();
    const backStats = fleet.stats();
    const allBackSeconds = back && backStats.allLiveAtMs > 0 ? round((backStats.allLiveAtMs - killAt) / 1000, 1) : null;
    await sleep(DEFAULTS.sampleLeadSeconds * 1000);
    stormRec.stop();
    const sampleFigures: SampleFigures | null = sampleN > 0 ? await sample.stop(60_000) : null;
    procs = await nodeProcesses(target);
    const afterRss = rssSum(procs);
    const diff = (k: 'refused503' | 'refused429' | 'refusedOther' | 'connectErrors' | 'retries') => backStats[k] - before[k];
    checks.push({
      name: `storm: all ${native.toLocaleString('en-US')} benchsub sessions back and subscribed after every node process was killed`,
      ok: back,
      detail: back
        ? `all back ${allBackSeconds} s after the kill (${killed.length} processes; /readyz 200 again after ${listeningAgain ?? '–'} s)`
        : `${backStats.live} of ${native} back after ${connectTimeoutSeconds} s`,
    });
    if (sampleFigures) {
      const s = sampleFigures;
      checks.push({
        name: `storm: each of the ${sampleN} SDK sessions got every acked message of its topic, in order, or a reported gap`,
        ok: s.settled && s.missing === 0 && s.outOfOrder === 0 && s.repeated === 0 && s.reconnected === sampleN,
        detail: `${s.acked} acked publishes (${s.unacked} failed in flight), ${s.delivered} deliveries; ${s.missing} missing, ${s.outOfOrder} out of order, ${s.repeated} repeated, ${s.gaps} gaps reported, ${s.duplicatesDropped} duplicates dropped by the SDK; ${s.reconnected} of ${sampleN} reconnected${s.firstProblem ? `; ${s.firstProblem}` : ''}`,
      });
    }
    await fleet.stop();
    const end = fleet.stats();
    checks.push({ name: 'no protocol error', ok: end.protocolErrors === 0, detail: `${end.protocolErrors} protocol errors${end.firstError ? `, first error: ${end.firstError}` : ''}` });

    // 8. The projection to 10,000,000 sessions on a 64 GB server.
    const perProcessEmpty = serverProcesses > 0 ? emptyRss / (serverProcesses + 1) : emptyRss;
    const serverKernelPerSession = (slabPerSession + tcpMemPerSession) / 2;
    const pSessionsPerProcess = Math.floor((DEFAULTS.projectionDescriptors - DESCRIPTOR_RESERVE_BASE - DESCRIPTOR_RESERVE_PER_WORKGROUP) * (1 - AUTO_HEADROOM));
    const pProcesses = Math.ceil(DEFAULTS.projectionSessions / pSessionsPerProcess);
    const pSessionsBytes = DEFAULTS.projectionSessions * (userPerSession + serverKernelPerSession);
    const pFixedBytes = (pProcesses + 1) * perProcessEmpty;
    const pTotal = pSessionsBytes + pFixedBytes;
    const projection =
      `10,000,000 x (${kb(userPerSession)} KB user + ${kb(serverKernelPerSession)} KB kernel, the server's half of the slab and socket pages measured for both ends) = ${round(pSessionsBytes / 2 ** 30, 1)} GiB; ` +
      `+ ${pProcesses + 1} processes (${pProcesses} node processes of ${pSessionsPerProcess.toLocaleString('en-US')} sessions at ${DEFAULTS.projectionDescriptors.toLocaleString('en-US')} descriptors each, and the top) x ${mb(perProcessEmpty)} MB empty = ${round(pFixedBytes / 2 ** 30, 2)} GiB; ` +
      `total ${round(pTotal / 2 ** 30, 1)} GiB of 64 GiB: ${pTotal < DEFAULTS.projectionMemoryBytes ? 'fits' : 'does NOT fit'}`;
    log(`projection: ${projection}`);

    const figures = {
      sessions: N,
      benchsubSessions: native,
      sdkSessions: sampleN,
      topics,
      serverProcesses,
      workgroupsPerProcess: 1,
      benchsubProcesses: benchsubs,
      sourceAddresses: addresses.length,
      serverStartSeconds: startSeconds,
      rampSeconds: round(rampSeconds, 1),
      meanConnectsPerSec: Math.round(native / rampSeconds),
      peakConnectsPerSec: peakConnects,
      rampRefused: ramped.refused503 + ramped.refused429 + ramped.refusedOther,
      emptyRssMB: mb(emptyRss),
      heldRssMB: mb(heldRss),
      userKBPerSession: kb(userPerSession),
      uwsUserKBPerSession: 0.91,
      userVsUws: round(kb(userPerSession) / 0.91),
      slabKBPerSession: kb(slabPerSession),
      sunreclaimKBPerSession: kb(unreclaimPerSession),
      socketPagesKBPerSession: kb(tcpMemPerSession),
      conntrackPerSession: conntrackPerSession === null ? null : round(conntrackPerSession, 3),
      memAvailableHeldMB: mb(kernel1.memAvailableBytes),
      idleServerCpuPct: idleCpuPct,
      holdSeconds: m.holdSeconds,
      holdPublished: holdFinal.published,
      holdDelivered: holdWant,
      deliveredPerSec: window.deliveredPerSec,
      serverCpuPct: window.serverCpuPct,
      p50Ms: hold.p50Ms,
      p99Ms: hold.p99Ms,
      maxMs: hold.maxMs,
      p99MsWithWarmup: holdAll.p99Ms,
      broadcastSeconds: round(burst.maxMs / 1000, 3),
      broadcastP50Seconds: round(burst.p50Ms / 1000, 3),
      stormProcessesKilled: killed.length,
      stormListeningSeconds: listeningAgain === null ? null : round(listeningAgain, 1),
      stormAllBackSeconds: allBackSeconds,
      storm503: diff('refused503'),
      storm429: diff('refused429'),
      stormRefusedOther: diff('refusedOther'),
      stormConnectErrors: diff('connectErrors'),
      stormRetries: diff('retries'),
      afterStormRssMB: mb(afterRss),
      sampleAcked: sampleFigures?.acked ?? null,
      sampleMissing: sampleFigures?.missing ?? null,
      sampleGaps: sampleFigures?.gaps ?? null,
      projectionGiB: round(pTotal / 2 ** 30, 1),
      ...fleetFigures(end),
    };
    notes.push(
      `the server: \`c10m serve --processes ${m.serverProcesses} --max-sessions ${N} --engine redis --benchmark-mode --workgroups 1\` (--benchmark-mode: connections spread by the kernel's 4-tuple hash, as in every bench scenario; with the IP hash, a reconnecting address refused by a full process would come back to the same one)${autoLine ? `; auto: ${autoLine}` : ''}`,
      `kernel settings: ${changes.length === 0 ? 'none raised' : changes.map((c) => `${c.key} ${c.old} -> ${c.value}`).join('; ')}${changes.length ? ' (put back at the end)' : ''}`,
      `memory: user space = RSS summed over the top and every node process (${serverProcesses + 1}), minus the same sum empty (${mb(emptyRss)} MB, about 43 MB of each process being the node binary's shared file pages), per session; kernel figures are for both ends of each loopback connection (the benchsub socket too), and conntrack exists here only because loopback is tracked (a real server bypasses it: sysctl/README.md)`,
      `hold: ${topics} topics, each published once every ${DEFAULTS.periodSeconds} s (${round(rate, 2)} publishes/s, ${Math.round((rate * native) / topics)} deliveries/s), ${size}-byte messages, latency after a ${warmup} s warm-up; the published record (10,000,000 sessions, 12 cores): p50 ${DEFAULTS.record.p50Ms} ms, p99 ${DEFAULTS.record.p99Ms} ms, max ${DEFAULTS.record.maxMs} ms; target p99 < ${DEFAULTS.targetP99Ms} ms: ${hold.p99Ms < DEFAULTS.targetP99Ms ? 'met' : 'NOT met'}`,
      `broadcast: one message on each of the ${topics} topics in one benchpub burst, every message stamped with the burst's start: the last session had its message ${round(burst.maxMs / 1000, 3)} s after it began (median ${round(burst.p50Ms / 1000, 3)} s)`,
      `storm: ${killed.length} node processes SIGKILLed at once; the top restarts each after 50 ms; benchsub reconnects with full-jitter backoff (loadgen reconnect${m.pingIntervalMs > 0 ? `, pings every ${m.pingIntervalMs} ms` : ', no pings'}) and resubscribes; the SDK sample (${sampleN} sessions on ${sampleTopics} topics of their own, in one process) was published to (one message per topic a second, acked) from ${DEFAULTS.sampleLeadSeconds} s before the kill until ${DEFAULTS.sampleLeadSeconds} s after all were back`,
      `projection: ${projection}`,
    );
    const recordTable: Table = {
      title: 'Latency over the hold against the published record',
      rowLabel: 'run',
      columns: [
        { key: 'sessions', label: 'sessions', better: 'none' },
        { key: 'cores', label: 'cores', better: 'none' },
        { key: 'p50Ms', label: 'p50 ms', better: 'lower' },
        { key: 'p99Ms', label: 'p99 ms', better: 'lower' },
        { key: 'maxMs', label: 'max ms', better: 'lower' },
      ],
      rows: [
        { name: 'c10m (this run)', figures: { sessions: N, cores: availableParallelism(), p50Ms: hold.p50Ms, p99Ms: hold.p99Ms, maxMs: hold.maxMs } },
        { name: 'published record', figures: { sessions: 10_000_000, cores: 12, ...DEFAULTS.record } },
      ],
    };
    const stormSamples = stormRec.samples;
    return {
      params: {
        sessions: N,
        topics,
        holdSeconds: m.holdSeconds,
        messageBytes: size,
        rampRate: m.rampRate,
        serverProcesses: String(m.serverProcesses),
        sampleSessions: sampleN,
        pingIntervalMs: m.pingIntervalMs,
      },
      columns: [
        { key: 'sessions', label: 'sessions', better: 'none' },
        { key: 'serverProcesses', label: 'server processes', better: 'none' },
        { key: 'meanConnectsPerSec', label: 'connects/s (mean)', better: 'higher' },
        { key: 'userKBPerSession', label: 'user KB/session', better: 'lower' },
        { key: 'slabKBPerSession', label: 'slab KB/session (both ends)', better: 'lower' },
        { key: 'socketPagesKBPerSession', label: 'socket pages KB/session', better: 'lower' },
        { key: 'idleServerCpuPct', label: 'idle server CPU %', better: 'lower' },
        { key: 'p50Ms', label: 'hold p50 ms', better: 'lower' },
        { key: 'p99Ms', label: 'hold p99 ms', better: 'lower' },
        { key: 'maxMs', label: 'hold max ms', better: 'lower' },
        { key: 'broadcastSeconds', label: 'broadcast, last s', better: 'lower' },
        { key: 'stormAllBackSeconds', label: 'storm, all back s', better: 'lower' },
        { key: 'storm503', label: 'storm 503s', better: 'none' },
        { key: 'sampleMissing', label: 'SDK sample missing', better: 'lower' },
      ],
      targets: [{ name: 'c10m', figures }],
      ratios: [],
      latency: hold,
      tables: [recordTable],
      checks,
      notes,
      charts: [
        rampChart(rampSamples),
        {
          title: 'Hold: delivery latency per second (ms)',
          xLabel: 'seconds',
          yLabel: 'ms',
          log: true,
          series: (['p50Ms', 'p99Ms', 'maxMs'] as const).map((k) => ({
            name: k.replace('Ms', ''),
            points: sampler.samples.filter((s) => s[k] !== null).map((s) => [s.t, s[k] as number] as [number, number]),
          })),
        },
        { title: 'Storm: sessions live', xLabel: 'seconds since the kill', yLabel: 'sessions', series: [{ name: 'live', points: stormSamples.map((s) => [s.t, s.live] as [number, number]) }] },
        {
          title: 'Memory available during the ramp (MB)',
          xLabel: 'seconds since the ramp began',
          yLabel: 'MB',
          series: [
            { name: 'MemAvailable', points: rampSamples.map((s) => [s.t, s.memAvailableMB] as [number, number]) },
            { name: 'server RSS', points: rampSamples.map((s) => [s.t, s.serverRssMB] as [number, number]) },
          ],
        },
      ],
      series: {
        ramp: rampSamples as unknown as Record<string, number | null>[],
        hold: sampler.samples as unknown as Record<string, number | null>[],
        storm: stormSamples as unknown as Record<string, number | null>[],
      },
    };
  } finally {
    rec?.stop();
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    fleet?.kill();
    sample?.kill();
    for (const p of publishers) p.kill();
    await target?.stop().catch(() => undefined);
    await redis?.stop().catch(() => undefined);
    for (const c of restoreSysctls()) log(`${c.key} put back to ${c.old}`);
  }
}
