// The Redis side of the Redis engine: one workgroup's connections to Redis
// (one for commands, one for subscriptions), the scripts that sequence a
// publish and read a topic's history, and the layout of what is stored.
// workgroups/redis-owner.ts decides what to do; this module only talks.
//
// What Redis holds per topic T (every key carries the hash tag {T}, so that
// in Redis Cluster a topic's keys and channel live in one slot):
//   P:{T}:m  hash   e = epoch (random 32-bit, chosen by the first publish or
//                   subscribe of a new history), s = last seq
//   P:{T}:x  stream one entry per message, id "<seq>-0", field d = payload;
//                   trimmed to about --cache-messages entries; expires after
//                   --cache-seconds without a publish
//   P:{T}:s  string the retained snapshot: seq (f64) + payload
//   P:{T}:c  the channel: epoch (u32) + seq (f64) + payload
//   P:{T}:k  hash   idempotency key -> "epoch seq expires-at-ms" (publishes that carried one)
//   P:{T}:l  list   those keys, oldest first: trimmed to --idempotency-keys-per-topic and to the window
//                   (both expire a window after the last keyed publish)
// payload = ts micros (f64) + received-at micros (f64) + flags (u8) + data.
// The meta hash lives META_TTL_SECONDS after the last publish or subscribe:
// when it is gone (expired, flushed, Redis restarted without persistence)
// the next publish starts a new epoch and deletes what is left of the old
// history, so a loss always shows as an epoch change, never as a silent gap.
//
// Publishes are sent as they come; ioredis's auto-pipelining writes all the
// commands of one event-loop turn in one write (standalone; with Redis
// Cluster it is off, see the constructor).
import { performance } from 'node:perf_hooks';
import type { Redis, Cluster, RedisOptions as IoRedisOptions, ClusterNode } from 'ioredis';
import type { RedisOptions } from '../shm/workgroup-init';
import { redisConnectionOptions } from '../shm/redis-url';
import calculateSlot from 'cluster-key-slot';
import { DEFAULT_IDEMPOTENCY_KEYS_PER_TOPIC, DEFAULT_IDEMPOTENCY_WINDOW_SECONDS } from '../protocol/idempotency';
import { REDIS_RTT_BASE, REDIS_RTT_COUNT, REDIS_RTT_SUM, Stat, latencyBucket } from '../protocol/stats';

/** A topic's meta hash outlives its last publish or subscribe by this long. */
export const META_TTL_SECONDS = 7 * 86400;
/**
 * A command Redis has not answered after this long fails (as UNAVAILABLE, "may or may not") and marks Redis
 * down until a PING is answered. Not shorter: a node whose own loop is starved of CPU for seconds (seen under
 * a benchmark on 2 shared cores) would take its own lag for a hung Redis.
 */
const COMMAND_TIMEOUT_MS = 5000;
/** Redis Cluster: followed topics are checked against their streams this long after the last subscription error. */
const RESYNC_AFTER_ERRORS_MS = 3000;
/** Bytes before the data in a payload: ts (f64), received-at (f64), flags (u8). */
export const PAYLOAD_HEADER = 17;
/** Bytes before the payload in a channel message: epoch (u32), seq (f64). */
const MESSAGE_HEADER = 12;

/** RecordFlag.RETAIN in a payload's flags byte (workgroups/records.ts). */
const RETAIN_FLAG = 2;

// A history is trusted only if the Redis process that serves it now is the one that wrote it: `b` in the
// meta hash is the writer's run_id (INFO server). A Redis restarted from its AOF or RDB may have lost its
// last writes (appendfsync everysec: up to a second; a replica promoted after an asynchronous failover: what
// it had not received); seqs it hands out again would be dropped by clients as duplicates, a silent loss.
// So a history written by another process starts a new epoch: the loss, if any, is reported. The snapshot
// is kept (re-stamped seq 0 of the new epoch): it is state, not history. With Redis Cluster, the run_id of
// the master serving the topic's slot (a promoted replica has its own).
// Every script takes one key, the topic's meta hash P:{T}:m, and names the others from it (same hash tag:
// the same slot in Redis Cluster); the settings are written into the script's text (scriptsFor): a publish
// sends only its topic, payload, a candidate epoch and the run_id, 6 arguments for ioredis to encode.
const PRELUDE = `
local base = string.sub(KEYS[1], 1, -2)
local X = base .. 'x'
local S = base .. 's'
local function newHistory(epoch, seq, run)
  redis.call('DEL', X)
  local snap = redis.call('GET', S)
  if snap then redis.call('SET', S, struct.pack('>d', 0) .. string.sub(snap, 9), 'KEEPTTL') end
  redis.call('HSET', KEYS[1], 'e', epoch, 's', seq, 'b', run)
  return epoch
end
local function stale(m, run)
  return not m[1] or (run ~= '' and m[2] ~= run)
end
`;

