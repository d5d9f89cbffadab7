// Configuration of `c10m serve`: one table of options, each with its flag,
// environment variable and config-file key of the same stem. Precedence:
// flag > environment > config file > default. Every value is validated here;
// a bad one is a ConfigError (exit code 2), never a stack trace.
import { availableParallelism } from 'node:os';
import { readFileSync } from 'node:fs';
import { DEFAULT_MAX_SESSIONS, MAX_PROCESSES } from '../sysctl/costs';
import { RedisUrlError, parseRedisUrl, redisConnectionOptions, splitRedisUrls } from '../shm/redis-url';
import type { EngineKind } from '../shm/workgroup-init';

export interface Config {
  host: string;
  port: number;
  adminHost: string;
  adminPort: number;
  adminToken: string;
  adminPublic: boolean;
  /** The /debug/* fault-injection routes on the admin port (tests); loopback admin hosts only. */
  debugRoutes: boolean;
  workgroups: number;
  /** Node processes under one supervisor (--processes), or 'auto': from --max-sessions and the descriptor limit (server/processes.ts). */
  processes: number | 'auto';
  maxPayloadBytes: number;
  maxBackpressureBytes: number;
  idleTimeoutSeconds: number;
  sseHeartbeatSeconds: number;
  drainTimeoutSeconds: number;
  /** Each workgroup's V8 young generation, MB (Worker resourceLimits); 0: V8's default (grows to 48). */
  youngGenerationMb: number;
  maxConnectionsPerIp: number;
  maxSessionsPerSecondPerIp: number;
  /** New sessions per second for the node (0: no limit), split evenly among workgroups. */
  admissionRate: number;
  maxSubscriptionsPerSession: number;
  maxCommandsPerSecond: number;
  maxBytesPerSecond: number;
  maxTopics: number;
  /** Wildcard subscriptions: patterns per session, per node, and each owner's journal of positions for their resume. */
  maxPatternsPerSession: number;
  maxPatterns: number;
  patternJournalEntries: number;
  maxSessions: number;
  benchmarkMode: boolean;
  allowSlowFallback: boolean;
  logLevel: string;
  /** 'auto': pretty when stdout is a terminal, JSON lines otherwise. */
  logFormat: LogFormat;
  cacheMessages: number;
  cacheSeconds: number;
  cacheTopicBytes: number;
  cacheBytes: number;
  snapshotTtlSeconds: number;
  idempotencyWindowSeconds: number;
  idempotencyKeysPerTopic: number;
  ringBytes: number;
  maxRingSpillBytes: number;
  /** Exact origins, or ['*']; empty: none (parsed from the comma-separated flag). */
  corsOrigins: string[];
  maxRestartDelayMs: number;
  engine: EngineKind;
  /** --redis-url: one URL (standalone), or the seeds of one Redis Cluster; each checked by shm/redis-url.ts. */
  redisUrl: string[];
  /** Given, or on when redisUrl lists several URLs. */
  redisCluster: boolean;
  redisPrefix: string;
  /** How long `serve` waits at start for Redis to answer (0: one attempt). */
  redisWaitSeconds: number;
  auth: AuthMode;
  jwtSecret: string;
  jwtSecretFile: string;
  jwtPublicKeyFile: string;
  jwksUrl: string;
  jwksCooldownSeconds: number;
  jwtIssuer: string;
  jwtAudience: string;
  jwtClockSkewSeconds: number;
  authTimeoutSeconds: number;
  apiKeysFile: string;
}

export const AUTH_MODES = ['none', 'jwt'] as const;
export type AuthMode = (typeof AUTH_MODES)[number];

type Kind = 'int' | 'string' | 'bool' | 'level' | 'host' | 'origins' | 'choice' | 'redis-urls' | 'int-or-auto';

