// How many messages/s one Node SDK subscriber can receive: one C10mClient
// (sdk/client.ts, on `ws`) subscribed to one topic of a real server, fed by a
// publisher process as fast as the subscriber takes them.
//
//   npm run lab:build && node dist-lab/bench/lab/sdk-throughput.js [--seconds=5] [--runs=3] [--size=64] [--window=20000]
//
// Prints a table and writes bench/results/sdk-throughput-<date>.json, which
// starts with the environment header. The publisher (a child process, raw
// `ws`, one pre-encoded pub frame with ack:false) keeps at most --window
// messages in flight ahead of the subscriber's count (sent to it over IPC), so
// the subscriber always has work and the server's per-session send buffer
// never overflows into a slow-consumer close. CPU of the three processes is
// reported: the subscriber near 100% of a core means it is the bottleneck;
// on a shared machine it may not get a whole core, so the rate per CPU-second
// of the subscriber (what it would do with a core to itself) is reported too.
// Here (2 cores) the server's cost per publish exceeds the subscriber's per
// delivery, so the end-to-end rate is the server's and the per-CPU-second
// figure is the subscriber's capacity. The SDK's receive path alone (no
// socket) is measured last, for the split between the SDK's own cost and ws
// plus the kernel.
import { fork, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import WebSocket from 'ws';
import { packr } from '../../protocol/codec';
import { encodeBinaryFrame, encodeJsonFrame } from '../../protocol/frame';
import { connect, type C10mClient } from '../../sdk/client';
import { envHeader } from '../env';
import { CLI, ROOT } from '../paths';
import { spawnUntilReady } from '../spawn';
import { arg } from './args';

type Encoding = 'json' | 'msgpack';

const CLOCK_TICKS_PER_SECOND = 100;

/** user+system CPU seconds of a process, from /proc (Linux). */
function cpuSecondsOf(pid: number): number {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SECOND;
  } catch {
    return NaN;
  }
}

// ---- publisher (child process) ------------------------------------------

