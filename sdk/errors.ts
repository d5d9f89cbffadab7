// Errors the SDK hands to callers: the server's stable codes (protocol/errors.ts)
// plus the SDK's own, for what happens on this side of the socket.
import type { ErrorCode } from '../protocol/errors';

export const SdkErrorCode = {
  /** A publish was made while disconnected and the queue already held maxQueuedPublishes. */
  QUEUE_FULL: 'QUEUE_FULL',
  /** The connection dropped before the server answered: the publish may or may not have been applied. */
  CONNECTION_LOST: 'CONNECTION_LOST',
  /** close() was called (or the client gave up reconnecting) before the request completed. */
  CLOSED: 'CLOSED',
  /** No reply within requestTimeoutMs. */
  TIMEOUT: 'TIMEOUT',
  /** The server closed the socket with a code that says the client sent something wrong (1003, 1008, 1009). */
  REJECTED_BY_SERVER: 'REJECTED_BY_SERVER',
  /** getToken() threw or rejected, returned something other than a non-empty string, or took longer than connectTimeoutMs. */
  TOKEN_UNAVAILABLE: 'TOKEN_UNAVAILABLE',
  /** HTTP publish: the server answered with something that is not a c10m reply. */
  BAD_RESPONSE: 'BAD_RESPONSE',
} as const;
export type SdkErrorCode = (typeof SdkErrorCode)[keyof typeof SdkErrorCode];

export class C10mError extends Error {
  override readonly name = 'C10mError';
  constructor(
    /** A server ErrorCode (BAD_TOPIC, PAYLOAD_TOO_LARGE, ...) or an SdkErrorCode. */
    readonly code: ErrorCode | SdkErrorCode,
    message: string,
    /** The topic concerned, when there is one. */
    readonly topic?: string,
    /** HTTP status (HTTP publisher) or WebSocket close code, when there is one. */
    readonly status?: number,
  ) {
    super(message);
  }
}
