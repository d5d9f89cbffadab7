// Where an idle subscribed session's bytes go, and what each workgroup costs
// before it has a session: c10m (at each --workgroups count) and raw
// uWebSockets.js, each started with --inspect so that every isolate (the
// main thread and each workgroup's worker thread) can be made to run a full
// GC before every reading: the figures are live memory, not the garbage a
// connect storm leaves until V8 gets round to it (which makes plain RSS
// readings swing by ±0.5 KB per session at 19,000 sessions).
//
//   npm run lab:build && node dist-lab/bench/lab/memory-breakdown.js [--sessions 19000]
//       [--workgroups 1,2] [--peers uws] [--snapshot [--save-snapshots DIR]] [--ring-bytes 1048576,4194304]
//       [--settle-seconds 5] [--before /path/to/another/checkout/bin/c10m.js]
//
// For each target: RSS, anonymous and file-backed RSS, transparent huge
// pages, every isolate's heap (used and committed) at 0 sessions and at
// --sessions sessions (each on its own topic, benchsub's native client),
// all after a forced GC; for c10m also /jmx (native-io arena bytes,
// sessions per workgroup). Per session: RSS, anonymous, JS heap (committed)
// and the rest of the anonymous memory (uWS's sockets and topic tree,
// malloc). --snapshot adds heap snapshots of the isolates that hold the
// sessions, diffed by class (bytes and objects per session). --ring-bytes
// starts empty servers at each workgroup count and ring size to price the
// rings. Writes bench/results/memory-breakdown-<date>.{json,md}.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { envHeader } from '../env';
import { Progress, DEFAULT_SOURCE_ADDRESSES, connectFleet, type RunOptions } from '../harness';
import { parseSourceAddresses } from '../addresses';
import { InspectorClient, diffSummaries, type HeapSummary, type HeapUsage } from '../inspector';
import { envLines } from '../report';
import { ROOT } from '../paths';
import { startTarget, type Target, type TargetKind } from '../targets';
import { arg, flag } from './args';

const sessions = Number(arg('sessions', '19000'));
const workgroupsList = arg('workgroups', '1,2').split(',').map(Number);
const peers = arg('peers', 'uws')
  .split(',')
  .filter((p) => p && p !== 'none') as TargetKind[];
const settleMs = Number(arg('settle-seconds', '5')) * 1000;
const snapshot = flag('snapshot');
/** With --snapshot: also write every raw heap snapshot here (<target>-<sessions>-<isolate>.heapsnapshot). */
const saveSnapshots = arg('save-snapshots', '');
const ringBytesList = arg('ring-bytes', '').split(',').filter(Boolean).map(Number);
const serveArgs = arg('serve-args', '').split(/\s+/).filter(Boolean);
/** Another build's bin/c10m.js: its before-wg<N> targets are measured between this build's (a before/after run). */
const before = arg('before', '');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Reading {
  rssBytes: number;
  anonBytes: number;
  fileBytes: number;
  anonHugeBytes: number;
  heaps: HeapUsage[];
  heapUsedBytes: number;
  heapTotalBytes: number;
  /** c10m: native-io arena bytes mapped; sessions per workgroup. */
  arenaBytes: number | null;
  sessionsPerWorkgroup: string | null;
}

async function reading(target: Target, insp: InspectorClient): Promise<Reading> {
  await insp.gcAll();
  await sleep(500);
  const heaps = await insp.heapUsage();
  const mems = [];
  for (let i = 0; i < 3; i++) {
    mems.push(target.memory());
    await sleep(200);
  }
  const m = mems.sort((a, b) => a.rssBytes - b.rssBytes)[1];
  const j = await target.jmx();
  const wgs = j?.Workgroups as { ConnectedSessions: number }[] | undefined;
  const num = (k: string) => (j && typeof j[k] === 'number' ? (j[k] as number) : 0);
  return {
    ...m,
    heaps,
    heapUsedBytes: heaps.reduce((s, h) => s + h.usedBytes, 0),
    heapTotalBytes: heaps.reduce((s, h) => s + h.totalBytes, 0),
    arenaBytes: j ? num('HugePageArenaBytes') + num('TransparentHugePageArenaBytes') + num('NormalPageArenaBytes') : null,
    sessionsPerWorkgroup: wgs ? wgs.map((w) => w.ConnectedSessions).join('/') : null,
  };
}

