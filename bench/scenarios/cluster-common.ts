// What the cluster scenario's parts share (bench/scenarios/cluster.ts): the
// processes it reports on, their CPU and RSS from /proc, and what to kill
// on an interrupt.

import * as fs from 'node:fs';
import type { Publisher } from '../pub';
import { killAllRedis, type BenchRedis } from '../redis';
import type { ScenarioResult } from '../report';
import { SubscriberFleet } from '../sub';
import { readCpuSeconds, readRssBytes, type Target } from '../targets';

export const PHASES = ['compare', 'saturation', 'interest'] as const;
export type Phase = (typeof PHASES)[number];

export const DEFAULTS = {
  connections: 19000,
  durationSeconds: 30,
  warmupSeconds: 5,
  size: 512,
  rates: [10000, 25000, 50000, 75000, 100000],
  stepSeconds: 5,
  saturationTopics: 1000,
  interestMessages: 2000,
  interestRate: 4000,
  interestSessionsPerNode: 10,
};

export const KEPT_UP = 0.95;
/** A process this busy (% of one core) is what limits. */
export const BUSY_PCT = 85;
/** Seconds of publishing before each saturation ramp, not in the figures. */
export const SATURATION_WARMUP_SECONDS = 2;
/** Requests per second of the Redis-alone step (times --step-seconds: its count, bounded). */
export const REDIS_ALONE_PER_SEC = 50000;

export type Part = Omit<ScenarioResult, 'env' | 'scenario'>;

/** A process whose CPU and RSS the run reports. */
export interface Proc {
  name: string;
  pid: number;
}

/** Everything the run started, for a SIGINT or an error: killed at once. */
export class Live {
  readonly targets = new Set<Target>();
  readonly fleets = new Set<SubscriberFleet>();
  readonly pubs = new Set<Publisher>();

  killAll(): void {
    for (const f of this.fleets) f.kill();
    for (const p of this.pubs) p.kill();
    for (const t of this.targets) {
      try {
        process.kill(t.pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
    killAllRedis();
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
export const round1 = (v: number) => Math.round(v * 10) / 10;
export const round3 = (v: number) => Math.round(v * 1000) / 1000;

/** CPU seconds of a process, null once it has exited. */
export function cpuOfProc(p: Proc): number | null {
  try {
    return readCpuSeconds(p.pid);
  } catch {
    return null;
  }
}

export function rssMB(p: Proc): number | null {
  try {
    return round1(readRssBytes(p.pid) / 2 ** 20);
  } catch {
    return null;
  }
}

/** Busy and total jiffies of the whole machine (/proc/stat), for "were the 2 cores full". */
export function machineTicks(): { busy: number; total: number } {
  try {
    const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
    const idle = (f[3] ?? 0) + (f[4] ?? 0);
    const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
    return { busy: total - idle, total };
  } catch {
    return { busy: 0, total: 0 };
  }
}

/**
 * CPU % of one core of each process over a window, and the machine's busy %
 * of all its cores. Polled every 250 ms, so that a process that exits
 * before the end (benchpub, once its messages are out) counts with what it
 * had used by its last reading.
 */
export class CpuWindow {
  private readonly start: number[];
  private readonly last: number[];
  private readonly startMachine = machineTicks();
  private readonly startedAt = performance.now();
  private readonly timer: NodeJS.Timeout;
  constructor(private readonly procs: Proc[]) {
    this.start = procs.map((p) => cpuOfProc(p) ?? 0);
    this.last = [...this.start];
    this.timer = setInterval(() => this.poll(), 250);
  }

  private poll(): void {
    this.procs.forEach((p, i) => {
      const v = cpuOfProc(p);
      if (v !== null) this.last[i] = v;
    });
  }

  end(): { seconds: number; pct: Map<string, number>; machinePct: number | null } {
    clearInterval(this.timer);
    this.poll();
    const seconds = (performance.now() - this.startedAt) / 1000;
    const pct = new Map<string, number>();
    this.procs.forEach((p, i) => pct.set(p.name, (pct.get(p.name) ?? 0) + ((this.last[i] - this.start[i]) / seconds) * 100));
    for (const [k, v] of pct) pct.set(k, round1(v));
    const m = machineTicks();
    const machinePct = m.total > this.startMachine.total ? round1(((m.busy - this.startMachine.busy) / (m.total - this.startMachine.total)) * 100) : null;
    return { seconds, pct, machinePct };
  }
}

/** What limited a window: the busiest process when it is near a full core, else the machine when it is near full. */
export function limitedBy(pct: Map<string, number>, machinePct: number | null): string {
  let top: [string, number] | null = null;
  for (const e of pct) if (top === null || e[1] > top[1]) top = e;
  if (top !== null && top[1] >= BUSY_PCT) return `${top[0]} (${top[1]}% of a core)`;
  if (machinePct !== null && machinePct >= BUSY_PCT) return `both cores (machine ${machinePct}% busy)`;
  return top !== null ? `nothing at 100% (busiest: ${top[0]} ${top[1]}%)` : '–';
}

/** Sum of a counter over every label set in a node's /metrics; null when the node has no such metric (or no admin port). */
export async function metricSum(t: Target, name: string): Promise<number | null> {
  if (!t.adminPort) return null;
  try {
    const res = await fetch(`http://127.0.0.1:${t.adminPort}/metrics`);
    if (!res.ok) return null;
    let sum: number | null = null;
    for (const line of (await res.text()).split('\n')) {
      const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{.*\})? (\S+)$/.exec(line);
      if (m && m[1] === name) sum = (sum ?? 0) + Number(m[2]);
    }
    return sum;
  } catch {
    return null;
  }
}

export interface EngineCounters {
  /** Publishes the node refused or failed with UNAVAILABLE (Redis unreachable, or taken for hung after a 2 s command timeout). */
  unavailable: number | null;
  reconnects: number | null;
  recovered: number | null;
  lost: number | null;
}

/** The Redis engine's counters of each node (null: the build has no such metric). */
export function engineCounters(nodes: Target[]): Promise<EngineCounters[]> {
  return Promise.all(
    nodes.map(async (n) => ({
      unavailable: await metricSum(n, 'c10m_publishes_unavailable_total'),
      reconnects: await metricSum(n, 'c10m_redis_reconnects_total'),
      recovered: await metricSum(n, 'c10m_redis_recovered_messages_total'),
      lost: await metricSum(n, 'c10m_redis_lost_messages_total'),
    })),
  );
}

/** Client connections Redis closed for their output buffer limit so far (its log says so). */
export function outputBufferCloses(redis: BenchRedis): number {
  return (redis.log().match(/for overcoming of output buffer limits/g) ?? []).length;
}
