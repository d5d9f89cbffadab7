// The SDK's wildcard subscriptions: client.subscribe('/p/*', fn) delivers
// every matching topic with its name, and a network drop (a TCP proxy cut)
// is resumed: every message of every matching topic, including topics
// that first appeared while the client was away, arrives once and in
// per-topic order.
import { startServer, type TestServer } from './helpers/server';
import { nextEvent, until } from './helpers/sdk';
import { TcpProxy } from './helpers/tcp-proxy';
import { connect, type C10mClient } from '../sdk/client';
import type { Gap, Recovered } from '../sdk/stream';
import { ownerOf } from '../workgroups/topics';

const FAST = { initialDelayMs: 20, maxDelayMs: 200, factor: 2 };
let s: TestServer;
const clients: C10mClient[] = [];
beforeAll(async () => {
  s = await startServer(['--workgroups', '2']);
});
afterAll(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await s.stop();
});

function client(url: string, opts: Parameters<typeof connect>[1] = {}): C10mClient {
  const c = connect(url, { reconnect: FAST, ...opts });
  clients.push(c);
  return c;
}

test('a pattern is delivered with concrete topic names, alongside an exact subscription of one of them', async () => {
  const sub = client(s.url(''));
  const pub = client(s.url(''));
  const byPattern: string[] = [];
  const exact: number[] = [];
  await sub.subscribe('/sw/*', (m) => byPattern.push(`${m.topic}:${m.seq}`)).ready;
  await sub.subscribe('/sw/a', (m) => exact.push(m.seq)).ready;
  for (const t of ['/sw/a', '/sw/b', '/sw/c/d', '/other']) await pub.publish(t, 1);
  await pub.publish('/sw/b', 2);
  await until(() => byPattern.length === 3, 'three deliveries');
  expect(byPattern).toEqual(['/sw/a:1', '/sw/b:1', '/sw/b:2']);
  expect(exact).toEqual([1]);
  expect(() => sub.subscribe('/sw/*x', () => undefined)).toThrow(/outside/);
});

test('a network drop: the pattern resumes every matching topic, old and new, once and in order', async () => {
  const proxy = new TcpProxy(s.port);
  await proxy.listen();
  try {
    for (const encoding of ['json', 'msgpack'] as const) {
      const prefix = `/swd-${encoding}`;
      const sub = client(`ws://127.0.0.1:${proxy.port}`, { encoding });
      const pub = client(s.url(''));
      const got = new Map<string, number[]>();
      const gaps: Gap[] = [];
      const recovered: Recovered[] = [];
      sub.on('gap', (g) => gaps.push(g));
      sub.on('recovered', (r) => recovered.push(r));
      await sub.subscribe(`${prefix}/*`, (m) => {
        const list = got.get(m.topic) ?? [];
        list.push(m.seq);
        got.set(m.topic, list);
      }).ready;
      // Two topics from the start (one per owner), two more that appear only while the client is away.
      const topics: string[] = [];
      for (let i = 0; topics.length < 4; i++) if (ownerOf(`${prefix}/${i}`, 2) === topics.length % 2) topics.push(`${prefix}/${i}`);
      const disconnected = nextEvent(sub, 'disconnected');
      const reconnected = nextEvent(sub, 'connected', (e) => e.reconnect);
      const N = 60;
      for (let i = 1; i <= N; i++) {
        if (i === 20) {
          proxy.refusing = true;
          proxy.cut();
        }
        if (i === 40) proxy.refusing = false;
        if (i > 40 && i % 5 === 0) await new Promise((r) => setTimeout(r, 1));
        const live = i < 20 ? topics.slice(0, 2) : topics;
        for (const t of live) await pub.publish(t, i);
      }
      await reconnected;
      expect((await disconnected).code).toBe(1006);
      const counts = [N, N, N - 19, N - 19];
      await until(() => topics.every((t, k) => (got.get(t) ?? []).length === counts[k]), 'every message of every topic');
      expect(gaps).toEqual([]);
      for (let k = 0; k < 4; k++) expect(got.get(topics[k])).toEqual(Array.from({ length: counts[k] }, (_, i) => i + 1));
      expect(recovered.some((r) => r.topic === topics[2] && r.replayed > 0)).toBe(true);
      await sub.close();
    }
  } finally {
    await proxy.close();
  }
});
