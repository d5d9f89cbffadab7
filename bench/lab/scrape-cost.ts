// What a scraper costs the data plane: delivered messages/s with and
// without a client polling /metrics and /jmx at 10 Hz, in one run.
//
//   npm run lab:build && node dist-lab/bench/lab/scrape-cost.js [--subscribers 100]
//     [--payload-bytes 128] [--window 64] [--phases 10] [--phase-seconds 6]
//     [--settle-seconds 1] [--scrape-hz 10] [--workgroups 1] [--warmup-seconds 8]
//     [--idle-sessions 0]
//
// One server (a child process) saturated by one publisher (acks, a window of
// publishes in flight) fanning out to raw-socket subscribers that only count
// bytes (no frame parsing, so the load process stays light). Phases alternate
// scraper off / on, so that drift over the run falls on both alike; each
// phase settles before it is measured. Delivered messages are the server's
// own frame counter (read at phase edges: two requests per phase) and the
// bytes the subscribers received confirm them. Phases go off, on, on, off, ...
// so that a linear drift cancels. Per phase it also reads the
// CPU of the server's main thread (where scrapes run) and of its other
// threads (the workgroups) from /proc, to show where a scrape's cost lands
// and that the workgroup was the bottleneck.
//
// Prints a table and writes bench/results/scrape-cost-<date>.json.
import { fork, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import WebSocket from 'ws';
import { nativeStatus } from '../../native-io';
import { CLI, ROOT } from '../paths';
import { spawnUntilReady } from '../spawn';
import { arg, refuseUnknown } from './args';

const TOPIC = '/bench/scrape-cost';

interface Options {
  subscribers: number;
  payloadBytes: number;
  window: number;
  phases: number;
  phaseSeconds: number;
  settleSeconds: number;
  scrapeHz: number;
  workgroups: number;
  warmupSeconds: number;
  /** Extra sessions that only hold a subscription to a silent topic: a scrape must not cost more with them. */
  idleSessions: number;
}

function parseOptions(argv: string[]): Options {
  const o: Options = { subscribers: 100, payloadBytes: 128, window: 64, phases: 10, phaseSeconds: 6, settleSeconds: 1, scrapeHz: 10, workgroups: 1, warmupSeconds: 8, idleSessions: 0 };
  const names = (Object.keys(o) as (keyof Options)[]).map((key) => ({ key, name: key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`) }));
  refuseUnknown(
    names.map((n) => n.name),
    argv,
  );
  for (const { key, name } of names) {
    const text = arg(name, '', argv);
    if (text === '') continue;
    const v = Number(text);
    if (!Number.isFinite(v) || v < 0 || (v === 0 && key !== 'idleSessions')) throw new Error(`--${name} needs a positive number`);
    o[key] = v;
  }
  if (o.phases % 2 !== 0) throw new Error('--phases must be even (off and on alternate)');
  return o;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---- the server -------------------------------------------------------

interface Server {
  proc: ChildProcess;
  port: number;
  adminPort: number;
  uwsNative: boolean;
}

async function startServer(o: Options): Promise<Server> {
  const s = await spawnUntilReady({
    args: [CLI, 'serve', '--port', '0', '--admin-port', '0', '--host', '127.0.0.1', '--workgroups', String(o.workgroups), '--log-level', 'info'],
    stderr: 'inherit',
    keep: 0,
    ready: (l) => l.msg === 'c10m listening',
  });
  return { proc: s.proc, port: s.ready.port as number, adminPort: s.ready.adminPort as number, uwsNative: s.ready.uwsNative as boolean };
}

/** utime + stime in seconds of each thread of a process, by thread id. */
function threadCpuSeconds(pid: number): Map<number, number> {
  const ticks = 100; // USER_HZ: 100 on every Linux ABI Node supports
  const out = new Map<number, number>();
  for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      // fields 14 and 15 of stat (utime, stime); f[0] is field 3
      out.set(Number(tid), (Number(f[11]) + Number(f[12])) / ticks);
    } catch {
      // thread ended
    }
  }
  return out;
}

/** Busy and total jiffies of the whole machine (all cores), from /proc/stat. */
function machineCpu(): { busy: number; total: number } {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const idle = f[3] + (f[4] ?? 0);
  const total = f.reduce((a, b) => a + b, 0);
  return { busy: total - idle, total };
}

interface ServerCpu {
  mainSeconds: number;
  otherSeconds: number;
  /** The busiest other thread (a workgroup under this load). */
  busiest: Map<number, number>;
}

function serverCpu(pid: number): ServerCpu {
  const t = threadCpuSeconds(pid);
  let other = 0;
  for (const [tid, s] of t) if (tid !== pid) other += s;
  return { mainSeconds: t.get(pid) ?? 0, otherSeconds: other, busiest: t };
}

function getJson(port: number, p: string): Promise<Record<string, number>> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: p }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c) => (body += c));
        res.on('end', () => resolve(JSON.parse(body)));
      })
      .on('error', reject);
  });
}

// ---- subscribers: raw sockets that count bytes -------------------------

/** A client-to-server text frame (masked, as RFC 6455 requires). */
function maskedText(text: string): Buffer {
  const data = Buffer.from(text, 'utf8');
  const len = data.length;
  const head = len < 126 ? Buffer.from([0x81, 0x80 | len]) : Buffer.from([0x81, 0x80 | 126, len >> 8, len & 0xff]);
  const mask = randomBytes(4);
  for (let i = 0; i < len; i++) data[i] ^= mask[i & 3];
  return Buffer.concat([head, mask, data]);
}

class Sink {
  bytes = 0;
  closed = false;
  private keepAlive: NodeJS.Timeout | null = null;
  private constructor(private readonly socket: net.Socket) {}

  static open(port: number, topic: string): Promise<Sink> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1');
      const sink = new Sink(socket);
      let head = '';
      let state: 'upgrading' | 'subscribing' | 'counting' = 'upgrading';
      socket.on('error', reject);
      socket.on('close', () => (sink.closed = true));
      socket.on('connect', () => {
        socket.write(
          `GET /v1/ws?encoding=json HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
        );
      });
      socket.on('data', (chunk: Buffer) => {
        if (state === 'counting') {
          sink.bytes += chunk.length;
          return;
        }
        head += chunk.toString('latin1');
        if (state === 'upgrading') {
          const end = head.indexOf('\r\n\r\n');
          if (end < 0) return;
          if (!head.startsWith('HTTP/1.1 101')) return reject(new Error(`upgrade refused: ${head.split('\r\n')[0]}`));
          head = head.slice(end + 4);
          state = 'subscribing';
          socket.write(maskedText(JSON.stringify({ id: 1, op: 'sub', topics: [topic] })));
        }
        if (!head.includes('"ok":true')) {
          if (head.includes('"error"')) reject(new Error(`subscribe refused: ${head}`));
          return;
        }
        state = 'counting';
        // Any frame from the client resets uWS's idle timer (the sink never answers pings).
        sink.keepAlive = setInterval(() => socket.write(maskedText('{"id":2,"op":"ping"}')), 60_000);
        resolve(sink);
      });
    });
  }

  close(): void {
    if (this.keepAlive) clearInterval(this.keepAlive);
    this.socket.destroy();
  }
}

