// Issue 16's reconnect storm: a node loses every session at once (it is
// killed and started again on its port by the bench) and 19,000 clients come
// back together, as the SDK does: after a 503 RETRY_LATER they wait the
// body's retryAfterMs and come back with &admit=<ticket>, after a 429 they
// wait retryAfterMs, otherwise full-jitter backoff (250 ms doubling to 30 s).
// The reconnecting clients are benchsub's native engine (loadgen's
// reconnect), so that the storm is 19,000 real sockets and not a JS event
// loop's pace.
//
// Phases, per target (c10m with --admission-rate R, and without: the ratio is
// the point):
//   1. connect every session (each on its own topic; the first storm, also
//      through admission);
//   2. calm: publish `rate` msg/s round robin over topics 0 … topics−1 (one
//      subscriber each) for --duration s; p50/p99 after a 2 s warm-up, every
//      delivery counted;
//   3. restart (--restart-signal, SIGKILL by default) and storm: a new
//      publisher connects as soon as the node listens (it honors the hints
//      too) and publishes at the same rate; latency of the sessions already
//      back until every session is back; admissions per wall-clock second
//      from the clients' upgrade counts; 503s and 429s; attempts refused
//      again although they presented a ticket;
//   4. after: 3 s more at the same rate, every session back.
import { connectFleet, fleetFigures, newHistogram, pubConfig, settle, startPublisher, summarize, type Histogram, type Progress, type RunOptions } from '../harness';
import type { Publisher } from '../pub';
import type { Check, ChartSeries, ScenarioResult } from '../report';
import type { Target } from '../targets';

export const DEFAULTS = {
  connections: 19000,
  /** c10m --admission-rate once per value: R, then off (0). */
  admissionRates: [2000, 0],
  calmSeconds: 20,
  warmupSeconds: 2,
  afterSeconds: 3,
  size: 512,
  maxPending: 512,
  /** The published subset: one topic in this many (topics 0 … n/10 − 1, one message per topic per second). */
  publishedShare: 10,
};

