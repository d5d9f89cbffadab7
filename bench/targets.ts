// The servers under test, each a child process on loopback: c10m itself
// (`c10m serve`) or a peer from bench/peers/. Reads their RSS and CPU time
// from /proc, so that the figures are the server's own.
import * as fs from 'node:fs';
import { benchEntry, CLI } from './paths';
import { spawnUntilReady } from './spawn';

export type TargetKind = 'c10m' | 'uws' | 'ws' | 'socketio';
export const PEERS: TargetKind[] = ['uws', 'ws', 'socketio'];

export interface Target {
  kind: TargetKind;
  /** What the results call it: the kind, or a c10m variant such as c10m-wg2 (see bench/run.ts). */
  name: string;
  port: number;
  /** c10m's admin port (0: unknown, e.g. a peer or --url). */
  adminPort: number;
  pid: number;
  /** ws://127.0.0.1:port/v1/ws?encoding=msgpack (socket.io: its own path). */
  subUrl: string;
  /** What benchpub is given (ws://127.0.0.1:port). */
  pubUrl: string;
  /** Messages the server logged (JSON lines) and its stderr, for error reports. */
  output: string[];
  /** With execArgv --inspect: the inspector's WebSocket URL from "Debugger listening on ..." (null otherwise). */
  inspectorUrl: string | null;
  rssBytes(): number;
  /** RSS split by kind (anonymous, file-backed, anonymous huge pages), bytes. */
  memory(): MemorySplit;
  /** c10m only: the admin port's /jmx document, or null (a peer, or the admin port is unknown). */
  jmx(): Promise<Record<string, unknown> | null>;
  /** User + system CPU seconds since the process started. */
  cpuSeconds(): number;
  /** c10m with --auth jwt (TargetOptions.jwtSecret): the secret the bench mints tokens with; null otherwise. */
  jwtSecret: string | null;
  stop(): Promise<void>;
  /**
   * A restart: this process is sent `signal` and waited for, then the same server is started again on the
   * same port (a new process: a new pid and admin port); `whenDown` is called between the two. Not for --url targets.
   */
  restart(signal: NodeJS.Signals, whenDown?: () => void): Promise<Target>;
}

export interface TargetOptions {
  /** The name in the results (default: the kind). */
  name?: string;
  /** c10m only: --workgroups. */
  workgroups?: number;
  /** c10m only: extra `serve` flags. */
  serveArgs?: string[];
  /** Node flags for the server process, e.g. ['--inspect=127.0.0.1:0'] (bench/lab/inspector.ts reads its URL). */
  execArgv?: string[];
  /** c10m only: the bin/c10m.js to run (default this checkout's; another checkout's build for before/after runs). */
  cli?: string;
  /** c10m only: keep the server's per-session budgets (default: off, see below). */
  budgets?: boolean;
  /** c10m only: --auth jwt with this HS256 secret (given as C10M_JWT_SECRET, not a flag: flags show in ps). */
  jwtSecret?: string | null;
  /** The port to listen on (default 0: any); a restart takes the port it had. */
  port?: number;
  /** How long to wait for "c10m listening" (default 20 s; a node of many processes takes longer). */
  readyTimeoutMs?: number;
}

const CLOCK_TICKS = 100;

export function readRssBytes(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const m = /VmRSS:\s+(\d+) kB/.exec(status);
  return m ? Number(m[1]) * 1024 : 0;
}

export interface MemorySplit {
  rssBytes: number;
  /** RssAnon: heaps, malloc, arenas; what grows per session. */
  anonBytes: number;
  /** RssFile: mapped code (node, the addons); shared with other processes running the same files. */
  fileBytes: number;
  /** AnonHugePages of smaps_rollup: transparent huge pages (native-io arenas: rings, cache chunks). */
  anonHugeBytes: number;
}

