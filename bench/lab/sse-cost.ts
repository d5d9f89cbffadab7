// What an SSE stream (GET /v1/sse) costs against a WebSocket session, in one
// run on one server: idle memory per session (the server's RSS and its
// workgroups' V8 heap, before and after N sessions of each transport, each
// subscribed to one topic), and delivered messages/s (K messages published
// to a topic as fast as one publisher sends them; deliveries counted at
// every subscriber until each has all K: N x K / the time the last one
// took). Both kinds of client are raw sockets in this process that only
// count (WebSocket: frame headers; SSE: message events), so that neither
// side's client library is measured. WebSocket first, then SSE, each
// measured with the other's sessions connected and idle.
//
//   npm run lab:build && flock /tmp/bench.lock node dist-lab/bench/lab/sse-cost.js
//       [--sessions 2000] [--messages 500] [--size 100] [--workgroups 1] [--rounds 3]
//
// Writes bench/results/sse-cost-<date>.{json,md}.
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { envHeader } from '../env';
import { CLI, ROOT } from '../paths';
import { envLines } from '../report';
import { arg, refuseUnknown } from './args';

refuseUnknown(['sessions', 'messages', 'size', 'workgroups', 'rounds']);
const SESSIONS = Number(arg('sessions', '2000'));
const MESSAGES = Number(arg('messages', '500'));
const SIZE = Number(arg('size', '100'));
const WORKGROUPS = Number(arg('workgroups', '1'));
const ROUNDS = Number(arg('rounds', '3'));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Counter {
  /** Message deliveries counted. */
  count: number;
  ready: boolean;
}

/** A raw WebSocket client: handshake, one sub, then counts data frames after the sub reply (server frames are unmasked). */
function wsClient(port: number, topic: string): Promise<{ sock: net.Socket; c: Counter }> {
  return new Promise((resolve, reject) => {
    const c: Counter = { count: 0, ready: false };
    const sock = net.connect(port, '127.0.0.1');
    let handshake = true;
    let head = Buffer.alloc(0);
    let skip = 0;
    let frames = 0;
    sock.on('error', reject);
    sock.on('connect', () => {
      sock.write(`GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`);
    });
    sock.on('data', (chunk: Buffer) => {
      let buf = chunk;
      if (handshake) {
        head = Buffer.concat([head, buf]);
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) return;
        handshake = false;
        buf = head.subarray(end + 4);
        head = Buffer.alloc(0);
        const cmd = Buffer.from(JSON.stringify({ id: 1, op: 'sub', topics: [topic] }));
        const frame = Buffer.alloc(6 + cmd.length);
        frame[0] = 0x81;
        frame[1] = 0x80 | cmd.length;
        // Mask 0: the payload as is.
        cmd.copy(frame, 6);
        sock.write(frame);
      }
      // Frame headers only: skip each payload.
      let i = 0;
      if (head.length > 0) {
        buf = Buffer.concat([head, buf]);
        head = Buffer.alloc(0);
      }
      while (i < buf.length) {
        if (skip > 0) {
          const n = Math.min(skip, buf.length - i);
          skip -= n;
          i += n;
          continue;
        }
        if (buf.length - i < 2) {
          head = Buffer.from(buf.subarray(i));
          break;
        }
        const len7 = buf[i + 1] & 0x7f;
        const hl = len7 === 126 ? 4 : len7 === 127 ? 10 : 2;
        if (buf.length - i < hl) {
          head = Buffer.from(buf.subarray(i));
          break;
        }
        const len = len7 === 126 ? buf.readUInt16BE(i + 2) : len7 === 127 ? Number(buf.readBigUInt64BE(i + 2)) : len7;
        const opcode = buf[i] & 0x0f;
        i += hl;
        skip = len;
        if (opcode === 1 || opcode === 2) {
          frames++;
          if (frames === 1) {
            c.ready = true;
            resolve({ sock, c });
          } else c.count++;
        }
      }
    });
  });
}

