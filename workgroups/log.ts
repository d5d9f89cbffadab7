// Structured logs of a workgroup: one JSON line per event, never per message.
import pino from 'pino';

export type Logger = pino.Logger;

/** JSON lines for collectors, or pino-pretty's lines for a person at a terminal (the control plane resolves --log-format). */
export function workgroupLogger(id: number, level: string, format: 'json' | 'pretty' = 'json', processIndex = -1): Logger {
  // With --processes, which process and its pid: workgroup 0 is in every process.
  const options = { level, base: processIndex >= 0 ? { process: processIndex, pid: process.pid, wg: id } : { wg: id } };
  if (format === 'json') return pino(options, pino.destination({ fd: 1, sync: true }));
  // Synchronous, like the JSON destination: a workgroup that dies still writes its last line.
  // Loaded only for a terminal: requiring it costs an isolate 474 KB of heap after GC (measured on Node 20).
  const pretty = require('pino-pretty') as typeof import('pino-pretty');
  return pino(options, pretty({ destination: 1, sync: true, colorize: process.stdout.isTTY === true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname', singleLine: true }));
}

/** Error lines one cause may write per window; the rest are counted and summed up in one line. */
export const LOG_LINES_PER_CAUSE = 5;
export const LOG_WINDOW_MS = 60_000;

/**
 * Error logs rate-limited per cause, so that a client that can make the
 * server fail (or a bug it trips) cannot fill the disk: each cause writes at
 * most LOG_LINES_PER_CAUSE lines a minute, then one line saying how many it
 * left out. Causes are a few fixed strings, so the map stays small.
 */
export class LogLimiter {
  private readonly windows = new Map<string, { startMs: number; lines: number; suppressed: number }>();

  constructor(
    private readonly log: Logger,
    private readonly onSuppressed: () => void,
  ) {}

  /** Logs at error level unless the cause has had its share this window. */
  error(cause: string, fields: Record<string, unknown>, message: string): void {
    this.write('error', cause, fields, message);
  }

  /** Logs at warn level (a condition outside us, e.g. a lost connection), with the same share per cause. */
  warn(cause: string, fields: Record<string, unknown>, message: string): void {
    this.write('warn', cause, fields, message);
  }

  private write(level: 'error' | 'warn', cause: string, fields: Record<string, unknown>, message: string): void {
    const nowMs = Date.now();
    let w = this.windows.get(cause);
    if (w === undefined) {
      w = { startMs: nowMs, lines: 0, suppressed: 0 };
      this.windows.set(cause, w);
    } else if (nowMs - w.startMs >= LOG_WINDOW_MS) {
      if (w.suppressed > 0) this.log[level]({ cause, suppressed: w.suppressed, windowSeconds: LOG_WINDOW_MS / 1000 }, `${cause}: ${w.suppressed} more lines left out`);
      w.startMs = nowMs;
      w.lines = 0;
      w.suppressed = 0;
    }
    if (w.lines < LOG_LINES_PER_CAUSE) {
      w.lines++;
      this.log[level]({ cause, ...fields }, message);
      return;
    }
    w.suppressed++;
    this.onSuppressed();
  }
}
