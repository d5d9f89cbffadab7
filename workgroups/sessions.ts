// The sessions of a workgroup: uWS's socket for each slot of the slab, the
// upgrade (checks, per-address cap, descriptor reserve), open and close,
// which topics still have a subscriber here, the slow-consumer sweep, and
// the one way to write to a session (a reply dropped for backpressure
// closes it). Also the accept side: the listen socket, paused while the
// process is short of descriptors and resumed once it is not.
//
// The listen socket lives here, not in the workgroup: the descriptor check
// is what closes and reopens it, and the upgrade reads whether accepting is
// paused, so the socket and its paused state are one state machine. The
// workgroup hands it over once it listens (listening) and takes it back
// when it drains (stopAccepting).
import type { WorkgroupContext } from './context';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import type { TemplatedApp, WebSocket, HttpResponse, HttpRequest, us_listen_socket, Uws } from '../native-io/uws';
import { ENCODING_MSGPACK, type EncodingId, encodeReply } from '../protocol/codec';
import { CloseCode, CloseReason, ErrorCode } from '../protocol/errors';
import { Stat } from '../protocol/stats';
import type { WorkgroupOptions } from '../shm/workgroup-init';
import { ADMISSION_HORIZON_SECONDS, Admission, AddressRate, AddressVerdict, Admit } from './admission';
import { CorsPolicy } from './cors';
import type { Delivery, DeliverySessions, SessionData } from './delivery';
import type { CommandsSessions } from './commands';
import { IpTable, addressHash } from './ip-table';
import type { Links } from './links';
import type { Logger } from './log';
import { SessionFlag, SessionState, type SessionSlab } from './slab';
import { PingPhase } from './ping-phase';
import { ownerOf, type LocalTopics } from './topics';
import { checkUpgrade } from './upgrade';
import { bearerChallenge, isFailure, type AuthFailure, type Verified } from './auth';
import { AUTH_EXPIRED, AUTH_OK, Entitlement } from './entitlement';
import { topicOfKey } from './conflation';

/** An upgrade without a token under --auth jwt: the session opens, waiting for an auth command. */
const PENDING = 'pending' as const;

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
export const SLOW_CHECK_MS = 10;
const SLOW_CHECK_SLOTS = 2048;

const RETRY_SOON: [string, string][] = [['retry-after', '1']];

// uWS send() results.
const SEND_DROPPED = 2;

/** What the sessions need of their workgroup. */
export interface SessionsHost extends WorkgroupContext {
  readonly log: Logger;
  /** False once the workgroup is closing. */
  isOpen(): boolean;
  /** Draining, and the last session just closed. */
  onDrained(): void;
  /** Counts and logs (rate-limited) a failure caught at the edge. */
  failed(cause: string, err: unknown): void;
}

/** reconnectWindowMs is this many times sessions / rate: a crowd spread over it arrives at 80 % of the rate. */
export const WINDOW_SLACK = 1.25;

export class Sessions implements DeliverySessions, CommandsSessions {
  private readonly count: number;
  private readonly options: WorkgroupOptions;
  private readonly stats: Float64Array;
  private readonly slab: SessionSlab;
  private readonly local: LocalTopics;
  private readonly log: Logger;
  /** Connections per address here, and the other workgroups' tables (read only): the cap counts all. */
  private readonly ipTable: IpTable;
  private readonly peerIpTables: IpTable[];
  /** The process's descriptor limit (RLIMIT_NOFILE soft; Infinity when unknown) and the reserve kept free below it. */
  private readonly descriptorLimit: number;
  private readonly descriptorReserve: number;
  private descriptorCheckMs = 0;
  /** Accepting stopped for lack of descriptors (listenSocket is null meanwhile); not before this time does it start again. */
  private acceptPaused = false;
  private acceptPausedUntilMs = 0;
  private boundPort = 0;
  private listenSocket: us_listen_socket | null = null;
  private onAccepting: (accepting: boolean) => void = () => {};
  /** uWS's socket for each open slot (an array, not a Map: slots are dense). */
  private readonly sockets: (WebSocket<SessionData> | undefined)[] = [];
  private slowCursor = 0;
  /** Moves each new session's uWS idle timer to its own phase (one ping), so that a crowd is not pinged in one turn. */
  readonly pingPhase: PingPhase;
  private authCursor = 0;
  private readonly cors: CorsPolicy;
  /** --max-sessions-per-second-per-ip and --admission-rate (null: off). */
  private readonly addressRate: AddressRate | null;
  private readonly admission: Admission | null;
  /** Set by attach, before the App serves anything. */
  private uwsApp!: TemplatedApp;
  private delivery!: Pick<Delivery, 'replayAllowance' | 'perSlot' | 'flushDeliveries' | 'sse' | 'conflation' | 'patterns'>;

