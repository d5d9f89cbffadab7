// Starts real redis-server processes for the tests: a standalone server, or a
// Redis Cluster built with `redis-cli --cluster create`. Each process gets a
// port picked at random from 20000-30999 (redis-server cannot bind port 0;
// the ephemeral range is 32768-60999 here), another one on "Address already
// in use", persistence off and its own temp dir. Every process a test file
// starts is killed when the file ends (an afterAll registered on import,
// and SIGKILL from the kernel if the jest worker itself dies).
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Redis from 'ioredis';

const HOST = '127.0.0.1';
const PORT_MIN = 20000;
const PORT_MAX = 30999;
const BIND_ATTEMPTS = 20;
const READY_TIMEOUT_MS = 10000;
const STOP_KILL_AFTER_MS = 5000;
/** The log a process keeps for error messages (its tail). */
const LOG_KEEP = 64 * 1024;

/** setpriv --pdeathsig KILL: redis-server dies with the jest worker even when afterAll never runs. */
const SETPRIV = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => existsSync(p));

export interface RedisOptions {
  /** requirepass: the password of the default user. */
  password?: string;
  /** An ACL user with every right (`--user NAME on >PASS ~* &* +@all`); the URL then carries it. */
  user?: { name: string; password: string };
  /** A fixed port (default: random in 20000-30999, with retry). */
  port?: number;
  /** More redis-server arguments, e.g. ['--maxmemory', '10mb']. */
  args?: string[];
  /**
   * A lone Redis Cluster node (cluster-enabled, no slots: cluster_state:fail until CLUSTER ADDSLOTSRANGE), its bus
   * port from 20000-30999 too (redis-server's default, port + 10000, may fall in the ephemeral range).
   */
  clusterEnabled?: boolean;
}

export interface TestRedis {
  port: number;
  /** redis://[user:pass@]127.0.0.1:port */
  url: string;
  /** The running process (a new one after restart). */
  readonly proc: ChildProcess;
  /** The temp dir given as --dir. */
  dir: string;
  /** Its log so far (the tail), for error messages. */
  log(): string;
  /** SIGTERM, SIGKILL after 5 s; waits for the exit and removes the dir. */
  stop(): Promise<void>;
  /** SIGKILL and wait for the exit (the dir stays, so restart() works). */
  kill(): Promise<void>;
  /** Stops the process if it runs and starts it again on the same port: persistence is off, so the data is gone. */
  restart(): Promise<void>;
  /** Down for ms (stopped, nothing listening), then started again on the same port, empty. */
  stopFor(ms: number): Promise<void>;
  /** SIGSTOP for ms, then SIGCONT: connections stay open but nothing answers (a hung Redis), data kept. */
  pause(ms: number): Promise<void>;
  /** Sends one command on a fresh connection (with the credentials) and returns the reply. */
  command(...args: (string | number)[]): Promise<unknown>;
}

export interface TestRedisClusterNode extends TestRedis {
  /** The cluster bus port (--cluster-port), also from the non-ephemeral range. */
  clusterPort: number;
}

export interface ClusterOptions {
  /** Replicas per master (0 or 1; default 0). */
  replicas?: number;
  /** requirepass and masterauth on every node. */
  password?: string;
  /** cluster-node-timeout (default 1000 ms: a killed master's replica takes over in a few seconds). */
  nodeTimeoutMs?: number;
}

