// A workgroup: one uWebSockets.js App on the public port, its sessions in a
// slab, and the topics it owns. The hot paths here are the command handler
// (once per client command) and delivery (once per message per workgroup).
import { loadUws, type TemplatedApp, type WebSocket, type HttpResponse, type HttpRequest, type us_listen_socket, type Uws } from '../native-io/uws';
import {
  ENCODING_JSON,
  ENCODING_MSGPACK,
  type EncodingId,
  type Command,
  type PubCommand,
  type SubCommand,
  encodeReply,
  errorReply,
  parseJsonCommand,
  parseMsgpackCommand,
  dataToJson,
  dataToMsgpack,
  packr,
  unpackr,
} from '../protocol/codec';
import { CloseCode, CloseReason, ErrorCode, ProtocolError, type CommandId } from '../protocol/errors';
import { encodeBinaryFrame, encodeJsonFrame, nowMicros } from '../protocol/frame';
import { Stat, recordLatency } from '../protocol/stats';
import { topicError } from '../protocol/topic';
import { IpTable, addressHash } from './ip-table';
import type { Logger } from './log';
import type { WorkgroupInit, WorkgroupOptions } from './options';
import { SessionFlag, SessionSlab, SessionState } from './slab';
import { registerStaticRoutes } from './static';
import { TopicTable, ownerOf } from './topics';

/** The only thing uWS keeps for a socket of ours. */
export interface SessionData {
  slot: number;
}

/** A session that sent this many bad commands is closed (1008). */
export const MAX_ERRORS_PER_SESSION = 100;
/** Room for the command envelope around a publish's data (id, op, topic, flags). */
export const ENVELOPE_BYTES = 1024;

// uWS send() results.
const SEND_DROPPED = 2;

/** A publish on its way to the topic's owner. Data is in the publisher's encoding. */
interface PublishRequest {
  topic: string;
  dataEncoding: EncodingId;
  dataJson: string | null;
  dataMsgpack: Uint8Array | null;
  retain: boolean;
  tsMicros: number;
  receivedAtMicros: number;
}

/** Where an ack goes back to. */
interface AckTarget {
  kind: 'ws' | 'http';
  slot: number;
  generation: number;
  id: CommandId | null;
}

export class Workgroup {
  readonly id: number;
  readonly count: number;
  readonly options: WorkgroupOptions;
  readonly stats: Float64Array;
  readonly slab = new SessionSlab();
  readonly topics = new TopicTable();
  private readonly ipTable = new IpTable();
  /** uWS's socket for each open slot (an array, not a Map: slots are dense). */
  private readonly sockets: (WebSocket<SessionData> | undefined)[] = [];
  private readonly uws: Uws;
  readonly uwsNative: boolean;
  private app: TemplatedApp;
  private listenSocket: us_listen_socket | null = null;
  private draining = false;
  private heartbeat: NodeJS.Timeout | null = null;
  /** HTTP publishes waiting for their ack, by request number (only for a remote owner). */
  private readonly pendingHttp = new Map<number, HttpResponse>();
  private nextHttpRequest = 1;
  nowSec = Math.floor(Date.now() / 1000);

  constructor(init: WorkgroupInit, private readonly log: Logger) {
    this.id = init.id;
    this.count = init.count;
    this.options = init.options;
    this.stats = new Float64Array(init.stats);
    const load = loadUws(init.options.allowSlowFallback);
    this.uws = load.uws;
    this.uwsNative = load.native;
    if (!load.native) this.log.warn({ reason: load.nativeError }, 'uWebSockets.js is running on its SLOW pure-JS fallback (--allow-slow-fallback)');
    // Gauges start from zero; counters continue across restarts.
    this.stats[Stat.SESSIONS] = 0;
    this.stats[Stat.SUBSCRIPTIONS] = 0;
    this.stats[Stat.TOPICS_OWNED] = 0;
    this.stats[Stat.LISTENING] = 0;
    this.app = this.buildApp();
  }

