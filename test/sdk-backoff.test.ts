// The SDK's reconnect schedule: exponential backoff with full jitter, bounded,
// checked on a fake clock (never wall time), and the client driven by it.
import net from 'node:net';
import { DEFAULT_BACKOFF, ReconnectSchedule, backoffCeilingMs, backoffDelayMs, resolveBackoff, type Clock } from '../sdk/backoff';
import { connect } from '../sdk/client';
import { startServer } from './helpers/server';

/** A clock whose time moves only when advance() is called. */
class FakeClock implements Clock {
  now = 0;
  private timers = new Map<number, { at: number; fn: () => void }>();
  private next = 1;
  setTimeout(fn: () => void, ms: number): unknown {
    const id = this.next++;
    this.timers.set(id, { at: this.now + ms, fn });
    return id;
  }
  clearTimeout(handle: unknown): void {
    this.timers.delete(handle as number);
  }
  /** Due times of the pending timers. */
  pending(): number[] {
    return [...this.timers.values()].map((t) => t.at).sort((a, b) => a - b);
  }
  advance(ms: number): void {
    const until = this.now + ms;
    for (;;) {
      let first: [number, { at: number; fn: () => void }] | null = null;
      for (const e of this.timers) if (e[1].at <= until && (first === null || e[1].at < first[1].at)) first = e;
      if (first === null) break;
      this.timers.delete(first[0]);
      this.now = first[1].at;
      first[1].fn();
    }
    this.now = until;
  }
}