function runPublisher(): void {
  const port = Number(arg('port', '0'));
  const topic = arg('topic', '/bench/sdk');
  const encoding = arg('encoding', 'json') as Encoding;
  const size = Number(arg('size', '64'));
  const window = Number(arg('window', '20000'));
  const data = { i: 0, pad: 'x'.repeat(Math.max(0, size - 16)) };
  const cmd = { id: 1, op: 'pub', topic, data, ack: false };
  const frame = encoding === 'json' ? JSON.stringify(cmd) : Buffer.from(packr.pack(cmd));
  const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/ws?encoding=${encoding}`);
  let sent = 0;
  let received = 0;
  let pumping = false;
  let stopped = false;
  const pump = () => {
    pumping = false;
    if (stopped || ws.readyState !== WebSocket.OPEN) return;
    let batch = 0;
    while (sent - received < window && batch < 2000) {
      if (ws.bufferedAmount > 4 * 1024 * 1024) {
        pumping = true;
        setTimeout(pump, 1);
        return;
      }
      ws.send(frame);
      sent++;
      batch++;
    }
    // Window full: the next progress report restarts the pump.
    if (sent - received < window) {
      pumping = true;
      setImmediate(pump);
    }
  };
  process.on('message', (m: { received?: number; stop?: boolean }) => {
    if (m.stop) {
      stopped = true;
      ws.close();
      return;
    }
    if (typeof m.received === 'number') received = m.received;
    if (!pumping) pump();
  });
  ws.on('open', () => {
    process.send?.({ ready: true });
    pump();
  });
  ws.on('error', (err) => {
    console.error(`publisher: ${err.message}`);
    process.exit(1);
  });
  ws.on('close', () => process.exit(0));
}

// ---- the benchmark ------------------------------------------------------

interface ServerProc {
  proc: ChildProcess;
  port: number;
}

async function startServer(): Promise<ServerProc> {
  const s = await spawnUntilReady({
    args: [CLI, 'serve', '--port', '0', '--admin-port', '0', '--host', '127.0.0.1', '--workgroups', '1', '--max-backpressure-bytes', String(64 * 1024 * 1024), '--log-level', 'info'],
    stderr: 'inherit',
    keep: 0,
    ready: (l) => l.msg === 'c10m listening',
  });
  return { proc: s.proc, port: s.ready.port as number };
}

interface RunResult {
  encoding: Encoding;
  messagesPerSecond: number;
  /** Messages per CPU-second of the subscriber: its rate with a core to itself (the machine may be shared). */
  messagesPerSubscriberCpuSecond: number;
  messages: number;
  seconds: number;
  /** CPU used over the window, as a fraction of one core. */
  cpu: { subscriber: number; server: number; publisher: number };
  duplicates: number;
  gaps: number;
  reconnects: number;
}

async function oneRun(server: ServerProc, encoding: Encoding, run: number, seconds: number, size: number, window: number): Promise<RunResult> {
  const topic = `/bench/sdk/${encoding}/${run}`;
  const client: C10mClient = connect(`ws://127.0.0.1:${server.port}`, { encoding, reconnect: false, pingIntervalMs: 0 });
  let count = 0;
  await client.subscribe(topic, () => {
    count++;
  }).ready;
  const publisher = fork(__filename, ['--role=publisher', `--port=${server.port}`, `--topic=${topic}`, `--encoding=${encoding}`, `--size=${size}`, `--window=${window}`], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  await new Promise<void>((resolve, reject) => {
    publisher.once('message', () => resolve());
    publisher.once('exit', (code) => reject(new Error(`publisher exited (${code})`)));
  });
  const progress = setInterval(() => publisher.send({ received: count }), 10);
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  await sleep(1000); // warm-up: JIT, buffers
  const c0 = count;
  const t0 = process.hrtime.bigint();
  const cpu0 = process.cpuUsage();
  const s0 = cpuSecondsOf(server.proc.pid as number);
  const p0 = cpuSecondsOf(publisher.pid as number);
  await sleep(seconds * 1000);
  const c1 = count;
  const elapsed = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  const s1 = cpuSecondsOf(server.proc.pid as number);
  const p1 = cpuSecondsOf(publisher.pid as number);
  clearInterval(progress);
  const exited = new Promise((r) => publisher.once('exit', r));
  publisher.send({ stop: true });
  await exited;
  const result: RunResult = {
    encoding,
    messagesPerSecond: Math.round((c1 - c0) / elapsed),
    messagesPerSubscriberCpuSecond: Math.round((c1 - c0) / ((cpu.user + cpu.system) / 1e6)),
    messages: c1 - c0,
    seconds: Math.round(elapsed * 1000) / 1000,
    cpu: {
      subscriber: Math.round(((cpu.user + cpu.system) / 1e6 / elapsed) * 100) / 100,
      server: Math.round(((s1 - s0) / elapsed) * 100) / 100,
      publisher: Math.round(((p1 - p0) / elapsed) * 100) / 100,
    },
    duplicates: client.stats.duplicates,
    gaps: client.stats.gaps,
    reconnects: client.stats.connections - 1,
  };
  await client.close();
  if (client.stats.connections !== 1) throw new Error(`the subscriber was disconnected during the run (${client.stats.connections} connections)`);
  return result;
}

/** A WebSocket that never connects: the client's receive path fed directly, without ws or the kernel. */
class NoSocket {
  binaryType = 'nodebuffer';
  readyState = 0;
  bufferedAmount = 0;
  onopen = null;
  onmessage = null;
  onclose = null;
  onerror = null;
  send(): void {}
  close(): void {}
}

/** The SDK's own cost per message: decode, dedup, dispatch to a handler, in this process, on pre-built frames. */
function decodeOnly(encoding: Encoding, size: number, messages: number): number {
  const client = connect('ws://127.0.0.1:1', { encoding, WebSocket: NoSocket as never, reconnect: false, pingIntervalMs: 0 });
  let count = 0;
  client.subscribe('/bench/sdk/decode', () => {
    count++;
  });
  const data = { i: 0, pad: 'x'.repeat(Math.max(0, size - 16)) };
  const dataJson = JSON.stringify(data);
  const dataMsgpack = packr.pack(data);
  const ts = Date.now() * 1000;
  const frames: (string | Buffer)[] = new Array(messages);
  for (let i = 0; i < messages; i++) {
    frames[i] = encoding === 'json' ? encodeJsonFrame('/bench/sdk/decode', 7, i + 1, ts, 0, dataJson) : Buffer.from(encodeBinaryFrame('/bench/sdk/decode', 7, i + 1, ts, 0, dataMsgpack));
  }
  const onFrame = (client as unknown as { onFrame(d: unknown): void }).onFrame.bind(client);
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < messages; i++) onFrame(frames[i]);
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  void client.close();
  if (count !== messages) throw new Error(`decode-only: ${count} of ${messages} delivered`);
  return Math.round(messages / seconds);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

async function main(): Promise<void> {
  const seconds = Number(arg('seconds', '5'));
  const runs = Number(arg('runs', '3'));
  const size = Number(arg('size', '64'));
  const window = Number(arg('window', '20000'));
  const env = envHeader(ROOT);
  const server = await startServer();
  const results: RunResult[] = [];
  try {
    for (const encoding of ['json', 'msgpack'] as const) {
      for (let run = 1; run <= runs; run++) {
        const r = await oneRun(server, encoding, run, seconds, size, window);
        results.push(r);
        console.error(
          `${encoding} run ${run}: ${r.messagesPerSecond} msg/s, ${r.messagesPerSubscriberCpuSecond} per subscriber CPU-second (cpu sub ${r.cpu.subscriber}, server ${r.cpu.server}, pub ${r.cpu.publisher})`,
        );
      }
    }
  } finally {
    server.proc.kill('SIGTERM');
  }
  const summary = (['json', 'msgpack'] as const).map((encoding) => {
    const rs = results.filter((r) => r.encoding === encoding);
    const rates = rs.map((r) => r.messagesPerSecond);
    const med = median(rates);
    return {
      encoding,
      messagesPerSecond: med,
      min: Math.min(...rates),
      max: Math.max(...rates),
      spreadPercent: Math.round(((Math.max(...rates) - Math.min(...rates)) / med) * 1000) / 10,
      messagesPerSubscriberCpuSecond: median(rs.map((r) => r.messagesPerSubscriberCpuSecond)),
      cpuSubscriber: median(rs.map((r) => r.cpu.subscriber)),
      cpuServer: median(rs.map((r) => r.cpu.server)),
      cpuPublisher: median(rs.map((r) => r.cpu.publisher)),
      duplicates: rs.reduce((a, r) => a + r.duplicates, 0),
      gaps: rs.reduce((a, r) => a + r.gaps, 0),
    };
  });
  const decode = { json: decodeOnly('json', size, 1_000_000), msgpack: decodeOnly('msgpack', size, 1_000_000) };
  console.log(`\nsdk-throughput: one Node SDK subscriber, one topic, ${size}-byte payloads, ${runs} runs of ${seconds} s (median, min..max)`);
  console.log(`${env.cpu}, ${env.cores} cores, Node ${env.node}, ${env.kernel}, commit ${env.gitCommit}`);
  console.log('encoding   msg/s (median)   min..max              spread   msg per sub CPU-s   cpu sub/server/pub (cores)   dup  gaps');
  for (const s of summary) {
    console.log(
      `${s.encoding.padEnd(10)} ${String(s.messagesPerSecond).padStart(14)}   ${`${s.min}..${s.max}`.padEnd(20)}  ${`${s.spreadPercent}%`.padStart(6)}   ${String(s.messagesPerSubscriberCpuSecond).padStart(17)}   ${`${s.cpuSubscriber} / ${s.cpuServer} / ${s.cpuPublisher}`.padEnd(27)}  ${String(s.duplicates).padStart(3)}  ${String(s.gaps).padStart(4)}`,
    );
  }
  console.log(`SDK receive path alone (decode, dedup, dispatch; no socket), one core: json ${decode.json} msg/s, msgpack ${decode.msgpack} msg/s`);
  const out = { benchmark: 'sdk-throughput', environment: env, parameters: { seconds, runs, payloadBytes: size, window }, summary, decodeOnlyMessagesPerSecond: decode, runs: results };
  const dir = path.join(ROOT, 'bench', 'results');
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `sdk-throughput-${env.date.slice(0, 10)}.json`);
  fs.writeFileSync(file, JSON.stringify(out, null, 2) + '\n');
  console.log(`\nwrote ${path.relative(process.cwd(), file)}`);
}

if (arg('role', 'main') === 'publisher') runPublisher();
else
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