/** The three scripts, with the store's settings written in. */
export function scriptsFor(limits: StoreLimits, publishCommand: string): { publish: string; head: string; read: string } {
  const maxLen = Math.max(0, Math.floor(limits.cacheMessages));
  const streamTtlMs = Math.max(1, limits.cacheSeconds) * 1000;
  const snapshotTtlMs = Math.max(0, limits.snapshotTtlSeconds) * 1000;
  const windowMs = Math.max(1, limits.idempotencyWindowSeconds ?? DEFAULT_IDEMPOTENCY_WINDOW_SECONDS) * 1000;
  const maxKeys = Math.max(1, limits.idempotencyKeysPerTopic ?? DEFAULT_IDEMPOTENCY_KEYS_PER_TOPIC);
  // ARGV: payload, candidate epoch, run_id, idempotency key ('' for none). The payload's flags byte (17th) says
  // whether it is retained. A key seen within the window returns the first publish's {epoch, seq, 1}, having
  // written nothing: checked and remembered in this one script, so two nodes retrying one key cannot both publish.
  const publish =
    PRELUDE +
    `
local K = base .. 'k'
local now = 0
if ARGV[4] ~= '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local v = redis.call('HGET', K, ARGV[4])
  if v then
    local e0, s0, x0 = string.match(v, '^(%d+) (%d+) (%d+)$')
    if x0 and tonumber(x0) > now then return {tonumber(e0), tonumber(s0), 1} end
  end
end
local m = redis.call('HMGET', KEYS[1], 'e', 'b')
local e = m[1]
local seq
if stale(m, ARGV[3]) then
  e = newHistory(ARGV[2], 1, ARGV[3])
  seq = 1
else
  seq = redis.call('HINCRBY', KEYS[1], 's', 1)
end
redis.call('EXPIRE', KEYS[1], ${META_TTL_SECONDS})
${
  maxLen > 0
    ? `local id = seq .. '-0'
if not pcall(redis.call, 'XADD', X, 'MAXLEN', '~', ${maxLen}, id, 'd', ARGV[1]) then
  redis.call('DEL', X)
  redis.call('XADD', X, 'MAXLEN', '~', ${maxLen}, id, 'd', ARGV[1])
end
redis.call('PEXPIRE', X, ${streamTtlMs})`
    : ''
}
if bit.band(string.byte(ARGV[1], ${PAYLOAD_HEADER}), ${RETAIN_FLAG}) ~= 0 then
  redis.call('SET', S, struct.pack('>d', seq) .. ARGV[1]${snapshotTtlMs > 0 ? `, 'PX', ${snapshotTtlMs}` : ''})
end
redis.call('${publishCommand}', base .. 'c', struct.pack('>I4d', tonumber(e), seq) .. ARGV[1])
if ARGV[4] ~= '' then
  local L = base .. 'l'
  redis.call('HSET', K, ARGV[4], string.format('%d %d %d', tonumber(e), seq, now + ${windowMs}))
  local n = redis.call('RPUSH', L, ARGV[4])
  -- Oldest first: past the bound, or expired (a key taken again after its window is in the list twice; only
  -- its hash entry's time counts).
  while n > 0 do
    local first = redis.call('LINDEX', L, 0)
    local v = redis.call('HGET', K, first)
    local x = v and tonumber(string.match(v, ' (%d+)$')) or 0
    if n <= ${maxKeys} and x > now then break end
    redis.call('LPOP', L)
    n = n - 1
    if v and (x <= now or n >= ${maxKeys}) then redis.call('HDEL', K, first) end
  end
  redis.call('PEXPIRE', K, ${windowMs})
  redis.call('PEXPIRE', L, ${windowMs})
end
return {tonumber(e), seq}
`;
  // ARGV: candidate epoch, run_id. Starts a history when there is none (a subscriber's first position must be
  // the epoch the next publish will use). Returns epoch, seq, snapshot or false, its pttl.
  const head =
    PRELUDE +
    `
local m = redis.call('HMGET', KEYS[1], 'e', 'b')
if stale(m, ARGV[2]) then newHistory(ARGV[1], 0, ARGV[2]) end
redis.call('EXPIRE', KEYS[1], ${META_TTL_SECONDS})
local h = redis.call('HMGET', KEYS[1], 'e', 's')
return {tonumber(h[1]), tonumber(h[2]), redis.call('GET', S), redis.call('PTTL', S)}
`;
  // ARGV: expected epoch, after seq, count, run_id. The entries after \`after\` when the epoch is the expected
  // one, else from the history's start. Returns epoch (0: no history it can trust), last seq, entries.
  const read =
    PRELUDE +
    `
local m = redis.call('HMGET', KEYS[1], 'e', 's', 'b')
if not m[1] or (ARGV[4] ~= '' and m[3] ~= ARGV[4]) then return {0, 0, {}} end
local from = '-'
if m[1] == ARGV[1] then from = (tonumber(ARGV[2]) + 1) .. '-0' end
return {tonumber(m[1]), tonumber(m[2]), redis.call('XRANGE', X, from, '+', 'COUNT', ARGV[3])}
`;
  return { publish, head, read };
}