export function readMemory(pid: number): MemorySplit {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (re: RegExp, text: string) => {
    const m = re.exec(text);
    return m ? Number(m[1]) * 1024 : 0;
  };
  let anonHugeBytes = 0;
  try {
    anonHugeBytes = kb(/^AnonHugePages:\s+(\d+) kB/m, fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
  } catch {
    // older kernels: no smaps_rollup
  }
  return { rssBytes: kb(/VmRSS:\s+(\d+) kB/, status), anonBytes: kb(/RssAnon:\s+(\d+) kB/, status), fileBytes: kb(/RssFile:\s+(\d+) kB/, status), anonHugeBytes };
}

/** GET http://127.0.0.1:port/jmx as JSON (null on any failure). */
export async function fetchJmx(adminPort: number): Promise<Record<string, unknown> | null> {
  if (!adminPort) return null;
  try {
    const res = await fetch(`http://127.0.0.1:${adminPort}/jmx`);
    return res.ok ? ((await res.json()) as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

export function readCpuSeconds(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the command name.
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

export async function startTarget(kind: TargetKind, options: TargetOptions = {}): Promise<Target> {
  let args: string[];
  if (kind === 'c10m') {
    // Publishers here are a few connections carrying the whole offered load: no per-session budget.
    const budgets = options.budgets === true ? [] : ['--max-commands-per-second', '0', '--max-bytes-per-second', '0'];
    args = [
      options.cli ?? CLI,
      'serve',
      '--host',
      '127.0.0.1',
      '--port',
      String(options.port ?? 0),
      '--admin-port',
      '0',
      '--workgroups',
      String(options.workgroups ?? 1),
      '--log-level',
      'info',
      ...budgets,
      ...(options.jwtSecret ? ['--auth', 'jwt'] : []),
      ...(options.serveArgs ?? []),
    ];
  } else {
    args = [benchEntry(`peers/${kind}`), '--port', String(options.port ?? 0)];
  }
  const output: string[] = [];
  let inspectorUrl: string | null = null;
  const s = await spawnUntilReady({
    args: [...(options.execArgv ?? []), ...args],
    env: kind === 'c10m' && options.jwtSecret ? { C10M_JWT_SECRET: options.jwtSecret } : {},
    ready: (m) => m.msg === 'c10m listening' || m.msg === 'peer listening',
    readyTimeoutMs: options.readyTimeoutMs ?? 20000,
    readyErrors: {
      timeout: () => new Error(`${kind} did not start within ${(options.readyTimeoutMs ?? 20000) / 1000} s: ${output.slice(-5).join(' ')}`),
      exit: (code) => new Error(`${kind} exited (${code}) before listening: ${output.slice(-5).join(' ')}`),
    },
    killAfterMs: 20000,
    endOn: 'exit',
    // A benchmark runs long: keep only what an error report needs (output), not every line.
    keep: 0,
    onLine: (line) => {
      if (output.length < 200) output.push(line);
    },
    onStderr: (c) => {
      if (output.length < 200) output.push(c);
      const m = /Debugger listening on (ws:\/\/\S+)/.exec(c);
      if (m) inspectorUrl = m[1];
    },
  });
  const proc = s.proc;
  const port = s.ready.port as number;
  const adminPort = (s.ready.adminPort as number | undefined) ?? 0;
  const pid = proc.pid as number;
  return {
    kind,
    name: options.name ?? kind,
    port,
    adminPort,
    pid,
    subUrl: kind === 'socketio' ? `ws://127.0.0.1:${port}/socket.io/?EIO=4&transport=websocket` : `ws://127.0.0.1:${port}/v1/ws?encoding=msgpack`,
    pubUrl: `ws://127.0.0.1:${port}`,
    output,
    get inspectorUrl() {
      return inspectorUrl;
    },
    rssBytes: () => readRssBytes(pid),
    memory: () => readMemory(pid),
    jmx: () => fetchJmx(adminPort),
    cpuSeconds: () => readCpuSeconds(pid),
    jwtSecret: kind === 'c10m' ? (options.jwtSecret ?? null) : null,
    async stop() {
      await s.stop();
    },
    async restart(signal, whenDown) {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill(signal);
        const t = setTimeout(() => proc.kill('SIGKILL'), 20000);
        await s.exited;
        clearTimeout(t);
      }
      whenDown?.();
      return startTarget(kind, { ...options, port });
    },
  };
}

/** A server someone else started (--url): no RSS or CPU figures unless its pid is given. */
export function externalTarget(url: string, pid: number | null, adminPort = 0): Target {
  const u = new URL(url);
  return {
    kind: 'c10m',
    name: 'c10m',
    port: Number(u.port),
    adminPort,
    pid: pid ?? 0,
    subUrl: `ws://${u.host}/v1/ws?encoding=msgpack`,
    pubUrl: `ws://${u.host}`,
    output: [],
    inspectorUrl: null,
    rssBytes: () => (pid ? readRssBytes(pid) : 0),
    memory: () => (pid ? readMemory(pid) : { rssBytes: 0, anonBytes: 0, fileBytes: 0, anonHugeBytes: 0 }),
    jmx: () => fetchJmx(adminPort),
    cpuSeconds: () => (pid ? readCpuSeconds(pid) : 0),
    jwtSecret: null,
    stop: async () => undefined,
    restart: () => Promise.reject(new Error('a server started elsewhere (--url) cannot be restarted by the bench')),
  };
}