  constructor(
    private readonly host: SessionsHost,
    private readonly uws: Uws,
    ipTables: SharedArrayBuffer[] | null,
    private readonly links: Pick<Links, 'owner' | 'statsOf'>,
    private readonly entitlement: Entitlement,
  ) {
    this.count = host.count;
    this.options = host.options;
    this.stats = host.stats;
    this.slab = host.slab;
    this.local = host.local;
    this.log = host.log;
    const id = host.id;
    this.ipTable = ipTables === null ? new IpTable() : new IpTable(ipTables[id], true);
    this.peerIpTables = ipTables === null ? [] : ipTables.filter((_, w) => w !== id).map((sab) => new IpTable(sab));
    this.descriptorLimit = readDescriptorLimit();
    this.descriptorReserve = Math.max(DESCRIPTOR_RESERVE_MIN, Math.min(1024, Math.floor(this.descriptorLimit / 100)));
    this.cors = new CorsPolicy(host.options.corsOrigins);
    this.addressRate = host.options.maxSessionsPerSecondPerIp > 0 ? new AddressRate(host.options.maxSessionsPerSecondPerIp) : null;
    this.admission = host.options.admissionRate > 0 ? new Admission(host.options.admissionRate, randomBytes(32)) : null;
    this.pingPhase = new PingPhase(host.options.idleTimeoutSeconds, this.slab, this.sockets);
  }

  /** The App the sockets belong to, and the subscriber side's per-slot tables (built after the sessions). */
  attach(app: TemplatedApp, delivery: Pick<Delivery, 'replayAllowance' | 'perSlot' | 'flushDeliveries' | 'sse' | 'conflation' | 'patterns'>): void {
    this.uwsApp = app;
    this.delivery = delivery;
  }

  socket(slot: number): WebSocket<SessionData> | undefined {
    return this.sockets[slot];
  }

  /** Adds every topic a session here is subscribed to in uWS. */
  addSubscribedTopics(into: Set<string>): void {
    // Rare (a workgroup restarted): the topics come from uWS, once per subscribed topic.
    for (const ws of this.sockets) {
      if (ws === undefined) continue;
      for (const key of ws.getTopics()) into.add(topicOfKey(key));
    }
    if (this.delivery.sse !== null) for (const topic of this.delivery.sse.topics()) into.add(topic);
  }

  // ---- the accept side ------------------------------------------------

  /** The App listens: the socket is ours from now on; the port it bound. */
  listening(socket: us_listen_socket, onAccepting: (accepting: boolean) => void): number {
    this.listenSocket = socket;
    this.onAccepting = onAccepting;
    this.boundPort = this.uws.us_socket_local_port(socket as unknown as Parameters<Uws['us_socket_local_port']>[0]);
    return this.boundPort;
  }