/** One message of a topic's history as read back from Redis. */
export interface StoredMessage {
  seq: number;
  tsMicros: number;
  receivedAtMicros: number;
  flags: number;
  data: Buffer;
}

export interface Head {
  epoch: number;
  seq: number;
  snapshot: StoredMessage | null;
  /** Milliseconds the snapshot has left, or -1: no expiry. */
  snapshotTtlMs: number;
}

export interface HistoryRead {
  /** 0 when Redis has no history for the topic. */
  epoch: number;
  seq: number;
  entries: StoredMessage[];
}

/** What the store tells its owner. */
export interface StoreEvents {
  /** A message on a followed topic's channel, as sequenced by Redis. */
  message(topic: string, epoch: number, m: StoredMessage): void;
  /** The subscription connection came back after a loss: followed topics may have missed messages. */
  resubscribed(): void;
  /** The command connection went up or down. */
  availability(up: boolean): void;
}

export interface StoreLimits {
  cacheMessages: number;
  cacheSeconds: number;
  snapshotTtlSeconds: number;
  /** Idempotent publish (defaults: protocol/idempotency.ts). */
  idempotencyWindowSeconds?: number;
  idempotencyKeysPerTopic?: number;
}

type Client = Redis | Cluster;
type ScriptClient = Client & {
  c10mPublish(meta: string, payload: Buffer, epoch: number, runId: string, idempotencyKey: string): Promise<[number, number, number?]>;
  c10mHeadBuffer(meta: string, epoch: number, runId: string): Promise<[number, number, Buffer | null, number]>;
  c10mReadBuffer(meta: string, epoch: number, after: number, count: number, runId: string): Promise<[number, number, [Buffer, Buffer[]][]]>;
};

export class RedisStore {
  private readonly cmd: ScriptClient;
  private readonly sub: Client;
  private readonly prefix: string;
  /** Bytes of `prefix:{` before a topic in a channel name, and of `}:c` after it. */
  private readonly channelHead: number;
  private readonly scripts: { publish: string; head: string; read: string };
  private cmdUp = false;
  private upWaiters: (() => void)[] = [];
  /** The run_id of the Redis process the command connection is on (standalone). */
  private runId = '';
  /** Redis Cluster: the run_id of each master, by "host:port" (as the slot map names them). */
  private readonly shardRunIds = new Map<string, string>();
  private subReadyOnce = false;
  private closed = false;
  /** Commands sent this event-loop turn (one auto-pipelined write), and whether the turn's count is scheduled. */
  private turnCommands = 0;
  private turnScheduled = false;
  private readonly endTurn = (): void => {
    this.turnScheduled = false;
    this.stats[Stat.REDIS_FLUSHES]++;
    this.stats[Stat.REDIS_COMMANDS] += this.turnCommands;
    this.turnCommands = 0;
  };

