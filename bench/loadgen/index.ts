// benchsub's connection engine: many client WebSocket sessions that send
// their commands once and then count deliveries and record their latency.
//
// The native engine (src/loadgen.cc here, built by build.js beside it as
// bench/loadgen/build/Release/c10m_loadgen.node) runs each client on its own
// epoll thread and holds tens of thousands of sockets per process; JS only
// polls it in batches. The fallback engine runs on the `ws` package in this thread: it
// is slow and meant for small connection counts (a few hundred), for a
// machine where the addon did not build. C10M_NATIVE_DISABLED=1 forces the
// fallback; C10M_LOADGEN_ADDON names another build of the addon (e.g. the
// AddressSanitizer one).
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import WebSocket from 'ws';
import { findPackageRoot } from '../../native-io/package-root';

/** Histograms a client keeps, in microseconds. */
export const HistogramKind = {
  /** Delivery latency: receive time minus the timestamp in the frame header. */
  LATENCY: 0,
  /** socket() to the 101 response. */
  CONNECT: 1,
  /** socket() to the last expected reply (e.g. the subscribe acks). */
  READY: 2,
} as const;
export type HistogramKind = (typeof HistogramKind)[keyof typeof HistogramKind];

export interface LoadStats {
  connections: number;
  /** Sockets opened so far (connections are opened at connectRate, maxPending at a time). */
  opened: number;
  /** Between socket() and the 101 response. */
  pending: number;
  /** Completed handshakes (cumulative). */
  connected: number;
  /** Sessions that got every expected reply. */
  ready: number;
  /** Failed before the handshake completed. */
  failed: number;
  /** Closed after the handshake (by either side). */
  closed: number;
  /** Delivery frames received. */
  messages: number;
  /** Bytes read from every socket, handshakes included. */
  bytes: number;
  replies: number;
  /** msgpack replies carrying an error. */
  errorReplies: number;
  /** Data messages that are neither deliveries nor expected replies. */
  otherMessages: number;
  pings: number;
  /** Deliveries stamped later than their receive time (recorded as 0 µs). */
  clockSkew: number;
  protocolErrors: number;
  serverCloses: number;
  /** With reconnect: sessions ready now (ready and not closed since). Without: as ready minus the closed ready ones. */
  live: number;
  /** With reconnect: attempts scheduled again (after a failure, a refusal or a close). */
  retries: number;
  /** With reconnect: connects and handshakes that failed (a node that is down), each retried after the backoff. */
  connectErrors: number;
  /** With reconnect: upgrades answered 503, 429, or another refusal status. */
  refused503: number;
  refused429: number;
  refusedOther: number;
  /** With reconnect: refusals whose hint (retryAfterMs) was followed instead of the backoff. */
  hinted: number;
  /** With reconnect: attempts that carried an admission ticket (&admit=), and those refused (503 or 429) all the same. */
  ticketsSent: number;
  ticketRefusals: number;
  /** With ping: pings sent, their replies that carried reconnectWindowMs, and the largest window seen (ms). */
  pingsSent: number;
  windowReplies: number;
  maxWindowMs: number;
  /** With reconnect: wall-clock ms of the last moment every session was ready; 0: not yet. */
  allLiveAtMs: number;
  lastCloseCode: number;
  /** Seconds from start() until every connection was open / ready; -1 until then. */
  allConnectedSeconds: number;
  allReadySeconds: number;
  firstError: string | null;
}

/** One command frame a session sends once its handshake is done. */
export interface CommandFrame {
  opcode: 1 | 2;
  payload: Uint8Array;
}

