// One benchpub process (see bench/pub.ts). Messages go round robin over the
// topics and the connections; a message is created (and stamped) when it is
// due, never ahead of time.
import * as http from 'node:http';
import WebSocket from 'ws';
import { newHistogram, recordMicros } from './histogram';
import { clockMicros } from './loadgen';
import { packr, unpackr } from '../protocol/codec';
import { topicName } from './addresses';
import { rateAt, type PubConfig, type PubStats, type PubWorkerReport } from './pub';
import { PUBLISHER_CLAIMS, mintToken } from './tokens';

/** Unsent bytes on one connection above which the publisher waits (and counts the messages as deferred). */
const MAX_BUFFERED_BYTES = 4 * 1024 * 1024;
/** Most messages sent in one tick, so that a late timer does not turn into one huge burst. */
const MAX_BURST = 20000;
/** With acks: publishes waiting for their ack on one connection, at most. */
export const MAX_UNACKED = 8192;

interface Sender {
  /** False when the message could not be sent now (buffer full). */
  send(topic: string, data: Buffer, ts: number): boolean;
  /** Resolves once everything sent is on the wire (ws) or answered (http). */
  flush(): Promise<void>;
  /** ws: holds writes until uncork() (a burst's chunk goes out in few syscalls). */
  cork?(): void;
  uncork?(): void;
  close(): void;
}

const stats: PubStats = { published: 0, errors: 0, deferred: 0, rate: 0, firstError: null, acked: 0, ackSeconds: 0, ackLatency: null };
/** Send-to-ack latency of every acked publish (µs). */
const ackHistogram = newHistogram();
let startedAt = 0;

function report(m: PubWorkerReport): void {
  process.send?.(m);
}

function noteError(why: string): void {
  stats.errors++;
  stats.firstError ??= why;
}

/** Attempts of one publisher connection refused with a hint (503 RETRY_LATER, 429 RATE_LIMITED) before giving up. */
const MAX_HINTED_ATTEMPTS = 30;

/**
 * One publisher connection. A refused upgrade with a hint (a node admitting at its --admission-rate) is honored
 * as the SDK does: wait the body's retryAfterMs, then come back (after a 503, with &admit=<ticket>).
 */
async function openWs(url: string, localAddress: string, connectRetrySeconds: number): Promise<WebSocket> {
  let ticket = '';
  // A node being restarted (connectRetrySeconds > 0): a connect that fails without an HTTP answer (refused, reset
  // in a full accept queue) is tried again every 20 ms until then.
  const retryUntil = Date.now() + connectRetrySeconds * 1000;
  for (let hinted = 0; ;) {
    const ws = new WebSocket(ticket ? `${url}&admit=${ticket}` : url, { localAddress, perMessageDeflate: false });
    const r = await new Promise<{ open: true } | { open: false; hintMs: number | null; ticket: string; why: string }>((resolve) => {
      ws.once('open', () => resolve({ open: true }));
      ws.once('error', (err) => resolve({ open: false, hintMs: null, ticket: '', why: err.message }));
      ws.once('unexpected-response', (_req, res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () => {
          ws.terminate();
          let error: { code?: string; retryAfterMs?: number; ticket?: string } = {};
          try {
            error = (JSON.parse(body) as { error?: typeof error }).error ?? {};
          } catch {
            // not JSON: no hint
          }
          const hinted = (res.statusCode === 503 && error.code === 'RETRY_LATER') || (res.statusCode === 429 && error.code === 'RATE_LIMITED');
          resolve({
            open: false,
            hintMs: hinted && typeof error.retryAfterMs === 'number' ? error.retryAfterMs : null,
            ticket: error.ticket ?? '',
            why: `HTTP ${res.statusCode} ${body.slice(0, 200)}`,
          });
        });
      });
    });
    if (r.open) return ws;
    if (r.hintMs === null && !r.why.startsWith('HTTP') && Date.now() < retryUntil) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      continue;
    }
    if (r.hintMs === null || ++hinted >= MAX_HINTED_ATTEMPTS) throw new Error(`publisher connection refused: ${r.why}`);
    ticket = r.ticket;
    await new Promise((resolve) => setTimeout(resolve, r.hintMs as number));
  }
}