  constructor(
    readonly options: RedisOptions,
    limits: StoreLimits,
    private readonly stats: Float64Array,
    private readonly events: StoreEvents,
    private readonly onError: (cause: string, err: unknown) => void,
    private readonly log: (message: string) => void = () => {},
  ) {
    this.prefix = options.prefix;
    this.channelHead = Buffer.byteLength(`${options.prefix}:{`);
    this.scripts = scriptsFor(limits, options.cluster ? 'SPUBLISH' : 'PUBLISH');
    const retry = (times: number): number => Math.min(100 * times, 2000);
    const common: IoRedisOptions = {
      connectTimeout: 2000,
      // A Redis that stops answering (stopped, partitioned) fails publishes after this, as UNCERTAIN.
      commandTimeout: COMMAND_TIMEOUT_MS,
      retryStrategy: retry,
      // A publish in flight when the connection drops is answered with an error, never sent twice.
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      enableAutoPipelining: true,
    };
    // Loaded here: a workgroup of the memory engine never pays for ioredis (1.6 MB of heap per isolate).
    const { Redis, Cluster } = require('ioredis') as typeof import('ioredis');
    // Checked by the control plane at start (shm/redis-url.ts): a bad list never gets this far.
    const endpoints = redisConnectionOptions(options.urls, options.cluster);
    if (options.cluster) {
      const seeds: ClusterNode[] = endpoints.map((e) => ({ host: e.host, port: e.port }));
      const first = endpoints[0];
      const redisOptions: IoRedisOptions = { username: first.username, password: first.password, tls: first.tls, connectTimeout: 2000 };
      this.cmd = new Cluster(seeds, {
        redisOptions: { ...redisOptions, maxRetriesPerRequest: 0, commandTimeout: COMMAND_TIMEOUT_MS },
        enableOfflineQueue: false,
        // Off with Redis Cluster: ioredis 5.11 answers auto-pipelined commands with the MOVED error after a
        // failover instead of following it (seen: catch-up reads failing with MOVED for 30 s after a master
        // was killed; with it off, every acked message was delivered). Commands still go out without waiting.
        enableAutoPipelining: false,
        clusterRetryStrategy: retry,
      }) as ScriptClient;
      this.sub = new Cluster(seeds, { redisOptions, shardedSubscribers: true, clusterRetryStrategy: retry });
    } else {
      const o = endpoints[0];
      this.cmd = new Redis({ ...o, ...common, enableOfflineQueue: false }) as ScriptClient;
      this.sub = new Redis({ ...o, connectTimeout: 2000, retryStrategy: retry, maxRetriesPerRequest: null });
    }
    this.cmd.defineCommand('c10mPublish', { numberOfKeys: 1, lua: this.scripts.publish });
    this.cmd.defineCommand('c10mHead', { numberOfKeys: 1, lua: this.scripts.head });
    this.cmd.defineCommand('c10mRead', { numberOfKeys: 1, lua: this.scripts.read });
    this.cmd.on('ready', () => this.learnRunId());
    this.cmd.on('close', () => this.setUp(false));
    this.cmd.on('error', (err) => this.onError('redis', err));
    if (options.cluster) {
      // A node joined or left the slot map (a failover): check the followed topics once things settle.
      this.cmd.on('+node', () => this.resyncSoon());
      this.cmd.on('-node', () => this.resyncSoon());
    }
    this.sub.on('error', (err) => {
      this.onError('redis-subscriber', err);
      // Redis Cluster: ioredis re-subscribes a failed-over shard's channels by itself, without an event we can
      // wait for; a while after the errors stop, every followed topic is read from its stream (catch-up).
      if (options.cluster) this.resyncSoon();
    });
    this.sub.on('ready', () => {
      if (this.subReadyOnce) {
        this.stats[Stat.REDIS_RECONNECTS]++;
        this.events.resubscribed();
      }
      this.subReadyOnce = true;
    });
    const onMessage = (channel: Buffer, message: Buffer): void => {
      try {
        this.onMessage(channel, message);
      } catch (err) {
        this.onError('redis-message', err);
      }
    };
    this.sub.on(options.cluster ? 'smessageBuffer' : 'messageBuffer', onMessage);
    this.stats[Stat.ENGINE_STATE] = 2;
  }

