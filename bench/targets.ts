// The servers under test, each a child process on loopback: c10m itself
// (`c10m serve`) or a peer from bench/peers/. Reads their RSS and CPU time
// from /proc, so that the figures are the server's own.
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import { benchEntry, CLI } from './paths';

export type TargetKind = 'c10m' | 'uws' | 'ws' | 'socketio';
export const PEERS: TargetKind[] = ['uws', 'ws', 'socketio'];

export interface Target {
  kind: TargetKind;
  port: number;
  pid: number;
  /** ws://127.0.0.1:port/v1/ws?encoding=msgpack (socket.io: its own path). */
  subUrl: string;
  /** What benchpub is given (ws://127.0.0.1:port). */
  pubUrl: string;
  /** Messages the server logged (JSON lines) and its stderr, for error reports. */
  output: string[];
  rssBytes(): number;
  /** User + system CPU seconds since the process started. */
  cpuSeconds(): number;
  stop(): Promise<void>;
}

export interface TargetOptions {
  /** c10m only: --workgroups. */
  workgroups?: number;
  /** c10m only: extra `serve` flags. */
  serveArgs?: string[];
}

const CLOCK_TICKS = 100;

export function readRssBytes(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const m = /VmRSS:\s+(\d+) kB/.exec(status);
  return m ? Number(m[1]) * 1024 : 0;
}

export function readCpuSeconds(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the command name.
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

export async function startTarget(kind: TargetKind, options: TargetOptions = {}): Promise<Target> {
  let proc: ChildProcess;
  if (kind === 'c10m') {
    const args = [CLI, 'serve', '--host', '127.0.0.1', '--port', '0', '--admin-port', '0', '--workgroups', String(options.workgroups ?? 1), '--log-level', 'info', ...(options.serveArgs ?? [])];
    proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  } else {
    proc = spawn(process.execPath, [benchEntry(`peers/${kind}`), '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
  }
  const output: string[] = [];
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  const port = await new Promise<number>((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error(`${kind} did not start within 20 s: ${output.slice(-5).join(' ')}`)), 20000);
    proc.stdout?.setEncoding('utf8');
    proc.stdout?.on('data', (chunk: string) => {
      buf += chunk;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (output.length < 200) output.push(line);
        try {
          const m = JSON.parse(line) as { msg?: string; port?: number };
          if (m.msg === 'c10m listening' || m.msg === 'peer listening') {
            clearTimeout(timer);
            resolve(m.port as number);
          }
        } catch {
          // not a JSON line
        }
      }
    });
    proc.stderr?.setEncoding('utf8');
    proc.stderr?.on('data', (c: string) => {
      if (output.length < 200) output.push(c);
    });
    exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`${kind} exited (${code}) before listening: ${output.slice(-5).join(' ')}`));
    });
  });
  const pid = proc.pid as number;
  return {
    kind,
    port,
    pid,
    subUrl: kind === 'socketio' ? `ws://127.0.0.1:${port}/socket.io/?EIO=4&transport=websocket` : `ws://127.0.0.1:${port}/v1/ws?encoding=msgpack`,
    pubUrl: `ws://127.0.0.1:${port}`,
    output,
    rssBytes: () => readRssBytes(pid),
    cpuSeconds: () => readCpuSeconds(pid),
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 20000);
      await exited;
      clearTimeout(t);
    },
  };
}

/** A server someone else started (--url): no RSS or CPU figures unless its pid is given. */
export function externalTarget(url: string, pid: number | null): Target {
  const u = new URL(url);
  return {
    kind: 'c10m',
    port: Number(u.port),
    pid: pid ?? 0,
    subUrl: `ws://${u.host}/v1/ws?encoding=msgpack`,
    pubUrl: `ws://${u.host}`,
    output: [],
    rssBytes: () => (pid ? readRssBytes(pid) : 0),
    cpuSeconds: () => (pid ? readCpuSeconds(pid) : 0),
    stop: async () => undefined,
  };
}
