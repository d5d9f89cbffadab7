// The SSE transport: a WebSocketLike (sdk/transport.ts) over GET /v1/sse and
// POST /v1/publish, for networks where a WebSocket cannot be opened. The
// client (sdk/client.ts) speaks to it exactly as to a WebSocket: commands go
// in through send(), replies and deliveries come out through onmessage, in
// the client's encoding. Inside:
//
// - The connection is open once GET /v1/sse (no topics yet) answers 200.
// - sub and unsub change the stream's topic list: the stream is opened again
//   (one per turn, whatever the number of commands) with every topic and
//   the position this transport last saw of each as `resume`, so that the
//   topics already live lose nothing and get nothing twice; the new
//   stream's `event: ready` answers the sub commands (its entries are the
//   WebSocket sub reply's).
// - pub is POST /v1/publish, one at a time (publishes keep their order), and
//   after the subs sent before it have taken effect (as on a WebSocket),
//   its answer turned into the pub reply.
// - ping is answered here while the stream is alive (a byte within
//   2.5 heartbeats: the server writes a comment at least every one).
// - auth keeps the new token for the next stream and the publishes; the
//   stream open now ends at its token's exp (event: end TOKEN_EXPIRED), and
//   is opened again at once with the new token.
// - The stream lost or ended is the socket closing (1006; 1001 when the
//   server is shutting down, 4003 when the token expired, 4000 when cut as
//   a slow reader): the client reconnects and resumes, as over WebSocket.
//
// fetch and a ReadableStream, not EventSource: an EventSource cannot read
// a refusal's status and body (401, 403, 400), and it reconnects by itself.
// Binary data published over msgpack reaches an SSE client as {"$base64"}.
import { packr, unpackr } from '../protocol/codec';
import { ErrorCode } from '../protocol/errors';
import { encodeBinaryFrame } from '../protocol/frame';
import { encodeResumeId } from '../protocol/sse';
import type { UpgradeResponse, WebSocketLike } from './transport';

const CONNECTING = 0;
const OPEN = 1;
const CLOSED = 3;
/** The stream counts as dead after this many heartbeat intervals without a byte. */
const HEARTBEATS_ALIVE = 2.5;
const DEFAULT_HEARTBEAT_MS = 15_000;

/** What the client asks for: WebSocket, SSE, or WebSocket with SSE when a WebSocket cannot be opened. */
export type TransportMode = 'auto' | 'websocket' | 'sse';

/**
 * Which transport the next attempt uses. auto: WebSocket first; after an
 * attempt that did not open and was not refused by c10m itself (a browser's
 * opaque failure, a proxy's answer), the other one. Once one has opened, it
 * is kept while it keeps opening.
 */
export class TransportChoice {
  private sse: boolean;
  private webSocketWorked = false;
  constructor(readonly mode: TransportMode) {
    if (mode !== 'auto' && mode !== 'websocket' && mode !== 'sse') throw new TypeError('transport must be "auto", "websocket" or "sse"');
    this.sse = mode === 'sse';
  }

  /** The next attempt goes over SSE. */
  get useSse(): boolean {
    return this.sse;
  }

  /**
   * An attempt ended: `opened` it had opened; `c10mRefusal`: the server answered it with a c10m error (401, 429, 503 ...).
   * Once a WebSocket has opened, the client stays on WebSocket: a node that went away (refused connects while it
   * restarts) is not a network that breaks WebSockets, and its crowd must not come back over SSE.
   */
  ended(opened: boolean, c10mRefusal: boolean): void {
    if (opened && !this.sse) this.webSocketWorked = true;
    if (this.mode === 'auto' && !this.webSocketWorked && !opened && !c10mRefusal) this.sse = !this.sse;
  }
}

interface PendingSub {
  id: unknown;
  topics: string[];
  /** The stream whose ready answers it (0: none opened since it came). */
  gen: number;
}

