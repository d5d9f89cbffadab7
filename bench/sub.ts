// benchsub: sessions that subscribe and measure end-to-end latency, spread
// over one or more processes (each holds at most ~19,900 sockets here), whose
// histograms are merged. The parent holds no socket of the fleet.
import { fork, type ChildProcess } from 'node:child_process';
import type { LoadStats } from './loadgen';
import { splitAddresses } from './addresses';
import { addPairs, newHistogram, type Histogram } from './histogram';
import { benchEntry } from './paths';

export type SubProtocol = 'c10m' | 'socketio';

export interface SubWorkerConfig {
  url: string;
  connections: number;
  /** Global index of this process's first session (for topic assignment). */
  firstSession: number;
  sourceAddresses: string[];
  topicPattern: string;
  topicsPerSession: number;
  topicCount: number;
  protocol: SubProtocol;
  connectRate: number;
  maxPending: number;
  handshakeTimeoutMs: number;
  engine: 'auto' | 'native' | 'js';
  tickMs: number;
  /** Every topic resumes from this (epoch, seq): sub's `resume` map (bench/lab/resume.ts). */
  resume?: { epoch: number; seq: number } | null;
  /** The sub's `conflate` interval in ms (0: none; bench/lab/conflation.ts). */
  conflateMs?: number;
  /** --auth jwt: each session's own HS256 token (bench/tokens.ts), minted here with this secret, in the upgrade's query. */
  jwtSecret?: string | null;
  /** Open failed and closed sessions again, honoring the server's hints (loadgen's reconnect; native engine only). */
  reconnect?: boolean;
  /** With reconnect: ping every session this often (and when it gets ready), spreading reconnects over the reply's reconnectWindowMs, as the SDK does. */
  pingIntervalMs?: number;
}

export type SubWorkerRequest = { type: 'start'; config: SubWorkerConfig } | { type: 'counts' } | { type: 'seconds' } | { type: 'stop' };
export type SubWorkerReport =
  | { type: 'started'; engine: 'native' | 'js' }
  | { type: 'tick' | 'final'; stats: LoadStats; latency: Float64Array; connect: Float64Array; ready: Float64Array }
  | { type: 'counts'; counts: Uint32Array }
  | { type: 'seconds'; rows: Float64Array }
  | { type: 'error'; message: string };

export interface SubFleetOptions {
  url: string;
  connections: number;
  processes: number;
  sourceAddresses: string[];
  topicPattern: string;
  topicsPerSession: number;
  /** Distinct topics; sessions * topicsPerSession gives every session its own. */
  topicCount: number;
  /** Global index of the first session (a second fleet on the same server takes other topics). */
  firstSession?: number;
  protocol?: SubProtocol;
  connectRate?: number;
  maxPending?: number;
  handshakeTimeoutMs?: number;
  engine?: 'auto' | 'native' | 'js';
  tickMs?: number;
  /** Every topic resumes from this (epoch, seq). */
  resume?: { epoch: number; seq: number } | null;
  /** Subscribe with `conflate` (ms; 0: none). */
  conflateMs?: number;
  /** --auth jwt: every session presents its own token, minted with this secret. */
  jwtSecret?: string | null;
  /** Open failed and closed sessions again, honoring the server's hints (native engine only). */
  reconnect?: boolean;
  /** With reconnect: ping every session this often, as the SDK does (reads reconnectWindowMs). */
  pingIntervalMs?: number;
}

const STAT_KEYS = [
  'connections',
  'opened',
  'pending',
  'connected',
  'ready',
  'failed',
  'closed',
  'messages',
  'bytes',
  'replies',
  'errorReplies',
  'otherMessages',
  'pings',
  'clockSkew',
  'protocolErrors',
  'serverCloses',
  'live',
  'retries',
  'connectErrors',
  'refused503',
  'refused429',
  'refusedOther',
  'hinted',
  'ticketsSent',
  'ticketRefusals',
  'pingsSent',
  'windowReplies',
] as const;

export type FleetStats = Record<(typeof STAT_KEYS)[number], number> & {
  /** The slowest process's time to all connected / ready; -1 until every process got there. */
  allConnectedSeconds: number;
  allReadySeconds: number;
  /** With reconnect: the latest process's wall-clock ms of the last moment all its sessions were ready; 0 until every process got there. */
  allLiveAtMs: number;
  firstError: string | null;
  lastCloseCode: number;
  /** With ping: the largest reconnectWindowMs any session was given. */
  maxWindowMs: number;
};

