// A workgroup: one uWebSockets.js App on the public port and the parts it
// wires together: its sessions in a slab and their commands, the owner of
// the topics hashed to it (workgroups/owner.ts, workgroups/replay.ts), the
// subscriber side that delivers to its sessions (workgroups/delivery.ts),
// the sessions themselves and the accept side (workgroups/sessions.ts), and
// its rings to every other workgroup (workgroups/links.ts).
//
// How a message travels (docs/ARCHITECTURE.md, "The publishing path"):
//   session in A ──pub──▶ A ──OwnerPort.publish──▶ owner O: seq, cache, snapshot
//   O ──SubscriberPort.deliver──▶ every workgroup W whose bit is set in the topic's interest
//   W: one uWS publish per encoding with subscribers (the frame encoded once)
//   O ──SubscriberPort.ack──▶ A ──reply──▶ session (when the publish asked for an ack)
// How a subscription takes effect without a gap or a duplicate:
//   A ──OwnerPort.subscribe──▶ O: interest bit set for A; replay or the
//   snapshot; then subDone(epoch, seq). Rings are FIFO, so every deliver
//   that O sends A after subDone has seq > that seq, and A subscribes the
//   session in uWS exactly when it reads subDone.
// A port to this workgroup is the object itself (a direct call); to another,
// its ring link. Nothing here posts messages between threads: rings only.
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { getHeapStatistics } from 'node:v8';
import { allocShared, allocSharedAsync } from '../native-io';
import { loadUws, type TemplatedApp, type Uws } from '../native-io/uws';
import { CloseCode, CloseReason, ErrorCode } from '../protocol/errors';
import { nowMicros } from '../protocol/frame';
import { collectGarbage, IdleGc } from '../shm/heap';
import { Stat } from '../protocol/stats';
import { MessageCache } from './cache';
import { HttpPublishEndpoint } from './http-publish';
import { LogLimiter, type Logger } from './log';
import type { WorkgroupInit, WorkgroupOptions } from '../shm/workgroup-init';
import { Commands, ENVELOPE_BYTES, type CommandsHost } from './commands';
import { Delivery, type DeliveryHost, type SessionData } from './delivery';
import { Entitlement } from './entitlement';
import { Links, type LinkHost } from './links';
import { Owner } from './owner';
import { PatternOwner } from './pattern-owner';
import { PatternSubs } from './pattern-subs';
import { RedisOwner } from './redis-owner';
import { Sessions, SLOW_CHECK_MS, type SessionsHost } from './sessions';
import { SessionSlab } from './slab';
import { SseEndpoint } from './sse';
import { registerStaticRoutes } from './static';
import { LocalTopics, TopicTable, ownerOf } from './topics';

/** A workgroup whose heartbeat (written every second) is older than this is stalled or restarting. */
const OWNER_STALE_MS = 2500;
/** Longest a workgroup waits for its Redis connection before it listens anyway (Redis went away since the start check). */
const REDIS_START_WAIT_MS = 5000;
/** Atomics.wait's word for short sleeps in awaitAck (nobody notifies it). */
const WAIT_WORD = new Int32Array(new SharedArrayBuffer(4));

