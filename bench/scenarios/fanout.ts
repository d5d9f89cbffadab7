// Many sessions on few topics, the publish rate doubled every step until
// delivery falls behind: the deliveries owed are not arriving (the backlog of deliveries owed passes one second of
// traffic), a session is cut as a slow consumer, or the step's p99 passes
// one second. The figures are the best delivered messages/s of a
// step that kept up, and the peak delivered/s of any step.
import { connectFleet, cpuOf, countChecks, expectedDeliveries, fleetFigures, pubConfig, Sampler, settle, startPublisher, summarize, type Progress, type RunOptions, type Sample } from '../harness';
import type { Check, ScenarioResult } from '../report';
import type { Target } from '../targets';

export const DEFAULTS = { connections: 19000, topics: 10, size: 64, firstRate: 10, steps: 12, stepSeconds: 5 };

const BEHIND_P99_MS = 1000;

interface Step {
  rate: number;
  owedPerSec: number;
  deliveredPerSec: number;
  p99Ms: number | null;
  keptUp: boolean;
  /** Server CPU over the step, % of one core (all its threads). */
  serverCpuPct: number | null;
  /** benchsub + benchpub CPU over the step, % of one core (the machine has os.cpus().length cores for everything). */
  clientCpuPct: number;
}

/** Sessions of each workgroup (c10m with an admin port), e.g. "9512/9488"; null for a peer. */
export async function sessionsPerWorkgroup(target: Target): Promise<string | null> {
  const j = await target.jmx();
  const wgs = j?.Workgroups as { ConnectedSessions: number }[] | undefined;
  return wgs ? wgs.map((w) => w.ConnectedSessions).join('/') : null;
}

