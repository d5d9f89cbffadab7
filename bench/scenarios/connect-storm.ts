// As many sessions as possible opened at once: every session connects,
// upgrades and subscribes to its own topic; the figure is sessions/s from the
// first socket() to the last subscribe reply. --max-pending bounds the
// handshakes in flight per benchsub process (the uSockets listen backlog is
// 512, so far more only turns into SYN retransmissions).
import { connectFleet, fleetFigures, type Progress, type RunOptions } from '../harness';
import { ms, summarize } from '../histogram';
import type { ScenarioResult } from '../report';
import type { Target } from '../targets';

export const DEFAULTS = { connections: 19000, maxPending: 512 };

export async function connectStorm(target: Target, o: RunOptions, progress: Progress): Promise<Omit<ScenarioResult, 'env' | 'scenario'>> {
  const sessions = o.connections ?? DEFAULTS.connections;
  const maxPending = o.maxPending ?? DEFAULTS.maxPending;
  const cpuBefore = target.pid ? target.cpuSeconds() : 0;
  const { fleet, allReady } = await connectFleet(target, { connections: sessions, processes: o.processes, topicsPerSession: 1, topicCount: sessions, maxPending }, o, progress, 'storm');
  try {
    const s = fleet.stats();
    const seconds = s.allReadySeconds > 0 ? s.allReadySeconds : null;
    const connectSeconds = s.allConnectedSeconds > 0 ? s.allConnectedSeconds : null;
    const serverCpu = target.pid ? target.cpuSeconds() - cpuBefore : null;
    const rss = target.pid ? Math.round(target.rssBytes() / 2 ** 20) : null;
    await fleet.stop();
    const connect = summarize(fleet.connect);
    const ready = summarize(fleet.ready);
    const after = fleet.stats();
    return {
      params: { sessions, processes: o.processes, maxPendingPerProcess: maxPending, workgroups: o.workgroups },
      columns: [
        { key: 'sessions', label: 'sessions', better: 'none' },
        { key: 'ready', label: 'subscribed', better: 'none' },
        { key: 'seconds', label: 'seconds', better: 'lower' },
        { key: 'sessionsPerSec', label: 'sessions/s', better: 'higher' },
        { key: 'upgradesPerSec', label: 'upgrades/s', better: 'higher' },
        { key: 'connectP50Ms', label: 'handshake p50 ms', better: 'lower' },
        { key: 'connectP99Ms', label: 'handshake p99 ms', better: 'lower' },
        { key: 'readyP99Ms', label: 'subscribed p99 ms', better: 'lower' },
        { key: 'serverCpuSeconds', label: 'server CPU s', better: 'lower' },
        { key: 'serverCpuUsPerSession', label: 'server CPU us per session', better: 'lower' },
      ],
      targets: [
        {
          name: target.name,
          figures: {
            sessions,
            ready: s.ready,
            seconds,
            sessionsPerSec: seconds ? Math.round(s.ready / seconds) : null,
            upgradesPerSec: connectSeconds ? Math.round(s.connected / connectSeconds) : null,
            connectP50Ms: connect.p50Ms,
            connectP99Ms: connect.p99Ms,
            readyP99Ms: ready.p99Ms,
            serverCpuSeconds: serverCpu === null ? null : Math.round(serverCpu * 100) / 100,
            serverCpuUsPerSession: serverCpu === null || s.ready === 0 ? null : Math.round((serverCpu * 1e6) / s.ready),
            serverRssMB: rss,
            ...fleetFigures(after),
          },
        },
      ],
      ratios: [],
      latency: null,
      checks: [
        {
          name: `${target.name}: every session connected and subscribed`,
          ok: allReady,
          detail: `${s.ready} of ${sessions} ready, ${s.failed} failed${s.firstError ? `, first error: ${s.firstError}` : ''}`,
        },
      ],
      notes: [],
      charts: [
        {
          title: 'Time to subscribed, per session (percentiles, ms)',
          xLabel: 'percentile',
          yLabel: 'ms',
          log: true,
          series: [{ name: 'subscribed', points: [50, 75, 90, 95, 99, 99.9, 100].map((p) => [p, ms(fleet.ready.getValueAtPercentile(p))] as [number, number]) }],
        },
      ],
      series: {},
    };
  } finally {
    fleet.kill();
  }
}
