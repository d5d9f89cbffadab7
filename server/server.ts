// Starts a node: the workgroups (data plane) and the admin port (control plane).
import { loadUws } from '../native-io/uws';
import { AdminServer, sendJson } from './admin';
import { loadAuth } from './auth-config';
import { isLoopbackHost, type Config } from './config';
import { engineHealth } from './engine-health';
import type { Logger } from './log';
import type { registerObservability as RegisterObservability } from './observability';
import { checkRedis } from './redis-check';
import { maskRedisUrl } from '../shm/redis-url';
import { assertPortFree } from './ports';
import { Supervisor } from './supervisor';
import { collectGarbage, restoreYoungGrowth } from '../shm/heap';

export interface RunningServer {
  config: Config;
  supervisor: Supervisor;
  admin: AdminServer;
  port: number;
  adminPort: number;
  uwsNative: boolean;
  /** Graceful shutdown: readiness off, sessions told to reconnect (1001), drained within the drain timeout. */
  shutdown(): Promise<void>;
}

export interface StartOptions {
  /** Aborts the wait for Redis at start (e.g. a SIGTERM): startServer rejects with signal.reason. */
  signal?: AbortSignal;
  /**
   * One node process of several (`--processes`, server/processes.ts): the port is the one the top
   * bound for all, there is no admin port here (the top has the node's), and the IP hash spans
   * totalSockets listening sockets of every process.
   */
  member?: { index: number; totalSockets: number };
}

const AUTH_NONE_WARNING = '--auth none on a public --host: anyone who reaches the port may subscribe to and publish on any topic; see "Securing a node" in the README';