export interface OptionSpec {
  key: keyof Config;
  /** Flag without dashes, e.g. 'max-payload-bytes'. */
  flag: string;
  kind: Kind;
  help: string;
  default: () => Config[keyof Config];
  min?: number;
  max?: number;
  /** Extra check; returns an error sentence or null. */
  check?: (v: number) => string | null;
  /** kind 'choice': the values allowed. */
  choices?: readonly string[];
  /** kind 'string': the form the value must have, and how to say it. */
  pattern?: { re: RegExp; says: string };
  /** The default as --help shows it, when the value would not read well (a list) or depends on other options. */
  defaultHelp?: string;
}

/** --max-sessions by default, and the session count `c10m doctor` and `c10m sysctl` assume without --sessions. */
export { DEFAULT_MAX_SESSIONS };

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];
export const LOG_FORMATS = ['auto', 'json', 'pretty'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];
export const ENGINES: readonly EngineKind[] = ['memory', 'redis'];
export { MAX_PROCESSES };

export const OPTIONS: OptionSpec[] = [
  { key: 'host', flag: 'host', kind: 'host', help: 'address the public WebSocket/HTTP port binds to', default: () => '0.0.0.0' },
  { key: 'port', flag: 'port', kind: 'int', min: 0, max: 65535, help: 'public port (WebSocket /v1/ws, HTTP POST /v1/publish); 0 picks a free port', default: () => 8080 },
  { key: 'adminHost', flag: 'admin-host', kind: 'host', help: 'address the admin port binds to (metrics, health); keep it private', default: () => '127.0.0.1' },
  { key: 'adminPort', flag: 'admin-port', kind: 'int', min: 0, max: 65535, help: 'admin port (/metrics, /jmx, /dashboard, /healthz, /readyz); 0 picks a free port', default: () => 9090 },
  {
    key: 'adminToken',
    flag: 'admin-token',
    kind: 'string',
    help: 'bearer token required on the admin port (empty: none; required when --admin-host is not a loopback address, unless --admin-public)',
    default: () => '',
  },
  {
    key: 'adminPublic',
    flag: 'admin-public',
    kind: 'bool',
    help: 'serve the admin port on a non-loopback --admin-host without --admin-token, every figure open to whoever reaches it (e.g. a private network or a NetworkPolicy guards it)',
    default: () => false,
  },
  {
    key: 'debugRoutes',
    flag: 'debug-routes',
    kind: 'bool',
    help: 'serve POST /debug/crash, /debug/stall and /debug/fail-commands on the admin port, which kill, block or break a workgroup (tests only; refused unless --admin-host is a loopback address; C10M_FAULT_INJECTION=1 is an alias)',
    default: () => false,
  },
  { key: 'workgroups', flag: 'workgroups', kind: 'int', min: 1, max: 32, help: 'worker threads serving the public port (default: one per core)', default: () => Math.min(32, availableParallelism()) },
  {
    key: 'processes',
    flag: 'processes',
    kind: 'int-or-auto',
    min: 1,
    max: MAX_PROCESSES,
    help: 'node processes on the public port, each with its workgroups, under one supervisor and one admin port; auto: as many as --max-sessions needs at the descriptor limit a process can get; more than 1 needs --engine redis (topics meet across processes through Redis)',
    default: () => 1,
  },
  { key: 'maxPayloadBytes', flag: 'max-payload-bytes', kind: 'int', min: 1, max: 16 * 1024 * 1024, help: 'largest publish data, in bytes once encoded', default: () => 64 * 1024 },
  {
    key: 'maxBackpressureBytes',
    flag: 'max-backpressure-bytes',
    kind: 'int',
    min: 1024,
    max: 1024 * 1024 * 1024,
    help: 'unsent bytes a session may hold before it is closed as a slow consumer (4000)',
    default: () => 256 * 1024,
  },
  {
    key: 'idleTimeoutSeconds',
    flag: 'idle-timeout-seconds',
    kind: 'int',
    min: 0,
    max: 960,
    help: 'close a session silent this long (pings are automatic); 0 disables; otherwise 8..960',
    default: () => 120,
    check: (v) => (v !== 0 && v < 8 ? 'must be 0 or at least 8' : null),
  },
  {
    key: 'sseHeartbeatSeconds',
    flag: 'sse-heartbeat-seconds',
    kind: 'int',
    min: 1,
    max: 3600,
    help: 'write a comment line to an SSE stream (GET /v1/sse) idle this long, so that proxies keep it open',
    default: () => 15,
  },
  {
    key: 'youngGenerationMb',
    flag: 'young-generation-mb',
    kind: 'int',
    min: 0,
    max: 1024,
    help: "each workgroup's V8 young generation in MB (3: semi-spaces of 1 MB, what V8 starts with); V8 grows it to 48 under a connect burst and keeps it; 0: V8's default",
    default: () => 3,
  },
  { key: 'drainTimeoutSeconds', flag: 'drain-timeout-seconds', kind: 'int', min: 0, max: 3600, help: 'on SIGTERM, how long to wait for sessions to close before exiting', default: () => 10 },
  { key: 'maxConnectionsPerIp', flag: 'max-connections-per-ip', kind: 'int', min: 0, max: 10_000_000, help: 'sessions one client address may hold (0: no limit)', default: () => 0 },
  {
    key: 'maxSessionsPerSecondPerIp',
    flag: 'max-sessions-per-second-per-ip',
    kind: 'int',
    min: 0,
    max: 10_000_000,
    help: 'new sessions one client address may open per second, counted in the workgroup its address hashes to (with --benchmark-mode, per workgroup); past it upgrades get 429 RATE_LIMITED; 0: no limit',
    default: () => 0,
  },
  {
    key: 'admissionRate',
    flag: 'admission-rate',
    kind: 'int',
    min: 0,
    max: 10_000_000,
    help: 'new sessions per second the node admits (split evenly among workgroups); beyond it upgrades get 503 RETRY_LATER with a time to come back and a ticket that is honored then, so that a crowd reconnecting at once is spread out; 0: no limit',
    default: () => 0,
  },
  { key: 'maxSubscriptionsPerSession', flag: 'max-subscriptions-per-session', kind: 'int', min: 1, max: 1_000_000, help: 'topics one session may subscribe to', default: () => 1024 },
  {
    key: 'maxCommandsPerSecond',
    flag: 'max-commands-per-second',
    kind: 'int',
    min: 0,
    max: 10_000_000,
    help: 'commands (pub, sub, unsub, ping) one session may send per second; past it they are refused with RATE_LIMITED, and a session that keeps going over is closed (4001); 0: no limit',
    default: () => 10_000,
  },
  {
    key: 'maxBytesPerSecond',
    flag: 'max-bytes-per-second',
    kind: 'int',
    min: 0,
    max: 4 * 1024 * 1024 * 1024,
    help: 'bytes of commands one session may send per second (as --max-commands-per-second); 0: no limit',
    default: () => 16 * 1024 * 1024,
  },
  {
    key: 'maxTopics',
    flag: 'max-topics',
    kind: 'int',
    min: 1,
    max: 1_000_000_000,
    help: 'topics the node holds at once (split among workgroups); a publish or subscription that would create one more is refused with TOO_MANY_TOPICS',
    default: () => 2_000_000,
  },
  {
    key: 'maxPatternsPerSession',
    flag: 'max-patterns-per-session',
    kind: 'int',
    min: 0,
    max: 100_000,
    help: 'wildcard patterns (/prices/*, /chat/>) one session may subscribe to; past it a sub is refused with TOO_MANY_PATTERNS; 0: no wildcard subscriptions',
    default: () => 16,
  },
  {
    key: 'maxPatterns',
    flag: 'max-patterns',
    kind: 'int',
    min: 0,
    max: 100_000_000,
    help: 'wildcard patterns all sessions of the node may hold at once (one per session and pattern, split among workgroups); past it a sub is refused with TOO_MANY_PATTERNS',
    default: () => 200_000,
  },
  {
    key: 'patternJournalEntries',
    flag: 'pattern-journal-entries',
    kind: 'int',
    min: 1024,
    max: 100_000_000,
    help: 'messages per workgroup that a resuming wildcard subscription can look back over for topics it never saw (16 bytes each, taken at the first pattern); a client away for longer is told horizon_lost',
    default: () => 262_144,
  },
  {
    key: 'maxSessions',
    flag: 'max-sessions',
    kind: 'int',
    min: 1,
    max: 100_000_000,
    help: 'sessions this node is sized for (checked against the descriptor limit at start; `c10m doctor` checks the same default)',
    default: () => DEFAULT_MAX_SESSIONS,
  },
  {
    key: 'benchmarkMode',
    flag: 'benchmark-mode',
    kind: 'bool',
    help: "spread connections by the kernel's 4-tuple hash instead of by client address (load generators on few addresses)",
    default: () => false,
  },
  {
    key: 'allowSlowFallback',
    flag: 'allow-slow-fallback',
    kind: 'bool',
    help: "start even if uWebSockets.js's native binary does not load (its pure-JS fallback is many times slower)",
    default: () => false,
  },
  { key: 'cacheMessages', flag: 'cache-messages', kind: 'int', min: 0, max: 1_000_000, help: 'messages kept per topic for resume (guaranteed delivery); 0 turns the cache off', default: () => 1000 },
  { key: 'cacheSeconds', flag: 'cache-seconds', kind: 'int', min: 1, max: 7 * 86400, help: 'oldest message kept in a topic cache, in seconds', default: () => 180 },
  {
    key: 'cacheTopicBytes',
    flag: 'cache-topic-bytes',
    kind: 'int',
    min: 1024,
    max: 1024 * 1024 * 1024,
    help: 'most bytes cached per topic (payload plus 24 bytes a message)',
    default: () => 1024 * 1024,
  },
  {
    key: 'cacheBytes',
    flag: 'cache-bytes',
    kind: 'int',
    min: 1024 * 1024,
    max: 512 * 1024 * 1024 * 1024,
    help: 'most bytes cached over all topics of the node (split evenly among workgroups; the oldest messages go first)',
    default: () => 256 * 1024 * 1024,
  },
  {
    key: 'snapshotTtlSeconds',
    flag: 'snapshot-ttl-seconds',
    kind: 'int',
    min: 0,
    max: 365 * 86400,
    help: 'how long a retained message stays the topic snapshot; 0 keeps it until replaced',
    default: () => 0,
  },
  {
    key: 'idempotencyWindowSeconds',
    flag: 'idempotency-window-seconds',
    kind: 'int',
    min: 1,
    max: 86400,
    help: 'how long a publish idempotencyKey is remembered: a publish repeating it to the same topic within this time is answered with the first one and not published again',
    default: () => 300,
  },
  {
    key: 'idempotencyKeysPerTopic',
    flag: 'idempotency-keys-per-topic',
    kind: 'int',
    min: 1,
    max: 1_000_000,
    help: "most idempotency keys remembered per topic; past it a new key makes the topic's oldest one be forgotten early (c10m_idempotency_keys_evicted_total)",
    default: () => 10_000,
  },
  {
    key: 'maxRingSpillBytes',
    flag: 'max-ring-spill-bytes',
    kind: 'int',
    min: 65536,
    max: 16 * 1024 * 1024 * 1024,
    help: "bytes of records a workgroup may queue for full rings (subscribers' workgroups falling behind); past it, in any workgroup, publishes are refused with OVERLOADED (HTTP 503) until the rings drain",
    default: () => 64 * 1024 * 1024,
  },
  {
    key: 'ringBytes',
    flag: 'ring-bytes',
    kind: 'int',
    min: 4096,
    max: 1024 * 1024 * 1024,
    help: 'bytes of each ring between two workgroups (rounded up to a power of two; at least max-payload-bytes + 2048)',
    default: () => 4 * 1024 * 1024,
  },
  {
    key: 'corsOrigins',
    flag: 'cors-origins',
    kind: 'origins',
    help: 'web origins allowed to POST /v1/publish from a browser and to open sessions: comma-separated exact origins (https://app.example.com) or *; none by default (cross-origin publishes refused 403, upgrades from any origin allowed)',
    default: () => [],
  },
  {
    key: 'maxRestartDelayMs',
    flag: 'max-restart-delay-ms',
    kind: 'int',
    min: 100,
    max: 600_000,
    help: 'longest wait before restarting a workgroup that died (the wait doubles from 50 ms per death in a row; a workgroup is never given up on)',
    default: () => 30_000,
  },
  {
    key: 'engine',
    flag: 'engine',
    kind: 'choice',
    choices: ENGINES,
    help: 'where topics are sequenced and their history kept: memory (this node alone, nothing to install) or redis (several nodes sharing a Redis 7, see --redis-url)',
    default: () => 'memory',
  },
  {
    key: 'redisUrl',
    flag: 'redis-url',
    kind: 'redis-urls',
    help: 'with --engine redis, the Redis to use: redis://[user:password@]host[:port][/db], rediss:// for TLS; for Redis Cluster, one or more comma-separated seed URLs (no /db)',
    default: () => ['redis://127.0.0.1:6379'],
    defaultHelp: 'redis://127.0.0.1:6379',
  },
  {
    key: 'redisCluster',
    flag: 'redis-cluster',
    kind: 'bool',
    help: 'with --engine redis, --redis-url is a Redis Cluster (sharded pub/sub, keys spread by hash slot) rather than one standalone Redis',
    default: () => false,
    defaultHelp: 'on when --redis-url lists several URLs, else off',
  },
  {
    key: 'redisPrefix',
    flag: 'redis-prefix',
    kind: 'string',
    pattern: { re: /^[A-Za-z0-9_:.-]{1,64}$/, says: '1 to 64 letters, digits, -, _, : or .' },
    help: 'with --engine redis, the prefix of every Redis key and channel, so that several deployments can share one Redis (letters, digits, - _ : .)',
    default: () => 'c10m',
  },
  {
    key: 'redisWaitSeconds',
    flag: 'redis-wait-seconds',
    kind: 'int',
    min: 0,
    max: 3600,
    help: 'with --engine redis, how long serve waits at start for Redis to answer, retrying, before it exits with code 1; 0: one attempt',
    default: () => 30,
  },
  {
    key: 'auth',
    flag: 'auth',
    kind: 'choice',
    choices: AUTH_MODES,
    help: 'who may do what: none (anyone who reaches the public port may subscribe and publish to any topic) or jwt (a token with subscribe and publish claims; see --jwt-secret, --jwt-public-key-file, --jwks-url)',
    default: () => 'none',
  },
  {
    key: 'jwtSecret',
    flag: 'jwt-secret',
    kind: 'string',
    help: 'with --auth jwt, the HS256/384/512 secret (at least 32 bytes; prefer --jwt-secret-file or C10M_JWT_SECRET: a flag shows in ps)',
    default: () => '',
  },
  { key: 'jwtSecretFile', flag: 'jwt-secret-file', kind: 'string', help: 'with --auth jwt, a file holding the HS256/384/512 secret (trailing newline ignored)', default: () => '' },
  { key: 'jwtPublicKeyFile', flag: 'jwt-public-key-file', kind: 'string', help: 'with --auth jwt, a PEM public key (RSA, EC P-256/384/521, Ed25519) for RS*/PS*/ES*/EdDSA tokens', default: () => '' },
  {
    key: 'jwksUrl',
    flag: 'jwks-url',
    kind: 'string',
    help: 'with --auth jwt, a JWKS URL (https://, or http:// on loopback): fetched at the first token, cached 10 min, refetched for an unknown kid (key rotation)',
    default: () => '',
  },
  {
    key: 'jwksCooldownSeconds',
    flag: 'jwks-cooldown-seconds',
    kind: 'int',
    min: 0,
    max: 3600,
    help: 'with --jwks-url, the least time between two fetches of the key set (a flood of unknown kids costs one fetch per this)',
    default: () => 30,
  },
  { key: 'jwtIssuer', flag: 'jwt-issuer', kind: 'string', help: 'with --auth jwt, the iss a token must carry (empty: not checked)', default: () => '' },
  { key: 'jwtAudience', flag: 'jwt-audience', kind: 'string', help: 'with --auth jwt, the aud a token must carry (empty: not checked)', default: () => '' },
  { key: 'jwtClockSkewSeconds', flag: 'jwt-clock-skew-seconds', kind: 'int', min: 0, max: 600, help: 'with --auth jwt, leeway on exp and nbf for clocks that disagree', default: () => 30 },
  {
    key: 'authTimeoutSeconds',
    flag: 'auth-timeout-seconds',
    kind: 'int',
    min: 1,
    max: 600,
    help: 'with --auth jwt, a session opened without a token is closed (4002) when no valid auth command comes within this time',
    default: () => 10,
  },
  {
    key: 'apiKeysFile',
    flag: 'api-keys-file',
    kind: 'string',
    help: 'with --auth jwt, static API keys for HTTP POST /v1/publish: a JSON file {"keys":[{"name":..,"key":..,"publish":["/orders/>"]}]} (keys of at least 32 characters)',
    default: () => '',
  },
  { key: 'logLevel', flag: 'log-level', kind: 'level', help: `log level: ${LOG_LEVELS.join(', ')}`, default: () => 'info' },
  {
    key: 'logFormat',
    flag: 'log-format',
    kind: 'choice',
    choices: LOG_FORMATS,
    help: 'log format: json (one JSON object a line, for collectors), pretty (for people), or auto: pretty when stdout is a terminal, json otherwise',
    default: () => 'auto',
  },
];

