// Server memory per idle subscribed session: RSS of the server process at
// several session counts (each session on its own topic) minus the RSS of
// the same server with no session, and the kernel's slab memory per
// connection (both ends, host-wide, from /proc/meminfo: noisy when other
// work runs).
import * as fs from 'node:fs';
import { connectFleet, type Progress, type RunOptions } from '../harness';
import type { ScenarioResult } from '../report';
import type { SubscriberFleet } from '../sub';
import type { Target } from '../targets';

export const DEFAULTS = { sizes: [1000, 5000, 10000, 19000], settleSeconds: 3 };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The median of three readings 200 ms apart, in bytes. */
async function rss(target: Target): Promise<number> {
  const r: number[] = [];
  for (let i = 0; i < 3; i++) {
    r.push(target.rssBytes());
    await sleep(200);
  }
  return r.sort((a, b) => a - b)[1];
}

/** Kernel slab memory of the whole host in bytes (sockets, their files and epoll items live there). */
function tcpMemBytes(): number {
  const m = /^Slab:\s+(\d+) kB/m.exec(fs.readFileSync('/proc/meminfo', 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

export async function idleMemory(target: Target, o: RunOptions, progress: Progress): Promise<Omit<ScenarioResult, 'env' | 'scenario'>> {
  if (!target.pid) throw new Error('idle-memory needs the server\'s pid (--server-pid with --url)');
  const sizes = [...(o.sizes ?? (o.connections ? [o.connections] : DEFAULTS.sizes))].sort((a, b) => a - b);
  const settleMs = (o.settleSeconds ?? DEFAULTS.settleSeconds) * 1000;
  await sleep(settleMs);
  const baseRss = await rss(target);
  const baseTcp = tcpMemBytes();
  const fleets: SubscriberFleet[] = [];
  const rows: { sessions: number; rssMB: number; perSessionKB: number; kernelPerConnectionKB: number }[] = [];
  let have = 0;
  try {
    for (const size of sizes) {
      const add = size - have;
      if (add <= 0) continue;
      const { fleet, allReady } = await connectFleet(target, { connections: add, processes: Math.max(1, Math.ceil((add * o.processes) / sizes[sizes.length - 1])), topicsPerSession: 1, topicCount: 100_000_000, firstSession: have, maxPending: o.maxPending ?? 256 }, o, progress, `+${add}`);
      fleets.push(fleet);
      if (!allReady) throw new Error(`only ${fleet.stats().ready} of ${add} sessions got ready (${fleet.stats().firstError ?? 'no error reported'})`);
      have = size;
      await sleep(settleMs);
      const r = await rss(target);
      const tcp = tcpMemBytes();
      rows.push({
        sessions: size,
        rssMB: Math.round((r / 2 ** 20) * 10) / 10,
        perSessionKB: Math.round(((r - baseRss) / size / 1024) * 100) / 100,
        kernelPerConnectionKB: Math.round(((tcp - baseTcp) / size / 1024) * 100) / 100,
      });
    }
  } finally {
    await Promise.all(fleets.map((f) => f.stop().catch(() => f.kill())));
  }
  const last = rows[rows.length - 1];
  return {
    params: { sizes: sizes.join(','), settleSeconds: settleMs / 1000, processes: o.processes, workgroups: o.workgroups, topicsPerSession: 1 },
    columns: [
      { key: 'sessions', label: 'sessions', better: 'none' },
      { key: 'baseRssMB', label: 'empty RSS MB', better: 'none' },
      { key: 'rssMB', label: 'RSS MB', better: 'none' },
      { key: 'perSessionKB', label: 'KB per session', better: 'lower' },
      { key: 'kernelPerConnectionKB', label: 'kernel slab KB per connection (both ends, host-wide)', better: 'none' },
    ],
    targets: [
      {
        name: target.kind,
        figures: { sessions: last?.sessions ?? 0, baseRssMB: Math.round((baseRss / 2 ** 20) * 10) / 10, rssMB: last?.rssMB ?? null, perSessionKB: last?.perSessionKB ?? null, kernelPerConnectionKB: last?.kernelPerConnectionKB ?? null, ...Object.fromEntries(rows.map((r) => [`perSessionKB@${r.sessions}`, r.perSessionKB])) },
      },
    ],
    ratios: [],
    latency: null,
    checks: [{ name: `${target.kind}: every size measured`, ok: rows.length === sizes.length, detail: `${rows.length} of ${sizes.length} sizes` }],
    notes: [],
    charts: [{ title: 'Server RSS per idle session (KB), by session count', xLabel: 'sessions', yLabel: 'KB per session', series: [{ name: 'KB/session', points: rows.map((r) => [r.sessions, r.perSessionKB] as [number, number]) }] }],
    series: { [target.kind]: rows },
  };
}
