// Server memory per idle subscribed session: RSS of the server process at
// several session counts (each session on its own topic) minus the RSS of
// the same server with no session, and the kernel's slab memory per
// connection (both ends, host-wide, from /proc/meminfo: noisy when other
// work runs).
//
// Where the bytes go: every reading also splits RSS into anonymous memory
// (heaps, malloc, arenas: what sessions add to) and file-backed pages (code,
// shared with any other process running the same files), and for c10m reads
// the admin port's /jmx: the JS heap in use of the main thread and of each
// workgroup, the native-io arena bytes (rings, slab chunks, cache chunks) and
// the sessions of each workgroup. So "per session" splits into the
// workgroups' JS heap and the rest (uWS's sockets and topic tree, malloc),
// and the empty server's RSS is the fixed cost (per workgroup: compare
// --workgroups 1 and 2).
import * as fs from 'node:fs';
import { connectFleet, type Progress, type RunOptions } from '../harness';
import type { Figure, ScenarioResult } from '../report';
import type { SubscriberFleet } from '../sub';
import type { Target } from '../targets';

export const DEFAULTS = { sizes: [1000, 5000, 10000, 19000], settleSeconds: 3 };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Reading {
  rss: number;
  anon: number;
  file: number;
  anonHuge: number;
  /** c10m: JS heap in use, main thread and the sum of the workgroups; null for a peer. */
  mainHeap: number | null;
  workgroupHeap: number | null;
  /** c10m: native-io arena bytes mapped (huge-page, THP and normal paths together). */
  arenaBytes: number | null;
  /** c10m: sessions per workgroup, e.g. "9512/9488". */
  spread: string | null;
}

/** The median of three readings 200 ms apart (RSS and its split from the same reading), plus /jmx. */
async function read(target: Target): Promise<Reading> {
  const r = [];
  for (let i = 0; i < 3; i++) {
    r.push(target.memory());
    await sleep(200);
  }
  const m = r.sort((a, b) => a.rssBytes - b.rssBytes)[1];
  const j = await target.jmx();
  const wgs = j?.Workgroups as { ConnectedSessions: number }[] | undefined;
  const n = (k: string) => (j && typeof j[k] === 'number' ? (j[k] as number) : null);
  const arenas = j ? (n('HugePageArenaBytes') ?? 0) + (n('TransparentHugePageArenaBytes') ?? 0) + (n('NormalPageArenaBytes') ?? 0) : null;
  return {
    rss: m.rssBytes,
    anon: m.anonBytes,
    file: m.fileBytes,
    anonHuge: m.anonHugeBytes,
    mainHeap: n('HeapUsed'),
    workgroupHeap: n('WorkgroupHeapUsed'),
    arenaBytes: arenas,
    spread: wgs ? wgs.map((w) => w.ConnectedSessions).join('/') : null,
  };
}

