// Layout of a workgroup's shared stats block: the contract between the
// workgroup that writes it and the control plane that reads it (metrics,
// /jmx, dashboard). One Float64Array over a SharedArrayBuffer per workgroup.
//
// Concurrency: exactly one writer, the workgroup's own thread (or process),
// with plain stores; readers only load. A reader may see a counter one
// update behind its neighbour, never a torn value (aligned 8-byte stores).
// The block survives a workgroup restart: counters keep counting (the new
// workgroup continues from the values it finds), gauges are reset by it.

/** Counter and gauge slots. Counters only grow; gauges go up and down. */
export const Stat = {
  // gauges
  SESSIONS: 0,
  SUBSCRIPTIONS: 1,
  TOPICS_OWNED: 2,
  SLAB_CAPACITY: 3,
  SLAB_USED: 4,
  CACHE_MESSAGES: 5,
  CACHE_BYTES: 6,
  RING_SPILL_RECORDS: 7, // records waiting in spill queues now
  LISTENING: 8, // 1 once the workgroup listens on the public port
  HEARTBEAT_MS: 9, // Date.now() of the last event-loop tick, written once a second
  RING_SPILL_PEAK_BYTES: 10, // the most bytes one spill queue of this workgroup has held at once since it started
  RING_SPILL_BYTES: 11, // bytes in this workgroup's spill queues now, written as they change (every workgroup reads every block's: publishes are refused past --max-ring-spill-bytes)
  ACCEPTING_PAUSED: 12, // 1 while the workgroup has stopped accepting connections because the process is out of descriptors
  TOPICS_FULL: 13, // 1 while the workgroup owns its share of --max-topics (written as it changes; publishers read it to ask for an answer)
  // counters
  SESSIONS_OPENED: 16,
  SESSIONS_CLOSED: 17,
  SESSIONS_REJECTED: 18, // upgrade refused: per-IP cap, draining, bad request
  MESSAGES_IN: 19, // publishes accepted from clients (WebSocket and HTTP) here
  MESSAGES_SEQUENCED: 20, // publishes sequenced here as the topic owner
  MESSAGES_OUT: 21, // frames handed to subscribers here (one per subscriber)
  BYTES_OUT: 22, // payload bytes of those frames
  BYTES_IN: 23, // bytes of commands received
  PROTOCOL_ERRORS: 24,
  SLOW_CONSUMER_CLOSES: 25,
  RING_RECORDS_OUT: 26,
  RING_RECORDS_IN: 27,
  RING_FULL_EVENTS: 28,
  RING_WAKEUPS: 29,
  CACHE_EVICTIONS: 30,
  REPLAYED_MESSAGES: 31,
  RESUMES_RECOVERED: 32,
  RESUMES_NOT_RECOVERED: 33,
  HTTP_PUBLISHES: 34,
  INTERNAL_ERRORS: 35,
  // gauges, written by the workgroup once a second (0: not reported yet)
  HEAP_USED_BYTES: 36, // v8 heapUsed of the workgroup's own isolate
  LOOP_UTILIZATION: 37, // event-loop utilization over the last second, 0..1 (perf_hooks eventLoopUtilization)
  // counters
  PUBLISHES_OVERLOADED: 38, // publishes refused with OVERLOADED (WebSocket and HTTP) because rings were backed up
  RATE_LIMITED: 39, // commands refused with RATE_LIMITED (over a session's per-second budget)
  RATE_LIMIT_CLOSES: 40, // sessions closed with 4001 for staying over their budget
  TOPICS_REFUSED: 41, // publishes and subscriptions refused with TOO_MANY_TOPICS
  ACCEPT_PAUSES: 42, // times accepting was paused for lack of descriptors
  DELIVERY_ERRORS: 43, // message frames that could not be made for one encoding (the message was dropped for that encoding and reported)
  LOGS_SUPPRESSED: 44, // error lines not written because their cause had already logged its share this minute
  TOPICS_RELEASED: 45, // idle topic rows released (no interest, nothing cached)
  // gauges
  ENGINE_STATE: 46, // 0: the memory engine; Redis engine: 1 up, 2 Redis unreachable (publishes refused with UNAVAILABLE)
  REDIS_SUBSCRIPTIONS: 47, // topic channels this workgroup holds subscribed in Redis
  // counters (Redis engine)
  REDIS_MESSAGES_IN: 48, // messages received from Redis's channels
  REDIS_BYTES_IN: 49, // bytes of those messages
  REDIS_COMMANDS: 50, // commands sent to Redis
  REDIS_FLUSHES: 51, // event-loop turns that sent commands (each one pipelined write): commands per flush = REDIS_COMMANDS / REDIS_FLUSHES
  REDIS_RECONNECTS: 52, // connections to Redis lost (and retried)
  PUBLISHES_UNAVAILABLE: 53, // publishes refused or failed with UNAVAILABLE (Redis unreachable)
  REDIS_RECOVERED: 54, // messages a node missed live and recovered from Redis's streams
  REDIS_LOST: 55, // messages a node missed that Redis's streams no longer held (subscribers were told of the gap)
  // entitlement (--auth jwt), after the Redis RTT histogram
  AUTH_FAILURES: 103, // tokens refused: at the upgrade (401), in band (auth command), over HTTP publish (401)
  AUTH_ACCEPTED: 104, // tokens accepted: at the upgrade, and in band (auth commands: first ones and refreshes)
  AUTH_FORBIDDEN: 105, // topics refused with FORBIDDEN (sub, pub, HTTP publish)
  AUTH_EXPIRED_CLOSES: 106, // sessions closed with 4003 (token expired)
  AUTH_TIMEOUT_CLOSES: 107, // sessions closed with 4002 (no auth command in time)
  AUTH_GRANTS: 108, // gauge: distinct grants (claim sets) held by this workgroup's sessions and its token cache
  // counters (admission, issue 16): slots after the histograms, so that other additions below 64 do not collide
  ADMISSION_REFUSED: 109, // upgrades refused with 503 RETRY_LATER: over --admission-rate (each given a place ahead and a ticket, or a hint past the horizon)
  ADMISSION_TICKETS_HONORED: 110, // upgrades admitted on a ticket whose time had come (their place was counted when given)
  ADMISSION_TICKETS_REFUSED: 111, // tickets presented and not honored: forged, already used, expired, or another workgroup's or an earlier start's
  SESSION_RATE_REFUSED: 112, // upgrades refused with 429 RATE_LIMITED: over --max-sessions-per-second-per-ip
  LOOP_DELAY_MAX_MS: 113, // gauge: the longest event-loop delay of the last second, ms (perf_hooks monitorEventLoopDelay, 10 ms resolution)
  // Server-Sent Events streams (GET /v1/sse, workgroups/sse.ts): slots 140-149
  SSE_SESSIONS: 140, // gauge: open SSE streams
  SSE_SUBSCRIPTIONS: 141, // gauge: topics the open SSE streams are subscribed to (live)
  SSE_SESSIONS_OPENED: 142, // SSE streams opened (200 answered)
  SSE_SESSIONS_CLOSED: 143, // SSE streams closed, for any reason
  SSE_SESSIONS_REJECTED: 144, // SSE requests refused with an HTTP error (bad topics, resume id, token, draining)
  SSE_MESSAGES_OUT: 145, // message events written to SSE streams (one per stream per message; not in MESSAGES_OUT)
  SSE_SLOW_CLOSES: 146, // SSE streams cut for holding more than --max-backpressure-bytes unsent
  SSE_GAPS: 147, // gap events written to SSE streams
  // conflation and idempotent publish (issue 19): slots 160-169
  IDEMPOTENCY_KEYS: 160, // gauge: idempotency keys this workgroup holds for the topics it owns (memory engine)
  IDEMPOTENCY_KEYS_EVICTED: 161, // keys forgotten before their window ended (--idempotency-keys-per-topic reached)
  IDEMPOTENT_DUPLICATES: 162, // publishes not published again: their idempotency key was seen within the window
  CONFLATION_GROUPS: 163, // gauge: (topic, interval) pairs with conflating sessions in this workgroup (one timer each at most)
  CONFLATED_FRAMES: 164, // frames the conflation groups handed to uWS (one per group and encoding and interval, not per session)
  CONFLATED_SKIPPED: 165, // messages a conflation group replaced by a later one before sending (per group, not per session)
  // wildcard subscriptions (issue 19: slots 150-159)
  PATTERN_SUBSCRIPTIONS: 150, // gauge: patterns held by this workgroup's sessions (one per session and pattern)
  PATTERN_HORIZONS_LOST: 151, // counter: pattern resumes an owner could not cover (its journal no longer reached the client's horizon)
} as const;
export type Stat = (typeof Stat)[keyof typeof Stat];

