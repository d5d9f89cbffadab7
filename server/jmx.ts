// /jmx: the node's figures as one JSON object, under the attribute names an
// operator of a JMX-managed pub/sub server knows (ConnectedSessions,
// InPublishMessagesPerSecond, OutPublishMessagesPerSecond, ...), with a
// per-workgroup breakdown. The dashboard polls it once a second.
//
// Rates and latency percentiles cover a sliding window: a main-thread timer
// (unref'd) copies the stats blocks once a second and keeps the last
// JMX_WINDOW_SECONDS of copies; a request reads the blocks again and
// compares with the oldest copy still inside the window, so a rate covers
// between JMX_WINDOW_SECONDS - 1 and JMX_WINDOW_SECONDS seconds ending now
// (WindowSeconds in the answer says exactly how long). Totals and gauges
// are read at the request. Right after start the window is shorter.
import type http from 'node:http';
import { bucketPercentile, LATENCY_BASE, LATENCY_BUCKETS, LATENCY_COUNT, LATENCY_SUM, REDIS_RTT_BASE, REDIS_RTT_COUNT, REDIS_RTT_SUM, Stat } from '../protocol/stats';
import type { EngineKind } from '../shm/workgroup-init';
import { sendJson } from './admin';
import { EngineState, engineHealth } from './engine-health';
import type { FigureSource, StatsSnapshot } from './figures';

/** Length of the sliding window for rates and percentiles, in seconds. */
export const JMX_WINDOW_SECONDS = 10;
/** How often the window's samples are taken. */
export const JMX_SAMPLE_INTERVAL_MS = 1000;

export interface JmxOptions {
  windowSeconds?: number;
  sampleIntervalMs?: number;
}

/** Latency percentiles of one window, in microseconds. */
interface Latency {
  LatencySamples: number;
  LatencyMeanMicros: number | null;
  LatencyP50Micros: number | null;
  LatencyP90Micros: number | null;
  LatencyP99Micros: number | null;
  LatencyP999Micros: number | null;
}

/**
 * The engine's figures (Redis engine; with the memory engine State is Up and
 * every count 0). Counts are totals since the node started; rates,
 * PipelinedCommandsPerFlush and the round-trip percentiles cover the window.
 */
export interface JmxEngineFigures {
  /** Unavailable while Redis is unreachable (publishes get UNAVAILABLE; for the node: in any workgroup). */
  State: 'Up' | 'Unavailable';
  /** Topic channels held subscribed in Redis now. */
  RedisSubscriptions: number;
  RedisMessagesReceived: number;
  RedisBytesReceived: number;
  RedisMessagesReceivedPerSecond: number;
  RedisBytesReceivedPerSecond: number;
  RedisCommands: number;
  /** Event-loop turns that sent commands (one pipelined write each). */
  RedisFlushes: number;
  /** Commands per flush over the window; null when no command was sent in it. */
  PipelinedCommandsPerFlush: number | null;
  RedisReconnects: number;
  PublishesUnavailable: number;
  /** Messages missed live and recovered from Redis's streams. */
  RecoveredMessages: number;
  /** Messages missed live that the streams no longer held (reported to subscribers as a gap). */
  LostMessages: number;
  /** Round trips of publishes to Redis in the window, in micros (upper bounds of histogram buckets, as the latency percentiles). */
  RedisRoundTripSamples: number;
  RedisRoundTripMeanMicros: number | null;
  RedisRoundTripP50Micros: number | null;
  RedisRoundTripP90Micros: number | null;
  RedisRoundTripP99Micros: number | null;
}

export interface JmxEngine extends JmxEngineFigures {
  Type: EngineKind;
  /** Workgroups that cannot reach Redis now. */
  WorkgroupsUnavailable: number;
}

