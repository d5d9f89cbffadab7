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
//
// Both ways in one run: after the last size (by default one burst of 19,000
// sessions), RSS is read 5 s and 30 s after the burst without any forced GC
// (what a user sees), then the server's inspector is switched on (SIGUSR1:
// every server runs with --inspect-port=127.0.0.1:0, no inspector before
// then, bench/run.ts), each isolate's heap is read (used and committed, before
// any GC), a full GC is forced in every isolate and RSS is read again (live
// memory). The columns are ratios against the peers (uws).
import * as fs from 'node:fs';
import { connectFleet, type Progress, type RunOptions } from '../harness';
import { InspectorClient, type HeapUsage } from '../inspector';
import type { Figure, ScenarioResult } from '../report';
import type { SubscriberFleet } from '../sub';
import type { Target } from '../targets';

export const DEFAULTS = { sizes: [19000], settleSeconds: 3, earlySeconds: 5, lateSeconds: 30 };

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

/** Waits for the inspector a SIGUSR1 switched on (the server runs with --inspect-port=127.0.0.1:0), attached to every worker. */
async function inspectorOf(target: Target, workers: number): Promise<InspectorClient | null> {
  if (target.inspectorUrl === null) process.kill(target.pid, 'SIGUSR1');
  const deadline = Date.now() + 5000;
  while (target.inspectorUrl === null && Date.now() < deadline) await sleep(50);
  if (target.inspectorUrl === null) return null;
  const insp = await InspectorClient.connect(target.inspectorUrl);
  await insp.attachWorkers(workers);
  return insp;
}

const heapText = (h: HeapUsage[]) => h.map((x) => `${x.isolate} ${MB(x.usedBytes)}/${MB(x.totalBytes)}`).join(', ');

type Row = {
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
};

function row(size: number, r: Reading, base: Reading, tcp: number, baseTcp: number): Row {
  const heapDelta = r.workgroupHeap !== null && base.workgroupHeap !== null ? r.workgroupHeap - base.workgroupHeap : null;
  return {
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
  };
}