interface Child {
  proc: ChildProcess;
  config: SubWorkerConfig;
  stats: LoadStats | null;
  exited: Promise<void>;
  waiters: ((m: SubWorkerReport) => boolean)[];
}

export class SubscriberFleet {
  /** Every delivery since start, or since the last restartLatency() (µs). */
  readonly latency = newHistogram();
  /** Every delivery since start, warm-up included. */
  readonly latencyAll = newHistogram();
  readonly connect = newHistogram();
  readonly ready = newHistogram();
  /** Deliveries since the last takeInterval(). */
  private interval = newHistogram();
  private readonly children: Child[] = [];
  engine: 'native' | 'js' | null = null;
  readonly errors: string[] = [];

  constructor(readonly options: SubFleetOptions) {
    const o = options;
    if (o.processes < 1 || o.processes > o.connections) throw new RangeError('processes must be between 1 and connections');
    if (o.topicsPerSession > o.topicCount) throw new RangeError('topics per session must not exceed the number of topics');
  }

  /** Forks the processes and starts every client; resolves once each has started (not connected). */
  async start(): Promise<void> {
    const o = this.options;
    let first = o.firstSession ?? 0;
    for (let p = 0; p < o.processes; p++) {
      const connections = Math.floor(o.connections / o.processes) + (p < o.connections % o.processes ? 1 : 0);
      const config: SubWorkerConfig = {
        url: o.url,
        connections,
        firstSession: first,
        sourceAddresses: splitAddresses(o.sourceAddresses, o.processes, p),
        topicPattern: o.topicPattern,
        topicsPerSession: o.topicsPerSession,
        topicCount: o.topicCount,
        protocol: o.protocol ?? 'c10m',
        connectRate: (o.connectRate ?? 0) / o.processes,
        maxPending: o.maxPending ?? 256,
        handshakeTimeoutMs: o.handshakeTimeoutMs ?? 30000,
        engine: o.engine ?? 'auto',
        tickMs: o.tickMs ?? 500,
        resume: o.resume ?? null,
        conflateMs: o.conflateMs ?? 0,
        jwtSecret: o.jwtSecret ?? null,
        reconnect: o.reconnect ?? false,
        pingIntervalMs: o.pingIntervalMs ?? 0,
      };
      first += connections;
      const proc = fork(benchEntry('sub-worker'), [], { serialization: 'advanced', stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      const child: Child = { proc, config, stats: null, waiters: [], exited: new Promise((resolve) => proc.once('exit', () => resolve())) };
      proc.on('message', (m: SubWorkerReport) => this.onReport(child, m));
      this.children.push(child);
    }
    await Promise.all(
      this.children.map((c) => {
        // Many processes start at once on few cores: a second more for each.
        const started = this.waitFor(c, (m) => m.type === 'started' || m.type === 'error', 20000 + 1000 * o.processes);
        c.proc.send({ type: 'start', config: c.config } satisfies SubWorkerRequest);
        return started.then((m) => {
          if (m.type === 'error') throw new Error(`benchsub process: ${m.message}`);
          if (m.type === 'started') this.engine = m.engine;
        });
      }),
    );
  }

  private onReport(child: Child, m: SubWorkerReport): void {
    if (m.type === 'tick' || m.type === 'final') {
      child.stats = m.stats;
      addPairs(this.latency, m.latency);
      addPairs(this.latencyAll, m.latency);
      addPairs(this.interval, m.latency);
      addPairs(this.connect, m.connect);
      addPairs(this.ready, m.ready);
    } else if (m.type === 'error') {
      this.errors.push(m.message);
    }
    child.waiters = child.waiters.filter((w) => !w(m));
  }

  private waitFor(child: Child, pred: (m: SubWorkerReport) => boolean, timeoutMs: number): Promise<SubWorkerReport> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`benchsub process ${child.proc.pid} did not answer within ${timeoutMs} ms`)), timeoutMs);
      child.exited.then(() => {
        clearTimeout(timer);
        reject(new Error(`benchsub process ${child.proc.pid} exited`));
      });
      child.waiters.push((m) => {
        if (!pred(m)) return false;
        clearTimeout(timer);
        resolve(m);
        return true;
      });
    });
  }

  /** The sum of every process's latest stats. */
  stats(): FleetStats {
    const s = Object.fromEntries(STAT_KEYS.map((k) => [k, 0])) as unknown as FleetStats;
    s.allConnectedSeconds = 0;
    s.allReadySeconds = 0;
    s.allLiveAtMs = 0;
    let allLive = true;
    s.firstError = this.errors[0] ?? null;
    s.lastCloseCode = 0;
    s.maxWindowMs = 0;
    for (const c of this.children) {
      const cs = c.stats;
      if (!cs) {
        allLive = false;
        s.connections += c.config.connections;
        s.allConnectedSeconds = -1;
        s.allReadySeconds = -1;
        continue;
      }
      for (const k of STAT_KEYS) s[k] += cs[k];
      if (s.allConnectedSeconds >= 0) s.allConnectedSeconds = cs.allConnectedSeconds < 0 ? -1 : Math.max(s.allConnectedSeconds, cs.allConnectedSeconds);
      if (s.allReadySeconds >= 0) s.allReadySeconds = cs.allReadySeconds < 0 ? -1 : Math.max(s.allReadySeconds, cs.allReadySeconds);
      if (!cs.allLiveAtMs) allLive = false;
      else s.allLiveAtMs = Math.max(s.allLiveAtMs, cs.allLiveAtMs);
      s.firstError ??= cs.firstError;
      if (cs.lastCloseCode) s.lastCloseCode = cs.lastCloseCode;
      s.maxWindowMs = Math.max(s.maxWindowMs, cs.maxWindowMs ?? 0);
    }
    if (!allLive) s.allLiveAtMs = 0;
    return s;
  }

  /** Ends a warm-up: `latency` counts from now on (`latencyAll` keeps everything). */
  restartLatency(): void {
    this.latency.reset();
  }

  /** The deliveries recorded since the last call, as their own histogram. */
  takeInterval(): Histogram {
    const h = this.interval;
    this.interval = newHistogram();
    return h;
  }

  /** Resolves once pred(stats) holds, or with false after timeoutMs. */
  async until(pred: (s: FleetStats) => boolean, timeoutMs: number, onPoll?: (s: FleetStats) => void): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const s = this.stats();
      onPoll?.(s);
      if (pred(s)) return true;
      if (Date.now() >= deadline) return false;
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Deliveries per session, in global session order. */
  async connectionCounts(): Promise<Uint32Array> {
    const parts = await Promise.all(
      this.children.map((c) => {
        const p = this.waitFor(c, (m) => m.type === 'counts', 10000);
        c.proc.send({ type: 'counts' } satisfies SubWorkerRequest);
        return p.then((m) => (m as { counts: Uint32Array }).counts);
      }),
    );
    const out = new Uint32Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }

  /** Upgrades completed and refused (503, 429) per wall-clock second, summed over the processes: unix second -> counts. */
  async secondCounts(): Promise<Map<number, { upgrades: number; refused: number }>> {
    const parts = await Promise.all(
      this.children.map((c) => {
        const p = this.waitFor(c, (m) => m.type === 'seconds', 10000);
        c.proc.send({ type: 'seconds' } satisfies SubWorkerRequest);
        return p.then((m) => (m as { rows: Float64Array }).rows);
      }),
    );
    const out = new Map<number, { upgrades: number; refused: number }>();
    for (const rows of parts) {
      for (let k = 0; k + 2 < rows.length; k += 3) {
        const e = out.get(rows[k]) ?? { upgrades: 0, refused: 0 };
        e.upgrades += rows[k + 1];
        e.refused += rows[k + 2];
        out.set(rows[k], e);
      }
    }
    return out;
  }

  /** Collects every process's last figures, closes its sockets and waits for it to exit. */
  async stop(): Promise<void> {
    await Promise.all(
      this.children.map(async (c) => {
        if (c.proc.exitCode !== null || !c.proc.connected) return;
        const final = this.waitFor(c, (m) => m.type === 'final', 15000).catch(() => null);
        c.proc.send({ type: 'stop' } satisfies SubWorkerRequest);
        await final;
        const t = setTimeout(() => c.proc.kill('SIGKILL'), 10000);
        await c.exited;
        clearTimeout(t);
      }),
    );
  }

  pids(): number[] {
    return this.children.map((c) => c.proc.pid ?? 0).filter((p) => p > 0);
  }

  /** Kills every process at once (on errors). */
  kill(): void {
    for (const c of this.children) if (c.proc.exitCode === null) c.proc.kill('SIGKILL');
  }
}