export class Workgroup implements LinkHost, DeliveryHost, CommandsHost, SessionsHost {
  readonly id: number;
  readonly count: number;
  readonly options: WorkgroupOptions;
  readonly stats: Float64Array;
  readonly slab: SessionSlab;
  readonly topics = new TopicTable();
  readonly local = new LocalTopics();
  readonly cache: MessageCache;
  /** Error logs, at most a few lines a minute per cause. */
  readonly errors: LogLimiter;
  private readonly uws: Uws;
  readonly uwsNative: boolean;
  private uwsApp: TemplatedApp;
  private draining = false;
  private closed = false;
  private heartbeat: NodeJS.Timeout | null = null;
  private slowCheck: NodeJS.Timeout | null = null;
  /** Our rings to and from the other workgroups: the ring side of both ports. */
  private readonly links: Links;
  /** The owner role for the topics this workgroup owns: in memory, or (--engine redis) the node's cache and replays under the Redis owner. */
  private readonly owner: Owner;
  /** The Redis engine (--engine redis): sequencing and history in Redis; null with the memory engine. */
  private readonly redis: RedisOwner | null;
  /** The subscriber side: deliveries, replays, acks, and what waits for an owner's answer. */
  private readonly delivery: Delivery;
  /** One session's commands. */
  private readonly commands: Commands;
  /** --auth jwt: what each session may do (its grant, its token's expiry). */
  private readonly entitlement: Entitlement;
  /** The sessions: their sockets, upgrade, open and close, the slow-consumer sweep, and the accept side. */
  private readonly sessions: Sessions;
  readonly httpPublish: HttpPublishEndpoint;
  /** GET /v1/sse: Server-Sent Events streams. */
  private readonly sse: SseEndpoint;
  private readonly restarts: number;
  // Figures read from objects that count for themselves, as of the last tick (to add deltas to counters).
  private lastEvictions = 0;
  private readonly idleGc = new IdleGc(Date.now());
  private elu = performance.eventLoopUtilization();
  /** The loop's delays (a 10 ms timer's lateness): the longest of each second is reported, then reset. */
  private readonly loopDelay = monitorEventLoopDelay({ resolution: 10 });
  nowSec = Math.floor(Date.now() / 1000);

