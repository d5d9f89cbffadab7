// Conflation's cost and effect end to end: S sessions subscribed to one
// topic, a publisher updating it R times a second for D seconds, with every
// message delivered or conflated; the frames the sessions received and the
// server's CPU while the topic was updated.
//
//   npm run lab:build && flock /tmp/bench.lock node dist-lab/bench/lab/conflation.js
//       [--sessions 19000] [--cases 0@1000,100@1000,0@10] [--seconds 20] [--workgroups 2] [--size 64]
//
// A case is MS@R: conflate MS (0: every message) with the topic updated R
// times a second; the default compares 1,000 updates a second plain and
// conflated at 100 ms, and 10 a second plain (about the frames the conflated
// case sends). Per case (same run, one server started per case, so no case
// inherits another's state): benchsub's native client opens S sessions (one
// process, --benchmark-mode), each subscribing to /px/0 (with "conflate": MS
// when MS > 0); benchpub publishes R msg/s of --size bytes to /px/0 over one
// WebSocket for D seconds. Measured between the publisher's start and 1 s
// after its end: frames received by the sessions (all of them), the
// server's user and system CPU seconds (/proc), CPU per published message and
// per delivered frame, the workgroups' worst event-loop delay (sampled).
// Expected frames: every message to every session without conflation; with
// an interval of MS ms at most S x (D x 1000 / MS + 1). Writes
// bench/results/conflation-<date>.{json,md}. Bounded: every wait has a
// timeout, every count is fixed.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseSourceAddresses } from '../addresses';
import { envHeader } from '../env';
import { DEFAULT_SOURCE_ADDRESSES } from '../harness';
import { ROOT } from '../paths';
import { Publisher } from '../pub';
import { envLines } from '../report';
import { SubscriberFleet } from '../sub';
import { startTarget } from '../targets';
import { arg } from './args';

const sessions = Number(arg('sessions', '19000'));
const seconds = Number(arg('seconds', '20'));
const size = Number(arg('size', '64'));
const workgroups = Number(arg('workgroups', '2'));
const caseList = arg('cases', '0@1000,100@1000,0@10')
  .split(',')
  .map((x) => {
    const [ms, rate] = x.trim().split('@').map(Number);
    return { conflateMs: ms, rate };
  });

/** User and system CPU seconds of a process. */
function cpuSplit(pid: number): { user: number; system: number } {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { user: Number(fields[11]) / 100, system: Number(fields[12]) / 100 };
}
/** The admin port's /metrics text, or '' when it cannot be read. */
async function metricsText(adminPort: number): Promise<string> {
  try {
    return await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
  } catch {
    return '';
  }
}

/** The largest of a metric's samples (every label set), or null when it is absent. */
function metricMax(text: string, name: string): number | null {
  let max: number | null = null;
  for (const m of text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.e+]+)$`, 'gm'))) max = Math.max(max ?? 0, Number(m[1]));
  return max;
}

/** The sum of a metric's samples (every label set), or null when it is absent. */
function metric(text: string, name: string): number | null {
  let sum: number | null = null;
  for (const m of text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.e+]+)$`, 'gm'))) sum = (sum ?? 0) + Number(m[1]);
  return sum;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Case {
  conflateMs: number;
  rate: number;
  sessions: number;
  ready: number;
  published: number;
  publishErrors: number;
  frames: number;
  framesPerSessionPerSecond: number;
  maxExpectedFrames: number;
  serverCpuSeconds: number;
  serverUserSeconds: number;
  serverSystemSeconds: number;
  serverCpuPercent: number;
  cpuMicrosPerPublished: number;
  cpuMicrosPerFrame: number;
  /** The worst event-loop delay any workgroup reported while the topic was updated, ms. */
  loopDelayMaxMs: number | null;
  conflatedFramesToUws: number | null;
  conflatedSkipped: number | null;
  closed: number;
  ok: boolean;
}