async function wsSenders(c: PubConfig): Promise<Sender[]> {
  const base = new URL(c.url);
  const token = c.jwtSecret ? await mintToken(c.jwtSecret, PUBLISHER_CLAIMS) : '';
  const url = `ws://${base.host}/v1/ws?encoding=msgpack${token ? `&token=${token}` : ''}`;
  const ack = c.ack === true;
  const out: Sender[] = [];
  for (let i = 0; i < c.connections; i++) {
    const ws = await openWs(url, c.sourceAddress, c.connectRetrySeconds ?? 0);
    let id = 0;
    // With acks: when each unanswered publish was sent (ms), by id modulo the ring; ids are answered at most MAX_UNACKED behind.
    const sentAt = ack ? new Float64Array(MAX_UNACKED * 2) : null;
    let answered = 0;
    let drained: (() => void) | null = null;
    ws.on('message', (data: Buffer) => {
      const reply = unpackr.unpack(data) as { id?: number; ok?: boolean; error?: { code: string; message: string } };
      if (reply && reply.error) noteError(`${reply.error.code}: ${reply.error.message}`);
      if (sentAt !== null && reply && typeof reply.id === 'number') {
        answered++;
        if (reply.ok === true) {
          const now = performance.now();
          stats.acked++;
          recordMicros(ackHistogram, (now - sentAt[reply.id % sentAt.length]) * 1000);
          stats.ackSeconds = (now - startedAt) / 1000;
        }
        if (answered >= id && drained !== null) drained();
      }
    });
    ws.on('close', (code) => {
      if (!stopping) noteError(`publisher connection closed (${code})`);
      drained?.();
    });
    out.push({
      send(topic, data, ts) {
        if (ws.bufferedAmount > MAX_BUFFERED_BYTES) return false;
        if (sentAt !== null) {
          if (id - answered >= MAX_UNACKED) return false;
          sentAt[(id + 1) % sentAt.length] = performance.now();
        }
        ws.send(packr.pack({ id: ++id, op: 'pub', topic, data, ack, ts }));
        return true;
      },
      flush: () =>
        new Promise((resolve) => {
          const check = () => (ws.bufferedAmount === 0 || ws.readyState !== WebSocket.OPEN ? wait() : setTimeout(check, 5));
          // With acks: until every publish is answered (or 10 s: an answer that never comes is the server's figure to explain).
          const wait = () => {
            if (sentAt === null || answered >= id || ws.readyState !== WebSocket.OPEN) return resolve();
            const t = setTimeout(() => {
              drained = null;
              resolve();
            }, 10000);
            drained = () => {
              clearTimeout(t);
              drained = null;
              resolve();
            };
          };
          check();
        }),
      close: () => ws.close(),
      cork: () => (ws as unknown as { _socket: { cork(): void } })._socket.cork(),
      uncork: () => (ws as unknown as { _socket: { uncork(): void } })._socket.uncork(),
    });
  }
  return out;
}

/** Messages each connection sends between two uncorks of a burst. */
const BURST_CHUNK = 256;

/** A burst (PubConfig.burst): maxMessages publishes as fast as the connections take them, all stamped with its start. */
function burst(c: PubConfig, senders: Sender[], topics: string[], payload: Buffer): Promise<void> {
  const ts = clockMicros();
  let next = 0;
  return new Promise<void>((resolve) => {
    const turn = () => {
      if (stopping || next >= c.maxMessages) return resolve();
      for (const s of senders) s.cork?.();
      const end = Math.min(c.maxMessages, next + BURST_CHUNK * senders.length);
      let full = false;
      while (next < end && !full) {
        if (!senders[next % senders.length].send(topics[next % topics.length], payload, ts)) full = true;
        else {
          next++;
          stats.published++;
        }
      }
      for (const s of senders) s.uncork?.();
      // A full send buffer: wait for the server to read.
      if (full) setTimeout(turn, 1);
      else setImmediate(turn);
    };
    turn();
  });
}

function httpSenders(c: PubConfig, token: string): Sender[] {
  const base = new URL(c.url);
  const agent = new http.Agent({ keepAlive: true, maxSockets: c.connections });
  let inFlight = 0;
  const idle: (() => void)[] = [];
  const sender: Sender = {
    send(topic, data, ts) {
      // One request per socket at a time (HTTP/1.1 without pipelining): more would only queue in the agent.
      if (inFlight >= c.connections * 4) return false;
      inFlight++;
      const body = packr.pack({ topic, data, ts });
      const req = http.request(
        {
          host: base.hostname,
          port: base.port,
          path: '/v1/publish',
          method: 'POST',
          agent,
          localAddress: c.sourceAddress,
          headers: { 'content-type': 'application/msgpack', 'content-length': body.length, ...(token ? { authorization: `Bearer ${token}` } : {}) },
        },
        (res) => {
          res.resume();
          res.on('end', () => {
            if (res.statusCode !== 200) noteError(`HTTP ${res.statusCode}`);
            if (--inFlight === 0) idle.splice(0).forEach((f) => f());
          });
        },
      );
      req.on('error', (err) => {
        noteError(err.message);
        if (--inFlight === 0) idle.splice(0).forEach((f) => f());
      });
      req.end(body);
      return true;
    },
    flush: () => (inFlight === 0 ? Promise.resolve() : new Promise((resolve) => idle.push(resolve))),
    close: () => agent.destroy(),
  };
  return [sender];
}

