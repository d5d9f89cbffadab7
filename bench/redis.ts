// A redis-server for the cluster benchmark (bench/scenarios/cluster.ts):
// loopback only, persistence off, its own temp dir. redis-server cannot bind
// port 0, so the port is picked at random from 20000-30999 (below the
// ephemeral range, 32768-60999 here) and picked again on "Address already in
// use". The process is SIGKILLed when this process exits, whatever the way:
// stop() at the end, killAllRedis() on SIGINT, an 'exit' handler, and
// setpriv --pdeathsig KILL when this process is itself killed.
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Redis } from 'ioredis';
import { readCpuSeconds, readRssBytes } from './targets';

const HOST = '127.0.0.1';
const PORT_MIN = 20000;
const PORT_MAX = 30999;
const BIND_ATTEMPTS = 20;
const READY_TIMEOUT_MS = 10000;

const SETPRIV = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => fs.existsSync(p));

export interface BenchRedis {
  port: number;
  /** redis://127.0.0.1:port */
  url: string;
  pid: number;
  /** User + system CPU seconds of redis-server (every thread) since it started. */
  cpuSeconds(): number;
  rssBytes(): number;
  /** The tail of its log (its last 256 KiB). */
  log(): string;
  /** INFO <section> as a map of its fields. */
  info(section: string): Promise<Record<string, string>>;
  /** One command on the benchmark's own connection (its replies count in Redis's output bytes). */
  command(name: string, ...args: (string | number)[]): Promise<unknown>;
  /** SIGTERM, SIGKILL after 5 s, then removes its dir. */
  stop(): Promise<void>;
}

const live = new Set<ChildProcess>();

/** SIGKILLs every redis-server this process started (synchronous: for signal and exit handlers). */
export function killAllRedis(): void {
  for (const p of live) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  live.clear();
}

process.once('exit', killAllRedis);

class PortInUse extends Error {}

const LOG_KEEP = 256 * 1024;

function spawnOn(port: number, dir: string): Promise<{ proc: ChildProcess; log: { text: string } }> {
  const args = ['--port', String(port), '--bind', HOST, '--save', '', '--appendonly', 'no', '--dir', dir, '--protected-mode', 'yes'];
  const proc = SETPRIV ? spawn(SETPRIV, ['--pdeathsig', 'KILL', 'redis-server', ...args], { stdio: ['ignore', 'pipe', 'pipe'] }) : spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(proc);
  const kept = { text: '' };
  let log = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error(`redis-server did not start within ${READY_TIMEOUT_MS / 1000} s: ${log.slice(-500)}`)), READY_TIMEOUT_MS);
    const fail = (err: Error) => {
      clearTimeout(timer);
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
      live.delete(proc);
      reject(err);
    };
    const onData = (c: Buffer) => {
      log += c.toString();
      if (log.length > 64 * 1024) log = log.slice(-32 * 1024);
      if (/Address already in use/.test(log)) fail(new PortInUse());
      else if (/Ready to accept connections/.test(log)) {
        clearTimeout(timer);
        proc.stdout?.removeListener('data', onData);
        proc.stderr?.removeListener('data', onData);
        // Keep reading its output (a full pipe would block it), its tail for the report.
        kept.text = log;
        const keep = (c: Buffer) => {
          kept.text += c.toString();
          if (kept.text.length > LOG_KEEP) kept.text = kept.text.slice(-LOG_KEEP / 2);
        };
        proc.stdout?.on('data', keep);
        proc.stderr?.on('data', keep);
        resolve({ proc, log: kept });
      }
    };
    proc.stdout?.on('data', onData);
    proc.stderr?.on('data', onData);
    proc.once('error', (err) => fail(new Error(`could not run redis-server (${err.message}); install Redis 7 (Debian: apt-get install redis-server)`)));
    proc.once('exit', (code) => {
      if (/Address already in use/.test(log)) fail(new PortInUse());
      else fail(new Error(`redis-server exited (${code}) before it was ready: ${log.slice(-500)}`));
    });
  });
}

/** Starts one standalone redis-server on a free port of 20000-30999. */
export async function startRedis(): Promise<BenchRedis> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'c10m-bench-redis-'));
  let started: { proc: ChildProcess; log: { text: string } } | null = null;
  let port = 0;
  for (let attempt = 0; attempt < BIND_ATTEMPTS && started === null; attempt++) {
    port = PORT_MIN + Math.floor(Math.random() * (PORT_MAX - PORT_MIN + 1));
    try {
      started = await spawnOn(port, dir);
    } catch (err) {
      if (!(err instanceof PortInUse)) {
        fs.rmSync(dir, { recursive: true, force: true });
        throw err;
      }
    }
  }
  if (started === null) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw new Error(`redis-server: no free port in ${PORT_MIN}-${PORT_MAX} after ${BIND_ATTEMPTS} attempts`);
  }
  const child = started.proc;
  const kept = started.log;
  const pid = child.pid as number;
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', () => resolve());
  });
  const client = new Redis({ host: HOST, port, lazyConnect: true, maxRetriesPerRequest: 1, enableAutoPipelining: false, retryStrategy: () => null });
  await client.connect();
  return {
    port,
    url: `redis://${HOST}:${port}`,
    pid,
    cpuSeconds: () => readCpuSeconds(pid),
    rssBytes: () => readRssBytes(pid),
    log: () => kept.text,
    async info(section) {
      const text = (await client.info(section)) as string;
      const out: Record<string, string> = {};
      for (const line of text.split('\r\n')) {
        const i = line.indexOf(':');
        if (i > 0 && !line.startsWith('#')) out[line.slice(0, i)] = line.slice(i + 1);
      }
      return out;
    },
    command: (name, ...args) => client.call(name, ...args),
    async stop() {
      client.disconnect();
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(t);
      }
      live.delete(child);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
