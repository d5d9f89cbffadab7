// A minimal protocol client for tests, on the `ws` package: send commands,
// await replies by id, collect deliveries. Deliberately not the SDK, so that
// server tests do not depend on it.
import WebSocket from 'ws';
import { unpackr, packr } from '../../protocol/codec';
import { decodeBinaryFrame, isBinaryFrame } from '../../protocol/frame';

export interface Delivery {
  topic: string;
  epoch: number;
  seq: number;
  ts: number;
  data: unknown;
  replay?: boolean;
  snapshot?: boolean;
}

export class TestClient {
  readonly deliveries: Delivery[] = [];
  readonly replies = new Map<unknown, Record<string, unknown>>();
  readonly unsolicited: Record<string, unknown>[] = [];
  closeCode: number | null = null;
  closeReason = '';
  private nextId = 1;
  private waiters: (() => void)[] = [];
  readonly closed: Promise<number>;

  constructor(
    readonly ws: WebSocket,
    readonly encoding: 'json' | 'msgpack',
  ) {
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (isBinary) {
        const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
        if (isBinaryFrame(bytes)) {
          const f = decodeBinaryFrame(bytes);
          this.deliveries.push({
            topic: f.topic,
            epoch: f.epoch,
            seq: f.seq,
            ts: f.tsMicros,
            data: unpackr.unpack(f.payload),
            ...(f.flags & 1 ? { replay: true } : {}),
            ...(f.flags & 2 ? { snapshot: true } : {}),
          });
        } else this.onReply(unpackr.unpack(bytes) as Record<string, unknown>);
      } else {
        const m = JSON.parse(data.toString('utf8'));
        if (m.op === 'msg')
          this.deliveries.push({ topic: m.topic, epoch: m.epoch, seq: m.seq, ts: m.ts, data: m.data, ...(m.replay ? { replay: true } : {}), ...(m.snapshot ? { snapshot: true } : {}) });
        else this.onReply(m);
      }
      this.wake();
    });
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => {
        this.closeCode = code;
        this.closeReason = reason.toString();
        this.wake();
        resolve(code);
      });
    });
  }

  private onReply(m: Record<string, unknown>): void {
    if (m.id !== undefined && m.id !== null) this.replies.set(m.id, m);
    else this.unsolicited.push(m);
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Waits until pred() holds (checked after each incoming frame). */
  async until(pred: () => boolean, timeoutMs = 5000, what = 'condition'): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!pred()) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what} (deliveries: ${this.deliveries.length}, close: ${this.closeCode})`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 200));
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  sendRaw(data: string | Uint8Array, binary?: boolean): void {
    this.ws.send(data, { binary: binary ?? typeof data !== 'string' });
  }

  send(cmd: Record<string, unknown>): void {
    if (this.encoding === 'json') this.ws.send(JSON.stringify(cmd));
    else this.ws.send(packr.pack(cmd), { binary: true });
  }

  /** Sends a command with a fresh id and waits for its reply. */
  async request(cmd: Record<string, unknown>, timeoutMs = 5000): Promise<Record<string, unknown>> {
    const id = cmd.id ?? `auto-${this.nextId++}`;
    this.send({ ...cmd, id });
    await this.until(() => this.replies.has(id), timeoutMs, `reply to ${JSON.stringify(cmd).slice(0, 100)}`);
    return this.replies.get(id) as Record<string, unknown>;
  }

  sub(topics: string[], extra: Record<string, unknown> = {}) {
    return this.request({ op: 'sub', topics, ...extra });
  }
  pub(topic: string, data: unknown, extra: Record<string, unknown> = {}) {
    return this.request({ op: 'pub', topic, data, ack: true, ...extra });
  }

  close(): Promise<number> {
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) this.ws.close();
    return this.closed;
  }
}

export function connect(url: string, encoding: 'json' | 'msgpack' = 'json', opts: WebSocket.ClientOptions = {}): Promise<TestClient> {
  const sep = url.includes('?') ? '&' : '?';
  const ws = new WebSocket(`${url}${sep}encoding=${encoding}`, opts);
  const client = new TestClient(ws, encoding);
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve(client));
    ws.once('error', reject);
    ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
  });
}

export async function httpPublish(port: number, body: unknown, contentType = 'application/json'): Promise<{ status: number; body: Record<string, unknown> }> {
  const payload = contentType === 'application/json' ? (typeof body === 'string' ? body : JSON.stringify(body)) : packr.pack(body);
  const res = await fetch(`http://127.0.0.1:${port}/v1/publish`, { method: 'POST', headers: { 'content-type': contentType }, body: payload });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : {} };
}