const MB = (b: number) => Math.round((b / 2 ** 20) * 100) / 100;
const KB = (b: number) => Math.round((b / 1024) * 1000) / 1000;

interface TargetResult {
  name: string;
  workgroups: number | null;
  empty: Reading;
  loaded: Reading;
  perSession: { rssKB: number; anonKB: number; fileKB: number; heapTotalKB: number; heapUsedKB: number; nonHeapAnonKB: number; arenaKB: number | null };
  /** Heap snapshot diff of the isolates holding sessions: class, bytes per session, objects per session. */
  heapClasses: { key: string; bytesPerSession: number; objectsPerSession: number }[] | null;
}

async function start(kind: TargetKind, name: string, wg: number, extra: string[], cli?: string): Promise<{ target: Target; insp: InspectorClient }> {
  const other = cli === undefined ? {} : { cli, budgets: true };
  const target = await startTarget(kind, { name, workgroups: wg, serveArgs: kind === 'c10m' ? ['--benchmark-mode', ...serveArgs, ...extra] : [], execArgv: ['--inspect=127.0.0.1:0'], ...other });
  for (let i = 0; i < 50 && !target.inspectorUrl; i++) await sleep(100);
  if (!target.inspectorUrl) throw new Error(`${name}: no inspector URL on stderr`);
  const insp = await InspectorClient.connect(target.inspectorUrl);
  if (kind === 'c10m') await insp.attachWorkers(wg);
  return { target, insp };
}

async function snapshotAll(insp: InspectorClient, kind: TargetKind, label: string): Promise<HeapSummary[]> {
  const ids = kind === 'c10m' ? [...insp.workers.keys()] : [null];
  const out: HeapSummary[] = [];
  for (const id of ids) {
    const file = saveSnapshots === '' ? null : path.join(saveSnapshots, `${label}-${insp.title(id).replace(/[^\w.-]+/g, '_')}.heapsnapshot`);
    out.push(await insp.heapSummary(id, file));
  }
  return out;
}

function merge(list: HeapSummary[]): HeapSummary {
  const out: HeapSummary = new Map();
  for (const s of list) {
    for (const [k, v] of s) {
      const e = out.get(k) ?? { bytes: 0, count: 0 };
      e.bytes += v.bytes;
      e.count += v.count;
      out.set(k, e);
    }
  }
  return out;
}

/** Memory at 0 and N sessions, all after a forced GC (no heap snapshot in this pass: its own allocations stay in RSS). */
async function measure(kind: TargetKind, name: string, wg: number, options: RunOptions, progress: Progress, cli?: string): Promise<TargetResult> {
  const { target, insp } = await start(kind, name, wg, [], cli);
  try {
    await sleep(settleMs);
    const empty = await reading(target, insp);
    const { fleet, allReady } = await connectFleet(target, { connections: sessions, processes: 1, topicsPerSession: 1, topicCount: 100_000_000, maxPending: 256 }, options, progress, 'connect');
    try {
      if (!allReady) throw new Error(`${name}: only ${fleet.stats().ready} of ${sessions} sessions got ready`);
      await sleep(settleMs);
      const loaded = await reading(target, insp);
      const d = (k: keyof Reading) => ((loaded[k] as number) - (empty[k] as number)) / sessions;
      const heapTotal = d('heapTotalBytes');
      return {
        name,
        workgroups: kind === 'c10m' ? wg : null,
        empty,
        loaded,
        perSession: {
          rssKB: KB(d('rssBytes')),
          anonKB: KB(d('anonBytes')),
          fileKB: KB(d('fileBytes')),
          heapTotalKB: KB(heapTotal),
          heapUsedKB: KB(d('heapUsedBytes')),
          nonHeapAnonKB: KB(d('anonBytes') - heapTotal),
          arenaKB: loaded.arenaBytes === null || empty.arenaBytes === null ? null : KB((loaded.arenaBytes - empty.arenaBytes) / sessions),
        },
        heapClasses: null,
      };
    } finally {
      await fleet.stop().catch(() => fleet.kill());
    }
  } finally {
    insp.close();
    await target.stop();
  }
}