async function runCase(conflateMs: number, rate: number): Promise<Case> {
  const target = await startTarget('c10m', { name: `c10m-conflate${conflateMs}-rate${rate}`, workgroups, serveArgs: ['--benchmark-mode'] });
  const fleet = new SubscriberFleet({
    url: target.subUrl,
    connections: sessions,
    processes: 1,
    sourceAddresses: parseSourceAddresses(arg('source-addresses', DEFAULT_SOURCE_ADDRESSES)),
    topicPattern: '/px/{n}',
    topicsPerSession: 1,
    topicCount: 1,
    maxPending: 256,
    engine: 'native',
    tickMs: 250,
    conflateMs,
  });
  const pub = new Publisher({
    url: target.pubUrl,
    transport: 'ws',
    connections: 1,
    size,
    topicPattern: '/px/{n}',
    topicCount: 1,
    schedule: [{ atSeconds: 0, rate }],
    durationSeconds: seconds,
    maxMessages: 0,
    sourceAddress: '127.0.0.1',
    tickMs: 500,
  });
  try {
    await fleet.start();
    const allReady = await fleet.until((s) => s.ready + s.failed >= sessions, 180_000);
    if (!allReady) throw new Error(`only ${fleet.stats().ready} of ${sessions} sessions ready after 180 s`);
    await pub.start();
    await sleep(1000);
    const frames0 = fleet.stats().messages;
    const cpu0 = cpuSplit(target.pid);
    const m0 = await metricsText(target.adminPort);
    let loopDelayMaxMs: number | null = null;
    const sampler = setInterval(() => {
      void metricsText(target.adminPort).then((t) => {
        const worst = metricMax(t, 'c10m_workgroup_event_loop_delay_max_seconds');
        if (worst !== null) loopDelayMaxMs = Math.max(loopDelayMaxMs ?? 0, Math.round(worst * 1000));
      });
    }, 1000);
    pub.go();
    const stats = await Promise.race([pub.done, sleep((seconds + 30) * 1000).then(() => null)]);
    if (stats === null) throw new Error('benchpub did not finish in time');
    await sleep(1000);
    clearInterval(sampler);
    const cpu1 = cpuSplit(target.pid);
    const user = cpu1.user - cpu0.user;
    const system = cpu1.system - cpu0.system;
    const cpu = user + system;
    const s = fleet.stats();
    const m1 = await metricsText(target.adminPort);
    const frames = s.messages - frames0;
    const maxExpected = conflateMs > 0 ? s.ready * (Math.ceil((seconds * 1000) / conflateMs) + 2) : s.ready * stats.published;
    const f0 = metric(m0, 'c10m_conflated_frames_total');
    const f1 = metric(m1, 'c10m_conflated_frames_total');
    const k0 = metric(m0, 'c10m_conflated_skipped_total');
    const k1 = metric(m1, 'c10m_conflated_skipped_total');
    return {
      conflateMs,
      rate,
      sessions,
      ready: s.ready,
      published: stats.published,
      publishErrors: stats.errors,
      frames,
      framesPerSessionPerSecond: Math.round((frames / Math.max(1, s.ready) / seconds) * 10) / 10,
      maxExpectedFrames: maxExpected,
      serverCpuSeconds: Math.round(cpu * 100) / 100,
      serverUserSeconds: Math.round(user * 100) / 100,
      serverSystemSeconds: Math.round(system * 100) / 100,
      cpuMicrosPerFrame: Math.round(((cpu * 1e6) / Math.max(1, frames)) * 100) / 100,
      loopDelayMaxMs,
      serverCpuPercent: Math.round((cpu / (seconds + 1)) * 1000) / 10,
      cpuMicrosPerPublished: Math.round((cpu * 1e6) / Math.max(1, stats.published)),
      conflatedFramesToUws: f0 !== null && f1 !== null ? f1 - f0 : null,
      conflatedSkipped: k0 !== null && k1 !== null ? k1 - k0 : null,
      closed: s.closed,
      ok: s.ready === sessions && stats.errors === 0 && s.closed === 0 && (conflateMs > 0 ? frames <= maxExpected && frames > 0 : frames === maxExpected),
    };
  } finally {
    pub.kill();
    fleet.kill();
    await target.stop();
  }
}

async function main(): Promise<void> {
  const env = envHeader(ROOT);
  const cases: Case[] = [];
  for (const { conflateMs: ms, rate } of caseList) {
    process.stderr.write(`conflation: ${sessions} sessions, ${rate} msg/s for ${seconds} s, conflate ${ms || 'off'}\n`);
    const c = await runCase(ms, rate);
    process.stderr.write(`  ${JSON.stringify(c)}\n`);
    cases.push(c);
  }
  env.loadAverage.end = Math.round(os.loadavg()[0] * 100) / 100;
  const base0 = cases[0];
  const lines = [
    '## conflation',
    '',
    ...envLines(env),
    '',
    `${sessions.toLocaleString('en-US')} sessions on one topic (/px/0), ${workgroups} workgroups (--benchmark-mode), benchsub native (1 process); benchpub updates the topic R times a second with ${size}-byte messages for ${seconds} s over one WebSocket. Frames and server CPU from the publisher's start to 1 s after its end. "ok": every session ready, none closed, no publish refused, and every message delivered (plain) or at most one frame per interval (conflated).`,
    '',
    '| conflate | updates/s | published | frames received | frames / session / s | at most (conflated) | server CPU s (user + sys) | % of one core | CPU µs per frame | worst loop delay ms | frames to uWS by groups | skipped by groups | CPU vs first case | ok |',
    '|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---|',
  ];
  for (const c of cases) {
    const ratio = base0 && base0 !== c && base0.serverCpuSeconds > 0 ? `${((c.serverCpuSeconds / base0.serverCpuSeconds) * 100).toFixed(1)} %` : '–';
    lines.push(
      `| ${c.conflateMs === 0 ? 'off' : `${c.conflateMs} ms`} | ${c.rate} | ${c.published.toLocaleString('en-US')} | ${c.frames.toLocaleString('en-US')} | ${c.framesPerSessionPerSecond} | ${c.conflateMs > 0 ? c.maxExpectedFrames.toLocaleString('en-US') : '–'} | ${c.serverCpuSeconds} (${c.serverUserSeconds} + ${c.serverSystemSeconds}) | ${c.serverCpuPercent} | ${c.cpuMicrosPerFrame} | ${c.loopDelayMaxMs ?? '–'} | ${c.conflatedFramesToUws ?? '–'} | ${c.conflatedSkipped ?? '–'} | ${ratio} | ${c.ok ? 'yes' : 'NO'} |`,
    );
  }
  const md = `${lines.join('\n')}\n`;
  process.stdout.write(md);
  const dir = path.join(ROOT, 'bench', 'results');
  fs.mkdirSync(dir, { recursive: true });
  const base = path.join(dir, `conflation-${env.date.replace(/[:.]/g, '-').replace(/-\d{3}Z$/, 'Z')}`);
  fs.writeFileSync(`${base}.json`, `${JSON.stringify({ benchmark: 'conflation', env, params: { sessions, seconds, size, workgroups, cases: caseList }, cases }, null, 2)}\n`);
  fs.writeFileSync(`${base}.md`, md);
  process.stdout.write(`${JSON.stringify({ msg: 'conflation done', files: [`${base}.json`, `${base}.md`], ok: cases.every((c) => c.ok) })}\n`);
  process.exit(cases.every((c) => c.ok) ? 0 : 1);
}

main().catch((err) => {
  process.stderr.write(`conflation: ${(err as Error).stack ?? err}\n`);
  process.exit(1);
});
