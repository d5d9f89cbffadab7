// Every error code and close code of protocol v1, used by server and SDK alike.
// Documented in protocol/PROTOCOL.md; codes are stable: add, never rename.

export const ErrorCode = {
  /** The frame is not valid JSON (JSON encoding). */
  BAD_JSON: 'BAD_JSON',
  /** The frame is not valid msgpack (msgpack encoding). */
  BAD_MSGPACK: 'BAD_MSGPACK',
  /** The command is not a map, or a field has the wrong type. */
  BAD_REQUEST: 'BAD_REQUEST',
  /** The command has no `id`, or its id is not a string or a number. */
  MISSING_ID: 'MISSING_ID',
  /** `op` is missing or not one of sub, unsub, pub, ping. */
  UNKNOWN_OP: 'UNKNOWN_OP',
  /** A topic name breaks the naming rules. */
  BAD_TOPIC: 'BAD_TOPIC',
  /** `data` is missing from a publish. */
  BAD_DATA: 'BAD_DATA',
  /** The encoded `data` of a publish is larger than the server's max payload. */
  PAYLOAD_TOO_LARGE: 'PAYLOAD_TOO_LARGE',
  /** A session subscribed to more topics than `--max-subscriptions-per-session`. */
  TOO_MANY_SUBSCRIPTIONS: 'TOO_MANY_SUBSCRIPTIONS',
  /** A sub would pass `--max-patterns-per-session` or the node's `--max-patterns` (wildcard subscriptions). */
  TOO_MANY_PATTERNS: 'TOO_MANY_PATTERNS',
  /** The server is draining for shutdown and takes no new work. */
  SHUTTING_DOWN: 'SHUTTING_DOWN',
  /** HTTP publish: the content type is not application/json or application/msgpack (415). */
  UNSUPPORTED_MEDIA_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  /** HTTP publish or upgrade from a web origin that --cors-origins does not allow (403). */
  ORIGIN_NOT_ALLOWED: 'ORIGIN_NOT_ALLOWED',
  /** HTTP: no route for this method and path. */
  NOT_FOUND: 'NOT_FOUND',
  /**
   * The workgroup that owns the topic did not answer within 10 s (it may have
   * restarted). A publish may or may not have been sequenced; a subscription
   * did not take effect.
   */
  OWNER_TIMEOUT: 'OWNER_TIMEOUT',
  /**
   * The rings between workgroups are backed up past --max-ring-spill-bytes
   * (subscribers' workgroups cannot keep up with the publish rate): the
   * publish was refused, nothing was sequenced. Retry after a short delay
   * (HTTP: 503 with Retry-After).
   */
  OVERLOADED: 'OVERLOADED',
  /** The server failed to handle a valid request; it was logged and counted. */
  INTERNAL: 'INTERNAL',
  /**
   * The session sent more commands (or command bytes) this second than
   * --max-commands-per-second (--max-bytes-per-second) allow: this command
   * was refused, nothing was done. Slow down; a session that keeps going
   * over is closed with 4001.
   */
  RATE_LIMITED: 'RATE_LIMITED',
  /**
   * The node holds --max-topics topics: a publish or subscription that would
   * create one more was refused. Topics with no subscribers and nothing
   * cached are released after a short idle time.
   */
  TOO_MANY_TOPICS: 'TOO_MANY_TOPICS',
  /**
   * The cluster's store (Redis, with --engine redis) is unreachable: a
   * publish was refused (nothing sequenced) or failed in flight (it may or
   * may not have been sequenced, as the message says), or a subscription did
   * not take effect. The session stays; retry after a short delay (HTTP: 503
   * with Retry-After).
   */
  UNAVAILABLE: 'UNAVAILABLE',
  /**
   * --auth jwt: no valid token. At the upgrade (HTTP 401: a bad signature,
   * a wrong issuer or audience, a malformed token, alg none); a command
   * other than auth or ping on a session that has not authenticated yet; an
   * auth command whose token is not valid (the session keeps its old token).
   * HTTP publish without a valid bearer token or API key (401).
   */
  UNAUTHORIZED: 'UNAUTHORIZED',
  /** --auth jwt: the token's exp has passed (or its nbf is still ahead): fetch a new one. At the upgrade 401; in band, the auth command's answer. */
  TOKEN_EXPIRED: 'TOKEN_EXPIRED',
  /** --auth jwt: the token's subscribe (publish) claim does not cover this topic: that topic is refused, the session stays (HTTP publish: 403). */
  FORBIDDEN: 'FORBIDDEN',
  /**
   * Admission control: the node admits new sessions at --admission-rate per
   * second and this upgrade is beyond it (HTTP 503 with Retry-After, before
   * any session state exists). The body's retryAfterMs says when to come
   * back, and its ticket, sent back as the admit query parameter then, is
   * honored at that time.
   */
  RETRY_LATER: 'RETRY_LATER',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** WebSocket close codes the server sends (RFC 6455 section 7.4, and our 4000-4999 range). */
export const CloseCode = {
  /** Normal close asked for by the client. */
  NORMAL: 1000,
  /** The server is shutting down or restarting: reconnect at once, to another node if you can. */
  SHUTDOWN: 1001,
  /** The frame violated the protocol (the WebSocket layer's own errors). */
  PROTOCOL_ERROR: 1002,
  /** A binary frame on a JSON session, or a text frame on a msgpack session. */
  UNSUPPORTED_DATA: 1003,
  /** A text frame that is not valid UTF-8. */
  INVALID_PAYLOAD: 1007,
  /** Policy: more than 100 bad commands on one session. (Over the per-address cap, or a bad upgrade, is refused before the upgrade: HTTP 429 or 400.) */
  POLICY_VIOLATION: 1008,
  /** A frame larger than the server's max frame size. */
  MESSAGE_TOO_BIG: 1009,
  /** The server failed; reconnect. */
  INTERNAL_ERROR: 1011,
  /** The session fell too far behind (unsent bytes over --max-backpressure-bytes): resume from the last seq. */
  SLOW_CONSUMER: 4000,
  /** The session stayed over its command budget (RATE_LIMITED for 5 s in a row, or at twice its budget): reconnect after a backoff, and send less. */
  RATE_LIMITED: 4001,
  /** --auth jwt: the session opened without a token and sent no valid auth command within --auth-timeout-seconds. */
  AUTH_TIMEOUT: 4002,
  /** --auth jwt: the session's token expired and no new one came in band (auth command): fetch a new token and reconnect at once. */
  TOKEN_EXPIRED: 4003,
} as const;
export type CloseCode = (typeof CloseCode)[keyof typeof CloseCode];

export const CloseReason: Record<number, string> = {
  [CloseCode.SHUTDOWN]: 'server shutting down; reconnect',
  [CloseCode.UNSUPPORTED_DATA]: 'wrong frame type for this encoding',
  [CloseCode.POLICY_VIOLATION]: 'policy violation',
  [CloseCode.MESSAGE_TOO_BIG]: 'frame too big',
  [CloseCode.INTERNAL_ERROR]: 'internal error',
  [CloseCode.SLOW_CONSUMER]: 'slow consumer; resume from your last seq',
  [CloseCode.RATE_LIMITED]: 'over the command budget; reconnect later and send less',
  [CloseCode.AUTH_TIMEOUT]: 'no valid auth command in time; reconnect with a token',
  [CloseCode.TOKEN_EXPIRED]: 'token expired; fetch a new token and reconnect',
};

/** An error reply: `{"id":..,"error":{"code":..,"message":..}}`. */
export class ProtocolError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    /** The id of the command it answers, when one could be read. */
    readonly id: CommandId | null = null,
  ) {
    super(message);
  }
}

export type CommandId = string | number;