export class ConfigError extends Error {}

export function envName(flag: string): string {
  return 'C10M_' + flag.toUpperCase().replace(/-/g, '_');
}

function parseValue(spec: OptionSpec, raw: unknown, source: string): Config[keyof Config] {
  const where = `${source} ${spec.kind === 'bool' ? '' : ''}`.trim();
  switch (spec.kind) {
    case 'bool': {
      if (typeof raw === 'boolean') return raw;
      if (typeof raw === 'string' && /^(1|true|yes|on)$/i.test(raw)) return true;
      if (typeof raw === 'string' && /^(0|false|no|off|)$/i.test(raw)) return false;
      throw new ConfigError(`${where}: expected true or false, got ${JSON.stringify(raw)}`);
    }
    case 'int': {
      const n = typeof raw === 'number' ? raw : typeof raw === 'string' && /^\s*-?\d+\s*$/.test(raw) ? Number(raw) : NaN;
      if (!Number.isSafeInteger(n)) throw new ConfigError(`${where}: expected a whole number, got ${JSON.stringify(raw)}`);
      if (spec.min !== undefined && n < spec.min) throw new ConfigError(`${where}: ${n} is below the minimum ${spec.min}`);
      if (spec.max !== undefined && n > spec.max) throw new ConfigError(`${where}: ${n} is above the maximum ${spec.max}`);
      const extra = spec.check?.(n);
      if (extra) throw new ConfigError(`${where}: ${n} ${extra}`);
      return n;
    }
    case 'int-or-auto':
      if (typeof raw === 'string' && raw.trim().toLowerCase() === 'auto') return 'auto';
      try {
        return parseValue({ ...spec, kind: 'int' }, raw, source);
      } catch (err) {
        if (err instanceof ConfigError) throw new ConfigError(err.message.replace('expected a whole number', 'expected a whole number or auto'));
        throw err;
      }
    case 'level':
      if (typeof raw === 'string' && LOG_LEVELS.includes(raw)) return raw;
      throw new ConfigError(`${where}: expected one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(raw)}`);
    case 'choice':
      if (typeof raw === 'string' && spec.choices?.includes(raw)) return raw;
      throw new ConfigError(`${where}: expected one of ${spec.choices?.join(', ')}, got ${JSON.stringify(raw)}`);
    case 'host':
      if (typeof raw === 'string' && raw.length > 0 && raw.length <= 255 && /^[A-Za-z0-9.:\-_[\]%]+$/.test(raw)) return raw;
      throw new ConfigError(`${where}: expected a host name or address, got ${JSON.stringify(raw)}`);
    case 'origins': {
      const list =
        typeof raw === 'string'
          ? parseCorsOrigins(raw)
          : Array.isArray(raw) && raw.every((o) => typeof o === 'string')
            ? parseCorsOrigins(raw.join(','))
            : 'expected a comma-separated list of origins';
      if (typeof list === 'string') throw new ConfigError(`${where}: ${list}`);
      return list;
    }
    case 'redis-urls': {
      // A config file may give a list; a flag or environment variable, a comma-separated string.
      const list = typeof raw === 'string' ? splitRedisUrls(raw) : Array.isArray(raw) && raw.every((u) => typeof u === 'string') ? raw.flatMap(splitRedisUrls) : null;
      if (list === null) throw new ConfigError(`${where}: expected a redis URL or a comma-separated list of them`);
      if (list.length === 0) throw new ConfigError(`${where}: no redis URL given: expected e.g. redis://127.0.0.1:6379`);
      for (const url of list) {
        try {
          parseRedisUrl(url);
        } catch (err) {
          if (err instanceof RedisUrlError) throw new ConfigError(`${where}: ${err.message}`);
          throw err;
        }
      }
      return list;
    }
    case 'string':
      if (typeof raw !== 'string') throw new ConfigError(`${where}: expected a string, got ${JSON.stringify(raw)}`);
      if (spec.pattern && !spec.pattern.re.test(raw)) throw new ConfigError(`${where}: expected ${spec.pattern.says}, got ${JSON.stringify(raw)}`);
      return raw;
  }
}