  private buildApp(): TemplatedApp {
    const o = this.options;
    const app = this.uws.App();
    app.ws<SessionData>('/v1/ws', {
      // uWS cuts a frame over its limit at the TCP level (the client sees 1006). We let frames up to
      // twice our limit through so that most oversize frames get a proper 1009 close from us.
      maxPayloadLength: 2 * (o.maxPayloadBytes + ENVELOPE_BYTES),
      maxBackpressure: o.maxBackpressureBytes,
      closeOnBackpressureLimit: 1 as unknown as number,
      idleTimeout: o.idleTimeoutSeconds,
      sendPingsAutomatically: true,
      upgrade: (res, req, context) => this.onUpgrade(res, req, context),
      open: (ws) => this.onOpen(ws),
      message: (ws, message, isBinary) => this.onMessage(ws, message, isBinary),
      close: (ws, code) => this.onClose(ws, code),
      subscription: (_ws, topic, newCount, oldCount) => this.onSubscriptionChange(topic, newCount, oldCount),
    });
    app.post('/v1/publish', (res, req) => this.onHttpPublish(res, req));
    registerStaticRoutes(app);
    app.any('/*', (res, req) => {
      res.writeStatus('404 Not Found').writeHeader('content-type', 'application/json').end(JSON.stringify({ error: { code: ErrorCode.NOT_FOUND, message: `no route for ${req.getMethod().toUpperCase()} ${req.getUrl()}` } }));
    });
    return app;
  }

  listen(onListening: (port: number) => void, onFailed: (error: string) => void): void {
    const { host, port } = this.options;
    this.app.listen(host, port, (socket) => {
      if (!socket) {
        onFailed(`could not listen on ${host}:${port} (in use, or no permission)`);
        return;
      }
      this.listenSocket = socket;
      this.stats[Stat.LISTENING] = 1;
      this.heartbeat = setInterval(() => this.tick(), 1000);
      this.tick();
      onListening(this.uws.us_socket_local_port(socket as unknown as Parameters<Uws['us_socket_local_port']>[0]));
    });
  }

  /** Once a second: clock for session timestamps, gauges, heartbeat. */
  private tick(): void {
    this.nowSec = Math.floor(Date.now() / 1000);
    const s = this.stats;
    s[Stat.SESSIONS] = this.slab.size;
    s[Stat.SLAB_CAPACITY] = this.slab.capacity;
    s[Stat.SLAB_USED] = this.slab.size;
    s[Stat.TOPICS_OWNED] = this.topics.size;
    s[Stat.HEARTBEAT_MS] = Date.now();
  }

  // ---- sessions -------------------------------------------------------

  private onUpgrade(res: HttpResponse, req: HttpRequest, context: unknown): void {
    const encodingParam = req.getQuery('encoding') ?? '';
    const key = req.getHeader('sec-websocket-key');
    const protocol = req.getHeader('sec-websocket-protocol');
    const extensions = req.getHeader('sec-websocket-extensions');
    if (this.draining) return this.refuse(res, '503 Service Unavailable', ErrorCode.SHUTTING_DOWN, 'server is shutting down; reconnect to another node');
    let flags = 0;
    if (encodingParam === 'msgpack') flags |= SessionFlag.MSGPACK;
    else if (encodingParam !== '' && encodingParam !== 'json') return this.refuse(res, '400 Bad Request', ErrorCode.BAD_REQUEST, 'encoding must be json or msgpack');
    const ipHash = addressHash(res.getRemoteAddress());
    const cap = this.options.maxConnectionsPerIp;
    if (cap > 0) {
      if (this.ipTable.count(ipHash) >= cap) return this.refuse(res, '429 Too Many Requests', ErrorCode.BAD_REQUEST, `at most ${cap} connections per address`);
      this.ipTable.add(ipHash);
      flags |= SessionFlag.IP_COUNTED;
    }
    const slot = this.slab.open(flags, ipHash, this.nowSec);
    // uWS calls open() within upgrade(), so the slot cannot leak between the two.
    res.upgrade<SessionData>({ slot }, key, protocol, extensions, context as never);
  }

