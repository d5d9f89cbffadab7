// Do a crowd's idle timers fall due at once? One node (one workgroup) with
// --sessions idle sessions opened in one burst, each subscribed to one of
// --topics topics, held --hold-seconds; per second: the uWS pings the
// clients received, the workgroup's event-loop delay max (its own monitor,
// /jmx, 10 ms resolution) and the server's CPU (/proc). Run once per server
// build named (--cli, and --before-cli for the comparison, e.g. a worktree
// of main), one after the other in one run.
//
//   npm run lab:build && flock /tmp/bench.lock node dist-lab/bench/lab/ping-spread.js
//     [--sessions 19000] [--topics 1000] [--hold-seconds 100]
//     [--idle-timeout-seconds 40] [--addresses 127.0.4.1-127.0.4.40]
//     [--before-cli PATH] [--cli PATH]
//
// uWS pings a session that sent nothing for idleTimeout less a margin (24 s
// for 40, 104 s for the default 120): 40 shows several rounds in 100 s.
// Prints a table and writes bench/results/ping-spread-<date>.json.
import * as fs from 'node:fs';
import http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { pack } from 'msgpackr';
import { parseSourceAddresses, topicName } from '../addresses';
import { createSubscriberClient } from '../loadgen';
import { CLI, ROOT } from '../paths';
import { spawnUntilReady } from '../spawn';
import { arg, refuseUnknown } from './args';

interface Options {
  sessions: number;
  topics: number;
  holdSeconds: number;
  idleTimeoutSeconds: number;
  addresses: string;
  beforeCli: string;
  cli: string;
}

function parseOptions(): Options {
  refuseUnknown(['sessions', 'topics', 'hold-seconds', 'idle-timeout-seconds', 'addresses', 'before-cli', 'cli']);
  return {
    sessions: Number(arg('sessions', '19000')),
    topics: Number(arg('topics', '1000')),
    holdSeconds: Number(arg('hold-seconds', '100')),
    idleTimeoutSeconds: Number(arg('idle-timeout-seconds', '40')),
    addresses: arg('addresses', '127.0.4.1-127.0.4.40'),
    beforeCli: arg('before-cli', ''),
    cli: arg('cli', CLI),
  };
}

interface Second {
  t: number;
  pings: number;
  loopDelayMaxMs: number | null;
  cpuMs: number;
}

interface RunResult {
  name: string;
  cli: string;
  connectSeconds: number;
  held: number;
  seconds: Second[];
  /** Over the hold: the most pings in one second, the worst loop delay max, the most CPU in one second, and the mean CPU. */
  maxPingsPerSecond: number;
  maxLoopDelayMs: number;
  p99LoopDelayMs: number;
  maxCpuMsPerSecond: number;
  meanCpuMsPerSecond: number;
  totalPings: number;
}

function cpuMs(pid: number): number {
  let total = 0;
  for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      total += (Number(f[11]) + Number(f[12])) * 10; // USER_HZ 100
    } catch {
      // thread ended
    }
  }
  return total;
}

function getJson(port: number, p: string): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: p }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c) => (body += c));
        res.on('end', () => resolve(JSON.parse(body) as Record<string, unknown>));
      })
      .on('error', reject);
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function runOne(name: string, cli: string, o: Options): Promise<RunResult> {
  const s = await spawnUntilReady({
    args: [
      cli,
      'serve',
      '--port',
      '0',
      '--admin-port',
      '0',
      '--host',
      '127.0.0.1',
      '--workgroups',
      '1',
      '--benchmark-mode',
      '--idle-timeout-seconds',
      String(o.idleTimeoutSeconds),
      '--max-sessions',
      String(o.sessions + 500),
    ],
    stderr: 'inherit',
    keep: 0,
    ready: (l) => l.msg === 'c10m listening',
    readyTimeoutMs: 30_000,
  });
  try {
    return await measure(name, cli, o, s.ready.port as number, s.ready.adminPort as number, s.proc.pid as number);
  } finally {
    await s.stop();
  }
}