// ---- the publisher: a window of acked publishes in flight --------------

class Publisher {
  acked = 0;
  errors = 0;
  private nextId = 1;
  private inFlight = 0;
  private running = false;
  private readonly suffix: string;

  private constructor(
    private readonly ws: WebSocket,
    private readonly window: number,
    payloadBytes: number,
  ) {
    // The same bytes every time but the id: what a steady feed looks like.
    this.suffix = `,"op":"pub","topic":"${TOPIC}","ack":true,"data":"${'x'.repeat(payloadBytes)}"}`;
    ws.on('message', (data: Buffer) => {
      this.inFlight--;
      if (data.includes('"ok":true')) this.acked++;
      else this.errors++;
      if (this.running) this.fill();
    });
  }

  static async open(port: number, window: number, payloadBytes: number): Promise<Publisher> {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/ws?encoding=json`, { perMessageDeflate: false });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    return new Publisher(ws, window, payloadBytes);
  }

  start(): void {
    this.running = true;
    this.fill();
  }

  private fill(): void {
    while (this.inFlight < this.window) {
      this.inFlight++;
      this.ws.send(`{"id":${this.nextId++}${this.suffix}`);
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    const deadline = Date.now() + 5000;
    while (this.inFlight > 0 && Date.now() < deadline) await sleep(10);
    this.ws.close();
  }
}

// ---- the scraper: a child process, switched on and off ------------------

interface EndpointStats {
  requests: number;
  errors: number;
  bytes: number;
  latenciesMs: number[];
}
interface ScraperReport {
  metrics: EndpointStats;
  jmx: EndpointStats;
  cpuSeconds: number;
}

function runScraperChild(): void {
  const adminPort = Number(process.env.SCRAPE_ADMIN_PORT);
  const hz = Number(process.env.SCRAPE_HZ);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 2 });
  const fresh = (): EndpointStats => ({ requests: 0, errors: 0, bytes: 0, latenciesMs: [] });
  let stats = { metrics: fresh(), jmx: fresh() };
  let on = false;
  let cpu0 = process.cpuUsage();
  const busy = { metrics: false, jmx: false };
  const hit = (name: 'metrics' | 'jmx') => {
    if (!on || busy[name]) return; // never pile up: a slow answer skips a tick
    busy[name] = true;
    const t0 = performance.now();
    http
      .get({ host: '127.0.0.1', port: adminPort, path: `/${name}`, agent }, (res) => {
        let n = 0;
        res.on('data', (c: Buffer) => (n += c.length));
        res.on('end', () => {
          const s = stats[name];
          s.requests++;
          s.bytes += n;
          s.latenciesMs.push(performance.now() - t0);
          if (res.statusCode !== 200) s.errors++;
          busy[name] = false;
        });
      })
      .on('error', () => {
        stats[name].errors++;
        busy[name] = false;
      });
  };
  setInterval(() => {
    hit('metrics');
    hit('jmx');
  }, 1000 / hz);
  process.on('message', (m: { cmd: string }) => {
    if (m.cmd === 'on' || m.cmd === 'off') {
      on = m.cmd === 'on';
      process.send?.({ ok: m.cmd });
    } else if (m.cmd === 'report') {
      const c = process.cpuUsage(cpu0);
      const report: ScraperReport = { ...stats, cpuSeconds: (c.user + c.system) / 1e6 };
      stats = { metrics: fresh(), jmx: fresh() };
      cpu0 = process.cpuUsage();
      process.send?.(report);
    } else if (m.cmd === 'exit') process.exit(0);
  });
}

class Scraper {
  private constructor(private readonly child: ChildProcess) {}
  static start(adminPort: number, hz: number): Scraper {
    const child = fork(__filename, ['--scraper-child'], { env: { ...process.env, SCRAPE_ADMIN_PORT: String(adminPort), SCRAPE_HZ: String(hz) }, stdio: 'inherit' });
    return new Scraper(child);
  }
  private ask<T>(cmd: string): Promise<T> {
    return new Promise((resolve) => {
      this.child.once('message', (m) => resolve(m as T));
      this.child.send({ cmd });
    });
  }
  set(on: boolean): Promise<unknown> {
    return this.ask(on ? 'on' : 'off');
  }
  report(): Promise<ScraperReport> {
    return this.ask('report');
  }
  stop(): void {
    this.child.send({ cmd: 'exit' });
  }
}

// ---- the run ----------------------------------------------------------

interface Phase {
  index: number;
  scraper: boolean;
  seconds: number;
  deliveredPerSecond: number;
  publishesPerSecond: number;
  sinkBytesPerSecond: number;
  serverMainThreadCpuPercent: number;
  serverOtherThreadsCpuPercent: number;
  serverBusiestThreadCpuPercent: number;
  /** CPU the busiest server thread (the workgroup) spent per delivered frame: what a scrape would raise if it cost the data plane anything. */
  workgroupCpuNanosPerFrame: number;
  loadProcessCpuPercent: number;
  scraperProcessCpuPercent: number;
  /** Every core of the machine, 100 per core: what other processes took is this minus the rest. */
  machineCpuPercent: number;
  scrapes: { metrics: number; jmx: number; errors: number };
  scrapeLatencyMs: { metricsP50: number | null; metricsP99: number | null; jmxP50: number | null; jmxP99: number | null };
  scrapeBytes: { metrics: number | null; jmx: number | null };
  slowConsumerCloses: number;
}

function quantile(xs: number[], q: number): number | null {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
}
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const stdev = (xs: number[]) => {
  const m = mean(xs);
  return Math.sqrt(xs.reduce((a, x) => a + (x - m) ** 2, 0) / Math.max(1, xs.length - 1));
};
const round = (x: number, d = 1) => Math.round(x * 10 ** d) / 10 ** d;

async function main(): Promise<void> {
  const o = parseOptions(process.argv.slice(2));
  const server = await startServer(o);
  const pid = server.proc.pid as number;
  const sinks: Sink[] = [];
  for (let i = 0; i < o.subscribers; i++) sinks.push(await Sink.open(server.port, TOPIC));
  const idle: Sink[] = [];
  for (let i = 0; i < o.idleSessions; i += 200) {
    const batch = Math.min(200, o.idleSessions - i);
    idle.push(...(await Promise.all(Array.from({ length: batch }, () => Sink.open(server.port, '/bench/scrape-cost/idle')))));
  }
  const publisher = await Publisher.open(server.port, o.window, o.payloadBytes);
  const scraper = Scraper.start(server.adminPort, o.scrapeHz);
  await scraper.set(false);
  process.stderr.write(`server pid ${pid} on ${server.port} (admin ${server.adminPort}); ${o.subscribers} subscribers; warming up\n`);
  publisher.start();
  await sleep(o.warmupSeconds * 1000); // JIT and socket buffers settle

  const phases: Phase[] = [];
  for (let i = 0; i < o.phases; i++) {
    // off, on, on, off, off, on, ...: a linear drift over the run falls on both alike.
    const scraping = [false, true, true, false][i % 4];
    await scraper.set(scraping);
    await sleep(o.settleSeconds * 1000);
    await scraper.report(); // drop the settling part
    const j0 = await getJson(server.adminPort, '/jmx');
    const cpu0 = serverCpu(pid);
    const machine0 = machineCpu();
    const load0 = process.cpuUsage();
    const bytes0 = sinks.reduce((a, s) => a + s.bytes, 0);
    const acked0 = publisher.acked;
    const t0 = performance.now();
    await sleep(o.phaseSeconds * 1000);
    const seconds = (performance.now() - t0) / 1000;
    const cpu1 = serverCpu(pid);
    const machine1 = machineCpu();
    const load = process.cpuUsage(load0);
    const bytes1 = sinks.reduce((a, s) => a + s.bytes, 0);
    const acked1 = publisher.acked;
    const j1 = await getJson(server.adminPort, '/jmx');
    const r = await scraper.report();
    let busiest = 0;
    for (const [tid, s] of cpu1.busiest) if (tid !== pid) busiest = Math.max(busiest, s - (cpu0.busiest.get(tid) ?? 0));
    const phase: Phase = {
      index: i,
      scraper: scraping,
      seconds: round(seconds, 3),
      // The two /jmx reads bracket the phase a few ms wider than `seconds`: within 0.1%.
      deliveredPerSecond: round((j1.OutPublishMessages - j0.OutPublishMessages) / seconds, 0),
      publishesPerSecond: round((acked1 - acked0) / seconds, 0),
      sinkBytesPerSecond: round((bytes1 - bytes0) / seconds, 0),
      serverMainThreadCpuPercent: round(((cpu1.mainSeconds - cpu0.mainSeconds) / seconds) * 100),
      serverOtherThreadsCpuPercent: round(((cpu1.otherSeconds - cpu0.otherSeconds) / seconds) * 100),
      serverBusiestThreadCpuPercent: round((busiest / seconds) * 100),
      workgroupCpuNanosPerFrame: round((busiest * 1e9) / Math.max(1, j1.OutPublishMessages - j0.OutPublishMessages), 1),
      loadProcessCpuPercent: round(((load.user + load.system) / 1e6 / seconds) * 100),
      scraperProcessCpuPercent: round((r.cpuSeconds / seconds) * 100),
      machineCpuPercent: round(((machine1.busy - machine0.busy) / (machine1.total - machine0.total)) * os.availableParallelism() * 100),
      scrapes: { metrics: r.metrics.requests, jmx: r.jmx.requests, errors: r.metrics.errors + r.jmx.errors },
      scrapeLatencyMs: {
        metricsP50: quantile(r.metrics.latenciesMs, 0.5),
        metricsP99: quantile(r.metrics.latenciesMs, 0.99),
        jmxP50: quantile(r.jmx.latenciesMs, 0.5),
        jmxP99: quantile(r.jmx.latenciesMs, 0.99),
      },
      scrapeBytes: { metrics: r.metrics.requests ? Math.round(r.metrics.bytes / r.metrics.requests) : null, jmx: r.jmx.requests ? Math.round(r.jmx.bytes / r.jmx.requests) : null },
      slowConsumerCloses: j1.SlowConsumerDisconnects - j0.SlowConsumerDisconnects,
    };
    phases.push(phase);
    process.stderr.write(
      `phase ${i} scraper ${scraping ? 'on ' : 'off'}: ${phase.deliveredPerSecond} delivered/s, server main ${phase.serverMainThreadCpuPercent}% busiest ${phase.serverBusiestThreadCpuPercent}%\n`,
    );
  }

  await publisher.stop();
  scraper.stop();
  const closedSinks = sinks.filter((s) => s.closed).length + idle.filter((s) => s.closed).length;
  for (const s of sinks) s.close();
  for (const s of idle) s.close();
  server.proc.kill('SIGTERM');
  await new Promise((r) => server.proc.once('exit', r));

  const off = phases.filter((p) => !p.scraper);
  const on = phases.filter((p) => p.scraper);
  const offRates = off.map((p) => p.deliveredPerSecond);
  const onRates = on.map((p) => p.deliveredPerSecond);
  const effect = mean(onRates) / mean(offRates) - 1;
  // The run-to-run spread: each kind's standard error, combined.
  const standardError = Math.sqrt(stdev(offRates) ** 2 / offRates.length + stdev(onRates) ** 2 / onRates.length) / mean(offRates);
  const nsOff = off.map((p) => p.workgroupCpuNanosPerFrame);
  const nsOn = on.map((p) => p.workgroupCpuNanosPerFrame);
  const nsEffect = mean(nsOn) / mean(nsOff) - 1;
  const nsStandardError = Math.sqrt(stdev(nsOff) ** 2 / nsOff.length + stdev(nsOn) ** 2 / nsOn.length) / mean(nsOff);
  const scrapesPerSecond = mean(on.map((p) => (p.scrapes.metrics + p.scrapes.jmx) / p.seconds));
  const mainCpuPerScrapeMs = ((mean(on.map((p) => p.serverMainThreadCpuPercent)) - mean(off.map((p) => p.serverMainThreadCpuPercent))) / 100 / scrapesPerSecond) * 1000;
  const summary = {
    deliveredPerSecondOff: { mean: round(mean(offRates), 0), stdev: round(stdev(offRates), 0), min: Math.min(...offRates), max: Math.max(...offRates) },
    deliveredPerSecondOn: { mean: round(mean(onRates), 0), stdev: round(stdev(onRates), 0), min: Math.min(...onRates), max: Math.max(...onRates) },
    effectPercent: round(effect * 100, 2),
    standardErrorPercent: round(standardError * 100, 2),
    /** The effect is measured when it is more than twice its standard error. */
    measurable: Math.abs(effect) > 2 * standardError,
    workgroupCpuNanosPerFrameOff: { mean: round(mean(nsOff), 1), stdev: round(stdev(nsOff), 1) },
    workgroupCpuNanosPerFrameOn: { mean: round(mean(nsOn), 1), stdev: round(stdev(nsOn), 1) },
    workgroupCpuPerFrameEffectPercent: round(nsEffect * 100, 2),
    workgroupCpuPerFrameStandardErrorPercent: round(nsStandardError * 100, 2),
    scrapesPerSecond: round(scrapesPerSecond, 1),
    serverMainThreadCpuPercentOff: round(mean(off.map((p) => p.serverMainThreadCpuPercent))),
    serverMainThreadCpuPercentOn: round(mean(on.map((p) => p.serverMainThreadCpuPercent))),
    serverMainThreadCpuMsPerScrape: round(mainCpuPerScrapeMs, 2),
    scraperProcessCpuPercent: round(mean(on.map((p) => p.scraperProcessCpuPercent))),
    serverBusiestThreadCpuPercent: round(mean(phases.map((p) => p.serverBusiestThreadCpuPercent))),
    machineCpuPercent: round(mean(phases.map((p) => p.machineCpuPercent))),
    scrapeLatencyMsP50: {
      metrics: quantile(
        on.map((p) => p.scrapeLatencyMs.metricsP50 as number),
        0.5,
      ),
      jmx: quantile(
        on.map((p) => p.scrapeLatencyMs.jmxP50 as number),
        0.5,
      ),
    },
    scrapeBytes: { metrics: on[0]?.scrapeBytes.metrics ?? null, jmx: on[0]?.scrapeBytes.jmx ?? null },
    slowConsumerCloses: phases.reduce((a, p) => a + p.slowConsumerCloses, 0),
    sinksClosedByServer: closedSinks,
  };
  const n = nativeStatus();
  const env = {
    date: new Date().toISOString(),
    host: os.hostname(),
    cpu: os.cpus()[0]?.model ?? 'unknown',
    cores: os.availableParallelism(),
    memoryGiB: round(os.totalmem() / 2 ** 30),
    node: process.version,
    kernel: `${os.type()} ${os.release()}`,
    uwsNative: server.uwsNative,
    nativeIo: { loaded: n.loaded, path: n.addonPath, error: n.error },
    gitCommit: gitCommit(),
  };
  const result = { benchmark: 'scrape-cost', env, options: o, summary, phases };
  const dir = path.join(ROOT, 'bench', 'results');
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `scrape-cost-${env.date.replace(/[:.]/g, '-')}.json`);
  fs.writeFileSync(file, JSON.stringify(result, null, 2) + '\n');

  const lines = [
    `# scrape-cost  ${env.date}`,
    `# ${env.cpu}, ${env.cores} cores, ${env.memoryGiB} GiB, ${env.kernel}, Node ${env.node}, uWS native ${env.uwsNative}, native-io ${n.loaded ? 'native' : 'fallback'}, commit ${env.gitCommit ?? '?'}`,
    `# ${o.workgroups} workgroup(s), ${o.subscribers} subscribers on one topic, ${o.idleSessions} idle sessions, ${o.payloadBytes}-byte payloads, ${o.window} publishes in flight; ${o.warmupSeconds} s warm-up, then ${o.phases} phases of ${o.phaseSeconds} s (after ${o.settleSeconds} s settling), scraper at ${o.scrapeHz} Hz on /metrics and /jmx each`,
    '',
    'phase  scraper  delivered/s  publishes/s  main-thread CPU  busiest thread CPU  ns CPU/frame  load CPU  machine CPU  scrapes  /metrics p50 ms  /jmx p50 ms',
    ...phases.map(
      (p) =>
        `${String(p.index).padStart(5)}  ${(p.scraper ? 'on' : 'off').padEnd(7)}  ${String(p.deliveredPerSecond).padStart(11)}  ${String(p.publishesPerSecond).padStart(11)}  ${(p.serverMainThreadCpuPercent + '%').padStart(15)}  ${(p.serverBusiestThreadCpuPercent + '%').padStart(18)}  ${String(p.workgroupCpuNanosPerFrame).padStart(12)}  ${(p.loadProcessCpuPercent + '%').padStart(8)}  ${(p.machineCpuPercent + '%').padStart(11)}  ${String(p.scrapes.metrics + p.scrapes.jmx).padStart(7)}  ${(p.scrapeLatencyMs.metricsP50 === null ? '-' : p.scrapeLatencyMs.metricsP50.toFixed(2)).padStart(15)}  ${(p.scrapeLatencyMs.jmxP50 === null ? '-' : p.scrapeLatencyMs.jmxP50.toFixed(2)).padStart(11)}`,
    ),
    '',
    `delivered/s without scraper: ${summary.deliveredPerSecondOff.mean} (sd ${summary.deliveredPerSecondOff.stdev}, ${summary.deliveredPerSecondOff.min}..${summary.deliveredPerSecondOff.max})`,
    `delivered/s with scraper:    ${summary.deliveredPerSecondOn.mean} (sd ${summary.deliveredPerSecondOn.stdev}, ${summary.deliveredPerSecondOn.min}..${summary.deliveredPerSecondOn.max})`,
    `effect: ${summary.effectPercent}% ± ${summary.standardErrorPercent}% (standard error): ${summary.measurable ? 'measurable' : 'not measurable: within the run-to-run spread'}`,
    `workgroup CPU per delivered frame: ${summary.workgroupCpuNanosPerFrameOff.mean} ns without, ${summary.workgroupCpuNanosPerFrameOn.mean} ns with scraper: ${summary.workgroupCpuPerFrameEffectPercent}% ± ${summary.workgroupCpuPerFrameStandardErrorPercent}%`,
    `scrapes/s ${summary.scrapesPerSecond}; server main thread ${summary.serverMainThreadCpuPercentOff}% -> ${summary.serverMainThreadCpuPercentOn}% CPU, ${summary.serverMainThreadCpuMsPerScrape} ms CPU per scrape; scraper process ${summary.scraperProcessCpuPercent}% CPU; /metrics ${summary.scrapeBytes.metrics} B, /jmx ${summary.scrapeBytes.jmx} B`,
    `busiest server thread (the workgroup) ${summary.serverBusiestThreadCpuPercent}% CPU on average, machine ${summary.machineCpuPercent}% of ${env.cores * 100}%; slow-consumer closes ${summary.slowConsumerCloses}; subscribers closed by the server ${summary.sinksClosedByServer}`,
    `result: ${path.relative(ROOT, file)}`,
  ];
  process.stdout.write(lines.join('\n') + '\n');
}

function gitCommit(): string | null {
  try {
    const head = fs.readFileSync(path.join(ROOT, '.git', 'HEAD'), 'utf8').trim();
    if (!head.startsWith('ref: ')) return head.slice(0, 12);
    return fs
      .readFileSync(path.join(ROOT, '.git', head.slice(5)), 'utf8')
      .trim()
      .slice(0, 12);
  } catch {
    return null;
  }
}

if (process.argv.includes('--scraper-child')) runScraperChild();
else
  main().catch((err) => {
    process.stderr.write(`scrape-cost: ${(err as Error).stack ?? err}\n`);
    process.exit(1);
  });
