// /metrics and /jmx read from the shared stats blocks while real clients
// subscribe and publish: the figures move as they must, the per-second
// rates match a controlled burst, per-workgroup series carry their label,
// and the admin token guards them (but not the open routes).
import pino from 'pino';
import { encodeBinaryFrame, encodeJsonFrame } from '../protocol/frame';
import { packr } from '../protocol/codec';
import { AdminServer } from '../server/admin';
import { connect, httpPublish, type TestClient } from './helpers/client';
import { startServer, type TestServer } from './helpers/server';
import { eventually } from './helpers/workgroups';

interface PromSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses Prometheus text exposition (the subset prom-client writes). */
function parseProm(text: string): PromSample[] {
  const out: PromSample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`not a Prometheus sample line: ${line}`);
    const labels: Record<string, string> = {};
    if (m[2]) for (const l of m[2].matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    const value = m[3] === '+Inf' ? Infinity : m[3] === '-Inf' ? -Infinity : Number(m[3]);
    out.push({ name: m[1], labels, value });
  }
  return out;
}

class Scrape {
  constructor(readonly samples: PromSample[]) {}
  series(name: string): PromSample[] {
    return this.samples.filter((s) => s.name === name);
  }
  /** Sum over every series of the family (all workgroups). */
  sum(name: string, where: Record<string, string> = {}): number {
    const list = this.series(name).filter((s) => Object.entries(where).every(([k, v]) => s.labels[k] === v));
    if (list.length === 0) throw new Error(`no series ${name} ${JSON.stringify(where)}`);
    return list.reduce((a, s) => a + s.value, 0);
  }
}

