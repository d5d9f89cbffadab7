// The WebSocket handshake checks of RFC 6455 section 4.2.1 that uWS leaves
// to us. uWS v20.30 routes a GET to the upgrade handler whenever its
// Sec-WebSocket-Key is 24 characters long, and checks nothing else: no
// Upgrade or Connection header needed, any Sec-WebSocket-Version, any 24
// characters as the key. A pure function of the header values, so that it
// is tested without a socket.
import { ErrorCode } from '../protocol/errors';
import { CorsPolicy } from './cors';

/** The header values of an upgrade request ('' when absent), as uWS's getHeader returns them. */
export interface UpgradeHeaders {
  upgrade: string;
  connection: string;
  secWebSocketKey: string;
  secWebSocketVersion: string;
  origin: string;
  host: string;
}

export interface UpgradeRefusal {
  /** Status line, e.g. '400 Bad Request'. */
  status: string;
  code: ErrorCode;
  message: string;
  /** Headers to add to the refusal, or null. */
  extraHeaders: [string, string][] | null;
}

/** base64 of exactly 16 bytes: 22 characters, the last of them carrying 2 bits, then '=='. */
const KEY_16_BYTES = /^[A-Za-z0-9+/]{21}[AQgw]==$/;

/** Whether a comma-separated header value holds `token` (ASCII case-insensitive). */
function hasToken(value: string, token: string): boolean {
  // The usual value is the token alone ("websocket", "Upgrade"): no split, no array per upgrade.
  if (value.length === token.length) return value.toLowerCase() === token;
  for (const part of value.split(',')) if (part.trim().toLowerCase() === token) return true;
  return false;
}

function badRequest(message: string): UpgradeRefusal {
  return { status: '400 Bad Request', code: ErrorCode.BAD_REQUEST, message, extraHeaders: null };
}

/**
 * null when the handshake may go on, else the refusal: 400 for a request
 * that is not a WebSocket handshake, 426 with Sec-WebSocket-Version: 13 for
 * another protocol version, 403 for an Origin that --cors-origins does not
 * allow (only when it is set: with none, any origin may open a session).
 */
export function checkUpgrade(h: UpgradeHeaders, cors: CorsPolicy): UpgradeRefusal | null {
  if (!hasToken(h.upgrade, 'websocket')) return badRequest('a WebSocket handshake needs Upgrade: websocket');
  if (!hasToken(h.connection, 'upgrade')) return badRequest('a WebSocket handshake needs a Connection header with the upgrade token');
  if (!KEY_16_BYTES.test(h.secWebSocketKey)) return badRequest('Sec-WebSocket-Key must be 16 bytes in base64');
  if (h.secWebSocketVersion === '') return badRequest('a WebSocket handshake needs Sec-WebSocket-Version: 13');
  if (h.secWebSocketVersion.trim() !== '13') {
    return { status: '426 Upgrade Required', code: ErrorCode.BAD_REQUEST, message: 'this server speaks WebSocket version 13 only', extraHeaders: [['sec-websocket-version', '13']] };
  }
  if (cors.configured && h.origin !== '' && !cors.allows(h.origin) && !CorsPolicy.sameOrigin(h.origin, h.host)) {
    return { status: '403 Forbidden', code: ErrorCode.ORIGIN_NOT_ALLOWED, message: `origin ${h.origin} is not in --cors-origins`, extraHeaders: null };
  }
  return null;
}
