// A small Chrome DevTools Protocol client for a server started with
// `node --inspect=127.0.0.1:0` (bench/targets.ts execArgv): reaches the main
// isolate and, through the NodeWorker domain, every worker thread (c10m's
// workgroups), without any change to the server. Used by
// bench/lab/memory-breakdown.ts and `bench run reference-scaled
// --gc-readings` to force a full GC in every isolate before a memory
// reading, read each isolate's heap (used and committed), and summarise
// heap snapshots by object kind.
import * as fs from 'node:fs';
import WebSocket from 'ws';

export interface HeapUsage {
  isolate: string;
  usedBytes: number;
  /** Committed heap (what RSS sees, apart from pages never touched). */
  totalBytes: number;
}

/** Self bytes and object count per heap snapshot class ("object:WebSocket", "string", "array", ...). */
export type HeapSummary = Map<string, { bytes: number; count: number }>;

interface Pending {
  resolve: (v: Record<string, unknown>) => void;
  reject: (e: Error) => void;
}

export class InspectorClient {
  private ws!: WebSocket;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  /** Worker sessions by sessionId: their own ids and pending calls. */
  readonly workers = new Map<string, { title: string; pending: Map<number, Pending> }>();
  private chunks = new Map<string, string[]>();

  static async connect(url: string): Promise<InspectorClient> {
    const c = new InspectorClient();
    c.ws = new WebSocket(url, { perMessageDeflate: false, maxPayload: 1 << 30 });
    await new Promise<void>((resolve, reject) => {
      c.ws.once('open', () => resolve());
      c.ws.once('error', reject);
    });
    c.ws.on('message', (data: Buffer) => c.onMessage(JSON.parse(data.toString('utf8'))));
    return c;
  }

  private onMessage(m: { id?: number; result?: Record<string, unknown>; error?: { message: string }; method?: string; params?: Record<string, unknown> }): void {
    if (m.id !== undefined) {
      const p = this.pending.get(m.id);
      this.pending.delete(m.id);
      if (m.error) p?.reject(new Error(m.error.message));
      else p?.resolve(m.result ?? {});
      return;
    }
    if (m.method === 'NodeWorker.attachedToWorker') {
      const params = m.params as { sessionId: string; workerInfo: { title: string } };
      this.workers.set(params.sessionId, { title: params.workerInfo.title, pending: new Map() });
    } else if (m.method === 'NodeWorker.receivedMessageFromWorker') {
      const params = m.params as { sessionId: string; message: string };
      const w = this.workers.get(params.sessionId);
      const inner = JSON.parse(params.message) as { id?: number; result?: Record<string, unknown>; error?: { message: string }; method?: string; params?: { chunk?: string } };
      if (inner.id !== undefined && w) {
        const p = w.pending.get(inner.id);
        w.pending.delete(inner.id);
        if (inner.error) p?.reject(new Error(inner.error.message));
        else p?.resolve(inner.result ?? {});
      } else if (inner.method === 'HeapProfiler.addHeapSnapshotChunk') {
        this.chunk(params.sessionId, inner.params?.chunk ?? '');
      }
    } else if (m.method === 'HeapProfiler.addHeapSnapshotChunk') {
      this.chunk('main', (m.params as { chunk: string }).chunk);
    }
  }

  private chunk(key: string, text: string): void {
    const list = this.chunks.get(key);
    if (list) list.push(text);
  }

