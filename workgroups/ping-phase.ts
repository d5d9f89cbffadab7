// Spreads uWebSockets' automatic pings over time (issue 18).
//
// uWS pings a session that sent nothing for idleTimeout less a margin
// (uWebSockets' WebSocketContextData::calculateIdleTimeoutCompnents: 4, 8
// or 16 s; 104 s for the default 120), and its pong sets the timer again.
// The timers live on uSockets' wheel, one tick every 4 s: every session
// whose timer was set within the same 4 s falls due in the same sweep. So a
// crowd that connected in one burst (a benchmark's ramp, a restart's
// reconnect storm) is pinged in one turn of the loop, one write each, and
// answers in one turn, every 104 s, for as long as it stays idle: 19,000
// sessions here stopped the loop for that long (docs/PERFORMANCE.md).
//
// The fix moves each session's phase once: a walk over the slots, one pass
// per period (shorter than uWS's first ping), pings every open session it
// has not pinged yet. Its pong arrives within milliseconds and sets the
// session's uWS timer, whose ping then keeps that phase. Sessions opened
// together hold neighbouring slots, so the walk, which visits slots at an
// even pace, pings them at times spread evenly over the period. A session
// that talks (the SDK pings every 25 s) set its timer itself; the one ping
// it gets here costs it a pong. The walk only reads one byte per slot.
import { SessionFlag, SessionState, type SessionSlab } from './slab';

/** uWS's idle timer granularity (uSockets' LIBUS_TIMEOUT_GRANULARITY), seconds. */
export const UWS_TICK_SECONDS = 4;
/** Most slots the walk visits in one turn (a loop that stalled catches up over later turns). */
export const PHASE_SLOTS_PER_TURN = 2048;

/** uWS's first automatic ping after the last data: idleTimeout less its margin (4, 8 or 16 s), as uWebSockets computes it. */
export function uwsFirstPingSeconds(idleTimeoutSeconds: number): number {
  let margin = 4;
  while (idleTimeoutSeconds - margin * 2 >= margin * 2 && margin < 16) margin <<= 1;
  return idleTimeoutSeconds - margin;
}

/** The walk's period, ms: one pass ends a tick before uWS's own first ping; 0 when pings are off. */
export function phasePeriodMs(idleTimeoutSeconds: number): number {
  if (idleTimeoutSeconds <= 0) return 0;
  return Math.max(UWS_TICK_SECONDS, uwsFirstPingSeconds(idleTimeoutSeconds) - UWS_TICK_SECONDS) * 1000;
}

export class PingPhase {
  private readonly periodMs: number;
  private cursor = 0;
  /** Slots owed to the walk (a fraction carried from turn to turn). */
  private credit = 0;
  private lastMs = -1;
  /** Pings sent by the walk (for tests and the lab). */
  sent = 0;

  constructor(
    idleTimeoutSeconds: number,
    private readonly slab: SessionSlab,
    private readonly sockets: readonly ({ ping(): number } | undefined)[],
  ) {
    this.periodMs = phasePeriodMs(idleTimeoutSeconds);
  }

  /** One turn of the walk (called every few ms): visits this turn's share of the slots. Returns the slots visited. */
  step(nowMs: number): number {
    const n = this.sockets.length;
    if (this.periodMs === 0 || n === 0) {
      this.lastMs = nowMs;
      return 0;
    }
    if (this.lastMs < 0) this.lastMs = nowMs;
    this.credit = Math.min(this.credit + (n * (nowMs - this.lastMs)) / this.periodMs, n);
    this.lastMs = nowMs;
    const m = Math.min(Math.floor(this.credit), PHASE_SLOTS_PER_TURN);
    this.credit -= m;
    const slab = this.slab;
    let slot = this.cursor >= n ? 0 : this.cursor;
    for (let i = 0; i < m; i++, slot = slot + 1 >= n ? 0 : slot + 1) {
      const ws = this.sockets[slot];
      if (ws === undefined || slab.state(slot) !== SessionState.OPEN || slab.flags(slot) & SessionFlag.PING_PHASED) continue;
      slab.setFlag(slot, SessionFlag.PING_PHASED);
      ws.ping();
      this.sent++;
    }
    this.cursor = slot;
    return m;
  }
}
