// Timers per session spread over time (issue 18): a crowd that connected in
// one burst must not be pinged, nor ping, in one turn of the loop for ever
// after. The server: uWS's automatic pings (its idle timer, 4 s wheel) keep
// the phase each session's ping-phase walk gave it. The SDK: its second ping
// comes at a random point of the interval.
import WebSocket from 'ws';
import { connect as sdkConnect, type C10mClient } from '../sdk';
import type { WebSocketConstructor } from '../sdk/transport';
import { FIRST_PING_MS, pingDelayMs } from '../sdk/ping-schedule';
import { refreshAtMs } from '../sdk/token';
import { PHASE_SLOTS_PER_TURN, PingPhase, phasePeriodMs, uwsFirstPingSeconds } from '../workgroups/ping-phase';
import { SessionFlag, SessionSlab } from '../workgroups/slab';
import { sleep } from './helpers/guaranteed';
import { startServer, type TestServer } from './helpers/server';

jest.setTimeout(120_000);

const servers: TestServer[] = [];
const sockets: WebSocket[] = [];
const sdks: C10mClient[] = [];

afterEach(async () => {
  for (const c of sdks.splice(0)) c.close();
  for (const ws of sockets.splice(0)) ws.terminate();
  await Promise.all(servers.splice(0).map((s) => s.stop()));
});

/** The most values in one window of `widthMs` starting at a multiple of it (times in ms), as a fraction of all. */
function busiestShare(times: number[], widthMs: number): number {
  const counts = new Map<number, number>();
  for (const t of times) counts.set(Math.floor(t / widthMs), (counts.get(Math.floor(t / widthMs)) ?? 0) + 1);
  return Math.max(...counts.values()) / times.length;
}

test("uWS's first ping and the walk's period follow uWebSockets' margin (4, 8 or 16 s)", () => {
  expect(uwsFirstPingSeconds(120)).toBe(104);
  expect(uwsFirstPingSeconds(32)).toBe(16);
  expect(uwsFirstPingSeconds(16)).toBe(8);
  expect(uwsFirstPingSeconds(8)).toBe(4);
  expect(phasePeriodMs(120)).toBe(100_000);
  expect(phasePeriodMs(32)).toBe(12_000);
  expect(phasePeriodMs(8)).toBe(4_000);
  expect(phasePeriodMs(0)).toBe(0);
});

test('the ping-phase walk pings each open session once, one pass per period, at most PHASE_SLOTS_PER_TURN slots a turn', () => {
  const slab = new SessionSlab();
  const n = 3 * PHASE_SLOTS_PER_TURN;
  const pinged: number[] = new Array<number>(n).fill(0);
  const sockets = Array.from({ length: n }, (_, i) => ({ ping: () => ++pinged[i] }));
  for (let i = 0; i < n; i++) slab.open(0, 0, 0);
  const walk = new PingPhase(32, slab, sockets); // a 12 s pass
  expect(walk.step(0)).toBe(0);
  // 1 s of a 12 s pass: n / 12 slots.
  expect(walk.step(1000)).toBe(Math.floor(n / 12));
  // A loop that stalled for the whole period catches up a turn at a time, never more than the cap per turn.
  expect(walk.step(13_000)).toBe(PHASE_SLOTS_PER_TURN);
  let t = 13_000;
  while (walk.sent < n) expect(walk.step((t += 10))).toBeLessThanOrEqual(PHASE_SLOTS_PER_TURN);
  expect(pinged.every((p) => p === 1)).toBe(true);
  for (let s = 0; s < n; s++) expect(slab.flags(s) & SessionFlag.PING_PHASED).toBe(SessionFlag.PING_PHASED);
  // A second pass pings no one again; a slot reopened for a new session is pinged once more.
  slab.close(5);
  slab.open(0, 0, 0);
  t += 13_000;
  for (let i = 0; i < 10; i++) walk.step((t += 1300));
  expect(walk.sent).toBe(n + 1);
  expect(pinged[5]).toBe(2);
});

