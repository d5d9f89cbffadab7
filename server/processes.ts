// `c10m serve --processes N`: the top supervisor of a node made of N node
// processes. One process cannot hold ten million sessions in most places:
// its descriptors are capped (20,000 here, where even root cannot raise the
// hard limit; fs.nr_open, 1,048,576 by default, in containers, and a pod
// cannot raise it). So the top forks N node processes (server/node-process.ts),
// each the ordinary node with its workgroups, all listening on the one
// public port with SO_REUSEPORT; it serves the node's one admin port
// (server/node-admin.ts) from the figures they report once a second, and
// restarts a process that dies, alone, with the workgroups' backoff.
//
// The IP hash spans every process: the kernel's SO_REUSEPORT group is made
// of every socket bound to the address and port with SO_REUSEPORT by the
// same user, whatever its process, and a classic-BPF program attached
// through any one of them indexes the group's whole socket array. Each
// process attaches the same program (hash of the client address modulo
// N x W, the sockets of all processes) once its own workgroups listen;
// until all N x W sockets are in the group, the indexes past its end fall
// to the kernel's 4-tuple hash. Topics meet across processes through the
// Redis engine, as across the nodes of a cluster.
import { fork, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { GAUGES, STATS_SLOTS } from '../protocol/stats';
import { AUTO_PROCESS_HEADROOM, DESCRIPTOR_RESERVE_BASE, DESCRIPTOR_RESERVE_PER_WORKGROUP } from '../sysctl/costs';
import { autoProcesses } from '../sysctl/profile';
import { ConfigError, MAX_PROCESSES, type Config } from './config';
import type { Logger } from './log';

const ENTRY = path.join(__dirname, 'node-process.js');

/** --processes auto leaves this share of each process's sessions free: reconnect storms open a socket before the old one is closed. */
export const AUTO_HEADROOM = AUTO_PROCESS_HEADROOM;
/** As the workgroups' restarts (server/supervisor.ts): 50 ms, doubling per death in a row, up to --max-restart-delay-ms. */
const RESTART_DELAY_MS = 50;
const RESTART_STABLE_MS = 60_000;

// ---- The plan: how many processes, how many workgroups each ----

export interface ProcessPlan {
  processes: number;
  workgroups: number;
  /** With auto: the sessions one process is sized for, and the arithmetic, for the log. */
  sessionsPerProcess: number | null;
  arithmetic: string | null;
}

/**
 * Resolves --processes (auto: ceil(--max-sessions / the sessions one process can hold at the
 * descriptor limit it can get, less AUTO_HEADROOM)) and the workgroups of each process: as given,
 * or, with several processes and --workgroups not given, the cores shared among them (at least
 * one: when N is large, one workgroup per process). Throws a ConfigError when N > 1 without the
 * Redis engine, or when auto needs more than MAX_PROCESSES.
 */
export function planProcesses(config: Config, workgroupsGiven: boolean, descriptorLimit: number, cores: number): ProcessPlan {
  let processes: number;
  let sessionsPerProcess: number | null = null;
  let arithmetic: string | null = null;
  if (config.processes === 'auto') {
    // The same arithmetic as `c10m doctor --processes auto` (sysctl/profile.ts).
    ({ sessionsPerProcess, processes } = autoProcesses(config.maxSessions, descriptorLimit));
    if (sessionsPerProcess < 1) throw new ConfigError(`--processes auto: a process may open only ${descriptorLimit} descriptors, too few for any session`);
    arithmetic =
      `--max-sessions ${config.maxSessions} / ${sessionsPerProcess} sessions per process ` +
      `(descriptor limit ${descriptorLimit} - ${DESCRIPTOR_RESERVE_BASE} reserved - ${DESCRIPTOR_RESERVE_PER_WORKGROUP} per workgroup, ` +
      `less ${AUTO_HEADROOM * 100}% headroom) = ${processes} process${processes === 1 ? '' : 'es'}`;
    if (processes > MAX_PROCESSES) throw new ConfigError(`--processes auto: ${arithmetic}, above the most allowed (${MAX_PROCESSES}); raise the descriptor limit (RLIMIT_NOFILE)`);
    if (processes > 1 && config.engine !== 'redis') {
      throw new ConfigError(
        `--processes auto: ${arithmetic}, needs --engine redis: topics meet across node processes through Redis; start a Redis 7 and add --engine redis --redis-url redis://HOST:PORT, or lower --max-sessions`,
      );
    }
  } else {
    processes = config.processes;
  }
  const workgroups = workgroupsGiven || processes === 1 ? config.workgroups : Math.max(1, Math.floor(cores / processes));
  return { processes, workgroups, sessionsPerProcess, arithmetic };
}

// ---- What the top and a node process say to each other (IPC, advanced serialization) ----

export interface ChildStart {
  type: 'start';
  index: number;
  /** Listening sockets of all processes: the IP hash's modulus. */
  totalSockets: number;
  config: Config;
}

export type TopCommand = { type: 'drain' };

/** A node process's figures, sent once a second. */
export interface MemberStats {
  blocks: Float64Array[];
  restarts: number[];
  listening: number;
  down: number;
  cpu: NodeJS.CpuUsage;
  rss: number;
  heapUsed: number;
  openDescriptors: number | null;
  arenaBytes: number;
  ipHashAttached: boolean | null;
}

export type ChildReport = { type: 'listening'; port: number; pid: number; workgroups: number } | { type: 'failed'; error: string } | ({ type: 'stats' } & MemberStats);

// ---- The supervisor ----

export interface Member {
  index: number;
  child: ChildProcess | null;
  pid: number;
  /** It said it listens (all its workgroups did once), and has not died since. */
  started: boolean;
  restarts: number;
  deathsInARow: number;
  listeningSinceMs: number;
  downSinceMs: number;
  nextRestartAtMs: number;
  /** Its last report (null: none since it started). */
  stats: MemberStats | null;
  /** Counters of its earlier lives, per workgroup block, so that the node's counters never go back. */
  carry: Float64Array[];
}

export interface DownProcess {
  process: number;
  restarts: number;
  downSeconds: number;
  nextRestartInSeconds: number;
}

const GAUGE_SLOTS = new Set<number>(GAUGES);

export class ProcessSupervisor extends EventEmitter {
  readonly members: Member[];
  totalRestarts = 0;
  private shuttingDown = false;
  private started = false;

  /** config: with processes and workgroups resolved (planProcesses); port: the public port, already chosen. */
  constructor(
    private readonly config: Config,
    private readonly log: Logger,
    readonly count: number,
    readonly port: number,
  ) {
    super();
    this.members = Array.from({ length: count }, (_, index) => ({
      index,
      child: null,
      pid: 0,
      started: false,
      restarts: 0,
      deathsInARow: 0,
      listeningSinceMs: 0,
      downSinceMs: 0,
      nextRestartAtMs: 0,
      stats: null,
      carry: Array.from({ length: config.workgroups }, () => new Float64Array(STATS_SLOTS)),
    }));
  }

  get workgroupsPerProcess(): number {
    return this.config.workgroups;
  }

  /** Every process listens with every workgroup (by its last report). */
  get ready(): boolean {
    return !this.shuttingDown && this.members.every((m) => this.listening(m));
  }

  listening(m: Member): boolean {
    return m.started && m.child !== null && (m.stats === null || m.stats.listening === this.config.workgroups);
  }

  listeningCount(): number {
    return this.members.filter((m) => this.listening(m)).length;
  }

  down(): DownProcess[] {
    if (!this.started || this.shuttingDown) return [];
    const now = Date.now();
    return this.members
      .filter((m) => !m.started)
      .map((m) => ({
        process: m.index,
        restarts: m.restarts,
        downSeconds: m.downSinceMs > 0 ? (now - m.downSinceMs) / 1000 : 0,
        nextRestartInSeconds: m.nextRestartAtMs > 0 ? Math.max(0, m.nextRestartAtMs - now) / 1000 : 0,
      }));
  }

  /** A process's workgroup blocks: its last report plus the counters of its earlier lives (gauges 0 while it is down). */
  blocksOf(m: Member): Float64Array[] {
    return m.carry.map((carry, w) => {
      const out = carry.slice();
      const cur = m.child !== null ? m.stats?.blocks[w] : undefined;
      if (cur) for (let i = 0; i < STATS_SLOTS; i++) out[i] = GAUGE_SLOTS.has(i) ? cur[i] : out[i] + cur[i];
      return out;
    });
  }

  /** Starts every process; resolves once all listen, rejects (stopping the others) if one cannot. */
  async start(): Promise<void> {
    try {
      await Promise.all(this.members.map((m) => this.spawn(m)));
    } catch (err) {
      await this.drain(1000);
      throw err;
    }
    this.started = true;
  }

  private childConfig(): Config {
    const c = this.config;
    const n = this.count;
    return {
      ...c,
      processes: 1,
      port: this.port,
      maxSessions: Math.ceil(c.maxSessions / n),
      admissionRate: c.admissionRate === 0 ? 0 : Math.max(1, Math.round(c.admissionRate / n)),
      cacheBytes: Math.max(1024 * 1024, Math.floor(c.cacheBytes / n)),
    };
  }

  private spawn(m: Member): Promise<void> {
    const child = fork(ENTRY, [], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      serialization: 'advanced',
      execArgv: [...process.execArgv, ...memberV8Flags(this.count, availableParallelism())],
    });
    m.child = child;
    m.pid = child.pid ?? 0;
    m.started = false;
    m.stats = null;
    const start: ChildStart = { type: 'start', index: m.index, totalSockets: this.count * this.config.workgroups, config: this.childConfig() };
    child.send(start);
    return new Promise((resolve, reject) => {
      let settled = false;
      child.on('message', (r: ChildReport) => {
        switch (r.type) {
          case 'listening':
            m.started = true;
            m.listeningSinceMs = Date.now();
            m.downSinceMs = 0;
            this.emit('listening', m.index);
            if (!settled) {
              settled = true;
              resolve();
            }
            break;
          case 'stats':
            if (m.child === child) m.stats = r;
            break;
          case 'failed':
            if (!settled) {
              settled = true;
              reject(new Error(`node process ${m.index}: ${r.error}`));
            }
            break;
        }
      });
      child.on('exit', (code, signal) => {
        const now = Date.now();
        if (m.listeningSinceMs > 0 && now - m.listeningSinceMs >= RESTART_STABLE_MS) m.deathsInARow = 0;
        if (m.downSinceMs === 0) m.downSinceMs = now;
        const wasStarted = m.started;
        // Its counters so far stay in the node's sums; its gauges (sessions, ...) are gone with it.
        if (m.stats) m.carry = this.blocksOf(m).map((b) => b.map((v, i) => (GAUGE_SLOTS.has(i) ? 0 : v)));
        m.child = null;
        m.started = false;
        m.stats = null;
        m.listeningSinceMs = 0;
        this.emit('exit', m.index, code, signal);
        if (!settled) {
          settled = true;
          reject(new Error(`node process ${m.index} exited (${signal ?? `code ${code}`}) before listening`));
        }
        if (!this.shuttingDown && (this.started || wasStarted)) this.restart(m, code, signal);
      });
    });
  }

  private restart(m: Member, code: number | null, signal: NodeJS.Signals | null): void {
    const delayMs = Math.min(this.config.maxRestartDelayMs, RESTART_DELAY_MS * 2 ** Math.min(m.deathsInARow, 30));
    m.deathsInARow++;
    m.restarts++;
    this.totalRestarts++;
    m.nextRestartAtMs = Date.now() + delayMs;
    this.log.warn({ process: m.index, pid: m.pid, code, signal, restarts: m.restarts, deathsInARow: m.deathsInARow, delayMs }, 'node process exited; restarting it');
    setTimeout(() => {
      m.nextRestartAtMs = 0;
      if (this.shuttingDown) return;
      this.spawn(m).then(
        () => this.log.info({ process: m.index, pid: m.pid, restarts: m.restarts }, 'node process restarted'),
        // Its exit (which follows) schedules the next attempt.
        (err) => this.log.error({ process: m.index, err: (err as Error).message }, 'node process restart failed; trying again'),
      );
    }, delayMs);
  }

  /** Tells every process to drain (sessions told to reconnect, 1001) and waits for them to end; SIGKILL past the timeout. */
  async drain(timeoutMs: number): Promise<void> {
    this.shuttingDown = true;
    await Promise.all(
      this.members.map((m) => {
        const child = m.child;
        if (child === null || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
        return new Promise<void>((resolve) => {
          const kill = setTimeout(() => child.kill('SIGKILL'), timeoutMs + 3000);
          child.once('exit', () => {
            clearTimeout(kill);
            resolve();
          });
          const cmd: TopCommand = { type: 'drain' };
          if (child.connected) child.send(cmd);
          else child.kill('SIGTERM');
        });
      }),
    );
  }
}

/**
 * V8 flags of a node process (process-wide: its main thread and its workgroups), for the fixed
 * cost that 50 of them multiply. Measured on empty processes (docs/PERFORMANCE.md): V8's young
 * generation grows its semi-spaces to 8-16 MB per isolate while modules load and keeps them, about
 * 16 MB of the 43 MB anonymous memory of a process with one workgroup; 1 MB semi-spaces cost
 * more frequent scavenges, cheap while a process holds 1/N of the node's traffic, so they are
 * used once processes are at least as many as cores. V8's platform threads (4 by default, each
 * with its malloc arena) are the cores a process has, at least 1: -4.6 MB each.
 */
export function memberV8Flags(count: number, cores: number): string[] {
  const flags = [`--v8-pool-size=${Math.max(1, Math.min(4, Math.floor(cores / count)))}`];
  if (count >= cores) flags.push('--max-semi-space-size=1');
  return flags;
}