async function scrape(server: TestServer, headers: Record<string, string> = {}): Promise<Scrape> {
  const res = await fetch(server.adminUrl('/metrics'), { headers });
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  return new Scrape(parseProm(await res.text()));
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Jmx = Record<string, any>;
async function jmx(server: TestServer, headers: Record<string, string> = {}): Promise<Jmx> {
  const res = await fetch(server.adminUrl('/jmx'), { headers });
  expect(res.status).toBe(200);
  return (await res.json()) as Jmx;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('one workgroup', () => {
  let server: TestServer;
  const clients: TestClient[] = [];
  const client = async (encoding: 'json' | 'msgpack' = 'json') => {
    const c = await connect(server.url(), encoding);
    clients.push(c);
    return c;
  };

  beforeAll(async () => {
    server = await startServer(['--workgroups', '1']);
  });
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close()));
  });
  afterAll(async () => {
    await server.stop();
  });

  test('/metrics exposes the default process metrics and ours, with a latency histogram per workgroup', async () => {
    const s = await scrape(server);
    for (const name of ['process_cpu_seconds_total', 'process_resident_memory_bytes', 'nodejs_heap_size_used_bytes', 'process_open_fds']) {
      expect(s.series(name).length).toBeGreaterThan(0);
    }
    expect(s.sum('c10m_workgroups')).toBe(1);
    expect(s.sum('c10m_workgroups_listening')).toBe(1);
    // One series per workgroup and transport (websocket, sse).
    expect(s.series('c10m_sessions').map((x) => [x.labels.workgroup, x.labels.transport])).toEqual([
      ['0', 'websocket'],
      ['0', 'sse'],
    ]);
    expect(s.sum('c10m_workgroup_restarts_total')).toBe(0);
    const buckets = s.series('c10m_publish_to_write_latency_seconds_bucket');
    expect(buckets.map((b) => b.labels.le)).toEqual([
      '0.00001',
      '0.000025',
      '0.00005',
      '0.0001',
      '0.00025',
      '0.0005',
      '0.001',
      '0.0025',
      '0.005',
      '0.01',
      '0.025',
      '0.05',
      '0.1',
      '0.25',
      '0.5',
      '1',
      '+Inf',
    ]);
    // native-io path, arenas by memory kind, descriptor limits and use
    const native = s.series('c10m_native_io_info');
    expect(native).toHaveLength(1);
    expect(['native', 'fallback']).toContain(native[0].labels.path);
    expect(
      s
        .series('c10m_arena_bytes')
        .map((x) => x.labels.path)
        .sort(),
    ).toEqual(['hugetlb', 'js', 'normal', 'thp']);
    expect(s.sum('c10m_descriptor_limit', { limit: 'soft' })).toBeGreaterThan(0);
    const fds = s.sum('c10m_open_descriptors');
    expect(fds).toBeGreaterThan(3);
    expect(fds).toBeLessThan(s.sum('c10m_descriptor_limit', { limit: 'soft' }));
  });

  test('with the memory engine: engine memory and up, every Redis figure 0, /readyz 200 without reasons', async () => {
    const s = await scrape(server);
    expect(s.series('c10m_engine_info').map((x) => [x.labels.engine, x.value])).toEqual([['memory', 1]]);
    expect(s.series('c10m_engine_up').map((x) => [x.labels.workgroup, x.value])).toEqual([['0', 1]]);
    for (const name of [
      'c10m_redis_subscriptions',
      'c10m_redis_messages_received_total',
      'c10m_redis_bytes_received_total',
      'c10m_redis_commands_total',
      'c10m_redis_flushes_total',
      'c10m_redis_reconnects_total',
      'c10m_publishes_unavailable_total',
      'c10m_redis_recovered_messages_total',
      'c10m_redis_lost_messages_total',
      'c10m_redis_roundtrip_seconds_count',
      'c10m_redis_roundtrip_seconds_sum',
    ]) {
      expect({ name, series: s.series(name).map((x) => [x.labels.workgroup, x.value]) }).toEqual({ name, series: [['0', 0]] });
    }
    // The round-trip histogram has the latency histogram's buckets, all empty.
    const rtt = s.series('c10m_redis_roundtrip_seconds_bucket');
    expect(rtt.map((b) => b.labels.le)).toEqual(s.series('c10m_publish_to_write_latency_seconds_bucket').map((b) => b.labels.le));
    expect(rtt.every((b) => b.value === 0)).toBe(true);
    // HELP and TYPE lines say what each family is.
    const text = await (await fetch(server.adminUrl('/metrics'))).text();
    expect(text).toMatch(/^# TYPE c10m_redis_roundtrip_seconds histogram$/m);
    expect(text).toMatch(/^# TYPE c10m_engine_up gauge$/m);
    expect(text).toMatch(/^# TYPE c10m_redis_messages_received_total counter$/m);
    expect(text).toMatch(/^# HELP c10m_engine_up .*Redis is unreachable/m);

    const j = await jmx(server);
    expect(j.Engine).toEqual({
      Type: 'memory',
      State: 'Up',
      WorkgroupsUnavailable: 0,
      RedisSubscriptions: 0,
      RedisMessagesReceived: 0,
      RedisBytesReceived: 0,
      RedisMessagesReceivedPerSecond: 0,
      RedisBytesReceivedPerSecond: 0,
      RedisCommands: 0,
      RedisFlushes: 0,
      PipelinedCommandsPerFlush: null,
      RedisReconnects: 0,
      PublishesUnavailable: 0,
      RecoveredMessages: 0,
      LostMessages: 0,
      RedisRoundTripSamples: 0,
      RedisRoundTripMeanMicros: null,
      RedisRoundTripP50Micros: null,
      RedisRoundTripP90Micros: null,
      RedisRoundTripP99Micros: null,
    });
    const { Type: _type, WorkgroupsUnavailable: _unavailable, ...perWorkgroup } = j.Engine;
    expect(j.Workgroups[0].Engine).toEqual(perWorkgroup);

    const ready = await fetch(server.adminUrl('/readyz'));
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ ready: true, reasons: [], engine: 'memory', redisUnreachable: [] });
  });

  test('sessions go up and down, in /metrics and /jmx alike', async () => {
    const before = await scrape(server);
    const opened0 = before.sum('c10m_sessions_opened_total');
    const closed0 = before.sum('c10m_sessions_closed_total');
    const fds0 = before.sum('c10m_open_descriptors');
    const a = await client();
    const b = await client();
    const c = await client('msgpack');
    await eventually(async () => {
      const s = await scrape(server);
      expect(s.sum('c10m_sessions')).toBe(3);
      expect(s.sum('c10m_sessions_opened_total')).toBe(opened0 + 3);
      expect(s.sum('c10m_open_descriptors')).toBeGreaterThanOrEqual(fds0 + 3);
      const j = await jmx(server);
      expect(j.ConnectedSessions).toBe(3);
      expect(j.Workgroups[0].ConnectedSessions).toBe(3);
      expect(j.SessionsOpened).toBe(opened0 + 3);
    });
    await a.close();
    await c.close();
    await eventually(async () => {
      const s = await scrape(server);
      expect(s.sum('c10m_sessions')).toBe(1);
      expect(s.sum('c10m_sessions_closed_total')).toBe(closed0 + 2);
      const j = await jmx(server);
      expect(j.ConnectedSessions).toBe(1);
      expect(j.SessionsClosed).toBe(closed0 + 2);
    });
    await b.close();
    await eventually(async () => {
      expect((await scrape(server)).sum('c10m_sessions')).toBe(0);
      expect((await jmx(server)).ConnectedSessions).toBe(0);
    });
  });

  test('message, byte, subscription and latency counters equal what was sent', async () => {
    const topic = '/metrics/counters';
    const s0 = await scrape(server);
    const j0 = await jmx(server);
    const subJson = await client('json');
    const subPack = await client('msgpack');
    await subJson.sub([topic]);
    await subPack.sub([topic]);
    await eventually(async () => {
      expect((await scrape(server)).sum('c10m_subscriptions')).toBe(s0.sum('c10m_subscriptions') + 2);
      expect((await jmx(server)).Subscriptions).toBe(j0.Subscriptions + 2);
      // the topic table gauge is refreshed by the workgroup once a second
      expect((await scrape(server)).sum('c10m_topics')).toBe(s0.sum('c10m_topics') + 1);
    });
    const pub = await client('json');
    const wsPublishes = 25;
    const httpPublishes = 5;
    for (let i = 0; i < wsPublishes; i++) await pub.pub(topic, { i, text: 'x'.repeat(i) });
    for (let i = 0; i < httpPublishes; i++) expect((await httpPublish(server.port, { topic, data: { http: i } })).status).toBe(200);
    const total = wsPublishes + httpPublishes;
    await subJson.until(() => subJson.deliveries.length === total);
    await subPack.until(() => subPack.deliveries.length === total);
    // The frames the server wrote, rebuilt from what the subscribers received.
    let expectedBytes = 0;
    for (const d of subJson.deliveries) expectedBytes += encodeJsonFrame(d.topic, d.epoch, d.seq, d.ts, 0, JSON.stringify(d.data)).length;
    for (const d of subPack.deliveries) expectedBytes += encodeBinaryFrame(d.topic, d.epoch, d.seq, d.ts, 0, packr.pack(d.data)).length;

    const s1 = await scrape(server);
    const delta = (name: string) => s1.sum(name) - s0.sum(name);
    expect(delta('c10m_messages_in_total')).toBe(total);
    expect(delta('c10m_http_publishes_total')).toBe(httpPublishes);
    expect(delta('c10m_messages_sequenced_total')).toBe(total);
    expect(delta('c10m_messages_out_total')).toBe(2 * total);
    expect(delta('c10m_bytes_out_total')).toBe(expectedBytes);
    expect(delta('c10m_publish_to_write_latency_seconds_count')).toBe(total);
    expect(delta('c10m_publish_to_write_latency_seconds_sum')).toBeGreaterThan(0);
    expect(delta('c10m_slow_consumer_closes_total')).toBe(0);
    // cumulative buckets: never decreasing, +Inf equals _count
    const buckets = s1.series('c10m_publish_to_write_latency_seconds_bucket');
    for (let i = 1; i < buckets.length; i++) expect(buckets[i].value).toBeGreaterThanOrEqual(buckets[i - 1].value);
    expect(buckets[buckets.length - 1].value).toBe(s1.sum('c10m_publish_to_write_latency_seconds_count'));

    const j1 = await jmx(server);
    expect(j1.InPublishMessages - j0.InPublishMessages).toBe(total);
    expect(j1.HttpPublishMessages - j0.HttpPublishMessages).toBe(httpPublishes);
    expect(j1.OutPublishMessages - j0.OutPublishMessages).toBe(2 * total);
    expect(j1.OutPublishBytes - j0.OutPublishBytes).toBe(expectedBytes);
    expect(j1.LatencySamples).toBeGreaterThanOrEqual(total);
    expect(j1.LatencyP50Micros).toBeGreaterThan(0);
    expect(j1.LatencyP99Micros).toBeGreaterThanOrEqual(j1.LatencyP50Micros);
    expect(j1.Workgroups[0].OutPublishMessages).toBe(j1.OutPublishMessages);

    await subJson.request({ op: 'unsub', topics: [topic] });
    await eventually(async () => {
      expect((await scrape(server)).sum('c10m_subscriptions')).toBe(s0.sum('c10m_subscriptions') + 1);
    });
  });

  test('per-second rates in /jmx match a controlled publish burst within 5%', async () => {
    const topic = '/metrics/rate';
    const subA = await client('json');
    const subB = await client('json');
    await subA.sub([topic]);
    await subB.sub([topic]);
    const pub = await client('json');
    // 20 publishes every 100 ms (200/s) for 11.5 s: longer than the 10 s window.
    const batch = 20;
    const sent: { atMs: number; count: number }[] = [];
    const data = { payload: 'r'.repeat(64) };
    let next = 1;
    const startedAt = Date.now();
    while (Date.now() - startedAt < 11_500) {
      for (let i = 0; i < batch; i++) pub.send({ id: next++, op: 'pub', topic, data });
      sent.push({ atMs: Date.now(), count: batch });
      await sleep(100);
    }
    const j = await jmx(server);
    // Settle the last publishes before counting what the subscribers got.
    const last = await pub.pub(topic, data);
    expect(last.ok).toBe(true);

    const windowStart = j.WindowStartTimestamp as number;
    const windowEnd = j.Timestamp as number;
    expect(j.WindowSeconds).toBeGreaterThan(8.9);
    expect(j.WindowSeconds).toBeLessThanOrEqual(10.3);
    expect(Math.abs((windowEnd - windowStart) / 1000 - j.WindowSeconds)).toBeLessThan(0.05);
    // What the client sent inside the server's window (a batch straddling an edge is at most 1% of it).
    const sentInWindow = sent.filter((s) => s.atMs > windowStart && s.atMs <= windowEnd).reduce((a, s) => a + s.count, 0);
    const expectedInRate = sentInWindow / j.WindowSeconds;
    expect(expectedInRate).toBeGreaterThan(150);
    expect(Math.abs(j.InPublishMessagesPerSecond - expectedInRate) / expectedInRate).toBeLessThan(0.05);
    expect(Math.abs(j.OutPublishMessagesPerSecond - 2 * expectedInRate) / (2 * expectedInRate)).toBeLessThan(0.05);
    // Bytes: the JSON frames of this topic, rebuilt from a subscriber's deliveries.
    await subA.until(() => subA.deliveries.length === next);
    const frameBytes = subA.deliveries.reduce((a, d) => a + encodeJsonFrame(d.topic, d.epoch, d.seq, d.ts, 0, JSON.stringify(d.data)).length, 0) / subA.deliveries.length;
    expect(Math.abs(j.OutPublishBytesPerSecond - 2 * expectedInRate * frameBytes) / (2 * expectedInRate * frameBytes)).toBeLessThan(0.05);
    expect(Math.abs(j.Workgroups[0].InPublishMessagesPerSecond - j.InPublishMessagesPerSecond)).toBeLessThan(1e-6);
    // The latency window holds about the publishes of the window.
    expect(Math.abs(j.LatencySamples - sentInWindow) / sentInWindow).toBeLessThan(0.05);
    expect(j.CpuPercent).toBeGreaterThan(0);
  }, 40_000);
});

