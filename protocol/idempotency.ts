// Idempotent publish: a publish (WebSocket `pub` or HTTP) may carry an
// `idempotencyKey`. Within the node's window (--idempotency-window-seconds)
// a second publish to the same topic with the same key is not published
// again: it is answered with the first one's epoch and seq and
// "duplicate":true, and nothing is delivered. Keys are per topic.

/** --idempotency-window-seconds and --idempotency-keys-per-topic by default. */
export const DEFAULT_IDEMPOTENCY_WINDOW_SECONDS = 300;
export const DEFAULT_IDEMPOTENCY_KEYS_PER_TOPIC = 10_000;

/** Longest key. Keys are printable ASCII (space to ~), so that they travel as they are in rings and Redis. */
export const MAX_IDEMPOTENCY_KEY_CHARS = 128;

const PRINTABLE = /^[\x20-\x7e]+$/;

/** Why `v` is not an idempotency key, or null (absent and null mean none). */
export function idempotencyKeyError(v: unknown): string | null {
  if (v === undefined || v === null) return null;
  if (typeof v !== 'string' || v.length === 0 || v.length > MAX_IDEMPOTENCY_KEY_CHARS || !PRINTABLE.test(v)) {
    return `idempotencyKey must be a string of 1 to ${MAX_IDEMPOTENCY_KEY_CHARS} printable ASCII characters`;
  }
  return null;
}
