// /metrics: Prometheus text through prom-client. Node's default process
// metrics, plus ours, collected at scrape time from one snapshot of the
// shared stats blocks (see observability.ts): nothing is counted twice and
// nothing on the message path knows a scrape happened.
//
// Per-workgroup series carry the label workgroup="<id>"; sum them for the
// node (`sum(c10m_sessions)`). With --processes, a few key families have a
// series per process instead (label process="<i>", its workgroups combined:
// PER_PROCESS_SLOTS, engine up, heartbeat age, the process families) and
// every other one, the latency histograms included, is the node's alone,
// one series: `sum(...)` is the node either way, and 50 processes cost
// about 50 series a key family. Counters continue across a workgroup's
// restart (its block outlives the thread), so rate() needs no reset logic.
import type http from 'node:http';
import { Registry, collectDefaultMetrics, type Metric } from 'prom-client';
import { LATENCY_BASE, LATENCY_BOUNDS_MICROS, LATENCY_BUCKETS, LATENCY_SUM, REDIS_RTT_BASE, REDIS_RTT_SUM, Stat } from '../protocol/stats';
import { engineHealth, engineUp } from './engine-health';
import type { FigureSource, ProcessFigures, StatsSnapshot } from './figures';
import { packageVersion } from '../native-io/package-root';

const VERSION = packageVersion();

type Labels = Record<string, string | number>;
interface Sample {
  value: number;
  labels?: Labels;
  /** For histograms: the _bucket, _sum or _count series name. */
  metricName?: string;
}
type Kind = 'counter' | 'gauge' | 'histogram';

/** What one scrape reads: the stats blocks and the process, each once. */
interface Scrape {
  stats: StatsSnapshot;
  process: ProcessFigures;
}

/** A per-workgroup slot exported as one family. */
interface SlotFamily {
  slot: Stat;
  name: string;
  kind: 'counter' | 'gauge';
  help: string;
  /** Gauges that a workgroup writes only once it runs (0 = not reported): no series until then. */
  reportedOnly?: boolean;
  /** The slot's unit times this is the family's (ms slot, seconds family: 0.001). */
  scale?: number;
  /** The same figure for SSE streams (GET /v1/sse): the family gets a transport label, "websocket" (slot) and "sse" (this slot). */
  sse?: Stat;
}

