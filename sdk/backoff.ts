// Reconnect delays: exponential backoff with full jitter (AWS Architecture
// Blog, "Exponential Backoff And Jitter"): attempt n waits a uniformly random
// time in [0, min(maxDelayMs, initialDelayMs * factor^n)). Full jitter keeps a
// crowd of clients cut off together (a node restart) from coming back together.

export interface BackoffOptions {
  /** Ceiling of the first retry's delay. Default 250 ms. */
  initialDelayMs?: number;
  /** Largest ceiling, whatever the attempt. Default 30 s. */
  maxDelayMs?: number;
  /** Growth of the ceiling per attempt. Default 2. */
  factor?: number;
}

export const DEFAULT_BACKOFF: Required<BackoffOptions> = { initialDelayMs: 250, maxDelayMs: 30_000, factor: 2 };

export function resolveBackoff(o: BackoffOptions | undefined): Required<BackoffOptions> {
  const r = { ...DEFAULT_BACKOFF, ...(o ?? {}) };
  if (!(r.initialDelayMs >= 0) || !Number.isFinite(r.initialDelayMs)) throw new RangeError('reconnect.initialDelayMs must be a finite number >= 0');
  if (!(r.maxDelayMs >= r.initialDelayMs) || !Number.isFinite(r.maxDelayMs)) throw new RangeError('reconnect.maxDelayMs must be a finite number >= initialDelayMs');
  if (!(r.factor >= 1) || !Number.isFinite(r.factor)) throw new RangeError('reconnect.factor must be a finite number >= 1');
  return r;
}

/** The upper bound of the delay before retry number `attempt` (0 for the first retry). */
export function backoffCeilingMs(attempt: number, o: Required<BackoffOptions>): number {
  // factor^attempt overflows to Infinity for large attempts; min() keeps the ceiling.
  return Math.min(o.maxDelayMs, o.initialDelayMs * Math.pow(o.factor, Math.max(0, attempt)));
}

/**
 * The delay before retry number `attempt`: full jitter over [0, ceiling), or
 * over [0, spreadMs) when the node asked for a wider spread (its
 * reconnectWindowMs: see ReconnectSchedule). `random` returns [0, 1).
 */
export function backoffDelayMs(attempt: number, o: Required<BackoffOptions>, random: () => number = Math.random, spreadMs = 0): number {
  return Math.floor(random() * Math.max(backoffCeilingMs(attempt, o), spreadMs));
}

/** The largest reconnectWindowMs taken from a server (its admission horizon, 120 s). */
export const MAX_RECONNECT_WINDOW_MS = 120_000;

/** Timers, injectable so that the schedule runs on a fake clock in tests. */
export interface Clock {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const realClock: Clock = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
};

/**
 * Counts attempts and schedules the next one. `reset()` after a connection
 * succeeds; `schedule(fn, immediate, spreadMs)` runs fn after the next
 * delay (or at once, for the server's "reconnect now" close code), drawn
 * over at least spreadMs: the reconnectWindowMs of the node's last ping reply,
 * so that a crowd that lost a node together comes back at the pace the node
 * admits; `scheduleIn(fn, ms)` after the server's own hint.
 */
export class ReconnectSchedule {
  attempt = 0;
  private timer: unknown = null;

  constructor(
    readonly options: Required<BackoffOptions>,
    private readonly clock: Clock = realClock,
    private readonly random: () => number = Math.random,
  ) {}

  /** Schedules fn; returns the delay chosen. */
  schedule(fn: () => void, immediate = false, spreadMs = 0): number {
    return this.scheduleIn(fn, immediate ? 0 : backoffDelayMs(this.attempt, this.options, this.random, spreadMs));
  }

  /** Schedules fn after the server's hint (503 Retry-After) instead of the jittered delay; it still counts as an attempt. */
  scheduleIn(fn: () => void, delay: number): number {
    this.cancel();
    this.attempt++;
    this.timer = this.clock.setTimeout(() => {
      this.timer = null;
      fn();
    }, delay);
    return delay;
  }

  get pending(): boolean {
    return this.timer !== null;
  }

  cancel(): void {
    if (this.timer !== null) this.clock.clearTimeout(this.timer);
    this.timer = null;
  }

  reset(): void {
    this.attempt = 0;
  }
}