/** Reads a JSON config file whose keys are the camelCase option keys (or the flag names). */
export function readConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`config file ${path}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'not found' : (err as Error).message}`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`config file ${path}: not valid JSON (${(err as Error).message})`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new ConfigError(`config file ${path}: must be a JSON object of option: value`);
  const known = new Map<string, OptionSpec>();
  for (const s of OPTIONS) {
    known.set(s.key, s);
    known.set(s.flag, s);
  }
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    const spec = known.get(k);
    if (!spec) throw new ConfigError(`config file ${path}: unknown option "${k}" (known: ${OPTIONS.map((s) => s.key).join(', ')})`);
    out[spec.key] = v;
  }
  return out;
}

/**
 * Merges the sources. `flags` holds only options given on the command line
 * (keyed by Config key, values as strings or booleans from commander).
 */
export function resolveConfig(flags: Partial<Record<keyof Config, unknown>>, env: NodeJS.ProcessEnv, configFile: string | undefined): Config {
  const file = configFile ? readConfigFile(configFile) : {};
  const out: Record<string, unknown> = {};
  /** Where each option given came from, as error messages name it (absent: the default). */
  const source = new Map<keyof Config, string>();
  for (const spec of OPTIONS) {
    const e = envName(spec.flag);
    let given: [raw: unknown, where: string] | null = null;
    if (flags[spec.key] !== undefined) given = [flags[spec.key], `--${spec.flag}`];
    else if (env[e] !== undefined) given = [env[e], e];
    else if (file[spec.key] !== undefined) given = [file[spec.key], `config file ${configFile}: ${spec.key}`];
    if (given === null) {
      out[spec.key] = spec.default();
      continue;
    }
    source.set(spec.key, given[1]);
    out[spec.key] = parseValue(spec, given[0], given[1]);
  }
  const config = out as unknown as Config;
  // The older name of --debug-routes, which tests and scripts set.
  if (!source.has('debugRoutes') && env.C10M_FAULT_INJECTION === '1') {
    config.debugRoutes = true;
    source.set('debugRoutes', 'C10M_FAULT_INJECTION=1');
  }
  if (!source.has('redisCluster')) config.redisCluster = config.redisUrl.length > 1;
  // Checked with any engine (a mistake is caught before it matters), used only with redis.
  try {
    redisConnectionOptions(config.redisUrl, config.redisCluster);
  } catch (err) {
    if (!(err instanceof RedisUrlError)) throw err;
    const cluster = source.get('redisCluster');
    const why = cluster ? ` (${cluster} is ${config.redisCluster})` : config.redisCluster ? ' (several URLs mean Redis Cluster)' : '';
    throw new ConfigError(`${source.get('redisUrl') ?? '--redis-url'}: ${err.message}${why}`);
  }
  if (typeof config.processes === 'number') assertProcessesEngine(config, config.processes, source.get('processes') ?? '--processes');
  if (config.ringBytes < config.maxPayloadBytes + 2048) {
    throw new ConfigError(`--ring-bytes ${config.ringBytes} is too small for --max-payload-bytes ${config.maxPayloadBytes}: it must be at least ${config.maxPayloadBytes + 2048}`);
  }
  if (config.port !== 0 && config.port === config.adminPort && config.host === config.adminHost) {
    throw new ConfigError(`the public port and the admin port are both ${config.port}`);
  }
  if (config.adminToken === '' && !config.adminPublic && !isLoopbackHost(config.adminHost)) {
    throw new ConfigError(
      `--admin-host ${config.adminHost} is not a loopback address and there is no --admin-token: anyone who reaches it would read every figure; set --admin-token (C10M_ADMIN_TOKEN), or --admin-public (C10M_ADMIN_PUBLIC=1) if that is intended`,
    );
  }
  if (config.debugRoutes && !isLoopbackHost(config.adminHost)) {
    throw new ConfigError(
      `${source.get('debugRoutes')} turns on the /debug/* routes, which kill and stall workgroups, and --admin-host ${config.adminHost} is not a loopback address: bind the admin port to 127.0.0.1 or turn the debug routes off`,
    );
  }
  return config;
}

