// Starts a real c10m server (the built dist/, as a child process) on free
// ports and stops it. Every test file uses this; no test shares a server
// with another file.
import { spawn, type ChildProcess } from 'node:child_process';
import { CLI } from '../../bench/paths';
import { spawnUntilReady } from '../../bench/spawn';

export { CLI, ROOT } from '../../bench/paths';

export interface TestServer {
  port: number;
  adminPort: number;
  proc: ChildProcess;
  /** Every log line so far (parsed JSON where it parses). */
  logs: Record<string, unknown>[];
  stderr: string[];
  url(pathAndQuery?: string): string;
  adminUrl(p: string): string;
  /** SIGTERM and wait for the exit code. */
  stop(): Promise<number | null>;
  waitForLog(pred: (l: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
}

/** launcher: a command the server runs under, e.g. ['prlimit', '--nofile=400:400', '--'] (its last word before node). */
export async function startServer(args: string[] = [], env: NodeJS.ProcessEnv = {}, launcher: string[] = []): Promise<TestServer> {
  const command = launcher.length > 0 ? launcher[0] : process.execPath;
  const prefix = launcher.length > 0 ? [...launcher.slice(1), process.execPath] : [];
  const s = await spawnUntilReady({
    command,
    args: [...prefix, CLI, 'serve', '--port', '0', '--admin-port', '0', '--host', '127.0.0.1', '--log-level', 'info', ...args],
    env,
    ready: (l) => l.msg === 'c10m listening',
    readyTimeoutMs: 15000,
    killAfterMs: 15000,
  });
  const port = s.ready.port as number;
  const adminPort = s.ready.adminPort as number;
  return {
    port,
    adminPort,
    proc: s.proc,
    logs: s.logs,
    stderr: s.stderr,
    url: (p = '/v1/ws') => `ws://127.0.0.1:${port}${p}`,
    adminUrl: (p) => `http://127.0.0.1:${adminPort}${p}`,
    waitForLog: (pred, timeoutMs) => s.waitForLog(pred, timeoutMs),
    stop: s.stop,
  };
}

/** Runs the CLI to completion and returns its exit code and output. */
export function runCli(args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 15000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const proc = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (c) => (stdout += c));
    proc.stderr.on('data', (c) => (stderr += c));
    const t = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
    proc.on('exit', (code) => {
      clearTimeout(t);
      resolve({ code, stdout, stderr });
    });
  });
}