/** A raw SSE client: counts message events (each begins with its id line) after the ready event. */
function sseClient(port: number, topic: string): Promise<{ sock: net.Socket; c: Counter }> {
  return new Promise((resolve, reject) => {
    const c: Counter = { count: 0, ready: false };
    const sock = net.connect(port, '127.0.0.1');
    let carry = '';
    sock.setEncoding('latin1');
    sock.on('error', reject);
    sock.on('connect', () => sock.write(`GET /v1/sse?topics=${topic} HTTP/1.1\r\nHost: x\r\n\r\n`));
    sock.on('data', (chunk: string) => {
      const text = carry + chunk;
      if (!c.ready) {
        if (text.includes('event: ready')) {
          c.ready = true;
          resolve({ sock, c });
        }
        carry = text.slice(-32);
        return;
      }
      let at = 0;
      for (;;) {
        const j = text.indexOf('data: {"op":"msg"', at);
        if (j < 0) break;
        // Not counted twice: the carry is the end of the last chunk, and a hit in it was counted then unless cut.
        if (j + 17 > carry.length) c.count++;
        at = j + 1;
      }
      carry = text.slice(-17);
    });
  });
}

function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m === null ? 0 : Number(m[1]) * 1024;
}

async function heapBytes(adminPort: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n')) if (line.startsWith('c10m_workgroup_heap_used_bytes{')) sum += Number(line.split(' ').pop());
  return sum;
}

async function openMany(kind: 'ws' | 'sse', port: number, topic: string, n: number): Promise<{ socks: net.Socket[]; counters: Counter[] }> {
  const socks: net.Socket[] = [];
  const counters: Counter[] = [];
  for (let i = 0; i < n; i += 100) {
    const batch = await Promise.all(Array.from({ length: Math.min(100, n - i) }, () => (kind === 'ws' ? wsClient(port, topic) : sseClient(port, topic))));
    for (const b of batch) {
      socks.push(b.sock);
      counters.push(b.c);
    }
  }
  return { socks, counters };
}

/** K publishes over one raw WebSocket (no acks), then the time until every counter has K more: N x K / seconds. */
async function deliveryRate(port: number, topic: string, counters: Counter[]): Promise<{ msgPerSec: number; seconds: number; complete: boolean }> {
  const pub = await wsClient(port, '/lab/unused');
  const start = counters.map((c) => c.count);
  const payload = 'x'.repeat(SIZE);
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < MESSAGES; i++) {
    const cmd = Buffer.from(JSON.stringify({ id: i + 2, op: 'pub', topic, data: payload }));
    const hl = cmd.length < 126 ? 2 : 4;
    const frame = Buffer.alloc(hl + 4 + cmd.length);
    frame[0] = 0x81;
    if (hl === 2) frame[1] = 0x80 | cmd.length;
    else {
      frame[1] = 0x80 | 126;
      frame.writeUInt16BE(cmd.length, 2);
    }
    cmd.copy(frame, hl + 4);
    pub.sock.write(frame);
    if (i % 50 === 49) await new Promise((r) => setImmediate(r));
  }
  const deadline = Date.now() + 120_000;
  let complete = false;
  while (Date.now() < deadline) {
    if (counters.every((c, i) => c.count - start[i] >= MESSAGES)) {
      complete = true;
      break;
    }
    await new Promise((r) => setImmediate(r));
  }
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  pub.sock.destroy();
  let delivered = 0;
  for (let i = 0; i < counters.length; i++) delivered += counters[i].count - start[i];
  return { msgPerSec: delivered / seconds, seconds, complete };
}