export async function idleMemory(target: Target, o: RunOptions, progress: Progress): Promise<Omit<ScenarioResult, 'env' | 'scenario'>> {
  if (!target.pid) throw new Error("idle-memory needs the server's pid (--server-pid with --url)");
  const sizes = [...(o.sizes ?? (o.connections ? [o.connections] : DEFAULTS.sizes))].sort((a, b) => a - b);
  const settleMs = (o.settleSeconds ?? DEFAULTS.settleSeconds) * 1000;
  const [earlySeconds, lateSeconds] = o.idleSeconds ?? [DEFAULTS.earlySeconds, DEFAULTS.lateSeconds];
  await sleep(settleMs);
  const base = await read(target);
  const baseTcp = tcpMemBytes();
  const fleets: SubscriberFleet[] = [];
  const rows: Row[] = [];
  /** The readings after the last size's burst: 5 s and 30 s after it without a forced GC, then after one. */
  let early: Reading | null = null;
  let late: Reading | null = null;
  let afterGc: Reading | null = null;
  let heapsPlain: HeapUsage[] | null = null;
  let heapsGc: HeapUsage[] | null = null;
  let burstCpuSeconds: number | null = null;
  let burstSeconds: number | null = null;
  let have = 0;
  try {
    for (const [i, size] of sizes.entries()) {
      const add = size - have;
      if (add <= 0) continue;
      const last = i === sizes.length - 1;
      const cpuBefore = target.cpuSeconds();
      const { fleet, allReady, seconds } = await connectFleet(
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
      const readyAt = Date.now();
      fleets.push(fleet);
      if (!allReady) throw new Error(`only ${fleet.stats().ready} of ${add} sessions got ready (${fleet.stats().firstError ?? 'no error reported'})`);
      have = size;
      if (!last) {
        await sleep(settleMs);
        rows.push(row(size, await read(target), base, tcpMemBytes(), baseTcp));
        continue;
      }
      burstCpuSeconds = target.cpuSeconds() - cpuBefore;
      burstSeconds = seconds;
      const earlyMs = earlySeconds * 1000;
      const lateMs = lateSeconds * 1000;
      progress.phase(target.name, 'idle', lateSeconds);
      await sleep(Math.max(0, readyAt + earlyMs - Date.now()));
      early = await read(target);
      await sleep(Math.max(0, readyAt + lateMs - Date.now()));
      late = await read(target);
      rows.push(row(size, late, base, tcpMemBytes(), baseTcp));
      if (o.url === null) {
        const insp = await inspectorOf(target, target.kind === 'c10m' ? o.workgroups : 0);
        if (insp) {
          try {
            heapsPlain = await insp.heapUsage();
            await insp.gcAll();
            await sleep(1000);
            heapsGc = await insp.heapUsage();
            afterGc = await read(target);
          } finally {
            insp.close();
          }
        }
      }
    }
  } finally {
    await Promise.all(fleets.map((f) => f.stop().catch(() => f.kill())));
  }
  const last = rows[rows.length - 1];
  const n = last?.sessions ?? 0;
  const perSession = (r: Reading | null) => (r && n ? KB2((r.rss - base.rss) / n) : null);
  const sum = (h: HeapUsage[] | null, k: 'usedBytes' | 'totalBytes') => (h ? MB(h.reduce((a, x) => a + x[k], 0)) : null);
  const figures: Record<string, Figure> = {
    sessions: n,
    baseRssMB: MB(base.rss),
    baseAnonMB: MB(base.anon),
    baseFileMB: MB(base.file),
    baseAnonHugeMB: MB(base.anonHuge),
    baseWorkgroupHeapMB: base.workgroupHeap === null ? null : MB(base.workgroupHeap),
    baseMainHeapMB: base.mainHeap === null ? null : MB(base.mainHeap),
    baseArenaMB: base.arenaBytes === null ? null : MB(base.arenaBytes),
    rssEarlyMB: early ? MB(early.rss) : null,
    rssLateMB: late ? MB(late.rss) : null,
    rssGcMB: afterGc ? MB(afterGc.rss) : null,
    perSessionKBEarly: perSession(early),
    perSessionKBLate: perSession(late),
    perSessionKBGc: perSession(afterGc),
    heapCommittedLateMB: sum(heapsPlain, 'totalBytes'),
    heapUsedLateMB: sum(heapsPlain, 'usedBytes'),
    heapCommittedGcMB: sum(heapsGc, 'totalBytes'),
    heapUsedGcMB: sum(heapsGc, 'usedBytes'),
    burstSeconds: burstSeconds === null ? null : Math.round(burstSeconds * 100) / 100,
    burstCpuUsPerSession: burstCpuSeconds === null || !n ? null : Math.round((burstCpuSeconds * 1e6) / (n - (sizes.length > 1 ? sizes[sizes.length - 2] : 0))),
    // The table of the earlier sizes (with --sizes), as before.
    rssMB: last?.rssMB ?? null,
    perSessionKB: last?.perSessionKB ?? null,
    anonPerSessionKB: last?.anonPerSessionKB ?? null,
    workgroupHeapPerSessionKB: last?.workgroupHeapPerSessionKB ?? null,
    nonHeapAnonPerSessionKB: last?.nonHeapAnonPerSessionKB ?? null,
    kernelPerConnectionKB: last?.kernelPerConnectionKB ?? null,
    sessionsPerWorkgroup: last?.sessionsPerWorkgroup ?? null,
    ...Object.fromEntries(rows.map((r) => [`perSessionKB@${r.sessions}`, r.perSessionKB])),
  };
  const notes = [
    `${target.name}: empty server RSS ${MB(base.rss)} MB = anon ${MB(base.anon)} MB (of which transparent huge pages ${MB(base.anonHuge)} MB${base.arenaBytes !== null ? `; native-io arenas mapped ${MB(base.arenaBytes)} MB` : ''}${base.workgroupHeap !== null ? `; JS heap in use: main ${MB(base.mainHeap ?? 0)} MB, workgroups ${MB(base.workgroupHeap)} MB` : ''}) + file ${MB(base.file)} MB`,
  ];
  if (heapsPlain && heapsGc) notes.push(`${target.name}: JS heaps used/committed MB per isolate, ${lateSeconds} s after the burst: ${heapText(heapsPlain)}; after a forced GC: ${heapText(heapsGc)}`);
  else notes.push(`${target.name}: no forced-GC reading (no inspector: --url, or the server did not answer SIGUSR1)`);
  return {
    params: {
      sizes: sizes.join(','),
      settleSeconds: settleMs / 1000,
      readings: `${earlySeconds} s and ${lateSeconds} s after the last burst (no GC forced), then after a forced GC`,
      processes: o.processes,
      workgroups: o.workgroups,
      topicsPerSession: 1,
    },
    columns: [
      { key: 'sessions', label: 'sessions', better: 'none' },
      { key: 'baseRssMB', label: 'empty RSS MB', better: 'none' },
      { key: 'rssEarlyMB', label: `RSS MB ${earlySeconds} s after`, better: 'lower' },
      { key: 'rssLateMB', label: `RSS MB ${lateSeconds} s after`, better: 'lower' },
      { key: 'rssGcMB', label: 'RSS MB after forced GC', better: 'lower' },
      { key: 'perSessionKBLate', label: `KB per session ${lateSeconds} s after (over empty)`, better: 'lower' },
      { key: 'perSessionKBGc', label: 'KB per session after GC (over empty)', better: 'lower' },
      { key: 'heapCommittedLateMB', label: `JS heaps committed MB ${lateSeconds} s after`, better: 'none' },
      { key: 'heapCommittedGcMB', label: 'JS heaps committed MB after GC', better: 'none' },
      { key: 'burstCpuUsPerSession', label: 'server CPU us per session (burst)', better: 'lower' },
      { key: 'kernelPerConnectionKB', label: 'kernel slab KB per connection (both ends, host-wide)', better: 'none' },
      { key: 'sessionsPerWorkgroup', label: 'sessions per workgroup', better: 'none' },
    ],
    targets: [{ name: target.name, figures }],
    ratios: [],
    latency: null,
    checks: [{ name: `${target.name}: every size measured`, ok: rows.length === sizes.length && late !== null, detail: `${rows.length} of ${sizes.length} sizes` }],
    notes,
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
        ...(early ? [{ reading: `${earlySeconds} s after`, ...row(n, early, base, baseTcp, baseTcp) }] : []),
        ...(afterGc ? [{ reading: 'after forced GC', ...row(n, afterGc, base, baseTcp, baseTcp) }] : []),
      ],
    },
  };
}