/** A second server of the same kind: heap snapshots at 0 and N sessions, diffed by class. */
async function heapClasses(kind: TargetKind, name: string, wg: number, options: RunOptions, progress: Progress): Promise<TargetResult['heapClasses']> {
  const { target, insp } = await start(kind, name, wg, []);
  try {
    await sleep(settleMs);
    await insp.gcAll();
    const before = merge(await snapshotAll(insp, kind, `${name}-0`));
    const { fleet, allReady } = await connectFleet(target, { connections: sessions, processes: 1, topicsPerSession: 1, topicCount: 100_000_000, maxPending: 256 }, options, progress, 'snapshot');
    try {
      if (!allReady) throw new Error(`${name}: only ${fleet.stats().ready} of ${sessions} sessions got ready`);
      await sleep(settleMs);
      await insp.gcAll();
      const after = merge(await snapshotAll(insp, kind, `${name}-${sessions}`));
      return diffSummaries(before, after)
        .slice(0, 25)
        .map((x) => ({ key: x.key, bytesPerSession: Math.round((x.bytes / sessions) * 10) / 10, objectsPerSession: Math.round((x.count / sessions) * 100) / 100 }));
    } finally {
      await fleet.stop().catch(() => fleet.kill());
    }
  } finally {
    insp.close();
    await target.stop();
  }
}