  private refuse(res: HttpResponse, status: string, code: ErrorCode, message: string): void {
    this.stats[Stat.SESSIONS_REJECTED]++;
    res.writeStatus(status).writeHeader('content-type', 'application/json').end(JSON.stringify({ error: { code, message } }));
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
    this.slab.close(slot);
    this.stats[Stat.SESSIONS_CLOSED]++;
    this.stats[Stat.SESSIONS] = this.slab.size;
    if (this.draining && this.slab.size === 0) this.onDrained?.();
  }

  /** uWS tells us a topic's local subscriber count changed (including on close). */
  private onSubscriptionChange(_key: ArrayBuffer, _newCount: number, _oldCount: number): void {
    // Interest is tracked by the owner through the sub path; with one workgroup there is nothing to tell.
  }

  // ---- commands -------------------------------------------------------

  private onMessage(ws: WebSocket<SessionData>, message: ArrayBuffer, isBinary: boolean): void {
    const slot = ws.getUserData().slot;
    try {
      this.slab.recordIn(slot, message.byteLength, this.nowSec);
      this.stats[Stat.BYTES_IN] += message.byteLength;
      const encoding: EncodingId = this.slab.flags(slot) & SessionFlag.MSGPACK ? ENCODING_MSGPACK : ENCODING_JSON;
      if (isBinary !== (encoding === ENCODING_MSGPACK)) {
        this.stats[Stat.PROTOCOL_ERRORS]++;
        ws.end(CloseCode.UNSUPPORTED_DATA, encoding === ENCODING_JSON ? 'binary frame on a JSON session' : 'text frame on a msgpack session');
        return;
      }
      if (message.byteLength > this.options.maxPayloadBytes + ENVELOPE_BYTES) {
        this.stats[Stat.PROTOCOL_ERRORS]++;
        ws.end(CloseCode.MESSAGE_TOO_BIG, `frame over ${this.options.maxPayloadBytes + ENVELOPE_BYTES} bytes`);
        return;
      }
      const bytes = new Uint8Array(message);
      const cmd = encoding === ENCODING_JSON ? parseJsonCommand(bytes) : parseMsgpackCommand(bytes);
      if (cmd instanceof ProtocolError) return this.rejectCommand(ws, slot, encoding, cmd);
      this.handleCommand(ws, slot, encoding, cmd);
    } catch (err) {
      // Never throw across the uWS boundary: answer, count and log.
      this.stats[Stat.INTERNAL_ERRORS]++;
      this.log.error({ err, slot }, 'command handler failed');
      this.reply(ws, slot, this.slab.flags(slot) & SessionFlag.MSGPACK ? ENCODING_MSGPACK : ENCODING_JSON, errorReply(new ProtocolError(ErrorCode.INTERNAL, 'internal error')));
    }
  }

  private rejectCommand(ws: WebSocket<SessionData>, slot: number, encoding: EncodingId, err: ProtocolError): void {
    this.stats[Stat.PROTOCOL_ERRORS]++;
    if (this.slab.addError(slot) > MAX_ERRORS_PER_SESSION) {
      ws.end(CloseCode.POLICY_VIOLATION, `more than ${MAX_ERRORS_PER_SESSION} bad commands`);
      return;
    }
    this.reply(ws, slot, encoding, errorReply(err));
  }

  private handleCommand(ws: WebSocket<SessionData>, slot: number, encoding: EncodingId, cmd: Command): void {
    switch (cmd.op) {
      case 'ping':
        this.reply(ws, slot, encoding, { id: cmd.id, ok: true, ts: nowMicros() });
        return;
      case 'sub':
        return this.subscribe(ws, slot, encoding, cmd);
      case 'unsub': {
        const prefix = encoding === ENCODING_MSGPACK ? 'm' : 'j';
        let removed = 0;
        for (const topic of cmd.topics) if (ws.unsubscribe(prefix + topic)) removed++;
        this.slab.addSubscriptions(slot, -removed);
        this.stats[Stat.SUBSCRIPTIONS] -= removed;
        this.reply(ws, slot, encoding, { id: cmd.id, ok: true });
        return;
      }
      case 'pub':
        return this.publishFromSession(ws, slot, encoding, cmd);
    }
  }

