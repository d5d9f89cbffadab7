// What wildcard subscriptions cost per message: servers of one workgroup
// holding 0, 1,000 or 100,000 patterns (none matching the published
// topics: `/idle/<s>/<j>/*` and `/t/x<j>/>`, the latter sharing the
// published topics' first segment so that the trie walks into it), and
// one subscriber of every published topic, by exact names or (the
// `-via-pattern` target) through one pattern `/t/*`. Every target runs at
// once; the publisher visits them in turn, round after round, in a
// rotating order: per visit it sends --messages publishes (no ack) over
// --topics topics from --pub-connections connections, as fast as the
// server takes them, and waits until the subscriber has all of them.
// Server CPU per message (user + system, from /proc) is the figure; the
// publisher and subscriber share the machine, so wall-clock msg/s is
// bounded by them too.
//
//   npm run lab:build && flock /tmp/bench.lock node dist-lab/bench/lab/pattern-cost.js
//       [--patterns 0,1000,100000] [--via-pattern 100000] [--topics 1000]
//       [--messages 200000] [--rounds 3] [--size 64] [--pub-connections 2]
//
// Writes bench/results/pattern-cost-<date>.{json,md}.
import * as fs from 'node:fs';
import * as path from 'node:path';
import WebSocket from 'ws';
import { envHeader } from '../env';
import { ROOT } from '../paths';
import { envLines } from '../report';
import { startTarget, type Target } from '../targets';
import { arg, refuseUnknown } from './args';

refuseUnknown(['patterns', 'via-pattern', 'topics', 'messages', 'rounds', 'size', 'pub-connections']);
const nums = (name: string, fallback: string): number[] => arg(name, fallback).split(',').filter(Boolean).map(Number);
const patternCounts = nums('patterns', '0,1000,100000');
const viaPattern = nums('via-pattern', '100000');
const topics = Number(arg('topics', '1000'));
const messages = Number(arg('messages', '200000'));
const rounds = Number(arg('rounds', '3'));
const size = Number(arg('size', '64'));
const pubConnections = Number(arg('pub-connections', '2'));
const PATTERNS_PER_SESSION = 1000;

interface Entry {
  name: string;
  patterns: number;
  via: 'exact' | 'pattern';
  target?: Target;
  holders: WebSocket[];
  subscriber?: WebSocket;
  received: number;
  visits: { round: number; cpuMicrosPerMessage: number; messagesPerSecond: number }[];
}