  constructor(
    init: WorkgroupInit,
    readonly log: Logger,
  ) {
    this.loopDelay.enable();
    this.id = init.id;
    this.count = init.count;
    this.options = init.options;
    this.restarts = init.restarts;
    this.stats = new Float64Array(init.stats);
    this.errors = new LogLimiter(log, () => this.stats[Stat.LOGS_SUPPRESSED]++);
    const load = loadUws(init.options.allowSlowFallback);
    this.uws = load.uws;
    this.uwsNative = load.native;
    if (!load.native) this.log.warn({ reason: load.nativeError }, 'uWebSockets.js is running on its SLOW pure-JS fallback (--allow-slow-fallback)');
    // Session slabs and cache arenas come from native-io (huge pages where the kernel gives them).
    const arena = (bytes: number): SharedArrayBuffer => allocShared(bytes).buffer;
    this.slab = new SessionSlab(arena);
    const o = init.options;
    this.cache = new MessageCache({
      maxMessagesPerTopic: o.cacheMessages,
      maxAgeSeconds: o.cacheSeconds,
      maxBytesPerTopic: o.cacheTopicBytes,
      maxTotalBytes: Math.max(o.cacheBytes, 64 * 1024),
      arenaChunkBytes: arenaChunkFor(o.maxPayloadBytes),
      allocate: arena,
      // The next segment mapped and faulted in on a pool thread, not in the middle of a publish.
      prefetch: (bytes) => allocSharedAsync(bytes).then((a) => a.buffer),
    });
    // Gauges start from zero; counters continue across restarts.
    for (const g of [
      Stat.SESSIONS,
      Stat.SUBSCRIPTIONS,
      Stat.TOPICS_OWNED,
      Stat.TOPICS_FULL,
      Stat.ACCEPTING_PAUSED,
      Stat.LISTENING,
      Stat.CACHE_MESSAGES,
      Stat.CACHE_BYTES,
      Stat.RING_SPILL_RECORDS,
      Stat.RING_SPILL_PEAK_BYTES,
      Stat.RING_SPILL_BYTES,
      Stat.ENGINE_STATE,
      Stat.REDIS_SUBSCRIPTIONS,
      Stat.AUTH_GRANTS,
      Stat.PATTERN_SUBSCRIPTIONS,
    ])
      this.stats[g] = 0;

    this.links = new Links(init, this);
    this.entitlement = new Entitlement(init.options.auth, this.slab);
    this.sessions = new Sessions(this, this.uws, init.ipTables, this.links, this.entitlement);
    this.delivery = new Delivery(this, this.sessions);
    const o2 = this.options;
    const idem = { idempotencyWindowSeconds: o2.idempotencyWindowSeconds, idempotencyKeysPerTopic: o2.idempotencyKeysPerTopic };
    this.owner = new Owner(
      this.id,
      this.topics,
      this.cache,
      this.stats,
      { maxTopics: o2.maxTopics, cacheSeconds: o2.cacheSeconds, snapshotTtlSeconds: o2.snapshotTtlSeconds, keepRow: (tid) => this.redis !== null && this.redis.keepRow(tid), ...idem },
      this.links,
      { corked: (token, write) => this.delivery.corkReplay(token, write) },
      (err) => this.failed('replay', err),
    );
    this.redis =
      o2.engine === 'redis'
        ? new RedisOwner(
            this.owner,
            this.topics,
            this.links,
            this.stats,
            o2.maxTopics,
            { cacheMessages: o2.cacheMessages, cacheSeconds: o2.cacheSeconds, snapshotTtlSeconds: o2.snapshotTtlSeconds, ...idem },
            o2.redis,
            this.log,
            // Connection errors are the network's state, not our bugs: logged (rate-limited), not counted as internal errors.
            (cause, err) => this.errors.warn(cause, { err: (err as Error)?.message ?? String(err) }, `redis: ${cause} failed`),
          )
        : null;
    this.links.attach(this.redis ?? this.owner, this.delivery);
    this.commands = new Commands(this, this.delivery, this.links, this.sessions, this.entitlement);
    this.wirePatterns();
    this.httpPublish = new HttpPublishEndpoint({
      stats: this.stats,
      log: this.log,
      options: this.options,
      count: this.count,
      maxBodyBytes: this.options.maxPayloadBytes + ENVELOPE_BYTES,
      isDraining: () => this.isDraining(),
      overloaded: () => this.links.overloaded(),
      makePublish: (topic, encoding, data, retain, ts, raw) => this.commands.makePublish(topic, encoding, data, retain, ts, raw),
      submit: (req, ex) => {
        const token = this.commands.takeToken();
        this.delivery.acks.set(token, { slot: 0, generation: 0, id: null, res: ex.res, http: ex, createdMs: Date.now(), silent: false });
        this.commands.routePublish(req, token);
        return token;
      },
      ownerResponsive: (topic) => {
        const owner = ownerOf(topic, this.count);
        return owner === this.id || Date.now() - this.links.statsOf(owner)[Stat.HEARTBEAT_MS] < OWNER_STALE_MS;
      },
      awaitAck: (token, timeoutMs) => this.awaitAck(token, timeoutMs),
      asyncAcks: this.redis !== null,
      entitlement: this.entitlement,
      nowSec: () => this.nowSec,
      isOpen: () => this.isOpen(),
    });
    this.sse = new SseEndpoint(this, {
      entitlement: this.entitlement,
      takeToken: () => this.commands.takeToken(),
      owner: (w) => this.links.owner(w),
      hasLocalInterest: (topic) => this.sessions.hasLocalInterest(topic),
      dropInterest: (topic) => this.sessions.dropInterest(topic),
    });
    this.delivery.sse = this.sse;
    this.uwsApp = this.buildApp();
    this.sessions.attach(this.uwsApp, this.delivery);
  }

  private buildApp(): TemplatedApp {
    const o = this.options;
    const app = this.uws.App();
    app.ws<SessionData>('/v1/ws', {
      // uWS cuts a frame over its limit at the TCP level (the client sees 1006). We let frames up to
      // twice our limit through so that most oversize frames get a proper 1009 close from us.
      maxPayloadLength: 2 * (o.maxPayloadBytes + ENVELOPE_BYTES),
      // Our slow-consumer check closes a session over --max-backpressure-bytes with 4000; uWS drops
      // the connection at once only past this hard limit (room for a replay on top of the soft one).
      maxBackpressure: hardBackpressure(o),
      closeOnBackpressureLimit: 1 as unknown as number,
      idleTimeout: o.idleTimeoutSeconds,
      sendPingsAutomatically: true,
      // Nothing thrown may cross into uWS (it would end the workgroup): every handler is guarded here.
      upgrade: (res, req, context) => {
        try {
          this.sessions.onUpgrade(res, req, context);
        } catch (err) {
          this.failed('upgrade', err);
          res.writeStatus('500 Internal Server Error').end();
        }
      },
      open: (ws) => {
        try {
          this.sessions.onOpen(ws);
        } catch (err) {
          this.failed('open', err);
          ws.end(CloseCode.INTERNAL_ERROR, CloseReason[CloseCode.INTERNAL_ERROR]);
        }
      },
      message: (ws, message, isBinary) => this.commands.onMessage(ws, message, isBinary),
      close: (ws, code) => {
        try {
          this.sessions.onClose(ws, code);
        } catch (err) {
          this.failed('close', err);
        }
      },
      subscription: (_ws, key, newCount) => {
        try {
          this.sessions.onSubscriptionCount(key, newCount);
        } catch (err) {
          this.failed('subscription', err);
        }
      },
    });
    this.httpPublish.register(app);
    this.sse.register(app);
    registerStaticRoutes(app);
    app.any('/*', (res, req) => {
      res
        .writeStatus('404 Not Found')
        .writeHeader('content-type', 'application/json')
        .end(JSON.stringify({ error: { code: ErrorCode.NOT_FOUND, message: `no route for ${req.getMethod().toUpperCase()} ${req.getUrl()}` } }));
    });
    return app;
  }