  private subscribe(ws: WebSocket<SessionData>, slot: number, encoding: EncodingId, cmd: SubCommand): void {
    const prefix = encoding === ENCODING_MSGPACK ? 'm' : 'j';
    const max = this.options.maxSubscriptionsPerSession;
    let fresh = 0;
    for (const topic of cmd.topics) if (!ws.isSubscribed(prefix + topic)) fresh++;
    if (this.slab.subscriptions(slot) + fresh > max) {
      return this.rejectCommand(ws, slot, encoding, new ProtocolError(ErrorCode.TOO_MANY_SUBSCRIPTIONS, `at most ${max} subscriptions per session`, cmd.id));
    }
    const result: Record<string, { epoch: number; seq: number }> = {};
    for (const topic of cmd.topics) {
      if (ownerOf(topic, this.count) !== this.id) throw new Error('cross-workgroup subscribe is not wired yet');
      const tid = this.topics.intern(topic);
      if (encoding === ENCODING_MSGPACK) this.topics.interestMsgpack[tid] |= 1 << this.id;
      else this.topics.interestJson[tid] |= 1 << this.id;
      if (ws.subscribe(prefix + topic)) {
        this.slab.addSubscriptions(slot, 1);
        this.stats[Stat.SUBSCRIPTIONS]++;
      }
      result[topic] = { epoch: this.topics.epoch[tid], seq: this.topics.seq[tid] };
    }
    this.reply(ws, slot, encoding, { id: cmd.id, ok: true, topics: result });
  }

  private publishFromSession(ws: WebSocket<SessionData>, slot: number, encoding: EncodingId, cmd: PubCommand): void {
    if (this.draining) return this.rejectCommand(ws, slot, encoding, new ProtocolError(ErrorCode.SHUTTING_DOWN, 'server is shutting down; publish to another node', cmd.id));
    const req = this.makePublish(cmd.topic, encoding, cmd.data, cmd.retain, cmd.ts);
    if (req instanceof ProtocolError) {
      return this.rejectCommand(ws, slot, encoding, new ProtocolError(req.code, req.message, cmd.id));
    }
    const ack: AckTarget | null = cmd.ack ? { kind: 'ws', slot, generation: this.slab.generation(slot), id: cmd.id } : null;
    this.routePublish(req, ack);
  }

  /** Encodes a publish's data once, in the publisher's encoding, and checks its size. */
  private makePublish(topic: string, encoding: EncodingId, data: unknown, retain: boolean, ts: number | null): PublishRequest | ProtocolError {
    let dataJson: string | null = null;
    let dataMsgpack: Uint8Array | null = null;
    let size: number;
    if (encoding === ENCODING_JSON) {
      dataJson = dataToJson(data);
      size = Buffer.byteLength(dataJson);
    } else {
      dataMsgpack = dataToMsgpack(data);
      size = dataMsgpack.length;
    }
    if (size > this.options.maxPayloadBytes) {
      return new ProtocolError(ErrorCode.PAYLOAD_TOO_LARGE, `data is ${size} bytes encoded; the maximum is ${this.options.maxPayloadBytes}`);
    }
    this.stats[Stat.MESSAGES_IN]++;
    const receivedAtMicros = nowMicros();
    return { topic, dataEncoding: encoding, dataJson, dataMsgpack, retain, tsMicros: ts ?? receivedAtMicros, receivedAtMicros };
  }

  private routePublish(req: PublishRequest, ack: AckTarget | null): void {
    const owner = ownerOf(req.topic, this.count);
    if (owner !== this.id) throw new Error('cross-workgroup publish is not wired yet');
    const { epoch, seq } = this.sequence(req);
    if (ack !== null) this.deliverAck(ack, epoch, seq);
  }

