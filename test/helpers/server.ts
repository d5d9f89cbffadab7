// Starts a real c10m server (the built dist/, as a child process) on free
// ports and stops it. Every test file uses this; no test shares a server
// with another file.
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { packageRoot } from '../../native-io/package-root';

export const ROOT = packageRoot();
export const CLI = path.join(ROOT, 'bin', 'c10m.js');

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
  const proc = spawn(command, [...prefix, CLI, 'serve', '--port', '0', '--admin-port', '0', '--host', '127.0.0.1', '--log-level', 'info', ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: Record<string, unknown>[] = [];
  const stderr: string[] = [];
  const waiters: { pred: (l: Record<string, unknown>) => boolean; resolve: (l: Record<string, unknown>) => void }[] = [];
  let buf = '';
  proc.stdout?.setEncoding('utf8');
  proc.stdout?.on('data', (chunk: string) => {
    buf += chunk;
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      let parsed: Record<string, unknown>;
      try {
        parsed = JSON.parse(line);
      } catch {
        parsed = { raw: line };
      }
      logs.push(parsed);
      for (let i = waiters.length - 1; i >= 0; i--) {
        if (waiters[i].pred(parsed)) {
          waiters[i].resolve(parsed);
          waiters.splice(i, 1);
        }
      }
    }
  });
  proc.stderr?.setEncoding('utf8');
  proc.stderr?.on('data', (c: string) => stderr.push(c));
  // 'close' (not 'exit'): every line of stdout has been read by then.
  const exited = new Promise<number | null>((resolve) => proc.once('close', (code) => resolve(code)));

  const waitForLog = (pred: (l: Record<string, unknown>) => boolean, timeoutMs = 10000) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const found = logs.find(pred);
      if (found) return resolve(found);
      const timer = setTimeout(() => reject(new Error(`timed out waiting for a log line; stderr: ${stderr.join('')}; logs: ${JSON.stringify(logs.slice(-5))}`)), timeoutMs);
      waiters.push({
        pred,
        resolve: (l) => {
          clearTimeout(timer);
          resolve(l);
        },
      });
      exited.then((code) => {
        clearTimeout(timer);
        reject(new Error(`server exited (${code}) before the log line; stderr: ${stderr.join('')}`));
      });
    });

  const ready = await waitForLog((l) => l.msg === 'c10m listening', 15000);
  const port = ready.port as number;
  const adminPort = ready.adminPort as number;
  return {
    port,
    adminPort,
    proc,
    logs,
    stderr,
    url: (p = '/v1/ws') => `ws://127.0.0.1:${port}${p}`,
    adminUrl: (p) => `http://127.0.0.1:${adminPort}${p}`,
    waitForLog,
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return proc.exitCode;
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 15000);
      const code = await exited;
      clearTimeout(t);
      return code;
    },
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
