// The cluster on Redis against one node (issue 15), in three parts, on
// loopback, every process started and stopped by the run:
//
// compare     the reference-scaled load (one 512-byte message per session
//             per second, every session its own topic) on (a) one node with
//             the memory engine, then (b) two nodes with the Redis engine
//             and one redis-server. The sessions are split in two benchsub
//             fleets and the publishes in two benchpubs, one of each per
//             node in (b) (all four on the one node in (a), so that the
//             clients are the same); each benchpub publishes half the rate
//             round robin over every topic, so in (b) half the messages
//             published on A reach their subscribers on B through Redis and
//             half those published on B reach A. Latency, delivered/s, CPU
//             and RSS of each process, (b)/(a).
// saturation  acked publishes/s through one Redis: benchpub (WebSocket,
//             `ack: true`) at rising rates, 5 s a step, through node A, then
//             through A and B at half the rate each, until the acks fall
//             behind; the CPU of every process, to say which one limits.
// interest    Redis's outbound bytes (INFO total_net_output_bytes) while N
//             messages are published to a topic with subscribers on 0, 1, 2
//             and 3 of 3 nodes, then on the one node of 1: with interest
//             routing they grow with the nodes that want the topic, not with
//             the nodes present.
//
// Every load loop is bounded by a count and a time.

import { splitAddresses } from '../addresses';
import { connectFleet, countChecks, expectedPerSession, newHistogram, pubConfig, startPublisher, summarize, type Progress, type RunOptions } from '../harness';
import type { Histogram, LatencySummary } from '../histogram';
import type { Publisher, PubStats } from '../pub';
import { startRedis, type BenchRedis } from '../redis';
import type { ChartPanel, Check, Column, Figure, Table, TargetFigures } from '../report';
import { SubscriberFleet } from '../sub';
import { startTarget, type Target } from '../targets';
import { type Part, type Proc, Live, sleep, round1, round3, rssMB, CpuWindow, type EngineCounters, engineCounters, outputBufferCloses } from './cluster-common';
import { saturationRamp, redisAlone, type SatStep, type RedisAlone } from './cluster-saturation';
import { interestCases, type InterestCase } from './cluster-interest';
import { PHASES, DEFAULTS, type Phase } from './cluster-common';

export { PHASES, DEFAULTS, type Phase } from './cluster-common';

interface Parts {
  compare: CompareResult[];
  saturation: SatStep[][];
  redisAlone: RedisAlone | null;
  interest: InterestCase[];
  checks: Check[];
  notes: string[];
}