  /** Closes the listen socket (draining): no new connection from now on. */
  stopAccepting(): void {
    if (this.listenSocket) {
      this.uws.us_listen_socket_close(this.listenSocket);
      this.listenSocket = null;
    }
  }

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
  checkDescriptors(): void {
    const nowMs = Date.now();
    if (nowMs - this.descriptorCheckMs < DESCRIPTOR_CHECK_MS || this.descriptorLimit === Infinity || !this.host.isOpen() || this.host.isDraining()) return;
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
        if (!socket || !this.host.isOpen() || this.host.isDraining()) {
          if (socket) this.uws.us_listen_socket_close(socket);
          this.acceptPaused = this.host.isOpen() && !this.host.isDraining();
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

  // ---- sessions -------------------------------------------------------

  onUpgrade(res: HttpResponse, req: HttpRequest, context: unknown): void {
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
    if (this.host.isDraining()) return this.refuse(res, '503 Service Unavailable', ErrorCode.SHUTTING_DOWN, 'server is shutting down; reconnect to another node');
    let flags = 0;
    if (encodingParam === 'msgpack') flags |= SessionFlag.MSGPACK;
    else if (encodingParam !== '' && encodingParam !== 'json') return this.refuse(res, '400 Bad Request', ErrorCode.BAD_REQUEST, 'encoding must be json or msgpack');
    // Admission, before any slot and before the token is checked: the address's session rate first (so that one
    // address cannot take the node's places ahead), then the node's.
    const cap = this.options.maxConnectionsPerIp;
    // The address costs a getpeername() and an ArrayBuffer: read only when a per-address limit needs it.
    const ipHash = cap > 0 || this.addressRate !== null ? addressHash(res.getRemoteAddress()) : 0;
    if ((this.addressRate !== null || this.admission !== null) && !this.passesAdmission(res, ipHash, req.getQuery('admit') ?? '')) return;
    if (cap > 0) {
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
    if (!this.entitlement.on) return this.admit(res, key, extensions, context, flags, ipHash, null);
    this.upgradeWithToken(res, Entitlement.tokenOf(req), key, extensions, context, flags, ipHash);
  }

  /**
   * --auth jwt: a session without a token opens pending (auth command within
   * --auth-timeout-seconds); a token verified lately, or an HS* token
   * plainly valid, is taken at once; any other is verified first by jose
   * (asynchronous: the upgrade answers from a later turn; nothing of the
   * session exists meanwhile).
   */
  private upgradeWithToken(res: HttpResponse, token: string, key: string, extensions: string, context: unknown, flags: number, ipHash: number): void {
    const e = this.entitlement;
    const nowSec = this.host.nowSec;
    if (token === '') return this.admit(res, key, extensions, context, flags, ipHash, PENDING);
    const undo = () => {
      if (flags & SessionFlag.IP_COUNTED) this.ipTable.remove(ipHash);
    };
    const now = e.verifyNow(token, nowSec);
    if (now !== null) {
      if (!isFailure(now)) return this.admit(res, key, extensions, context, flags, ipHash, now);
      undo();
      return this.refuseToken(res, now);
    }
    let aborted = false;
    res.onAborted(() => {
      aborted = true;
    });
    e.verify(token, nowSec).then(
      (v) => {
        if (aborted || !this.host.isOpen()) {
          undo();
          if (!isFailure(v)) e.release(v);
          return;
        }
        res.cork(() => {
          if (isFailure(v)) {
            undo();
            return this.refuseToken(res, v);
          }
          if (this.host.isDraining()) {
            undo();
            e.release(v);
            return this.refuse(res, '503 Service Unavailable', ErrorCode.SHUTTING_DOWN, 'server is shutting down; reconnect to another node');
          }
          this.admit(res, key, extensions, context, flags, ipHash, v);
        });
      },
      (err) => {
        undo();
        this.host.failed('upgrade', err);
        if (!aborted) res.cork(() => res.writeStatus('500 Internal Server Error').end());
      },
    );
  }

  /** The session's slot, its grant, and the upgrade (uWS calls open() within it, so the slot cannot leak between the two). */
  private admit(res: HttpResponse, key: string, extensions: string, context: unknown, flags: number, ipHash: number, auth: Verified | typeof PENDING | null): void {
    const slot = this.slab.open(flags, ipHash, this.host.nowSec);
    if (auth === PENDING) this.entitlement.pending(slot, this.host.nowSec);
    else if (auth !== null) {
      this.entitlement.attach(slot, auth);
      this.stats[Stat.AUTH_ACCEPTED]++;
    }
    // No subprotocol: the server speaks none, and echoing the client's would claim one (RFC 6455 4.2.2).
    res.upgrade<SessionData>({ slot }, key, '', extensions, context as never);
  }

  /** A token refused at the upgrade: 401 (503 when the key set could not be fetched). */
  private refuseToken(res: HttpResponse, f: AuthFailure): void {
    this.stats[Stat.AUTH_FAILURES]++;
    if (f.code === ErrorCode.UNAVAILABLE) return this.refuse(res, '503 Service Unavailable', f.code, f.message, RETRY_SOON);
    this.refuse(res, '401 Unauthorized', f.code, f.message, [['www-authenticate', bearerChallenge(f)]]);
  }

  /** Admission's checks (see workgroups/admission.ts); false: refused, the answer written. */
  private passesAdmission(res: HttpResponse, ipHash: number, ticket: string): boolean {
    const nowMs = Date.now();
    if (this.addressRate !== null) {
      const verdict = this.addressRate.take(ipHash, nowMs);
      if (verdict === AddressVerdict.FULL) {
        this.refuse(res, '503 Service Unavailable', ErrorCode.OVERLOADED, 'too many client addresses opening sessions this second; retry shortly', RETRY_SOON, true);
        return false;
      }
      if (verdict === AddressVerdict.OVER) {
        this.stats[Stat.SESSION_RATE_REFUSED]++;
        const limit = this.options.maxSessionsPerSecondPerIp;
        // Into the next second, with jitter (clients behind one address do not all come back at once), within Retry-After: 1.
        const toNext = 1000 - (nowMs % 1000);
        const retryAfterMs = toNext + Math.floor(Math.random() * (1000 - toNext));
        this.refuseRetry(res, '429 Too Many Requests', ErrorCode.RATE_LIMITED, `at most ${limit} new sessions per second per address`, retryAfterMs, null);
        return false;
      }
    }
    const admission = this.admission;
    if (admission === null) return true;
    const verdict = admission.admit(nowMs, ticket);
    if (admission.ticketRefused) this.stats[Stat.ADMISSION_TICKETS_REFUSED]++;
    if (verdict === Admit.TICKET_HONORED) this.stats[Stat.ADMISSION_TICKETS_HONORED]++;
    if (verdict !== Admit.REFUSED) return true;
    this.stats[Stat.ADMISSION_REFUSED]++;
    this.refuseRetry(
      res,
      '503 Service Unavailable',
      ErrorCode.RETRY_LATER,
      'the node is admitting new sessions at its --admission-rate; come back after retryAfterMs, with the ticket when there is one',
      admission.retryAfterMs,
      admission.ticket,
    );
    return false;
  }

  /**
   * A refusal that says when to come back: retryAfterMs (and a ticket) in the body, Retry-After its whole seconds
   * rounded down (at least 1: a client that waits the larger of the two still lands in the second it was given).
   * The connection is closed (its descriptor freed at once).
   */
  private refuseRetry(res: HttpResponse, status: string, code: ErrorCode, message: string, retryAfterMs: number, ticket: string | null): void {
    this.stats[Stat.SESSIONS_REJECTED]++;
    const error: Record<string, unknown> = { code, message, retryAfterMs };
    if (ticket !== null) error.ticket = ticket;
    res
      .writeStatus(status)
      .writeHeader('content-type', 'application/json')
      .writeHeader('retry-after', String(Math.max(1, Math.floor(retryAfterMs / 1000))))
      .end(JSON.stringify({ error }), true);
  }

  private refuse(res: HttpResponse, status: string, code: ErrorCode, message: string, extraHeaders: [string, string][] | null = null, close = false): void {
    this.stats[Stat.SESSIONS_REJECTED]++;
    res.writeStatus(status).writeHeader('content-type', 'application/json');
    if (extraHeaders !== null) for (const [k, v] of extraHeaders) res.writeHeader(k, v);
    res.end(JSON.stringify({ error: { code, message } }), close);
  }

  onOpen(ws: WebSocket<SessionData>): void {
    const slot = ws.getUserData().slot;
    this.sockets[slot] = ws;
    this.stats[Stat.SESSIONS_OPENED]++;
    this.stats[Stat.SESSIONS] = this.slab.size;
    if (this.host.isDraining()) ws.end(CloseCode.SHUTDOWN, CloseReason[CloseCode.SHUTDOWN]);
  }

  onClose(ws: WebSocket<SessionData>, _code: number): void {
    const slot = ws.getUserData().slot;
    this.entitlement.detach(slot);
    if (this.slab.flags(slot) & SessionFlag.IP_COUNTED) this.ipTable.remove(this.slab.ipHash(slot));
    this.stats[Stat.SUBSCRIPTIONS] -= this.slab.subscriptions(slot);
    this.sockets[slot] = undefined;
    if (this.delivery.replayAllowance.size > 0) this.delivery.replayAllowance.delete(slot);
    if (this.delivery.perSlot.size > 0) this.delivery.perSlot.delete(slot);
    if (this.delivery.patterns !== null && this.delivery.patterns.size > 0) this.delivery.patterns.close(slot);
    this.slab.close(slot);
    this.stats[Stat.SESSIONS_CLOSED]++;
    this.stats[Stat.SESSIONS] = this.slab.size;
    if (this.host.isDraining() && this.slab.size === 0) this.host.onDrained();
  }

  /** uWS: a topic key's subscriber count here changed (subscribe, unsubscribe, close). */
  onSubscriptionCount(key: ArrayBuffer, newCount: number): void {
    if (newCount !== 0 || !this.host.isOpen()) return;
    // A conflation group's key: the group goes when its last session does (workgroups/conflation.ts).
    const topic = this.delivery.conflation.release(Buffer.from(key).toString('latin1'));
    if (this.hasLocalInterest(topic)) return;
    this.dropInterest(topic);
  }

  hasLocalInterest(topic: string): boolean {
    if (this.local.pending(topic) > 0 || this.delivery.conflation.has(topic)) return true;
    if (this.delivery.sse !== null && this.delivery.sse.has(topic)) return true;
    return this.uwsApp.numSubscribers('j' + topic) + this.uwsApp.numSubscribers('m' + topic) > 0;
  }

  /** No session here wants the topic any more: tell its owner (or ourselves). */
  dropInterest(topic: string): void {
    this.links.owner(ownerOf(topic, this.count)).interest(this.host.id, topic, false);
  }

  /** Checks a share of the sessions: one over --max-backpressure-bytes (plus a replay it is still reading) is closed with 4000. */
  checkSlowConsumers(): void {
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

  /**
   * --auth jwt: checks a share of the sessions (as the slow-consumer check):
   * one whose token expired is closed with 4003, one that opened without a
   * token and sent no valid auth command in time with 4002.
   */
  checkTokens(): void {
    const e = this.entitlement;
    const n = this.sockets.length;
    if (!e.on || n === 0) return;
    const nowSec = this.host.nowSec;
    let slot = this.authCursor >= n ? 0 : this.authCursor;
    for (let i = 0, m = Math.min(n, SLOW_CHECK_SLOTS); i < m; i++, slot = slot + 1 >= n ? 0 : slot + 1) {
      const ws = this.sockets[slot];
      if (ws === undefined || this.slab.state(slot) !== SessionState.OPEN) continue;
      const verdict = e.check(slot, nowSec);
      if (verdict === AUTH_OK) continue;
      const code = verdict === AUTH_EXPIRED ? CloseCode.TOKEN_EXPIRED : CloseCode.AUTH_TIMEOUT;
      this.stats[verdict === AUTH_EXPIRED ? Stat.AUTH_EXPIRED_CLOSES : Stat.AUTH_TIMEOUT_CLOSES]++;
      this.slab.setState(slot, SessionState.CLOSING);
      ws.end(code, CloseReason[code]);
    }
    this.authCursor = slot;
  }

  /**
   * With --admission-rate: a little more than the time this workgroup's
   * sessions would take to come back at its rate, should they all lose it
   * at once (at most the admission horizon). A client spreads its reconnect
   * attempts over it (the ping reply's reconnectWindowMs), so that a crowd
   * comes back at the pace the node admits instead of all at once: refusing
   * costs the node almost what a connection does (a 503 at the upgrade 53 µs
   * of CPU, a plain 404 49 µs, measured in docs/PERFORMANCE.md). Arrivals
   * spread over sessions / rate exactly would fill every second, and chance
   * and the clients that tried while the node was down would overflow it:
   * each refusal takes a place ahead, which pushes later arrivals out in
   * turn. Over WINDOW_SLACK times that they arrive at 80 % of the rate.
   * -1: admission is off.
   */
  reconnectWindowMs(): number {
    if (this.admission === null) return -1;
    return Math.min(ADMISSION_HORIZON_SECONDS * 1000, Math.ceil((WINDOW_SLACK * this.slab.size * 1000) / this.options.admissionRate));
  }

  /** Sends a reply; a reply dropped for backpressure means the session is too slow to keep. */
  reply(ws: WebSocket<SessionData>, slot: number, encoding: EncodingId, reply: Record<string, unknown>): void {
    this.sendToSession(ws, slot, encodeReply(encoding, reply), encoding === ENCODING_MSGPACK);
  }

  sendToSession(ws: WebSocket<SessionData>, slot: number, bytes: string | Uint8Array, binary: boolean): void {
    if (this.slab.state(slot) !== SessionState.OPEN) return;
    // Deliveries held for the end of the turn go first: nothing overtakes them.
    this.delivery.flushDeliveries();
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

  /** Drain: tells every session to reconnect elsewhere (1001). */
  endAll(): void {
    for (let slot = 0; slot < this.sockets.length; slot++) {
      const ws = this.sockets[slot];
      if (ws !== undefined) ws.end(CloseCode.SHUTDOWN, CloseReason[CloseCode.SHUTDOWN]);
    }
  }

  /** The workgroup is dying: every session gets 1011. */
  failAll(): void {
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