  /** Owner only: assigns the topic's next seq and hands the message to every interested workgroup. */
  private sequence(req: PublishRequest): { epoch: number; seq: number } {
    const t = this.topics;
    const tid = t.intern(req.topic);
    const seq = ++t.seq[tid];
    const epoch = t.epoch[tid];
    this.stats[Stat.MESSAGES_SEQUENCED]++;
    if ((t.interestJson[tid] | t.interestMsgpack[tid]) !== 0) this.deliverLocal(req, epoch, seq);
    return { epoch, seq };
  }

  /**
   * Hands one message to this workgroup's subscribers: one uWS publish per
   * encoding that has subscribers here. No allocation per subscriber.
   */
  private deliverLocal(req: PublishRequest, epoch: number, seq: number): void {
    const app = this.app;
    const keyJson = 'j' + req.topic;
    const keyMsgpack = 'm' + req.topic;
    const nJson = app.numSubscribers(keyJson);
    const nMsgpack = app.numSubscribers(keyMsgpack);
    if (nJson > 0) {
      const dataJson = req.dataJson ?? dataToJson(unpackr.unpack(req.dataMsgpack as Uint8Array));
      const frame = encodeJsonFrame(req.topic, epoch, seq, req.tsMicros, 0, dataJson);
      app.publish(keyJson, frame, false);
      this.stats[Stat.BYTES_OUT] += nJson * frame.length;
    }
    if (nMsgpack > 0) {
      const data = req.dataMsgpack ?? packr.pack(JSON.parse(req.dataJson as string));
      const frame = encodeBinaryFrame(req.topic, epoch, seq, req.tsMicros, 0, data);
      app.publish(keyMsgpack, frame, true);
      this.stats[Stat.BYTES_OUT] += nMsgpack * frame.length;
    }
    this.stats[Stat.MESSAGES_OUT] += nJson + nMsgpack;
    recordLatency(this.stats, nowMicros() - req.receivedAtMicros);
  }

  private deliverAck(ack: AckTarget, epoch: number, seq: number): void {
    if (ack.kind === 'http') {
      const res = this.pendingHttp.get(ack.slot);
      if (res === undefined) return;
      this.pendingHttp.delete(ack.slot);
      res.cork(() => res.writeHeader('content-type', 'application/json').end(`{"epoch":${epoch},"seq":${seq}}`));
      return;
    }
    if (!this.slab.isOpen(ack.slot, ack.generation)) return;
    const ws = this.sockets[ack.slot];
    if (ws === undefined) return;
    const encoding: EncodingId = this.slab.flags(ack.slot) & SessionFlag.MSGPACK ? ENCODING_MSGPACK : ENCODING_JSON;
    this.reply(ws, ack.slot, encoding, { id: ack.id, ok: true, epoch, seq });
  }

  /** Sends a reply; a reply dropped for backpressure means the session is too slow to keep. */
  private reply(ws: WebSocket<SessionData>, slot: number, encoding: EncodingId, reply: Record<string, unknown>): void {
    const bytes = encodeReply(encoding, reply);
    const result = ws.send(bytes, encoding === ENCODING_MSGPACK);
    this.slab.recordOut(slot, typeof bytes === 'string' ? bytes.length : bytes.length);
    if (result === SEND_DROPPED) this.closeSlow(ws, slot);
  }

  private closeSlow(ws: WebSocket<SessionData>, slot: number): void {
    if (this.slab.state(slot) !== SessionState.OPEN) return;
    this.slab.setState(slot, SessionState.CLOSING);
    this.stats[Stat.SLOW_CONSUMER_CLOSES]++;
    ws.end(CloseCode.SLOW_CONSUMER, CloseReason[CloseCode.SLOW_CONSUMER]);
  }

  // ---- HTTP publish ---------------------------------------------------

