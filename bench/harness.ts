// What every scenario shares: options, the progress bar, the per-second
// sampler of a running fleet, and the steps "start a target, connect a fleet,
// publish, settle, collect".
import * as cliProgress from 'cli-progress';
import { subscribersOfTopic } from './addresses';
import { newHistogram, summarize, type Histogram, type LatencySummary } from './histogram';
import { Publisher, type PubConfig, type PubStats, type RateStep, type PubTransport } from './pub';
import type { Check, Figure } from './report';
import { SubscriberFleet, type FleetStats } from './sub';
import { readCpuSeconds, type Target, type TargetKind } from './targets';
import type { MillionOptions } from './scenarios/million';

export interface RunOptions {
  /** Target an already running c10m at this ws:// URL instead of starting one. */
  url: string | null;
  /** With --url: the server's pid, for its RSS and CPU figures. */
  serverPid: number | null;
  /** Workgroups of the c10m server this scenario runs on (one of workgroupsList). */
  workgroups: number;
  /** --workgroups 1,2: c10m runs once per count (targets c10m-wg1, c10m-wg2), then the peers. */
  workgroupsList: number[];
  /** --cache-messages 0,1000: c10m runs once per value too (targets ...-cache0, ...-cache1000); null: the server's default. */
  cacheMessagesList: number[] | null;
  /** More `c10m serve` flags for every c10m target (after --benchmark-mode). */
  serveArgs: string[];
  /** Node flags for every server process the run starts (profiling). */
  serverNodeArgs: string[];
  /** fanout and reference-scaled: publisher connections (default 1); several spread publishes over workgroups. */
  pubConnections: number | null;
  /** fanout: each step's rate is the previous one times this (default 2). */
  rampFactor: number | null;
  connections: number | null;
  processes: number;
  sourceAddresses: string[];
  durationSeconds: number | null;
  /** reference-scaled: seconds of publishing before the latency table starts. */
  warmupSeconds: number | null;
  rate: number | null;
  size: number | null;
  topics: number | null;
  stepSeconds: number | null;
  /** fanout: rate steps (each doubles the rate). */
  steps: number | null;
  /** fanout: a burst of this many publishes instead of the ramp (bench/scenarios/fanout-burst.ts). */
  burst: number | null;
  /** fanout --burst: bursts in a row on the same sessions (the median is the figure; default 3). */
  bursts: number | null;
  sizes: number[] | null;
  /** idle-memory: seconds to let the server settle before each RSS reading. */
  settleSeconds: number | null;
  /** idle-memory: the plain readings after the last burst, seconds after it (default 5 and 30). */
  idleSeconds: number[] | null;
  /** cluster: the publish rates (msg/s) of the Redis saturation steps. */
  rates: number[] | null;
  /** cluster: which parts to run (compare, saturation, interest; default all). */
  phases: string[] | null;
  maxPending: number | null;
  peers: TargetKind[];
  resultsDir: string;
  progress: boolean;
  engine: 'auto' | 'native' | 'js';
  /** Seconds to wait for every session to be ready. */
  connectTimeoutSeconds: number;
  /** --auth none,jwt: c10m runs once per mode (targets ...-auth-none, ...-auth-jwt); null: none only. */
  authList: ('none' | 'jwt')[] | null;
  /** --admission-rate 2000,0: c10m runs once per rate (targets ...-admission2000, ...-admission-off); null: the scenario's default. */
  admissionRates: number[] | null;
  /** The --admission-rate of the c10m target this scenario runs on (0: off; set per target by bench/run.ts). */
  admissionRate: number;
  /** reconnect-storm: how the node is stopped before it is started again. */
  restartSignal: 'SIGKILL' | 'SIGTERM';
  /** reconnect-storm: sessions ping this often and spread their reconnects over the node's reconnectWindowMs (0: no pings). */
  pingIntervalMs: number;
  /** reference-scaled: read the server's memory after a forced GC in every isolate (the server runs with --inspect). */
  gcReadings: boolean;
  /** The HS256 secret of the --auth jwt targets and of the tokens the bench mints (random per run unless given). */
  jwtSecret: string;
  /** million: its own options (bench/scenarios/million.ts); null for the other scenarios. */
  million: MillionOptions | null;
}

