// The top of `c10m serve --processes N` (server/processes.ts): it binds no
// public socket itself; it starts the node processes and serves the node's
// one admin port. /metrics, /jmx and the dashboard read the figures every
// process reports once a second (so they are at most a second old): /jmx
// lists every workgroup of every process and each process, with the node's
// sums; /metrics has one series per process (label process) and the node's
// latency histograms. /readyz is ready when every process listens with
// every workgroup (and Redis is reachable); /healthz is 503 while a process
// or a workgroup is down.
import { availableParallelism } from 'node:os';
import { loadUws } from '../native-io/uws';
import { maskRedisUrl } from '../shm/redis-url';
import { STATS_SLOTS, Stat } from '../protocol/stats';
import { AdminServer, sendJson } from './admin';
import { combineInto } from './aggregate';
import { isLoopbackHost, type Config } from './config';
import { registerDashboard } from './dashboard';
import { engineHealth } from './engine-health';
import { Figures, type FigureSource, type ProcessFigures, type ProcessSnapshot, type StatsSnapshot } from './figures';
import { JmxView, JMX_WINDOW_SECONDS } from './jmx';
import type { Logger } from './log';
import { PromMetrics } from './metrics';
import { assertPortFree, freePort } from './ports';
import { ProcessSupervisor, type ProcessPlan } from './processes';
import { checkRedis } from './redis-check';
import type { StartOptions } from './server';
import type { Supervisor } from './supervisor';

export interface RunningNode {
  config: Config;
  processes: ProcessSupervisor;
  admin: AdminServer;
  port: number;
  adminPort: number;
  shutdown(): Promise<void>;
}

/** The figures of every node process, as their last reports say, in the shapes the views read. */
export class NodeFigures implements FigureSource {
  private readonly own: Figures;

  constructor(private readonly sup: ProcessSupervisor) {
    // Only the top's own process figures (memory, limits) are read from it, never its (absent) workgroups.
    this.own = new Figures(null as unknown as Supervisor);
  }

  snapshot(): StatsSnapshot {
    const sup = this.sup;
    const w = sup.workgroupsPerProcess;
    const wallMs = Date.now();
    const blocks: Float64Array[] = [];
    const restarts: number[] = [];
    const heartbeatAgeSeconds: (number | null)[] = [];
    const total = new Float64Array(STATS_SLOTS);
    const processes: ProcessSnapshot[] = [];
    const cpu = process.cpuUsage();
    let listening = 0;
    let down = 0;
    let workgroupRestarts = 0;
    for (const m of sup.members) {
      const own = sup.blocksOf(m);
      const block = new Float64Array(STATS_SLOTS);
      let wgRestarts = 0;
      own.forEach((b, i) => {
        blocks.push(b);
        const r = m.stats?.restarts[i] ?? 0;
        wgRestarts += r;
        restarts.push(r);
        const beat = b[Stat.HEARTBEAT_MS];
        heartbeatAgeSeconds.push(beat > 0 ? Math.max(0, (wallMs - beat) / 1000) : null);
        combineInto(block, b);
      });
      const oldestBeat = block[Stat.HEARTBEAT_MS];
      combineInto(total, block);
      const s = m.stats;
      listening += s ? s.listening : 0;
      down += s ? s.down : m.started ? 0 : w;
      workgroupRestarts += wgRestarts;
      if (s) {
        cpu.user += s.cpu.user;
        cpu.system += s.cpu.system;
      }
      processes.push({
        index: m.index,
        pid: m.pid,
        listening: sup.listening(m),
        restarts: m.restarts,
        workgroupRestarts: wgRestarts,
        workgroups: w,
        block,
        rss: s?.rss ?? null,
        heapUsed: s?.heapUsed ?? null,
        openDescriptors: s?.openDescriptors ?? null,
        heartbeatAgeSeconds: oldestBeat > 0 ? Math.max(0, (wallMs - oldestBeat) / 1000) : null,
      });
    }
    return {
      monoMs: performance.now(),
      wallMs,
      blocks,
      total,
      heartbeatAgeSeconds,
      restarts,
      totalRestarts: sup.totalRestarts + workgroupRestarts,
      listening,
      down,
      cpu,
      processes,
    };
  }

  /** The top's own figures, with the memory and descriptors of every process added (RSS: the node's). */
  processFigures(): ProcessFigures {
    const f = this.own.processFigures();
    let rss = f.memory.rss;
    let fds = f.openDescriptors;
    for (const m of this.sup.members) {
      rss += m.stats?.rss ?? 0;
      if (fds !== null) fds += m.stats?.openDescriptors ?? 0;
    }
    return { ...f, memory: { ...f.memory, rss }, openDescriptors: fds };
  }
}