  /** A call on the main isolate (sessionId null) or on a worker's. */
  call(method: string, params: Record<string, unknown> = {}, sessionId: string | null = null, timeoutMs = 120_000): Promise<Record<string, unknown>> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`inspector: ${method} got no answer in ${timeoutMs} ms`)), timeoutMs);
      const done: Pending = {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      if (sessionId === null) {
        this.pending.set(id, done);
        this.ws.send(JSON.stringify({ id, method, params }));
      } else {
        const w = this.workers.get(sessionId);
        if (!w) return reject(new Error(`inspector: no worker session ${sessionId}`));
        w.pending.set(id, done);
        const outer = this.nextId++;
        this.pending.set(outer, { resolve: () => undefined, reject: done.reject });
        this.ws.send(JSON.stringify({ id: outer, method: 'NodeWorker.sendMessageToWorker', params: { sessionId, message: JSON.stringify({ id, method, params }) } }));
      }
    });
  }

  /** Attaches to every worker thread (waits until `expected` of them are attached). */
  async attachWorkers(expected: number, timeoutMs = 10_000): Promise<void> {
    await this.call('NodeWorker.enable', { waitForDebuggerOnStart: false });
    const deadline = Date.now() + timeoutMs;
    while (this.workers.size < expected) {
      if (Date.now() > deadline) throw new Error(`inspector: ${this.workers.size} of ${expected} workers attached`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Every isolate: null is the main thread, then the workers' sessions. */
  sessions(): (string | null)[] {
    return [null, ...this.workers.keys()];
  }

  title(sessionId: string | null): string {
    return sessionId === null ? 'main' : (this.workers.get(sessionId)?.title ?? sessionId);
  }

  /** A full (compacting) GC in every isolate, twice (weak callbacks free more on the second). */
  async gcAll(): Promise<void> {
    for (let round = 0; round < 2; round++) for (const s of this.sessions()) await this.call('HeapProfiler.collectGarbage', {}, s);
  }

  async heapUsage(): Promise<HeapUsage[]> {
    const out: HeapUsage[] = [];
    for (const s of this.sessions()) {
      const r = (await this.call('Runtime.getHeapUsage', {}, s)) as { usedSize: number; totalSize: number };
      out.push({ isolate: this.title(s), usedBytes: r.usedSize, totalBytes: r.totalSize });
    }
    return out;
  }

  /** Takes a heap snapshot of one isolate and sums self sizes by class. */
  async heapSummary(sessionId: string | null, saveTo: string | null = null): Promise<HeapSummary> {
    const key = sessionId ?? 'main';
    this.chunks.set(key, []);
    await this.call('HeapProfiler.takeHeapSnapshot', { reportProgress: false, captureNumericValue: false }, sessionId, 300_000);
    const text = (this.chunks.get(key) ?? []).join('');
    this.chunks.delete(key);
    // The whole snapshot, for DevTools or a script that follows retainers (the summary keeps only classes).
    if (saveTo !== null) fs.writeFileSync(saveTo, text);
    return summarizeSnapshot(JSON.parse(text));
  }

  close(): void {
    this.ws.close();
  }
}

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: (string[] | string)[] } };
  nodes: number[];
  strings: string[];
}

/** Self bytes by class: objects by constructor name, everything else by node type (string, array, code, hidden, ...). */
export function summarizeSnapshot(s: Snapshot): HeapSummary {
  const fields = s.snapshot.meta.node_fields;
  const types = s.snapshot.meta.node_types[0] as string[];
  const n = fields.length;
  const fType = fields.indexOf('type');
  const fName = fields.indexOf('name');
  const fSize = fields.indexOf('self_size');
  const out: HeapSummary = new Map();
  for (let i = 0; i < s.nodes.length; i += n) {
    const type = types[s.nodes[i + fType]];
    const name = s.strings[s.nodes[i + fName]];
    const key =
      type === 'object' || type === 'native' || type === 'closure' ? `${type}:${name}` : type === 'hidden' || type === 'object shape' || type === 'array' ? `${type}:${name.slice(0, 40)}` : type;
    const e = out.get(key) ?? { bytes: 0, count: 0 };
    e.bytes += s.nodes[i + fSize];
    e.count++;
    out.set(key, e);
  }
  return out;
}

/** b - a, by class, largest growth first. */
export function diffSummaries(a: HeapSummary, b: HeapSummary): { key: string; bytes: number; count: number }[] {
  const keys = new Set([...a.keys(), ...b.keys()]);
  const out = [...keys].map((key) => ({ key, bytes: (b.get(key)?.bytes ?? 0) - (a.get(key)?.bytes ?? 0), count: (b.get(key)?.count ?? 0) - (a.get(key)?.count ?? 0) }));
  return out.sort((x, y) => y.bytes - x.bytes);
}
