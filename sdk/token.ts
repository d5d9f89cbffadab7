// The session token as the client sees it: when it expires (the JWT's `exp`,
// read without verification: the server verifies) and so when to fetch the
// next one. A token that is not a JWT, or has no exp, is never refreshed ahead.

/** Refresh no more often than this, whatever the token's lifetime (a skewed clock must not make it spin). */
export const MIN_REFRESH_DELAY_MS = 1000;

export interface HeldToken {
  readonly token: string;
  /** The JWT's exp in milliseconds since the Unix epoch, or null (not a JWT, or no exp). */
  readonly expMs: number | null;
  /** When getToken() handed it over (Date.now()). */
  readonly receivedAtMs: number;
  /** [0, 1): how much earlier than refreshAheadMs its refresh comes (up to refreshAheadMs more), drawn once per token. */
  readonly spread?: number;
}

export function holdToken(token: string, nowMs: number = Date.now(), spread = 0): HeldToken {
  const exp = jwtExp(token);
  return { token, expMs: exp === null ? null : exp * 1000, receivedAtMs: nowMs, spread };
}

/**
 * When to fetch the next token: refreshAheadMs before exp (up to twice
 * that with the token's spread, so that a crowd's tokens of one exp are not
 * all refreshed in one second), but no earlier
 * than half-way through the lifetime left when it was received (a token of
 * 60 s with the default 30 s margin is refreshed after 30 s, one of 20 s
 * after 10 s), and no sooner than MIN_REFRESH_DELAY_MS after it was received.
 * Null: never ahead (no exp, or already expired by this clock: the server
 * closes with 4003 and the client reconnects with a new token).
 */
export function refreshAtMs(held: HeldToken, refreshAheadMs: number): number | null {
  if (held.expMs === null) return null;
  const leftMs = held.expMs - held.receivedAtMs;
  if (leftMs <= 0) return null;
  // Tokens minted in the same second expire in the same second: each client's own spread keeps their refreshes apart.
  const marginMs = Math.min(refreshAheadMs * (1 + (held.spread ?? 0)), leftMs / 2);
  return held.receivedAtMs + Math.max(MIN_REFRESH_DELAY_MS, leftMs - marginMs);
}

/** The `exp` claim (unix seconds) of a JWT's payload, or null. Does not verify anything. */
export function jwtExp(token: string): number | null {
  const parts = token.split('.');
  if (parts.length !== 3) return null;
  const bytes = base64UrlDecode(parts[1]);
  if (bytes === null) return null;
  try {
    const payload = JSON.parse(new TextDecoder().decode(bytes)) as unknown;
    if (payload === null || typeof payload !== 'object') return null;
    const exp = (payload as { exp?: unknown }).exp;
    return typeof exp === 'number' && Number.isFinite(exp) && exp > 0 ? exp : null;
  } catch {
    return null;
  }
}

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const VALUE = new Int8Array(128).fill(-1);
for (let i = 0; i < ALPHABET.length; i++) VALUE[ALPHABET.charCodeAt(i)] = i;

/** base64url without padding (RFC 7515 section 2), as in JWTs; null if it is not. Neither atob nor Buffer: both platforms. */
export function base64UrlDecode(s: string): Uint8Array | null {
  if (s.length % 4 === 1) return null;
  const out = new Uint8Array(Math.floor((s.length * 3) / 4));
  let bits = 0;
  let acc = 0;
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    const v = c < 128 ? VALUE[c] : -1;
    if (v < 0) return null;
    acc = (acc << 6) | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[n++] = (acc >> bits) & 0xff;
    }
  }
  return out.subarray(0, n);
}