describe('two workgroups', () => {
  let server: TestServer;
  const clients: TestClient[] = [];

  beforeAll(async () => {
    // --benchmark-mode: the kernel's 4-tuple hash spreads loopback connections over both workgroups.
    server = await startServer(['--workgroups', '2', '--benchmark-mode']);
  });
  afterAll(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close()));
    await server.stop();
  });

  test('per-workgroup series carry workgroup labels and add up to the node', async () => {
    const n = 24;
    for (let i = 0; i < n; i++) clients.push(await connect(server.url(), 'json'));
    await eventually(async () => {
      const s = await scrape(server);
      expect(s.sum('c10m_sessions')).toBe(n);
      const perWorkgroup = s.series('c10m_sessions').filter((x) => x.labels.transport === 'websocket');
      expect(perWorkgroup.map((x) => x.labels.workgroup).sort()).toEqual(['0', '1']);
      // 24 connections spread by a hash: each workgroup has some (all on one: odds 2^-23).
      for (const x of perWorkgroup) expect(x.value).toBeGreaterThan(0);
      for (const name of [
        'c10m_workgroup_listening',
        'c10m_workgroup_restarts_total',
        'c10m_messages_out_total',
        'c10m_workgroup_heartbeat_age_seconds',
        'c10m_engine_up',
        'c10m_redis_messages_received_total',
        'c10m_redis_roundtrip_seconds_count',
      ]) {
        expect(
          s
            .series(name)
            .filter((x) => x.labels.transport !== 'sse')
            .map((x) => x.labels.workgroup)
            .sort(),
        ).toEqual(['0', '1']);
      }
      expect(
        s
          .series('c10m_publish_to_write_latency_seconds_count')
          .map((x) => x.labels.workgroup)
          .sort(),
      ).toEqual(['0', '1']);
      const j = await jmx(server);
      expect(j.WorkgroupCount).toBe(2);
      expect(j.WorkgroupsListening).toBe(2);
      expect(j.ConnectedSessions).toBe(n);
      expect(j.Workgroups.map((w: Jmx) => w.Id)).toEqual([0, 1]);
      for (const w of j.Workgroups) {
        expect(w.ConnectedSessions).toBe(s.sum('c10m_sessions', { workgroup: String(w.Id) }));
        expect(w.Listening).toBe(true);
        expect(w.HeartbeatAgeSeconds).toBeLessThan(3);
        expect(w.Engine.State).toBe('Up');
      }
      expect(s.series('c10m_engine_info')).toHaveLength(1);
    });
  });
});

