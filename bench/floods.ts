// What two floods an anonymous client can throw cost a node, as figures:
//
// 1. connections: more WebSocket upgrades than the server has descriptors
//    (21,000 against this machine's 20,000 per process), held for --seconds,
//    from several flood-worker processes on loopback addresses. Figures:
//    server CPU % and RSS while they are held, how many got 101, and how
//    long /healthz took to answer (asked every 500 ms).
// 2. publish: one session publishing as fast as its socket takes it for
//    --seconds to a topic with a subscriber, while another session of the
//    same workgroup pings every 10 ms; then the same with a flooder that
//    opens a new session each time one is closed. Figures: the pinging
//    session's round trip p50/p99/max beside the same with no flood, server
//    CPU % and RSS, and what the flooder sent and got.
//
//   npm run build && node dist/bench/floods.js [--cli bin/c10m.js]
//       [--connections 21000] [--seconds 10] [--workgroups 2] [--only connections|publish]
//
// --cli runs another checkout's build (before/after). Writes
// bench/results/floods-<date>.json and prints a table.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import WebSocket from 'ws';
import { envHeader } from './env';
import { newHistogram, recordMicros, summarize } from './histogram';
import { benchEntry, ROOT } from './paths';
import { envLines } from './report';
import { startTarget, type Target } from './targets';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}
const cli = path.resolve(arg('cli', path.join(ROOT, 'bin', 'c10m.js')));
const floodConnections = Number(arg('connections', '21000'));
const seconds = Number(arg('seconds', '10'));
const workgroups = Number(arg('workgroups', '2'));
const only = arg('only', '');
/** Connections per flood-worker process (each has its own descriptor limit). */
const PER_WORKER = 10_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function runWorker(args: string[]): Promise<Record<string, unknown>[]> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [benchEntry('flood-worker'), ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (c: string) => (out += c));
    child.on('exit', () =>
      resolve(
        out
          .split('\n')
          .filter(Boolean)
          .map((l) => JSON.parse(l) as Record<string, unknown>),
      ),
    );
  });
}

/** Samples server CPU and RSS, and /healthz answer times, until stop(). */
function watch(target: Target) {
  const startCpu = target.cpuSeconds();
  const startMs = Date.now();
  let peakRss = 0;
  const health: number[] = [];
  let healthFailures = 0;
  let running = true;
  const loop = (async () => {
    while (running) {
      peakRss = Math.max(peakRss, target.rssBytes());
      const t0 = performance.now();
      try {
        const res = await fetch(`http://127.0.0.1:${target.adminPort}/healthz`, { signal: AbortSignal.timeout(5000) });
        await res.text();
        health.push(performance.now() - t0);
      } catch {
        healthFailures++;
      }
      await sleep(500);
    }
  })();
  return async () => {
    running = false;
    await loop;
    const cpuPct = ((target.cpuSeconds() - startCpu) / ((Date.now() - startMs) / 1000)) * 100;
    health.sort((a, b) => a - b);
    return {
      serverCpuPct: Math.round(cpuPct),
      peakRssMiB: Math.round(peakRss / 1048576),
      healthzMaxMs: Math.round(health[health.length - 1] ?? NaN),
      healthzAnswers: health.length,
      healthzFailures: healthFailures,
    };
  };
}

async function connectionFlood(): Promise<Record<string, unknown>> {
  const target = await startTarget('c10m', { cli, workgroups, budgets: true });
  try {
    const idle = { rssMiB: Math.round(target.rssBytes() / 1048576) };
    const stop = watch(target);
    const workers: Promise<Record<string, unknown>[]>[] = [];
    for (let i = 0, left = floodConnections; left > 0; i++, left -= PER_WORKER) {
      workers.push(runWorker(['connections', String(target.port), String(Math.min(PER_WORKER, left)), `127.0.0.${10 + i}`, String(seconds)]));
    }
    const reports = (await Promise.all(workers)).flat().filter((r) => r.phase === 'done');
    const held = await stop();
    const sum = (k: string) => reports.reduce((s, r) => s + Number(r[k] ?? 0), 0);
    return { idle, ...held, upgraded: sum('upgraded'), refused: sum('refused'), failedConnects: sum('failed') };
  } finally {
    await target.stop();
  }
}

async function pingRtts(url: string, ms: number): Promise<number[]> {
  const ws = new WebSocket(`${url}?encoding=json`);
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  const rtts: number[] = [];
  const sentAt = new Map<number, number>();
  ws.on('message', (d: Buffer) => {
    const m = JSON.parse(d.toString()) as { id?: number };
    const t = m.id === undefined ? undefined : sentAt.get(m.id);
    if (t !== undefined) rtts.push(performance.now() - t);
  });
  const end = Date.now() + ms;
  for (let id = 1; Date.now() < end; id++) {
    sentAt.set(id, performance.now());
    ws.send(JSON.stringify({ id, op: 'ping' }));
    await sleep(10);
  }
  await sleep(200);
  ws.close();
  return rtts;
}

/** Round trips (ms) through bench/histogram.ts, the benchmarks' one percentile. */
function rttFigures(rtts: number[]) {
  if (rtts.length === 0) return { pings: 0, p50Ms: NaN, p99Ms: NaN, maxMs: NaN };
  const h = newHistogram();
  for (const rtt of rtts) recordMicros(h, rtt * 1000);
  const s = summarize(h);
  return { pings: rtts.length, p50Ms: +s.p50Ms.toFixed(2), p99Ms: +s.p99Ms.toFixed(2), maxMs: +s.maxMs.toFixed(2) };
}

async function publishFlood(reconnect: boolean): Promise<Record<string, unknown>> {
  // One workgroup: the flooder and the pinger share it.
  const target = await startTarget('c10m', { cli, workgroups: 1, budgets: true });
  const url = `ws://127.0.0.1:${target.port}/v1/ws`;
  try {
    const calm = rttFigures(await pingRtts(url, seconds * 1000));
    const stop = watch(target);
    const flooder = runWorker(['publish', url, String(seconds), ...(reconnect ? ['reconnect'] : [])]);
    await sleep(300);
    const flooded = rttFigures(await pingRtts(url, (seconds - 1) * 1000));
    const [f] = await flooder;
    const held = await stop();
    return { calm, flooded, ...held, flooder: f };
  } finally {
    await target.stop();
  }
}

async function main(): Promise<void> {
  const env = envHeader(ROOT);
  const result: Record<string, unknown> = { benchmark: 'floods', env, params: { cli, floodConnections, seconds, workgroups } };
  if (only !== 'publish') result.connections = await connectionFlood();
  if (only !== 'connections') {
    result.publish = await publishFlood(false);
    result.publishReconnecting = await publishFlood(true);
  }
  const dir = path.join(ROOT, 'bench', 'results');
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `floods-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  fs.writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
  console.log(
    [
      '## floods',
      '',
      ...envLines(env),
      '',
      `server: ${cli}`,
      '',
      '```',
      JSON.stringify({ connections: result.connections, publish: result.publish, publishReconnecting: result.publishReconnecting }, null, 2),
      '```',
      '',
      `written: ${path.relative(ROOT, file)}`,
    ].join('\n'),
  );
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
