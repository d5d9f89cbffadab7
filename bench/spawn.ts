// Spawns a server process (`c10m serve`, a peer from bench/peers/) and waits
// for its "listening" log line: the one way the tests (test/helpers/server.ts),
// the benchmarks (bench/targets.ts) and the lab scripts start a server.
// stdout is read as JSON lines (a line that does not parse is kept as
// { raw: line }); stderr is kept as it arrives unless inherited.
import { spawn, type ChildProcess } from 'node:child_process';

export type LogLine = Record<string, unknown>;

/** Builds the error a wait rejects with: on its timeout, or when the process exits first. */
export interface WaitErrors {
  timeout?: () => Error;
  exit?: (code: number | null) => Error;
}

export interface SpawnOptions {
  /** The program (default: this Node, process.execPath). */
  command?: string;
  args: string[];
  /** Added to process.env. */
  env?: NodeJS.ProcessEnv;
  /** The line that says the process is ready, e.g. (l) => l.msg === 'c10m listening'. */
  ready: (l: LogLine) => boolean;
  /** How long to wait for it (default 15 s). */
  readyTimeoutMs?: number;
  /** The errors startup rejects with (default: waitForLog's). */
  readyErrors?: WaitErrors;
  /** stop(): SIGKILL this long after SIGTERM (default 15 s). */
  killAfterMs?: number;
  /** 'pipe' (default): kept in stderr[]; 'inherit': the parent's. */
  stderr?: 'pipe' | 'inherit';
  /** Keep at most this many stdout lines in logs[] and stderr chunks in stderr[] (default: all). Waits still see every line. */
  keep?: number;
  /** Each stdout line as read, before parsing. */
  onLine?: (line: string) => void;
  /** Each stderr chunk (stderr 'pipe' only). */
  onStderr?: (chunk: string) => void;
  /** When the process counts as ended: 'close' (default; every stdout line has been read) or 'exit'. */
  endOn?: 'close' | 'exit';
}

export interface Spawned {
  proc: ChildProcess;
  /** The ready line. */
  ready: LogLine;
  /** stdout lines so far, parsed (up to keep). */
  logs: LogLine[];
  /** stderr chunks so far (stderr 'pipe'; up to keep). */
  stderr: string[];
  /** Resolves with the exit code when the process has ended (see endOn). */
  exited: Promise<number | null>;
  /** The first line (kept or still to come) that matches; rejects on the timeout or when the process ends first. */
  waitForLog(pred: (l: LogLine) => boolean, timeoutMs?: number, errors?: WaitErrors): Promise<LogLine>;
  /** SIGTERM, SIGKILL after killAfterMs, and the exit code (at once if it has already exited). */
  stop(): Promise<number | null>;
}

/** Spawns and resolves once the ready line is logged; on a timeout or an early exit, kills the process and rejects. */
export async function spawnUntilReady(o: SpawnOptions): Promise<Spawned> {
  const proc = spawn(o.command ?? process.execPath, o.args, {
    env: { ...process.env, ...o.env },
    stdio: ['ignore', 'pipe', o.stderr === 'inherit' ? 'inherit' : 'pipe'],
  });
  const keep = o.keep ?? Infinity;
  const logs: LogLine[] = [];
  const stderr: string[] = [];
  const waiters = new Set<{ pred: (l: LogLine) => boolean; resolve: (l: LogLine) => void }>();
  let buf = '';
  proc.stdout?.setEncoding('utf8');
  proc.stdout?.on('data', (chunk: string) => {
    buf += chunk;
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      o.onLine?.(line);
      let parsed: LogLine;
      try {
        const v: unknown = JSON.parse(line);
        parsed = v !== null && typeof v === 'object' ? (v as LogLine) : { raw: line };
      } catch {
        parsed = { raw: line };
      }
      if (logs.length < keep) logs.push(parsed);
      for (const w of waiters) {
        if (w.pred(parsed)) {
          waiters.delete(w);
          w.resolve(parsed);
        }
      }
    }
  });
  proc.stderr?.setEncoding('utf8');
  proc.stderr?.on('data', (c: string) => {
    if (stderr.length < keep) stderr.push(c);
    o.onStderr?.(c);
  });
  const exited = new Promise<number | null>((resolve) => proc.once(o.endOn ?? 'close', (code: number | null) => resolve(code)));

  const waitForLog = (pred: (l: LogLine) => boolean, timeoutMs = 10000, errors: WaitErrors = {}) =>
    new Promise<LogLine>((resolve, reject) => {
      const found = logs.find(pred);
      if (found) return resolve(found);
      const waiter = {
        pred,
        resolve: (l: LogLine) => {
          clearTimeout(timer);
          resolve(l);
        },
      };
      const fail = (err: Error) => {
        if (!waiters.delete(waiter)) return;
        clearTimeout(timer);
        reject(err);
      };
      const timer = setTimeout(() => fail(errors.timeout?.() ?? new Error(`timed out waiting for a log line; stderr: ${stderr.join('')}; logs: ${JSON.stringify(logs.slice(-5))}`)), timeoutMs);
      waiters.add(waiter);
      exited.then((code) => fail(errors.exit?.(code) ?? new Error(`server exited (${code}) before the log line; stderr: ${stderr.join('')}`)));
    });

  const killAfterMs = o.killAfterMs ?? 15000;
  const stop = async () => {
    if (proc.exitCode !== null || proc.signalCode !== null) return proc.exitCode;
    proc.kill('SIGTERM');
    const t = setTimeout(() => proc.kill('SIGKILL'), killAfterMs);
    const code = await exited;
    clearTimeout(t);
    return code;
  };

  let ready: LogLine;
  try {
    ready = await waitForLog(o.ready, o.readyTimeoutMs ?? 15000, o.readyErrors);
  } catch (err) {
    // Never leave a half-started server behind.
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    throw err;
  }
  return { proc, ready, logs, stderr, exited, waitForLog, stop };
}
