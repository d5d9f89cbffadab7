// The supervisor starts the workgroups, knows which of them listen, and
// restarts one that dies without disturbing the others: always, however
// often it dies, with a growing delay between attempts (a workgroup left
// down would answer OWNER_TIMEOUT for its topics forever). It is on no
// per-message path: workgroups talk to it only about their life cycle.
import { EventEmitter } from 'node:events';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { STATS_BYTES, Stat } from '../protocol/stats';
import { allocShared, attachIpHash } from '../native-io';
import { Doorbell } from '../shm/doorbell';
import { Ring } from '../shm/ring';
import type { AuthOptions, ControlCommand, WorkgroupEvent, WorkgroupInit } from '../shm/workgroup-init';
import type { Config } from './config';
import { resolveLogFormat, type Logger } from './log';
import { freePort } from './ports';

// The workgroup entry, next to this file in dist/ (server/ never imports workgroups/).
const WORKER_ENTRY = path.join(__dirname, '..', 'workgroups', 'worker.js');

/** Delay before the first restart of a workgroup that died; doubled for each death in a row, up to --max-restart-delay-ms. */
const RESTART_DELAY_MS = 50;
/** A workgroup that listened this long has recovered: its next death restarts it after RESTART_DELAY_MS again. */
const RESTART_STABLE_MS = 60_000;

interface Slot {
  worker: Worker | null;
  listening: boolean;
  restarts: number;
  /** Deaths since it last stayed up RESTART_STABLE_MS: the backoff's exponent. */
  deathsInARow: number;
  /** Date.now() when it last began to listen (0: not listening). */
  listeningSinceMs: number;
  /** Date.now() when it last stopped listening after the node started (0: up, or not started yet). */
  downSinceMs: number;
  /** Date.now() of the next restart attempt (0: none scheduled). */
  nextRestartAtMs: number;
  uwsNative: boolean;
}

/** A workgroup that is not listening while the node runs (it died; its restart is pending or in progress). */
export interface DownWorkgroup {
  workgroup: number;
  restarts: number;
  downSeconds: number;
  /** Seconds until the next restart attempt; 0 when one is in progress. */
  nextRestartInSeconds: number;
}

type Event = WorkgroupEvent;

/** Posts a control command (typed: the workgroup reads the same union). */
function control(w: Worker, cmd: ControlCommand): void {
  w.postMessage(cmd);
}

export class Supervisor extends EventEmitter {
  readonly stats: SharedArrayBuffer[];
  /** rings[from * N + to]: made once, so that they outlive a workgroup's restart (its peers keep theirs). */
  readonly rings: (SharedArrayBuffer | null)[];
  readonly doorbells: SharedArrayBuffer[];
  /** Per-address connection tables, one per workgroup, made once (null without --max-connections-per-ip). */
  readonly ipTables: SharedArrayBuffer[] | null;
  /** What attachIpHash said, once every workgroup listened (null: not attached). */
  ipHash: { attached: boolean; detail: string } | null = null;
  private readonly slots: Slot[];
  private shuttingDown = false;
  /** Every workgroup listened once (start() resolved): from then on one that is not listening is down. */
  private started = false;
  private boundPort = 0;
  totalRestarts = 0;

  constructor(
    private readonly config: Config,
    private readonly auth: AuthOptions,
    private readonly log: Logger,
    /** With --processes: the IP hash indexes the sockets of every process (groups), not this one's workgroups. */
    private readonly ipHashSpan?: { groups: number; acrossProcesses: true; process: number },
  ) {
    super();
    this.stats = Array.from({ length: config.workgroups }, () => new SharedArrayBuffer(STATS_BYTES));
    this.slots = Array.from({ length: config.workgroups }, () => ({
      worker: null,
      listening: false,
      restarts: 0,
      deathsInARow: 0,
      listeningSinceMs: 0,
      downSinceMs: 0,
      nextRestartAtMs: 0,
      uwsNative: true,
    }));
    const n = config.workgroups;
    const dataBytes = ringDataBytes(config.ringBytes);
    this.rings = [];
    for (let from = 0; from < n; from++) {
      for (let to = 0; to < n; to++) {
        if (from === to) {
          this.rings.push(null);
          continue;
        }
        // Ordinary pages, not huge ones: there are N(N-1) rings and a ring
        // between two quiet workgroups should cost the few 4 KiB pages it
        // touches, not a 2 MiB huge page each (THP) or its whole size from
        // the hugetlb pool. A busy ring becomes resident as its data wraps.
        const sab = allocShared(Ring.bytesFor(dataBytes), { hugePages: false }).buffer;
        Ring.init(sab, dataBytes, 0);
        this.rings.push(sab);
      }
    }
    this.doorbells = Array.from({ length: n }, () => Doorbell.create());
    // Room for twice a workgroup's share of --max-sessions addresses (at most half full), 2^12..2^22 slots.
    const slots = Math.min(1 << 22, Math.max(1 << 12, 2 ** Math.ceil(Math.log2((2 * config.maxSessions) / n))));
    this.ipTables = config.maxConnectionsPerIp > 0 ? Array.from({ length: n }, () => new SharedArrayBuffer(slots * 8)) : null;
  }