async function main(): Promise<void> {
  const env = envHeader(ROOT);
  const progress = new Progress(true, 'memory-breakdown');
  const options = { sourceAddresses: parseSourceAddresses(arg('source-addresses', DEFAULT_SOURCE_ADDRESSES)), engine: 'auto', connectTimeoutSeconds: 120, maxPending: 256 } as unknown as RunOptions;
  const results: TargetResult[] = [];
  const runs: { kind: TargetKind; name: string; wg: number; cli?: string }[] = [
    ...workgroupsList.flatMap((wg) => [
      { kind: 'c10m' as TargetKind, name: `c10m-wg${wg}`, wg },
      ...(before === '' ? [] : [{ kind: 'c10m' as TargetKind, name: `before-wg${wg}`, wg, cli: path.resolve(before) }]),
    ]),
    ...peers.map((p) => ({ kind: p, name: p as string, wg: 1 })),
  ];
  for (const r of runs) results.push(await measure(r.kind, r.name, r.wg, options, progress, r.cli));
  if (snapshot) for (let i = 0; i < runs.length; i++) results[i].heapClasses = await heapClasses(runs[i].kind, runs[i].name, runs[i].wg, options, progress);
  // Empty servers at each workgroup count and ring size: the fixed cost per workgroup and per ring.
  const fixed: { workgroups: number; ringBytes: number | null; reading: Reading }[] = [];
  for (const rb of ringBytesList.length ? ringBytesList : []) {
    for (const wg of workgroupsList) {
      const { target, insp } = await start('c10m', `c10m-wg${wg}-ring${rb}`, wg, ['--ring-bytes', String(rb)]);
      try {
        await sleep(settleMs);
        fixed.push({ workgroups: wg, ringBytes: rb, reading: await reading(target, insp) });
      } finally {
        insp.close();
        await target.stop();
      }
    }
  }
  progress.stop();
  env.loadAverage.end = Math.round(os.loadavg()[0] * 100) / 100;
  const lines: string[] = [
    '## memory-breakdown',
    '',
    ...envLines(env),
    '',
    `${sessions} idle sessions, each subscribed to its own topic; every reading after a forced full GC in every isolate (inspector), ${settleMs / 1000} s after the last change.`,
    '',
  ];
  lines.push(
    '| target | empty RSS MB | empty anon MB | empty THP MB | empty JS heap committed MB (per isolate) | RSS MB at N | KB/session RSS | anon | JS heap committed | JS heap used | anon outside the JS heap | native-io arenas | sessions per workgroup |',
  );
  lines.push('|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---|');
  for (const r of results) {
    const p = r.perSession;
    lines.push(
      `| ${r.name} | ${MB(r.empty.rssBytes)} | ${MB(r.empty.anonBytes)} | ${MB(r.empty.anonHugeBytes)} | ${MB(r.empty.heapTotalBytes)} (${r.empty.heaps.map((h) => `${h.isolate} ${MB(h.totalBytes)}`).join(', ')}) | ${MB(r.loaded.rssBytes)} | ${p.rssKB} | ${p.anonKB} | ${p.heapTotalKB} | ${p.heapUsedKB} | ${p.nonHeapAnonKB} | ${p.arenaKB ?? '–'} | ${r.loaded.sessionsPerWorkgroup ?? '–'} |`,
    );
  }
  const peer = results.find((r) => r.workgroups === null);
  if (peer) {
    lines.push('', `Ratios to ${peer.name} (KB per session, RSS / anon / anon outside the JS heap):`, '');
    for (const r of results.filter((x) => x !== peer))
      lines.push(
        `- ${r.name}: ${(r.perSession.rssKB / peer.perSession.rssKB).toFixed(3)} / ${(r.perSession.anonKB / peer.perSession.anonKB).toFixed(3)} / ${(r.perSession.nonHeapAnonKB / peer.perSession.nonHeapAnonKB).toFixed(3)}; JS heap committed ${r.perSession.heapTotalKB} vs ${peer.perSession.heapTotalKB} KB`,
      );
  }
  if (fixed.length) {
    lines.push(
      '',
      'Empty servers by ring size (the fixed cost; N workgroups have N·(N−1) rings):',
      '',
      '| workgroups | --ring-bytes | RSS MB | anon MB | THP MB | JS heap committed MB | native-io arenas MB |',
      '|---:|---:|---:|---:|---:|---:|---:|',
    );
    for (const f of fixed)
      lines.push(
        `| ${f.workgroups} | ${f.ringBytes} | ${MB(f.reading.rssBytes)} | ${MB(f.reading.anonBytes)} | ${MB(f.reading.anonHugeBytes)} | ${MB(f.reading.heapTotalBytes)} | ${f.reading.arenaBytes === null ? '–' : MB(f.reading.arenaBytes)} |`,
      );
  }
  for (const r of results) {
    if (!r.heapClasses) continue;
    lines.push(
      '',
      `${r.name}: JS heap growth by class, per session (heap snapshots of the isolates holding sessions, at 0 and ${sessions}):`,
      '',
      '| class | bytes/session | objects/session |',
      '|---|---:|---:|',
    );
    for (const c of r.heapClasses.filter((x) => Math.abs(x.bytesPerSession) >= 1)) lines.push(`| ${c.key.replace(/\|/g, '\\|')} | ${c.bytesPerSession} | ${c.objectsPerSession} |`);
  }
  const md = `${lines.join('\n')}\n`;
  process.stdout.write(md);
  const dir = path.join(ROOT, 'bench', 'results');
  fs.mkdirSync(dir, { recursive: true });
  const base = path.join(dir, `memory-breakdown-${env.date.replace(/[:.]/g, '-').replace(/-\d{3}Z$/, 'Z')}`);
  fs.writeFileSync(
    `${base}.json`,
    `${JSON.stringify({ benchmark: 'memory-breakdown', env, params: { sessions, workgroups: workgroupsList, peers, settleSeconds: settleMs / 1000, snapshot, ringBytes: ringBytesList, serveArgs }, results, fixed }, null, 2)}\n`,
  );
  fs.writeFileSync(`${base}.md`, md);
  process.stdout.write(`${JSON.stringify({ msg: 'memory-breakdown done', files: [`${base}.json`, `${base}.md`] })}\n`);
  process.exit(0);
}

main().catch((err) => {
  process.stderr.write(`memory-breakdown: ${(err as Error).stack ?? err}\n`);
  process.exit(1);
});