  private onHttpPublish(res: HttpResponse, req: HttpRequest): void {
    const contentType = req.getHeader('content-type');
    const encoding: EncodingId = contentType.startsWith('application/msgpack') || contentType.startsWith('application/x-msgpack') ? ENCODING_MSGPACK : ENCODING_JSON;
    const limit = this.options.maxPayloadBytes + ENVELOPE_BYTES;
    const declared = Number(req.getHeader('content-length') || '0');
    if (declared > limit) return this.httpError(res, '413 Payload Too Large', ErrorCode.PAYLOAD_TOO_LARGE, `body is ${declared} bytes; the maximum is ${limit}`, true);
    let body: Buffer | null = null;
    let aborted = false;
    res.onAborted(() => {
      aborted = true;
    });
    res.onData((chunk, isLast) => {
      if (aborted) return;
      const part = Buffer.from(chunk);
      body = body === null ? Buffer.from(part) : Buffer.concat([body, part]);
      if (body.length > limit) {
        aborted = true;
        return this.httpError(res, '413 Payload Too Large', ErrorCode.PAYLOAD_TOO_LARGE, `body is over ${limit} bytes`, true);
      }
      if (isLast) this.httpPublishBody(res, encoding, body ?? Buffer.alloc(0));
    });
  }

  private httpPublishBody(res: HttpResponse, encoding: EncodingId, body: Buffer): void {
    try {
      if (this.draining) return this.httpError(res, '503 Service Unavailable', ErrorCode.SHUTTING_DOWN, 'server is shutting down; publish to another node');
      let value: unknown;
      if (body.length === 0) return this.httpError(res, '400 Bad Request', encoding === ENCODING_JSON ? ErrorCode.BAD_JSON : ErrorCode.BAD_MSGPACK, 'empty body');
      try {
        value = encoding === ENCODING_JSON ? JSON.parse(body.toString('utf8')) : unpackr.unpack(body);
      } catch {
        return this.httpError(res, '400 Bad Request', encoding === ENCODING_JSON ? ErrorCode.BAD_JSON : ErrorCode.BAD_MSGPACK, encoding === ENCODING_JSON ? 'body is not valid JSON' : 'body is not valid msgpack');
      }
      if (typeof value !== 'object' || value === null || Array.isArray(value)) return this.httpError(res, '400 Bad Request', ErrorCode.BAD_REQUEST, 'body must be a map {topic, data}');
      const v = value as Record<string, unknown>;
      const err = topicError(v.topic);
      if (err !== null) return this.httpError(res, '400 Bad Request', ErrorCode.BAD_TOPIC, err);
      if (v.data === undefined) return this.httpError(res, '400 Bad Request', ErrorCode.BAD_DATA, 'a publish needs data');
      if (v.retain !== undefined && typeof v.retain !== 'boolean') return this.httpError(res, '400 Bad Request', ErrorCode.BAD_REQUEST, 'retain must be a boolean');
      const req = this.makePublish(v.topic as string, encoding, v.data, v.retain === true, null);
      if (req instanceof ProtocolError) return this.httpError(res, '413 Payload Too Large', req.code, req.message);
      this.stats[Stat.HTTP_PUBLISHES]++;
      const requestId = this.nextHttpRequest++;
      this.pendingHttp.set(requestId, res);
      this.routePublish(req, { kind: 'http', slot: requestId, generation: 0, id: null });
    } catch (err) {
      this.stats[Stat.INTERNAL_ERRORS]++;
      this.log.error({ err }, 'HTTP publish failed');
      this.httpError(res, '500 Internal Server Error', ErrorCode.INTERNAL, 'internal error');
    }
  }

  private httpError(res: HttpResponse, status: string, code: ErrorCode, message: string, close = false): void {
    this.stats[Stat.PROTOCOL_ERRORS]++;
    res.cork(() => res.writeStatus(status).writeHeader('content-type', 'application/json').end(JSON.stringify({ error: { code, message } }), close));
  }

  // ---- shutdown -------------------------------------------------------

  private onDrained: (() => void) | null = null;

  /**
   * Stops accepting, tells every session to reconnect elsewhere (1001), and
   * calls back once all are closed or the timeout passed. Then close() must run.
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

  /** Closes every socket and handle, so that the thread can end without taking the process down. */
  close(): void {
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.heartbeat = null;
    this.stats[Stat.LISTENING] = 0;
    this.stats[Stat.SESSIONS] = 0;
    try {
      (this.app as unknown as { close(): void }).close();
    } catch (err) {
      this.log.error({ err }, 'app.close failed');
    }
  }
}