describe('event-loop delay', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer(['--workgroups', '1', '--debug-routes']);
  });
  afterAll(async () => {
    await server.stop();
  });

  test('the longest loop delay of the last second is reported per workgroup: small when idle, the stall when the loop is blocked', async () => {
    let idle = 0;
    await eventually(async () => {
      const j = await jmx(server);
      idle = j.Workgroups[0].EventLoopDelayMaxMs;
      expect(idle).toEqual(expect.any(Number));
    });
    // A 10 ms timer's lateness: never far above its resolution on an idle loop.
    expect(idle).toBeGreaterThan(0);
    expect(idle).toBeLessThan(400);
    const res = await fetch(server.adminUrl('/debug/stall?workgroup=0&ms=600'), { method: 'POST' });
    await res.text();
    expect(res.status).toBe(202);
    let seenMs = 0;
    await eventually(async () => {
      seenMs = Math.max(seenMs, (await jmx(server)).Workgroups[0].EventLoopDelayMaxMs ?? 0);
      expect(seenMs).toBeGreaterThanOrEqual(590);
    }, 8000);
    expect(seenMs).toBeLessThan(5000);
    const m = await scrape(server);
    expect(m.series('c10m_workgroup_event_loop_delay_max_seconds').map((x) => x.labels.workgroup)).toEqual(['0']);
    expect(m.sum('c10m_workgroup_event_loop_delay_max_seconds')).toBeGreaterThan(0);
  });
});

