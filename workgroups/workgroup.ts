// A workgroup: one uWebSockets.js App on the public port and the parts it
// wires together: its sessions in a slab and their commands, the owner of
// the topics hashed to it (workgroups/owner.ts, workgroups/replay.ts), the
// subscriber side that delivers to its sessions (this class, for now), and
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
import { closeSync, openSync, readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { getHeapStatistics } from 'node:v8';
import { allocShared, allocSharedAsync } from '../native-io';
import { loadUws, type TemplatedApp, type WebSocket, type HttpResponse, type HttpRequest, type us_listen_socket, type Uws } from '../native-io/uws';
import { ENCODING_MSGPACK, type EncodingId, encodeReply } from '../protocol/codec';
import { CloseCode, CloseReason, ErrorCode } from '../protocol/errors';
import { nowMicros } from '../protocol/frame';
import { Stat } from '../protocol/stats';
import { MessageCache } from './cache';
import { CorsPolicy } from './cors';
import { HttpPublishEndpoint } from './http-publish';
import { IpTable, addressHash } from './ip-table';
import { LogLimiter, type Logger } from './log';
import type { WorkgroupInit, WorkgroupOptions } from '../shm/workgroup-init';
import { Commands, ENVELOPE_BYTES, type CommandsHost } from './commands';
import { Delivery, type DeliveryHost, type SessionData } from './delivery';
import { Links, type LinkHost } from './links';
import { Owner } from './owner';
import { SessionFlag, SessionSlab, SessionState } from './slab';
import { registerStaticRoutes } from './static';
import { LocalTopics, TopicTable, ownerOf } from './topics';
import { checkUpgrade } from './upgrade';

/**
 * Descriptors: the workgroup stops accepting while fewer than this many are
 * free in the process (the admin port, Redis, logs and the other workgroups
 * need them), and checks every DESCRIPTOR_CHECK_MS; a pause lasts at least
 * ACCEPT_PAUSE_MS. Without this, accept() fails with EMFILE while the listen
 * socket stays readable, and the loop spins at 100 % for as long as a
 * connection flood lasts.
 */
const DESCRIPTOR_RESERVE_MIN = 64;
const DESCRIPTOR_CHECK_MS = 100;
const ACCEPT_PAUSE_MS = 1000;
/**
 * Slow-consumer check: how often, and how many sessions at most per check.
 * Small slices often: one getBufferedAmount() costs about 50 ns, and 32,768
 * of them every 100 ms stopped the loop for 1.0 ms (median; 27.8 ms at
 * worst) ten times a second under reference-scaled load, which is what a
 * message arriving then waited. 2,048 every 10 ms sweeps 20,000 sessions
 * in 100 ms, as before, a million in 5 s (uWS's hard limit closes a session
 * whose buffer outgrows a sweep).
 */
const SLOW_CHECK_MS = 10;
const SLOW_CHECK_SLOTS = 2048;

const RETRY_SOON: [string, string][] = [['retry-after', '1']];
/** A workgroup whose heartbeat (written every second) is older than this is stalled or restarting. */
const OWNER_STALE_MS = 2500;
/** Atomics.wait's word for short sleeps in awaitAck (nobody notifies it). */
const WAIT_WORD = new Int32Array(new SharedArrayBuffer(4));

// uWS send() results.
const SEND_DROPPED = 2;

export class Workgroup implements LinkHost, DeliveryHost, CommandsHost {
  readonly id: number;
  readonly count: number;
  readonly options: WorkgroupOptions;
  readonly stats: Float64Array;
  readonly slab: SessionSlab;
  readonly topics = new TopicTable();
  readonly local = new LocalTopics();
  readonly cache: MessageCache;
  /** Connections per address here, and the other workgroups' tables (read only): the cap counts all. */
  private readonly ipTable: IpTable;
  private readonly peerIpTables: IpTable[];
  /** Error logs, at most a few lines a minute per cause. */
  readonly errors: LogLimiter;
  /** The process's descriptor limit (RLIMIT_NOFILE soft; Infinity when unknown) and the reserve kept free below it. */
  private readonly descriptorLimit: number;
  private readonly descriptorReserve: number;
  private descriptorCheckMs = 0;
  /** Accepting stopped for lack of descriptors (listenSocket is null meanwhile); not before this time does it start again. */
  private acceptPaused = false;
  private acceptPausedUntilMs = 0;
  private boundPort = 0;
  /** uWS's socket for each open slot (an array, not a Map: slots are dense). */
  private readonly sockets: (WebSocket<SessionData> | undefined)[] = [];
  private readonly uws: Uws;
  readonly uwsNative: boolean;
  private uwsApp: TemplatedApp;
  private listenSocket: us_listen_socket | null = null;
  private draining = false;
  private closed = false;
  private heartbeat: NodeJS.Timeout | null = null;
  private slowCheck: NodeJS.Timeout | null = null;
  private slowCursor = 0;
  /** Our rings to and from the other workgroups: the ring side of both ports. */
  private readonly links: Links;
  /** The owner role for the topics this workgroup owns. */
  private readonly owner: Owner;
  /** The subscriber side: deliveries, replays, acks, and what waits for an owner's answer. */
  private readonly delivery: Delivery;
  /** One session's commands. */
  private readonly commands: Commands;
  private readonly cors: CorsPolicy;
  readonly httpPublish: HttpPublishEndpoint;
  private readonly restarts: number;
  // Figures read from objects that count for themselves, as of the last tick (to add deltas to counters).
  private lastEvictions = 0;
  private elu = performance.eventLoopUtilization();
  nowSec = Math.floor(Date.now() / 1000);

  constructor(
    init: WorkgroupInit,
    readonly log: Logger,
  ) {
    this.id = init.id;
    this.count = init.count;
    this.options = init.options;
    this.restarts = init.restarts;
    this.stats = new Float64Array(init.stats);
    this.errors = new LogLimiter(log, () => this.stats[Stat.LOGS_SUPPRESSED]++);
    const tables = init.ipTables;
    this.ipTable = tables === null ? new IpTable() : new IpTable(tables[this.id], true);
    this.peerIpTables = tables === null ? [] : tables.filter((_, w) => w !== this.id).map((sab) => new IpTable(sab));
    this.descriptorLimit = readDescriptorLimit();
    this.descriptorReserve = Math.max(DESCRIPTOR_RESERVE_MIN, Math.min(1024, Math.floor(this.descriptorLimit / 100)));
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
    ])
      this.stats[g] = 0;

    this.delivery = new Delivery(this);
    this.links = new Links(init, this);
    const o2 = this.options;
    this.owner = new Owner(
      this.id,
      this.topics,
      this.cache,
      this.stats,
      { maxTopics: o2.maxTopics, cacheSeconds: o2.cacheSeconds, snapshotTtlSeconds: o2.snapshotTtlSeconds },
      this.links,
      { corked: (token, write) => this.delivery.corkReplay(token, write) },
      (err) => this.failed('replay', err),
    );
    this.links.attach(this.owner, this.delivery);
    this.commands = new Commands(this, this.delivery, this.links);
    this.cors = new CorsPolicy(init.options.corsOrigins);
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
    });
    this.uwsApp = this.buildApp();
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
          this.onUpgrade(res, req, context);
        } catch (err) {
          this.failed('upgrade', err);
          res.writeStatus('500 Internal Server Error').end();
        }
      },
      open: (ws) => {
        try {
          this.onOpen(ws);
        } catch (err) {
          this.failed('open', err);
          ws.end(CloseCode.INTERNAL_ERROR, CloseReason[CloseCode.INTERNAL_ERROR]);
        }
      },
      message: (ws, message, isBinary) => this.commands.onMessage(ws, message, isBinary),
      close: (ws, code) => {
        try {
          this.onClose(ws, code);
        } catch (err) {
          this.failed('close', err);
        }
      },
      subscription: (_ws, key, newCount) => {
        try {
          this.onSubscriptionCount(key, newCount);
        } catch (err) {
          this.failed('subscription', err);
        }
      },
    });
    this.httpPublish.register(app);
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
    const { host, port } = this.options;
    this.onAccepting = onAccepting;
    this.uwsApp.listen(host, port, (socket) => {
      if (!socket) {
        onFailed(`could not listen on ${host}:${port} (in use, or no permission)`);
        return;
      }
      this.listenSocket = socket;
      this.stats[Stat.LISTENING] = 1;
      this.boundPort = this.uws.us_socket_local_port(socket as unknown as Parameters<Uws['us_socket_local_port']>[0]);
      this.heartbeat = setInterval(() => {
        try {
          this.tick();
        } catch (err) {
          this.failed('tick', err);
        }
      }, 1000);
      this.slowCheck = setInterval(() => {
        try {
          this.checkSlowConsumers();
          this.checkDescriptors();
        } catch (err) {
          this.failed('slow-consumer-check', err);
        }
      }, SLOW_CHECK_MS);
      this.links.start();
      // A restarted workgroup lost its topics' interest and its sessions: every other workgroup
      // forgets what it sent us and re-announces its interest in the topics we own.
      if (this.restarts > 0) this.links.hello(this.restarts);
      this.tick();
      onListening(this.boundPort);
    });
  }

  private onAccepting: (accepting: boolean) => void = () => {};

  /** Sessions of every workgroup of this process (their gauges, written at each open and close). */
  private processSessions(): number {
    let n = 0;
    for (let w = 0; w < this.count; w++) n += this.links.statsOf(w)[Stat.SESSIONS];
    return n;
  }

  /**
   * Stops accepting while the process is short of descriptors, and starts
   * again once it is not (at most once per ACCEPT_PAUSE_MS). The kernel hands
   * out the lowest free descriptor, so the one a probe gets says whether
   * every descriptor below limit - reserve is in use. Connections meanwhile
   * are refused by the kernel; sessions already open, the admin port and the
   * other workgroups go on. Costs one open/close of /dev/null per check.
   */
  private checkDescriptors(): void {
    const nowMs = Date.now();
    if (nowMs - this.descriptorCheckMs < DESCRIPTOR_CHECK_MS || this.descriptorLimit === Infinity || this.draining || this.closed) return;
    this.descriptorCheckMs = nowMs;
    let lowest: number;
    try {
      lowest = openSync('/dev/null', 'r');
      closeSync(lowest);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'EMFILE' && code !== 'ENFILE') return;
      lowest = Infinity;
    }
    const short = lowest >= this.descriptorLimit - this.descriptorReserve;
    if (short && this.listenSocket !== null) {
      this.uws.us_listen_socket_close(this.listenSocket);
      this.listenSocket = null;
      this.acceptPaused = true;
      this.acceptPausedUntilMs = nowMs + ACCEPT_PAUSE_MS;
      this.stats[Stat.ACCEPTING_PAUSED] = 1;
      this.stats[Stat.ACCEPT_PAUSES]++;
      this.log.warn(
        { limit: this.descriptorLimit, reserve: this.descriptorReserve, lowestFree: Number.isFinite(lowest) ? lowest : null, sessions: this.slab.size },
        'out of file descriptors: not accepting connections for now',
      );
      this.onAccepting(false);
    } else if (!short && this.acceptPaused && nowMs >= this.acceptPausedUntilMs) {
      this.acceptPaused = false;
      this.uwsApp.listen(this.options.host, this.boundPort, (socket) => {
        if (!socket || this.closed || this.draining) {
          if (socket) this.uws.us_listen_socket_close(socket);
          this.acceptPaused = !this.closed && !this.draining;
          this.acceptPausedUntilMs = Date.now() + ACCEPT_PAUSE_MS;
          return;
        }
        this.listenSocket = socket;
        this.stats[Stat.ACCEPTING_PAUSED] = 0;
        this.log.info({ lowestFree: lowest, sessions: this.slab.size }, 'descriptors free again: accepting connections');
        this.onAccepting(true);
      });
    }
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
    this.delivery.failOverdue(nowMs);
    const s = this.stats;
    s[Stat.SESSIONS] = this.slab.size;
    s[Stat.SLAB_CAPACITY] = this.slab.capacity;
    s[Stat.SLAB_USED] = this.slab.size;
    s[Stat.TOPICS_OWNED] = this.topics.size;
    s[Stat.CACHE_MESSAGES] = c.messages;
    s[Stat.CACHE_BYTES] = c.storedBytes + c.snapshotBytes;
    s[Stat.CACHE_EVICTIONS] += c.evictions - this.lastEvictions;
    this.lastEvictions = c.evictions;
    this.links.tick();
    const elu = performance.eventLoopUtilization(this.elu);
    this.elu = performance.eventLoopUtilization();
    s[Stat.LOOP_UTILIZATION] = elu.utilization;
    s[Stat.HEAP_USED_BYTES] = getHeapStatistics().used_heap_size;
    s[Stat.HEARTBEAT_MS] = nowMs;
  }

  // ---- the links' and the delivery's host -----------------------------

  app(): TemplatedApp {
    return this.uwsApp;
  }

  socket(slot: number): WebSocket<SessionData> | undefined {
    return this.sockets[slot];
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

  /** A restarted workgroup: forget its interest in our topics, and tell it ours in its topics. */
  onHello(from: number): void {
    // Its sessions are gone, and with them the subscriptions we were replaying to.
    this.owner.forget(from);
    // Rare (a workgroup restarted): the topics come from uWS, once per subscribed topic.
    const mine = new Set<string>(this.local.topics());
    for (const ws of this.sockets) {
      if (ws === undefined) continue;
      for (const key of ws.getTopics()) mine.add(key.slice(1));
    }
    for (const topic of mine) {
      if (ownerOf(topic, this.count) !== from || !this.hasLocalInterest(topic)) continue;
      this.links.owner(from).interest(this.id, topic, true);
    }
    this.log.info({ from }, 'workgroup restarted: interest re-announced');
  }

  // ---- sessions -------------------------------------------------------

  private onUpgrade(res: HttpResponse, req: HttpRequest, context: unknown): void {
    const encodingParam = req.getQuery('encoding') ?? '';
    const key = req.getHeader('sec-websocket-key');
    const extensions = req.getHeader('sec-websocket-extensions');
    const bad = checkUpgrade(
      {
        upgrade: req.getHeader('upgrade'),
        connection: req.getHeader('connection'),
        secWebSocketKey: key,
        secWebSocketVersion: req.getHeader('sec-websocket-version'),
        origin: req.getHeader('origin'),
        host: req.getHeader('host'),
      },
      this.cors,
    );
    if (bad !== null) return this.refuse(res, bad.status, bad.code, bad.message, bad.extraHeaders);
    if (this.draining) return this.refuse(res, '503 Service Unavailable', ErrorCode.SHUTTING_DOWN, 'server is shutting down; reconnect to another node');
    let flags = 0;
    if (encodingParam === 'msgpack') flags |= SessionFlag.MSGPACK;
    else if (encodingParam !== '' && encodingParam !== 'json') return this.refuse(res, '400 Bad Request', ErrorCode.BAD_REQUEST, 'encoding must be json or msgpack');
    const cap = this.options.maxConnectionsPerIp;
    // The address costs a getpeername() and an ArrayBuffer: read only when a per-address cap needs it.
    let ipHash = 0;
    if (cap > 0) {
      ipHash = addressHash(res.getRemoteAddress());
      // IP hashing puts an address in one workgroup until a workgroup restarts and the port's group is
      // reordered: then its older sessions are elsewhere, so every workgroup's count is added.
      let held = this.ipTable.count(ipHash);
      for (const peer of this.peerIpTables) held += peer.count(ipHash);
      if (held >= cap) return this.refuse(res, '429 Too Many Requests', ErrorCode.BAD_REQUEST, `at most ${cap} connections per address`);
      if (this.ipTable.add(ipHash) === 0) return this.refuse(res, '503 Service Unavailable', ErrorCode.OVERLOADED, 'the per-address table is full; retry shortly', RETRY_SOON, true);
      flags |= SessionFlag.IP_COUNTED;
    }
    // Near the descriptor limit, every upgrade looks (a flood fills the rest faster than the 100 ms check):
    // the one that finds the reserve reached is refused, and its descriptor freed at once.
    if (this.processSessions() >= this.descriptorLimit / 2) {
      this.descriptorCheckMs = 0;
      this.checkDescriptors();
      if (this.acceptPaused) {
        if (flags & SessionFlag.IP_COUNTED) this.ipTable.remove(ipHash);
        return this.refuse(res, '503 Service Unavailable', ErrorCode.OVERLOADED, 'the server is out of file descriptors; retry shortly', RETRY_SOON, true);
      }
    }
    const slot = this.slab.open(flags, ipHash, this.nowSec);
    // uWS calls open() within upgrade(), so the slot cannot leak between the two.
    // No subprotocol: the server speaks none, and echoing the client's would claim one (RFC 6455 4.2.2).
    res.upgrade<SessionData>({ slot }, key, '', extensions, context as never);
  }

  private refuse(res: HttpResponse, status: string, code: ErrorCode, message: string, extraHeaders: [string, string][] | null = null, close = false): void {
    this.stats[Stat.SESSIONS_REJECTED]++;
    res.writeStatus(status).writeHeader('content-type', 'application/json');
    if (extraHeaders !== null) for (const [k, v] of extraHeaders) res.writeHeader(k, v);
    res.end(JSON.stringify({ error: { code, message } }), close);
  }

  private onOpen(ws: WebSocket<SessionData>): void {
    const slot = ws.getUserData().slot;
    this.sockets[slot] = ws;
    this.stats[Stat.SESSIONS_OPENED]++;
    this.stats[Stat.SESSIONS] = this.slab.size;
    if (this.draining) ws.end(CloseCode.SHUTDOWN, CloseReason[CloseCode.SHUTDOWN]);
  }

  private onClose(ws: WebSocket<SessionData>, _code: number): void {
    const slot = ws.getUserData().slot;
    if (this.slab.flags(slot) & SessionFlag.IP_COUNTED) this.ipTable.remove(this.slab.ipHash(slot));
    this.stats[Stat.SUBSCRIPTIONS] -= this.slab.subscriptions(slot);
    this.sockets[slot] = undefined;
    if (this.delivery.replayAllowance.size > 0) this.delivery.replayAllowance.delete(slot);
    if (this.delivery.perSlot.size > 0) this.delivery.perSlot.delete(slot);
    this.slab.close(slot);
    this.stats[Stat.SESSIONS_CLOSED]++;
    this.stats[Stat.SESSIONS] = this.slab.size;
    if (this.draining && this.slab.size === 0) this.onDrained?.();
  }

  /** uWS: a topic key's subscriber count here changed (subscribe, unsubscribe, close). */
  private onSubscriptionCount(key: ArrayBuffer, newCount: number): void {
    if (newCount !== 0 || this.closed) return;
    const k = Buffer.from(key).toString('latin1');
    const topic = k.slice(1);
    const other = (k.charCodeAt(0) === 106 /* j */ ? 'm' : 'j') + topic;
    if (this.uwsApp.numSubscribers(other) > 0) return;
    if (this.local.pending(topic) > 0) return;
    this.dropInterest(topic);
  }

  hasLocalInterest(topic: string): boolean {
    if (this.local.pending(topic) > 0) return true;
    return this.uwsApp.numSubscribers('j' + topic) + this.uwsApp.numSubscribers('m' + topic) > 0;
  }

  /** No session here wants the topic any more: tell its owner (or ourselves). */
  dropInterest(topic: string): void {
    this.links.owner(ownerOf(topic, this.count)).interest(this.id, topic, false);
  }

  /** Checks a share of the sessions: one over --max-backpressure-bytes (plus a replay it is still reading) is closed with 4000. */
  private checkSlowConsumers(): void {
    const limit = this.options.maxBackpressureBytes;
    const n = this.sockets.length;
    if (n === 0) return;
    const allowances = this.delivery.replayAllowance;
    let slot = this.slowCursor >= n ? 0 : this.slowCursor;
    for (let i = 0, m = Math.min(n, SLOW_CHECK_SLOTS); i < m; i++, slot = slot + 1 >= n ? 0 : slot + 1) {
      const ws = this.sockets[slot];
      if (ws === undefined) continue;
      const buffered = ws.getBufferedAmount();
      if (allowances.size > 0) {
        const allowance = allowances.get(slot);
        if (allowance !== undefined) {
          if (buffered > limit + allowance) this.closeSlow(ws, slot);
          else if (buffered < allowance) {
            if (buffered <= limit) allowances.delete(slot);
            else allowances.set(slot, buffered);
          }
          continue;
        }
      }
      if (buffered > limit) this.closeSlow(ws, slot);
    }
    this.slowCursor = slot;
  }

  /** Sends a reply; a reply dropped for backpressure means the session is too slow to keep. */
  reply(ws: WebSocket<SessionData>, slot: number, encoding: EncodingId, reply: Record<string, unknown>): void {
    this.sendToSession(ws, slot, encodeReply(encoding, reply), encoding === ENCODING_MSGPACK);
  }

  sendToSession(ws: WebSocket<SessionData>, slot: number, bytes: string | Uint8Array, binary: boolean): void {
    if (this.slab.state(slot) !== SessionState.OPEN) return;
    const result = ws.send(bytes, binary);
    this.slab.recordOut(slot, bytes.length);
    if (result === SEND_DROPPED) this.closeSlow(ws, slot);
  }

  private closeSlow(ws: WebSocket<SessionData>, slot: number): void {
    if (this.slab.state(slot) !== SessionState.OPEN) return;
    this.slab.setState(slot, SessionState.CLOSING);
    this.stats[Stat.SLOW_CONSUMER_CLOSES]++;
    ws.end(CloseCode.SLOW_CONSUMER, CloseReason[CloseCode.SLOW_CONSUMER]);
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

  private onDrained: (() => void) | null = null;

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
    if (this.listenSocket) {
      this.uws.us_listen_socket_close(this.listenSocket);
      this.listenSocket = null;
    }
    this.stats[Stat.LISTENING] = 0;
    let finished = false;
    const finish = () => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      done(before);
    };
    const timer = setTimeout(finish, timeoutMs);
    this.onDrained = finish;
    for (let slot = 0; slot < this.sockets.length; slot++) {
      const ws = this.sockets[slot];
      if (ws !== undefined) ws.end(CloseCode.SHUTDOWN, CloseReason[CloseCode.SHUTDOWN]);
    }
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
    if (failing) {
      for (let slot = 0; slot < this.sockets.length; slot++) {
        const ws = this.sockets[slot];
        if (ws === undefined) continue;
        try {
          ws.end(CloseCode.INTERNAL_ERROR, 'workgroup failed; reconnect');
        } catch {
          // Already closing: nothing to tell it.
        }
      }
    }
    if (this.heartbeat) clearInterval(this.heartbeat);
    if (this.slowCheck) clearInterval(this.slowCheck);
    this.heartbeat = null;
    this.slowCheck = null;
    this.links.close();
    this.owner.close();
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

/** This process's open-file limit (RLIMIT_NOFILE, soft), from /proc/self/limits; Infinity when it cannot be read. */
function readDescriptorLimit(): number {
  try {
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    return m === null || m[1] === 'unlimited' ? Infinity : Number(m[1]);
  } catch {
    return Infinity;
  }
}