export const SLOT_FAMILIES: readonly SlotFamily[] = [
  // sessions
  { slot: Stat.SESSIONS, sse: Stat.SSE_SESSIONS, name: 'c10m_sessions', kind: 'gauge', help: 'Open sessions: WebSocket sessions and SSE streams (label transport).' },
  { slot: Stat.SESSIONS_OPENED, sse: Stat.SSE_SESSIONS_OPENED, name: 'c10m_sessions_opened_total', kind: 'counter', help: 'Sessions opened (label transport).' },
  { slot: Stat.SESSIONS_CLOSED, sse: Stat.SSE_SESSIONS_CLOSED, name: 'c10m_sessions_closed_total', kind: 'counter', help: 'Sessions closed, for any reason (label transport).' },
  { slot: Stat.SESSIONS_REJECTED, name: 'c10m_sessions_rejected_total', kind: 'counter', help: 'WebSocket upgrades refused (per-address cap or rate, admission rate, draining, bad request).' },
  {
    slot: Stat.ADMISSION_REFUSED,
    name: 'c10m_admission_refused_total',
    kind: 'counter',
    help: 'WebSocket upgrades refused with 503 RETRY_LATER because the node was admitting at --admission-rate (each told when to come back, with a ticket).',
  },
  { slot: Stat.ADMISSION_TICKETS_HONORED, name: 'c10m_admission_tickets_honored_total', kind: 'counter', help: 'Upgrades admitted on an admission ticket whose time had come.' },
  {
    slot: Stat.ADMISSION_TICKETS_REFUSED,
    name: 'c10m_admission_tickets_refused_total',
    kind: 'counter',
    help: 'Admission tickets presented and not honored (forged, already used, expired, or issued by another workgroup or before a restart).',
  },
  { slot: Stat.SESSION_RATE_REFUSED, name: 'c10m_session_rate_refused_total', kind: 'counter', help: 'WebSocket upgrades refused with 429 RATE_LIMITED: over --max-sessions-per-second-per-ip.' },
  {
    slot: Stat.SLOW_CONSUMER_CLOSES,
    sse: Stat.SSE_SLOW_CLOSES,
    name: 'c10m_slow_consumer_closes_total',
    kind: 'counter',
    help: 'Sessions closed because they could not keep up (backpressure over --max-backpressure-bytes; label transport).',
  },
  { slot: Stat.SLAB_CAPACITY, name: 'c10m_session_slab_capacity', kind: 'gauge', help: 'Session slots allocated in the workgroup slab.' },
  // subscriptions and topics
  { slot: Stat.SUBSCRIPTIONS, sse: Stat.SSE_SUBSCRIPTIONS, name: 'c10m_subscriptions', kind: 'gauge', help: 'Subscriptions held by open sessions (one per session and topic; label transport).' },
  {
    slot: Stat.SSE_SESSIONS_REJECTED,
    name: 'c10m_sse_rejected_total',
    kind: 'counter',
    help: 'SSE requests (GET /v1/sse) refused with an HTTP error: bad topics or resume id, token, origin, draining.',
  },
  { slot: Stat.SSE_GAPS, name: 'c10m_sse_gaps_total', kind: 'counter', help: 'Gap events written to SSE streams (messages a resume or a live jump could not bring).' },
  { slot: Stat.PATTERN_SUBSCRIPTIONS, name: 'c10m_pattern_subscriptions', kind: 'gauge', help: 'Wildcard patterns held by open sessions (one per session and pattern).' },
  {
    slot: Stat.PATTERN_HORIZONS_LOST,
    name: 'c10m_pattern_horizons_lost_total',
    kind: 'counter',
    help: "Pattern resumes whose horizon an owner's journal no longer reached (reported to the client as horizon_lost).",
  },
  { slot: Stat.TOPICS_OWNED, name: 'c10m_topics', kind: 'gauge', help: 'Topics the workgroup owns (sequences); updated once a second.' },
  // messages
  { slot: Stat.MESSAGES_IN, name: 'c10m_messages_in_total', kind: 'counter', help: 'Publishes accepted from clients, WebSocket and HTTP, by the workgroup that received them.' },
  { slot: Stat.HTTP_PUBLISHES, name: 'c10m_http_publishes_total', kind: 'counter', help: 'Publishes accepted over HTTP POST /v1/publish (included in c10m_messages_in_total).' },
  { slot: Stat.MESSAGES_SEQUENCED, name: 'c10m_messages_sequenced_total', kind: 'counter', help: 'Publishes sequenced by the workgroup as their topic owner.' },
  {
    slot: Stat.MESSAGES_OUT,
    sse: Stat.SSE_MESSAGES_OUT,
    name: 'c10m_messages_out_total',
    kind: 'counter',
    help: 'Message frames handed to subscribers (one per subscriber per message; label transport).',
  },
  { slot: Stat.BYTES_OUT, name: 'c10m_bytes_out_total', kind: 'counter', help: 'Bytes of the message frames handed to subscribers.' },
  { slot: Stat.BYTES_IN, name: 'c10m_bytes_in_total', kind: 'counter', help: 'Bytes of commands received from sessions.' },
  { slot: Stat.PROTOCOL_ERRORS, name: 'c10m_protocol_errors_total', kind: 'counter', help: 'Malformed or refused commands and requests.' },
  { slot: Stat.INTERNAL_ERRORS, name: 'c10m_internal_errors_total', kind: 'counter', help: 'Commands that failed inside the server (each is logged).' },
  // rings between workgroups
  { slot: Stat.RING_RECORDS_OUT, name: 'c10m_ring_records_out_total', kind: 'counter', help: 'Records the workgroup wrote into rings to other workgroups.' },
  { slot: Stat.RING_RECORDS_IN, name: 'c10m_ring_records_in_total', kind: 'counter', help: 'Records the workgroup read from rings of other workgroups.' },
  {
    slot: Stat.RING_FULL_EVENTS,
    name: 'c10m_ring_full_total',
    kind: 'counter',
    help: 'Times a producer found its ring to another workgroup full and started spilling (one per spell, however many records went through the spill).',
  },
  { slot: Stat.RING_WAKEUPS, name: 'c10m_ring_wakeups_total', kind: 'counter', help: 'Times the workgroup was woken by a ring doorbell.' },
  { slot: Stat.RING_SPILL_RECORDS, name: 'c10m_ring_spill_records', kind: 'gauge', help: 'Records waiting in spill queues for room in a ring.' },
  {
    slot: Stat.RING_SPILL_BYTES,
    name: 'c10m_ring_spill_bytes',
    kind: 'gauge',
    help: "Bytes waiting in the workgroup's spill queues for room in a ring; past --max-ring-spill-bytes in any workgroup, publishes are refused with OVERLOADED.",
  },
  {
    slot: Stat.PUBLISHES_OVERLOADED,
    name: 'c10m_publishes_overloaded_total',
    kind: 'counter',
    help: 'Publishes refused with OVERLOADED (HTTP 503) because the rings between workgroups were backed up past --max-ring-spill-bytes.',
  },
  { slot: Stat.RATE_LIMITED, name: 'c10m_rate_limited_total', kind: 'counter', help: 'Commands refused with RATE_LIMITED: the session was over --max-commands-per-second or --max-bytes-per-second.' },
  { slot: Stat.RATE_LIMIT_CLOSES, name: 'c10m_rate_limit_closes_total', kind: 'counter', help: 'Sessions closed with 4001 for staying over their command budget.' },
  { slot: Stat.TOPICS_REFUSED, name: 'c10m_topics_refused_total', kind: 'counter', help: 'Publishes and subscriptions refused with TOO_MANY_TOPICS (the node held --max-topics).' },
  { slot: Stat.TOPICS_RELEASED, name: 'c10m_topics_released_total', kind: 'counter', help: 'Idle topic rows released (no subscribers, nothing cached or retained).' },
  { slot: Stat.TOPICS_FULL, name: 'c10m_topics_full', kind: 'gauge', help: '1 while the workgroup owns its share of --max-topics.' },
  { slot: Stat.ACCEPTING_PAUSED, name: 'c10m_accepting_paused', kind: 'gauge', help: '1 while the workgroup does not accept connections because the process is out of file descriptors.' },
  {
    slot: Stat.ACCEPT_PAUSES,
    name: 'c10m_accept_pauses_total',
    kind: 'counter',
    help: 'Times the workgroup stopped accepting for lack of file descriptors (EMFILE): connections meanwhile are refused by the kernel.',
  },
  {
    slot: Stat.DELIVERY_ERRORS,
    name: 'c10m_delivery_errors_total',
    kind: 'counter',
    help: 'Message frames that could not be made for one encoding (the message was not delivered in that encoding; logged). Should stay 0.',
  },
  { slot: Stat.LOGS_SUPPRESSED, name: 'c10m_logs_suppressed_total', kind: 'counter', help: 'Error log lines not written because their cause had already logged its share this minute.' },
  {
    slot: Stat.RING_SPILL_PEAK_BYTES,
    name: 'c10m_ring_spill_peak_bytes',
    kind: 'gauge',
    help: 'The most bytes one spill queue of the workgroup has held at once since the workgroup started (replays are paced by ring space and add at most two batch records each).',
  },
  // message cache and resume
  { slot: Stat.CACHE_MESSAGES, name: 'c10m_cache_messages', kind: 'gauge', help: 'Messages held in topic caches (for resume).' },
  { slot: Stat.CACHE_BYTES, name: 'c10m_cache_bytes', kind: 'gauge', help: 'Bytes held in topic caches.' },
  { slot: Stat.CACHE_EVICTIONS, name: 'c10m_cache_evictions_total', kind: 'counter', help: 'Messages evicted from topic caches (count, bytes or age bound).' },
  { slot: Stat.REPLAYED_MESSAGES, name: 'c10m_replayed_messages_total', kind: 'counter', help: 'Messages replayed to resuming sessions.' },
  { slot: Stat.RESUMES_RECOVERED, name: 'c10m_resumes_recovered_total', kind: 'counter', help: 'Resumes whose gap the cache covered.' },
  { slot: Stat.RESUMES_NOT_RECOVERED, name: 'c10m_resumes_not_recovered_total', kind: 'counter', help: 'Resumes whose gap the cache no longer covered (reported to the client).' },
  // the Redis engine (0 with the memory engine); c10m_engine_up, c10m_engine_info and c10m_redis_roundtrip_seconds are below
  {
    slot: Stat.REDIS_SUBSCRIPTIONS,
    name: 'c10m_redis_subscriptions',
    kind: 'gauge',
    help: 'Topic channels the workgroup holds subscribed in Redis (topics its node has subscribers of, plus a short linger after the last one leaves).',
  },
  {
    slot: Stat.REDIS_MESSAGES_IN,
    name: 'c10m_redis_messages_received_total',
    kind: 'counter',
    help: "Messages received from Redis's topic channels (a node receives only the topics it has subscribers of).",
  },
  { slot: Stat.REDIS_BYTES_IN, name: 'c10m_redis_bytes_received_total', kind: 'counter', help: 'Bytes of the messages received from Redis (channel name and message).' },
  { slot: Stat.REDIS_COMMANDS, name: 'c10m_redis_commands_total', kind: 'counter', help: 'Commands sent to Redis (publish scripts, history reads, head reads).' },
  {
    slot: Stat.REDIS_FLUSHES,
    name: 'c10m_redis_flushes_total',
    kind: 'counter',
    help: 'Event-loop turns that sent commands to Redis, each one pipelined write: commands per flush = rate(c10m_redis_commands_total) / rate(c10m_redis_flushes_total).',
  },
  { slot: Stat.REDIS_RECONNECTS, name: 'c10m_redis_reconnects_total', kind: 'counter', help: 'Connections to Redis lost (and retried), command and subscription connections alike.' },
  {
    slot: Stat.PUBLISHES_UNAVAILABLE,
    name: 'c10m_publishes_unavailable_total',
    kind: 'counter',
    help: 'Publishes refused or failed with UNAVAILABLE (HTTP 503) because Redis was unreachable (the publish may or may not have been sequenced when the connection dropped during it).',
  },
  {
    slot: Stat.REDIS_RECOVERED,
    name: 'c10m_redis_recovered_messages_total',
    kind: 'counter',
    help: "Messages the node missed live (Redis connection lost, sequence jump) and recovered from Redis's streams.",
  },
  {
    slot: Stat.REDIS_LOST,
    name: 'c10m_redis_lost_messages_total',
    kind: 'counter',
    help: "Messages the node missed live that Redis's streams no longer held (subscribers were told of the gap). Should stay 0.",
  },
  // entitlement
  { slot: Stat.AUTH_FAILURES, name: 'c10m_auth_failures_total', kind: 'counter', help: 'Tokens refused (--auth jwt): at the upgrade (401), in an auth command, or on HTTP publish (401).' },
  { slot: Stat.AUTH_ACCEPTED, name: 'c10m_auth_accepted_total', kind: 'counter', help: 'Tokens accepted: at the upgrade and in auth commands (first authentication and refreshes).' },
  { slot: Stat.AUTH_FORBIDDEN, name: 'c10m_auth_forbidden_total', kind: 'counter', help: "Topics refused with FORBIDDEN: a sub, pub or HTTP publish outside the token's claims." },
  { slot: Stat.AUTH_EXPIRED_CLOSES, name: 'c10m_auth_expired_closes_total', kind: 'counter', help: 'Sessions closed with 4003: their token expired and no new one came in band.' },
  {
    slot: Stat.AUTH_TIMEOUT_CLOSES,
    name: 'c10m_auth_timeout_closes_total',
    kind: 'counter',
    help: 'Sessions closed with 4002: opened without a token, no valid auth command within --auth-timeout-seconds.',
  },
  { slot: Stat.AUTH_GRANTS, name: 'c10m_auth_grants', kind: 'gauge', help: 'Distinct grants (claim sets, shared by the sessions whose tokens name the same patterns) held in memory.' },
  // conflation and idempotent publish (issue 19)
  { slot: Stat.IDEMPOTENCY_KEYS, name: 'c10m_idempotency_keys', kind: 'gauge', help: 'Idempotency keys held for the topics the node owns (memory engine).' },
  {
    slot: Stat.IDEMPOTENCY_KEYS_EVICTED,
    name: 'c10m_idempotency_keys_evicted_total',
    kind: 'counter',
    help: 'Idempotency keys forgotten before their window ended (--idempotency-keys-per-topic reached): a retry of one would be published again.',
  },
  { slot: Stat.IDEMPOTENT_DUPLICATES, name: 'c10m_idempotent_duplicates_total', kind: 'counter', help: 'Publishes answered with the first publish of their idempotency key, not published again.' },
  { slot: Stat.CONFLATION_GROUPS, name: 'c10m_conflation_groups', kind: 'gauge', help: 'Topic and interval pairs with conflating sessions (one timer each at most, whatever the sessions).' },
  {
    slot: Stat.CONFLATED_FRAMES,
    name: 'c10m_conflated_frames_total',
    kind: 'counter',
    help: 'Frames sent by conflation groups (one per group, encoding and interval; each reaches every session of the group).',
  },
  { slot: Stat.CONFLATED_SKIPPED, name: 'c10m_conflated_skipped_total', kind: 'counter', help: 'Messages a conflation group replaced by a later one (stated in the next frame as its skipped count).' },
  // workgroup health
  { slot: Stat.LISTENING, name: 'c10m_workgroup_listening', kind: 'gauge', help: '1 while the workgroup listens on the public port.' },
  { slot: Stat.LOOP_UTILIZATION, name: 'c10m_workgroup_event_loop_utilization', kind: 'gauge', help: "Fraction of the last second the workgroup's event loop was busy (0..1).", reportedOnly: true },
  {
    slot: Stat.LOOP_DELAY_MAX_MS,
    name: 'c10m_workgroup_event_loop_delay_max_seconds',
    kind: 'gauge',
    help: "Longest delay of the workgroup's event loop in the last second (a 10 ms timer's lateness; about 0.01 when never blocked).",
    reportedOnly: true,
    scale: 0.001,
  },
  { slot: Stat.HEAP_USED_BYTES, name: 'c10m_workgroup_heap_used_bytes', kind: 'gauge', help: "V8 heap used by the workgroup's own isolate.", reportedOnly: true },
];

