// fanout --burst N: the same sessions and topics as the ramp, but N
// publishes sent at once, as fast as --pub-connections pipelined WebSocket
// connections (default 4) take them, round robin over the topics. Every
// message of a burst is stamped with the burst's start, so each delivery's
// latency is the time from the start to that delivery and the largest is the
// burst's completion time: delivered messages/s of the burst = deliveries /
// completion time. Server CPU from the start to the last delivery, per
// delivery and per publish. --bursts R bursts in a row (median of R; default 3).
import { connectFleet, countChecks, cpuOf, expectedDeliveries, fleetFigures, pubConfig, settle, startPublisher, type Progress, type RunOptions } from '../harness';
import type { Check, ScenarioResult } from '../report';
import type { Target } from '../targets';
import { DEFAULTS, sessionsPerWorkgroup } from './fanout';

/** Seconds a burst may take to be delivered at most. */
const BURST_TIMEOUT_MS = 60000;

interface Burst {
  published: number;
  delivered: number;
  seconds: number;
  deliveredPerSec: number;
  p50Ms: number | null;
  serverCpuSeconds: number;
  clientCpuSeconds: number;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

export async function fanoutBurst(target: Target, o: RunOptions, progress: Progress): Promise<Omit<ScenarioResult, 'env' | 'scenario'>> {
  const sessions = o.connections ?? DEFAULTS.connections;
  const topicCount = Math.min(o.topics ?? DEFAULTS.topics, sessions);
  const size = o.size ?? DEFAULTS.size;
  const count = o.burst ?? 20000;
  const rounds = o.bursts ?? 3;
  const pubConnections = o.pubConnections ?? 4;
  const { fleet, allReady } = await connectFleet(target, { connections: sessions, processes: o.processes, topicsPerSession: 1, topicCount }, o, progress, 'connect');
  try {
    if (!allReady) throw new Error(`only ${fleet.stats().ready} of ${sessions} sessions got ready (${fleet.stats().firstError ?? 'no error reported'})`);
    const spread = await sessionsPerWorkgroup(target);
    const bursts: Burst[] = [];
    const checks: Check[] = [];
    const notes: string[] = [];
    let errors = 0;
    progress.phase(target.name, 'bursts', rounds);
    for (let r = 0; r < rounds; r++) {
      const pub = await startPublisher({
        ...pubConfig(target, { size, topicCount, schedule: [{ atSeconds: 0, rate: 1 }], durationSeconds: BURST_TIMEOUT_MS / 1000, maxMessages: count, connections: pubConnections }),
        burst: true,
        tickMs: 100,
      });
      const before = fleet.stats().messages;
      fleet.restartLatency();
      const cpu0 = target.pid ? target.cpuSeconds() : 0;
      const client0 = cpuOf(fleet.pids());
      pub.go();
      const final = await pub.done;
      errors += final.errors;
      const owed = expectedDeliveries(final.published, topicCount, sessions, 1);
      const settled = await settle(fleet, before + owed, BURST_TIMEOUT_MS);
      const cpu1 = target.pid ? target.cpuSeconds() : 0;
      const client1 = cpuOf(fleet.pids());
      pub.kill();
      if (!settled || fleet.stats().closed > 0) {
        notes.push(`${target.name}: burst ${r + 1}: ${fleet.stats().messages - before} of ${owed} deliveries arrived, ${fleet.stats().closed} sessions closed`);
        checks.push({ name: `${target.name}: every burst was delivered`, ok: false, detail: `burst ${r + 1} was not` });
        break;
      }
      // The latency histogram has every delivery of the burst (it comes with the counts that settled it).
      const seconds = fleet.latency.maxValue / 1e6;
      const delivered = fleet.stats().messages - before;
      bursts.push({
        published: final.published,
        delivered,
        seconds,
        deliveredPerSec: Math.round(delivered / seconds),
        p50Ms: fleet.latency.totalCount ? fleet.latency.getValueAtPercentile(50) / 1000 : null,
        serverCpuSeconds: cpu1 - cpu0,
        clientCpuSeconds: client1 - client0,
      });
      progress.update(r + 1, `${Math.round(delivered / seconds)} delivered/s`);
      // Let the server go idle between bursts.
      await new Promise((res) => setTimeout(res, 500));
    }
    progress.stop();
    checks.unshift({ name: `${target.name}: publisher had no message refused`, ok: errors === 0, detail: `${errors} errors` });
    if (bursts.length === rounds)
      checks.push(
        ...(await countChecks(
          fleet,
          bursts.map((b) => b.published),
          topicCount,
          sessions,
          1,
          target.name,
        )),
      );
    await fleet.stop();
    const us = (sec: number, n: number) => (n > 0 ? Math.round((sec / n) * 1e6 * 100) / 100 : null);
    const mid = bursts.length ? bursts.map((b) => b.deliveredPerSec).sort((a, b) => a - b)[Math.floor(bursts.length / 2)] : 0;
    const m = bursts.find((b) => b.deliveredPerSec === mid) ?? null;
    notes.push(
      `${target.name} bursts (delivered/s, seconds, server CPU µs per delivery / per publish, benchsub CPU s): ${bursts
        .map((b) => `${b.deliveredPerSec} ${b.seconds.toFixed(3)} s ${us(b.serverCpuSeconds, b.delivered)}/${us(b.serverCpuSeconds, b.published)} ${b.clientCpuSeconds.toFixed(2)}`)
        .join('; ')}`,
    );
    if (spread) notes.push(`${target.name}: sessions per workgroup ${spread}`);
    return {
      params: {
        mode: 'burst',
        sessions,
        topics: topicCount,
        sessionsPerTopic: Math.round(sessions / topicCount),
        payloadBytes: size,
        burst: count,
        bursts: rounds,
        pubConnections,
        workgroups: o.workgroups,
      },
      columns: [
        { key: 'burstDeliveredPerSec', label: 'burst delivered/s (median)', better: 'higher' },
        { key: 'burstSeconds', label: 'burst seconds', better: 'lower' },
        { key: 'cpuUsPerDelivery', label: 'server CPU µs per delivery', better: 'lower' },
        { key: 'cpuUsPerPublish', label: 'server CPU µs per publish', better: 'lower' },
        { key: 'p50Ms', label: 'p50 ms from start', better: 'lower' },
      ],
      targets: [
        {
          name: target.name,
          figures: {
            burstDeliveredPerSec: mid,
            burstSeconds: m ? Math.round(m.seconds * 1000) / 1000 : null,
            cpuUsPerDelivery: bursts.length ? median(bursts.map((b) => us(b.serverCpuSeconds, b.delivered) ?? 0)) : null,
            cpuUsPerPublish: bursts.length ? median(bursts.map((b) => us(b.serverCpuSeconds, b.published) ?? 0)) : null,
            p50Ms: m?.p50Ms ?? null,
            sessionsPerWorkgroup: spread,
            ...fleetFigures(fleet.stats()),
          },
        },
      ],
      ratios: [],
      latency: null,
      checks,
      notes,
      charts: [
        {
          title: 'Delivered messages per second of each burst',
          xLabel: 'burst',
          yLabel: 'messages/s',
          series: [{ name: 'delivered/s', points: bursts.map((b, i) => [i + 1, b.deliveredPerSec] as [number, number]) }],
        },
      ],
      series: { [target.name]: bursts as unknown as Record<string, number | null>[] },
    };
  } finally {
    fleet.kill();
  }
}