export const DEFAULT_SOURCE_ADDRESSES = '127.0.1.1-127.0.1.16';

/** One line of the progress display. */
export class Progress {
  private bar: cliProgress.SingleBar | null = null;
  private lastLine = 0;
  constructor(
    private readonly enabled: boolean,
    private readonly scenario: string,
  ) {}

  phase(target: string, phase: string, total: number): void {
    this.stop();
    if (!this.enabled) return;
    if (process.stderr.isTTY) {
      this.bar = new cliProgress.SingleBar(
        { format: `${this.scenario} ${target.padEnd(8)} ${phase.padEnd(10)} |{bar}| {value}/{total} {info}`, hideCursor: true, stream: process.stderr, barsize: 30 },
        cliProgress.Presets.shades_classic,
      );
      this.bar.start(total, 0, { info: '' });
    } else {
      process.stderr.write(`${this.scenario} ${target}: ${phase} (${total})\n`);
    }
  }

  update(value: number, info: string): void {
    if (this.bar) this.bar.update(Math.round(value), { info });
    else if (this.enabled && Date.now() - this.lastLine > 10000) {
      this.lastLine = Date.now();
      process.stderr.write(`  ${Math.round(value)} ${info}\n`);
    }
  }

  stop(): void {
    this.bar?.stop();
    this.bar = null;
  }
}

/** One per-second sample of a run. */
export interface Sample {
  t: number;
  connected: number;
  ready: number;
  messages: number;
  deliveredPerSec: number;
  p50Ms: number | null;
  p99Ms: number | null;
  maxMs: number | null;
  serverCpuPct: number | null;
  serverRssMB: number | null;
  published: number;
}

/** Samples a fleet (and its server) once a second until stopped. */
export class Sampler {
  readonly samples: Sample[] = [];
  private timer: NodeJS.Timeout | null = null;
  private lastMessages = 0;
  private lastAt = 0;
  private lastCpu = 0;
  private startedAt = 0;
  private startCpu = 0;
  private startMessages = 0;

  constructor(
    private readonly fleet: SubscriberFleet,
    private readonly target: Target,
    private readonly publisher: () => PubStats | null,
    private readonly onSample?: (s: Sample) => void,
  ) {}

  start(): void {
    this.startedAt = this.lastAt = performance.now();
    this.startMessages = this.lastMessages = this.fleet.stats().messages;
    this.startCpu = this.lastCpu = this.safeCpu();
    this.fleet.takeInterval();
    this.timer = setInterval(() => this.sample(), 1000);
  }

  private safeCpu(): number {
    try {
      return this.target.pid ? this.target.cpuSeconds() : 0;
    } catch {
      return 0;
    }
  }

  private sample(): void {
    const now = performance.now();
    const s = this.fleet.stats();
    const h = this.fleet.takeInterval();
    const cpu = this.safeCpu();
    const dt = (now - this.lastAt) / 1000;
    let rss: number | null = null;
    try {
      rss = this.target.pid ? Math.round(this.target.rssBytes() / 2 ** 20) : null;
    } catch {
      rss = null;
    }
    const sample: Sample = {
      t: Math.round(((now - this.startedAt) / 1000) * 10) / 10,
      connected: s.connected - s.closed,
      ready: s.ready,
      messages: s.messages,
      deliveredPerSec: Math.round((s.messages - this.lastMessages) / dt),
      p50Ms: h.totalCount ? h.getValueAtPercentile(50) / 1000 : null,
      p99Ms: h.totalCount ? h.getValueAtPercentile(99) / 1000 : null,
      maxMs: h.totalCount ? h.maxValue / 1000 : null,
      serverCpuPct: this.target.pid ? Math.round(((cpu - this.lastCpu) / dt) * 1000) / 10 : null,
      serverRssMB: rss,
      published: this.publisher()?.published ?? 0,
    };
    this.lastAt = now;
    this.lastMessages = s.messages;
    this.lastCpu = cpu;
    this.samples.push(sample);
    this.onSample?.(sample);
  }

