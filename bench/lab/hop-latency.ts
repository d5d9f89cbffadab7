// Ring hand-off latency between workgroups in a running server: end-to-end
// latency (publisher's ts in the pub command → the subscriber's receive
// time, both CLOCK_REALTIME in microseconds) of four paths through a c10m
// server with two workgroups, published by one session in workgroup A:
//
//   no hop       topic owned by A, subscriber in A: A sequences and delivers
//   deliver hop  topic owned by A, subscriber in B: A ─DELIVER→ B
//   publish hop  topic owned by B, subscriber in B: A ─PUBLISH→ B, B delivers
//   two hops     topic owned by B, subscriber in A: A ─PUBLISH→ B ─DELIVER→ A
//
// The four are published round robin in one run (so machine noise falls on
// all of them alike), at each --rates rate for --seconds. Sessions are
// placed by trying connections (--benchmark-mode spreads them by 4-tuple)
// until a ping reply says the workgroup wanted; topic owners are computed
// with workgroups/topics.ts ownerOf. The subscribers are `ws` clients in
// this process: the JS client adds its own tens of microseconds to every
// path alike, so the differences between paths are the ring hops.
//
//   npm run lab:build && node dist-lab/bench/lab/hop-latency.js [--rates 200,2000] [--seconds 15] [--size 512]
//
// Writes bench/results/hop-latency-<date>.{json,md}.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import WebSocket from 'ws';
import * as hdr from 'hdr-histogram-js';
import { clockMicros } from '../loadgen';
import { packr, unpackr } from '../../protocol/codec';
import { ownerOf } from '../../workgroups/topics';
import { envHeader } from '../env';
import { ROOT } from '../paths';
import { envLines } from '../report';
import { startTarget, type Target } from '../targets';
import { arg } from './args';

const rates = arg('rates', '200,2000').split(',').map(Number);
const seconds = Number(arg('seconds', '15'));
const size = Number(arg('size', '512'));
const WORKGROUPS = 2;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Session {
  ws: WebSocket;
  wg: number;
  onFrame: ((frame: Buffer) => void) | null;
  replies: ((r: Record<string, unknown>) => void)[];
}

async function open(target: Target): Promise<Session> {
  const ws = new WebSocket(`${target.pubUrl}/v1/ws?encoding=msgpack`, { perMessageDeflate: false });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  const s: Session = { ws, wg: -1, onFrame: null, replies: [] };
  ws.on('message', (raw: Buffer) => {
    if (raw[0] === 0xc1) s.onFrame?.(raw);
    else s.replies.shift()?.(unpackr.unpack(raw) as Record<string, unknown>);
  });
  const pong = await request(s, { id: 1, op: 'ping' });
  s.wg = pong.wg as number;
  return s;
}

