// A sample of real SDK sessions in one process of their own
// (bench/sdk-sample-worker.ts): the resume-without-loss proof of
// `bench run million`, where the native benchsub fleet does not resume.
import { fork, type ChildProcess } from 'node:child_process';
import { benchEntry } from './paths';

export interface SampleWorkerConfig {
  url: string;
  clients: number;
  /** Sample topics `${topicPrefix}0` … (each client takes one, round robin). */
  topics: number;
  topicPrefix: string;
  /** Source addresses of the clients (loopback). */
  addresses: string[];
  /** One message per topic every periodMs while publishing. */
  periodMs: number;
  /** Bound on the publishing rounds. */
  maxRounds: number;
  readyTimeoutMs: number;
}

export type SampleRequest = { type: 'start'; config: SampleWorkerConfig } | { type: 'go' } | { type: 'status' } | { type: 'stop'; timeoutMs: number };

export interface SampleFigures {
  /** Every client had every acked message before the stop's timeout. */
  settled: boolean;
  clients: number;
  topics: number;
  published: number;
  acked: number;
  /** Publishes that failed or timed out (in flight at the kill): they may or may not have been stored. */
  unacked: number;
  delivered: number;
  /** Acked messages a client never received. */
  missing: number;
  /** Messages received after a later one of the same topic. */
  outOfOrder: number;
  /** Messages received twice by one client. */
  repeated: number;
  /** 'gap' events (the SDK tells the application of messages it cannot recover). */
  gaps: number;
  /** Deliveries the SDK dropped as already seen (a resume overlapping the live stream). */
  duplicatesDropped: number;
  /** Clients that connected more than once. */
  reconnected: number;
  clientsComplete: number;
  firstProblem: string | null;
}

export type SampleReport = { type: 'ready' } | ({ type: 'report' | 'status' } & SampleFigures) | { type: 'error'; message: string };

export class SdkSample {
  private proc: ChildProcess | null = null;
  private waiters: ((m: SampleReport) => boolean)[] = [];
  private exited: Promise<void> = Promise.resolve();

  constructor(readonly config: SampleWorkerConfig) {}

  /** Forks the process; resolves once every client is subscribed and the publisher connected. */
  async start(): Promise<void> {
    const proc = fork(benchEntry('sdk-sample-worker'), [], { serialization: 'advanced', stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.proc = proc;
    this.exited = new Promise((resolve) => proc.once('exit', () => resolve()));
    proc.on('message', (m: SampleReport) => {
      this.waiters = this.waiters.filter((w) => !w(m));
    });
    const ready = this.wait((m) => m.type === 'ready' || m.type === 'error', this.config.readyTimeoutMs + 5000);
    proc.send({ type: 'start', config: this.config } satisfies SampleRequest);
    const m = await ready;
    if (m.type === 'error') throw new Error(`SDK sample: ${m.message}`);
  }

  private wait(pred: (m: SampleReport) => boolean, timeoutMs: number): Promise<SampleReport> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`SDK sample process did not answer within ${timeoutMs} ms`)), timeoutMs);
      this.exited.then(() => {
        clearTimeout(timer);
        reject(new Error('SDK sample process exited'));
      });
      this.waiters.push((m) => {
        if (!pred(m)) return false;
        clearTimeout(timer);
        resolve(m);
        return true;
      });
    });
  }

  /** Starts publishing (one message per sample topic every periodMs). */
  go(): void {
    this.proc?.send({ type: 'go' } satisfies SampleRequest);
  }

  /** Its figures so far. */
  async status(): Promise<SampleFigures> {
    const p = this.wait((m) => m.type === 'status' || m.type === 'error', 10_000);
    this.proc?.send({ type: 'status' } satisfies SampleRequest);
    const m = await p;
    if (m.type === 'error') throw new Error(`SDK sample: ${m.message}`);
    return m as SampleFigures;
  }

  /** Stops publishing, waits (at most timeoutMs) for every client to have every acked message, and returns the figures. */
  async stop(timeoutMs: number): Promise<SampleFigures> {
    const p = this.wait((m) => m.type === 'report' || m.type === 'error', timeoutMs + 20_000);
    this.proc?.send({ type: 'stop', timeoutMs } satisfies SampleRequest);
    const m = await p;
    if (m.type === 'error') throw new Error(`SDK sample: ${m.message}`);
    const { type: _type, ...figures } = m as { type: string } & SampleFigures;
    return figures;
  }

  get pid(): number {
    return this.proc?.pid ?? 0;
  }

  kill(): void {
    if (this.proc && this.proc.exitCode === null) this.proc.kill('SIGKILL');
  }
}
