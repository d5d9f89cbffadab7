// A Server-Sent Events reader over node:http, for tests: opens GET /v1/sse,
// parses the stream into events as they come (any split of the bytes), and
// keeps them in order.
import http from 'node:http';

export interface SseEvent {
  /** The event's type: "message" when the stream gave none. */
  event: string;
  data: string;
  /** The id field of this event, or null when it had none. */
  id: string | null;
  /** The last id seen on the stream up to this event (what a browser would send as Last-Event-ID). */
  lastId: string;
}

export interface SseAnswer {
  status: number;
  headers: http.IncomingHttpHeaders;
  /** The body of a refusal (JSON), or null for a stream. */
  body: { error?: { code: string; message: string } } | null;
}

export class SseReader {
  readonly events: SseEvent[] = [];
  /** Comment lines (": hb"), without the colon. */
  readonly comments: string[] = [];
  lastId = '';
  ended = false;
  private buffer = '';
  private event = '';
  private data: string[] = [];
  private id: string | null = null;
  private waiters: (() => void)[] = [];

  constructor(
    readonly req: http.ClientRequest,
    readonly res: http.IncomingMessage,
  ) {
    res.setEncoding('utf8');
    res.on('data', (chunk: string) => this.feed(chunk));
    const done = () => {
      this.ended = true;
      this.wake();
    };
    res.on('end', done);
    res.on('close', done);
    res.on('error', done);
  }

  private feed(chunk: string): void {
    this.buffer += chunk;
    let nl: number;
    while ((nl = this.buffer.indexOf('\n')) >= 0) {
      const line = this.buffer.slice(0, nl);
      this.buffer = this.buffer.slice(nl + 1);
      this.line(line);
    }
    this.wake();
  }

  private line(line: string): void {
    if (line === '') {
      if (this.data.length > 0 || this.event !== '') {
        if (this.id !== null) this.lastId = this.id;
        this.events.push({ event: this.event || 'message', data: this.data.join('\n'), id: this.id, lastId: this.lastId });
      } else if (this.id !== null) this.lastId = this.id;
      this.event = '';
      this.data = [];
      this.id = null;
      return;
    }
    if (line.startsWith(':')) {
      this.comments.push(line.slice(1).trim());
      return;
    }
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') this.event = value;
    else if (field === 'data') this.data.push(value);
    else if (field === 'id') this.id = value;
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Resolves once `pred` holds (checked on every chunk), rejects after timeoutMs. */
  async until(pred: () => boolean, timeoutMs = 10_000, what = 'a condition'): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!pred()) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`SSE: timed out waiting for ${what}; events: ${JSON.stringify(this.events.slice(-5))}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 200));
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Message events (the JSON delivery frames), parsed. */
  messages(): { topic: string; epoch: number; seq: number; data: unknown; replay?: boolean; snapshot?: boolean }[] {
    return this.events.filter((e) => e.event === 'message').map((e) => JSON.parse(e.data));
  }

  ofType(type: string): Record<string, unknown>[] {
    return this.events.filter((e) => e.event === type).map((e) => JSON.parse(e.data));
  }

  /** Drops the connection (as a network cut would). */
  cut(): void {
    this.req.destroy();
  }
}

/** Opens a stream; resolves with the reader (status 200) or the refusal. */
export function openSse(port: number, pathAndQuery: string, headers: Record<string, string> = {}): Promise<{ answer: SseAnswer; reader: SseReader | null }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: pathAndQuery, headers: { accept: 'text/event-stream', ...headers } }, (res) => {
      const answer: SseAnswer = { status: res.statusCode ?? 0, headers: res.headers, body: null };
      if (answer.status !== 200) {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => {
          try {
            answer.body = JSON.parse(text);
          } catch {
            answer.body = { error: { code: 'UNPARSED', message: text } };
          }
          resolve({ answer, reader: null });
        });
        return;
      }
      resolve({ answer, reader: new SseReader(req, res) });
    });
    req.on('error', reject);
  });
}

/** Opens a stream that must be accepted. */
export async function stream(port: number, pathAndQuery: string, headers: Record<string, string> = {}): Promise<SseReader> {
  const { answer, reader } = await openSse(port, pathAndQuery, headers);
  if (reader === null) throw new Error(`SSE refused: ${answer.status} ${JSON.stringify(answer.body)}`);
  return reader;
}