function open(url: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

/** Sends one command and waits for its reply (the only replies these sessions get). */
function request(ws: WebSocket, cmd: Record<string, unknown>): Promise<Record<string, unknown>> {
  return new Promise((resolve) => {
    const onMessage = (data: Buffer): void => {
      const m = JSON.parse(data.toString('utf8')) as Record<string, unknown>;
      if (m.id !== cmd.id) return;
      ws.off('message', onMessage);
      resolve(m);
    };
    ws.on('message', onMessage);
    ws.send(JSON.stringify(cmd));
  });
}

async function setUp(e: Entry): Promise<void> {
  const serveArgs = ['--benchmark-mode', '--max-patterns', String(Math.max(200_000, e.patterns + 10)), '--max-patterns-per-session', String(PATTERNS_PER_SESSION)];
  e.target = await startTarget('c10m', { name: e.name, workgroups: 1, serveArgs });
  const url = `ws://127.0.0.1:${e.target.port}/v1/ws`;
  for (let s = 0; s * PATTERNS_PER_SESSION < e.patterns; s++) {
    const ws = await open(url);
    e.holders.push(ws);
    const list: string[] = [];
    for (let j = 0; j < PATTERNS_PER_SESSION && s * PATTERNS_PER_SESSION + j < e.patterns; j++) list.push(j % 2 === 0 ? `/idle/${s}/${j}/*` : `/t/x${s}-${j}/>`);
    const r = await request(ws, { id: 1, op: 'sub', topics: list });
    if (r.ok !== true) throw new Error(`${e.name}: pattern sub refused: ${JSON.stringify(r).slice(0, 300)}`);
  }
  const sub = await open(url);
  e.subscriber = sub;
  const names = e.via === 'pattern' ? ['/t/*'] : Array.from({ length: topics }, (_, k) => `/t/${k}`);
  for (let i = 0; i < names.length; i += 1000) {
    const r = await request(sub, { id: `s${i}`, op: 'sub', topics: names.slice(i, i + 1000) });
    if (r.ok !== true) throw new Error(`${e.name}: sub refused: ${JSON.stringify(r).slice(0, 300)}`);
  }
  sub.on('message', () => {
    e.received++;
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function visit(e: Entry, round: number): Promise<void> {
  const target = e.target as Target;
  const url = `ws://127.0.0.1:${target.port}/v1/ws`;
  const pubs = await Promise.all(Array.from({ length: pubConnections }, () => open(url)));
  const payload = JSON.stringify('x'.repeat(Math.max(0, size - 2)));
  const frames = Array.from({ length: topics }, (_, k) => `{"id":0,"op":"pub","topic":"/t/${k}","data":${payload}}`);
  const want = e.received + messages;
  const c0 = target.cpuSeconds();
  const t0 = performance.now();
  let sent = 0;
  while (sent < messages) {
    for (const ws of pubs) {
      // Keep a few hundred KiB in flight per connection: as fast as the server reads, no faster.
      for (let i = 0; i < 256 && sent < messages && ws.bufferedAmount < 512 * 1024; i++, sent++) ws.send(frames[sent % topics]);
    }
    await sleep(0);
  }
  const deadline = Date.now() + 120_000;
  while (e.received < want) {
    if (Date.now() > deadline) throw new Error(`${e.name}: ${want - e.received} deliveries missing after 120 s`);
    await sleep(2);
  }
  const dt = (performance.now() - t0) / 1000;
  const cpu = target.cpuSeconds() - c0;
  for (const ws of pubs) ws.close();
  e.visits.push({ round, cpuMicrosPerMessage: Math.round(((cpu * 1e6) / messages) * 100) / 100, messagesPerSecond: Math.round(messages / dt) });
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

async function main(): Promise<void> {
  const env = envHeader(ROOT);
  const entries: Entry[] = [];
  for (const p of patternCounts) entries.push({ name: `patterns-${p}`, patterns: p, via: 'exact', holders: [], received: 0, visits: [] });
  for (const p of viaPattern) entries.push({ name: `patterns-${p}-via-pattern`, patterns: p, via: 'pattern', holders: [], received: 0, visits: [] });
  try {
    for (const e of entries) {
      const t0 = Date.now();
      await setUp(e);
      process.stderr.write(`${e.name}: ready in ${Date.now() - t0} ms (rss ${Math.round((e.target as Target).rssBytes() / 1048576)} MiB)\n`);
    }
    for (let r = 0; r < rounds; r++) {
      for (let i = 0; i < entries.length; i++) {
        const e = entries[(i + r) % entries.length];
        await visit(e, r);
        const v = e.visits[e.visits.length - 1];
        process.stderr.write(`round ${r} ${e.name}: ${v.cpuMicrosPerMessage} µs CPU/msg, ${v.messagesPerSecond} msg/s\n`);
      }
    }
  } finally {
    for (const e of entries) {
      for (const ws of e.holders) ws.terminate();
      e.subscriber?.terminate();
      await e.target?.stop();
    }
  }
  const rows = entries.map((e) => ({
    name: e.name,
    patterns: e.patterns,
    subscriber: e.via,
    cpuMicrosPerMessage: median(e.visits.map((v) => v.cpuMicrosPerMessage)),
    messagesPerSecond: median(e.visits.map((v) => v.messagesPerSecond)),
    visits: e.visits,
  }));
  const base = rows[0].cpuMicrosPerMessage;
  const md = [
    `# pattern-cost ${new Date().toISOString()}`,
    '',
    ...envLines(env),
    `- command: node dist-lab/bench/lab/pattern-cost.js ${process.argv.slice(2).join(' ')}`,
    `- 1 workgroup; ${topics} topics, ${messages} publishes of ${size} B per visit, ${rounds} rounds, ${pubConnections} publisher connections; medians of the visits`,
    '',
    '| target | patterns in the node | subscriber | server CPU µs/msg | vs first | msg/s (wall) | per visit (µs/msg) |',
    '|---|---:|---|---:|---:|---:|---|',
    ...rows.map(
      (r) =>
        `| ${r.name} | ${r.patterns.toLocaleString('en')} | ${r.subscriber} | ${r.cpuMicrosPerMessage} | x ${(r.cpuMicrosPerMessage / base).toFixed(2)} | ${r.messagesPerSecond.toLocaleString('en')} | ${r.visits.map((v) => v.cpuMicrosPerMessage).join(', ')} |`,
    ),
  ].join('\n');
  const dir = path.join(ROOT, 'bench', 'results');
  fs.mkdirSync(dir, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  fs.writeFileSync(path.join(dir, `pattern-cost-${stamp}.json`), JSON.stringify({ env, topics, messages, size, rounds, rows }, null, 2));
  fs.writeFileSync(path.join(dir, `pattern-cost-${stamp}.md`), md + '\n');
  process.stdout.write(md + '\n');
}

main().catch((err) => {
  process.stderr.write(`${(err as Error).stack ?? err}\n`);
  process.exit(1);
});