export interface SubscriberClientOptions {
  /** ws://IPv4:port/path?query */
  url: string;
  connections: number;
  /** IPv4 source addresses (127.x.y.z on loopback); connection i binds sourceAddresses[i % n]. */
  sourceAddresses: string[];
  /** The frames connection i sends. */
  commands(i: number): CommandFrame[];
  /** A text frame sent right after the handshake, before waiting (socket.io's namespace connect, "40"). */
  hello?: string;
  /** Server messages to wait for after the handshake before sending the commands (socket.io: the open packet and the connect reply, 2). */
  waitMessages?: number;
  /** Non-delivery messages after sending that make a session ready (our sub replies: one per command). */
  expectedReplies?: number;
  /** Answer Engine.IO's ping ("2") with "3": for the socket.io peer. */
  engineIoPing?: boolean;
  /** Connections opened per second; 0 (default) opens as fast as maxPending allows. */
  connectRate?: number;
  /** Most connections between socket() and the 101 response at once (default 256). */
  maxPending?: number;
  handshakeTimeoutMs?: number;
  /** Connection i's own query text, appended to the URL's query (e.g. "&token=..."; the native engine only, and the JS one). */
  query?(i: number): string;
  /**
   * Open a connection again when it fails or is closed, as the SDK does: after a 503 RETRY_LATER or 429
   * RATE_LIMITED at the upgrade, wait the body's retryAfterMs exactly (after a 503, come back with
   * &admit=<ticket>); otherwise full-jitter backoff (sdk/backoff.ts defaults). Native engine only.
   */
  reconnect?: boolean | { initialDelayMs?: number; maxDelayMs?: number; factor?: number };
  /**
   * With reconnect, as the SDK does: a ready session sends this ping command at once and then every intervalMs
   * (spread evenly over the connections), and reads the reply's reconnectWindowMs: its next reconnect's backoff
   * ceiling is at least that window (sdk/backoff.ts). Native engine only.
   */
  ping?: { intervalMs: number; frame: CommandFrame };
}

export interface SubscriberClient {
  readonly engine: 'native' | 'js';
  start(): void;
  /** Closes every socket and ends the engine. */
  stop(): void;
  stats(): LoadStats;
  /** [value, count, value, count, ...] of the histogram's non-empty buckets since the last call; resets it. */
  takeHistogram(kind: HistogramKind): Float64Array;
  /** Deliveries per connection. */
  connectionCounts(): Uint32Array;
  /** [unix second, upgrades completed, upgrades refused (503, 429), ...] for every second since start() that had either. */
  secondCounts(): Float64Array;
}

interface LoadgenBinding {
  LoadGen: new (options: Record<string, unknown>) => {
    start(): void;
    stop(): void;
    stats(): LoadStats;
    takeHistogram(kind: number): Float64Array;
    connectionCounts(): Uint32Array;
    secondCounts(): Float64Array;
  };
  parseFramesForTest(chunks: Uint8Array[], nowMicros: number): ParserEvent[];
  histogramBucketForTest(value: number): { index: number; lowest: number };
  clockMicros(): number;
}

export type ParserEvent =
  | { type: 'delivery'; ts: number; bytes: number; latency: number }
  | { type: 'message'; opcode: number; head: Buffer; bytes: number }
  | { type: 'ping'; payload: Buffer }
  | { type: 'pong' }
  | { type: 'close'; code: number }
  | { type: 'error'; message: string };

const ADDON_FILE = path.join('bench', 'loadgen', 'build', 'Release', 'c10m_loadgen.node');

