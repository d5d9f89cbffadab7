// What the control plane shows of the Redis engine, on real nodes sharing a
// real redis-server: /readyz turns 503 with the reason while Redis is
// unreachable and 200 once it is back (/healthz stays 200, sessions stay),
// refused publishes are counted, messages from Redis are counted on the node
// that has a subscriber and not on the other, publishes fill the Redis
// round-trip histogram, and the dashboard (headless Chromium) shows them. The memory engine's side (every Redis figure 0,
// engine "memory") is in metrics.test.ts.
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { connect, httpPublish, type TestClient } from './helpers/client';
import { startRedis, type TestRedis } from './helpers/redis';
import { startServer, type TestServer } from './helpers/server';
import { eventually } from './helpers/workgroups';

// ---- scraping -------------------------------------------------------------

interface PromSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

async function scrape(server: TestServer): Promise<PromSample[]> {
  const res = await fetch(server.adminUrl('/metrics'));
  expect(res.status).toBe(200);
  const out: PromSample[] = [];
  for (const line of (await res.text()).split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`not a Prometheus sample line: ${line}`);
    const labels: Record<string, string> = {};
    if (m[2]) for (const l of m[2].matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    out.push({ name: m[1], labels, value: m[3] === '+Inf' ? Infinity : Number(m[3]) });
  }
  return out;
}

/** Sum of a family's series (all workgroups); throws when there is none. */
function sum(samples: PromSample[], name: string, where: Record<string, string> = {}): number {
  const list = samples.filter((s) => s.name === name && Object.entries(where).every(([k, v]) => s.labels[k] === v));
  if (list.length === 0) throw new Error(`no series ${name} ${JSON.stringify(where)}`);
  return list.reduce((a, s) => a + s.value, 0);
}

async function metric(server: TestServer, name: string): Promise<number> {
  return sum(await scrape(server), name);
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = Record<string, any>;
async function jmx(server: TestServer): Promise<Json> {
  const res = await fetch(server.adminUrl('/jmx'));
  expect(res.status).toBe(200);
  return (await res.json()) as Json;
}

async function readyz(server: TestServer): Promise<{ status: number; body: Json }> {
  const res = await fetch(server.adminUrl('/readyz'));
  return { status: res.status, body: (await res.json()) as Json };
}

// ---- two nodes on one Redis -----------------------------------------------

/** Real redis-server, on a port from 20000-30999; stopped by the helper's afterAll. */
let redis: TestRedis;
/** A publishes; B has the subscriber. */
let nodeA: TestServer;
let nodeB: TestServer;
const clients: TestClient[] = [];

async function startNode(): Promise<TestServer> {
  try {
    return await startServer(['--workgroups', '1', '--engine', 'redis', '--redis-url', redis.url]);
  } catch (err) {
    throw new Error(`the node did not start with --engine redis --redis-url (are the flags of server/config.ts merged?): ${(err as Error).message}`);
  }
}

async function client(server: TestServer): Promise<TestClient> {
  const c = await connect(server.url(), 'json');
  clients.push(c);
  return c;
}

beforeAll(async () => {
  redis = await startRedis();
  nodeA = await startNode();
  nodeB = await startNode();
}, 40_000);

afterAll(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await Promise.all([nodeA?.stop(), nodeB?.stop()]);
});

test('both nodes name the Redis engine, up, and are ready', async () => {
  for (const node of [nodeA, nodeB]) {
    await eventually(async () => {
      const r = await readyz(node);
      expect(r.status).toBe(200);
      expect(r.body).toMatchObject({ ready: true, reasons: [], engine: 'redis', redisUnreachable: [] });
      const s = await scrape(node);
      expect(s.filter((x) => x.name === 'c10m_engine_info').map((x) => x.labels.engine)).toEqual(['redis']);
      expect(sum(s, 'c10m_engine_up', { workgroup: '0' })).toBe(1);
      const j = await jmx(node);
      expect(j.Engine).toMatchObject({ Type: 'redis', State: 'Up', WorkgroupsUnavailable: 0 });
      expect(j.Workgroups[0].Engine.State).toBe('Up');
    }, 10_000);
  }
}, 30_000);