  get workgroups(): number {
    return this.slots.length;
  }
  get port(): number {
    return this.boundPort;
  }
  get ready(): boolean {
    return !this.shuttingDown && this.slots.every((s) => s.listening);
  }
  listeningCount(): number {
    return this.slots.filter((s) => s.listening).length;
  }
  restartsOf(id: number): number {
    return this.slots[id].restarts;
  }
  /** Workgroups that died and are not listening again yet (none while starting or shutting down). */
  down(): DownWorkgroup[] {
    if (!this.started || this.shuttingDown) return [];
    const now = Date.now();
    const out: DownWorkgroup[] = [];
    this.slots.forEach((s, id) => {
      if (s.listening) return;
      out.push({
        workgroup: id,
        restarts: s.restarts,
        downSeconds: s.downSinceMs > 0 ? (now - s.downSinceMs) / 1000 : 0,
        nextRestartInSeconds: s.nextRestartAtMs > 0 ? Math.max(0, s.nextRestartAtMs - now) / 1000 : 0,
      });
    });
    return out;
  }
  statsOf(id: number): Float64Array {
    return new Float64Array(this.stats[id]);
  }

  /** Starts every workgroup; resolves once all listen, rejects if one cannot. */
  async start(): Promise<void> {
    // uSockets does not share a port bound as 0 with SO_REUSEPORT peers, so port 0 with several
    // workgroups means: pick a free port first, then every workgroup binds it.
    const port = this.config.port === 0 && this.slots.length > 1 ? await freePort(this.config.host) : this.config.port;
    this.boundPort = await this.spawn(0, port, true);
    await Promise.all(this.slots.slice(1).map((_, i) => this.spawn(i + 1, this.boundPort, true)));
    this.started = true;
    this.attachIpHash();
  }

  /**
   * Every connection from one address to one workgroup (the per-IP cap relies on it), unless
   * --benchmark-mode keeps the kernel's 4-tuple hash. Once, after every workgroup listens:
   * the program picks a socket by its index in the port's SO_REUSEPORT group, so a restarted
   * workgroup (which rejoins at the end) changes which addresses go where, never that one
   * address goes to one place.
   */
  private attachIpHash(): void {
    const groups = this.ipHashSpan?.groups ?? this.slots.length;
    if (groups < 2 || this.config.benchmarkMode) return;
    try {
      const r = attachIpHash(this.boundPort, groups, this.ipHashSpan !== undefined);
      const attached = r.attached;
      this.ipHash = { attached, detail: r.attached ? `fd ${r.fd}, ${r.sockets} sockets` : r.reason };
      if (attached) this.log.info({ port: this.boundPort, groups }, 'connections IP-hashed to workgroups');
      else this.log.warn({ result: r }, 'could not IP-hash connections to workgroups: the kernel spreads them by 4-tuple (the per-IP cap is then per workgroup)');
    } catch (err) {
      this.ipHash = { attached: false, detail: (err as Error).message };
      this.log.warn({ err: (err as Error).message }, 'could not IP-hash connections to workgroups: the kernel spreads them by 4-tuple (the per-IP cap is then per workgroup)');
    }
  }