function request(s: Session, cmd: Record<string, unknown>): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no reply to ${String(cmd.op)} in 10 s`)), 10_000);
    s.replies.push((r) => {
      clearTimeout(t);
      if (r.error) reject(new Error(JSON.stringify(r.error)));
      else resolve(r);
    });
    s.ws.send(packr.pack(cmd));
  });
}

/** A session in workgroup `wg`: opens connections (closing the others) until one lands there. */
async function sessionIn(target: Target, wg: number): Promise<Session> {
  for (let i = 0; i < 64; i++) {
    const s = await open(target);
    if (s.wg === wg) return s;
    s.ws.close();
  }
  throw new Error(`no connection landed in workgroup ${wg} in 64 tries (is --benchmark-mode on?)`);
}

function topicOwnedBy(wg: number, prefix: string): string {
  for (let n = 0; n < 10_000; n++) if (ownerOf(`${prefix}${n}`, WORKGROUPS) === wg) return `${prefix}${n}`;
  throw new Error('no topic found');
}

interface PathCase {
  name: string;
  hops: number;
  topic: string;
  owner: number;
  subscriber: Session;
  hist: hdr.Histogram;
  received: number;
}

async function main(): Promise<void> {
  const env = envHeader(ROOT);
  const target = await startTarget('c10m', { name: 'c10m-wg2', workgroups: WORKGROUPS, serveArgs: ['--benchmark-mode'] });
  const A = 0;
  const B = 1;
  const results: { rate: number; seconds: number; published: number; paths: Record<string, unknown>[] }[] = [];
  try {
    const pub = await sessionIn(target, A);
    const subA = await sessionIn(target, A);
    const subB = await sessionIn(target, B);
    const mk = (name: string, hops: number, owner: number, sub: Session): PathCase => ({
      name,
      hops,
      topic: topicOwnedBy(owner, `/hop/${name.replace(' ', '-')}/`),
      owner,
      subscriber: sub,
      hist: hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: 3 }),
      received: 0,
    });
    const paths = [mk('no hop', 0, A, subA), mk('deliver hop', 1, A, subB), mk('publish hop', 1, B, subB), mk('two hops', 2, B, subA)];
    const byTopic = new Map(paths.map((p) => [p.topic, p]));
    for (const sub of [subA, subB]) {
      const mine = paths.filter((p) => p.subscriber === sub).map((p) => p.topic);
      await request(sub, { id: 2, op: 'sub', topics: mine });
      sub.onFrame = (f) => {
        const now = clockMicros();
        const tlen = f[3];
        const topic = f.toString('latin1', 24, 24 + tlen);
        const ts = f.readUInt32BE(16) * 4294967296 + f.readUInt32BE(20);
        const p = byTopic.get(topic);
        if (!p) return;
        p.received++;
        p.hist.recordValue(Math.max(1, now - ts));
      };
    }
    const data = Buffer.alloc(size, 0x61);
    for (const rate of rates) {
      for (const p of paths) {
        p.hist.reset();
        p.received = 0;
      }
      process.stderr.write(`hop-latency: ${rate} msg/s for ${seconds} s (${paths.map((p) => `${p.name}: ${p.topic} owner ${p.owner}, subscriber in ${p.subscriber.wg}`).join('; ')})\n`);
      // Warm-up: a second at the rate, not recorded.
      let published = 0;
      let id = 10;
      const run = async (secs: number) => {
        const started = performance.now();
        let sent = 0;
        while (performance.now() - started < secs * 1000) {
          const due = Math.floor(((performance.now() - started) / 1000) * rate);
          while (sent < due) {
            const p = paths[sent % paths.length];
            pub.ws.send(packr.pack({ id: ++id, op: 'pub', topic: p.topic, data, ack: false, ts: clockMicros() }));
            sent++;
          }
          await sleep(1);
        }
        return sent;
      };
      await run(1);
      await sleep(300);
      for (const p of paths) {
        p.hist.reset();
        p.received = 0;
      }
      published = await run(seconds);
      await sleep(500);
      const rows = paths.map((p) => ({
        path: p.name,
        hops: p.hops,
        topic: p.topic,
        owner: p.owner,
        subscriberWorkgroup: p.subscriber.wg,
        received: p.received,
        p50Us: p.hist.getValueAtPercentile(50),
        p90Us: p.hist.getValueAtPercentile(90),
        p99Us: p.hist.getValueAtPercentile(99),
        p999Us: p.hist.getValueAtPercentile(99.9),
        maxUs: p.hist.maxValue,
        meanUs: Math.round(p.hist.mean * 10) / 10,
      }));
      results.push({ rate, seconds, published, paths: rows });
    }
    for (const s of [pub, subA, subB]) s.ws.close();
  } finally {
    await target.stop();
  }
  env.loadAverage.end = Math.round(os.loadavg()[0] * 100) / 100;
  const lines = [
    '## hop-latency',
    '',
    ...envLines(env),
    '',
    `c10m with 2 workgroups (--benchmark-mode), one publisher session in workgroup 0 (A), ${size}-byte payloads, the four paths round robin; latency = subscriber receive time − the publisher's ts (µs, CLOCK_REALTIME), after a 1 s warm-up.`,
    '',
  ];
  for (const r of results) {
    const base = r.paths.find((p) => p.hops === 0) as { p50Us: number; p99Us: number };
    lines.push(
      `### ${r.rate} msg/s (${r.rate / 4} per path), ${r.seconds} s, ${r.published} published`,
      '',
      '| path | ring hops | received | p50 µs | p90 µs | p99 µs | p99.9 µs | max µs | mean µs | p50 − no hop | p99 − no hop |',
      '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    );
    for (const p of r.paths as { path: string; hops: number; received: number; p50Us: number; p90Us: number; p99Us: number; p999Us: number; maxUs: number; meanUs: number }[]) {
      lines.push(`| ${p.path} | ${p.hops} | ${p.received} | ${p.p50Us} | ${p.p90Us} | ${p.p99Us} | ${p.p999Us} | ${p.maxUs} | ${p.meanUs} | ${p.p50Us - base.p50Us} | ${p.p99Us - base.p99Us} |`);
    }
    lines.push('');
  }
  const md = `${lines.join('\n')}\n`;
  process.stdout.write(md);
  const dir = path.join(ROOT, 'bench', 'results');
  fs.mkdirSync(dir, { recursive: true });
  const base = path.join(dir, `hop-latency-${env.date.replace(/[:.]/g, '-').replace(/-\d{3}Z$/, 'Z')}`);
  fs.writeFileSync(`${base}.json`, `${JSON.stringify({ benchmark: 'hop-latency', env, params: { rates, seconds, size, workgroups: WORKGROUPS }, results }, null, 2)}\n`);
  fs.writeFileSync(`${base}.md`, md);
  process.stdout.write(`${JSON.stringify({ msg: 'hop-latency done', files: [`${base}.json`, `${base}.md`] })}\n`);
  process.exit(0);
}

main().catch((err) => {
  process.stderr.write(`hop-latency: ${(err as Error).stack ?? err}\n`);
  process.exit(1);
});