test('a crowd of sessions opened in one burst is pinged spread over the period, and uWS keeps the phases', async () => {
  // --idle-timeout-seconds 32: uWS pings after 16 s of silence; the walk's pass is 12 s.
  const s = await startServer(['--workgroups', '1', '--idle-timeout-seconds', '32']);
  servers.push(s);
  const N = 300;
  const pings: number[][] = [];
  const t0 = Date.now();
  await Promise.all(
    Array.from({ length: N }, (_, i) => {
      const ws = new WebSocket(s.url('/v1/ws'));
      sockets.push(ws);
      pings.push([]);
      ws.on('ping', () => pings[i].push(Date.now() - t0));
      return new Promise((resolve, reject) => {
        ws.once('open', resolve);
        ws.once('error', reject);
      });
    }),
  );
  const opened = Date.now() - t0;
  // The walk's pings come within its 12 s pass; uWS's own follow 16-20 s after each pong.
  await sleep(38_000);
  expect(sockets.every((ws) => ws.readyState === WebSocket.OPEN)).toBe(true);
  expect(pings.every((p) => p.length >= 2)).toBe(true);
  const first = pings.map((p) => p[0]);
  const second = pings.map((p) => p[1]);
  // The burst opened within `opened` ms; without the walk every first ping falls in one or two uWS ticks, 16-20 s later.
  expect(opened).toBeLessThan(4000);
  expect(busiestShare(first, 1000)).toBeLessThan(0.25);
  expect(Math.max(...first) - Math.min(...first)).toBeGreaterThan(6000);
  // uWS's pings keep the phases: spread over several of its 4 s ticks, not one.
  expect(busiestShare(second, 1000)).toBeLessThan(0.5);
  expect(new Set(second.map((t) => Math.floor(t / 1000))).size).toBeGreaterThanOrEqual(3);
});

test('the SDK: pingDelayMs gives the first 1-2 s after the open, the second anywhere in the interval, then the interval', () => {
  expect(pingDelayMs(0, 25_000, () => 0)).toBe(FIRST_PING_MS);
  expect(pingDelayMs(0, 25_000, () => 0.999)).toBe(2 * FIRST_PING_MS - 1);
  expect(pingDelayMs(0, 500, () => 0.5)).toBe(500);
  expect(pingDelayMs(1, 25_000, () => 0)).toBe(1);
  expect(pingDelayMs(1, 25_000, () => 0.5)).toBe(12_500);
  expect(pingDelayMs(1, 25_000, () => 0.99999)).toBe(25_000);
  expect(pingDelayMs(7, 25_000, () => 0.3)).toBe(25_000);
});

test('SDK clients connected at once ping spread over the interval, not in the second they connected', async () => {
  const s = await startServer(['--workgroups', '1']);
  servers.push(s);
  const N = 150;
  const EVERY = 3000;
  const sent: number[] = [];
  const t0 = Date.now();
  class Recording extends WebSocket {
    send(data: unknown, ...rest: unknown[]): void {
      if (typeof data === 'string' && data.includes('"op":"ping"')) sent.push(Date.now() - t0);
      (super.send as (...a: unknown[]) => void)(data, ...rest);
    }
  }
  const ready: Promise<unknown>[] = [];
  for (let i = 0; i < N; i++) {
    const c = sdkConnect(s.url(), { pingIntervalMs: EVERY, WebSocket: Recording as unknown as WebSocketConstructor });
    sdks.push(c);
    ready.push(c.subscribe(`/spread/${i % 10}`, () => {}).ready);
  }
  await Promise.all(ready);
  const connected = Date.now() - t0;
  // By 2 s + EVERY every client has made its random second ping; from then on each pings once per EVERY.
  const from = connected + 2000 + EVERY;
  await sleep(from + 2 * EVERY + 500 - (Date.now() - t0));
  const window = sent.filter((t) => t >= from && t < from + 2 * EVERY);
  expect(window.length).toBeGreaterThanOrEqual(2 * N - 10);
  expect(window.length).toBeLessThanOrEqual(2 * N + 10);
  // Phases over the interval in tenths: without the random second ping they all sit in the tenths of the first second.
  const phase = window.map((t) => (t - from) % EVERY);
  const tenths = new Set(phase.map((p) => Math.floor(p / (EVERY / 10))));
  expect(tenths.size).toBeGreaterThanOrEqual(9);
  expect(busiestShare(phase, EVERY / 10)).toBeLessThan(0.25);
});

test("the SDK: a token's refresh comes refreshAheadMs before exp, up to twice that by the token's own spread, never before half its life", () => {
  const at = (leftMs: number, aheadMs: number, spread: number) => {
    const held = { token: 't', expMs: 1_000_000 + leftMs, receivedAtMs: 1_000_000, spread };
    return (refreshAtMs(held, aheadMs) as number) - held.receivedAtMs;
  };
  expect(at(3_600_000, 30_000, 0)).toBe(3_570_000);
  expect(at(3_600_000, 30_000, 0.5)).toBe(3_555_000);
  expect(at(3_600_000, 30_000, 0.999)).toBeCloseTo(3_540_030, 0);
  // Capped at half the lifetime left.
  expect(at(40_000, 30_000, 0.9)).toBe(20_000);
  // A crowd's tokens of one exp: refreshes spread over refreshAheadMs (30 s), not one second.
  const times = Array.from({ length: 1000 }, (_, i) => at(3_600_000, 30_000, i / 1000));
  expect(Math.max(...times) - Math.min(...times)).toBeGreaterThan(29_000);
  expect(busiestShare(times, 1000)).toBeLessThan(0.05);
});