function load(): { binding: LoadgenBinding | null; error: string | null; addonPath: string | null } {
  if (process.env.C10M_NATIVE_DISABLED === '1') return { binding: null, error: 'disabled by C10M_NATIVE_DISABLED=1', addonPath: null };
  let addonPath = process.env.C10M_LOADGEN_ADDON || null;
  if (!addonPath) {
    const root = findPackageRoot();
    if (!root) return { binding: null, error: `could not find the c10m package root above ${__dirname}`, addonPath: null };
    addonPath = path.join(root, ADDON_FILE);
  }
  if (!fs.existsSync(addonPath)) {
    return { binding: null, error: `${addonPath} does not exist: the addon was not built (run node bench/loadgen/build.js to see why)`, addonPath };
  }
  // A binary older than its sources speaks an older protocol with the JS side (seen: sessions that never got ready).
  const root = findPackageRoot();
  const srcDir = root === null ? '' : path.join(root, 'bench', 'loadgen', 'src');
  if (!process.env.C10M_LOADGEN_ADDON && srcDir !== '' && fs.existsSync(srcDir)) {
    const built = fs.statSync(addonPath).mtimeMs;
    const newer = fs.readdirSync(srcDir).find((f) => fs.statSync(path.join(srcDir, f)).mtimeMs > built);
    if (newer !== undefined) return { binding: null, error: `${addonPath} is older than bench/loadgen/src/${newer}: rebuild it with node bench/loadgen/build.js`, addonPath };
  }
  try {
    return { binding: require(addonPath) as LoadgenBinding, error: null, addonPath };
  } catch (err) {
    return { binding: null, error: (err as Error).message.split('\n')[0], addonPath };
  }
}

const loaded = load();

export interface LoadgenStatus {
  native: boolean;
  error: string | null;
  addonPath: string | null;
}

export function loadgenStatus(): LoadgenStatus {
  return { native: loaded.binding !== null, error: loaded.error, addonPath: loaded.addonPath };
}

export class LoadgenUnavailable extends Error {
  readonly code = 'LOADGEN_NATIVE_MISSING';
  constructor(reason: string | null, connections: number, maxJs: number) {
    super(
      `the native load generator (bench/loadgen/src/loadgen.cc) is not available (${reason}); ` +
        `its JS fallback holds at most ${maxJs} connections per process and ${connections} were asked for. ` +
        'Build it with `node bench/loadgen/build.js` (needs g++, make and python3), or ask for fewer connections.',
    );
  }
}

/** Most connections the JS fallback engine accepts in one process. */
export const MAX_JS_CONNECTIONS = 2000;

/** Microseconds since the Unix epoch: CLOCK_REALTIME from the addon, else the performance clock anchored at the wall clock. */
export const clockMicros: () => number = loaded.binding ? loaded.binding.clockMicros : () => Math.round((performance.timeOrigin + performance.now()) * 1000);

/** The native frame parser, fed `chunks` as successive reads (test entry point). */
export function parseFramesForTest(chunks: Uint8Array[], nowMicros = 0): ParserEvent[] {
  if (!loaded.binding) throw new LoadgenUnavailable(loaded.error, 0, 0);
  return loaded.binding.parseFramesForTest(chunks, nowMicros);
}

/** The native histogram's bucket for a value (test entry point). */
export function histogramBucketForTest(value: number): { index: number; lowest: number } {
  if (!loaded.binding) throw new LoadgenUnavailable(loaded.error, 0, 0);
  return loaded.binding.histogramBucketForTest(value);
}

/**
 * The key and accept value of the handshake. One key serves every connection: no server of ours depends on it being fresh.
 * queryAt: where a connection's own query (and &admit=) is inserted; with `openQuery` the path ends in a query ("?" at least).
 */
function handshake(u: URL, openQuery = false): { request: string; accept: string; key: string; queryAt: number } {
  const key = Buffer.from('c10m-benchsub-16').toString('base64');
  const accept = createHash('sha1')
    .update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11')
    .digest('base64');
  const line = `GET ${u.pathname}${u.search || (openQuery ? '?' : '')}`;
  const request = `${line} HTTP/1.1\r\n` + `Host: ${u.host}\r\n` + 'Upgrade: websocket\r\nConnection: Upgrade\r\n' + `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`;
  return { request, accept, key, queryAt: line.length };
}

/**
 * A client of `connections` sessions. engine 'auto' takes the native engine
 * when it is built, else the JS one for at most MAX_JS_CONNECTIONS; 'native'
 * throws LoadgenUnavailable without the addon.
 */