export interface JmxWorkgroup extends Latency {
  Id: number;
  /** With --processes: the node process it runs in. */
  Process?: number;
  Listening: boolean;
  Restarts: number;
  ConnectedSessions: number;
  Subscriptions: number;
  Topics: number;
  InPublishMessages: number;
  OutPublishMessages: number;
  OutPublishBytes: number;
  InPublishMessagesPerSecond: number;
  OutPublishMessagesPerSecond: number;
  OutPublishBytesPerSecond: number;
  SlowConsumerDisconnects: number;
  /** Fraction of the last second its event loop was busy, 0..1; null until the workgroup reports it. */
  EventLoopUtilization: number | null;
  /** The longest event-loop delay of the last second, ms (10 ms resolution: a loop never blocked reads about 10); null until reported. */
  EventLoopDelayMaxMs: number | null;
  HeapUsed: number | null;
  HeartbeatAgeSeconds: number | null;
  Engine: JmxEngineFigures;
}

export interface JmxDocument extends Latency {
  Name: string;
  Timestamp: number;
  UptimeSeconds: number;
  /** The span the rates, CPU and percentiles cover, in seconds (up to the configured window). */
  WindowSeconds: number;
  WindowStartTimestamp: number;
  ConnectedSessions: number;
  SessionsOpened: number;
  SessionsClosed: number;
  SessionsRejected: number;
  /** Of SessionsRejected: over --admission-rate (503 RETRY_LATER), and over --max-sessions-per-second-per-ip (429). */
  AdmissionRefused: number;
  SessionRateRefused: number;
  /** Admission tickets honored, and presented but not honored (forged, used, expired, another workgroup's). */
  AdmissionTicketsHonored: number;
  AdmissionTicketsRefused: number;
  /** --auth jwt: tokens refused (upgrade 401, auth command, HTTP publish) and accepted (upgrade, auth command). */
  AuthFailures: number;
  AuthAccepted: number;
  /** Topics refused with FORBIDDEN (sub, pub, HTTP publish). */
  AuthForbidden: number;
  /** Sessions closed for their token: expired (4003), no auth command in time (4002). */
  AuthExpiredCloses: number;
  AuthTimeoutCloses: number;
  /** Distinct grants (claim sets) held in memory, over the workgroups. */
  AuthGrants: number;
  Subscriptions: number;
  Topics: number;
  InPublishMessages: number;
  HttpPublishMessages: number;
  OutPublishMessages: number;
  OutPublishBytes: number;
  InBytes: number;
  InPublishMessagesPerSecond: number;
  OutPublishMessagesPerSecond: number;
  OutPublishBytesPerSecond: number;
  SlowConsumerDisconnects: number;
  ProtocolErrors: number;
  InternalErrors: number;
  RingRecords: number;
  RingFullEvents: number;
  RingSpillRecords: number;
  RingSpillPeakBytes: number;
  RingSpillBytes: number;
  PublishesOverloaded: number;
  RateLimitedCommands: number;
  RateLimitDisconnects: number;
  TopicsRefused: number;
  TopicsReleased: number;
  AcceptPauses: number;
  WorkgroupsNotAccepting: number;
  DeliveryErrors: number;
  LogsSuppressed: number;
  CacheMessages: number;
  CacheBytes: number;
  CacheEvictions: number;
  ReplayedMessages: number;
  ResumesRecovered: number;
  ResumesNotRecovered: number;
  WorkgroupCount: number;
  WorkgroupsListening: number;
  WorkgroupRestarts: number;
  /** Process CPU over the window, every thread: 100 is one core busy. */
  CpuPercent: number;
  CpuCores: number;
  /** Resident memory of the whole process. */
  RSS: number;
  /** V8 heap of the main thread (control plane) only: each workgroup has its own, in Workgroups[].HeapUsed. */
  HeapUsed: number;
  HeapTotal: number;
  /** Sum of the workgroups' reported heaps. */
  WorkgroupHeapUsed: number;
  OpenFileDescriptors: number | null;
  MaxFileDescriptors: number | null;
  HardMaxFileDescriptors: number | null;
  NativeIo: 'native' | 'fallback';
  HugePageArenaBytes: number;
  TransparentHugePageArenaBytes: number;
  NormalPageArenaBytes: number;
  Engine: JmxEngine;
  Workgroups: JmxWorkgroup[];
  /** With --processes: the node processes (Workgroups lists the workgroups of all, process by process; RSS and descriptors are their sum). */
  Processes?: JmxProcess[];
}