/** A saturation step kept up when this share of its publishes were acked at its rate. */
export async function cluster(o: RunOptions, progress: Progress): Promise<Part> {
  const phases = new Set<Phase>((o.phases ?? [...PHASES]) as Phase[]);
  const live = new Live();
  const onSignal = (sig: NodeJS.Signals) => {
    live.killAll();
    process.stderr.write(`\ncluster: ${sig}: every process the run started was killed\n`);
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const cacheArgs = o.cacheMessagesList && o.cacheMessagesList.length > 0 ? ['--cache-messages', String(o.cacheMessagesList[0])] : [];
  const startNode = async (name: string, extra: string[]): Promise<Target> => {
    const t = await startTarget('c10m', { name, workgroups: o.workgroups, serveArgs: ['--benchmark-mode', ...cacheArgs, ...extra, ...o.serveArgs], execArgv: o.serverNodeArgs });
    live.targets.add(t);
    return t;
  };
  const stopNode = async (t: Target) => {
    await t.stop();
    live.targets.delete(t);
  };
  let redis: BenchRedis | null = null;
  const parts: Parts = { compare: [], saturation: [], redisAlone: null, interest: [], checks: [], notes: [] };
  try {
    // (a) one node, the memory engine.
    if (phases.has('compare')) {
      const m = await startNode('memory-node', []);
      try {
        parts.compare.push(await compareSetup('memory-1node', [m, m], [{ name: 'node A', pid: m.pid }], o, progress, live));
      } finally {
        await stopNode(m);
      }
    }
    redis = await startRedis();
    const redisProc: Proc = { name: 'redis-server', pid: redis.pid };
    const redisArgs = ['--engine', 'redis', '--redis-url', redis.url];
    const a = await startNode('node-a', redisArgs);
    const b = await startNode('node-b', redisArgs);
    // (b) two nodes on one Redis.
    if (phases.has('compare')) {
      parts.compare.push(
        await compareSetup(
          'redis-2nodes',
          [a, b],
          [
            { name: 'node A', pid: a.pid },
            { name: 'node B', pid: b.pid },
            { name: 'redis', pid: redis.pid },
          ],
          o,
          progress,
          live,
          redis,
        ),
      );
    }
    if (phases.has('saturation')) {
      for (const nodes of [[a], [a, b]]) parts.saturation.push(await saturationRamp(nodes, redisProc, o, progress, live));
      const alone = await redisAlone(redis, o);
      if (typeof alone === 'string') parts.notes.push(alone);
      else parts.redisAlone = alone;
    }
    if (phases.has('interest')) {
      const c = await startNode('node-c', redisArgs);
      try {
        parts.interest = await interestCases(redis, [a, b, c], o, progress, live, async () => {
          await stopNode(c);
          await stopNode(b);
        });
      } finally {
        await stopNode(c);
      }
    }
    await stopNode(b);
    await stopNode(a);
  } catch (err) {
    live.killAll();
    throw err;
  } finally {
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    for (const t of live.targets) await t.stop();
    if (redis !== null) await redis.stop();
    progress.stop();
  }
  return report(parts, o);
}

// ---- compare: (a) one node, memory engine; (b) two nodes, Redis engine ----

interface CompareResult {
  row: TargetFigures;
  latency: LatencySummary;
  samples: { t: number; deliveredPerSec: number; p50Ms: number | null; p99Ms: number | null }[];
  checks: Check[];
  notes: string[];
}

/** Settle timeouts: give up when no delivery came for STALL_MS, or after SETTLE_MAX_MS in all. */
const STALL_MS = 5000;
const SETTLE_MAX_MS = 120_000;

/**
 * Waits for `want` deliveries as long as they keep coming: a set-up that fell
 * behind drains its backlog (its latency says how far behind it was) and is
 * still counted exactly; one that lost messages stops after STALL_MS.
 */
function settleWhileProgressing(f: SubscriberFleet, want: number): Promise<boolean> {
  let last = -1;
  let lastChange = Date.now();
  return f.until((s) => {
    if (s.messages !== last) {
      last = s.messages;
      lastChange = Date.now();
    }
    return s.messages >= want || Date.now() - lastChange > STALL_MS;
  }, SETTLE_MAX_MS);
}

function merged(hs: Histogram[]): Histogram {
  const h = newHistogram();
  for (const x of hs) h.add(x);
  return h;
}

/**
 * The reference-scaled load on two fleets (sessions 0..n/2-1 on `nodes[0]`,
 * the rest on `nodes[1]`), every message published through `nodes[0]`.
 */
async function compareSetup(name: string, nodes: [Target, Target], procs: Proc[], o: RunOptions, progress: Progress, live: Live, redis: BenchRedis | null = null): Promise<CompareResult> {
  const sessions = o.connections ?? DEFAULTS.connections;
  if (sessions < 2) throw new Error('cluster: --connections must be at least 2 (one session per node)');
  const duration = o.durationSeconds ?? DEFAULTS.durationSeconds;
  const warmup = Math.min(o.warmupSeconds ?? DEFAULTS.warmupSeconds, duration / 2);
  const size = o.size ?? DEFAULTS.size;
  const rate = o.rate ?? sessions;
  const split = [Math.floor(sessions / 2), sessions - Math.floor(sessions / 2)];
  const first = [0, split[0]];
  const fleets: SubscriberFleet[] = [];
  try {
    for (let i = 0; i < 2; i++) {
      const processes = Math.max(Math.ceil(o.processes / 2), Math.ceil(split[i] / 19000));
      const { fleet, allReady } = await connectFleet(
        nodes[i],
        { connections: split[i], processes, topicsPerSession: 1, topicCount: sessions, firstSession: first[i] },
        { ...o, sourceAddresses: splitAddresses(o.sourceAddresses, 2, i) },
        progress,
        `${name} connect`,
      );
      fleets.push(fleet);
      live.fleets.add(fleet);
      if (!allReady) throw new Error(`${name}: only ${fleet.stats().ready} of ${split[i]} sessions got ready on ${nodes[i].name} (${fleet.stats().firstError ?? 'no error reported'})`);
    }
    // One benchpub per node (both on the one node in (a)), each publishing half the rate round robin over every topic.
    const pubs: Publisher[] = [];
    for (const n of nodes) {
      const p = await startPublisher(pubConfig(n, { size, topicCount: sessions, schedule: [{ atSeconds: 0, rate: rate / 2 }], durationSeconds: duration, connections: o.pubConnections }));
      pubs.push(p);
      live.pubs.add(p);
    }
    const clientPids = [...fleets.flatMap((f) => f.pids()), ...pubs.map((p) => p.pid)];
    progress.phase(name, 'publish', Math.ceil(duration));
    const samples: CompareResult['samples'] = [];
    const messages = () => fleets.reduce((n, f) => n + f.stats().messages, 0);
    let last = messages();
    let lastAt = performance.now();
    const startedAt = lastAt;
    const startMessages = last;
    for (const f of fleets) f.takeInterval();
    const timer = setInterval(() => {
      const now = performance.now();
      const m = messages();
      const h = merged(fleets.map((f) => f.takeInterval()));
      const s = {
        t: round1((now - startedAt) / 1000),
        deliveredPerSec: Math.round((m - last) / ((now - lastAt) / 1000)),
        p50Ms: h.totalCount ? h.getValueAtPercentile(50) / 1000 : null,
        p99Ms: h.totalCount ? h.getValueAtPercentile(99) / 1000 : null,
      };
      samples.push(s);
      last = m;
      lastAt = now;
      progress.update(s.t, `${s.deliveredPerSec} msg/s, p99 ${s.p99Ms ?? '-'} ms`);
    }, 1000);
    const engineBefore = redis ? await engineCounters(nodes) : null;
    const bufferClosesBefore = redis ? outputBufferCloses(redis) : 0;
    const cpu = new CpuWindow([...procs, ...clientPids.map((pid) => ({ name: 'clients', pid }))]);
    for (const p of pubs) p.go();
    const warmupTimer = setTimeout(() => fleets.forEach((f) => f.restartLatency()), warmup * 1000);
    let finals: PubStats[];
    try {
      finals = await Promise.all(pubs.map((p) => p.done));
    } finally {
      clearTimeout(warmupTimer);
    }
    for (const p of pubs) live.pubs.delete(p);
    const publishEndedAt = performance.now();
    const published = finals.map((f) => f.published);
    const owed = [0, 1].map((i) => published.reduce((n, p) => n + expectedPerSession(p, sessions, split[i], 1, first[i]).reduce((x, y) => x + y, 0), 0));
    await Promise.all(fleets.map((f, i) => settleWhileProgressing(f, owed[i])));
    const drainSeconds = round1((performance.now() - publishEndedAt) / 1000);
    clearInterval(timer);
    const window = cpu.end();
    const deliveredPerSec = Math.round((messages() - startMessages) / window.seconds);
    const rss = procs.map(rssMB);
    progress.stop();
    const checks: Check[] = [];
    const fleetName = (i: number) => `fleet ${i + 1} (sessions ${first[i]}-${first[i] + split[i] - 1}) on ${nodes[i].name}`;
    for (let i = 0; i < 2; i++) checks.push(...(await countChecks(fleets[i], published, sessions, split[i], 1, `${name}, ${fleetName(i)}`, first[i])));
    const errors = finals.reduce((n, f) => n + f.errors, 0);
    const firstError = finals.find((f) => f.firstError)?.firstError;
    checks.push({ name: `${name}: publishers had no message refused`, ok: errors === 0, detail: `${errors} errors${firstError ? `, first: ${firstError}` : ''}` });
    for (const f of fleets) await f.stop();
    const latency = summarize(merged(fleets.map((f) => f.latency)));
    const latencyAll = summarize(merged(fleets.map((f) => f.latencyAll)));
    const perNode = fleets.map((f) => summarize(f.latency));
    const stats = fleets.map((f) => f.stats());
    const pct = (n: string) => window.pct.get(n) ?? null;
    const notes = [
      `${name}: latency over the ${latency.count} messages after a ${warmup} s warm-up; ${fleetName(0)}: p50 ${perNode[0].p50Ms} / p99 ${perNode[0].p99Ms} ms; ${fleetName(1)}: p50 ${perNode[1].p50Ms} / p99 ${perNode[1].p99Ms} ms; with the warm-up: p99 ${latencyAll.p99Ms} ms, max ${latencyAll.maxMs} ms`,
      `${name}: CPU over the ${round1(window.seconds)} s window: ${[...window.pct].map(([k, v]) => `${k} ${v}%`).join(', ')} of one core; the machine ${window.machinePct ?? '–'}% busy (2 cores shared by all, other work included)`,
    ];
    if (finals.some((f) => f.deferred > 0)) notes.push(`${name}: a publisher fell behind its schedule (its node did not read fast enough: send buffer full)`);
    if (drainSeconds > 2) notes.push(`${name}: fell behind: the last deliveries came ${drainSeconds} s after the last publish`);
    let engine: Record<string, Figure> = {};
    if (redis && engineBefore) {
      // Metrics are a snapshot of up to a second ago.
      await sleep(1200);
      const after = await engineCounters(nodes);
      const d = (k: keyof EngineCounters, i: number) => (after[i][k] ?? 0) - (engineBefore[i][k] ?? 0);
      const sum = (k: keyof EngineCounters) => (after.some((x) => x[k] === null) ? null : nodes.reduce((n, _, i) => n + d(k, i), 0));
      const closes = Math.max(0, outputBufferCloses(redis) - bufferClosesBefore);
      const unavailable = sum('unavailable');
      if (unavailable !== null)
        checks.push({
          name: `${name}: no publish refused or failed UNAVAILABLE by a node (c10m_publishes_unavailable_total)`,
          ok: unavailable === 0,
          detail: `${unavailable}; a publish without ack gets no error reply for it, so the publishers cannot count these`,
        });
      engine = { publishesUnavailable: unavailable, redisReconnects: sum('reconnects'), recoveredFromStreams: sum('recovered'), lostPastStreams: sum('lost'), redisOutputBufferCloses: closes };
      notes.push(
        `${name}: the engine over the run: ${nodes.map((n, i) => `${n.name} ${d('unavailable', i)} publishes refused or failed UNAVAILABLE, ${d('reconnects', i)} reconnects to Redis, ${d('recovered', i)} messages recovered from the streams, ${d('lost', i)} lost past them`).join('; ')}; Redis closed ${closes} client connections for their output buffer limit (pubsub: 32 MiB, or 8 MiB for 60 s)`,
      );
    }
    const figures: Record<string, Figure> = {
      sessions,
      published: published.reduce((a, b) => a + b, 0),
      delivered: stats[0].messages + stats[1].messages,
      deliveredPerSec,
      p50Ms: latency.p50Ms,
      p99Ms: latency.p99Ms,
      maxMs: latency.maxMs,
      p50MsOnA: perNode[0].p50Ms,
      p99MsOnA: perNode[0].p99Ms,
      p50MsOnB: perNode[1].p50Ms,
      p99MsOnB: perNode[1].p99Ms,
      maxMsWithWarmup: latencyAll.maxMs,
      drainSeconds,
      nodeACpuPct: pct('node A'),
      nodeBCpuPct: pct('node B'),
      redisCpuPct: pct('redis'),
      clientCpuPct: pct('clients'),
      machineBusyPct: window.machinePct,
      nodeARssMB: rss[0],
      nodeBRssMB: procs.length > 1 ? rss[1] : null,
      redisRssMB: procs.length > 2 ? rss[2] : null,
      failed: stats[0].failed + stats[1].failed,
      closed: stats[0].closed + stats[1].closed,
      ...engine,
    };
    return { row: { name, figures }, latency, samples, checks, notes };
  } finally {
    for (const f of fleets) {
      f.kill();
      live.fleets.delete(f);
    }
  }
}

// ---- saturation: acked publishes/s through one Redis ----

function report(parts: Parts, o: RunOptions): Part {
  const checks: Check[] = [...parts.checks];
  const notes: string[] = [...parts.notes];
  const tables: Table[] = [];
  const charts: ChartPanel[] = [];
  const sizeBytes = o.size ?? DEFAULTS.size;
  notes.push(
    'one machine of 2 cores runs everything: the nodes, redis-server, benchsub and benchpub (and whatever else runs on it: see the load average); the figures are what is left of 2 cores, not what a node or Redis does on a core of its own',
  );

  // compare
  const [mem, red] = [parts.compare.find((c) => c.row.name === 'memory-1node'), parts.compare.find((c) => c.row.name === 'redis-2nodes')];
  for (const c of parts.compare) {
    checks.push(...c.checks);
    notes.push(...c.notes);
  }
  if (mem && red) {
    const m = mem.row.figures;
    const r = red.row.figures;
    const num = (v: Figure | undefined) => (typeof v === 'number' ? v : NaN);
    const p50Diff = round3(num(r.p50Ms) - num(m.p50Ms));
    r.p50RatioToMemory = round3(num(r.p50Ms) / num(m.p50Ms));
    r.p99RatioToMemory = round3(num(r.p99Ms) / num(m.p99Ms));
    r.p50DiffMs = p50Diff;
    r.p99DiffMs = round3(num(r.p99Ms) - num(m.p99Ms));
    tables.push({
      title: 'redis-2nodes against memory-1node (b / a; differences b − a)',
      rowLabel: 'figure',
      columns: [
        { key: 'memory', label: 'memory-1node', better: 'none' },
        { key: 'redis', label: 'redis-2nodes', better: 'none' },
        { key: 'ratio', label: 'b / a', better: 'none' },
        { key: 'diff', label: 'b − a', better: 'none' },
      ],
      rows: (['p50Ms', 'p99Ms', 'maxMs', 'deliveredPerSec'] as const).map((k) => ({
        name: k,
        figures: { memory: m[k], redis: r[k], ratio: round3(num(r[k]) / num(m[k])), diff: round3(num(r[k]) - num(m[k])) },
      })),
    });
    notes.push(`target (issue 15): the Redis engine adds at most 1 ms to p50 at the reference load: ${p50Diff <= 1 ? 'met' : 'NOT met'} (p50 ${m.p50Ms} → ${r.p50Ms} ms, +${p50Diff} ms)`);
  }
  if (parts.compare.length > 0) {
    charts.push(
      {
        title: 'Latency per second (ms), compare',
        xLabel: 'seconds',
        yLabel: 'ms',
        log: true,
        series: parts.compare.flatMap((c) =>
          (['p50Ms', 'p99Ms'] as const).map((k) => ({
            name: `${c.row.name} ${k.replace('Ms', '')}`,
            points: c.samples.filter((s) => s[k] !== null).map((s) => [s.t, s[k] as number] as [number, number]),
          })),
        ),
      },
      {
        title: 'Delivered messages per second, compare',
        xLabel: 'seconds',
        yLabel: 'messages/s',
        series: parts.compare.map((c) => ({ name: c.row.name, points: c.samples.map((s) => [s.t, s.deliveredPerSec] as [number, number]) })),
      },
    );
  }

  // saturation
  if (parts.saturation.length > 0) {
    const rows: TargetFigures[] = [];
    for (const steps of parts.saturation) {
      for (const s of steps) {
        const nodeCpu = [...s.cpu].filter(([k]) => k.startsWith('node')).map(([, v]) => v);
        rows.push({
          name: `${s.nodes} node${s.nodes > 1 ? 's' : ''} @ ${s.rate.toLocaleString('en-US')}/s`,
          figures: {
            ackedPerSec: s.ackedPerSec,
            acked: s.acked,
            ackP50Ms: s.ackP50Ms,
            ackP99Ms: s.ackP99Ms,
            redisCpuPct: s.cpu.get('redis-server') ?? null,
            nodeCpuPct: nodeCpu.join(' / '),
            benchpubCpuPct: s.cpu.get('benchpub') ?? null,
            machineBusyPct: s.machinePct,
            keptUp: s.keptUp,
            limitedBy: s.limitedBy,
          },
        });
        if (s.errors > 0) notes.push(`saturation, ${s.nodes} node(s) at ${s.rate}/s: ${s.errors} publishes refused (first: ${s.firstError})`);
      }
    }
    const ra = parts.redisAlone;
    if (ra) {
      rows.push({
        name: 'redis alone (redis-benchmark)',
        figures: {
          ackedPerSec: ra.perSec,
          acked: ra.requests,
          ackP50Ms: ra.p50Ms,
          ackP99Ms: ra.p99Ms,
          redisCpuPct: ra.cpu.get('redis-server') ?? null,
          nodeCpuPct: '–',
          benchpubCpuPct: ra.cpu.get('redis-benchmark') ?? null,
          machineBusyPct: ra.machinePct,
          keptUp: '–',
          limitedBy: ra.limitedBy,
        },
      });
      checks.push({
        name: 'redis alone: every publish script ran (the topic seq counts them)',
        ok: ra.sequenced >= ra.requests,
        detail: `seq ${ra.sequenced} after ${ra.requests} requests (redis-benchmark may send a pipeline's worth more)`,
      });
      notes.push(
        `redis alone: c10m's publish script (workgroups/redis-store.ts) on one topic, no subscriber, ${ra.requests} times by redis-benchmark (4 connections, 32 commands pipelined: the client's CPU is in the load generator column; its latency is per pipelined command, not an ack): ${ra.perSec} scripts/s, what one Redis carries here without a c10m node in front of it (${ra.command})`,
      );
    }
    tables.push({
      title: `Redis saturation: acked publishes/s (${sizeBytes}-byte payloads, ${o.topics ?? DEFAULTS.saturationTopics} topics, no subscribers; ${o.stepSeconds ?? DEFAULTS.stepSeconds} s a step; CPU in % of one core; ack latency of the slower publisher)`,
      rowLabel: 'step',
      columns: [
        { key: 'ackedPerSec', label: 'acked/s', better: 'higher' },
        { key: 'ackP50Ms', label: 'ack p50 ms', better: 'lower' },
        { key: 'ackP99Ms', label: 'ack p99 ms', better: 'lower' },
        { key: 'redisCpuPct', label: 'redis CPU %', better: 'none' },
        { key: 'nodeCpuPct', label: 'node CPU %', better: 'none' },
        { key: 'benchpubCpuPct', label: 'load generator CPU %', better: 'none' },
        { key: 'machineBusyPct', label: 'machine busy %', better: 'none' },
        { key: 'keptUp', label: 'kept up', better: 'none' },
        { key: 'limitedBy', label: 'limited by', better: 'none' },
      ],
      rows,
    });
    const all = parts.saturation.flat();
    const best = all.length ? Math.max(...all.map((s) => s.ackedPerSec)) : 0;
    const aloneNote = ra ? `; Redis alone ran the publish script ${ra.perSec} times/s (${ra.perSec >= 50000 ? 'above' : 'below'} the target) at ${ra.cpu.get('redis-server') ?? '–'}% of a core` : '';
    const top = all.find((s) => s.ackedPerSec === best);
    for (const steps of parts.saturation) {
      const kept = steps.filter((s) => s.keptUp);
      const n = steps[0]?.nodes ?? 0;
      const last = steps[steps.length - 1];
      notes.push(
        `saturation through ${n} node(s): ${kept.length ? `kept up to ${kept[kept.length - 1].rate}/s offered` : 'kept up at no step'}; peak ${Math.max(0, ...steps.map((s) => s.ackedPerSec))} acked/s${last && !last.keptUp ? `; fell behind at ${last.rate}/s, limited by ${last.limitedBy}` : '; never fell behind (raise --rates)'}`,
      );
    }
    const neverBehind = all.every((s) => s.keptUp);
    notes.push(
      `target (issue 15): one Redis carries at least 50,000 publishes/s with acks: ${
        best >= 50000
          ? 'met'
          : neverBehind
            ? `not reached: every step kept up, the highest rate offered was ${Math.max(...all.map((s) => s.rate))}/s (raise --rates)`
            : `NOT met through c10m (${best} acked/s at best, ${Math.round((1 - best / 50000) * 100)}% short${top ? `; at that step: ${top.limitedBy}` : ''})`
      }${aloneNote}`,
    );
    for (const steps of parts.saturation) {
      checks.push({
        name: `saturation, ${steps[0]?.nodes ?? 0} node(s): no publish refused at the steps that kept up, every publish answered`,
        ok: steps.filter((s) => s.keptUp).every((s) => s.errors === 0) && steps.length > 0,
        detail: steps.map((s) => `${s.rate}/s: ${s.acked} of ${s.published} acked, ${s.errors} errors`).join('; '),
      });
    }
    charts.push({
      title: 'Redis saturation: acked publishes/s against offered',
      xLabel: 'offered publishes/s',
      yLabel: 'acked/s',
      series: [
        ...parts.saturation.map((steps) => ({ name: `${steps[0]?.nodes ?? 0} node(s)`, points: steps.map((s) => [s.rate, s.ackedPerSec] as [number, number]) })),
        { name: 'offered', points: all.map((s) => [s.rate, s.rate] as [number, number]) },
      ],
    });
  }

  // interest
  if (parts.interest.length > 0) {
    const cases = parts.interest;
    const zero = cases.find((c) => c.present === 3 && c.subscribed === 0);
    const one3 = cases.find((c) => c.present === 3 && c.subscribed === 1);
    const one1 = cases.find((c) => c.present === 1 && c.subscribed === 1);
    const perNode = zero && one3 ? one3.bytesPerMessage - zero.bytesPerMessage : null;
    tables.push({
      title: `Interest routing: Redis's outbound bytes (INFO total_net_output_bytes) for ${DEFAULTS.interestMessages} messages of ${sizeBytes} bytes published through node A to one topic`,
      rowLabel: 'case',
      columns: [
        { key: 'present', label: 'nodes present', better: 'none' },
        { key: 'nodes', label: 'nodes subscribed', better: 'none' },
        { key: 'outBytes', label: 'Redis out bytes', better: 'none' },
        { key: 'bytesPerMessage', label: 'bytes/message', better: 'none' },
        { key: 'perSubscribedNode', label: 'bytes/message per subscribed node', better: 'none' },
        { key: 'received', label: 'messages received from Redis, per node', better: 'none' },
      ],
      rows: cases.map((c) => ({
        name: `${c.subscribed} of ${c.present}`,
        figures: {
          present: c.present,
          nodes: c.nodes,
          outBytes: c.outBytes,
          bytesPerMessage: c.bytesPerMessage,
          perSubscribedNode: zero && c.subscribed > 0 ? Math.round((c.bytesPerMessage - zero.bytesPerMessage) / c.subscribed) : null,
          received: c.received,
        },
      })),
    });
    for (const c of cases) checks.push(...c.checks);
    if (one3 && one1) {
      const ratio = one3.bytesPerMessage / Math.max(1, one1.bytesPerMessage);
      checks.push({
        name: 'interest: with 1 node subscribed, Redis sends as much with 3 nodes present as with 1 (within 10%)',
        ok: ratio >= 0.9 && ratio <= 1.1,
        detail: `${one3.bytesPerMessage} B/message with 3 present, ${one1.bytesPerMessage} with 1 present (ratio ${round3(ratio)})`,
      });
    }
    if (zero && perNode !== null && perNode > 0) {
      const off = cases
        .filter((c) => c.present === 3 && c.subscribed > 1)
        .map((c) => ({ c, want: zero.bytesPerMessage + c.subscribed * perNode }))
        .map(({ c, want }) => ({ c, want, ratio: c.bytesPerMessage / want }));
      checks.push({
        name: 'interest: each further node subscribed adds one message to what Redis sends (within 10%)',
        ok: off.every((x) => x.ratio >= 0.9 && x.ratio <= 1.1),
        detail: off.map((x) => `${x.c.subscribed} of 3: ${x.c.bytesPerMessage} B/message, ${Math.round(x.want)} expected`).join('; '),
      });
    }
    notes.push(
      `interest: each case subscribes ${DEFAULTS.interestSessionsPerNode} sessions per subscribed node to a topic of its own, reads INFO, publishes ${DEFAULTS.interestMessages} messages through node A (WebSocket, no ack), waits for every delivery and reads INFO again; the INFO reply itself is taken off. "0 of 3" is what Redis sends back to the publishing node (the script's replies)`,
    );
    charts.push({
      title: "Redis's outbound bytes per message by nodes subscribed",
      xLabel: 'nodes subscribed',
      yLabel: 'bytes/message',
      series: [
        { name: '3 nodes present', points: cases.filter((c) => c.present === 3).map((c) => [c.subscribed, c.bytesPerMessage] as [number, number]) },
        { name: '1 node present', points: cases.filter((c) => c.present === 1).map((c) => [c.subscribed, c.bytesPerMessage] as [number, number]) },
      ],
    });
  }

  const columns: Column[] = [
    { key: 'sessions', label: 'sessions', better: 'none' },
    { key: 'deliveredPerSec', label: 'delivered/s', better: 'higher' },
    { key: 'p50Ms', label: 'p50 ms', better: 'lower' },
    { key: 'p99Ms', label: 'p99 ms', better: 'lower' },
    { key: 'maxMs', label: 'max ms', better: 'lower' },
    { key: 'nodeACpuPct', label: 'node A CPU %', better: 'lower' },
    { key: 'nodeBCpuPct', label: 'node B CPU %', better: 'lower' },
    { key: 'redisCpuPct', label: 'redis CPU %', better: 'lower' },
    { key: 'clientCpuPct', label: 'benchsub + benchpub CPU %', better: 'none' },
    { key: 'nodeARssMB', label: 'node A RSS MB', better: 'lower' },
    { key: 'nodeBRssMB', label: 'node B RSS MB', better: 'lower' },
    { key: 'redisRssMB', label: 'redis RSS MB', better: 'lower' },
  ];
  const sessions = o.connections ?? DEFAULTS.connections;
  return {
    params: {
      phases: (o.phases ?? [...PHASES]).join(','),
      sessions,
      ratePerSec: o.rate ?? sessions,
      payloadBytes: sizeBytes,
      durationSeconds: o.durationSeconds ?? DEFAULTS.durationSeconds,
      warmupSeconds: o.warmupSeconds ?? DEFAULTS.warmupSeconds,
      publishedThrough: 'each node, half the rate (one benchpub per node)',
      saturationRates: (o.rates ?? DEFAULTS.rates).join(','),
      stepSeconds: o.stepSeconds ?? DEFAULTS.stepSeconds,
      saturationTopics: o.topics ?? DEFAULTS.saturationTopics,
      workgroups: o.workgroups,
      pubConnections: o.pubConnections ?? 1,
    },
    columns,
    targets: parts.compare.map((c) => c.row),
    ratios: [],
    latency: null,
    tables,
    checks,
    notes,
    charts,
    series: Object.fromEntries(parts.compare.map((c) => [c.row.name, c.samples as unknown as Record<string, Figure>[]])),
  };
}