/** A WebSocketLike over Server-Sent Events and HTTP publishes. */
export class SseSocket implements WebSocketLike {
  binaryType = 'arraybuffer';
  readyState = CONNECTING;
  bufferedAmount = 0;
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: ((ev: { code: number; reason: string; wasClean?: boolean }) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;
  private readonly base: string;
  private readonly msgpack: boolean;
  private token: string | null;
  /** The stream's topics, in order, and the last position seen of each ([0, 0]: none). */
  private readonly topics = new Map<string, [number, number]>();
  private pending: PendingSub[] = [];
  private refusalListener: ((request: unknown, response: UpgradeResponse) => void) | null = null;
  private abort: AbortController | null = null;
  /** Bumped per stream: what an older one says is ignored. */
  private gen = 0;
  private reopenScheduled = false;
  private lastByteMs = 0;
  private heartbeatMs = DEFAULT_HEARTBEAT_MS;
  private readonly publishes: Record<string, unknown>[] = [];
  private publishing = false;

  /** `url`: the session URL the client made (ws(s)://host/v1/ws?encoding=..&token=..). */
  constructor(url: string) {
    const u = new URL(url);
    u.protocol = u.protocol === 'wss:' ? 'https:' : 'http:';
    this.msgpack = u.searchParams.get('encoding') === 'msgpack';
    this.token = u.searchParams.get('token');
    this.base = `${u.protocol}//${u.host}`;
    this.openStream();
  }

  on(event: 'unexpected-response', listener: (request: unknown, response: UpgradeResponse) => void): unknown {
    if (event === 'unexpected-response') this.refusalListener = listener;
    return this;
  }

  send(data: string | Uint8Array): void {
    if (this.readyState !== OPEN) throw new Error('the SSE transport is not open');
    const cmd = (typeof data === 'string' ? JSON.parse(data) : unpackr.unpack(data)) as Record<string, unknown>;
    switch (cmd.op) {
      case 'sub': {
        const topics = cmd.topics as string[];
        const resume = (cmd.resume ?? {}) as Record<string, [number, number]>;
        for (const t of topics) this.topics.set(t, resume[t] ?? this.topics.get(t) ?? [0, 0]);
        this.pending.push({ id: cmd.id, topics, gen: 0 });
        return this.scheduleReopen();
      }
      case 'unsub':
        for (const t of cmd.topics as string[]) this.topics.delete(t);
        this.reply({ id: cmd.id, ok: true });
        return this.scheduleReopen();
      case 'pub':
        this.publishes.push(cmd);
        return this.nextPublish();
      case 'ping':
        // No answer from a dead stream: the client's ping times out and it reconnects.
        if (Date.now() - this.lastByteMs <= HEARTBEATS_ALIVE * this.heartbeatMs) this.reply({ id: cmd.id, ok: true, ts: Date.now() * 1000, wg: -1 });
        return;
      case 'auth':
        this.token = cmd.token as string;
        this.tokenRefreshed = true;
        return this.reply({ id: cmd.id, ok: true, exp: null });
    }
  }

  close(code = 1000, reason = ''): void {
    if (this.readyState === CLOSED) return;
    this.finish(code, reason);
  }

  // ---- the stream -----------------------------------------------------------

  private scheduleReopen(): void {
    if (this.reopenScheduled) return;
    this.reopenScheduled = true;
    setTimeout(() => {
      this.reopenScheduled = false;
      if (this.readyState === OPEN) this.openStream();
    }, 0);
  }

  private streamUrl(): string {
    const topics = [...this.topics.keys()];
    let url = `${this.base}/v1/sse?topics=${topics.join(',')}`;
    if (this.token !== null) url += `&token=${encodeURIComponent(this.token)}`;
    const positions = [...this.topics.values()];
    if (positions.some((p) => p[0] !== 0))
      url += `&resume=${encodeResumeId(
        topics,
        positions.map((p) => p[0]),
        positions.map((p) => p[1]),
      )}`;
    return url;
  }

  private openStream(): void {
    const gen = ++this.gen;
    for (const p of this.pending) p.gen = gen;
    this.abort?.abort();
    const ac = new AbortController();
    this.abort = ac;
    const fetchFn = (globalThis as { fetch?: typeof fetch }).fetch;
    if (typeof fetchFn !== 'function') return this.failLater(gen, 'this environment has no fetch');
    fetchFn(this.streamUrl(), { signal: ac.signal, headers: { accept: 'text/event-stream' } }).then(
      (res) => this.onResponse(gen, res),
      (err: Error) => this.failLater(gen, `SSE stream: ${err?.message ?? String(err)}`),
    );
  }

  private async onResponse(gen: number, res: Response): Promise<void> {
    if (gen !== this.gen || this.readyState === CLOSED) return;
    if (res.status !== 200 || res.body === null) return this.refused(gen, res);
    this.lastByteMs = Date.now();
    if (this.readyState === CONNECTING) {
      this.readyState = OPEN;
      this.onopen?.({});
    }
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    let event = { type: '', data: [] as string[] };
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (gen !== this.gen) return;
        if (done) break;
        this.lastByteMs = Date.now();
        buffer += decoder.decode(value, { stream: true });
        let nl: number;
        while ((nl = buffer.indexOf('\n')) >= 0) {
          const line = buffer.slice(0, nl);
          buffer = buffer.slice(nl + 1);
          if (line === '') {
            if (event.data.length > 0) this.onEvent(gen, event.type || 'message', event.data.join('\n'));
            event = { type: '', data: [] };
          } else if (line.startsWith('event:')) event.type = line.slice(6).trim();
          else if (line.startsWith('data:')) event.data.push(line.slice(line.startsWith('data: ') ? 6 : 5));
          if (gen !== this.gen || this.readyState === CLOSED) return;
        }
      }
      this.failLater(gen, 'the SSE stream ended');
    } catch (err) {
      this.failLater(gen, `SSE stream: ${(err as Error)?.message ?? String(err)}`);
    }
  }

  private onEvent(gen: number, type: string, data: string): void {
    if (type === 'message') {
      const m = JSON.parse(data) as { topic: string; epoch: number; seq: number; ts: number; snapshot?: boolean; replay?: boolean; data: unknown };
      const pos = this.topics.get(m.topic);
      if (pos === undefined) return;
      if (m.snapshot !== true) this.topics.set(m.topic, [m.epoch, m.seq]);
      if (!this.msgpack) return this.onmessage?.({ data });
      const flags = (m.replay === true ? 1 : 0) | (m.snapshot === true ? 2 : 0);
      return this.onmessage?.({ data: encodeBinaryFrame(m.topic, m.epoch, m.seq, m.ts, flags, packr.pack(m.data)).slice() });
    }
    if (type === 'ready') {
      const r = JSON.parse(data) as { topics: Record<string, { epoch?: number; seq?: number; error?: unknown }>; heartbeatMs?: number };
      if (typeof r.heartbeatMs === 'number' && r.heartbeatMs > 0) this.heartbeatMs = r.heartbeatMs;
      for (const [t, e] of Object.entries(r.topics)) {
        if (e.error !== undefined) this.topics.delete(t);
        else if (this.topics.has(t) && typeof e.epoch === 'number') this.topics.set(t, [e.epoch, e.seq as number]);
      }
      const pending = this.pending.filter((p) => p.gen === gen);
      this.pending = this.pending.filter((p) => p.gen !== gen);
      for (const p of pending) {
        const topics: Record<string, unknown> = {};
        for (const t of p.topics) topics[t] = r.topics[t] ?? { error: { code: ErrorCode.INTERNAL, message: 'the stream did not name this topic' } };
        this.reply({ id: p.id, ok: true, topics });
      }
      return this.nextPublish();
    }
    if (type === 'end') {
      const e = JSON.parse(data) as { code: string; message: string };
      const code = e.code === ErrorCode.SHUTTING_DOWN ? 1001 : e.code === ErrorCode.TOKEN_EXPIRED ? 4003 : 1006;
      // A token refreshed in band meanwhile: the stream goes on with it.
      if (code === 4003 && this.token !== null && this.tokenRefreshed) {
        this.tokenRefreshed = false;
        return this.openStream();
      }
      this.finish(code, e.message);
    }
    // gap: the client sees the same jump in the seqs (sdk/stream.ts) and reports it.
  }

  private tokenRefreshed = false;

  /** A refusal: the first stream's goes to the client (as a refused upgrade); a later one fails the subs that caused it, or the connection. */
  private async refused(gen: number, res: Response): Promise<void> {
    const body = await res.text().catch(() => '');
    if (gen !== this.gen || this.readyState === CLOSED) return;
    if (this.readyState === CONNECTING) {
      const listener = this.refusalListener;
      if (listener === null) return this.finish(1006, `HTTP ${res.status}`);
      const headers: Record<string, string> = {};
      res.headers.forEach((v, k) => (headers[k] = v));
      const bytes = new TextEncoder().encode(body);
      const handlers = new Map<string, (chunk: unknown) => void>();
      const response: UpgradeResponse = {
        statusCode: res.status,
        headers,
        on(event, l) {
          handlers.set(event, l);
          return response;
        },
      };
      listener(null, response);
      handlers.get('data')?.(bytes);
      handlers.get('end')?.(undefined);
      return;
    }
    if (this.pending.some((p) => p.gen === gen) && (res.status === 400 || res.status === 403)) {
      let error: unknown = { code: ErrorCode.BAD_REQUEST, message: `HTTP ${res.status}` };
      try {
        error = (JSON.parse(body) as { error: unknown }).error ?? error;
      } catch {
        // not a c10m body
      }
      const pending = this.pending.filter((p) => p.gen === gen);
      this.pending = this.pending.filter((p) => p.gen !== gen);
      for (const p of pending) {
        for (const t of p.topics) this.topics.delete(t);
        this.reply({ id: p.id, error });
      }
      this.nextPublish();
      return this.openStream();
    }
    this.finish(1006, `SSE stream refused: HTTP ${res.status}`);
  }

  private failLater(gen: number, reason: string): void {
    if (gen !== this.gen || this.readyState === CLOSED) return;
    this.finish(1006, reason);
  }

  private finish(code: number, reason: string): void {
    this.readyState = CLOSED;
    this.gen++;
    this.abort?.abort();
    this.abort = null;
    const cb = this.onclose;
    // As a WebSocket's close event: after the call that caused it.
    setTimeout(() => cb?.({ code, reason, wasClean: code === 1000 }), 0);
  }

  private reply(r: Record<string, unknown>): void {
    const data = this.msgpack ? packr.pack(r) : JSON.stringify(r);
    setTimeout(() => {
      if (this.readyState === OPEN) this.onmessage?.({ data });
    }, 0);
  }

  // ---- publishes ------------------------------------------------------------

  /** One publish at a time, in order: POST /v1/publish, its answer as the pub reply. */
  private nextPublish(): void {
    // A publish after a sub waits for it to take effect, as the server would handle them on a WebSocket.
    if (this.publishing || this.publishes.length === 0 || this.readyState !== OPEN || this.pending.length > 0) return;
    const cmd = this.publishes.shift() as Record<string, unknown>;
    this.publishing = true;
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (this.token !== null) headers.authorization = `Bearer ${this.token}`;
    const body = JSON.stringify({ topic: cmd.topic, data: cmd.data, retain: cmd.retain === true });
    const done = (r: Record<string, unknown> | null) => {
      this.publishing = false;
      if (r !== null && (cmd.ack === true || r.error !== undefined)) this.reply(r);
      this.nextPublish();
    };
    fetch(`${this.base}/v1/publish`, { method: 'POST', headers, body }).then(
      async (res) => {
        const answer = (await res.json().catch(() => ({}))) as { epoch?: number; seq?: number; error?: unknown };
        if (res.status === 200) return done({ id: cmd.id, ok: true, epoch: answer.epoch, seq: answer.seq });
        done({ id: cmd.id, error: answer.error ?? { code: ErrorCode.UNAVAILABLE, message: `HTTP ${res.status}` } });
      },
      (err: Error) => done({ id: cmd.id, error: { code: ErrorCode.UNAVAILABLE, message: `publish failed: ${err?.message ?? String(err)}; it may or may not have been published` } }),
    );
  }
}