export interface TestRedisCluster {
  /** Masters first (as given to --cluster create), then replicas. */
  nodes: TestRedisClusterNode[];
  /** redis://[:pass@]127.0.0.1:port of every node: the seeds. */
  urls: string[];
  /** { host, port } of every node, for new Redis.Cluster(seeds). */
  seeds: { host: string; port: number }[];
  /** The nodes that are masters now, by asking a live node (CLUSTER NODES). */
  masters(): Promise<TestRedisClusterNode[]>;
  /** The master that serves a key's slot now. */
  masterOf(key: string): Promise<TestRedisClusterNode>;
  /**
   * SIGKILLs a master and resolves once one of its replicas has been promoted and every live node says
   * cluster_state:ok; returns the new master (needs replicas: 1).
   */
  failover(master: TestRedisClusterNode, timeoutMs?: number): Promise<TestRedisClusterNode>;
  /** Resolves once every live node says cluster_state:ok, knows every other node, agrees on the slots, and every replica is in sync. */
  waitHealthy(timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

// Every process of this test file (this module instance is per file under jest).
const live = new Set<ManagedRedis>();

/** Stops every Redis this test file started (registered as an afterAll on import; safe to call again). */
export async function stopAllRedis(): Promise<void> {
  await Promise.all([...live].map((r) => r.stop()));
}

declare const afterAll: ((fn: () => Promise<void>, timeout?: number) => void) | undefined;
if (typeof afterAll === 'function') afterAll(stopAllRedis, 20000);
// Without setpriv, the last resort for a worker that exits without afterAll: a synchronous SIGKILL.
if (!SETPRIV) {
  process.once('exit', () => {
    for (const r of live) r.killSync();
  });
}

const randomPort = (): number => PORT_MIN + Math.floor(Math.random() * (PORT_MAX - PORT_MIN + 1));
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

class PortInUse extends Error {}

interface NodeConfig {
  password?: string;
  user?: { name: string; password: string };
  args: string[];
  cluster?: { nodeTimeoutMs: number };
}

/** One redis-server on a fixed port (and bus port), restartable; its dir lives until stop(). */
class ManagedRedis implements TestRedisClusterNode {
  readonly dir: string;
  private child: ChildProcess | null = null;
  private exited: Promise<void> = Promise.resolve();
  private logTail = '';
  private stopped = false;

  constructor(
    public port: number,
    public clusterPort: number,
    private readonly cfg: NodeConfig,
  ) {
    this.dir = mkdtempSync(join(tmpdir(), 'c10m-redis-'));
    live.add(this);
  }

  get url(): string {
    const { user, password } = this.cfg;
    const auth = user ? `${encodeURIComponent(user.name)}:${encodeURIComponent(user.password)}@` : password !== undefined ? `:${encodeURIComponent(password)}@` : '';
    return `redis://${auth}${HOST}:${this.port}`;
  }

  get running(): boolean {
    return this.child !== null && this.child.exitCode === null && this.child.signalCode === null;
  }

  get proc(): ChildProcess {
    if (!this.child) throw new Error(`redis on port ${this.port} is not running`);
    return this.child;
  }

  log(): string {
    return this.logTail;
  }

  private args(): string[] {
    const a = ['--port', String(this.port), '--bind', HOST, '--save', '', '--appendonly', 'no', '--dir', this.dir, '--loglevel', 'notice', '--daemonize', 'no'];
    if (this.cfg.password !== undefined) a.push('--requirepass', this.cfg.password);
    if (this.cfg.user) a.push('--user', this.cfg.user.name, 'on', `>${this.cfg.user.password}`, '~*', '&*', '+@all');
    if (this.cfg.cluster) {
      a.push('--cluster-enabled', 'yes', '--cluster-port', String(this.clusterPort), '--cluster-config-file', join(this.dir, 'nodes.conf'));
      // A replica syncs at once (no 5 s wait for more replicas) and may take over right after.
      a.push('--cluster-node-timeout', String(this.cfg.cluster.nodeTimeoutMs), '--repl-diskless-sync-delay', '0');
      if (this.cfg.password !== undefined) a.push('--masterauth', this.cfg.password);
    }
    return [...a, ...this.cfg.args];
  }

  /** Spawns and waits for "Ready to accept connections"; PortInUse when a port is taken. */
  async start(): Promise<void> {
    if (this.stopped) throw new Error('redis was stopped for good');
    if (this.child) throw new Error(`redis on port ${this.port} is already running`);
    const argv = SETPRIV ? [SETPRIV, '--pdeathsig', 'KILL', '--', 'redis-server', ...this.args()] : ['redis-server', ...this.args()];
    const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    this.logTail = '';
    this.exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
    const onData = (c: Buffer) => {
      this.logTail = (this.logTail + c.toString()).slice(-LOG_KEEP);
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    this.exited.then(() => {
      if (this.child === child) this.child = null;
    });
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => done(new Error(`redis-server on port ${this.port} not ready after ${READY_TIMEOUT_MS} ms; log: ${this.logTail}`)), READY_TIMEOUT_MS);
        const check = () => {
          if (/Ready to accept connections/.test(this.logTail)) done();
        };
        const onExit = (code: number | null, signal: string | null) => {
          if (/Address already in use/.test(this.logTail)) done(new PortInUse(`port ${this.port} or ${this.clusterPort} in use`));
          else done(new Error(`redis-server on port ${this.port} exited (${code ?? signal}) before it was ready; log: ${this.logTail}`));
        };
        const done = (err?: Error) => {
          clearTimeout(timer);
          child.stdout?.off('data', check);
          child.off('close', onExit);
          if (err) reject(err);
          else resolve();
        };
        child.stdout?.on('data', check);
        child.once('close', onExit);
        child.once('error', (e) => done(new Error(`cannot run redis-server: ${e.message}`)));
      });
    } catch (err) {
      child.kill('SIGKILL');
      await this.exited;
      throw err;
    }
  }

  /** Picks a new port and bus port after a PortInUse (before the first successful start only). */
  repick(): void {
    this.port = randomPort();
    this.clusterPort = randomPort();
  }

  async kill(): Promise<void> {
    const c = this.child;
    if (!c) return;
    c.kill('SIGKILL');
    await this.exited;
  }

  killSync(): void {
    this.child?.kill('SIGKILL');
  }

  private async terminate(): Promise<void> {
    const c = this.child;
    if (!c) return;
    c.kill('SIGCONT'); // a paused process must run to handle SIGTERM
    c.kill('SIGTERM');
    const t = setTimeout(() => c.kill('SIGKILL'), STOP_KILL_AFTER_MS);
    await this.exited;
    clearTimeout(t);
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await this.terminate();
    live.delete(this);
    rmSync(this.dir, { recursive: true, force: true });
  }

  async restart(): Promise<void> {
    await this.terminate();
    await this.startSamePort();
  }

  async stopFor(ms: number): Promise<void> {
    await this.terminate();
    await sleep(ms);
    await this.startSamePort();
  }

  async pause(ms: number): Promise<void> {
    const c = this.proc;
    c.kill('SIGSTOP');
    await sleep(ms);
    c.kill('SIGCONT');
  }

  /** The port may be briefly held by a connection of the old process: retry a few times. */
  private async startSamePort(): Promise<void> {
    for (let i = 0; ; i++) {
      try {
        return await this.start();
      } catch (err) {
        if (!(err instanceof PortInUse) || i >= 10) throw err;
        await sleep(200);
      }
    }
  }

  command(...args: (string | number)[]): Promise<unknown> {
    return redisCommand(this.port, this.cfg.user?.name, this.cfg.user?.password ?? this.cfg.password, args);
  }
}

