// What a workgroup is told at start (through workerData). The control plane
// builds it from its config; it is plain data so that a workgroup can run
// as a thread now and as a process later.

export interface WorkgroupOptions {
  host: string;
  port: number;
  maxPayloadBytes: number;
  maxBackpressureBytes: number;
  idleTimeoutSeconds: number;
  /** --sse-heartbeat-seconds: a comment line to an SSE stream idle this long (workgroups/sse.ts; absent: 15). */
  sseHeartbeatSeconds?: number;
  maxConnectionsPerIp: number;
  /** New sessions per second per client address, counted here (0: no limit). */
  maxSessionsPerSecondPerIp: number;
  /** This workgroup's share of --admission-rate, new sessions per second (fractional; 0: no limit). */
  admissionRate: number;
  maxSubscriptionsPerSession: number;
  /** Per-session budget: commands and command bytes per second (0: no limit). */
  maxCommandsPerSecond: number;
  maxBytesPerSecond: number;
  /** Topics this workgroup may own at once (its share of --max-topics). */
  maxTopics: number;
  /** Wildcard subscriptions: per session, the node's (not split), and each owner's journal entries. */
  maxPatternsPerSession: number;
  maxPatterns: number;
  patternJournalEntries: number;
  benchmarkMode: boolean;
  allowSlowFallback: boolean;
  logLevel: string;
  /** --log-format as the control plane resolved it (auto: pretty on a terminal). */
  logFormat: 'json' | 'pretty';
  /** With --processes: the node process's index (every log line carries it, and the pid); -1 otherwise. */
  processIndex: number;
  drainTimeoutSeconds: number;
  /** Messages cached per topic (0: no cache). */
  cacheMessages: number;
  cacheSeconds: number;
  cacheTopicBytes: number;
  /** This workgroup's share of the node's cache budget. */
  cacheBytes: number;
  /** Lifetime of a retained snapshot (0: until replaced). */
  snapshotTtlSeconds: number;
  /** Idempotent publish: how long a key is remembered, and at most how many per topic. */
  idempotencyWindowSeconds: number;
  idempotencyKeysPerTopic: number;
  /** Spill bytes (any workgroup's) past which publishes are refused with OVERLOADED. */
  maxRingSpillBytes: number;
  /** --cors-origins: exact web origins allowed cross-origin, or ['*']; empty: none. */
  corsOrigins: string[];
  /** Fault injection (tests, --debug-routes): control messages may crash or stall the workgroup. */
  faultInjection: boolean;
  /** The engine that sequences and keeps topics: 'memory' (this node alone) or 'redis' (nodes sharing one Redis). */
  engine: EngineKind;
  /** Redis settings (engine 'redis'). */
  redis: RedisOptions;
  /** Entitlement: --auth and its keys (key material as text: the control plane read the files). */
  auth: AuthOptions;
}

/** --auth jwt and its keys; with mode 'none' the rest is unused. */
export interface AuthOptions {
  mode: 'none' | 'jwt';
  /** HS256/384/512 secret ('' when none). */
  secret: string;
  /** A PEM public key (RS*, PS*, ES*, EdDSA), '' when none. */
  publicKeyPem: string;
  /** A JWKS URL ('' when none): fetched, cached, refetched for an unknown kid at most once per jwksCooldownSeconds. */
  jwksUrl: string;
  jwksCooldownSeconds: number;
  /** Required iss and aud ('' when not checked). */
  issuer: string;
  audience: string;
  /** Leeway on exp and nbf. */
  clockSkewSeconds: number;
  /** A session opened without a token is closed (4002) when no valid auth command came within this many seconds. */
  timeoutSeconds: number;
  /** Static API keys for HTTP publish (--api-keys-file). */
  apiKeys: ApiKey[];
}

export interface ApiKey {
  name: string;
  key: string;
  /** Topic patterns the key may publish to. */
  publish: string[];
}

export type EngineKind = 'memory' | 'redis';

/** How a node reaches Redis (--redis-url and friends). */
export interface RedisOptions {
  /** Seed URLs: one for a standalone Redis, one or more for Redis Cluster (redis:// or rediss://, user and password in the URL). */
  urls: string[];
  /** Redis Cluster (sharded pub/sub, keys by hash slot) rather than one standalone server. */
  cluster: boolean;
  /** Prefix of every key and channel (several c10m deployments may share one Redis). */
  prefix: string;
}

export interface WorkgroupInit {
  id: number;
  count: number;
  options: WorkgroupOptions;
  /** This workgroup's stats block (protocol/stats.ts layout). */
  stats: SharedArrayBuffer;
  /** Every workgroup's stats block, by id (read only here: the spill gauges). */
  allStats: SharedArrayBuffer[];
  /** How many times this workgroup has been started before (0 at first start). */
  restarts: number;
  /** Rings between workgroups: rings[from * count + to] (null where from === to). They outlive restarts. */
  rings: (SharedArrayBuffer | null)[];
  /** Per-address connection tables by workgroup id (IpTable over shared memory; outliving restarts), or null without --max-connections-per-ip. */
  ipTables: SharedArrayBuffer[] | null;
  /** One doorbell per workgroup, rung by the producers of its inbound rings. */
  doorbells: SharedArrayBuffer[];
}

/** Messages a workgroup posts to the control plane (control only: never per message). */
export type WorkgroupEvent =
  | { type: 'listening'; id: number; port: number; uwsNative: boolean }
  | { type: 'listen-failed'; id: number; error: string }
  /** Accepting stopped (out of descriptors) or started again; the supervisor re-attaches the IP hash when all accept. */
  | { type: 'accepting'; id: number; accepting: boolean }
  | { type: 'drained'; id: number; closedSessions: number }
  | { type: 'fatal'; id: number; error: string };

/** Messages the control plane posts to a workgroup. */
export type ControlCommand = { type: 'drain'; timeoutMs: number } | { type: 'crash'; how: 'exit' | 'throw' } | { type: 'stall'; ms: number } | { type: 'fail-commands'; count: number };