export function createSubscriberClient(options: SubscriberClientOptions, engine: 'auto' | 'native' | 'js' = 'auto'): SubscriberClient {
  const u = new URL(options.url);
  if (u.protocol !== 'ws:') throw new TypeError(`url must be ws://IPv4:port/...; got ${options.url}`);
  if (!Number.isInteger(options.connections) || options.connections < 1) throw new RangeError('connections must be a positive integer');
  if (options.sourceAddresses.length === 0) throw new RangeError('sourceAddresses must name at least one address');
  const useNative = engine === 'native' || (engine === 'auto' && loaded.binding !== null);
  if (useNative) {
    if (!loaded.binding) throw new LoadgenUnavailable(loaded.error, options.connections, MAX_JS_CONNECTIONS);
    return new NativeClient(loaded.binding, options, u);
  }
  if (options.reconnect) throw new LoadgenUnavailable(`${loaded.error ?? 'the JS engine was asked for'}; reconnect needs the native engine`, options.connections, 0);
  if (options.connections > MAX_JS_CONNECTIONS) throw new LoadgenUnavailable(loaded.error ?? 'the JS engine was asked for', options.connections, MAX_JS_CONNECTIONS);
  return new JsClient(options);
}

class NativeClient implements SubscriberClient {
  readonly engine = 'native' as const;
  private readonly lg: InstanceType<LoadgenBinding['LoadGen']>;

  constructor(binding: LoadgenBinding, o: SubscriberClientOptions, u: URL) {
    const payloads: Uint8Array[] = [];
    const ends: number[] = [];
    const opcodes: number[] = [];
    const connectionFrames = new Uint32Array(o.connections + 1);
    let offset = 0;
    for (let i = 0; i < o.connections; i++) {
      connectionFrames[i] = ends.length;
      for (const f of o.commands(i)) {
        payloads.push(f.payload);
        offset += f.payload.length;
        ends.push(offset);
        opcodes.push(f.opcode);
      }
    }
    connectionFrames[o.connections] = ends.length;
    const { request, accept, queryAt } = handshake(u, o.query !== undefined || !!o.reconnect);
    let queries: { queries: Buffer; queryEnds: Uint32Array } | null = null;
    if (o.query) {
      const parts: Buffer[] = [];
      const queryEnds = new Uint32Array(o.connections);
      let end = 0;
      for (let i = 0; i < o.connections; i++) {
        const q = Buffer.from(o.query(i), 'latin1');
        parts.push(q);
        end += q.length;
        queryEnds[i] = end;
      }
      queries = { queries: Buffer.concat(parts), queryEnds };
    }
    const backoff = typeof o.reconnect === 'object' ? o.reconnect : {};
    this.lg = new binding.LoadGen({
      host: u.hostname,
      port: Number(u.port || 80),
      sourceAddresses: o.sourceAddresses,
      request,
      accept,
      connections: o.connections,
      frames: Buffer.concat(payloads),
      frameEnds: Uint32Array.from(ends),
      frameOpcodes: Uint8Array.from(opcodes),
      connectionFrames,
      hello: o.hello ?? '',
      waitMessages: o.waitMessages ?? 0,
      expectedReplies: o.expectedReplies ?? 0,
      engineIoPing: o.engineIoPing ?? false,
      connectRate: o.connectRate ?? 0,
      maxPending: o.maxPending ?? 256,
      handshakeTimeoutMs: o.handshakeTimeoutMs ?? 30000,
      queryAt,
      ...(queries ?? {}),
      reconnect: !!o.reconnect,
      ...(backoff.initialDelayMs !== undefined ? { backoffInitialMs: backoff.initialDelayMs } : {}),
      ...(backoff.maxDelayMs !== undefined ? { backoffMaxMs: backoff.maxDelayMs } : {}),
      ...(backoff.factor !== undefined ? { backoffFactor: backoff.factor } : {}),
      ...(o.ping ? { pingIntervalMs: o.ping.intervalMs, pingFrame: Uint8Array.from(o.ping.frame.payload), pingOpcode: o.ping.frame.opcode } : {}),
    });
  }
  start(): void {
    this.lg.start();
  }
  stop(): void {
    this.lg.stop();
  }
  stats(): LoadStats {
    return this.lg.stats();
  }
  takeHistogram(kind: HistogramKind): Float64Array {
    return this.lg.takeHistogram(kind);
  }
  connectionCounts(): Uint32Array {
    return this.lg.connectionCounts();
  }
  secondCounts(): Float64Array {
    return this.lg.secondCounts();
  }
}