export interface JmxProcess {
  Id: number;
  Pid: number;
  Listening: boolean;
  Restarts: number;
  Workgroups: number;
  ConnectedSessions: number;
  Subscriptions: number;
  InPublishMessages: number;
  OutPublishMessages: number;
  RSS: number | null;
  HeapUsed: number | null;
  OpenFileDescriptors: number | null;
  HeartbeatAgeSeconds: number | null;
  OutPublishMessagesPerSecond: number;
  /** Its busiest workgroup's loop (the maximum, server/aggregate.ts), 0..1, and its longest loop delay of the last second, ms; null until reported. */
  EventLoopUtilization: number | null;
  EventLoopDelayMaxMs: number | null;
}

export class JmxView {
  readonly windowMs: number;
  private readonly sampleIntervalMs: number;
  /** Oldest first; at most window / interval + 2 of them. */
  private samples: StatsSnapshot[] = [];
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly figures: FigureSource,
    options: JmxOptions = {},
  ) {
    this.windowMs = (options.windowSeconds ?? JMX_WINDOW_SECONDS) * 1000;
    this.sampleIntervalMs = options.sampleIntervalMs ?? JMX_SAMPLE_INTERVAL_MS;
  }

  /** Starts the sampling timer; it never keeps the process alive. */
  start(): void {
    if (this.timer) return;
    this.sample();
    this.timer = setInterval(() => this.sample(), this.sampleIntervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  private sample(): void {
    const s = this.figures.snapshot();
    this.samples.push(s);
    // Keep one sample older than the window's start, so that a window always has a base.
    const keepFrom = s.monoMs - this.windowMs - this.sampleIntervalMs;
    while (this.samples.length > 2 && this.samples[1].monoMs < keepFrom) this.samples.shift();
  }

  /** The oldest sample within the window ending at `now` (a little slack for timer drift), or null. */
  private base(now: StatsSnapshot): StatsSnapshot | null {
    const from = now.monoMs - this.windowMs - Math.min(250, this.sampleIntervalMs / 4);
    for (const s of this.samples) if (s.monoMs >= from && s.monoMs < now.monoMs) return s;
    return null;
  }

  render(): JmxDocument {
    const now = this.figures.snapshot();
    const proc = this.figures.processFigures();
    const base = this.base(now) ?? now;
    const spanMs = now.monoMs - base.monoMs;
    const t = now.total;
    const b = base.total;
    const rate = (slot: Stat, cur: Float64Array, old: Float64Array) => (spanMs < 1 ? 0 : (Math.max(0, cur[slot] - old[slot]) * 1000) / spanMs);
    const cpuMicros = now.cpu.user + now.cpu.system - (base.cpu.user + base.cpu.system);
    // With --processes, the blocks are listed process by process: which one each workgroup belongs to.
    const processOf = now.processes?.flatMap((p) => new Array<number>(p.workgroups).fill(p.index));
    const workgroups: JmxWorkgroup[] = now.blocks.map((blk, id) => {
      const old = base.blocks[id] ?? blk;
      const elu = blk[Stat.LOOP_UTILIZATION];
      const heap = blk[Stat.HEAP_USED_BYTES];
      return {
        Id: id,
        ...(processOf ? { Process: processOf[id] } : {}),
        Listening: blk[Stat.LISTENING] === 1,
        Restarts: now.restarts[id],
        ConnectedSessions: blk[Stat.SESSIONS],
        Subscriptions: blk[Stat.SUBSCRIPTIONS],
        Topics: blk[Stat.TOPICS_OWNED],
        InPublishMessages: blk[Stat.MESSAGES_IN],
        OutPublishMessages: blk[Stat.MESSAGES_OUT],
        OutPublishBytes: blk[Stat.BYTES_OUT],
        InPublishMessagesPerSecond: rate(Stat.MESSAGES_IN, blk, old),
        OutPublishMessagesPerSecond: rate(Stat.MESSAGES_OUT, blk, old),
        OutPublishBytesPerSecond: rate(Stat.BYTES_OUT, blk, old),
        SlowConsumerDisconnects: blk[Stat.SLOW_CONSUMER_CLOSES],
        EventLoopUtilization: elu > 0 ? elu : null,
        EventLoopDelayMaxMs: blk[Stat.LOOP_DELAY_MAX_MS] > 0 ? blk[Stat.LOOP_DELAY_MAX_MS] : null,
        HeapUsed: heap > 0 ? heap : null,
        HeartbeatAgeSeconds: now.heartbeatAgeSeconds[id],
        ...windowLatency(blk, old),
        Engine: engineFigures(blk, old, spanMs, blk[Stat.ENGINE_STATE] === EngineState.REDIS_UNREACHABLE),
      };
    });
    const limits = proc.limits;
    const engine = engineHealth(now.blocks);
    return {
      Name: 'c10m:type=Server',
      Timestamp: now.wallMs,
      UptimeSeconds: proc.uptimeSeconds,
      WindowSeconds: spanMs / 1000,
      WindowStartTimestamp: base.wallMs,
      ConnectedSessions: t[Stat.SESSIONS],
      SessionsOpened: t[Stat.SESSIONS_OPENED],
      SessionsClosed: t[Stat.SESSIONS_CLOSED],
      SessionsRejected: t[Stat.SESSIONS_REJECTED],
      AdmissionRefused: t[Stat.ADMISSION_REFUSED],
      AdmissionTicketsHonored: t[Stat.ADMISSION_TICKETS_HONORED],
      AdmissionTicketsRefused: t[Stat.ADMISSION_TICKETS_REFUSED],
      SessionRateRefused: t[Stat.SESSION_RATE_REFUSED],
      AuthFailures: t[Stat.AUTH_FAILURES],
      AuthAccepted: t[Stat.AUTH_ACCEPTED],
      AuthForbidden: t[Stat.AUTH_FORBIDDEN],
      AuthExpiredCloses: t[Stat.AUTH_EXPIRED_CLOSES],
      AuthTimeoutCloses: t[Stat.AUTH_TIMEOUT_CLOSES],
      AuthGrants: t[Stat.AUTH_GRANTS],
      Subscriptions: t[Stat.SUBSCRIPTIONS],
      Topics: t[Stat.TOPICS_OWNED],
      InPublishMessages: t[Stat.MESSAGES_IN],
      HttpPublishMessages: t[Stat.HTTP_PUBLISHES],
      OutPublishMessages: t[Stat.MESSAGES_OUT],
      OutPublishBytes: t[Stat.BYTES_OUT],
      InBytes: t[Stat.BYTES_IN],
      InPublishMessagesPerSecond: rate(Stat.MESSAGES_IN, t, b),
      OutPublishMessagesPerSecond: rate(Stat.MESSAGES_OUT, t, b),
      OutPublishBytesPerSecond: rate(Stat.BYTES_OUT, t, b),
      ...windowLatency(t, b),
      SlowConsumerDisconnects: t[Stat.SLOW_CONSUMER_CLOSES],
      ProtocolErrors: t[Stat.PROTOCOL_ERRORS],
      InternalErrors: t[Stat.INTERNAL_ERRORS],
      RingRecords: t[Stat.RING_RECORDS_OUT],
      RingFullEvents: t[Stat.RING_FULL_EVENTS],
      RingSpillRecords: t[Stat.RING_SPILL_RECORDS],
      RingSpillPeakBytes: t[Stat.RING_SPILL_PEAK_BYTES],
      RingSpillBytes: t[Stat.RING_SPILL_BYTES],
      PublishesOverloaded: t[Stat.PUBLISHES_OVERLOADED],
      RateLimitedCommands: t[Stat.RATE_LIMITED],
      RateLimitDisconnects: t[Stat.RATE_LIMIT_CLOSES],
      TopicsRefused: t[Stat.TOPICS_REFUSED],
      TopicsReleased: t[Stat.TOPICS_RELEASED],
      AcceptPauses: t[Stat.ACCEPT_PAUSES],
      WorkgroupsNotAccepting: t[Stat.ACCEPTING_PAUSED],
      DeliveryErrors: t[Stat.DELIVERY_ERRORS],
      LogsSuppressed: t[Stat.LOGS_SUPPRESSED],
      CacheMessages: t[Stat.CACHE_MESSAGES],
      CacheBytes: t[Stat.CACHE_BYTES],
      CacheEvictions: t[Stat.CACHE_EVICTIONS],
      ReplayedMessages: t[Stat.REPLAYED_MESSAGES],
      ResumesRecovered: t[Stat.RESUMES_RECOVERED],
      ResumesNotRecovered: t[Stat.RESUMES_NOT_RECOVERED],
      WorkgroupCount: now.blocks.length,
      WorkgroupsListening: now.listening,
      WorkgroupRestarts: now.totalRestarts,
      CpuPercent: spanMs < 1 ? 0 : cpuMicros / 10 / spanMs,
      CpuCores: proc.cores,
      RSS: proc.memory.rss,
      HeapUsed: proc.memory.heapUsed,
      HeapTotal: proc.memory.heapTotal,
      WorkgroupHeapUsed: t[Stat.HEAP_USED_BYTES],
      OpenFileDescriptors: proc.openDescriptors,
      MaxFileDescriptors: limits && Number.isFinite(limits.nofileSoft) ? limits.nofileSoft : null,
      HardMaxFileDescriptors: limits && Number.isFinite(limits.nofileHard) ? limits.nofileHard : null,
      NativeIo: proc.native.loaded ? 'native' : 'fallback',
      HugePageArenaBytes: proc.arena.hugetlbBytes,
      TransparentHugePageArenaBytes: proc.arena.thpBytes,
      NormalPageArenaBytes: proc.arena.normalBytes,
      Engine: { Type: engine.kind, WorkgroupsUnavailable: engine.unreachable.length, ...engineFigures(t, b, spanMs, engine.unreachable.length > 0) },
      Workgroups: workgroups,
      ...(now.processes ? { Processes: now.processes.map((p, i) => jmxProcess(p, base.processes?.[i]?.block ?? p.block, spanMs)) } : {}),
    };
  }

  serve(_req: http.IncomingMessage, res: http.ServerResponse): void {
    sendJson(res, 200, this.render());
  }
}

function jmxProcess(p: NonNullable<StatsSnapshot['processes']>[number], old: Float64Array, spanMs: number): JmxProcess {
  const elu = p.block[Stat.LOOP_UTILIZATION];
  const delay = p.block[Stat.LOOP_DELAY_MAX_MS];
  return {
    Id: p.index,
    Pid: p.pid,
    Listening: p.listening,
    Restarts: p.restarts,
    Workgroups: p.workgroups,
    ConnectedSessions: p.block[Stat.SESSIONS],
    Subscriptions: p.block[Stat.SUBSCRIPTIONS],
    InPublishMessages: p.block[Stat.MESSAGES_IN],
    OutPublishMessages: p.block[Stat.MESSAGES_OUT],
    RSS: p.rss,
    HeapUsed: p.heapUsed,
    OpenFileDescriptors: p.openDescriptors,
    HeartbeatAgeSeconds: p.heartbeatAgeSeconds,
    OutPublishMessagesPerSecond: spanMs < 1 ? 0 : (Math.max(0, p.block[Stat.MESSAGES_OUT] - old[Stat.MESSAGES_OUT]) * 1000) / spanMs,
    EventLoopUtilization: elu > 0 ? elu : null,
    EventLoopDelayMaxMs: delay > 0 ? delay : null,
  };
}

/**
 * Percentiles of the latencies recorded between two reads of a block, by
 * protocol/stats.ts's bucketPercentile: the upper bound of the bucket the rank
 * falls in (so "at most"), in micros; null when the window has no sample; the
 * last bound (1 s, "at least") when the rank lies beyond it.
 */
export function windowLatency(cur: Float64Array, old: Float64Array): Latency {
  const w = windowHistogram(cur, old, LATENCY_BASE, LATENCY_SUM, LATENCY_COUNT);
  return {
    LatencySamples: w.samples,
    LatencyMeanMicros: w.mean,
    LatencyP50Micros: w.at(0.5),
    LatencyP90Micros: w.at(0.9),
    LatencyP99Micros: w.at(0.99),
    LatencyP999Micros: w.at(0.999),
  };
}

/** One of the blocks' micros histograms (buckets from `base`, then sum and count; protocol/stats.ts) between two reads. */
function windowHistogram(cur: Float64Array, old: Float64Array, base: number, sumSlot: number, countSlot: number): { samples: number; mean: number | null; at(p: number): number | null } {
  const samples = Math.max(0, cur[countSlot] - old[countSlot]);
  const sum = cur[sumSlot] - old[sumSlot];
  const deltas = new Float64Array(LATENCY_BUCKETS);
  for (let i = 0; i < LATENCY_BUCKETS; i++) deltas[i] = Math.max(0, cur[base + i] - old[base + i]);
  return { samples, mean: samples > 0 ? sum / samples : null, at: (p) => bucketPercentile(deltas, p) };
}

/** The engine's figures of a block (or of the node's total) between two reads `spanMs` apart. */
export function engineFigures(cur: Float64Array, old: Float64Array, spanMs: number, unavailable: boolean): JmxEngineFigures {
  const delta = (slot: Stat) => Math.max(0, cur[slot] - old[slot]);
  const rate = (slot: Stat) => (spanMs < 1 ? 0 : (delta(slot) * 1000) / spanMs);
  const flushes = delta(Stat.REDIS_FLUSHES);
  const rtt = windowHistogram(cur, old, REDIS_RTT_BASE, REDIS_RTT_SUM, REDIS_RTT_COUNT);
  return {
    State: unavailable ? 'Unavailable' : 'Up',
    RedisSubscriptions: cur[Stat.REDIS_SUBSCRIPTIONS],
    RedisMessagesReceived: cur[Stat.REDIS_MESSAGES_IN],
    RedisBytesReceived: cur[Stat.REDIS_BYTES_IN],
    RedisMessagesReceivedPerSecond: rate(Stat.REDIS_MESSAGES_IN),
    RedisBytesReceivedPerSecond: rate(Stat.REDIS_BYTES_IN),
    RedisCommands: cur[Stat.REDIS_COMMANDS],
    RedisFlushes: cur[Stat.REDIS_FLUSHES],
    PipelinedCommandsPerFlush: flushes > 0 ? delta(Stat.REDIS_COMMANDS) / flushes : null,
    RedisReconnects: cur[Stat.REDIS_RECONNECTS],
    PublishesUnavailable: cur[Stat.PUBLISHES_UNAVAILABLE],
    RecoveredMessages: cur[Stat.REDIS_RECOVERED],
    LostMessages: cur[Stat.REDIS_LOST],
    RedisRoundTripSamples: rtt.samples,
    RedisRoundTripMeanMicros: rtt.mean,
    RedisRoundTripP50Micros: rtt.at(0.5),
    RedisRoundTripP90Micros: rtt.at(0.9),
    RedisRoundTripP99Micros: rtt.at(0.99),
  };
}
