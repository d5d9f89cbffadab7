// Resume throughput end to end: one topic with C cached messages, K clients
// that all subscribe with resume from seq 0 of the topic's current epoch at
// once, and the replayed messages per second they receive between them.
//
//   npm run lab:build && node dist-lab/bench/lab/resume.js [--workgroups 1,2]
//       [--cached 1000,100000] [--clients 1000,20] [--size 512] [--rounds 3]
//
// For each workgroup count and each cached count (with the client count at
// the same position of --clients): a c10m server (--benchmark-mode,
// --cache-messages at least C, --cache-topic-bytes and --cache-bytes big
// enough for C messages of --size bytes), a publisher that puts C messages
// on /resume/0 (acks, so the epoch and the last seq are known), then
// --rounds rounds of K clients (benchsub's native epoll client, one
// process), each subscribing with resume {"/resume/0": [epoch, 0]}. A
// client is done when its sub reply arrives, which the server sends after
// the last replayed message. Per round: replayed messages received (checked
// exactly: C per client), the time from the first socket() to the last sub
// reply, and replayed messages/s = messages / that time; the server's CPU
// over the round. With several workgroups the clients land on them by
// 4-tuple: those on the topic's owner get their replay from the cache
// directly, the others through the ring from the owner (REPLAY records).
// Writes bench/results/resume-<date>.{json,md}. Bounded: every wait has a
// timeout, every count is fixed.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import WebSocket from 'ws';
import { packr, unpackr } from '../../protocol/codec';
import { ownerOf } from '../../workgroups/topics';
import { parseSourceAddresses } from '../addresses';
import { envHeader } from '../env';
import { DEFAULT_SOURCE_ADDRESSES } from '../harness';
import { ROOT } from '../paths';
import { envLines } from '../report';
import { SubscriberFleet } from '../sub';
import { startTarget, type Target } from '../targets';
import { arg } from './args';

const list = (name: string, fallback: string) =>
  arg(name, fallback)
    .split(',')
    .map((x) => Number(x.trim()));

const workgroupsList = list('workgroups', '1,2');
const cachedList = list('cached', '1000,100000');
const clientsList = list('clients', '1000,20');
const size = Number(arg('size', '512'));
const rounds = Number(arg('rounds', '3'));
const TOPIC = '/resume/0';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Publishes `count` messages of `size` bytes to TOPIC, at most `window` unacknowledged; returns the topic's epoch and last seq. */
async function fill(target: Target, count: number): Promise<{ epoch: number; seq: number; seconds: number }> {
  const ws = new WebSocket(`${target.pubUrl}/v1/ws?encoding=msgpack`, { perMessageDeflate: false });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  const data = Buffer.alloc(size, 0x61);
  const window = 2000;
  let sent = 0;
  let acked = 0;
  let last = { epoch: 0, seq: 0 };
  const started = performance.now();
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`publishing ${count} messages took over 120 s (${acked} acked)`)), 120_000);
    const pump = () => {
      while (sent < count && sent - acked < window) ws.send(packr.pack({ id: ++sent, op: 'pub', topic: TOPIC, data, ack: true }));
    };
    ws.on('message', (raw: Buffer) => {
      const r = unpackr.unpack(raw) as { ok?: boolean; epoch?: number; seq?: number; error?: { code: string; message: string } };
      if (r.error) {
        clearTimeout(timer);
        reject(new Error(`publish refused: ${r.error.code} ${r.error.message}`));
        return;
      }
      acked++;
      if (typeof r.seq === 'number' && r.seq > last.seq) last = { epoch: r.epoch as number, seq: r.seq };
      if (acked === count) {
        clearTimeout(timer);
        resolve();
      } else pump();
    });
    pump();
  });
  const seconds = (performance.now() - started) / 1000;
  ws.close();
  return { ...last, seconds };
}

interface Round {
  round: number;
  clients: number;
  replayed: number;
  expected: number;
  exact: boolean;
  seconds: number;
  replayedPerSec: number;
  mbPerSec: number;
  serverCpuSeconds: number;
  sessionsPerWorkgroup: string | null;
  /** Server RSS before the round and its peak during it (sampled every 50 ms), MB. */
  rssBeforeMB: number;
  peakRssMB: number;
  /** Ring records that went through a full ring's spill during the round (jmx RingSpillRecords is a gauge; this is RingFullEvents' delta and the peak gauge). */
  ringFullEvents: number | null;
  peakSpillRecords: number | null;
  failed: number;
  errorReplies: number;
  closed: number;
}