async function measure(name: string, cli: string, o: Options, port: number, adminPort: number, pid: number): Promise<RunResult> {
  const client = createSubscriberClient(
    {
      url: `ws://127.0.0.1:${port}/v1/ws?encoding=msgpack`,
      connections: o.sessions,
      sourceAddresses: parseSourceAddresses(o.addresses),
      commands: (i) => [{ opcode: 2, payload: pack({ id: 1, op: 'sub', topics: [topicName('/lab/ping/{n}', i % o.topics)] }) }],
      expectedReplies: 1,
      maxPending: 512,
    },
    'native',
  );
  const started = Date.now();
  client.start();
  const connectDeadline = started + 120_000;
  while (client.stats().ready + client.stats().failed < o.sessions && Date.now() < connectDeadline) await sleep(100);
  const connectSeconds = (Date.now() - started) / 1000;
  const seconds: Second[] = [];
  let lastPings = client.stats().pings;
  let lastCpu = cpuMs(pid);
  const holdStart = Date.now();
  for (let t = 1; t <= o.holdSeconds; t++) {
    await sleep(holdStart + t * 1000 - Date.now());
    const st = client.stats();
    const cpu = cpuMs(pid);
    let delay: number | null = null;
    try {
      const doc = await getJson(adminPort, '/jmx');
      const wgs = doc.Workgroups as { EventLoopDelayMaxMs: number | null }[];
      delay = Math.round(Math.max(...wgs.map((w) => w.EventLoopDelayMaxMs ?? 0)) * 10) / 10;
    } catch {
      delay = null;
    }
    seconds.push({ t, pings: st.pings - lastPings, loopDelayMaxMs: delay, cpuMs: cpu - lastCpu });
    lastPings = st.pings;
    lastCpu = cpu;
  }
  const held = client.stats().live;
  client.stop();
  // The first seconds of the hold still carry the connect burst's tail: the figures skip 5 s.
  const hold = seconds.filter((x) => x.t > 5);
  const delays = hold.map((x) => x.loopDelayMaxMs ?? 0).sort((a, b) => a - b);
  return {
    name,
    cli,
    connectSeconds,
    held,
    seconds,
    maxPingsPerSecond: Math.max(...hold.map((x) => x.pings)),
    maxLoopDelayMs: delays[delays.length - 1],
    p99LoopDelayMs: delays[Math.min(delays.length - 1, Math.floor(delays.length * 0.99))],
    maxCpuMsPerSecond: Math.max(...hold.map((x) => x.cpuMs)),
    meanCpuMsPerSecond: hold.reduce((a, x) => a + x.cpuMs, 0) / hold.length,
    totalPings: hold.reduce((a, x) => a + x.pings, 0),
  };
}

async function main(): Promise<void> {
  const o = parseOptions();
  const runs: [string, string][] = [];
  if (o.beforeCli !== '') runs.push(['before', o.beforeCli]);
  runs.push(['after', o.cli]);
  const results: RunResult[] = [];
  for (const [name, cli] of runs) {
    console.log(`${name}: ${cli}, ${o.sessions} sessions in a burst, idle ${o.holdSeconds} s (--idle-timeout-seconds ${o.idleTimeoutSeconds})`);
    const r = await runOne(name, cli, o);
    results.push(r);
    console.log(`  connected in ${r.connectSeconds.toFixed(1)} s, held ${r.held}`);
    console.log(`  per second: ${r.seconds.map((x) => `${x.pings}p/${x.loopDelayMaxMs ?? '-'}ms/${x.cpuMs}cpu`).join(' ')}`);
  }
  console.log('\nover the hold (first 5 s skipped):');
  console.log('run      pings  max pings/s  loop delay max ms (max, p99)  CPU ms/s (max, mean)');
  for (const r of results) {
    console.log(
      `${r.name.padEnd(8)} ${String(r.totalPings).padStart(6)} ${String(r.maxPingsPerSecond).padStart(12)}  ${String(r.maxLoopDelayMs).padStart(14)}, ${String(r.p99LoopDelayMs).padStart(5)}             ${String(r.maxCpuMsPerSecond).padStart(5)}, ${r.meanCpuMsPerSecond.toFixed(1)}`,
    );
  }
  const dir = path.join(ROOT, 'bench', 'results');
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `ping-spread-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  fs.writeFileSync(file, JSON.stringify({ options: o, machine: { cpus: os.cpus().length, node: process.version, kernel: os.release() }, results }, null, 2));
  console.log(`\nwrote ${path.relative(ROOT, file)}`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