/** One command on a fresh connection that never retries, closed after the reply. */
async function redisCommand(port: number, username: string | undefined, password: string | undefined, args: (string | number)[]): Promise<unknown> {
  const c = new Redis({ host: HOST, port, username, password, lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null, connectTimeout: 2000 });
  c.on('error', () => {}); // the rejected call reports it
  try {
    await c.connect();
    return await c.call(String(args[0]), ...args.slice(1).map(String));
  } finally {
    c.disconnect();
  }
}

/** Starts a node on a random port, another one while the port (or bus port) is taken. */
async function startNode(cfg: NodeConfig, fixedPort?: number): Promise<ManagedRedis> {
  const r = new ManagedRedis(fixedPort ?? randomPort(), randomPort(), cfg);
  for (let attempt = 1; ; attempt++) {
    try {
      await r.start();
      return r;
    } catch (err) {
      if (!(err instanceof PortInUse) || fixedPort !== undefined || attempt >= BIND_ATTEMPTS) {
        await r.stop();
        throw err;
      }
      r.repick();
    }
  }
}

/** A standalone redis-server on 127.0.0.1, persistence off. */
export function startRedis(opts: RedisOptions = {}): Promise<TestRedis> {
  const cluster = opts.clusterEnabled ? { nodeTimeoutMs: 1000 } : undefined;
  return startNode({ password: opts.password, user: opts.user, args: opts.args ?? [], cluster }, opts.port);
}

function runRedisCli(args: string[], timeoutMs = 20000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('redis-cli', args, { timeout: timeoutMs }, (err, stdout, stderr) => {
      if (err) reject(new Error(`redis-cli ${args.join(' ')} failed: ${err.message}\n${stdout}${stderr}`));
      else resolve(stdout);
    });
  });
}

/** CLUSTER NODES parsed: one line per node. */
function parseClusterNodes(text: string): { id: string; port: number; flags: string[]; masterId: string; connected: boolean; slots: string[] }[] {
  return text
    .trim()
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => {
      const f = l.split(' ');
      return { id: f[0], port: Number(f[1].split(':')[1].split('@')[0]), flags: f[2].split(','), masterId: f[3], connected: f[7] === 'connected', slots: f.slice(8) };
    });
}

/**
 * A Redis Cluster of `masters` masters (at least 3) and `replicas` replicas each, every node on its own port and
 * bus port (--cluster-port) from 20000-30999, built with `redis-cli --cluster create`; resolves once every node
 * says cluster_state:ok.
 */