async function resumeRound(target: Target, round: number, clients: number, cached: number, epoch: number): Promise<Round> {
  const fleet = new SubscriberFleet({
    url: target.subUrl,
    connections: clients,
    processes: 1,
    sourceAddresses: parseSourceAddresses(arg('source-addresses', DEFAULT_SOURCE_ADDRESSES)),
    topicPattern: '/resume/{n}',
    topicsPerSession: 1,
    topicCount: 1,
    maxPending: 256,
    engine: 'native',
    tickMs: 100,
    resume: { epoch, seq: 0 },
  });
  const cpu0 = target.cpuSeconds();
  const rssBefore = target.memory().rssBytes;
  let peakRss = rssBefore;
  let peakSpill = 0;
  const j0 = await target.jmx();
  const sampler = setInterval(() => {
    peakRss = Math.max(peakRss, target.memory().rssBytes);
  }, 50);
  const spillSampler = setInterval(() => {
    void target.jmx().then((j) => {
      if (j && typeof j.RingSpillRecords === 'number') peakSpill = Math.max(peakSpill, j.RingSpillRecords);
    });
  }, 250);
  try {
    await fleet.start();
    const ok = await fleet.until((s) => s.ready + s.failed >= clients, 300_000);
    clearInterval(sampler);
    clearInterval(spillSampler);
    const cpu = target.cpuSeconds() - cpu0;
    const s = fleet.stats();
    const j = await target.jmx();
    const wgs = j?.Workgroups as { ConnectedSessions: number }[] | undefined;
    const counts = await fleet.connectionCounts();
    await fleet.stop();
    const after = fleet.stats();
    const seconds = s.allReadySeconds > 0 ? s.allReadySeconds : NaN;
    const replayed = after.messages;
    return {
      round,
      clients,
      replayed,
      expected: clients * cached,
      exact: ok && replayed === clients * cached && counts.every((c) => c === cached),
      seconds: Math.round(seconds * 1000) / 1000,
      replayedPerSec: Math.round(replayed / seconds),
      mbPerSec: Math.round((after.bytes / seconds / 2 ** 20) * 10) / 10,
      serverCpuSeconds: Math.round(cpu * 100) / 100,
      sessionsPerWorkgroup: wgs ? wgs.map((w) => w.ConnectedSessions).join('/') : null,
      rssBeforeMB: Math.round(rssBefore / 2 ** 20),
      peakRssMB: Math.round(peakRss / 2 ** 20),
      ringFullEvents: j && j0 ? (j.RingFullEvents as number) - (j0.RingFullEvents as number) : null,
      peakSpillRecords: j ? peakSpill : null,
      failed: after.failed,
      errorReplies: after.errorReplies,
      closed: after.closed,
    };
  } finally {
    clearInterval(sampler);
    clearInterval(spillSampler);
    fleet.kill();
  }
}

