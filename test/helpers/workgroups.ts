// Helpers for tests that need to know which workgroup serves a session:
// sessions from a chosen loopback source address (all of 127.0.0.0/8 is
// loopback on Linux), the workgroup a session landed in (ping's `wg`),
// topics owned by a given workgroup, and the admin port's figures.
import http from 'node:http';
import WebSocket from 'ws';
import { ownerOf } from '../../workgroups/topics';
import { TestClient, connect } from './client';
import type { TestServer } from './server';

/** `n` distinct loopback source addresses (never 127.0.0.1), spread over a few /16s and /24s, starting at `offset`. */
export function sourceAddresses(n: number, offset = 0): string[] {
  const out: string[] = [];
  for (let k = offset; out.length < n && k < offset + 60_000; k++) {
    const a = `127.${10 + (k % 7)}.${(k * 13) % 250}.${1 + ((k * 41) % 250)}`;
    if (!out.includes(a)) out.push(a);
  }
  return out;
}

/** Topics `/<prefix>/<i>` owned by workgroup `w` of `count`, `n` of them. */
export function topicsOwnedBy(w: number, count: number, n: number, prefix: string): string[] {
  const out: string[] = [];
  for (let i = 0; out.length < n && i < 100_000; i++) if (ownerOf(`/${prefix}/${i}`, count) === w) out.push(`/${prefix}/${i}`);
  if (out.length < n) throw new Error(`only ${out.length} topics of /${prefix}/ are owned by workgroup ${w}`);
  return out;
}

/** The workgroup serving the session (ping's `wg`). */
export async function workgroupOf(c: TestClient): Promise<number> {
  const pong = await c.request({ op: 'ping' });
  if (pong.ok !== true || typeof pong.wg !== 'number') throw new Error(`ping without wg: ${JSON.stringify(pong)}`);
  return pong.wg;
}

export interface PlacedClient {
  client: TestClient;
  wg: number;
  address: string;
}

/** A session from source address `address`, and where it landed. */
export async function connectFrom(server: TestServer, address: string, encoding: 'json' | 'msgpack' = 'json'): Promise<PlacedClient> {
  const client = await connect(server.url(), encoding, { localAddress: address });
  return { client, wg: await workgroupOf(client), address };
}

/**
 * A session served by workgroup `w`: tries source addresses (from the pool,
 * in order) until one lands there. Works with IP hashing and with the
 * kernel's 4-tuple hash alike; at most `maxTries` connections.
 */
export async function connectIn(server: TestServer, w: number, encoding: 'json' | 'msgpack' = 'json', pool = sourceAddresses(64, 500), maxTries = 64): Promise<PlacedClient> {
  for (let i = 0; i < maxTries; i++) {
    const placed = await connectFrom(server, pool[i % pool.length], encoding);
    if (placed.wg === w) return placed;
    await placed.client.close();
  }
  throw new Error(`no session landed in workgroup ${w} in ${maxTries} tries`);
}

/** Tries a WebSocket upgrade from `address`: the open session, or the HTTP status that refused it (its socket released). */
export function tryConnectFrom(server: TestServer, address: string): Promise<{ client: TestClient; status: 101 } | { client: null; status: number }> {
  const ws = new WebSocket(`${server.url()}?encoding=json`, { localAddress: address });
  const client = new TestClient(ws, 'json');
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve({ client, status: 101 }));
    ws.once('error', reject);
    ws.once('unexpected-response', (req, res) => {
      const status = res.statusCode ?? 0;
      res.resume();
      req.destroy();
      resolve({ client: null, status });
    });
  });
}

/** POST /v1/publish from a chosen source address (so it lands in that address's workgroup). */
export function httpPublishFrom(server: TestServer, address: string, body: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const payload = Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port: server.port,
        path: '/v1/publish',
        method: 'POST',
        localAddress: address,
        agent: false,
        headers: { 'content-type': 'application/json', 'content-length': payload.length },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => {
          try {
            resolve({ status: res.statusCode ?? 0, body: text ? JSON.parse(text) : {} });
          } catch (err) {
            reject(err);
          }
        });
        res.on('error', reject);
      },
    );
    req.setTimeout(15_000, () => req.destroy(new Error('HTTP publish timed out')));
    req.on('error', reject);
    req.end(payload);
  });
}

/** Sum of a Prometheus family on /metrics over the series matching `where` (0 when there is none). */
export async function metricSum(server: TestServer, name: string, where: Record<string, string> = {}): Promise<number> {
  const res = await fetch(server.adminUrl('/metrics'));
  if (res.status !== 200) throw new Error(`/metrics answered ${res.status}`);
  let sum = 0;
  for (const line of (await res.text()).split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const labels: Record<string, string> = {};
    if (m[2]) for (const l of m[2].matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    if (Object.entries(where).every(([k, v]) => labels[k] === v)) sum += Number(m[3]);
  }
  return sum;
}

/** metricSum once it satisfies pred, or its value after timeoutMs (metrics are a snapshot of up to a second ago; gauges are written once a second). */
export async function metricWhen(server: TestServer, name: string, pred: (v: number) => boolean, timeoutMs = 5000): Promise<number> {
  await waitFor(async () => pred(await metricSum(server, name)), timeoutMs, `${name} to settle`).catch(() => undefined);
  return metricSum(server, name);
}

/** /jmx as JSON. */
export async function jmx(server: TestServer): Promise<Record<string, unknown>> {
  const res = await fetch(server.adminUrl('/jmx'));
  if (res.status !== 200) throw new Error(`/jmx answered ${res.status}`);
  return (await res.json()) as Record<string, unknown>;
}

/** /readyz's status code (0 when the admin port does not answer). */
export async function readyStatus(server: TestServer): Promise<number> {
  try {
    return (await fetch(server.adminUrl('/readyz'))).status;
  } catch {
    return 0;
  }
}

/** Polls `probe` every 100 ms until it returns true; throws after `timeoutMs`. */
export async function waitFor(probe: () => Promise<boolean> | boolean, timeoutMs: number, what: string): Promise<number> {
  const started = Date.now();
  for (;;) {
    if (await probe()) return Date.now() - started;
    if (Date.now() - started > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Retries an assertion every 100 ms until it holds (figures such as gauges are refreshed once a second);
 * after `timeoutMs`, throws its last failure.
 */
export async function eventually(check: () => Promise<void>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await check();
      return;
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/** Fault injection (server started with C10M_FAULT_INJECTION=1): kills workgroup `w`. */
export async function crashWorkgroup(server: TestServer, w: number, how: 'exit' | 'throw'): Promise<number> {
  const res = await fetch(server.adminUrl(`/debug/crash?workgroup=${w}&how=${how}`), { method: 'POST' });
  await res.text();
  return res.status;
}

/** Whether the session's socket is still open. */
export function isOpen(c: TestClient): boolean {
  return c.ws.readyState === WebSocket.OPEN;
}