/** Starts the node processes and the admin port; rejects (nothing left running) if a process cannot listen. */
export async function startProcesses(config: Config, plan: ProcessPlan, log: Logger, options: StartOptions = {}): Promise<RunningNode> {
  // The same refusals as one process, once, before anything starts.
  const uws = loadUws(config.allowSlowFallback);
  if (config.engine === 'redis') {
    const r = await checkRedis({ urls: config.redisUrl, cluster: config.redisCluster, waitSeconds: config.redisWaitSeconds, signal: options.signal }, log);
    log.info({ url: r.url, redisVersion: r.redisVersion, attempts: r.attempts, cluster: config.redisCluster, prefix: config.redisPrefix }, 'redis reachable');
  }
  if (config.auth === 'none' && !isLoopbackHost(config.host)) log.warn({ host: config.host }, 'auth none on a public --host: see "Securing a node" in the README');
  log.info(
    { processes: plan.processes, workgroupsPerProcess: plan.workgroups, cores: availableParallelism(), ...(plan.arithmetic ? { auto: plan.arithmetic } : {}) },
    plan.arithmetic ? `--processes auto: ${plan.arithmetic}` : `starting ${plan.processes} node processes`,
  );
  // Every process binds the same port: a free one is chosen here when --port is 0.
  if (config.port !== 0) await assertPortFree(config.host, config.port);
  const port = config.port === 0 ? await freePort(config.host) : config.port;
  const sup = new ProcessSupervisor({ ...config, workgroups: plan.workgroups }, log, plan.processes, port);
  const admin = new AdminServer({ host: config.adminHost, port: config.adminPort, token: config.adminToken }, log);
  const figures = new NodeFigures(sup);
  let shuttingDown = false;
  admin.route('/healthz', (_req, res) => {
    const s = figures.snapshot();
    const downProcesses = sup.down();
    const ok = downProcesses.length === 0 && s.down === 0;
    sendJson(res, ok ? 200 : 503, {
      status: ok ? 'ok' : downProcesses.length > 0 ? 'processes down' : 'workgroups down',
      processes: sup.count,
      processesListening: sup.listeningCount(),
      downProcesses,
      workgroups: s.blocks.length,
      listening: s.listening,
    });
  });
  admin.route('/readyz', (_req, res) => {
    const s = figures.snapshot();
    const engine = engineHealth(s.blocks, config.engine);
    const reasons: string[] = [];
    if (shuttingDown) reasons.push('shutting down');
    else if (!sup.ready) reasons.push('processes not listening');
    if (engine.unreachable.length > 0) reasons.push('redis unreachable');
    const ready = reasons.length === 0;
    sendJson(res, ready ? 200 : 503, {
      ready,
      reasons,
      shuttingDown,
      processes: sup.count,
      processesListening: sup.listeningCount(),
      downProcesses: sup.down(),
      workgroups: s.blocks.length,
      listening: s.listening,
      engine: engine.kind,
      redisUnreachable: engine.unreachable,
    });
  });
  const metrics = new PromMetrics(figures, { processes: true });
  const jmx = new JmxView(figures, { windowSeconds: JMX_WINDOW_SECONDS });
  admin.route('/metrics', (req, res) => metrics.serve(req, res));
  admin.route('/jmx', (req, res) => jmx.serve(req, res));
  registerDashboard(admin);
  const adminPort = await admin.listen();
  try {
    await sup.start();
  } catch (err) {
    await admin.close();
    throw err;
  }
  jmx.start();
  log.info(
    {
      port,
      adminPort,
      processes: sup.count,
      workgroups: plan.workgroups,
      uwsNative: uws.native,
      engine: config.engine,
      ...(config.engine === 'redis' ? { redis: config.redisUrl.map(maskRedisUrl) } : {}),
    },
    'c10m listening',
  );
  let shutdownPromise: Promise<void> | null = null;
  return {
    config,
    processes: sup,
    admin,
    port,
    adminPort,
    shutdown() {
      if (shutdownPromise) return shutdownPromise;
      shuttingDown = true;
      shutdownPromise = (async () => {
        log.info({ drainTimeoutSeconds: config.drainTimeoutSeconds, processes: sup.count }, 'shutting down: draining every node process');
        await sup.drain(config.drainTimeoutSeconds * 1000);
        jmx.stop();
        await admin.close();
        log.info('shut down');
      })();
      return shutdownPromise;
    },
  };
}