/** The histogram's le bounds in seconds, as label text. Our buckets count latencies below the bound (Prometheus: at most); the difference is below the clock's resolution. */
const LE_SECONDS: readonly string[] = [...LATENCY_BOUNDS_MICROS.map((b) => String(b / 1e6)), '+Inf'];

/** A metric family whose values are computed at scrape time. Registered on a prom-client Registry as a custom collector. */
class ScrapeFamily {
  readonly aggregator = 'sum' as const;
  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: Kind,
    private readonly values: (scrape: Scrape) => Sample[],
    private readonly current: () => Scrape,
  ) {}

  async get(): Promise<{ name: string; help: string; type: Kind; aggregator: 'sum'; values: Sample[] }> {
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values: this.values(this.current()) };
  }
}

export class PromMetrics {
  readonly registry = new Registry();
  /** One snapshot serves every family of one scrape; dropped once the scrape's turn of the event loop ends. */
  private scrape: Scrape | null = null;

  /** options.processes: the node runs --processes (per-process families, process labels). */
  constructor(
    private readonly figures: FigureSource,
    options: { processes?: boolean } = {},
  ) {
    collectDefaultMetrics({ register: this.registry });
    // prom-client lists /proc/self/fd for this one on every scrape: about 50 ms at 19,000
    // sessions. Same name and meaning, counted in microseconds (observability.ts).
    this.registry.removeSingleMetric('process_open_fds');
    this.add('process_open_fds', 'Number of open file descriptors.', 'gauge', (s) => optional(s.process.openDescriptors));
    for (const f of SLOT_FAMILIES) this.add(f.name, f.help, f.kind, (s) => slotSamples(s.stats, f));
    this.add('c10m_publish_to_write_latency_seconds', 'Publish-to-write latency inside the server: from a publish arriving at a workgroup to its frames handed to uWS for writing.', 'histogram', (s) =>
      histogramSamples(s.stats, 'c10m_publish_to_write_latency_seconds', LATENCY_BASE, LATENCY_SUM),
    );
    // the engine
    this.add('c10m_engine_info', 'The engine that sequences and keeps topics: memory (this node alone) or redis (nodes sharing one Redis).', 'gauge', (s) => [
      { value: 1, labels: { engine: engineHealth(s.stats.blocks).kind } },
    ]);
    this.add(
      'c10m_engine_up',
      "1 while the workgroup's engine can sequence publishes (the memory engine always), 0 while Redis is unreachable: publishes get UNAVAILABLE and /readyz answers 503.",
      'gauge',
      (s) => units(s.stats).map((u) => ({ value: engineUp(u.block), labels: u.labels })),
    );
    this.add('c10m_redis_roundtrip_seconds', "Round trip of a publish to Redis (Redis engine): from the publish script sent to Redis's answer, pipelining and queueing included.", 'histogram', (s) =>
      histogramSamples(s.stats, 'c10m_redis_roundtrip_seconds', REDIS_RTT_BASE, REDIS_RTT_SUM),
    );
    this.add('c10m_workgroup_restarts_total', 'Times the supervisor restarted the workgroup after its thread ended.', 'counter', (s) =>
      s.stats.processes ? [{ value: s.stats.processes.reduce((n, p) => n + p.workgroupRestarts, 0) }] : s.stats.restarts.map((r, id) => ({ value: r, labels: { workgroup: id } })),
    );
    this.add('c10m_workgroup_heartbeat_age_seconds', 'Seconds since the workgroup last wrote its once-a-second heartbeat (a stuck event loop grows it).', 'gauge', (s) =>
      s.stats.processes
        ? s.stats.processes.flatMap((p) => (p.heartbeatAgeSeconds === null ? [] : [{ value: p.heartbeatAgeSeconds, labels: { process: p.index } }]))
        : s.stats.heartbeatAgeSeconds.flatMap((age, id) => (age === null ? [] : [{ value: age, labels: { workgroup: id } }])),
    );
    if (options.processes) this.addProcessFamilies();
    this.add('c10m_info', 'The c10m version running.', 'gauge', () => [{ value: 1, labels: { version: VERSION } }]);
    this.add('c10m_workgroups', 'Workgroups configured.', 'gauge', (s) => [{ value: s.stats.blocks.length }]);
    this.add('c10m_workgroups_listening', 'Workgroups listening on the public port.', 'gauge', (s) => [{ value: s.stats.listening }]);
    this.add('c10m_workgroups_down', 'Workgroups that died and are not listening again yet (being restarted; /healthz answers 503 meanwhile).', 'gauge', (s) => [{ value: s.stats.down }]);
    // native-io: arenas (huge pages) and which path it took
    this.add(
      'c10m_arena_bytes',
      'Bytes of live shared arenas (rings, slabs, caches) by the memory they got: hugetlb (MAP_HUGETLB), thp (transparent huge pages), normal pages, or js (the fallback; main thread only).',
      'gauge',
      (s) => {
        const a = s.process.arena;
        return [
          { value: a.hugetlbBytes, labels: { path: 'hugetlb' } },
          { value: a.thpBytes, labels: { path: 'thp' } },
          { value: a.normalBytes, labels: { path: 'normal' } },
          { value: a.jsBytes, labels: { path: 'js' } },
        ];
      },
    );
    this.add('c10m_native_io_info', "native-io's path: native (the addon is loaded) or fallback (pure JS); disabled_by_env is C10M_NATIVE_DISABLED=1.", 'gauge', (s) => [
      { value: 1, labels: { path: s.process.native.loaded ? 'native' : 'fallback', disabled_by_env: String(s.process.native.disabledByEnv) } },
    ]);
    this.add('c10m_hugepages', 'Huge pages reserved by the kernel (vm.nr_hugepages), and of those free.', 'gauge', (s) => {
      const l = s.process.limits;
      const out: Sample[] = [];
      if (l?.nrHugepages != null) out.push({ value: l.nrHugepages, labels: { state: 'total' } });
      if (l?.hugepagesFree != null) out.push({ value: l.hugepagesFree, labels: { state: 'free' } });
      return out;
    });
    this.add('c10m_hugepage_size_bytes', 'Size of one huge page.', 'gauge', (s) => optional(s.process.limits?.hugepageSizeBytes));
    this.add('c10m_transparent_hugepage_info', 'Transparent huge page mode of the kernel.', 'gauge', (s) =>
      s.process.limits?.thpMode ? [{ value: 1, labels: { mode: s.process.limits.thpMode } }] : [],
    );
    // descriptors (every session is one)
    this.add('c10m_open_descriptors', 'File descriptors this process holds (sessions, listen sockets, files).', 'gauge', (s) => optional(s.process.openDescriptors));
    this.add('c10m_descriptor_limit', "This process's RLIMIT_NOFILE (soft: in force; hard: the most it may raise to), and the kernel's fs.nr_open and fs.file-max.", 'gauge', (s) => {
      const l = s.process.limits;
      if (!l) return [];
      const out: Sample[] = [
        { value: l.nofileSoft, labels: { limit: 'soft' } },
        { value: l.nofileHard, labels: { limit: 'hard' } },
      ];
      if (l.fsNrOpen !== null) out.push({ value: l.fsNrOpen, labels: { limit: 'fs_nr_open' } });
      if (l.fsFileMax !== null) out.push({ value: l.fsFileMax, labels: { limit: 'fs_file_max' } });
      return out;
    });
  }