/** Kernel slab memory of the whole host in bytes (sockets, their files and epoll items live there). */
function tcpMemBytes(): number {
  const m = /^Slab:\s+(\d+) kB/m.exec(fs.readFileSync('/proc/meminfo', 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

const MB = (b: number) => Math.round((b / 2 ** 20) * 10) / 10;
const KB2 = (b: number) => Math.round((b / 1024) * 100) / 100;

export async function idleMemory(target: Target, o: RunOptions, progress: Progress): Promise<Omit<ScenarioResult, 'env' | 'scenario'>> {
  if (!target.pid) throw new Error("idle-memory needs the server's pid (--server-pid with --url)");
  const sizes = [...(o.sizes ?? (o.connections ? [o.connections] : DEFAULTS.sizes))].sort((a, b) => a - b);
  const settleMs = (o.settleSeconds ?? DEFAULTS.settleSeconds) * 1000;
  await sleep(settleMs);
  const base = await read(target);
  const baseTcp = tcpMemBytes();
  const fleets: SubscriberFleet[] = [];
  const rows: {
    sessions: number;
    rssMB: number;
    perSessionKB: number;
    anonPerSessionKB: number;
    filePerSessionKB: number;
    workgroupHeapPerSessionKB: number | null;
    nonHeapAnonPerSessionKB: number | null;
    kernelPerConnectionKB: number;
    anonMB: number;
    fileMB: number;
    anonHugeMB: number;
    workgroupHeapMB: number | null;
    mainHeapMB: number | null;
    arenaMB: number | null;
    sessionsPerWorkgroup: string | null;
  }[] = [];
  let have = 0;
  try {
    for (const size of sizes) {
      const add = size - have;
      if (add <= 0) continue;
      const { fleet, allReady } = await connectFleet(
        target,
        {
          connections: add,
          processes: Math.max(1, Math.ceil((add * o.processes) / sizes[sizes.length - 1])),
          topicsPerSession: 1,
          topicCount: 100_000_000,
          firstSession: have,
          maxPending: o.maxPending ?? 256,
        },
        o,
        progress,
        `+${add}`,
      );
      fleets.push(fleet);
      if (!allReady) throw new Error(`only ${fleet.stats().ready} of ${add} sessions got ready (${fleet.stats().firstError ?? 'no error reported'})`);
      have = size;
      await sleep(settleMs);
      const r = await read(target);
      const tcp = tcpMemBytes();
      const heapDelta = r.workgroupHeap !== null && base.workgroupHeap !== null ? r.workgroupHeap - base.workgroupHeap : null;
      rows.push({
        sessions: size,
        rssMB: MB(r.rss),
        perSessionKB: KB2((r.rss - base.rss) / size),
        anonPerSessionKB: KB2((r.anon - base.anon) / size),
        filePerSessionKB: KB2((r.file - base.file) / size),
        workgroupHeapPerSessionKB: heapDelta === null ? null : KB2(heapDelta / size),
        nonHeapAnonPerSessionKB: heapDelta === null ? null : KB2((r.anon - base.anon - heapDelta) / size),
        kernelPerConnectionKB: KB2((tcp - baseTcp) / size),
        anonMB: MB(r.anon),
        fileMB: MB(r.file),
        anonHugeMB: MB(r.anonHuge),
        workgroupHeapMB: r.workgroupHeap === null ? null : MB(r.workgroupHeap),
        mainHeapMB: r.mainHeap === null ? null : MB(r.mainHeap),
        arenaMB: r.arenaBytes === null ? null : MB(r.arenaBytes),
        sessionsPerWorkgroup: r.spread,
      });
    }
  } finally {
    await Promise.all(fleets.map((f) => f.stop().catch(() => f.kill())));
  }
  const last = rows[rows.length - 1];
  const figures: Record<string, Figure> = {
    sessions: last?.sessions ?? 0,
    baseRssMB: MB(base.rss),
    baseAnonMB: MB(base.anon),
    baseFileMB: MB(base.file),
    baseAnonHugeMB: MB(base.anonHuge),
    baseWorkgroupHeapMB: base.workgroupHeap === null ? null : MB(base.workgroupHeap),
    baseMainHeapMB: base.mainHeap === null ? null : MB(base.mainHeap),
    baseArenaMB: base.arenaBytes === null ? null : MB(base.arenaBytes),
    rssMB: last?.rssMB ?? null,
    perSessionKB: last?.perSessionKB ?? null,
    anonPerSessionKB: last?.anonPerSessionKB ?? null,
    workgroupHeapPerSessionKB: last?.workgroupHeapPerSessionKB ?? null,
    nonHeapAnonPerSessionKB: last?.nonHeapAnonPerSessionKB ?? null,
    kernelPerConnectionKB: last?.kernelPerConnectionKB ?? null,
    sessionsPerWorkgroup: last?.sessionsPerWorkgroup ?? null,
    ...Object.fromEntries(rows.map((r) => [`perSessionKB@${r.sessions}`, r.perSessionKB])),
  };
  return {
    params: { sizes: sizes.join(','), settleSeconds: settleMs / 1000, processes: o.processes, workgroups: o.workgroups, topicsPerSession: 1 },
    columns: [
      { key: 'sessions', label: 'sessions', better: 'none' },
      { key: 'baseRssMB', label: 'empty RSS MB', better: 'none' },
      { key: 'baseAnonMB', label: 'empty anon MB', better: 'none' },
      { key: 'rssMB', label: 'RSS MB', better: 'none' },
      { key: 'perSessionKB', label: 'KB per session', better: 'lower' },
      { key: 'anonPerSessionKB', label: 'anon KB per session', better: 'lower' },
      { key: 'workgroupHeapPerSessionKB', label: 'of which workgroup JS heap KB', better: 'none' },
      { key: 'kernelPerConnectionKB', label: 'kernel slab KB per connection (both ends, host-wide)', better: 'none' },
      { key: 'sessionsPerWorkgroup', label: 'sessions per workgroup', better: 'none' },
    ],
    targets: [{ name: target.name, figures }],
    ratios: [],
    latency: null,
    checks: [{ name: `${target.name}: every size measured`, ok: rows.length === sizes.length, detail: `${rows.length} of ${sizes.length} sizes` }],
    notes: [
      `${target.name}: empty server RSS ${MB(base.rss)} MB = anon ${MB(base.anon)} MB (of which transparent huge pages ${MB(base.anonHuge)} MB${base.arenaBytes !== null ? `; native-io arenas mapped ${MB(base.arenaBytes)} MB` : ''}${base.workgroupHeap !== null ? `; JS heap in use: main ${MB(base.mainHeap ?? 0)} MB, workgroups ${MB(base.workgroupHeap)} MB` : ''}) + file ${MB(base.file)} MB`,
    ],
    charts: [
      {
        title: 'Server RSS per idle session (KB), by session count',
        xLabel: 'sessions',
        yLabel: 'KB per session',
        series: [{ name: 'KB/session', points: rows.map((r) => [r.sessions, r.perSessionKB] as [number, number]) }],
      },
    ],
    series: {
      [target.name]: [
        {
          sessions: 0,
          rssMB: MB(base.rss),
          anonMB: MB(base.anon),
          fileMB: MB(base.file),
          anonHugeMB: MB(base.anonHuge),
          workgroupHeapMB: base.workgroupHeap === null ? null : MB(base.workgroupHeap),
          mainHeapMB: base.mainHeap === null ? null : MB(base.mainHeap),
          arenaMB: base.arenaBytes === null ? null : MB(base.arenaBytes),
        },
        ...rows,
      ],
    },
  };
}