async function socketIoSenders(c: PubConfig): Promise<Sender[]> {
  const { io } = require('socket.io-client') as typeof import('socket.io-client');
  const base = new URL(c.url);
  const out: Sender[] = [];
  for (let i = 0; i < c.connections; i++) {
    const socket = io(`http://${base.host}`, { transports: ['websocket'], forceNew: true, localAddress: c.sourceAddress } as Record<string, unknown>);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', () => resolve());
      socket.once('connect_error', reject);
    });
    out.push({
      send(topic, data, ts) {
        const engine = (socket.io as unknown as { engine?: { transport?: { ws?: { bufferedAmount: number } } } }).engine;
        if ((engine?.transport?.ws?.bufferedAmount ?? 0) > MAX_BUFFERED_BYTES) return false;
        socket.emit('pub', topic, ts, data);
        return true;
      },
      flush: () =>
        new Promise((resolve) => {
          const engine = (socket.io as unknown as { engine?: { transport?: { ws?: { bufferedAmount: number } } } }).engine;
          const check = () => ((engine?.transport?.ws?.bufferedAmount ?? 0) === 0 ? resolve() : setTimeout(check, 5));
          check();
        }),
      close: () => socket.close(),
    });
  }
  return out;
}

let stopping = false;

async function run(c: PubConfig): Promise<void> {
  const senders =
    c.transport === 'http' ? httpSenders(c, c.jwtSecret ? await mintToken(c.jwtSecret, PUBLISHER_CLAIMS) : '') : c.transport === 'socketio' ? await socketIoSenders(c) : await wsSenders(c);
  const topics = Array.from({ length: c.topicCount }, (_, n) => topicName(c.topicPattern, n));
  // The payload: `size` bytes of msgpack bin data (not counting bin's 2-3 byte header).
  const payload = Buffer.alloc(c.size, 0x61);
  report({ type: 'ready' });
  await new Promise<void>((resolve) => process.once('message', () => resolve()));
  startedAt = performance.now();
  let credit = 0;
  let last = startedAt;
  let next = 0;
  const tickTimer = setInterval(() => report({ type: 'tick', stats: { ...stats } }), c.tickMs);
  await new Promise<void>((resolve) => {
    if (c.burst === true) return void burst(c, senders, topics, payload).then(resolve);
    const step = () => {
      const now = performance.now();
      const elapsed = (now - startedAt) / 1000;
      if (stopping || elapsed >= c.durationSeconds || (c.maxMessages > 0 && stats.published >= c.maxMessages)) return resolve();
      stats.rate = rateAt(c.schedule, elapsed);
      credit = Math.min(credit + (stats.rate * (now - last)) / 1000, MAX_BURST);
      last = now;
      let due = Math.floor(credit);
      if (c.maxMessages > 0) due = Math.min(due, c.maxMessages - stats.published);
      for (let k = 0; k < due; k++) {
        const sender = senders[next % senders.length];
        if (!sender.send(topics[next % topics.length], payload, clockMicros())) {
          stats.deferred += due - k;
          break;
        }
        next++;
        stats.published++;
        credit--;
      }
      setTimeout(step, 1);
    };
    step();
  });
  await Promise.all(senders.map((s) => s.flush()));
  // Give the last replies (errors) a moment to arrive.
  await new Promise((r) => setTimeout(r, 100));
  clearInterval(tickTimer);
  stopping = true;
  if (c.ack === true && ackHistogram.totalCount > 0) {
    const ms = (v: number) => Math.round(v) / 1000;
    stats.ackLatency = { count: ackHistogram.totalCount, p50Ms: ms(ackHistogram.getValueAtPercentile(50)), p99Ms: ms(ackHistogram.getValueAtPercentile(99)), maxMs: ms(ackHistogram.maxValue) };
  }
  report({ type: 'done', stats: { ...stats } });
  for (const s of senders) s.close();
  process.disconnect?.();
}

process.once('message', (m: { type: string; config?: PubConfig }) => {
  if (m.type !== 'start' || !m.config) return;
  const c = m.config;
  if ((c.ack === true || c.burst === true) && c.transport !== 'ws') {
    report({ type: 'error', message: 'acks and bursts are ws transport only' });
    process.exit(1);
  }
  process.on('message', (msg: { type: string }) => {
    if (msg.type === 'stop') stopping = true;
  });
  run(c).catch((err) => {
    report({ type: 'error', message: (err as Error).message });
    process.exit(1);
  });
});

process.on('disconnect', () => process.exit(0));