  /** With --processes: the node processes themselves. */
  private addProcessFamilies(): void {
    const each = (s: Scrape, value: (p: NonNullable<StatsSnapshot['processes']>[number]) => number | null): Sample[] =>
      (s.stats.processes ?? []).flatMap((p) => {
        const v = value(p);
        return v === null ? [] : [{ value: v, labels: { process: p.index } }];
      });
    this.add('c10m_processes', 'Node processes configured (--processes).', 'gauge', (s) => [{ value: s.stats.processes?.length ?? 1 }]);
    this.add('c10m_processes_listening', 'Node processes listening on the public port with every workgroup.', 'gauge', (s) => [{ value: (s.stats.processes ?? []).filter((p) => p.listening).length }]);
    this.add('c10m_process_restarts_total', 'Times the top supervisor restarted the node process after it ended.', 'counter', (s) => each(s, (p) => p.restarts));
    this.add('c10m_process_resident_memory_bytes', 'Resident memory of the node process (its main thread and workgroups).', 'gauge', (s) => each(s, (p) => p.rss));
    this.add('c10m_process_open_descriptors', 'File descriptors the node process holds (sessions, listen sockets, files).', 'gauge', (s) => each(s, (p) => p.openDescriptors));
  }

  private add(name: string, help: string, kind: Kind, values: (s: Scrape) => Sample[]): void {
    this.registry.registerMetric(new ScrapeFamily(name, help, kind, values, () => this.current()) as unknown as Metric);
  }