  /** Counts and logs (rate-limited) an exception caught at the edge of a callback. */
  failed(cause: string, err: unknown): void {
    this.stats[Stat.INTERNAL_ERRORS]++;
    this.errors.error(cause, { err }, `${cause} handler failed`);
  }

  listen(onListening: (port: number) => void, onFailed: (error: string) => void, onAccepting: (accepting: boolean) => void = () => {}): void {
    // With Redis, sessions are taken once this workgroup's connection is up (the control plane checked Redis
    // at start: this is milliseconds), so that the first subscriptions and publishes are not refused.
    if (this.redis !== null) {
      this.redis.store.whenUp(REDIS_START_WAIT_MS).then(
        () => this.listenNow(onListening, onFailed, onAccepting),
        (err) => onFailed(String(err)),
      );
      return;
    }
    this.listenNow(onListening, onFailed, onAccepting);
  }

  private listenNow(onListening: (port: number) => void, onFailed: (error: string) => void, onAccepting: (accepting: boolean) => void): void {
    if (this.closed) return;
    const { host, port } = this.options;
    this.uwsApp.listen(host, port, (socket) => {
      if (!socket) {
        onFailed(`could not listen on ${host}:${port} (in use, or no permission)`);
        return;
      }
      const boundPort = this.sessions.listening(socket, onAccepting);
      this.stats[Stat.LISTENING] = 1;
      this.heartbeat = setInterval(() => {
        try {
          this.tick();
        } catch (err) {
          this.failed('tick', err);
        }
      }, 1000);
      this.slowCheck = setInterval(() => {
        try {
          this.sessions.checkSlowConsumers();
          this.sessions.checkTokens();
          this.sessions.checkDescriptors();
          this.sessions.pingPhase.step(Date.now());
        } catch (err) {
          this.failed('slow-consumer-check', err);
        }
      }, SLOW_CHECK_MS);
      this.links.start();
      // A restarted workgroup lost its topics' interest and its sessions: every other workgroup
      // forgets what it sent us and re-announces its interest in the topics we own.
      if (this.restarts > 0) this.links.hello(this.restarts);
      this.tick();
      onListening(boundPort);
    });
  }