/** A deterministic [0, 1) sequence (a linear congruential generator). */
function seededRandom(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

describe('backoff schedule', () => {
  const o = resolveBackoff({ initialDelayMs: 100, maxDelayMs: 5000, factor: 2 });

  test('the ceiling grows by the factor and stops at maxDelayMs', () => {
    expect([0, 1, 2, 3, 4, 5, 6, 7].map((a) => backoffCeilingMs(a, o))).toEqual([100, 200, 400, 800, 1600, 3200, 5000, 5000]);
    // A huge attempt number overflows factor^n to Infinity; the ceiling stays bounded.
    expect(backoffCeilingMs(5000, o)).toBe(5000);
  });

  test('full jitter: the delay spans [0, ceiling) and never leaves it', () => {
    expect(backoffDelayMs(3, o, () => 0)).toBe(0);
    expect(backoffDelayMs(3, o, () => 0.999999)).toBe(799);
    const random = seededRandom(42);
    for (let attempt = 0; attempt < 40; attempt++) {
      const ceiling = backoffCeilingMs(attempt, o);
      const delays = Array.from({ length: 200 }, () => backoffDelayMs(attempt, o, random));
      expect(Math.min(...delays)).toBeGreaterThanOrEqual(0);
      expect(Math.max(...delays)).toBeLessThan(ceiling);
      expect(delays.every(Number.isInteger)).toBe(true);
      // Jitter spreads the clients: 200 draws cover most of the range.
      expect(Math.max(...delays) - Math.min(...delays)).toBeGreaterThan(ceiling * 0.8);
    }
  });

  test('defaults and option checks', () => {
    expect(resolveBackoff(undefined)).toEqual(DEFAULT_BACKOFF);
    expect(resolveBackoff({ maxDelayMs: 1000 })).toEqual({ ...DEFAULT_BACKOFF, maxDelayMs: 1000 });
    expect(() => resolveBackoff({ factor: 0.5 })).toThrow(/factor/);
    expect(() => resolveBackoff({ initialDelayMs: -1 })).toThrow(/initialDelayMs/);
    expect(() => resolveBackoff({ initialDelayMs: 500, maxDelayMs: 100 })).toThrow(/maxDelayMs/);
    expect(() => resolveBackoff({ maxDelayMs: Infinity })).toThrow(/maxDelayMs/);
  });

  test('ReconnectSchedule fires each attempt on the fake clock within its bounds', () => {
    const clock = new FakeClock();
    const draws: number[] = [];
    const base = seededRandom(7);
    const random = () => {
      const r = base();
      draws.push(r);
      return r;
    };
    const s = new ReconnectSchedule(o, clock, random);
    const firedAt: number[] = [];
    for (let attempt = 0; attempt < 12; attempt++) {
      const start = clock.now;
      const delay = s.schedule(() => firedAt.push(clock.now));
      expect(delay).toBe(Math.floor(draws[attempt] * backoffCeilingMs(attempt, o)));
      expect(delay).toBeLessThan(backoffCeilingMs(attempt, o));
      // Not a millisecond early...
      if (delay > 0) {
        clock.advance(delay - 1);
        expect(firedAt.length).toBe(attempt);
      }
      // ...and exactly on time.
      clock.advance(start + delay - clock.now);
      expect(firedAt.length).toBe(attempt + 1);
      expect(firedAt[attempt]).toBe(start + delay);
      expect(s.pending).toBe(false);
    }
    expect(s.attempt).toBe(12);
    s.reset();
    expect(s.attempt).toBe(0);
    // The server's "reconnect now" skips the delay.
    expect(s.schedule(() => firedAt.push(clock.now), true)).toBe(0);
    clock.advance(0);
    expect(firedAt.length).toBe(13);
    // cancel() drops a scheduled attempt.
    s.schedule(() => firedAt.push(-1));
    s.cancel();
    clock.advance(10 * o.maxDelayMs);
    expect(firedAt).not.toContain(-1);
  });
});

/** A loopback port with nothing listening on it. */
async function closedPort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

test('the client waits the scheduled delay between failed attempts (fake clock, real refused connections)', async () => {
  const port = await closedPort();
  const clock = new FakeClock();
  const o = { initialDelayMs: 250, maxDelayMs: 2000, factor: 2 };
  const client = connect(`ws://127.0.0.1:${port}`, { reconnect: o, clock, random: () => 0.5, pingIntervalMs: 0 });
  const events: { attempt: number; delayMs: number }[] = [];
  const waitForEvent = (n: number) =>
    new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no reconnecting event #${n}; got ${JSON.stringify(events)}`)), 5000);
      const check = () => {
        if (events.length >= n) {
          clearTimeout(t);
          client.off('reconnecting', check);
          resolve();
        }
      };
      client.on('reconnecting', check);
      check();
    });
  client.on('reconnecting', (e) => events.push({ attempt: e.attempt, delayMs: e.delayMs }));
  try {
    for (let n = 1; n <= 6; n++) {
      await waitForEvent(n);
      const { delayMs, attempt } = events[n - 1];
      expect(attempt).toBe(n);
      expect(delayMs).toBe(Math.floor(0.5 * Math.min(o.maxDelayMs, o.initialDelayMs * 2 ** (n - 1))));
      // The next attempt is due exactly delayMs from now (the connect timeout is further out).
      expect(clock.pending()[0]).toBe(clock.now + delayMs);
      expect(client.state).toBe('reconnecting');
      clock.advance(delayMs);
    }
    expect(events.map((e) => e.delayMs)).toEqual([125, 250, 500, 1000, 1000, 1000]);
  } finally {
    await client.close();
  }
  expect(client.state).toBe('closed');
  expect(clock.pending()).toEqual([]);
});

test("after the node's ping reply gave reconnectWindowMs, losing the node spreads the next attempt over that window (fake clock, real node killed)", async () => {
  // One workgroup admitting 1 session a second holding this one session: the window is 1.25 s (1 s and its slack).
  const server = await startServer(['--workgroups', '1', '--admission-rate', '1']);
  const clock = new FakeClock();
  const o = { initialDelayMs: 250, maxDelayMs: 30_000, factor: 2 };
  const client = connect(server.url(), { reconnect: o, clock, random: () => 0.5, pingIntervalMs: 25_000 });
  const reconnecting = new Promise<{ attempt: number; delayMs: number }>((resolve) => client.once('reconnecting', resolve));
  try {
    await client.ready();
    // The first ping comes 1-2 s after the open (1.5 s with random 0.5), not after the whole interval.
    expect(clock.pending()).toContain(clock.now + 1500);
    clock.advance(1500);
    // The node answers a session's commands in order: once this ack is in, so is the ping's reply.
    await client.publish('/t/window', 'x', { ack: true });
    server.proc.kill('SIGKILL');
    const e = await reconnecting;
    expect(e.attempt).toBe(1);
    // Without the window: floor(0.5 * 250) = 125.
    expect(e.delayMs).toBe(Math.floor(0.5 * 1250));
  } finally {
    await client.close();
    await server.stop();
  }
});