  private current(): Scrape {
    if (this.scrape === null) {
      this.scrape = { stats: this.figures.snapshot(), process: this.figures.processFigures() };
      setImmediate(() => (this.scrape = null));
    }
    return this.scrape;
  }

  /** The exposition text of every family. */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  async serve(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const body = await this.text();
    res.writeHead(200, { 'content-type': this.registry.contentType, 'cache-control': 'no-store' });
    res.end(req.method === 'HEAD' ? undefined : body);
  }
}

function optional(v: number | null | undefined): Sample[] {
  return v === null || v === undefined ? [] : [{ value: v }];
}

/** What the per-unit series are of: each workgroup, or with --processes each process (its workgroups summed). */
function units(s: StatsSnapshot): { labels: Labels; block: Float64Array }[] {
  if (s.processes) return s.processes.map((p) => ({ labels: { process: p.index }, block: p.block }));
  return s.blocks.map((block, id) => ({ labels: { workgroup: id }, block }));
}

/**
 * With --processes, the families that keep a series per process (the label
 * process); every other slot family is one series, the node's (its
 * workgroups combined, server/aggregate.ts). Each series per process is 50
 * at 50 processes: all of them were 3,409 series a scrape.
 */
export const PER_PROCESS_SLOTS: ReadonlySet<Stat> = new Set<Stat>([
  Stat.SESSIONS,
  Stat.SUBSCRIPTIONS,
  Stat.MESSAGES_IN,
  Stat.MESSAGES_OUT,
  Stat.BYTES_OUT,
  Stat.SLOW_CONSUMER_CLOSES,
  Stat.INTERNAL_ERRORS,
  Stat.LISTENING,
  Stat.LOOP_UTILIZATION,
  Stat.LOOP_DELAY_MAX_MS,
  Stat.HEAP_USED_BYTES,
]);

