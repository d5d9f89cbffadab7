// The check `serve --engine redis` makes on the main thread before any
// workgroup starts: Redis answers, takes our credentials, is 7.0 or newer
// (sharded pub/sub, functions), and is the kind --redis-cluster says. A
// Redis not up yet is waited for, up to --redis-wait-seconds, with a
// warning each attempt; anything retrying cannot fix fails at once.
import type IORedis from 'ioredis';
import { maskRedisUrl, redisConnectionOptions, type RedisEndpoint } from '../shm/redis-url';
import type { Logger } from './log';

/** The oldest Redis the engine runs on: SSUBSCRIBE/SPUBLISH and functions came in 7.0. */
export const MIN_REDIS_MAJOR = 7;

/** Each attempt's connect and command timeout, at most. */
const ATTEMPT_TIMEOUT_MS = 2000;
/** Pause after the first failed attempt; doubled per attempt up to MAX_PAUSE_MS. */
const FIRST_PAUSE_MS = 100;
const MAX_PAUSE_MS = 2000;

/** Why the start stops, with the exit code the CLI ends with (1: Redis not there in time; 2: a setting to fix). */
export class RedisStartError extends Error {
  constructor(
    message: string,
    readonly exitCode: 1 | 2,
  ) {
    super(message);
  }
}

export interface RedisCheckOptions {
  urls: readonly string[];
  cluster: boolean;
  waitSeconds: number;
  /** Aborted (e.g. SIGTERM during the wait): the check stops, rejecting with signal.reason. */
  signal?: AbortSignal;
}

export interface RedisCheckResult {
  /** The URL that answered, masked. */
  url: string;
  redisVersion: string;
  attempts: number;
}

/** One attempt's outcome when it did not pass: fatal (a setting to fix) or one to retry. */
class AttemptFailed extends Error {
  constructor(
    message: string,
    readonly fatal: boolean,
  ) {
    super(message);
  }
}

/** Resolves once a seed passes; rejects with a RedisStartError (or signal.reason). */
export async function checkRedis(o: RedisCheckOptions, log: Logger): Promise<RedisCheckResult> {
  const endpoints = redisConnectionOptions(o.urls, o.cluster);
  const shownAll = o.urls.map(maskRedisUrl).join(', ');
  const deadline = Date.now() + o.waitSeconds * 1000;
  let pauseMs = FIRST_PAUSE_MS;
  for (let attempt = 1; ; attempt++) {
    o.signal?.throwIfAborted();
    const reasons: string[] = [];
    // Seeds in order: the first that answers is checked (in a cluster, any node speaks for it).
    for (let i = 0; i < endpoints.length; i++) {
      const url = maskRedisUrl(o.urls[i]);
      const timeoutMs = Math.max(500, Math.min(ATTEMPT_TIMEOUT_MS, deadline - Date.now()));
      try {
        const redisVersion = await checkOne(endpoints[i], o.urls[i], o.cluster, timeoutMs, log);
        return { url, redisVersion, attempts: attempt };
      } catch (err) {
        if (!(err instanceof AttemptFailed)) throw err;
        if (err.fatal) throw new RedisStartError(`redis at ${url} ${err.message}`, 2);
        reasons.push(endpoints.length > 1 ? `${url}: ${err.message}` : err.message);
      }
    }
    const reason = reasons.join('; ');
    const leftMs = deadline - Date.now();
    if (leftMs <= 0) {
      const waited = o.waitSeconds === 0 ? 'and --redis-wait-seconds is 0' : `after waiting ${o.waitSeconds} s (${attempt} attempt${attempt === 1 ? '' : 's'}; --redis-wait-seconds)`;
      throw new RedisStartError(`redis at ${shownAll} is not reachable ${waited}: ${reason}`, 1);
    }
    log.warn({ url: shownAll, attempt, reason }, `waiting for redis at ${shownAll} (attempt ${attempt}): ${reason}`);
    await sleep(Math.min(pauseMs, leftMs), o.signal);
    pauseMs = Math.min(MAX_PAUSE_MS, pauseMs * 2);
  }
}

