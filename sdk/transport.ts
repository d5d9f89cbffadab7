// The part of the WHATWG WebSocket interface the client uses. Browsers and the
// `ws` package both provide it, so the client is written once against it.

export interface WebSocketLike {
  binaryType: string;
  readonly readyState: number;
  readonly bufferedAmount: number;
  send(data: string | Uint8Array): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string; wasClean?: boolean }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  /**
   * Node's `ws` only: the HTTP response to a refused upgrade (401, 429, 503).
   * While a listener is attached, ws neither reads nor aborts it: the
   * listener must close the socket. Browsers have no such thing.
   */
  on?(event: 'unexpected-response', listener: (request: unknown, response: UpgradeResponse) => void): unknown;
}

/** The part of Node's http.IncomingMessage read from a refused upgrade. */
export interface UpgradeResponse {
  readonly statusCode?: number;
  readonly headers: Record<string, string | string[] | undefined>;
  on(event: 'data' | 'end' | 'error' | 'close', listener: (chunk: unknown) => void): unknown;
}

export type WebSocketConstructor = new (url: string) => WebSocketLike;

/** WebSocket readyState values (the same in every implementation). */
export const OPEN = 1;