  stop(): { seconds: number; deliveredPerSec: number; serverCpuPct: number | null } {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    const seconds = (performance.now() - this.startedAt) / 1000;
    const messages = this.fleet.stats().messages - this.startMessages;
    return {
      seconds,
      deliveredPerSec: Math.round(messages / seconds),
      serverCpuPct: this.target.pid ? Math.round(((this.safeCpu() - this.startCpu) / seconds) * 1000) / 10 : null,
    };
  }
}

/** CPU seconds of several processes (benchsub, benchpub), for "was the server the bottleneck". */
export function cpuOf(pids: number[]): number {
  let sum = 0;
  for (const pid of pids) {
    try {
      sum += readCpuSeconds(pid);
    } catch {
      // exited
    }
  }
  return sum;
}

export interface FleetParams {
  connections: number;
  processes: number;
  topicsPerSession: number;
  topicCount: number;
  firstSession?: number;
  connectRate?: number;
  maxPending?: number;
  /** Sessions that fail or are closed are opened again, honoring the server's hints (ready means live: ready now). */
  reconnect?: boolean;
  /** With reconnect: each session pings this often, as the SDK does, and spreads its reconnects over the node's reconnectWindowMs. */
  pingIntervalMs?: number;
  /** Called with the fleet once its processes are forked (to watch it while it connects). */
  onFleet?: (fleet: SubscriberFleet) => void;
  /** Stop waiting (not every session ready) once this holds, e.g. memory running out. */
  stopWhen?: (s: FleetStats) => boolean;
}

/** Starts a fleet on `target` and waits until every session is ready (or the timeout). */
export async function connectFleet(target: Target, p: FleetParams, o: RunOptions, progress: Progress, label: string): Promise<{ fleet: SubscriberFleet; allReady: boolean; seconds: number }> {
  const fleet = new SubscriberFleet({
    url: target.subUrl,
    connections: p.connections,
    processes: Math.min(p.processes, p.connections),
    sourceAddresses: o.sourceAddresses,
    topicPattern: '/bench/{n}',
    topicsPerSession: p.topicsPerSession,
    topicCount: p.topicCount,
    firstSession: p.firstSession ?? 0,
    protocol: target.kind === 'socketio' ? 'socketio' : 'c10m',
    connectRate: p.connectRate ?? 0,
    maxPending: p.maxPending ?? o.maxPending ?? 256,
    engine: o.engine,
    tickMs: 250,
    jwtSecret: target.jwtSecret,
    reconnect: p.reconnect ?? false,
    pingIntervalMs: p.pingIntervalMs ?? 0,
  });
  const started = performance.now();
  progress.phase(target.name, label, p.connections);
  p.onFleet?.(fleet);
  try {
    await fleet.start();
  } catch (err) {
    fleet.kill();
    throw err;
  }
  const allReady = await fleet.until(
    (s) => (p.reconnect ? s.live : s.ready) + s.failed >= p.connections || (p.stopWhen?.(s) ?? false),
    o.connectTimeoutSeconds * 1000,
    (s) => progress.update(p.reconnect ? s.live : s.ready, `ready, ${s.failed} failed, ${s.pending} pending${p.reconnect ? `, ${s.refused503 + s.refused429} refused with a hint` : ''}`),
  );
  progress.stop();
  const end = fleet.stats();
  return { fleet, allReady: allReady && end.failed === 0 && (p.reconnect ? end.live : end.ready) >= p.connections, seconds: (performance.now() - started) / 1000 };
}