  /** Fault injection (tests): blocks workgroup id's thread for ms (it reads no ring, serves no socket). */
  stall(id: number, ms: number): boolean {
    const w = this.slots[id]?.worker;
    if (!w) return false;
    control(w, { type: 'stall', ms });
    return true;
  }

  /** Fault injection (tests): the next `count` commands workgroup id handles throw, as a bug would. */
  failCommands(id: number, count: number): boolean {
    const w = this.slots[id]?.worker;
    if (!w) return false;
    control(w, { type: 'fail-commands', count });
    return true;
  }

  /** Fault injection (tests): makes workgroup id die. */
  crash(id: number, how: 'exit' | 'throw'): boolean {
    const w = this.slots[id]?.worker;
    if (!w) return false;
    control(w, { type: 'crash', how });
    return true;
  }

  /** initial: part of start(), where a workgroup that cannot listen fails the start instead of being restarted. */
  private spawn(id: number, port: number, initial: boolean): Promise<number> {
    const slot = this.slots[id];
    const c = this.config;
    // The worker contract, typed on both sides (shm/workgroup-init.ts).
    const init: WorkgroupInit = {
      id,
      count: this.slots.length,
      restarts: slot.restarts,
      stats: this.stats[id],
      allStats: this.stats,
      rings: this.rings,
      doorbells: this.doorbells,
      ipTables: this.ipTables,
      options: {
        host: c.host,
        port,
        maxPayloadBytes: c.maxPayloadBytes,
        maxBackpressureBytes: c.maxBackpressureBytes,
        idleTimeoutSeconds: c.idleTimeoutSeconds,
        sseHeartbeatSeconds: c.sseHeartbeatSeconds,
        maxConnectionsPerIp: c.maxConnectionsPerIp,
        maxSessionsPerSecondPerIp: c.maxSessionsPerSecondPerIp,
        admissionRate: c.admissionRate / this.slots.length,
        maxSubscriptionsPerSession: c.maxSubscriptionsPerSession,
        maxCommandsPerSecond: c.maxCommandsPerSecond,
        maxBytesPerSecond: c.maxBytesPerSecond,
        maxTopics: Math.ceil(c.maxTopics / this.slots.length),
        maxPatternsPerSession: c.maxPatternsPerSession,
        maxPatterns: c.maxPatterns,
        patternJournalEntries: c.patternJournalEntries,
        benchmarkMode: c.benchmarkMode,
        allowSlowFallback: c.allowSlowFallback,
        logLevel: c.logLevel,
        logFormat: resolveLogFormat(c.logFormat),
        processIndex: this.ipHashSpan?.process ?? -1,
        drainTimeoutSeconds: c.drainTimeoutSeconds,
        cacheMessages: c.cacheMessages,
        cacheSeconds: c.cacheSeconds,
        cacheTopicBytes: c.cacheTopicBytes,
        cacheBytes: Math.floor(c.cacheBytes / this.slots.length),
        snapshotTtlSeconds: c.snapshotTtlSeconds,
        idempotencyWindowSeconds: c.idempotencyWindowSeconds,
        idempotencyKeysPerTopic: c.idempotencyKeysPerTopic,
        maxRingSpillBytes: c.maxRingSpillBytes,
        corsOrigins: c.corsOrigins,
        faultInjection: c.debugRoutes,
        engine: c.engine,
        redis: { urls: c.redisUrl, cluster: c.redisCluster, prefix: c.redisPrefix },
        auth: this.auth,
      },
    };
    // The young generation capped (shm/heap.ts): V8 grows it to 48 MB in a connect burst and keeps it committed.
    const young = c.youngGenerationMb;
    const worker = new Worker(WORKER_ENTRY, { workerData: init, ...(young > 0 ? { resourceLimits: { maxYoungGenerationSizeMb: young } } : {}) });
    slot.worker = worker;
    slot.listening = false;
    return new Promise((resolve, reject) => {
      let settled = false;
      let listened = false;
      worker.on('message', (e: Event) => {
        switch (e.type) {
          case 'listening':
            listened = true;
            slot.listening = true;
            slot.listeningSinceMs = Date.now();
            slot.downSinceMs = 0;
            slot.uwsNative = e.uwsNative;
            if (!settled) {
              settled = true;
              resolve(e.port);
            }
            this.emit('listening', id);
            break;
          case 'accepting':
            // Out of descriptors, a workgroup closes its listen socket and opens a new one later: the
            // port's SO_REUSEPORT group changed, so the IP hash is attached again once all accept.
            slot.listening = e.accepting;
            if (e.accepting && this.slots.every((s) => s.listening)) this.attachIpHash();
            this.emit(e.accepting ? 'listening' : 'paused', id);
            break;
          case 'listen-failed':
            if (!settled) {
              settled = true;
              reject(new Error(`workgroup ${id}: ${e.error}`));
            }
            break;
          case 'fatal':
            this.log.error({ wg: id, error: e.error }, 'workgroup reported a fatal error');
            if (!settled) {
              settled = true;
              reject(new Error(`workgroup ${id}: ${e.error}`));
            }
            break;
          case 'drained':
            this.emit('drained', id, e.closedSessions);
            break;
        }
      });
      worker.on('error', (err) => {
        this.log.error({ wg: id, err }, 'workgroup thread error');
        if (!settled) {
          settled = true;
          reject(err);
        }
      });
      worker.on('exit', (code) => {
        const now = Date.now();
        if (slot.listeningSinceMs > 0 && now - slot.listeningSinceMs >= RESTART_STABLE_MS) slot.deathsInARow = 0;
        if (slot.downSinceMs === 0) slot.downSinceMs = now;
        slot.listening = false;
        slot.listeningSinceMs = 0;
        slot.worker = null;
        // The stats block outlives the thread: its gauges must not claim sessions that are gone.
        const s = new Float64Array(this.stats[id]);
        s[Stat.SESSIONS] = 0;
        s[Stat.LISTENING] = 0;
        // Its sessions are gone with it: their addresses no longer count against the cap.
        if (this.ipTables !== null) new Uint32Array(this.ipTables[id]).fill(0);
        this.emit('exit', id, code);
        if (!settled) {
          settled = true;
          reject(new Error(`workgroup ${id} exited with code ${code} before listening`));
        }
        // A restart that dies before it listens is retried like any other death; only start() gives up.
        if (!this.shuttingDown && (!initial || listened)) this.restart(id, code);
      });
    });
  }