function slotSamples(s: StatsSnapshot, f: SlotFamily): Sample[] {
  const out: Sample[] = [];
  const list = s.processes && !PER_PROCESS_SLOTS.has(f.slot) ? [{ labels: {} as Labels, block: s.total }] : units(s);
  for (const u of list) {
    const v = u.block[f.slot];
    if (f.reportedOnly && v === 0) continue;
    if (f.sse !== undefined) {
      out.push({ value: v, labels: { ...u.labels, transport: 'websocket' } }, { value: u.block[f.sse], labels: { ...u.labels, transport: 'sse' } });
      continue;
    }
    out.push({ value: f.scale === undefined ? v : v * f.scale, labels: u.labels });
  }
  return out;
}

/**
 * One of the blocks' micros histograms (LATENCY_BUCKETS buckets from `base`,
 * their sum at `sum`; protocol/stats.ts): cumulative _bucket series per
 * workgroup, then _sum (seconds) and _count.
 */
function histogramSamples(s: StatsSnapshot, name: string, base: number, sum: number): Sample[] {
  const out: Sample[] = [];
  // With --processes, the node's histogram alone: per process it would be 19 series times 50.
  const list = s.processes ? [{ labels: {} as Labels, block: s.total }] : units(s);
  for (const { labels, block: b } of list) {
    let cumulative = 0;
    for (let i = 0; i < LATENCY_BUCKETS; i++) {
      cumulative += b[base + i];
      out.push({ metricName: `${name}_bucket`, value: cumulative, labels: { le: LE_SECONDS[i], ...labels } });
    }
    out.push({ metricName: `${name}_sum`, value: b[sum] / 1e6, labels });
    // _count is the +Inf bucket, so the two agree even if the writer was between its two stores.
    out.push({ metricName: `${name}_count`, value: cumulative, labels });
  }
  return out;
}