interface StormSample {
  /** Seconds since the node was killed (negative: calm). */
  t: number;
  atMs: number;
  live: number;
  deliveredPerSec: number;
  p50Ms: number | null;
  p99Ms: number | null;
  maxMs: number | null;
  serverCpuPct: number | null;
  /** Upgrades refused (503, 429) in this second. */
  refused: number;
  /** The node's longest event-loop delay over its workgroups, as /jmx read it this second (its last full second). */
  serverLoopDelayMaxMs: number | null;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const round = (v: number, digits = 2) => Math.round(v * 10 ** digits) / 10 ** digits;

export async function reconnectStorm(first: Target, o: RunOptions, progress: Progress): Promise<Omit<ScenarioResult, 'env' | 'scenario'>> {
  const sessions = o.connections ?? DEFAULTS.connections;
  const topics = o.topics ?? Math.max(1, Math.round(sessions / DEFAULTS.publishedShare));
  if (topics > sessions) throw new Error(`--topics ${topics}: the published topics are sessions' own topics, at most --connections (${sessions})`);
  const rate = o.rate ?? topics;
  const size = o.size ?? DEFAULTS.size;
  const calmSeconds = o.durationSeconds ?? DEFAULTS.calmSeconds;
  const warmup = Math.min(DEFAULTS.warmupSeconds, calmSeconds / 2);
  const R = o.admissionRate;
  const name = first.name;
  let target = first;
  const cpuOf = (t: Target) => {
    try {
      return t.cpuSeconds();
    } catch {
      return 0;
    }
  };

  const connectStarted = Date.now();
  const {
    fleet,
    allReady,
    seconds: connectSeconds,
  } = await connectFleet(
    target,
    {
      connections: sessions,
      processes: o.processes,
      topicsPerSession: 1,
      topicCount: sessions,
      maxPending: o.maxPending ?? DEFAULTS.maxPending,
      reconnect: true,
      pingIntervalMs: o.pingIntervalMs,
    },
    o,
    progress,
    'connect',
  );
  const publishers: Publisher[] = [];
  const samples: StormSample[] = [];
  /** Each sample's deliveries (same index as samples), to cut the storm into its refusal and admission parts. */
  const sampleHistograms: Histogram[] = [];
  let sampleTimer: NodeJS.Timeout | null = null;
  try {
    if (!allReady) throw new Error(`only ${fleet.stats().live} of ${sessions} sessions got ready (${fleet.stats().firstError ?? 'no error reported'})`);
    const checks: Check[] = [{ name: `${name}: every session connected and subscribed at the start`, ok: true, detail: `${sessions} in ${round(connectSeconds)} s` }];

    // Per-second samples from the calm phase on; t is relative to the kill (set below).
    let killAtMs = 0;
    let lastMessages = fleet.stats().messages;
    let lastAt = performance.now();
    let lastCpu = cpuOf(target);
    let lastRefused = 0;
    let sampledTarget = target;
    fleet.takeInterval();
    sampleTimer = setInterval(() => {
      const now = performance.now();
      const s = fleet.stats();
      const h = fleet.takeInterval();
      const dt = (now - lastAt) / 1000;
      // After a restart the CPU counter starts again with the new process (and a dead one reads 0).
      const cpu = cpuOf(target);
      const cpuPct = sampledTarget !== target ? round((cpu / dt) * 100, 1) : cpu >= lastCpu ? round(((cpu - lastCpu) / dt) * 100, 1) : null;
      sampledTarget = target;
      samples.push({
        t: 0,
        atMs: Date.now(),
        live: s.live,
        deliveredPerSec: Math.round((s.messages - lastMessages) / dt),
        p50Ms: h.totalCount ? h.getValueAtPercentile(50) / 1000 : null,
        p99Ms: h.totalCount ? h.getValueAtPercentile(99) / 1000 : null,
        maxMs: h.totalCount ? h.maxValue / 1000 : null,
        serverCpuPct: cpuPct,
        refused: s.refused503 + s.refused429 - lastRefused,
        serverLoopDelayMaxMs: null,
      });
      const sample = samples[samples.length - 1];
      target
        .jmx()
        .then((j) => {
          const ws = (j?.Workgroups ?? []) as { EventLoopDelayMaxMs?: number | null }[];
          const d = ws.map((w) => w.EventLoopDelayMaxMs).filter((v): v is number => typeof v === 'number');
          if (d.length) sample.serverLoopDelayMaxMs = round(Math.max(...d), 1);
        })
        .catch(() => undefined);
      sampleHistograms.push(h);
      lastRefused = s.refused503 + s.refused429;
      progress.update(s.live, `live, ${s.messages - lastMessages} msg/s, p99 ${h.totalCount ? h.getValueAtPercentile(99) / 1000 : '-'} ms`);
      lastAt = now;
      lastMessages = s.messages;
      lastCpu = cpu;
    }, 1000);

    // 2. Calm.
    progress.phase(name, 'calm', sessions);
    const calmPub = await startPublisher(pubConfig(target, { size, topicCount: topics, schedule: [{ atSeconds: 0, rate }], durationSeconds: calmSeconds, connections: o.pubConnections }));
    publishers.push(calmPub);
    const calmBefore = fleet.stats().messages;
    calmPub.go();
    await sleep(warmup * 1000);
    fleet.restartLatency();
    const calmFinal = await calmPub.done;
    const calmSettled = await settle(fleet, calmBefore + calmFinal.published, 10000);
    // The last histogram ticks (every 250 ms).
    await sleep(400);
    const calm = summarize(fleet.latency);
    const calmSecondP99s = samples
      .map((x) => x.p99Ms)
      .filter((x): x is number => x !== null)
      .sort((a, b) => a - b);
    const calmDelivered = fleet.stats().messages - calmBefore;
    checks.push({
      name: `${name}: calm: deliveries equal the messages published (one subscriber per topic)`,
      ok: calmSettled && calmDelivered === calmFinal.published && calmFinal.errors === 0,
      detail: `${calmDelivered} delivered, ${calmFinal.published} published, ${calmFinal.errors} publish errors`,
    });

    // 3. Restart and storm.
    const before = fleet.stats();
    const closedAtKill = before.closed;
    progress.phase(name, 'storm', sessions);
    killAtMs = Date.now();
    let stormPubStarting: Promise<Publisher> | null = null;
    target = await first.restart(o.restartSignal, () => {
      // The publisher connects while the node starts (refused connects are tried again every 20 ms).
      stormPubStarting = startPublisher({
        ...pubConfig(first, { size, topicCount: topics, schedule: [{ atSeconds: 0, rate }], durationSeconds: o.connectTimeoutSeconds + 60, connections: o.pubConnections }),
        connectRetrySeconds: 30,
      });
      stormPubStarting.catch(() => undefined);
    });
    const upAtMs = Date.now();
    const stormPub = await (stormPubStarting as unknown as Promise<Publisher>);
    publishers.push(stormPub);
    stormPub.go();
    const goAtMs = Date.now();
    fleet.restartLatency();
    const back = await fleet.until((s) => s.closed - closedAtKill >= sessions && s.live >= sessions, o.connectTimeoutSeconds * 1000);
    const backStats = fleet.stats();
    const storm = summarize(fleet.latency);
    const stormCpuSeconds = cpuOf(target);
    const allBackAtMs = back ? backStats.allLiveAtMs : 0;
    checks.push({
      name: `${name}: every session back after the restart`,
      ok: back,
      detail: back ? `all ${sessions} back ${round((allBackAtMs - killAtMs) / 1000)} s after the kill` : `${backStats.live} of ${sessions} back after ${o.connectTimeoutSeconds} s`,
    });

    // 4. After.
    fleet.restartLatency();
    await sleep(DEFAULTS.afterSeconds * 1000);
    await sleep(400);
    const after = summarize(fleet.latency);
    const stormFinal = await stormPub.stop();
    if (sampleTimer) clearInterval(sampleTimer);
    sampleTimer = null;
    for (const x of samples) x.t = round((x.atMs - killAtMs) / 1000, 1);
    const jmx = await target.jmx();
    const seconds = await fleet.secondCounts();
    await fleet.stop();
    const end = fleet.stats();
    checks.push({ name: `${name}: no protocol error`, ok: end.protocolErrors === 0, detail: `${end.protocolErrors} protocol errors${end.firstError ? `, first error: ${end.firstError}` : ''}` });
    checks.push({
      name: `${name}: publishers: no message refused`,
      ok: stormFinal.errors === 0,
      detail: `${stormFinal.errors} errors${stormFinal.firstError ? `, first: ${stormFinal.firstError}` : ''}`,
    });

    // Admissions per wall-clock second (the clients' completed upgrades), in the storm and at the first connect.
    const upSec = Math.floor(upAtMs / 1000);
    const lastSec = Math.floor((allBackAtMs || Date.now()) / 1000);
    const stormSeconds = [...seconds.entries()].filter(([sec]) => sec >= upSec && sec <= lastSec).sort((a, b) => a[0] - b[0]);
    const connectSecondsList = [...seconds.entries()].filter(([sec]) => sec < Math.floor(killAtMs / 1000) && sec >= Math.floor(connectStarted / 1000));
    const maxAdmitted = stormSeconds.reduce((m, [, c]) => Math.max(m, c.upgrades), 0);
    // Ticket holders the node (or the clients) could not take in their second come late, on top of the next one's
    // rate: the mean of two seconds in a row says whether the pace held.
    let maxAdmitted2s = 0;
    for (let k = 1; k < stormSeconds.length; k++)
      if (stormSeconds[k][0] === stormSeconds[k - 1][0] + 1) maxAdmitted2s = Math.max(maxAdmitted2s, (stormSeconds[k][1].upgrades + stormSeconds[k - 1][1].upgrades) / 2);
    const maxAdmittedAtConnect = connectSecondsList.reduce((m, [, c]) => Math.max(m, c.upgrades), 0);
    const full = stormSeconds.filter(([sec]) => sec > upSec && sec < lastSec);
    const meanAdmitted = full.length ? Math.round(full.reduce((a, [, c]) => a + c.upgrades, 0) / full.length) : null;
    const diff = (k: 'refused503' | 'refused429' | 'refusedOther' | 'hinted' | 'ticketsSent' | 'ticketRefusals' | 'connectErrors' | 'retries') => backStats[k] - before[k];
    const stormRatio = calm.p99Ms > 0 ? round(storm.p99Ms / calm.p99Ms) : null;
    // The storm in two parts: while upgrades are refused (the crowd's first attempts), and after the last refusal
    // (only the admitted sessions coming in at the pace given), by per-second samples.
    const stormEnd = (allBackAtMs - killAtMs) / 1000;
    const lastRefusal = samples.reduce((t, x) => (x.refused > 0 && x.t >= 0 ? Math.max(t, x.t) : t), -1);
    const admittedPart = newHistogram();
    samples.forEach((x, k) => {
      if (lastRefusal >= 0 && x.t > lastRefusal && x.t <= stormEnd + 1) admittedPart.add(sampleHistograms[k]);
    });
    const admitted = admittedPart.totalCount > 0 ? summarize(admittedPart) : null;
    // The storm's publisher is a new process (the old one's node died): its first seconds are its own JIT warm-up, as
    // the calm publisher's are (excluded there). The same warm-up cut here: the storm from `warmup` s after it went.
    const warmFrom = (goAtMs - killAtMs) / 1000 + warmup;
    const warmPart = newHistogram();
    samples.forEach((x, k) => {
      if (x.t - 1 >= warmFrom && x.t <= stormEnd + 1) warmPart.add(sampleHistograms[k]);
    });
    const warm = warmPart.totalCount > 0 ? summarize(warmPart) : null;
    const secondP99s = samples.filter((s) => s.t >= 0 && s.t <= (allBackAtMs - killAtMs) / 1000 + 1 && s.p99Ms !== null).map((s) => s.p99Ms as number);
    const figures = {
      sessions,
      admissionRate: R || 'off',
      connectSeconds: round(connectSeconds),
      maxAdmittedPerSecAtConnect: maxAdmittedAtConnect,
      restartSeconds: round((upAtMs - killAtMs) / 1000),
      publisherConnectSeconds: round((goAtMs - upAtMs) / 1000),
      secondsToAllBack: back ? round((allBackAtMs - killAtMs) / 1000) : null,
      secondsToAllBackFromUp: back ? round((allBackAtMs - upAtMs) / 1000) : null,
      maxAdmittedPerSec: maxAdmitted,
      maxAdmittedPerSecOver2s: Math.round(maxAdmitted2s),
      meanAdmittedPerSec: meanAdmitted,
      calmP50Ms: calm.p50Ms,
      calmP99Ms: calm.p99Ms,
      calmMaxMs: calm.maxMs,
      calmMedianSecondP99Ms: calmSecondP99s.length ? calmSecondP99s[Math.floor(calmSecondP99s.length / 2)] : null,
      stormMessages: storm.count,
      stormP50Ms: storm.p50Ms,
      stormP99Ms: storm.p99Ms,
      stormMaxMs: storm.maxMs,
      stormP99VsCalm: stormRatio,
      stormWarmP99Ms: warm?.p99Ms ?? null,
      stormWarmP99VsCalm: warm && calm.p99Ms > 0 ? round(warm.p99Ms / calm.p99Ms) : null,
      stormWarmMessages: warm?.count ?? null,
      secondsRefusing: lastRefusal >= 0 ? round(lastRefusal) : null,
      admittedPartP99Ms: admitted?.p99Ms ?? null,
      admittedPartP99VsCalm: admitted && calm.p99Ms > 0 ? round(admitted.p99Ms / calm.p99Ms) : null,
      worstSecondP99Ms: secondP99s.length ? Math.max(...secondP99s) : null,
      afterP99Ms: after.p99Ms,
      refused503: diff('refused503'),
      refused429: diff('refused429'),
      refusedOther: diff('refusedOther'),
      hinted: diff('hinted'),
      ticketsSent: diff('ticketsSent'),
      ticketRefusals: diff('ticketRefusals'),
      connectErrors: diff('connectErrors'),
      reconnectAttempts: diff('retries'),
      serverCpuSecondsStorm: back ? round(stormCpuSeconds) : null,
      serverCpuPctStorm: back && allBackAtMs > upAtMs ? round((stormCpuSeconds / ((allBackAtMs - upAtMs) / 1000)) * 100, 1) : null,
      serverAdmissionRefused: num(jmx?.AdmissionRefused),
      serverTicketsHonored: num(jmx?.AdmissionTicketsHonored),
      serverTicketsRefused: num(jmx?.AdmissionTicketsRefused),
      serverSessionRateRefused: num(jmx?.SessionRateRefused),
      pingIntervalMs: o.pingIntervalMs,
      windowMsAtKill: before.maxWindowMs,
      pingRepliesWithWindow: before.windowReplies,
      calmPublished: calmFinal.published,
      stormPublished: stormFinal.published,
      ...fleetFigures(end),
    };
    const notes = [
      R
        ? `admission: at most ${maxAdmitted.toLocaleString('en-US')} sessions admitted in one wall-clock second of the storm (mean ${meanAdmitted ?? '–'} over its full seconds, at most ${Math.round(maxAdmitted2s)} over two seconds in a row) vs R = ${R.toLocaleString('en-US')}/s: ${maxAdmitted <= R ? 'bounded by R' : `NOT bounded by R in one second (+${maxAdmitted - R})`}`
        : `admission off: at most ${maxAdmitted.toLocaleString('en-US')} sessions admitted in one wall-clock second of the storm`,
      `p99 of the sessions already back during the storm ${storm.p99Ms} ms vs calm ${calm.p99Ms} ms: × ${stormRatio ?? '–'} (target ≤ 2 ×: ${stormRatio !== null && stormRatio <= 2 ? 'met' : 'NOT met'}); worst one-second p99 ${figures.worstSecondP99Ms ?? '–'} ms; after the storm ${after.p99Ms} ms`,
      ...(warm
        ? [
            `the storm from ${warmup} s after its (new) publisher went, as the calm phase is measured (${warm.count} messages): p99 ${warm.p99Ms} ms, × ${figures.stormWarmP99VsCalm} calm (target ≤ 2 ×: ${figures.stormWarmP99VsCalm !== null && figures.stormWarmP99VsCalm <= 2 ? 'met' : 'NOT met'})`,
          ]
        : []),
      ...(admitted
        ? [
            `the storm's two parts: upgrades refused until ${figures.secondsRefusing} s after the kill; after the last refusal (the admitted sessions only, ${admitted.count} messages) p99 ${admitted.p99Ms} ms, × ${figures.admittedPartP99VsCalm} calm`,
          ]
        : []),
      `attempts refused again although they came back at their hint with a ticket: ${figures.ticketRefusals} of ${figures.ticketsSent} (target 0: ${figures.ticketRefusals === 0 ? 'met' : 'NOT met'}); 503s ${figures.refused503}, 429s ${figures.refused429}, other refusals ${figures.refusedOther}, refused connects while the node was down ${figures.connectErrors}`,
      o.pingIntervalMs > 0
        ? `sessions pinged every ${o.pingIntervalMs} ms (and when ready); the largest reconnectWindowMs given before the kill: ${before.maxWindowMs} ms (${before.windowReplies} ping replies carried one)`
        : 'no pings: the crowd comes back on the backoff alone (no reconnect window)',
      `the node was down ${figures.restartSeconds} s (${o.restartSignal}, then started again on its port); all ${sessions.toLocaleString('en-US')} back ${figures.secondsToAllBack ?? '–'} s after the kill`,
    ].map((n) => `${name}: ${n}`);
    const t0 = upSec;
    const admittedSeries: ChartSeries[] = [
      { name: 'admitted/s', points: stormSeconds.map(([sec, c]) => [sec - t0, c.upgrades] as [number, number]) },
      { name: 'refused/s', points: stormSeconds.map(([sec, c]) => [sec - t0, c.refused] as [number, number]) },
    ];
    return {
      params: {
        sessions,
        processes: o.processes,
        publishedTopics: topics,
        ratePerSec: rate,
        payloadBytes: size,
        calmSeconds,
        restartSignal: o.restartSignal,
        pingIntervalMs: o.pingIntervalMs,
        maxPendingPerProcess: o.maxPending ?? DEFAULTS.maxPending,
        workgroups: o.workgroups,
        auth: target.jwtSecret ? 'jwt' : 'none',
      },
      columns: [
        { key: 'admissionRate', label: 'R (sessions/s)', better: 'none' },
        { key: 'secondsToAllBack', label: 'all back (s)', better: 'lower' },
        { key: 'maxAdmittedPerSec', label: 'max admitted/s', better: 'none' },
        { key: 'calmP99Ms', label: 'calm p99 ms', better: 'lower' },
        { key: 'stormP99Ms', label: 'storm p99 ms', better: 'lower' },
        { key: 'stormP99VsCalm', label: 'storm / calm p99', better: 'lower' },
        { key: 'stormWarmP99Ms', label: 'storm p99 after the publisher warm-up ms', better: 'lower' },
        { key: 'stormWarmP99VsCalm', label: 'that / calm p99', better: 'lower' },
        { key: 'admittedPartP99Ms', label: 'storm p99 after the 503s ms', better: 'lower' },
        { key: 'worstSecondP99Ms', label: 'worst 1 s p99 ms', better: 'lower' },
        { key: 'refused503', label: '503s', better: 'none' },
        { key: 'refused429', label: '429s', better: 'none' },
        { key: 'ticketRefusals', label: 'refused again with a ticket', better: 'lower' },
        { key: 'serverCpuPctStorm', label: 'server CPU % (storm)', better: 'lower' },
      ],
      targets: [{ name, figures }],
      ratios: [],
      latency: null,
      checks,
      notes,
      charts: [
        { title: 'Sessions admitted and refused per second, from the restart (s)', xLabel: 'seconds since the node listened again', yLabel: 'sessions/s', series: admittedSeries },
        {
          title: 'Delivery latency per second, p99 (ms)',
          xLabel: 'seconds since the kill',
          yLabel: 'ms',
          log: true,
          series: [
            { name: 'p99', points: samples.filter((s) => s.p99Ms !== null).map((s) => [s.t, s.p99Ms as number] as [number, number]) },
            { name: 'server loop delay max', points: samples.filter((s) => s.serverLoopDelayMaxMs !== null).map((s) => [s.t, s.serverLoopDelayMaxMs as number] as [number, number]) },
          ],
        },
        { title: 'Sessions ready', xLabel: 'seconds since the kill', yLabel: 'sessions', series: [{ name: 'live', points: samples.map((s) => [s.t, s.live] as [number, number]) }] },
      ],
      series: { [name]: samples as unknown as Record<string, number | null>[] },
    };
  } finally {
    if (sampleTimer) clearInterval(sampleTimer);
    for (const p of publishers) p.kill();
    fleet.kill();
    if (target !== first) await target.stop();
  }
}

function num(v: unknown): number | null {
  return typeof v === 'number' ? v : null;
}