/** One seed, one attempt: returns its redis_version, or throws AttemptFailed. */
async function checkOne(e: RedisEndpoint, rawUrl: string, cluster: boolean, timeoutMs: number, log: Logger): Promise<string> {
  // Credentials and database are sent here, not by ioredis, so that each refusal is told apart
  // (ioredis would retry, or print to the console, on some of them).
  // Loaded here: the memory engine never pays for ioredis on the main thread.
  const Redis = require('ioredis') as typeof IORedis;
  const client = new Redis({
    host: e.host,
    port: e.port,
    tls: e.tls,
    lazyConnect: true,
    enableOfflineQueue: false,
    enableReadyCheck: false,
    disableClientInfo: true,
    connectTimeout: timeoutMs,
    commandTimeout: timeoutMs,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    reconnectOnError: () => false,
  });
  let lastError: Error | null = null;
  // Without a listener, ioredis prints every error event with its stack.
  client.on('error', (err: Error) => (lastError = err));
  const secret = e.password;
  const describe = (err: unknown) => scrub(describeError(err as Error), secret);
  try {
    try {
      await client.connect();
    } catch (err) {
      throw failed(lastError ?? err, describe);
    }
    if (e.username !== undefined || e.password !== undefined) {
      try {
        await client.call('AUTH', ...(e.username !== undefined ? [e.username] : []), e.password ?? '');
      } catch (err) {
        const text = describe(err);
        if (/without any password configured|no password is set/i.test(text)) {
          log.warn({ url: maskRedisUrl(rawUrl) }, `redis at ${maskRedisUrl(rawUrl)} needs no password, but the URL gives one: it is ignored`);
        } else throw failed(err, describe);
      }
    }
    let info: Map<string, string>;
    try {
      await client.ping();
      info = parseInfo(String(await client.info('server')));
    } catch (err) {
      throw failed(err, describe);
    }
    const version = info.get('redis_version') ?? '';
    const major = Number(/^(\d+)\./.exec(version)?.[1] ?? NaN);
    if (!(major >= MIN_REDIS_MAJOR)) throw new AttemptFailed(`runs Redis ${version || '(unknown version)'}: c10m needs Redis ${MIN_REDIS_MAJOR}.0 or newer (sharded pub/sub, functions)`, true);
    const mode = info.get('redis_mode') ?? 'standalone';
    if (mode === 'sentinel') throw new AttemptFailed('is a Redis Sentinel, not a Redis server: point --redis-url at Redis itself', true);
    if (cluster && mode !== 'cluster') throw new AttemptFailed('is a standalone Redis, not a Redis Cluster node: drop --redis-cluster, or point --redis-url at the cluster', true);
    if (!cluster && mode === 'cluster') throw new AttemptFailed('is a Redis Cluster node: add --redis-cluster (or give several seed URLs)', true);
    if (cluster) {
      let state: string | undefined;
      try {
        state = parseInfo(String(await client.call('CLUSTER', 'INFO'))).get('cluster_state');
      } catch (err) {
        throw failed(err, describe);
      }
      // A cluster still forming, or that lost a master, may become ok: wait for it.
      if (state !== 'ok') throw new AttemptFailed(`says cluster_state:${state ?? '(none)'}`, false);
    }
    if (!cluster && e.db !== undefined && e.db !== 0) {
      try {
        await client.select(e.db);
      } catch (err) {
        const text = describe(err);
        throw new AttemptFailed(/out of range/i.test(text) ? `has no database ${e.db} (${text})` : `refused SELECT ${e.db}: ${text}`, true);
      }
    }
    return version;
  } finally {
    client.disconnect();
  }
}

/** Turns an error of one attempt into its outcome: credentials, permissions and TLS are fatal; the rest is waited out. */
function failed(err: unknown, describe: (err: unknown) => string): AttemptFailed {
  const text = describe(err);
  const code = (err as NodeJS.ErrnoException)?.code ?? '';
  if (/^NOAUTH\b/.test(text)) return new AttemptFailed(`needs credentials and the URL gives none: ${text} (write them as redis://user:password@host:port)`, true);
  if (/^WRONGPASS\b|invalid (username-)?password/i.test(text)) return new AttemptFailed(`rejected the credentials: ${text}`, true);
  if (/^NOPERM\b/.test(text)) return new AttemptFailed(`refused a command to this user: ${text} (the ACL user needs at least PING, INFO and CLUSTER INFO)`, true);
  if (/^ERR_TLS|CERT|SELF_SIGNED|UNABLE_TO_(GET|VERIFY)|ERR_SSL/.test(code) || /wrong version number|certificate/i.test(text)) {
    return new AttemptFailed(`failed the TLS handshake: ${text} (rediss:// needs a TLS port; a private CA goes in NODE_EXTRA_CA_CERTS)`, true);
  }
  return new AttemptFailed(text, false);
}

/** A short reason for a log line or an exit message: what failed, not where in ioredis. */
function describeError(err: Error): string {
  const code = (err as NodeJS.ErrnoException).code;
  switch (code) {
    case 'ECONNREFUSED':
      return 'connection refused';
    case 'ETIMEDOUT':
      return 'connection timed out';
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return 'host not found';
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return 'host unreachable';
    case 'ECONNRESET':
      return 'connection reset';
  }
  if (err.message === 'Connection is closed.') return 'connection closed';
  if (err.message === 'Command timed out') return 'no answer in time';
  return err.message.replace(/\s*\n\s*/g, ' ');
}

function scrub(text: string, secret: string | undefined): string {
  return secret ? text.split(secret).join('***') : text;
}

/** INFO and CLUSTER INFO replies: key:value lines. */
export function parseInfo(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split(/\r?\n/)) {
    const colon = line.indexOf(':');
    if (colon > 0 && !line.startsWith('#')) out.set(line.slice(0, colon), line.slice(colon + 1).trim());
  }
  return out;
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