// ---- the JS fallback engine -------------------------------------------------

/** The native histogram's layout (HdrHistogram, 3 significant digits, unit 1), so both engines export alike. */
export class BucketHistogram {
  static readonly SIZE = 2048 + 30 * 1024;
  private counts = new Float64Array(BucketHistogram.SIZE);
  private total = 0;

  static index(v: number): number {
    if (v < 2048) return Math.max(0, Math.floor(v));
    const msb = Math.floor(Math.log2(v));
    // log2 can be off by one at powers of two; fix it up.
    const m = 2 ** msb > v ? msb - 1 : 2 ** (msb + 1) <= v ? msb + 1 : msb;
    const shift = m - 10;
    if (shift > 30) return BucketHistogram.SIZE - 1;
    return 2048 + (shift - 1) * 1024 + (Math.floor(v / 2 ** shift) - 1024);
  }

  static lowest(index: number): number {
    if (index < 2048) return index;
    const shift = Math.floor((index - 2048) / 1024) + 1;
    return (((index - 2048) % 1024) + 1024) * 2 ** shift;
  }

  record(v: number): void {
    this.counts[BucketHistogram.index(v)]++;
    this.total++;
  }

  take(): Float64Array {
    if (this.total === 0) return new Float64Array(0);
    const out: number[] = [];
    for (let i = 0; i < this.counts.length; i++) {
      if (this.counts[i] === 0) continue;
      out.push(BucketHistogram.lowest(i), this.counts[i]);
      this.counts[i] = 0;
    }
    this.total = 0;
    return Float64Array.from(out);
  }
}

const ERROR_KEY = Buffer.from([0xa5, 0x65, 0x72, 0x72, 0x6f, 0x72]);

class JsClient implements SubscriberClient {
  readonly engine = 'js' as const;
  private readonly sockets: (WebSocket | null)[] = [];
  private readonly counts: Uint32Array;
  private readonly histograms = [new BucketHistogram(), new BucketHistogram(), new BucketHistogram()];
  private readonly s: LoadStats;
  private next = 0;
  private startedAt = 0;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;

  constructor(private readonly o: SubscriberClientOptions) {
    this.counts = new Uint32Array(o.connections);
    this.s = {
      connections: o.connections,
      opened: 0,
      pending: 0,
      connected: 0,
      ready: 0,
      failed: 0,
      closed: 0,
      messages: 0,
      bytes: 0,
      replies: 0,
      errorReplies: 0,
      otherMessages: 0,
      pings: 0,
      clockSkew: 0,
      protocolErrors: 0,
      serverCloses: 0,
      live: 0,
      retries: 0,
      connectErrors: 0,
      refused503: 0,
      refused429: 0,
      refusedOther: 0,
      hinted: 0,
      ticketsSent: 0,
      ticketRefusals: 0,
      pingsSent: 0,
      windowReplies: 0,
      maxWindowMs: 0,
      allLiveAtMs: 0,
      lastCloseCode: 0,
      allConnectedSeconds: -1,
      allReadySeconds: -1,
      firstError: null,
    };
  }

  start(): void {
    this.startedAt = performance.now();
    this.timer = setInterval(() => this.openSome(), 5);
    this.openSome();
  }

  private openSome(): void {
    const o = this.o;
    let allowed = o.connections;
    if (o.connectRate) allowed = Math.min(o.connections, Math.floor((o.connectRate * (performance.now() - this.startedAt)) / 1000) + 1);
    while (!this.stopped && this.next < allowed && this.s.pending < (o.maxPending ?? 256)) this.openOne(this.next++);
    if (this.next >= o.connections && this.timer) {
      clearInterval(this.timer);
      this.timer = null;
    }
  }