test('messages from Redis are counted on the node with a subscriber, not on the node without one', async () => {
  const topic = '/observability/received';
  const sub = await client(nodeB);
  expect(await sub.sub([topic])).toMatchObject({ ok: true });
  await eventually(async () => expect(await metric(nodeB, 'c10m_redis_subscriptions')).toBeGreaterThanOrEqual(1), 10_000);
  const a0 = await scrape(nodeA);
  const b0 = await scrape(nodeB);
  const jb0 = await jmx(nodeB);

  const pub = await client(nodeA);
  const n = 20;
  const text = 'r'.repeat(100);
  for (let i = 0; i < n; i++) expect(await pub.pub(topic, { i, text })).toMatchObject({ ok: true });
  await sub.until(() => sub.deliveries.length === n, 10_000, `${n} deliveries on node B`);

  await eventually(async () => {
    const b1 = await scrape(nodeB);
    expect(sum(b1, 'c10m_redis_messages_received_total') - sum(b0, 'c10m_redis_messages_received_total')).toBe(n);
    // Each message carries at least its data's JSON text.
    expect(sum(b1, 'c10m_redis_bytes_received_total') - sum(b0, 'c10m_redis_bytes_received_total')).toBeGreaterThan(n * text.length);
    const jb1 = await jmx(nodeB);
    expect(jb1.Engine.RedisMessagesReceived - jb0.Engine.RedisMessagesReceived).toBe(n);
    expect(jb1.Engine.RedisMessagesReceivedPerSecond).toBeGreaterThan(0);
    expect(jb1.Engine.RedisSubscriptions).toBeGreaterThanOrEqual(1);
    expect(jb1.Workgroups[0].Engine.RedisMessagesReceived).toBe(jb1.Engine.RedisMessagesReceived);
  }, 10_000);
  // Node A published them but has no subscriber of the topic: Redis sent it nothing.
  const a1 = await scrape(nodeA);
  expect(sum(a1, 'c10m_redis_messages_received_total') - sum(a0, 'c10m_redis_messages_received_total')).toBe(0);
  expect(sum(a1, 'c10m_redis_subscriptions')).toBe(0);
}, 30_000);

test('publishes fill the Redis round-trip histogram; the publishes of one turn share a flush', async () => {
  const topic = '/observability/roundtrip';
  const pub = await client(nodeA);
  const before = await scrape(nodeA);
  // One burst: the commands leave in a few pipelined writes, not one each.
  const n = 50;
  for (let i = 0; i < n; i++) pub.send({ id: `rt-${i}`, op: 'pub', topic, data: { i }, ack: true });
  await pub.until(() => pub.replies.size >= n, 10_000, `${n} acks`);
  for (let i = 0; i < n; i++) expect(pub.replies.get(`rt-${i}`)).toMatchObject({ ok: true });

  const after = await scrape(nodeA);
  const delta = (name: string) => sum(after, name) - sum(before, name);
  expect(delta('c10m_redis_roundtrip_seconds_count')).toBe(n);
  expect(delta('c10m_redis_roundtrip_seconds_sum')).toBeGreaterThan(0);
  const buckets = after.filter((x) => x.name === 'c10m_redis_roundtrip_seconds_bucket');
  expect(buckets.length).toBe(17);
  for (let i = 1; i < buckets.length; i++) expect(buckets[i].value).toBeGreaterThanOrEqual(buckets[i - 1].value);
  expect(buckets[buckets.length - 1].labels.le).toBe('+Inf');
  expect(buckets[buckets.length - 1].value).toBe(sum(after, 'c10m_redis_roundtrip_seconds_count'));
  const commands = delta('c10m_redis_commands_total');
  const flushes = delta('c10m_redis_flushes_total');
  expect(commands).toBeGreaterThanOrEqual(n);
  expect(flushes).toBeGreaterThanOrEqual(1);
  expect(commands / flushes).toBeGreaterThan(1);

  const j = await jmx(nodeA);
  expect(j.Engine.RedisRoundTripSamples).toBeGreaterThanOrEqual(n);
  expect(j.Engine.RedisRoundTripP50Micros).toBeGreaterThan(0);
  expect(j.Engine.RedisRoundTripP99Micros).toBeGreaterThanOrEqual(j.Engine.RedisRoundTripP50Micros);
  expect(j.Engine.PipelinedCommandsPerFlush).toBeGreaterThan(1);
  expect(j.Engine.RedisCommands).toBeGreaterThanOrEqual(n);
  expect(j.Workgroups[0].Engine.RedisRoundTripSamples).toBe(j.Engine.RedisRoundTripSamples);
}, 30_000);