async function main(): Promise<void> {
  const env = envHeader(ROOT);
  const cases: { workgroups: number; cached: number; clients: number; owner: number; fillSeconds: number; rounds: Round[]; medianReplayedPerSec: number }[] = [];
  for (const wg of workgroupsList) {
    for (let i = 0; i < cachedList.length; i++) {
      const cached = cachedList[i];
      const clients = clientsList[Math.min(i, clientsList.length - 1)];
      // Room for every message: 24-byte entry header + the msgpack bin header + the payload, padded; twice over.
      const topicBytes = Math.max(1 << 20, 2 ** Math.ceil(Math.log2(cached * (size + 48) * 1.25)));
      const serveArgs = [
        '--benchmark-mode',
        '--cache-messages',
        String(Math.max(cached, 1000)),
        '--cache-topic-bytes',
        String(topicBytes),
        '--cache-bytes',
        String(Math.max(256 * 2 ** 20, topicBytes * wg * 2)),
      ];
      process.stderr.write(`resume: ${wg} workgroup(s), ${cached} cached, ${clients} clients (${serveArgs.join(' ')})\n`);
      const target = await startTarget('c10m', { name: `c10m-wg${wg}`, workgroups: wg, serveArgs });
      try {
        const f = await fill(target, cached);
        if (f.seq < cached) throw new Error(`the topic's last seq is ${f.seq}, expected at least ${cached}`);
        const rs: Round[] = [];
        for (let r = 1; r <= rounds; r++) {
          await sleep(500);
          const res = await resumeRound(target, r, clients, cached, f.epoch);
          process.stderr.write(
            `  round ${r}: ${res.replayed} replayed in ${res.seconds} s = ${res.replayedPerSec}/s (${res.mbPerSec} MB/s), server CPU ${res.serverCpuSeconds} s, sessions per workgroup ${res.sessionsPerWorkgroup ?? '–'}, RSS ${res.rssBeforeMB} → peak ${res.peakRssMB} MB, ring full events ${res.ringFullEvents ?? '–'}, peak spill ${res.peakSpillRecords ?? '–'} records${res.exact ? '' : ' NOT EXACT'}\n`,
          );
          rs.push(res);
        }
        const sorted = rs.map((x) => x.replayedPerSec).sort((a, b) => a - b);
        cases.push({
          workgroups: wg,
          cached,
          clients,
          owner: ownerOf(TOPIC, wg),
          fillSeconds: Math.round(f.seconds * 100) / 100,
          rounds: rs,
          medianReplayedPerSec: sorted[Math.floor(sorted.length / 2)],
        });
      } finally {
        await target.stop();
      }
    }
  }
  env.loadAverage.end = Math.round(os.loadavg()[0] * 100) / 100;
  const lines = [
    '## resume',
    '',
    ...envLines(env),
    '',
    `One topic (${TOPIC}), ${size}-byte payloads; every client subscribes with resume from seq 0 of the current epoch; ${rounds} rounds per case on the same server.`,
    '',
  ];
  lines.push(
    '| workgroups | cached messages | clients | replayed per round | median replayed msg/s | rounds (msg/s) | MB/s (last round) | server CPU s per round | server CPU µs per replayed message (median) | server RSS before → peak MB (worst round) | peak ring spill records | sessions per workgroup (owner) | exact |',
  );
  lines.push('|---:|---:|---:|---:|---:|---|---:|---|---:|---|---:|---|---|');
  for (const c of cases) {
    lines.push(
      `| ${c.workgroups} | ${c.cached.toLocaleString('en-US')} | ${c.clients} | ${c.rounds[0]?.expected.toLocaleString('en-US')} | ${c.medianReplayedPerSec.toLocaleString('en-US')} | ${c.rounds.map((r) => r.replayedPerSec.toLocaleString('en-US')).join(', ')} | ${c.rounds[c.rounds.length - 1]?.mbPerSec} | ${c.rounds.map((r) => r.serverCpuSeconds).join(', ')} | ${median(c.rounds.map((r) => (r.serverCpuSeconds * 1e6) / r.replayed)).toFixed(2)} | ${(() => {
        const w = c.rounds.reduce((a, b) => (b.peakRssMB - b.rssBeforeMB > a.peakRssMB - a.rssBeforeMB ? b : a));
        return `${w.rssBeforeMB} → ${w.peakRssMB}`;
      })()} | ${Math.max(...c.rounds.map((r) => r.peakSpillRecords ?? 0)).toLocaleString('en-US')} | ${c.rounds[0]?.sessionsPerWorkgroup ?? '–'} (wg ${c.owner}) | ${c.rounds.every((r) => r.exact) ? 'yes' : 'NO'} |`,
    );
  }
  const md = `${lines.join('\n')}\n`;
  process.stdout.write(md);
  const dir = path.join(ROOT, 'bench', 'results');
  fs.mkdirSync(dir, { recursive: true });
  const base = path.join(dir, `resume-${env.date.replace(/[:.]/g, '-').replace(/-\d{3}Z$/, 'Z')}`);
  fs.writeFileSync(
    `${base}.json`,
    `${JSON.stringify({ benchmark: 'resume', env, params: { workgroups: workgroupsList, cached: cachedList, clients: clientsList, size, rounds, topic: TOPIC }, cases }, null, 2)}\n`,
  );
  fs.writeFileSync(`${base}.md`, md);
  process.stdout.write(`${JSON.stringify({ msg: 'resume done', files: [`${base}.json`, `${base}.md`], exact: cases.every((c) => c.rounds.every((r) => r.exact)) })}\n`);
  process.exit(cases.every((c) => c.rounds.every((r) => r.exact)) ? 0 : 1);
}

main().catch((err) => {
  process.stderr.write(`resume: ${(err as Error).stack ?? err}\n`);
  process.exit(1);
});