/** Names for exporters, in slot order; gauges first. */
export const STAT_NAMES: Record<Stat, string> = Object.fromEntries(Object.entries(Stat).map(([k, v]) => [v, k.toLowerCase()])) as Record<Stat, string>;
export const GAUGES: readonly Stat[] = [
  Stat.SESSIONS,
  Stat.SUBSCRIPTIONS,
  Stat.TOPICS_OWNED,
  Stat.SLAB_CAPACITY,
  Stat.SLAB_USED,
  Stat.CACHE_MESSAGES,
  Stat.CACHE_BYTES,
  Stat.RING_SPILL_RECORDS,
  Stat.RING_SPILL_PEAK_BYTES,
  Stat.RING_SPILL_BYTES,
  Stat.ACCEPTING_PAUSED,
  Stat.TOPICS_FULL,
  Stat.LISTENING,
  Stat.HEARTBEAT_MS,
  Stat.HEAP_USED_BYTES,
  Stat.LOOP_UTILIZATION,
  Stat.LOOP_DELAY_MAX_MS,
  Stat.ENGINE_STATE,
  Stat.REDIS_SUBSCRIPTIONS,
  Stat.AUTH_GRANTS,
  Stat.SSE_SESSIONS,
  Stat.SSE_SUBSCRIPTIONS,
  Stat.IDEMPOTENCY_KEYS,
  Stat.CONFLATION_GROUPS,
  Stat.PATTERN_SUBSCRIPTIONS,
];

