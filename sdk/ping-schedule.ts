// When the SDK pings (issue 18): a crowd that connected in the same second
// must not ping in the same second for ever after. The first ping comes 1-2 s
// after the open (it brings the node's reconnectWindowMs early); the second
// at a uniformly random point of the interval, which gives each client its
// own phase; from then on every interval. No interval is longer than
// pingIntervalMs, so the server's idle timeout sees a ping as often as before.

/** The first ping after an open comes 1-2 s after it. */
export const FIRST_PING_MS = 1000;

/** The delay before ping `n` of a connection (0: the first after its open), ms; `random` returns [0, 1). */
export function pingDelayMs(n: number, everyMs: number, random: () => number): number {
  if (n === 0) return Math.min(everyMs, FIRST_PING_MS + Math.floor(random() * FIRST_PING_MS));
  if (n === 1) return Math.max(1, Math.ceil(random() * everyMs));
  return everyMs;
}
