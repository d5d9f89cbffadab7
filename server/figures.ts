// Figures the control plane reads, without asking any workgroup anything:
// the workgroups' shared stats blocks (protocol/stats.ts; one writer each,
// plain loads here) and this process (memory, CPU, descriptors, native-io's
// arenas), taken as snapshots. /metrics (metrics.ts), /jmx (jmx.ts) and the
// dashboard are views of them (observability.ts wires the views).
import { availableParallelism } from 'node:os';
import { readdirSync, statSync } from 'node:fs';
import { arenaStats, limitsReport, nativeStatus, type ArenaStats, type LimitsReport, type NativeStatus } from '../native-io';
import { STATS_SLOTS, Stat } from '../protocol/stats';
import { combineInto } from './aggregate';
import type { Supervisor } from './supervisor';

/** One read of every stats block, taken at one moment. */
export interface StatsSnapshot {
  /** performance.now() at the read: for rates (monotonic). */
  monoMs: number;
  /** Date.now() at the read: for display. */
  wallMs: number;
  /** A copy of each workgroup's block, by workgroup id. */
  blocks: Float64Array[];
  /** The blocks combined (server/aggregate.ts: sums, but the busiest loop, the worst engine state, the oldest heartbeat). */
  total: Float64Array;
  /** Seconds since each workgroup's last once-a-second heartbeat (null before its first): a stuck event loop grows it. */
  heartbeatAgeSeconds: (number | null)[];
  /** Restarts of each workgroup since the node started. */
  restarts: number[];
  totalRestarts: number;
  listening: number;
  /** Workgroups that died and are not listening again yet. */
  down: number;
  /** process.cpuUsage() at the read: every thread of the process, workgroups included (with --processes: of every process). */
  cpu: NodeJS.CpuUsage;
  /** With --processes: each node process (blocks then lists the workgroups of all, process by process). */
  processes?: ProcessSnapshot[];
}

/** One node process of several (`--processes`), as its last report (server/processes.ts) says. */
export interface ProcessSnapshot {
  index: number;
  pid: number;
  listening: boolean;
  /** Times the top restarted it. */
  restarts: number;
  /** Restarts of its workgroups, summed (in its current life). */
  workgroupRestarts: number;
  workgroups: number;
  /** Its workgroups' blocks combined (server/aggregate.ts: HEARTBEAT_MS the oldest, loop figures the busiest). */
  block: Float64Array;
  /** null while it is down or before its first report. */
  rss: number | null;
  heapUsed: number | null;
  openDescriptors: number | null;
  heartbeatAgeSeconds: number | null;
}

/** What the views (/metrics, /jmx) read: Figures for one process, NodeFigures (server/node-admin.ts) for --processes. */
export interface FigureSource {
  snapshot(): StatsSnapshot;
  processFigures(): ProcessFigures;
}

/** The process's own figures: memory, descriptors, native-io. */
export interface ProcessFigures {
  /** rss is the whole process; heapUsed, heapTotal, external and arrayBuffers are the main thread's isolate only. */
  memory: NodeJS.MemoryUsage;
  openDescriptors: number | null;
  limits: LimitsReport | null;
  arena: ArenaStats;
  native: NativeStatus;
  uptimeSeconds: number;
  cores: number;
}

/** How long the descriptor limits and kernel settings are reused before they are read again. */
const LIMITS_MAX_AGE_MS = 10_000;

/** The one source of figures that every view reads. */
export class Figures {
  private limitsCache: { atMs: number; report: LimitsReport | null } = { atMs: -Infinity, report: null };
  readonly startedAtMs = Date.now();

  constructor(readonly supervisor: Supervisor) {}

  get workgroups(): number {
    return this.supervisor.workgroups;
  }

  /** Copies every stats block; a few hundred doubles, no message to any workgroup. */
  snapshot(): StatsSnapshot {
    const sup = this.supervisor;
    const n = sup.workgroups;
    const blocks: Float64Array[] = new Array(n);
    const total = new Float64Array(STATS_SLOTS);
    const restarts: number[] = new Array(n);
    const heartbeatAge: (number | null)[] = new Array(n);
    const wallMs = Date.now();
    for (let id = 0; id < n; id++) {
      const block = new Float64Array(sup.stats[id]).slice();
      blocks[id] = block;
      combineInto(total, block);
      restarts[id] = sup.restartsOf(id);
      const beat = block[Stat.HEARTBEAT_MS];
      heartbeatAge[id] = beat > 0 ? Math.max(0, (wallMs - beat) / 1000) : null;
    }
    return {
      monoMs: performance.now(),
      wallMs,
      blocks,
      heartbeatAgeSeconds: heartbeatAge,
      total,
      restarts,
      totalRestarts: sup.totalRestarts,
      listening: sup.listeningCount(),
      down: sup.down().length,
      cpu: process.cpuUsage(),
    };
  }

  processFigures(): ProcessFigures {
    return {
      memory: process.memoryUsage(),
      openDescriptors: openDescriptors(),
      limits: this.limits(),
      arena: arenaStats(),
      native: nativeStatus(),
      uptimeSeconds: (Date.now() - this.startedAtMs) / 1000,
      cores: availableParallelism(),
    };
  }

  private limits(): LimitsReport | null {
    const now = Date.now();
    if (now - this.limitsCache.atMs > LIMITS_MAX_AGE_MS) {
      let report: LimitsReport | null = null;
      try {
        report = limitsReport();
      } catch {
        report = null;
      }
      this.limitsCache = { atMs: now, report };
    }
    return this.limitsCache.report;
  }
}

/**
 * Descriptors this process holds now (every session is one); null where
 * there is no procfs. Since Linux 6.2, stat() of /proc/self/fd gives the
 * count as its size, in microseconds; listing the folder instead costs
 * about 50 ms at 19,000 descriptors (measured here), so it is only the
 * fallback for older kernels, where st_size is 0.
 */
export function openDescriptors(): number | null {
  try {
    const size = statSync('/proc/self/fd').size;
    if (size > 0) return size;
    // One of the entries is the descriptor readdir itself holds open.
    return readdirSync('/proc/self/fd').length - 1;
  } catch {
    return null;
  }
}
