// Delivered messages/s at saturation, several servers interleaved: every
// target (c10m variants and raw uWebSockets.js) runs at once, each with its
// own fleet of subscribers connected and idle, and the publisher visits them
// in turn, round after round, in a rotating order. Each visit offers more
// than any target can deliver for --window seconds (after a --warmup) and
// counts what arrives; between visits everything owed is allowed to arrive.
// On a machine shared with other work the load drifts over minutes, which
// makes a ramp run target after target (bench run fanout) swing by ±25%;
// interleaving puts every target under the same drift, and the median of
// the rounds is robust to a bad window.
//
//   npm run lab:build && node dist-lab/bench/lab/throughput-ab.js [--workgroups 1,2]
//       [--cache-messages 0,1000] [--peers uws] [--connections 19000]
//       [--topics 1000] [--size 512] [--rate 40000] [--window 8] [--warmup 2]
//       [--rounds 5] [--pub-connections 4] [--variants "name:serve flags;..."]
//       [--before /path/to/another/checkout/bin/c10m.js]
//
// Targets: c10m-wg<N> for each --workgroups count (the server's default
// cache), c10m-wg<N>-cache<C> for each other --cache-messages value (at the
// first workgroup count only), c10m-wg<N>-<name> for each --variants entry
// (its serve flags, at the first workgroup count), before-wg<N> for each
// --workgroups count when --before names another build's CLI (a before/after
// run of two commits, interleaved like the rest), then the peers. All are started with
// --benchmark-mode. Every count is checked exactly at the end (per session).
// Writes bench/results/throughput-ab-<date>.{json,md}.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseSourceAddresses } from '../addresses';
import { envHeader } from '../env';
import { DEFAULT_SOURCE_ADDRESSES, Progress, connectFleet, cpuOf, expectedDeliveries, expectedPerSession, pubConfig, startPublisher, type RunOptions } from '../harness';
import { ROOT } from '../paths';
import { envLines } from '../report';
import type { SubscriberFleet } from '../sub';
import { startTarget, type Target, type TargetKind } from '../targets';
import { arg } from './args';

const nums = (name: string, fallback: string) => arg(name, fallback).split(',').filter(Boolean).map(Number);

const workgroupsList = nums('workgroups', '1,2');
const cacheList = nums('cache-messages', '');
/** "name:flags;name:flags": more c10m targets at the first workgroup count, e.g. "cb32m:--cache-bytes 33554432". */
const variants = arg('variants', '')
  .split(';')
  .filter(Boolean)
  .map((v) => {
    const i = v.indexOf(':');
    return {
      name: v.slice(0, i).trim(),
      flags: v
        .slice(i + 1)
        .split(/\s+/)
        .filter(Boolean),
    };
  });
const peers = arg('peers', 'uws')
  .split(',')
  .filter((p) => p && p !== 'none') as TargetKind[];
