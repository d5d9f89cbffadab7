// benchpub: publishes `rate` messages/s of `size` bytes, round robin over
// `topicCount` topics, each message stamped with its creation time in
// microseconds (the `ts` of the pub command) on the clock the subscriber's
// native client reads (CLOCK_REALTIME). Runs in its own process
// (bench/pub-worker.ts) driven by a Publisher handle.
import { fork, type ChildProcess } from 'node:child_process';
import { benchEntry } from './paths';

export type PubTransport = 'ws' | 'http' | 'socketio';

/** The rate from `atSeconds` on (messages/s over all topics); the first step starts at 0. */
export interface RateStep {
  atSeconds: number;
  rate: number;
}

export interface PubConfig {
  /** ws://host:port (the path is /v1/ws?encoding=msgpack for ws, /v1/publish for http, socket.io's for socketio). */
  url: string;
  transport: PubTransport;
  connections: number;
  size: number;
  topicPattern: string;
  topicCount: number;
  schedule: RateStep[];
  durationSeconds: number;
  /** Stop after this many messages (0: no limit). */
  maxMessages: number;
  /** Source address of the publisher's sockets (loopback). */
  sourceAddress: string;
  tickMs: number;
  /**
   * ws only: ask for an ack of every publish (`ack: true`) and time it
   * (send to ack). At most MAX_UNACKED publishes wait for their ack per
   * connection: past that the publisher waits (counted as deferred), so a
   * saturated server shows as acked messages/s, not as a queue.
   */
  ack?: boolean;
  /** --auth jwt: the publisher's own HS256 token (bench/tokens.ts PUBLISHER_CLAIMS), minted with this secret: ws in the query, http as Bearer. */
  jwtSecret?: string | null;
  /** ws only: a refused connect (a node being restarted) is tried again every 20 ms for this long (default 0: no). */
  connectRetrySeconds?: number;
  /**
   * ws only: a burst of maxMessages publishes, sent as fast as the connections take them (corked, in chunks, the
   * schedule ignored), every one stamped with the burst's start: a subscriber's latency is then the time from the
   * start of the burst to that delivery, and the largest is the burst's completion time.
   */
  burst?: boolean;
}

export interface PubStats {
  published: number;
  /** Messages the server refused (error replies or HTTP errors). */
  errors: number;
  /** Messages not sent when due because the connection's send buffer was full. */
  deferred: number;
  /** Current target rate. */
  rate: number;
  firstError: string | null;
  /** With ack: publishes acked ok. */
  acked: number;
  /** With ack: seconds from the first send to the last ack. */
  ackSeconds: number;
  /** With ack, in the final figures: send-to-ack latency (ms) over every acked publish. */
  ackLatency: { count: number; p50Ms: number; p99Ms: number; maxMs: number } | null;
}

export type PubWorkerRequest = { type: 'start'; config: PubConfig } | { type: 'stop' };
export type PubWorkerReport = { type: 'ready' } | { type: 'tick'; stats: PubStats } | { type: 'done'; stats: PubStats } | { type: 'error'; message: string };

export function rateAt(schedule: RateStep[], seconds: number): number {
  let rate = 0;
  for (const step of schedule) if (step.atSeconds <= seconds) rate = step.rate;
  return rate;
}

/** A publisher process. start() resolves once its connections are open; done resolves with its final figures. */
export class Publisher {
  private proc: ChildProcess | null = null;
  stats: PubStats = { published: 0, errors: 0, deferred: 0, rate: 0, firstError: null, acked: 0, ackSeconds: 0, ackLatency: null };
  done: Promise<PubStats> = Promise.resolve(this.stats);

  constructor(readonly config: PubConfig) {}

  /** Connects; the clock of the schedule starts when go() is called. */
  async start(): Promise<void> {
    const proc = fork(benchEntry('pub-worker'), [], { serialization: 'advanced', stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.proc = proc;
    let resolveDone: (s: PubStats) => void;
    let rejectDone: (e: Error) => void;
    this.done = new Promise((res, rej) => {
      resolveDone = res;
      rejectDone = rej;
    });
    this.done.catch(() => undefined);
    const ready = new Promise<void>((resolve, reject) => {
      proc.on('message', (m: PubWorkerReport) => {
        if (m.type === 'ready') resolve();
        else if (m.type === 'tick') this.stats = m.stats;
        else if (m.type === 'done') {
          this.stats = m.stats;
          resolveDone(m.stats);
        } else if (m.type === 'error') {
          reject(new Error(`benchpub: ${m.message}`));
          rejectDone(new Error(`benchpub: ${m.message}`));
        }
      });
      proc.once('exit', (code) => {
        reject(new Error(`benchpub exited (${code}) before it was ready`));
        rejectDone(new Error(`benchpub exited (${code})`));
      });
    });
    proc.send({ type: 'start', config: this.config } satisfies PubWorkerRequest);
    await ready;
  }

  go(): void {
    this.proc?.send({ type: 'go' });
  }

  /** Stops publishing now (before the duration); resolves with the final figures once everything sent is flushed. */
  async stop(): Promise<PubStats> {
    if (this.proc && this.proc.connected) this.proc.send({ type: 'stop' } satisfies PubWorkerRequest);
    return this.done;
  }

  get pid(): number {
    return this.proc?.pid ?? 0;
  }

  kill(): void {
    if (this.proc && this.proc.exitCode === null) this.proc.kill('SIGKILL');
  }
}