async function main(): Promise<void> {
  const env = envHeader(ROOT);
  const args = [CLI, 'serve', '--port', '0', '--admin-port', '0', '--host', '127.0.0.1', '--workgroups', String(WORKGROUPS), '--benchmark-mode', '--max-backpressure-bytes', String(16 * 1024 * 1024)];
  const proc: ChildProcess = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  const ready = await new Promise<{ port: number; adminPort: number }>((resolve, reject) => {
    let buf = '';
    proc.stdout?.on('data', (c: Buffer) => {
      buf += c.toString();
      for (const line of buf.split('\n')) {
        try {
          const l = JSON.parse(line);
          if (l.msg === 'c10m listening') resolve({ port: l.port, adminPort: l.adminPort });
        } catch {
          // not a whole line yet
        }
      }
    });
    proc.on('exit', (code) => reject(new Error(`server exited ${code}`)));
  });
  const pid = proc.pid as number;
  try {
    await sleep(3000);
    const base = { rss: rssBytes(pid), heap: await heapBytes(ready.adminPort) };
    const ws = await openMany('ws', ready.port, '/lab/ws', SESSIONS);
    await sleep(7000);
    const afterWs = { rss: rssBytes(pid), heap: await heapBytes(ready.adminPort) };
    const sse = await openMany('sse', ready.port, '/lab/sse', SESSIONS);
    await sleep(7000);
    const afterSse = { rss: rssBytes(pid), heap: await heapBytes(ready.adminPort) };
    const rounds: { ws: number; sse: number; wsComplete: boolean; sseComplete: boolean }[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      const a = await deliveryRate(ready.port, '/lab/ws', ws.counters);
      await sleep(1000);
      const b = await deliveryRate(ready.port, '/lab/sse', sse.counters);
      await sleep(1000);
      rounds.push({ ws: Math.round(a.msgPerSec), sse: Math.round(b.msgPerSec), wsComplete: a.complete, sseComplete: b.complete });
      console.log(`round ${r + 1}: websocket ${Math.round(a.msgPerSec)} msg/s (${a.seconds.toFixed(2)} s), sse ${Math.round(b.msgPerSec)} msg/s (${b.seconds.toFixed(2)} s)`);
    }
    const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
    const result = {
      env,
      sessions: SESSIONS,
      messages: MESSAGES,
      size: SIZE,
      workgroups: WORKGROUPS,
      memory: {
        websocketRssPerSession: Math.round((afterWs.rss - base.rss) / SESSIONS),
        sseRssPerSession: Math.round((afterSse.rss - afterWs.rss) / SESSIONS),
        websocketHeapPerSession: Math.round((afterWs.heap - base.heap) / SESSIONS),
        sseHeapPerSession: Math.round((afterSse.heap - afterWs.heap) / SESSIONS),
        raw: { base, afterWs, afterSse },
      },
      throughput: { rounds, websocketMedian: median(rounds.map((r) => r.ws)), sseMedian: median(rounds.map((r) => r.sse)) },
    };
    const m = result.memory;
    const lines = [
      `# SSE vs WebSocket: idle memory and delivered msg/s`,
      '',
      ...envLines(env),
      `- ${SESSIONS} sessions of each transport, one topic each; ${MESSAGES} messages of ${SIZE} B per round; --workgroups ${WORKGROUPS}; clients are raw sockets in one process`,
      '',
      '| | WebSocket | SSE | SSE / WebSocket |',
      '|---|---|---|---|',
      `| server RSS per idle session | ${m.websocketRssPerSession} B | ${m.sseRssPerSession} B | ${(m.sseRssPerSession / m.websocketRssPerSession).toFixed(2)} |`,
      `| V8 heap per idle session | ${m.websocketHeapPerSession} B | ${m.sseHeapPerSession} B | ${(m.sseHeapPerSession / Math.max(1, m.websocketHeapPerSession)).toFixed(2)} |`,
      `| delivered msg/s (median of ${ROUNDS}) | ${result.throughput.websocketMedian} | ${result.throughput.sseMedian} | ${(result.throughput.sseMedian / result.throughput.websocketMedian).toFixed(2)} |`,
      '',
    ];
    const dir = path.join(ROOT, 'bench', 'results');
    fs.mkdirSync(dir, { recursive: true });
    const stamp = new Date().toISOString().replace(/[:.]/g, '-');
    fs.writeFileSync(path.join(dir, `sse-cost-${stamp}.json`), JSON.stringify(result, null, 2));
    fs.writeFileSync(path.join(dir, `sse-cost-${stamp}.md`), lines.join('\n'));
    console.log(lines.join('\n'));
    for (const s of [...ws.socks, ...sse.socks]) s.destroy();
  } finally {
    proc.kill('SIGTERM');
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