  private note(why: string): void {
    if (this.s.firstError === null) this.s.firstError = why;
  }

  private openOne(i: number): void {
    const o = this.o;
    const s = this.s;
    const startedAt = performance.now();
    s.opened++;
    s.pending++;
    let state: 'handshake' | 'open' | 'done' = 'handshake';
    let wait = o.waitMessages ?? 0;
    let repliesLeft = o.expectedReplies ?? 0;
    const ws = new WebSocket(o.query ? withQuery(o.url, o.query(i)) : o.url, {
      localAddress: o.sourceAddresses[i % o.sourceAddresses.length],
      perMessageDeflate: false,
      handshakeTimeout: o.handshakeTimeoutMs ?? 30000,
    });
    this.sockets[i] = ws;
    let live = false;
    const markReady = () => {
      s.ready++;
      s.live++;
      live = true;
      this.histograms[HistogramKind.READY].record(Math.round((performance.now() - startedAt) * 1000));
      if (s.ready === o.connections) s.allReadySeconds = (performance.now() - this.startedAt) / 1000;
    };
    const send = () => {
      for (const f of o.commands(i)) ws.send(f.payload, { binary: f.opcode === 2 });
      if (repliesLeft === 0) {
        repliesLeft = -1;
        markReady();
      }
    };
    ws.on('upgrade', () => {
      s.pending--;
      s.connected++;
      state = 'open';
      this.histograms[HistogramKind.CONNECT].record(Math.round((performance.now() - startedAt) * 1000));
      if (s.connected === o.connections) s.allConnectedSeconds = (performance.now() - this.startedAt) / 1000;
    });
    ws.on('open', () => {
      if (o.hello) ws.send(o.hello);
      if (wait === 0) send();
    });
    ws.on('ping', () => s.pings++);
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      s.bytes += data.length;
      if (isBinary && data.length >= 24 && data[0] === 0xc1) {
        const ts = data.readUInt32BE(16) * 4294967296 + data.readUInt32BE(20);
        const now = clockMicros();
        s.messages++;
        this.counts[i]++;
        if (ts > now) s.clockSkew++;
        this.histograms[HistogramKind.LATENCY].record(ts > now ? 0 : now - ts);
        return;
      }
      if (o.engineIoPing && !isBinary && data.length === 1 && data[0] === 0x32) {
        ws.send('3');
        return;
      }
      if (wait > 0) {
        if (--wait === 0) send();
        return;
      }
      if (repliesLeft <= 0) {
        s.otherMessages++;
        return;
      }
      s.replies++;
      if (isBinary && data.subarray(0, 24).indexOf(ERROR_KEY) >= 0) s.errorReplies++;
      if (--repliesLeft === 0) {
        repliesLeft = -1;
        markReady();
      }
    });
    ws.on('error', (err) => this.note(err.message));
    ws.on('close', (code) => {
      this.sockets[i] = null;
      if (state === 'handshake') {
        s.pending--;
        s.failed++;
      } else if (state === 'open') {
        s.closed++;
        if (live) s.live--;
        if (!this.stopped) {
          s.serverCloses++;
          s.lastCloseCode = code;
        }
      }
      state = 'done';
    });
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    for (const ws of this.sockets) ws?.terminate();
  }
  stats(): LoadStats {
    return { ...this.s };
  }
  takeHistogram(kind: HistogramKind): Float64Array {
    return this.histograms[kind].take();
  }
  connectionCounts(): Uint32Array {
    return this.counts.slice();
  }
  secondCounts(): Float64Array {
    return new Float64Array(0);
  }
}

/** url with `query` ("&a=b...") appended to its query. */
function withQuery(url: string, query: string): string {
  const u = new URL(url);
  return `${u.origin}${u.pathname}${u.search || '?'}${query}`;
}
