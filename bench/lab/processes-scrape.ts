// What the admin port of a node of many processes costs to scrape: `c10m
// serve --processes N --engine redis` (empty, one workgroup each), then
// --scrapes requests to /metrics and to /jmx one after the other: the c10m_
// series of /metrics, the bytes of each answer and its time (median and
// worst; the first scrapes of a process are slower). Run once per build
// named (--cli, and --before-cli for the comparison), one after the other.
//
//   npm run lab:build && flock /tmp/bench.lock node dist-lab/bench/lab/processes-scrape.js
//     [--processes 50] [--scrapes 20] [--before-cli PATH] [--cli PATH]
//
// Prints a table and writes bench/results/processes-scrape-<date>.json.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CLI, ROOT } from '../paths';
import { startRedis } from '../redis';
import { spawnUntilReady } from '../spawn';
import { arg, refuseUnknown } from './args';

interface Scrape {
  path: string;
  bytes: number;
  series: number;
  /** Series carrying a process label. */
  processSeries: number;
  medianMs: number;
  maxMs: number;
}

interface RunResult {
  name: string;
  cli: string;
  startSeconds: number;
  scrapes: Scrape[];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function scrape(adminPort: number, p: string, times: number): Promise<Scrape> {
  const ms: number[] = [];
  let body = '';
  for (let i = 0; i < times; i++) {
    const t0 = performance.now();
    const res = await fetch(`http://127.0.0.1:${adminPort}${p}`);
    body = await res.text();
    ms.push(performance.now() - t0);
    await sleep(200);
  }
  ms.sort((a, b) => a - b);
  const lines = p === '/metrics' ? body.split('\n').filter((l) => l.startsWith('c10m_')) : [];
  return {
    path: p,
    bytes: Buffer.byteLength(body),
    series: lines.length,
    processSeries: lines.filter((l) => l.includes('process="')).length,
    medianMs: Math.round(ms[Math.floor(ms.length / 2)] * 10) / 10,
    maxMs: Math.round(ms[ms.length - 1] * 10) / 10,
  };
}

async function runOne(name: string, cli: string, processes: number, scrapes: number, redisUrl: string): Promise<RunResult> {
  const t0 = Date.now();
  const s = await spawnUntilReady({
    args: [cli, 'serve', '--port', '0', '--admin-port', '0', '--host', '127.0.0.1', '--engine', 'redis', '--redis-url', redisUrl, '--processes', String(processes), '--log-level', 'info'],
    stderr: 'inherit',
    keep: 0,
    ready: (l) => l.msg === 'c10m listening',
    readyTimeoutMs: 180_000,
  });
  try {
    const startSeconds = (Date.now() - t0) / 1000;
    const adminPort = s.ready.adminPort as number;
    // Every process reports once a second; let the first reports and the start's load settle.
    await sleep(10_000);
    return { name, cli, startSeconds, scrapes: [await scrape(adminPort, '/metrics', scrapes), await scrape(adminPort, '/jmx', scrapes)] };
  } finally {
    await s.stop();
  }
}

async function main(): Promise<void> {
  refuseUnknown(['processes', 'scrapes', 'before-cli', 'cli']);
  const processes = Number(arg('processes', '50'));
  const scrapes = Number(arg('scrapes', '20'));
  const runs: [string, string][] = [];
  if (arg('before-cli', '') !== '') runs.push(['before', arg('before-cli', '')]);
  runs.push(['after', arg('cli', CLI)]);
  const redis = await startRedis();
  const results: RunResult[] = [];
  try {
    for (const [name, cli] of runs) {
      console.log(`${name}: ${cli}, --processes ${processes}`);
      results.push(await runOne(name, cli, processes, scrapes, redis.url));
    }
  } finally {
    await redis.stop();
  }
  console.log('\nrun      start s  path      bytes  c10m_ series  with process  median ms  max ms');
  for (const r of results) {
    for (const x of r.scrapes) {
      console.log(
        `${r.name.padEnd(8)} ${r.startSeconds.toFixed(1).padStart(7)}  ${x.path.padEnd(8)} ${String(x.bytes).padStart(6)}  ${String(x.series).padStart(12)}  ${String(x.processSeries).padStart(12)}  ${String(x.medianMs).padStart(9)}  ${String(x.maxMs).padStart(6)}`,
      );
    }
  }
  const dir = path.join(ROOT, 'bench', 'results');
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `processes-scrape-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  fs.writeFileSync(file, JSON.stringify({ processes, scrapes, machine: { cpus: os.cpus().length, node: process.version, kernel: os.release() }, results }, null, 2));
  console.log(`\nwrote ${path.relative(ROOT, file)}`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