export function pubConfig(
  target: Target,
  p: { transport?: PubTransport; connections?: number | null; size: number; topicCount: number; schedule: RateStep[]; durationSeconds: number; maxMessages?: number },
): PubConfig {
  return {
    url: target.pubUrl,
    transport: p.transport ?? (target.kind === 'socketio' ? 'socketio' : 'ws'),
    connections: p.connections ?? 1,
    size: p.size,
    topicPattern: '/bench/{n}',
    topicCount: p.topicCount,
    schedule: p.schedule,
    durationSeconds: p.durationSeconds,
    maxMessages: p.maxMessages ?? 0,
    sourceAddress: '127.0.0.1',
    tickMs: 500,
    jwtSecret: target.jwtSecret,
  };
}

export async function startPublisher(config: PubConfig): Promise<Publisher> {
  const pub = new Publisher(config);
  try {
    await pub.start();
  } catch (err) {
    pub.kill();
    throw err;
  }
  return pub;
}

/** Deliveries owed for `published` messages sent round robin over `topicCount` topics. */
export function expectedDeliveries(published: number, topicCount: number, sessions: number, perSession: number): number {
  let total = 0;
  const full = Math.floor(published / topicCount);
  const rest = published % topicCount;
  for (let n = 0; n < topicCount; n++) total += (full + (n < rest ? 1 : 0)) * subscribersOfTopic(n, sessions, perSession, topicCount);
  return total;
}

/** Per-session deliveries owed (same order as the fleet's sessions, the first being global session `firstSession`). */
export function expectedPerSession(published: number, topicCount: number, sessions: number, perSession: number, firstSession = 0): Uint32Array {
  const full = Math.floor(published / topicCount);
  const rest = published % topicCount;
  const out = new Uint32Array(sessions);
  for (let s = 0; s < sessions; s++) {
    for (let k = 0; k < perSession; k++) {
      const n = ((firstSession + s) * perSession + k) % topicCount;
      out[s] += full + (n < rest ? 1 : 0);
    }
  }
  return out;
}

/**
 * Exact-count checks: total and per session (of a fleet whose first session
 * is global session `firstSession`). `published`: the messages of one
 * publisher, or of each of several, each round robin over the topics from
 * topic 0.
 */
export async function countChecks(fleet: SubscriberFleet, published: number | number[], topicCount: number, sessions: number, perSession: number, label: string, firstSession = 0): Promise<Check[]> {
  const list = typeof published === 'number' ? [published] : published;
  const owed = new Uint32Array(sessions);
  for (const p of list) expectedPerSession(p, topicCount, sessions, perSession, firstSession).forEach((v, i) => (owed[i] += v));
  const want = owed.reduce((a, b) => a + b, 0);
  const total = list.reduce((a, b) => a + b, 0);
  const got = fleet.stats().messages;
  const checks: Check[] = [
    { name: `${label}: deliveries equal the messages published times their subscribers`, ok: got === want, detail: `${got} delivered, ${want} expected from ${total} published` },
  ];
  const counts = await fleet.connectionCounts();
  let wrong = 0;
  let example = '';
  for (let s = 0; s < sessions; s++) {
    if (counts[s] !== owed[s]) {
      if (wrong === 0) example = `; session ${firstSession + s} got ${counts[s]}, owed ${owed[s]}`;
      wrong++;
    }
  }
  checks.push({ name: `${label}: every session got exactly its messages`, ok: wrong === 0 && counts.length === sessions, detail: `${wrong} of ${counts.length} sessions differ${example}` });
  return checks;
}

/** Waits until the fleet received `want` deliveries or `timeoutMs` passed. */
export function settle(fleet: SubscriberFleet, want: number, timeoutMs: number): Promise<boolean> {
  return fleet.until((s) => s.messages >= want, timeoutMs);
}

export function latencyFigures(l: LatencySummary): Record<string, Figure> {
  return { p50Ms: l.p50Ms, p99Ms: l.p99Ms, maxMs: l.maxMs, meanMs: l.meanMs };
}

export function fleetFigures(s: FleetStats): Record<string, Figure> {
  return { failed: s.failed, closed: s.closed, protocolErrors: s.protocolErrors, errorReplies: s.errorReplies, firstError: s.firstError };
}

export { newHistogram, summarize, type Histogram };