/** Rejects with UwsFallbackRefused, RedisStartError (exit code in it) or an Error saying why the node could not start. */
export async function startServer(config: Config, log: Logger, options: StartOptions = {}): Promise<RunningServer> {
  // Refuses (throws UwsFallbackRefused) before any thread starts, unless the fallback is allowed.
  const uws = loadUws(config.allowSlowFallback);
  if (!uws.native) {
    log.warn(
      { reason: uws.nativeError },
      '!!! uWebSockets.js native binary did not load: serving on its SLOW pure-JS fallback because --allow-slow-fallback is set. Do not run production like this. !!!',
    );
  }
  // Before anything binds or any workgroup starts: a Redis that is not there, refuses us or is too old stops the start here.
  // A member process (--processes): the top checked Redis for the node.
  if (config.engine === 'redis' && !options.member) {
    const r = await checkRedis({ urls: config.redisUrl, cluster: config.redisCluster, waitSeconds: config.redisWaitSeconds, signal: options.signal }, log);
    log.info({ url: r.url, redisVersion: r.redisVersion, attempts: r.attempts, cluster: config.redisCluster, prefix: config.redisPrefix }, 'redis reachable');
  }
  const auth = loadAuth(config);
  // A member process: the top supervisor warned once for the node.
  if (auth.mode === 'none' && !isLoopbackHost(config.host) && !options.member) log.warn({ host: config.host }, AUTH_NONE_WARNING);
  const member = options.member;
  const supervisor = new Supervisor(config, auth, log, member ? { groups: member.totalSockets, acrossProcesses: true, process: member.index } : undefined);
  const admin = new AdminServer({ host: config.adminHost, port: config.adminPort, token: config.adminToken }, log);
  let shuttingDown = false;
  if (config.adminToken === '' && !isLoopbackHost(config.adminHost)) {
    log.warn(
      { adminHost: config.adminHost },
      `!!! the admin port on ${config.adminHost} has no --admin-token (--admin-public is set): every figure and the dashboard are open to whoever reaches it !!!`,
    );
  }
  if (member) return startMember(config, log, supervisor, admin, uws.native);
  // Liveness tells the truth: 503 while a workgroup that died is not listening again (its topics cannot be served).
  admin.route('/healthz', (_req, res) => {
    const down = supervisor.down();
    sendJson(res, down.length === 0 ? 200 : 503, { status: down.length === 0 ? 'ok' : 'workgroups down', workgroups: supervisor.workgroups, listening: supervisor.listeningCount(), down });
  });
  // Not ready while Redis is unreachable (publishes would get UNAVAILABLE); sessions stay and /healthz stays 200.
  admin.route('/readyz', (_req, res) => {
    const engine = engineHealth(supervisor.stats.map((b) => new Float64Array(b)));
    const reasons: string[] = [];
    if (shuttingDown) reasons.push('shutting down');
    else if (!supervisor.ready) reasons.push('workgroups not listening');
    if (engine.unreachable.length > 0) reasons.push('redis unreachable');
    const ready = reasons.length === 0;
    sendJson(res, ready ? 200 : 503, {
      ready,
      reasons,
      warnings: auth.mode === 'none' && !isLoopbackHost(config.host) ? [AUTH_NONE_WARNING] : [],
      shuttingDown,
      workgroups: supervisor.workgroups,
      listening: supervisor.listeningCount(),
      down: supervisor.down(),
      engine: engine.kind,
      redisUnreachable: engine.unreachable,
    });
  });
  // Required here, not imported: a member process (--processes) has no admin port, and prom-client
  // and the views would cost each of its main threads heap for nothing.
  const { registerObservability } = require('./observability') as { registerObservability: typeof RegisterObservability };
  registerObservability(admin, supervisor, config);
  // Only on a loopback admin host (server/config.ts refuses the others).
  if (config.debugRoutes) {
    log.warn('debug routes are on (--debug-routes): POST /debug/crash, /debug/stall and /debug/fail-commands on the admin port kill, block or break a workgroup. Tests only.');
    admin.routePost('/debug/crash', (req, res) => {
      const url = new URL(req.url ?? '/', 'http://admin');
      const id = Number(url.searchParams.get('workgroup'));
      const how = url.searchParams.get('how') === 'throw' ? 'throw' : 'exit';
      if (req.method !== 'POST') return sendJson(res, 405, { error: { code: 'METHOD_NOT_ALLOWED', message: 'POST /debug/crash?workgroup=N&how=exit|throw' } });
      if (!Number.isInteger(id) || !supervisor.crash(id, how)) return sendJson(res, 404, { error: { code: 'NOT_FOUND', message: `no running workgroup ${url.searchParams.get('workgroup')}` } });
      sendJson(res, 202, { crashing: id, how });
    });
    admin.routePost('/debug/fail-commands', (req, res) => {
      const url = new URL(req.url ?? '/', 'http://admin');
      const id = Number(url.searchParams.get('workgroup'));
      const count = Number(url.searchParams.get('count'));
      if (req.method !== 'POST') return sendJson(res, 405, { error: { code: 'METHOD_NOT_ALLOWED', message: 'POST /debug/fail-commands?workgroup=N&count=M' } });
      if (!Number.isInteger(count) || count < 1 || count > 1_000_000) return sendJson(res, 400, { error: { code: 'BAD_REQUEST', message: 'count must be a whole number from 1 to 1000000' } });
      if (!Number.isInteger(id) || !supervisor.failCommands(id, count))
        return sendJson(res, 404, { error: { code: 'NOT_FOUND', message: `no running workgroup ${url.searchParams.get('workgroup')}` } });
      sendJson(res, 202, { failing: id, count });
    });
    admin.routePost('/debug/stall', (req, res) => {
      const url = new URL(req.url ?? '/', 'http://admin');
      const id = Number(url.searchParams.get('workgroup'));
      const ms = Number(url.searchParams.get('ms'));
      if (req.method !== 'POST') return sendJson(res, 405, { error: { code: 'METHOD_NOT_ALLOWED', message: 'POST /debug/stall?workgroup=N&ms=M' } });
      if (!Number.isInteger(ms) || ms < 1 || ms > 30_000) return sendJson(res, 400, { error: { code: 'BAD_REQUEST', message: 'ms must be a whole number from 1 to 30000' } });
      if (!Number.isInteger(id) || !supervisor.stall(id, ms)) return sendJson(res, 404, { error: { code: 'NOT_FOUND', message: `no running workgroup ${url.searchParams.get('workgroup')}` } });
      sendJson(res, 202, { stalling: id, ms });
    });
  }
  // Before anything binds: a port another process holds fails the start (see assertPortFree).
  if (config.port !== 0) await assertPortFree(config.host, config.port);
  const adminPort = await admin.listen();
  try {
    await supervisor.start();
  } catch (err) {
    await supervisor.drain(1000);
    await admin.close();
    throw err;
  }
  // Started: the main thread's young generation may grow again, and what loading the server left is collected (shm/heap.ts).
  restoreYoungGrowth();
  const gcMs = collectGarbage();
  log.info(
    {
      port: supervisor.port,
      adminPort,
      workgroups: supervisor.workgroups,
      uwsNative: uws.native,
      engine: config.engine,
      startGcMs: gcMs === null ? null : Math.round(gcMs * 10) / 10,
      ...(config.engine === 'redis' ? { redis: config.redisUrl.map(maskRedisUrl) } : {}),
    },
    'c10m listening',
  );
  let shutdownPromise: Promise<void> | null = null;
  return {
    config,
    supervisor,
    admin,
    port: supervisor.port,
    adminPort,
    uwsNative: uws.native,
    shutdown() {
      if (shutdownPromise) return shutdownPromise;
      shuttingDown = true;
      shutdownPromise = (async () => {
        log.info({ drainTimeoutSeconds: config.drainTimeoutSeconds }, 'shutting down: draining sessions');
        await supervisor.drain(config.drainTimeoutSeconds * 1000);
        await admin.close();
        log.info('shut down');
      })();
      return shutdownPromise;
    },
  };
}

/** A member process (`--processes`): the workgroups only; the top supervisor serves the admin port and logs "c10m listening". */
async function startMember(config: Config, log: Logger, supervisor: Supervisor, admin: AdminServer, uwsNative: boolean): Promise<RunningServer> {
  try {
    await supervisor.start();
  } catch (err) {
    await supervisor.drain(1000);
    throw err;
  }
  log.info({ port: supervisor.port, workgroups: supervisor.workgroups, pid: process.pid }, 'node process listening');
  let shutdownPromise: Promise<void> | null = null;
  return {
    config,
    supervisor,
    admin,
    port: supervisor.port,
    adminPort: 0,
    uwsNative,
    shutdown() {
      shutdownPromise ??= supervisor.drain(config.drainTimeoutSeconds * 1000);
      return shutdownPromise;
    },
  };
}