  /** Once a second: clock, gauges, cache expiry, owner timeouts, idle topic rows. */
  private tick(): void {
    const nowMs = Date.now();
    this.nowSec = Math.floor(nowMs / 1000);
    const now = nowMicros();
    const c = this.cache;
    c.expire(now);
    c.expireSnapshots(now);
    this.owner.nowSec = this.nowSec;
    this.owner.releaseIdleTopics();
    this.redis?.tick(nowMs);
    this.delivery.failOverdue(nowMs);
    this.commands.patterns?.failOverdue(nowMs);
    const s = this.stats;
    s[Stat.SESSIONS] = this.slab.size;
    s[Stat.SLAB_CAPACITY] = this.slab.capacity;
    s[Stat.SLAB_USED] = this.slab.size;
    s[Stat.TOPICS_OWNED] = this.topics.size;
    s[Stat.AUTH_GRANTS] = this.entitlement.grants.size;
    s[Stat.CACHE_MESSAGES] = c.messages;
    s[Stat.CACHE_BYTES] = c.storedBytes + c.snapshotBytes;
    s[Stat.CACHE_EVICTIONS] += c.evictions - this.lastEvictions;
    this.lastEvictions = c.evictions;
    this.links.tick();
    const elu = performance.eventLoopUtilization(this.elu);
    this.elu = performance.eventLoopUtilization();
    s[Stat.LOOP_UTILIZATION] = elu.utilization;
    // max is 0 before the first sample; the histogram holds ns.
    s[Stat.LOOP_DELAY_MAX_MS] = this.loopDelay.max / 1e6;
    this.loopDelay.reset();
    // After a burst of sessions, once quiet: one full GC (what the burst left in old space; shm/heap.ts).
    if (this.idleGc.due(s[Stat.SESSIONS_OPENED] + s[Stat.SSE_SESSIONS_OPENED], nowMs)) {
      const ms = collectGarbage();
      if (ms !== null) this.log.debug({ ms: Math.round(ms * 10) / 10, sessions: this.slab.size }, 'quiet after new sessions: collected the garbage');
    }
    s[Stat.HEAP_USED_BYTES] = getHeapStatistics().used_heap_size;
    s[Stat.HEARTBEAT_MS] = nowMs;
  }

  // ---- the links' and the delivery's host -----------------------------

  app(): TemplatedApp {
    return this.uwsApp;
  }

  isDraining(): boolean {
    return this.draining;
  }

  isOpen(): boolean {
    return !this.closed;
  }

  onRingDrain(): void {
    this.owner.resumeReplays();
  }

  /** Wildcard subscriptions: the owner's interest and journal, the sessions' patterns (workgroups/pattern-*.ts). */
  private wirePatterns(): void {
    const o = this.options;
    const owner = new PatternOwner(this.id, this.count, this.topics, o.patternJournalEntries, (w) => this.links.patternSubscriber(w));
    const subs = new PatternSubs(
      {
        id: this.id,
        count: this.count,
        options: this.options,
        stats: this.stats,
        slab: this.slab,
        local: this.local,
        takeToken: () => this.commands.takeToken(),
        owner: (w) => this.links.owner(w),
        patternOwner: (w) => this.links.patternOwner(w),
        socket: (slot) => this.sessions.socket(slot),
        reply: (ws, slot, encoding, reply) => this.sessions.reply(ws, slot, encoding, reply),
        hasLocalInterest: (topic) => this.sessions.hasLocalInterest(topic),
        dropInterest: (topic) => this.sessions.dropInterest(topic),
        canSubscribePattern: (slot, pattern) => this.entitlement.canSubscribePattern(slot, pattern),
      },
      this.delivery,
      o.maxPatternsPerSession,
      o.maxPatterns,
    );
    this.owner.patterns = owner;
    this.delivery.patterns = subs;
    this.commands.patterns = subs;
    this.links.attachPatterns(owner, subs);
  }

  /** A restarted workgroup: forget its interest in our topics, and tell it ours in its topics. */
  onHello(from: number): void {
    this.commands.patterns?.reannounce(from);
    // Its sessions are gone, and with them the subscriptions we were replaying to.
    if (this.redis !== null) this.redis.forget(from);
    else this.owner.forget(from);
    const mine = new Set<string>(this.local.topics());
    this.sessions.addSubscribedTopics(mine);
    for (const topic of mine) {
      if (ownerOf(topic, this.count) !== from || !this.sessions.hasLocalInterest(topic)) continue;
      this.links.owner(from).interest(this.id, topic, true);
    }
    this.log.info({ from }, 'workgroup restarted: interest re-announced');
  }

  // ---- HTTP publish (workgroups/http-publish.ts) -----------------------