export async function startRedisCluster(masters = 3, opts: ClusterOptions = {}): Promise<TestRedisCluster> {
  const replicas = opts.replicas ?? 0;
  const cfg: NodeConfig = { password: opts.password, args: [], cluster: { nodeTimeoutMs: opts.nodeTimeoutMs ?? 1000 } };
  const nodes: ManagedRedis[] = [];
  const stop = async () => {
    await Promise.all(nodes.map((n) => n.stop()));
  };
  try {
    // One at a time: two nodes picking the same random port at once would both fail.
    for (let i = 0; i < masters * (1 + replicas); i++) nodes.push(await startNode(cfg));
    const auth = opts.password !== undefined ? ['-a', opts.password, '--no-auth-warning'] : [];
    await runRedisCli([...auth, '--cluster', 'create', ...nodes.map((n) => `${HOST}:${n.port}`), '--cluster-replicas', String(replicas), '--cluster-yes']);
  } catch (err) {
    await stop();
    throw err;
  }

  const byPort = (port: number) => nodes.find((n) => n.port === port);
  const alive = () => nodes.filter((n) => n.running);
  const clusterNodes = async () => {
    for (const n of alive()) {
      try {
        return parseClusterNodes(String(await n.command('CLUSTER', 'NODES')));
      } catch {
        /* that node may be going down: ask the next */
      }
    }
    throw new Error('no cluster node answers');
  };

  const waitHealthy = async (timeoutMs = 15000) => {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    for (;;) {
      try {
        const up = alive();
        const views = await Promise.all(
          up.map(async (n) => ({
            info: String(await n.command('CLUSTER', 'INFO')),
            nodes: parseClusterNodes(String(await n.command('CLUSTER', 'NODES'))),
            role: (await n.command('ROLE')) as unknown[],
          })),
        );
        // A replica that never synced would refuse to take over (cluster-replica-validity-factor).
        const synced = views.every((v) => v.role[0] !== 'slave' || v.role[3] === 'connected');
        // Healthy: every live node is ok, knows every live node as connected, and agrees on who serves each slot.
        const ok = views.every(
          (v) => /cluster_state:ok/.test(v.info) && up.every((n) => v.nodes.some((x) => x.port === n.port && (x.connected || x.flags.includes('myself')) && !x.flags.includes('fail'))),
        );
        const owners = views.map((v) =>
          v.nodes
            .filter((x) => x.flags.includes('master') && !x.flags.includes('fail') && x.slots.length > 0)
            .map((x) => `${x.port}:${x.slots.join(',')}`)
            .sort()
            .join(' '),
        );
        if (ok && synced && owners.every((o) => o === owners[0])) return;
        last = views.map((v) => v.info.split('\r\n')[0]).join(', ');
      } catch (err) {
        last = (err as Error).message;
      }
      if (Date.now() > deadline) throw new Error(`redis cluster not healthy after ${timeoutMs} ms: ${last}`);
      await sleep(100);
    }
  };

  const masterNodes = async () =>
    (await clusterNodes())
      .filter((x) => x.flags.includes('master') && !x.flags.includes('fail') && x.slots.length > 0)
      .map((x) => byPort(x.port))
      .filter((n): n is ManagedRedis => n !== undefined);

  const masterOf = async (key: string) => {
    const slot = Number(await alive()[0].command('CLUSTER', 'KEYSLOT', key));
    for (const x of await clusterNodes()) {
      if (!x.flags.includes('master') || x.flags.includes('fail')) continue;
      for (const range of x.slots) {
        const [lo, hi] = range.split('-').map(Number);
        if (slot >= lo && slot <= (hi ?? lo)) return byPort(x.port) as ManagedRedis;
      }
    }
    throw new Error(`no master serves slot ${slot}`);
  };

  const failover = async (master: TestRedisClusterNode, timeoutMs = 15000) => {
    const view = await clusterNodes();
    const id = view.find((x) => x.port === master.port)?.id;
    const replicaPorts = view.filter((x) => x.masterId === id).map((x) => x.port);
    if (id === undefined || replicaPorts.length === 0) throw new Error(`node ${master.port} is not a master with a replica`);
    await master.kill();
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const promoted = (await masterNodes()).find((n) => replicaPorts.includes(n.port));
      if (promoted) {
        await waitHealthy(Math.max(1000, deadline - Date.now()));
        return promoted;
      }
      if (Date.now() > deadline) throw new Error(`no replica of ${master.port} promoted after ${timeoutMs} ms`);
      await sleep(100);
    }
  };

  try {
    await waitHealthy();
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    nodes,
    urls: nodes.map((n) => n.url),
    seeds: nodes.map((n) => ({ host: HOST, port: n.port })),
    masters: masterNodes,
    masterOf,
    failover,
    waitHealthy,
    stop,
  };
}
