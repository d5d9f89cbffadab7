// A refused upgrade, as far as the client can read it. Node's `ws` hands the
// HTTP response to an 'unexpected-response' listener (sdk/transport.ts); a
// browser's WebSocket shows nothing but a failed connection (close 1006), so
// there the client falls back to its own backoff.
import { ErrorCode } from '../protocol/errors';
import type { UpgradeResponse } from './transport';

export interface UpgradeRefusal {
  status: number;
  /** The body's error.code (UNAUTHORIZED, TOKEN_EXPIRED, RETRY_LATER, RATE_LIMITED, ...), or null. */
  code: string | null;
  message: string;
  /** The body's retryAfterMs, or null. */
  retryAfterMs: number | null;
  /** The Retry-After header (whole seconds) in ms, or null. */
  retryAfterHeaderMs: number | null;
  /** The body's admission ticket (503 RETRY_LATER), sent back as `admit` on the next attempt. */
  ticket: string | null;
}

/** Longest wait a server hint may impose (the server gives places up to 120 s ahead, then spreads past them); a larger one is cut to this. */
export const MAX_HINT_MS = 240_000;
/** Body bytes read at most: refusals are small JSON maps. */
const MAX_BODY_BYTES = 16 * 1024;

/** Reads the response to its end (or error); calls done once. Never throws. */
export function readRefusal(res: UpgradeResponse, done: (r: UpgradeRefusal) => void): void {
  const chunks: Uint8Array[] = [];
  let size = 0;
  let finished = false;
  const finish = () => {
    if (finished) return;
    finished = true;
    const body = new Uint8Array(size);
    let at = 0;
    for (const c of chunks) {
      body.set(c, at);
      at += c.length;
    }
    done(parseRefusal(res.statusCode ?? 0, headerValue(res.headers['retry-after']), new TextDecoder().decode(body)));
  };
  res.on('data', (chunk: unknown) => {
    if (!(chunk instanceof Uint8Array) || size + chunk.length > MAX_BODY_BYTES) return;
    chunks.push(chunk);
    size += chunk.length;
  });
  res.on('end', finish);
  res.on('error', finish);
  res.on('close', finish);
}

export function parseRefusal(status: number, retryAfterHeader: string | null, body: string): UpgradeRefusal {
  const r: UpgradeRefusal = { status, code: null, message: `HTTP ${status}`, retryAfterMs: null, retryAfterHeaderMs: null, ticket: null };
  if (retryAfterHeader !== null && /^\d{1,6}$/.test(retryAfterHeader.trim())) r.retryAfterHeaderMs = Number(retryAfterHeader.trim()) * 1000;
  let error: unknown = null;
  try {
    error = (JSON.parse(body) as { error?: unknown })?.error ?? null;
  } catch {
    // Not a c10m body (a proxy's page): status and headers are all there is.
  }
  if (error !== null && typeof error === 'object') {
    const e = error as Record<string, unknown>;
    if (typeof e.code === 'string') r.code = e.code;
    if (typeof e.message === 'string') r.message = e.message;
    if (typeof e.retryAfterMs === 'number' && Number.isFinite(e.retryAfterMs) && e.retryAfterMs >= 0) r.retryAfterMs = e.retryAfterMs;
    if (typeof e.ticket === 'string' && e.ticket !== '') r.ticket = e.ticket;
  }
  return r;
}

/**
 * How long to wait before the next attempt when the server said so, or null.
 * 503 RETRY_LATER: retryAfterMs, not less than Retry-After. 429 RATE_LIMITED:
 * retryAfterMs (Retry-After without it). At most MAX_HINT_MS.
 */
export function hintDelayMs(r: UpgradeRefusal): number | null {
  let ms: number | null = null;
  if (r.status === 503 && r.code === ErrorCode.RETRY_LATER) {
    // The body's figure is exact (with the server's jitter); Retry-After is it rounded down, for clients that read only headers.
    ms = r.retryAfterMs ?? r.retryAfterHeaderMs;
  } else if (r.status === 429 && r.code === ErrorCode.RATE_LIMITED) {
    ms = r.retryAfterMs ?? r.retryAfterHeaderMs;
  }
  return ms === null ? null : Math.min(MAX_HINT_MS, Math.ceil(ms));
}

function headerValue(v: string | string[] | undefined): string | null {
  if (v === undefined) return null;
  return Array.isArray(v) ? (v[0] ?? null) : v;
}