export async function fanout(target: Target, o: RunOptions, progress: Progress): Promise<Omit<ScenarioResult, 'env' | 'scenario'>> {
  const sessions = o.connections ?? DEFAULTS.connections;
  const topicCount = Math.min(o.topics ?? DEFAULTS.topics, sessions);
  const size = o.size ?? DEFAULTS.size;
  const stepSeconds = o.stepSeconds ?? DEFAULTS.stepSeconds;
  const stepCount = o.steps ?? DEFAULTS.steps;
  const firstRate = o.rate ?? DEFAULTS.firstRate;
  const perTopic = sessions / topicCount;
  const factor = o.rampFactor ?? 2;
  const schedule = Array.from({ length: stepCount }, (_, k) => ({ atSeconds: k * stepSeconds, rate: Math.round(firstRate * factor ** k) }));
  const { fleet, allReady } = await connectFleet(target, { connections: sessions, processes: o.processes, topicsPerSession: 1, topicCount }, o, progress, 'connect');
  try {
    if (!allReady) throw new Error(`only ${fleet.stats().ready} of ${sessions} sessions got ready (${fleet.stats().firstError ?? 'no error reported'})`);
    // How the kernel spread the sessions over the workgroups (--benchmark-mode: by 4-tuple).
    const spread = await sessionsPerWorkgroup(target);
    const pub = await startPublisher({ ...pubConfig(target, { size, topicCount, schedule, durationSeconds: stepCount * stepSeconds, connections: o.pubConnections }), tickMs: 100 });
    const steps: Step[] = [];
    let stepSamples: Sample[] = [];
    let behind = false;
    let stepStartMessages = fleet.stats().messages;
    let stepClientCpu = cpuOf([...fleet.pids(), pub.pid]);
    let stepStartedAt = performance.now();
    const sampler = new Sampler(
      fleet,
      target,
      () => pub.stats,
      (s) => {
        progress.update(s.t, `rate ${pub.stats.rate}/s, ${s.deliveredPerSec} delivered/s, p99 ${s.p99Ms ?? '-'} ms`);
        stepSamples.push(s);
        if (behind || stepSamples.length < stepSeconds) return;
        const rate = schedule[steps.length]?.rate ?? 0;
        const owedPerSec = rate * perTopic;
        // Behind: the deliveries owed for what was published so far (the
        // publisher reports every 100 ms) lead the deliveries received by more
        // than one second of traffic at this step's rate.
        const backlog = expectedDeliveries(s.published, topicCount, sessions, 1) - s.messages;
        const p99 = Math.max(...stepSamples.slice(1).map((x) => x.p99Ms ?? 0));
        const keptUp = backlog <= owedPerSec && p99 <= BEHIND_P99_MS && fleet.stats().closed === 0;
        const cpu = stepSamples.map((x) => x.serverCpuPct).filter((x): x is number => x !== null);
        const clientCpu = cpuOf([...fleet.pids(), pub.pid]);
        const clientCpuPct = Math.round(((clientCpu - stepClientCpu) / ((performance.now() - stepStartedAt) / 1000)) * 100);
        stepClientCpu = clientCpu;
        stepStartedAt = performance.now();
        steps.push({
          rate,
          owedPerSec: Math.round(owedPerSec),
          deliveredPerSec: Math.round((s.messages - stepStartMessages) / stepSamples.length),
          p99Ms: p99,
          keptUp,
          serverCpuPct: cpu.length ? Math.round(cpu.reduce((a, b) => a + b, 0) / cpu.length) : null,
          clientCpuPct,
        });
        stepStartMessages = s.messages;
        stepSamples = [];
        if (!keptUp || steps.length >= stepCount) {
          behind = !keptUp;
          void pub.stop();
        }
      },
    );
    progress.phase(target.name, 'ramp', stepCount * stepSeconds);
    sampler.start();
    pub.go();
    const final = await pub.done;
    const want = expectedDeliveries(final.published, topicCount, sessions, 1);
    const settled = await settle(fleet, want, 15000);
    sampler.stop();
    progress.stop();
    const closed = fleet.stats().closed;
    const checks: Check[] = [
      { name: `${target.name}: publisher had no message refused`, ok: final.errors === 0, detail: `${final.errors} errors${final.firstError ? `, first: ${final.firstError}` : ''}` },
    ];
    const notes: string[] = [];
    if (closed === 0 && settled) checks.push(...(await countChecks(fleet, final.published, topicCount, sessions, 1, target.name)));
    else notes.push(`${target.name}: ${closed} sessions were cut as slow consumers once it fell behind; ${fleet.stats().messages} of ${want} deliveries arrived (not an exact-count run)`);
    await fleet.stop();
    // Memory once the traffic has gone through (rings and cache arenas fill up with use).
    const mem = target.pid ? target.memory() : null;
    const kept = steps.filter((s) => s.keptUp);
    const best = kept.length ? kept.reduce((a, b) => (b.deliveredPerSec > a.deliveredPerSec ? b : a)) : null;
    const peak = steps.length ? Math.max(...steps.map((s) => s.deliveredPerSec)) : 0;
    const latency = summarize(fleet.latency);
    notes.push(
      `${target.name} steps (published msg/s → delivered/s, p99 ms, server/client CPU %): ${steps.map((s) => `${s.rate}→${s.deliveredPerSec}${s.keptUp ? '' : ' (behind)'} p99 ${s.p99Ms} cpu ${s.serverCpuPct ?? '–'}/${s.clientCpuPct}`).join('; ')}`,
    );
    if (spread) notes.push(`${target.name}: sessions per workgroup ${spread}`);
    return {
      params: {
        sessions,
        topics: topicCount,
        sessionsPerTopic: Math.round(perTopic),
        payloadBytes: size,
        firstRate,
        rampFactor: factor,
        stepSeconds,
        steps: stepCount,
        processes: o.processes,
        pubConnections: o.pubConnections ?? 1,
        workgroups: o.workgroups,
      },
      columns: [
        { key: 'sustainedRate', label: 'publish msg/s kept up', better: 'higher' },
        { key: 'sustainedDeliveredPerSec', label: 'delivered/s kept up', better: 'higher' },
        { key: 'peakDeliveredPerSec', label: 'peak delivered/s', better: 'higher' },
        { key: 'p99AtSustainedMs', label: 'p99 ms at that step', better: 'lower' },
        { key: 'serverCpuPctAtSustained', label: 'server CPU % at that step', better: 'none' },
        { key: 'cpuUsPerDelivery', label: 'server CPU µs per delivery at that step', better: 'lower' },
        { key: 'cpuUsPerPublish', label: 'server CPU µs per publish at that step', better: 'lower' },
        { key: 'fellBehind', label: 'fell behind', better: 'none' },
      ],
      targets: [
        {
          name: target.name,
          figures: {
            sustainedRate: best?.rate ?? 0,
            sustainedDeliveredPerSec: best?.deliveredPerSec ?? 0,
            peakDeliveredPerSec: peak,
            p99AtSustainedMs: best?.p99Ms ?? null,
            serverCpuPctAtSustained: best?.serverCpuPct ?? null,
            clientCpuPctAtSustained: best?.clientCpuPct ?? null,
            cpuUsPerDelivery: best?.serverCpuPct && best.deliveredPerSec ? Math.round((best.serverCpuPct / 100 / best.deliveredPerSec) * 1e6 * 100) / 100 : null,
            cpuUsPerPublish: best?.serverCpuPct && best.rate ? Math.round((best.serverCpuPct / 100 / best.rate) * 1e6 * 100) / 100 : null,
            fellBehind: behind,
            sessionsPerWorkgroup: spread,
            serverRssMBAfter: mem ? Math.round((mem.rssBytes / 2 ** 20) * 10) / 10 : null,
            serverThpMBAfter: mem ? Math.round((mem.anonHugeBytes / 2 ** 20) * 10) / 10 : null,
            published: final.published,
            delivered: fleet.stats().messages,
            overallP99Ms: latency.p99Ms,
            ...fleetFigures(fleet.stats()),
          },
        },
      ],
      ratios: [],
      // Not one latency table over the whole ramp: its last step is an overload on purpose.
      latency: null,
      checks,
      notes,
      charts: [
        {
          title: 'Latency p99 per second (ms)',
          xLabel: 'seconds',
          yLabel: 'ms',
          log: true,
          series: [{ name: 'p99', points: sampler.samples.filter((s) => s.p99Ms !== null).map((s) => [s.t, s.p99Ms as number] as [number, number]) }],
        },
        {
          title: 'Delivered messages per second',
          xLabel: 'seconds',
          yLabel: 'messages/s',
          series: [{ name: 'delivered/s', points: sampler.samples.map((s) => [s.t, s.deliveredPerSec] as [number, number]) }],
        },
      ],
      series: { [target.name]: sampler.samples as unknown as Record<string, number | null>[] },
    };
  } finally {
    fleet.kill();
  }
}
