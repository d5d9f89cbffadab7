// The client's public types: its options, events, subscriptions, acks and
// figures (sdk/client.ts implements them; sdk/index.ts exports them).
import type { BackoffOptions, Clock } from './backoff';
import type { Encoding, Qos } from './encoding';
import type { C10mError } from './errors';
import type { Gap, Recovered, TopicStream } from './stream';
import type { HeldToken } from './token';
import type { WebSocketConstructor } from './transport';
import type { TransportMode } from './sse-transport';
import type { Message } from './wire';

export interface ConnectOptions {
  /** Wire encoding: "json" (default) or "msgpack" (smaller, binary data passes as bytes). */
  encoding?: Encoding;
  /** Sent as the `token` query parameter of the WebSocket URL: a static token (with getToken, the first one). */
  token?: string;
  /**
   * Fetches a token (a JWT) for the `token` query parameter: before the first
   * connection (unless `token` is given), ahead of the token's exp (sent in
   * band with the auth command, no reconnect), and after the server refused
   * or closed for the token (401 at the upgrade, close 4003 or 4002).
   */
  getToken?: () => string | Promise<string>;
  /** How long before the token's exp to fetch the next one; at most half the lifetime left when it arrived. Default 30 s. */
  refreshAheadMs?: number;
  /** Backoff between reconnect attempts, or false to never reconnect. */
  reconnect?: BackoffOptions | false;
  /** Publishes held while disconnected; one more is rejected with QUEUE_FULL. Default 1000. */
  maxQueuedPublishes?: number;
  /** How long a publish waits for its ack, and a ping for its reply. Default 10 s. */
  requestTimeoutMs?: number;
  /** How long a connection attempt may take before it counts as failed. Default 10 s. */
  connectTimeoutMs?: number;
  /** Application-level ping interval that detects a dead connection (0 = off). Default 25 s. */
  pingIntervalMs?: number;
  /**
   * "websocket", "sse" (GET /v1/sse and POST /v1/publish: for networks that break WebSockets), or
   * "auto" (the default; "websocket" when the WebSocket option is given): a WebSocket, and SSE on the
   * next attempt when one could not be opened.
   */
  transport?: TransportMode;
  /** WebSocket implementation; defaults to the platform's, or `ws` in Node without one. */
  WebSocket?: WebSocketConstructor;
  /** Timers and randomness, for tests. */
  clock?: Clock;
  random?: () => number;
}

export interface SubscribeOptions {
  /** "guaranteed" (default): resumed without loss where the server's cache allows, gaps reported. "standard": live only. */
  qos?: Qos;
  /**
   * At most one message per this many ms (10 to 60,000), the latest; each says in `conflated` how many were
   * skipped before it (not reported as gaps). A resume gets only the latest missed message. Default: every message.
   */
  conflateMs?: number;
}

export interface PublishOptions {
  /** Wait for the server's {epoch, seq} (default true). With false the promise resolves once the frame is sent. */
  ack?: boolean;
  /** Keep as the topic's retained message, sent to new subscribers first. */
  retain?: boolean;
  /**
   * 1 to 128 printable ASCII characters. The server publishes a key once per topic within its window (default
   * 5 minutes): a repeat is answered with the first one's {epoch, seq} and `duplicate: true`. An acked publish
   * with a key that was in flight when the connection dropped is sent again, with the key, on reconnect.
   */
  idempotencyKey?: string;
}

export interface PublishAck {
  epoch: number;
  seq: number;
  /** The idempotency key was already published: epoch and seq are that publish's, nothing was published now. */
  duplicate?: boolean;
}

export type ConnectionState = 'connecting' | 'connected' | 'reconnecting' | 'closed';

export interface ClientEvents {
  connected: { url: string; reconnect: boolean };
  disconnected: { url: string; code: number; reason: string; willReconnect: boolean };
  reconnecting: { attempt: number; delayMs: number; url: string };
  /** A token from getToken() is in use: at a connection attempt, or accepted by the server in band (`inBand`). `exp`: unix seconds, or null. */
  token: { exp: number | null; inBand: boolean };
  recovered: Recovered;
  gap: Gap;
  error: C10mError;
}

export type MessageHandler<T = unknown> = (message: Message<T>) => void;

export interface Subscription {
  readonly topic: string;
  /** Resolves with the topic's position when the server has confirmed the subscription. */
  readonly ready: Promise<PublishAck>;
  /** Stops this handler; the topic is unsubscribed when its last handler goes. */
  unsubscribe(): void;
}

export interface ClientStats {
  /** Deliveries handed to handlers. */
  delivered: number;
  /** Deliveries dropped as duplicates (seq at or below the last seen). */
  duplicates: number;
  /** Gap events emitted. */
  gaps: number;
  /** Connections opened (1 + reconnects). */
  connections: number;
}

// The client's own state (not exported by sdk/index.ts).

export interface TopicState {
  topic: string;
  qos: Qos;
  /** The sub's conflate interval, 0 for none. */
  conflateMs: number;
  stream: TopicStream;
  handlers: Set<MessageHandler<never>>;
  /** Id of the sub command in flight, or null once confirmed (or while disconnected). */
  pendingSubId: number | null;
  /** The position sent with the sub command in flight. */
  resumedFrom: [number, number] | null;
  /** Deliveries that arrived before the sub reply: applied after it, so the reply's position comes first. */
  early: Message[];
  confirmed: boolean;
  readyWaiters: { resolve: (p: PublishAck) => void; reject: (e: C10mError) => void }[];
}

/** The session token and what the client does with it (see open(), onSocketGone(), refresh()). */
export interface TokenState {
  getToken: (() => string | Promise<string>) | null;
  /** The token the next attempt sends (the static one, or the last from getToken()). */
  held: HeldToken | null;
  /** held was fetched for the current attempt. */
  fresh: boolean;
  /** The server refused or closed for the token: fetch one before the next attempt. */
  needFresh: boolean;
  /** 401s in a row answering a fresh token (2 = getToken()'s tokens are not accepted). */
  unauthorizedInARow: number;
  /** Attempts in a row that failed with nothing readable (a browser cannot see a 401). */
  opaqueFailuresInARow: number;
  /** From a 503 RETRY_LATER: sent as `admit` on the next attempt only. */
  admitTicket: string | null;
  /** Bumped per attempt and by close(): a getToken() that answers late is ignored. */
  attemptGen: number;
  refreshTimer: unknown;
  /** Failed refreshes in a row, for their backoff. */
  refreshAttempt: number;
  backoff: Required<BackoffOptions>;
  random: () => number;
}

export interface QueuedPublish {
  topic: string;
  data: unknown;
  ack: boolean;
  retain: boolean;
  idempotencyKey: string | undefined;
  resolve: (a: PublishAck | undefined) => void;
  reject: (e: C10mError) => void;
}

export interface PendingRequest {
  kind: 'pub' | 'sub' | 'unsub' | 'ping' | 'auth' | 'psub';
  topic?: string;
  /** auth: the token sent, taken into use when the server accepts it. */
  held?: HeldToken;
  resolve?: (a: PublishAck | undefined) => void;
  reject?: (e: C10mError) => void;
  timer: unknown;
  /** An acked publish: sent again after a reconnect when it has an idempotency key (sdk/options.ts). */
  publish?: QueuedPublish;
}