/** More than one process needs the Redis engine: each process's memory engine would sequence its own copy of every topic. */
export function assertProcessesEngine(config: Config, processes: number, where: string): void {
  if (processes > 1 && config.engine !== 'redis') {
    throw new ConfigError(
      `${where} ${processes} needs --engine redis: topics meet across node processes through Redis, and the memory engine serves one process; start a Redis 7 and add --engine redis --redis-url redis://HOST:PORT (C10M_ENGINE, C10M_REDIS_URL)`,
    );
  }
}

/** Parses the --cors-origins value: comma-separated exact origins, or '*'. Returns the list, or an error sentence. */
export function parseCorsOrigins(raw: string): string[] | string {
  const list = raw
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  for (const o of list) {
    if (o === '*') continue;
    if (!/^https?:\/\/[A-Za-z0-9.\-[\]:]+$/.test(o)) return `"${o}" is not an origin (scheme://host[:port], no path or trailing slash) or *`;
  }
  if (list.includes('*') && list.length > 1) return '* cannot be combined with other origins';
  return list;
}

/** 127.0.0.0/8, ::1 (also as ::ffff:127.x.y.z or in brackets) and localhost: reachable from this host only. */
export function isLoopbackHost(host: string): boolean {
  const h = host
    .toLowerCase()
    .replace(/^\[(.*)\]$/, '$1')
    .replace(/%.*$/, '');
  if (h === 'localhost') return true;
  if (/^0*:(0*:)*0*1$/.test(h) || h === '::1') return true;
  const v4 = h.startsWith('::ffff:') ? h.slice(7) : h;
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(v4);
}