  /** Never gives up: the delay doubles per death in a row, up to --max-restart-delay-ms. */
  private restart(id: number, code: number): void {
    const slot = this.slots[id];
    const delayMs = Math.min(this.config.maxRestartDelayMs, RESTART_DELAY_MS * 2 ** Math.min(slot.deathsInARow, 30));
    slot.deathsInARow++;
    slot.restarts++;
    this.totalRestarts++;
    slot.nextRestartAtMs = Date.now() + delayMs;
    this.log.warn({ wg: id, code, restarts: slot.restarts, deathsInARow: slot.deathsInARow, delayMs }, 'workgroup exited; restarting it');
    setTimeout(() => {
      slot.nextRestartAtMs = 0;
      if (this.shuttingDown) return;
      this.spawn(id, this.boundPort, false).then(
        () => {
          this.log.info({ wg: id, restarts: slot.restarts }, 'workgroup restarted');
          if (this.slots.every((s) => s.listening)) this.attachIpHash();
        },
        // Its exit (which follows) schedules the next attempt.
        (err) => this.log.error({ wg: id, err: (err as Error).message }, 'workgroup restart failed; trying again'),
      );
    }, delayMs);
  }

  /** Drains every workgroup (stop accepting, close sessions with 1001) and waits for their threads to end. */
  async drain(timeoutMs: number): Promise<void> {
    this.shuttingDown = true;
    const exits = this.slots.map(
      (slot) =>
        new Promise<void>((resolve) => {
          const w = slot.worker;
          if (w === null) return resolve();
          w.once('exit', () => resolve());
          control(w, { type: 'drain', timeoutMs });
        }),
    );
    // A thread that does not end within the drain time plus a margin is reported, not killed:
    // terminating a thread with open uWS handles would abort the process anyway.
    await Promise.race([Promise.all(exits), new Promise((r) => setTimeout(r, timeoutMs + 3000).unref())]);
  }
}

/** Data bytes of a ring: the configured size rounded up to a power of two. */
function ringDataBytes(bytes: number): number {
  let n = 4096;
  while (n < bytes) n *= 2;
  return n;
}