test("the dashboard's Engine tile says redis up, and the Redis tile shows the round trip and the rate", async () => {
  const userDataDir = mkdtempSync(path.join(os.tmpdir(), 'c10m-engine-dashboard-'));
  const context = await chromium.launchPersistentContext(userDataDir, { executablePath: '/usr/bin/chromium', headless: true, args: ['--headless', '--no-sandbox', '--disable-gpu'] });
  try {
    const page = context.pages()[0] ?? (await context.newPage());
    await page.goto(nodeA.adminUrl('/dashboard'));
    await page.waitForFunction(() => document.getElementById('engine')?.textContent === 'redis up', undefined, { timeout: 10_000 });
    expect(await page.locator('#redis-tile').isVisible()).toBe(true);
    // The round trips of the previous case are inside the 10 s window: p99 is a bucket bound, then the rate.
    expect(await page.locator('#redis').textContent()).toMatch(/^\d+(\.\d)? (µs|ms) \/ [\d.]+/);
  } finally {
    await context.close();
    rmSync(userDataDir, { recursive: true, force: true });
  }
}, 30_000);

test('Redis down: /readyz 503 with the reason, /healthz 200, sessions stay, refused publishes counted; Redis back: ready again', async () => {
  const topic = '/observability/down';
  const pub = await client(nodeA);
  expect(await pub.pub(topic, { before: true })).toMatchObject({ ok: true });
  const unavailable0 = await metric(nodeA, 'c10m_publishes_unavailable_total');
  const reconnects0 = await metric(nodeA, 'c10m_redis_reconnects_total');

  await redis.kill();
  for (const node of [nodeA, nodeB]) {
    await eventually(async () => {
      const r = await readyz(node);
      expect(r.status).toBe(503);
      expect(r.body).toMatchObject({ ready: false, engine: 'redis', redisUnreachable: [0] });
      expect(r.body.reasons).toEqual(['redis unreachable']);
    }, 10_000);
    // Alive: the process serves its sessions; only publishing needs Redis.
    expect((await fetch(node.adminUrl('/healthz'))).status).toBe(200);
    const s = await scrape(node);
    expect(sum(s, 'c10m_engine_up', { workgroup: '0' })).toBe(0);
    expect(s.filter((x) => x.name === 'c10m_engine_info').map((x) => x.labels.engine)).toEqual(['redis']);
    const j = await jmx(node);
    expect(j.Engine).toMatchObject({ Type: 'redis', State: 'Unavailable', WorkgroupsUnavailable: 1 });
    expect(j.Workgroups[0].Engine.State).toBe('Unavailable');
  }

  // A publish over the WebSocket and one over HTTP are refused with UNAVAILABLE, and counted.
  const refused = await pub.pub(topic, { during: true });
  expect(refused.error).toMatchObject({ code: 'UNAVAILABLE' });
  const res = await fetch(`http://127.0.0.1:${nodeA.port}/v1/publish`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ topic, data: 1 }) });
  expect(res.status).toBe(503);
  expect(res.headers.get('retry-after')).toBe('1');
  expect(((await res.json()) as Json).error.code).toBe('UNAVAILABLE');
  await eventually(async () => expect((await metric(nodeA, 'c10m_publishes_unavailable_total')) - unavailable0).toBe(2), 10_000);
  expect((await jmx(nodeA)).Engine.PublishesUnavailable - unavailable0).toBe(2);
  // The session is still open.
  expect(pub.closeCode).toBeNull();

  // Back on the same port (empty: no persistence).
  await redis.restart();
  for (const node of [nodeA, nodeB]) {
    await eventually(async () => {
      const r = await readyz(node);
      expect(r.status).toBe(200);
      expect(r.body).toMatchObject({ ready: true, reasons: [], engine: 'redis', redisUnreachable: [] });
      expect(await metric(node, 'c10m_engine_up')).toBe(1);
    }, 15_000);
  }
  expect(await metric(nodeA, 'c10m_redis_reconnects_total')).toBeGreaterThan(reconnects0);
  expect((await jmx(nodeA)).Engine.State).toBe('Up');
  expect((await httpPublish(nodeA.port, { topic, data: { after: true } })).status).toBe(200);
  expect(pub.closeCode).toBeNull();
}, 60_000);