  /**
   * Waits, this thread's loop stopped, until the ack of `token` was answered:
   * reads our inbound rings (the owner's ACK, and every other record, so that
   * two workgroups waiting on each other both go on) and retries spilled
   * records. false after timeoutMs: the ack target is dropped.
   */
  private awaitAck(token: number, timeoutMs: number): boolean {
    if (!this.delivery.acks.has(token)) return true;
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const handled = this.links.pollNow();
      if (!this.delivery.acks.has(token)) return true;
      if (handled > 0) continue;
      const left = deadline - performance.now();
      if (left <= 0) break;
      Atomics.wait(WAIT_WORD, 0, 0, Math.min(left, 0.05));
    }
    this.delivery.acks.delete(token);
    return false;
  }

  // ---- shutdown -------------------------------------------------------

  private drained: (() => void) | null = null;

  /** Draining, and the last session just closed. */
  onDrained(): void {
    this.drained?.();
  }

  /**
   * Stops accepting, tells every session to reconnect elsewhere (1001), and
   * calls back once all are closed or the timeout passed. Then close() must run.
   * The rings keep running meanwhile: a topic this workgroup owns is still
   * sequenced for the others until the whole node stops.
   */
  drain(timeoutMs: number, done: (closedSessions: number) => void): void {
    if (this.draining) return;
    this.draining = true;
    const before = this.slab.size;
    this.sessions.stopAccepting();
    this.stats[Stat.LISTENING] = 0;
    let finished = false;
    const finish = () => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      done(before);
    };
    const timer = setTimeout(finish, timeoutMs);
    this.drained = finish;
    this.delivery.flushDeliveries();
    this.sessions.endAll();
    this.sse.endAll();
    if (this.slab.size === 0) finish();
  }

  /**
   * Closes every socket and handle, so that the thread can end without taking
   * the process down. failing: this workgroup is dying (a bug, a crash): its
   * sessions get 1011 so that clients reconnect (to a restarted workgroup)
   * knowing it was the server's fault, not a network drop.
   */
  close(failing = false): void {
    if (this.closed) return;
    this.closed = true;
    // A dying workgroup hands uWS nothing more; a closing one, what it delivered this turn.
    if (!failing) this.delivery.flushDeliveries();
    if (failing) this.sessions.failAll();
    if (this.heartbeat) clearInterval(this.heartbeat);
    if (this.slowCheck) clearInterval(this.slowCheck);
    this.sse.close();
    this.heartbeat = null;
    this.slowCheck = null;
    this.links.close();
    if (this.redis !== null) this.redis.close();
    else this.owner.close();
    this.stats[Stat.LISTENING] = 0;
    this.stats[Stat.SESSIONS] = 0;
    try {
      (this.uwsApp as unknown as { close(): void }).close();
    } catch (err) {
      this.log.error({ err }, 'app.close failed');
    }
  }

  /** Fault injection (tests only, C10M_FAULT_INJECTION=1): dies the way a bug would. */
  /** Fault injection (tests): blocks this thread (no ring read, no socket served), as a workgroup far behind would be. */
  stall(ms: number): void {
    if (!this.options.faultInjection) return;
    this.log.warn({ ms }, 'fault injection: stalling this workgroup');
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, Math.min(Math.max(ms, 0), 30_000));
  }

  /** Fault injection (tests): the next `count` commands throw inside their handler. */
  failCommands(count: number): void {
    if (!this.options.faultInjection) return;
    this.log.warn({ count }, 'fault injection: failing commands');
    this.commands.failNext(count);
  }

  crash(how: 'exit' | 'throw'): void {
    if (!this.options.faultInjection) return;
    this.log.warn({ how }, 'fault injection: crashing this workgroup');
    if (how === 'exit') process.exit(1);
    setImmediate(() => {
      throw new Error('fault injection: uncaught exception in a workgroup');
    });
  }
}

/** Cache arena chunk: 2 MiB (one huge page), or larger for large payloads (a cached message fits in one chunk). */
function arenaChunkFor(maxPayloadBytes: number): number {
  let chunk = 2 * 1024 * 1024;
  while (chunk < maxPayloadBytes + 64 && chunk < 16 * 1024 * 1024) chunk *= 2;
  return chunk;
}

/** uWS's own limit, where it drops the connection at once: twice ours, plus room for a resume's replay. */
export function hardBackpressure(o: WorkgroupOptions): number {
  return 2 * o.maxBackpressureBytes + Math.min(4 * o.cacheTopicBytes, 64 * 1024 * 1024);
}