describe('protocol errors over HTTP', () => {
  let server: TestServer;
  beforeAll(async () => {
    // One topic for the node: a publish to a second one is refused with 503 TOO_MANY_TOPICS.
    server = await startServer(['--workgroups', '1', '--max-topics', '1']);
  });
  afterAll(async () => {
    await server.stop();
  });

  test('a 503 answer (the server state) is not a protocol error; a 400 is one, as on the WebSocket path', async () => {
    const errors = async () => (await scrape(server)).sum('c10m_protocol_errors_total');
    expect((await httpPublish(server.port, { topic: '/perr/one', data: 1 })).status).toBe(200);
    const before = await errors();
    const refused = await httpPublish(server.port, { topic: '/perr/two', data: 2 });
    expect(refused.status).toBe(503);
    expect((refused.body.error as { code: string }).code).toBe('TOO_MANY_TOPICS');
    expect(await errors()).toBe(before);
    const bad = await httpPublish(server.port, '[1, 2]');
    expect(bad.status).toBe(400);
    await eventually(async () => expect(await errors()).toBe(before + 1));
  });
});

describe('admin token', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer(['--workgroups', '1', '--admin-token', 's3cret']);
  });
  afterAll(async () => {
    await server.stop();
  });

  test('/metrics and /jmx answer 401 without the token or with a wrong one, 200 with it; /healthz stays open', async () => {
    for (const path of ['/metrics', '/jmx']) {
      const none = await fetch(server.adminUrl(path));
      expect(none.status).toBe(401);
      expect(none.headers.get('www-authenticate')).toMatch(/^Bearer/);
      const body = await none.text();
      expect(body).not.toMatch(/c10m_sessions|ConnectedSessions/);
      expect((await fetch(server.adminUrl(path), { headers: { authorization: 'Bearer wrong' } })).status).toBe(401);
      expect((await fetch(server.adminUrl(path), { headers: { authorization: 's3cret' } })).status).toBe(401);
    }
    const s = await scrape(server, { authorization: 'Bearer s3cret' });
    expect(s.sum('c10m_workgroups')).toBe(1);
    const j = await jmx(server, { authorization: 'Bearer s3cret' });
    expect(j.WorkgroupCount).toBe(1);
    expect((await fetch(server.adminUrl('/healthz'))).status).toBe(200);
  });

  test("the dashboard's page files are open (they hold no figures); /readyz and the figures keep the token", async () => {
    for (const path of ['/dashboard', '/dashboard/', '/dashboard/app.js', '/dashboard/app.css', '/dashboard/uplot.min.js', '/dashboard/uplot.min.css']) {
      const res = await fetch(server.adminUrl(path));
      expect({ path, status: res.status }).toEqual({ path, status: 200 });
      expect(await res.text()).not.toMatch(/s3cret|c10m_sessions \d|"ConnectedSessions":/);
    }
    for (const path of ['/readyz', '/metrics', '/jmx']) {
      expect({ path, status: (await fetch(server.adminUrl(path))).status }).toEqual({ path, status: 401 });
    }
  });
});