/**
 * Publish-to-write latency histogram (measured inside the server: from the
 * publish arriving at a workgroup to the frame handed to uWS in the
 * delivering workgroup). Bucket i counts latencies below LATENCY_BOUNDS_MICROS[i];
 * the last bucket counts the rest.
 */
export const LATENCY_BOUNDS_MICROS: readonly number[] = [10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000];
export const LATENCY_BASE = 64;
export const LATENCY_BUCKETS = LATENCY_BOUNDS_MICROS.length + 1;
/** Sum of recorded latencies (micros) and their count, after the buckets. */
export const LATENCY_SUM = LATENCY_BASE + LATENCY_BUCKETS;
export const LATENCY_COUNT = LATENCY_SUM + 1;

/** Round trips of publishes to Redis (Redis engine), micros, in the same buckets, then their sum and count. */
export const REDIS_RTT_BASE = 84;
export const REDIS_RTT_SUM = REDIS_RTT_BASE + LATENCY_BUCKETS;
export const REDIS_RTT_COUNT = REDIS_RTT_SUM + 1;

export const STATS_SLOTS = 192;
export const STATS_BYTES = STATS_SLOTS * 8;

/** Index of the bucket for a latency in microseconds. No allocation. */
export function latencyBucket(micros: number): number {
  const b = LATENCY_BOUNDS_MICROS;
  for (let i = 0; i < b.length; i++) if (micros < b[i]) return i;
  return b.length;
}

/** Records one latency sample (the workgroup's own block only). */
export function recordLatency(stats: Float64Array, micros: number): void {
  stats[LATENCY_BASE + latencyBucket(micros)]++;
  stats[LATENCY_SUM] += micros;
  stats[LATENCY_COUNT]++;
}

/**
 * The one percentile of the fixed latency buckets (server and bench both use
 * it): the upper bound of the bucket the rank falls in, so "at most", in
 * micros. `counts` holds LATENCY_BUCKETS counts (bucket i below
 * LATENCY_BOUNDS_MICROS[i], the last one the rest); p is 0..1. null when there
 * is no sample. A rank past the last bound reports the last bound (as
 * Prometheus' histogram_quantile does): a floor, "at least", never Infinity.
 * bench/histogram.ts's HDR histograms follow the same rule at their own top
 * (values are clamped to HIGHEST_MICROS).
 */
export function bucketPercentile(counts: ArrayLike<number>, p: number): number | null {
  const b = LATENCY_BOUNDS_MICROS;
  let total = 0;
  for (let i = 0; i < LATENCY_BUCKETS; i++) total += counts[i];
  if (total === 0) return null;
  const rank = Math.max(1, Math.ceil(p * total));
  let seen = 0;
  for (let i = 0; i < b.length; i++) {
    seen += counts[i];
    if (seen >= rank) return b[i];
  }
  return b[b.length - 1];
}

/** A percentile (0..1) of everything a stats block has recorded (see bucketPercentile). */
export function latencyPercentile(stats: Float64Array, p: number): number | null {
  return bucketPercentile(stats.subarray(LATENCY_BASE, LATENCY_BASE + LATENCY_BUCKETS), p);
}