  /** Resolves once the command connection is up, or after timeoutMs (Redis went away meanwhile: the engine reports it). */
  whenUp(timeoutMs: number): Promise<boolean> {
    if (this.cmdUp) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(this.cmdUp), timeoutMs);
      this.upWaiters.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }

  private resyncTimer: NodeJS.Timeout | null = null;

  /** Tells the owner, RESYNC_AFTER_ERRORS_MS after the last subscription error, to check every topic against its stream. */
  private resyncSoon(): void {
    if (this.closed) return;
    if (this.resyncTimer !== null) clearTimeout(this.resyncTimer);
    this.resyncTimer = setTimeout(() => {
      this.resyncTimer = null;
      if (!this.closed) this.events.resubscribed();
    }, RESYNC_AFTER_ERRORS_MS);
  }

  /** The command connection is up: publishes can be sequenced. */
  get up(): boolean {
    return this.cmdUp;
  }

  /**
   * Connected: which Redis process is this (run_id)? Publishes wait for the
   * answer (a history written by another process starts a new epoch, see
   * NEW_HISTORY). With Redis Cluster, not checked.
   */
  private learnRunId(): void {
    this.prepare().then(
      (runId) => {
        if (this.runId !== '' && this.runId !== runId) this.log('redis restarted (a new run_id): topics whose history it wrote before start new epochs');
        this.runId = runId;
        this.setUp(true);
      },
      (err) => {
        this.onError('redis-info', err);
        if (!this.closed) setTimeout(() => this.learnRunId(), 500);
      },
    );
  }

  /**
   * Loads the scripts on every server (so that the first commands are not
   * answered NOSCRIPT and sent again as EVAL, which would let a later
   * command overtake them) and reads the run_id ('' with Redis Cluster).
   */
  private async prepare(): Promise<string> {
    const servers: Redis[] = this.options.cluster ? (this.cmd as Cluster).nodes('master') : [this.cmd as Redis];
    await Promise.all(servers.flatMap((r) => [this.scripts.publish, this.scripts.head, this.scripts.read].map((lua) => r.script('LOAD', lua))));
    if (this.options.cluster) {
      await this.learnShardRunIds();
      return '';
    }
    return runIdOf(await (this.cmd as Redis).info('server'));
  }

  /**
   * The run_id to check a topic's history against: the standalone server's,
   * or (Redis Cluster) that of the master serving the key's slot now, null
   * while it is not known yet (then asked for: a failover moved the slot).
   */
  private runIdFor(metaKey: string): string | null {
    if (!this.options.cluster) return this.runId;
    const owners = (this.cmd as Cluster).slots[calculateSlot(metaKey)];
    const master = owners === undefined ? undefined : owners[0];
    const id = master === undefined ? undefined : this.shardRunIds.get(master);
    if (id !== undefined) return id;
    this.learnShardRunIdsSoon();
    return null;
  }

  /** Asks every master of the cluster for its run_id (at connect, and when a slot's master is one not asked yet). */
  private async learnShardRunIds(): Promise<void> {
    const masters = (this.cmd as Cluster).nodes('master');
    const ids = await Promise.all(
      masters.map(async (r) => {
        const id = runIdOf(await r.info('server'));
        // A master not asked before may lack the scripts (a promoted replica: scripts are not replicated).
        await Promise.all([this.scripts.publish, this.scripts.head, this.scripts.read].map((lua) => r.script('LOAD', lua)));
        return [`${r.options.host}:${r.options.port}`, id] as const;
      }),
    );
    for (const [key, id] of ids) this.shardRunIds.set(key, id);
  }

  private learningShards = false;

  private learnShardRunIdsSoon(): void {
    if (this.learningShards || this.closed) return;
    this.learningShards = true;
    this.learnShardRunIds()
      .catch((err) => this.onError('redis-info', err))
      .finally(() => {
        this.learningShards = false;
      });
  }

  private setUp(up: boolean): void {
    if (this.closed || up === this.cmdUp) return;
    this.cmdUp = up;
    this.stats[Stat.ENGINE_STATE] = up ? 1 : 2;
    if (!up) this.stats[Stat.REDIS_RECONNECTS]++;
    this.events.availability(up);
    if (up && this.upWaiters.length > 0) {
      const waiters = this.upWaiters;
      this.upWaiters = [];
      for (const w of waiters) w();
    }
  }

  private key(topic: string, kind: 'm' | 'c'): string {
    return `${this.prefix}:{${topic}}:${kind}`;
  }

  private counted(): void {
    this.turnCommands++;
    if (!this.turnScheduled) {
      this.turnScheduled = true;
      setImmediate(this.endTurn);
    }
  }

  /**
   * Sequences one message in Redis. The data is copied before this returns
   * (it may be a view into a ring). `done` gets the (epoch, seq) Redis gave
   * it, or the error (the message may or may not have been sequenced).
   */
  publish(
    topic: string,
    flags: number,
    retain: boolean,
    data: Uint8Array,
    tsMicros: number,
    receivedAtMicros: number,
    idempotencyKey: string | null,
    done: (err: Error | null, epoch: number, seq: number, duplicate: boolean) => void,
  ): void {
    const payload = Buffer.allocUnsafe(PAYLOAD_HEADER + data.length);
    payload.writeDoubleBE(tsMicros, 0);
    payload.writeDoubleBE(receivedAtMicros, 8);
    payload[16] = flags & 0xff;
    payload.set(data, PAYLOAD_HEADER);
    const metaKey = this.key(topic, 'm');
    const runId = this.runIdFor(metaKey);
    if (runId === null) {
      // A shard whose server we have not asked yet (a failover just moved the slot): refused, nothing sent.
      done(NOT_SENT, 0, 0, false);
      return;
    }
    const epoch = 1 + Math.floor(Math.random() * 0xfffffffe);
    const started = performance.now();
    this.counted();
    this.cmd.c10mPublish(metaKey, payload, epoch, runId, idempotencyKey ?? '').then(
      (r) => {
        this.recordRoundTrip(started);
        done(null, Number(r[0]), Number(r[1]), r[2] === 1);
      },
      (err: Error) => {
        if (/timed out/i.test(err.message)) this.hung();
        // Redis Cluster: a shard failing over; its channels may have missed messages meanwhile.
        if (this.options.cluster) this.resyncSoon();
        done(err, 0, 0, false);
      },
    );
  }

  /**
   * A command timed out on an open connection (Redis stopped answering: hung,
   * overloaded, partitioned): down until a PING is answered again, so that
   * publishes are refused at once rather than each waiting out the timeout,
   * and /readyz and the metrics say so.
   */
  private hung(): void {
    if (!this.cmdUp || this.closed) return;
    this.setUp(false);
    const probe = (): void => {
      if (this.closed || this.cmd.status !== 'ready') return; // closed: 'ready' and the run_id check bring it back
      this.cmd.ping().then(
        () => this.setUp(true),
        () => setTimeout(probe, 500),
      );
    };
    setTimeout(probe, 500);
  }

  /** The topic's position (starting a history if it has none) and its snapshot. */
  async head(topic: string): Promise<Head> {
    const epoch = 1 + Math.floor(Math.random() * 0xfffffffe);
    this.counted();
    const metaKey = this.key(topic, 'm');
    const runId = this.runIdFor(metaKey);
    if (runId === null) throw NOT_SENT;
    const r = await this.cmd.c10mHeadBuffer(metaKey, epoch, runId);
    const snap = r[2];
    return {
      epoch: Number(r[0]),
      seq: Number(r[1]),
      snapshot: snap === null || snap.length < 8 + PAYLOAD_HEADER ? null : parsePayload(snap.readDoubleBE(0), snap, 8),
      snapshotTtlMs: Number(r[3]),
    };
  }

  /** The history after `afterSeq` when the topic is still in `epoch`, else from the current epoch's start; at most `count` messages. */
  async read(topic: string, epoch: number, afterSeq: number, count: number): Promise<HistoryRead> {
    this.counted();
    const metaKey = this.key(topic, 'm');
    const runId = this.runIdFor(metaKey);
    if (runId === null) throw NOT_SENT;
    const r = await this.cmd.c10mReadBuffer(metaKey, epoch, afterSeq, count, runId);
    const entries: StoredMessage[] = [];
    for (const [id, fields] of r[2]) {
      const seq = parseInt(id.toString('latin1'), 10);
      const d = fields[1];
      if (!(seq > 0) || d === undefined || d.length < PAYLOAD_HEADER) continue;
      entries.push(parsePayload(seq, d, 0));
    }
    return { epoch: Number(r[0]), seq: Number(r[1]), entries };
  }

  /** Subscribes to the topics' channels (one call for all); resolves once Redis confirmed. */
  async follow(topics: string[]): Promise<void> {
    const channels = topics.map((t) => this.key(t, 'c'));
    if (this.options.cluster) {
      // SSUBSCRIBE takes the channels of one slot per call (CROSSSLOT otherwise).
      const sub = this.sub as Cluster;
      await Promise.all(bySlot(channels).map((group) => sub.ssubscribe(...group)));
    } else await (this.sub as Redis).subscribe(...channels);
    this.stats[Stat.REDIS_SUBSCRIPTIONS] += topics.length;
  }

  async unfollow(topics: string[]): Promise<void> {
    const channels = topics.map((t) => this.key(t, 'c'));
    this.stats[Stat.REDIS_SUBSCRIPTIONS] -= topics.length;
    if (this.options.cluster) {
      const sub = this.sub as Cluster;
      await Promise.all(bySlot(channels).map((group) => sub.sunsubscribe(...group)));
    } else await (this.sub as Redis).unsubscribe(...channels);
  }

  private onMessage(channel: Buffer, message: Buffer): void {
    this.stats[Stat.REDIS_MESSAGES_IN]++;
    this.stats[Stat.REDIS_BYTES_IN] += message.length + channel.length;
    if (message.length < MESSAGE_HEADER + PAYLOAD_HEADER || channel.length < this.channelHead + 3) return;
    const topic = channel.toString('utf8', this.channelHead, channel.length - 3);
    const epoch = message.readUInt32BE(0);
    const seq = message.readDoubleBE(4);
    this.events.message(topic, epoch, parsePayload(seq, message, MESSAGE_HEADER));
  }

  private recordRoundTrip(startedMs: number): void {
    const micros = (performance.now() - startedMs) * 1000;
    const s = this.stats;
    s[REDIS_RTT_BASE + latencyBucket(micros)]++;
    s[REDIS_RTT_SUM] += micros;
    s[REDIS_RTT_COUNT]++;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.resyncTimer !== null) clearTimeout(this.resyncTimer);
    this.stats[Stat.ENGINE_STATE] = 0;
    this.cmd.disconnect();
    this.sub.disconnect();
  }
}

/** A command refused before it was sent (nothing happened in Redis). */
export const NOT_SENT = Object.assign(new Error("the topic's Redis shard is not known yet (a failover moved it); nothing was sent"), { notSent: true });

function runIdOf(info: string): string {
  const m = /^run_id:(\w+)/m.exec(info);
  if (m === null) throw new Error('INFO server has no run_id');
  return m[1];
}

/** Channels grouped by their Redis Cluster hash slot. */
function bySlot(channels: string[]): string[][] {
  const groups = new Map<number, string[]>();
  for (const c of channels) {
    const slot = calculateSlot(c);
    const g = groups.get(slot);
    if (g === undefined) groups.set(slot, [c]);
    else g.push(c);
  }
  return [...groups.values()];
}

function parsePayload(seq: number, b: Buffer, at: number): StoredMessage {
  return {
    seq,
    tsMicros: b.readDoubleBE(at),
    receivedAtMicros: b.readDoubleBE(at + 8),
    flags: b[at + 16],
    data: b.subarray(at + PAYLOAD_HEADER),
  };
}