const connections = Number(arg('connections', '19000'));
const topics = Number(arg('topics', '1000'));
const size = Number(arg('size', '512'));
const rate = Number(arg('rate', '40000'));
const windowSeconds = Number(arg('window', '8'));
const warmupSeconds = Number(arg('warmup', '2'));
const rounds = Number(arg('rounds', '5'));
const pubConnections = Number(arg('pub-connections', '4'));
/** Another build's bin/c10m.js (e.g. a worktree of an earlier commit): its targets run beside this build's. */
const before = arg('before', '');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** The median (the mean of the two middle values for an even count). */
function medianOf(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

interface Entry {
  name: string;
  kind: TargetKind;
  workgroups: number;
  serveArgs: string[];
  /** Another build's CLI (--before), or none: this build. */
  cli?: string;
  target?: Target;
  fleet?: SubscriberFleet;
  published: number[];
  windows: { round: number; deliveredPerSec: number; serverCpuPct: number; clientCpuPct: number; publishedPerSec: number; deferred: number }[];
}

async function visit(e: Entry, round: number): Promise<void> {
  const target = e.target as Target;
  const fleet = e.fleet as SubscriberFleet;
  const pub = await startPublisher(pubConfig(target, { size, topicCount: topics, schedule: [{ atSeconds: 0, rate }], durationSeconds: warmupSeconds + windowSeconds, connections: pubConnections }));
  try {
    pub.go();
    await sleep(warmupSeconds * 1000);
    const m0 = fleet.stats().messages;
    const p0 = pub.stats.published;
    const c0 = target.cpuSeconds();
    const k0 = cpuOf([...fleet.pids(), pub.pid]);
    const t0 = performance.now();
    await sleep(windowSeconds * 1000);
    const dt = (performance.now() - t0) / 1000;
    const m1 = fleet.stats().messages;
    const p1 = pub.stats.published;
    const c1 = target.cpuSeconds();
    const k1 = cpuOf([...fleet.pids(), pub.pid]);
    const final = await pub.done;
    e.published.push(final.published);
    e.windows.push({
      round,
      deliveredPerSec: Math.round((m1 - m0) / dt),
      serverCpuPct: Math.round(((c1 - c0) / dt) * 100),
      clientCpuPct: Math.round(((k1 - k0) / dt) * 100),
      publishedPerSec: Math.round((p1 - p0) / dt),
      deferred: final.deferred,
    });
    // Everything owed arrives before the next visit (its own or another target's).
    const owed = e.published.reduce((s, n) => s + expectedDeliveries(n, topics, connections, 1), 0);
    const ok = await fleet.until((s) => s.messages >= owed, 60_000);
    if (!ok) throw new Error(`${e.name}: ${owed - fleet.stats().messages} deliveries still missing 60 s after round ${round}`);
  } finally {
    pub.kill();
  }
}

async function main(): Promise<void> {
  const env = envHeader(ROOT);
  const progress = new Progress(true, 'throughput-ab');
  const o = { sourceAddresses: parseSourceAddresses(arg('source-addresses', DEFAULT_SOURCE_ADDRESSES)), engine: 'auto', connectTimeoutSeconds: 120, maxPending: 256 } as unknown as RunOptions;
  const entries: Entry[] = [];
  for (const wg of workgroupsList) entries.push({ name: `c10m-wg${wg}`, kind: 'c10m', workgroups: wg, serveArgs: ['--benchmark-mode'], published: [], windows: [] });
  for (const c of cacheList)
    entries.push({
      name: `c10m-wg${workgroupsList[0]}-cache${c}`,
      kind: 'c10m',
      workgroups: workgroupsList[0],
      serveArgs: ['--benchmark-mode', '--cache-messages', String(c)],
      published: [],
      windows: [],
    });
  for (const v of variants)
    entries.push({ name: `c10m-wg${workgroupsList[0]}-${v.name}`, kind: 'c10m', workgroups: workgroupsList[0], serveArgs: ['--benchmark-mode', ...v.flags], published: [], windows: [] });
  if (before !== '')
    for (const w of workgroupsList) entries.push({ name: `before-wg${w}`, kind: 'c10m', workgroups: w, serveArgs: ['--benchmark-mode'], cli: path.resolve(before), published: [], windows: [] });
  for (const p of peers) entries.push({ name: p, kind: p, workgroups: 1, serveArgs: [], published: [], windows: [] });
  const checks: { name: string; ok: boolean; detail: string }[] = [];
  try {
    for (const e of entries) {
      // Another build may not know this one's flags: it is started with its own defaults (it has no budgets to lift).
      e.target = await startTarget(e.kind, { name: e.name, workgroups: e.workgroups, serveArgs: e.serveArgs, ...(e.cli ? { cli: e.cli, budgets: true } : {}) });
      const { fleet, allReady } = await connectFleet(e.target, { connections, processes: 1, topicsPerSession: 1, topicCount: topics }, o, progress, 'connect');
      e.fleet = fleet;
      if (!allReady) throw new Error(`${e.name}: only ${fleet.stats().ready} of ${connections} sessions got ready`);
    }
    progress.stop();
    for (let r = 0; r < rounds; r++) {
      const order = entries.map((_, i) => entries[(i + r) % entries.length]);
      if (r % 2 === 1) order.reverse();
      for (const e of order) {
        await visit(e, r + 1);
        const w = e.windows[e.windows.length - 1];
        process.stderr.write(
          `throughput-ab: round ${r + 1} ${e.name}: ${w.deliveredPerSec} delivered/s (published ${w.publishedPerSec}/s), server CPU ${w.serverCpuPct}%, client CPU ${w.clientCpuPct}%, load ${os.loadavg()[0].toFixed(2)}\n`,
        );
      }
    }
    for (const e of entries) {
      const fleet = e.fleet as SubscriberFleet;
      const want = e.published.reduce((s, n) => s + expectedDeliveries(n, topics, connections, 1), 0);
      const got = fleet.stats().messages;
      const counts = await fleet.connectionCounts();
      const owed = new Uint32Array(connections);
      for (const n of e.published) {
        const per = expectedPerSession(n, topics, connections, 1);
        for (let s = 0; s < connections; s++) owed[s] += per[s];
      }
      let wrong = 0;
      for (let s = 0; s < connections; s++) if (counts[s] !== owed[s]) wrong++;
      checks.push({
        name: `${e.name}: every delivery arrived, exactly, per session`,
        ok: got === want && wrong === 0 && fleet.stats().closed === 0,
        detail: `${got} of ${want} delivered, ${wrong} sessions differ, ${fleet.stats().closed} closed`,
      });
    }
  } finally {
    progress.stop();
    for (const e of entries) {
      await e.fleet?.stop().catch(() => e.fleet?.kill());
      await e.target?.stop();
    }
  }
  env.loadAverage.end = Math.round(os.loadavg()[0] * 100) / 100;
  const median = (xs: number[]) => Math.round(medianOf(xs));
  const ref = entries.find((e) => e.kind !== 'c10m');
  const lines = [
    '## throughput-ab',
    '',
    ...envLines(env),
    '',
    `${connections} sessions on ${topics} topics (${connections / topics} per topic), ${size}-byte payloads, ${pubConnections} publisher connections offering ${rate} msg/s; each visit: ${warmupSeconds} s warm-up, then delivered/s over ${windowSeconds} s; ${rounds} rounds, the targets in a rotating order; all servers up at once with their sessions, --benchmark-mode.`,
    '',
  ];
  lines.push(`| target | median delivered/s | min | max | per round | median server CPU % | median client CPU % | median published/s |${ref ? ` median of per-round ratio to ${ref.name} |` : ''}`);
  lines.push(`|---|---:|---:|---:|---|---:|---:|---:|${ref ? '---:|' : ''}`);
  const summary: Record<string, unknown>[] = [];
  for (const e of entries) {
    const d = e.windows.map((w) => w.deliveredPerSec);
    const perRound = ref && e !== ref ? e.windows.map((w) => w.deliveredPerSec / (ref.windows.find((x) => x.round === w.round)?.deliveredPerSec ?? NaN)) : null;
    const ratio = perRound ? Math.round(medianOf(perRound) * 1000) / 1000 : null;
    summary.push({ name: e.name, medianDeliveredPerSec: median(d), ratioToPeer: ratio, windows: e.windows });
    lines.push(
      `| ${e.name} | ${median(d).toLocaleString('en-US')} | ${Math.min(...d).toLocaleString('en-US')} | ${Math.max(...d).toLocaleString('en-US')} | ${d.map((x) => x.toLocaleString('en-US')).join(', ')} | ${median(e.windows.map((w) => w.serverCpuPct))} | ${median(e.windows.map((w) => w.clientCpuPct))} | ${median(e.windows.map((w) => w.publishedPerSec)).toLocaleString('en-US')} |${ref ? ` ${ratio ?? '–'} |` : ''}`,
    );
  }
  lines.push('', 'Checks:', '', ...checks.map((c) => `- ${c.ok ? 'ok' : 'FAILED'}: ${c.name} (${c.detail})`));
  const md = `${lines.join('\n')}\n`;
  process.stdout.write(md);
  const dir = path.join(ROOT, 'bench', 'results');
  fs.mkdirSync(dir, { recursive: true });
  const base = path.join(dir, `throughput-ab-${env.date.replace(/[:.]/g, '-').replace(/-\d{3}Z$/, 'Z')}`);
  fs.writeFileSync(
    `${base}.json`,
    `${JSON.stringify({ benchmark: 'throughput-ab', env, params: { connections, topics, size, rate, windowSeconds, warmupSeconds, rounds, pubConnections, workgroups: workgroupsList, cacheMessages: cacheList, variants, peers }, targets: summary, checks }, null, 2)}\n`,
  );
  fs.writeFileSync(`${base}.md`, md);
  process.stdout.write(`${JSON.stringify({ msg: 'throughput-ab done', files: [`${base}.json`, `${base}.md`], checksFailed: checks.filter((c) => !c.ok).length })}\n`);
  process.exit(checks.every((c) => c.ok) ? 0 : 1);
}

main().catch((err) => {
  process.stderr.write(`throughput-ab: ${(err as Error).stack ?? err}\n`);
  process.exit(1);
});