describe('AdminServer routes', () => {
  const admin = new AdminServer({ host: '127.0.0.1', port: 0, token: 't0ken' }, pino({ level: 'silent' }));
  const url = (path: string) => `http://127.0.0.1:${admin.port}${path}`;
  const ok = (body: string) => (_req: unknown, res: import('node:http').ServerResponse) => void res.end(body);
  beforeAll(async () => {
    admin.route('/guarded', ok('guarded'));
    admin.route('/open', ok('open'), { open: true });
    admin.route('/healthz', ok('alive'));
    admin.routePost('/open-post', ok('posted'), { open: true });
    admin.routePost('/guarded-post', ok('posted'));
    await admin.listen();
  });
  afterAll(() => admin.close());

  test('{ open: true } serves a route without the token; every other route but /healthz needs it', async () => {
    expect((await fetch(url('/open'))).status).toBe(200);
    expect(await (await fetch(url('/open'))).text()).toBe('open');
    expect((await fetch(url('/healthz'))).status).toBe(200);
    expect((await fetch(url('/open-post'), { method: 'POST' })).status).toBe(200);
    const guarded = await fetch(url('/guarded'));
    expect(guarded.status).toBe(401);
    expect(guarded.headers.get('www-authenticate')).toMatch(/^Bearer/);
    expect((await fetch(url('/guarded-post'), { method: 'POST' })).status).toBe(401);
    expect(await (await fetch(url('/guarded'), { headers: { authorization: 'Bearer t0ken' } })).text()).toBe('guarded');
    // Open or not, a route answers only its methods, and unknown paths are 404 before any token check.
    expect((await fetch(url('/open'), { method: 'POST' })).status).toBe(404);
    expect((await fetch(url('/nothing'))).status).toBe(404);
  });
});
