// Budgets a client cannot exceed: commands and bytes per second per session
// (RATE_LIMITED, then 4001), and topics per node (TOO_MANY_TOPICS), with idle
// topic rows released so that the limit is not a one-way door.
import { connect, httpPublish, type TestClient } from './helpers/client';
import { startServer, type TestServer } from './helpers/server';
import { metricSum, metricWhen } from './helpers/workgroups';
import { ownerOf } from '../workgroups/topics';

function errorCode(r: Record<string, unknown> | undefined): string | undefined {
  return (r?.error as { code?: string } | undefined)?.code;
}

describe('per-session command budget', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer(['--workgroups', '2', '--max-commands-per-second', '50', '--max-bytes-per-second', '8192']);
  });
  afterAll(() => server.stop());

  test('a burst over the budget is refused with RATE_LIMITED, command by command; other sessions and the next second are unaffected', async () => {
    const a = await connect(server.url());
    const b = await connect(server.url());
    // 150 at once: however the burst falls over two one-second windows, at least 50 are over budget.
    for (let i = 0; i < 150; i++) a.send({ id: i, op: 'ping' });
    await a.until(() => a.replies.size === 150, 10_000, '150 replies');
    const limited = [...a.replies.values()].filter((r) => errorCode(r) === 'RATE_LIMITED');
    expect(limited.length).toBeGreaterThanOrEqual(50);
    expect(limited.length).toBeLessThanOrEqual(100);
    expect(String((limited[0].error as { message: string }).message)).toMatch(/budget of 50 commands/);
    expect(a.closeCode).toBeNull();
    expect((await b.request({ op: 'ping' })).ok).toBe(true);
    await new Promise((r) => setTimeout(r, 2100));
    expect((await a.request({ op: 'ping' })).ok).toBe(true);
    expect(await metricSum(server, 'c10m_rate_limited_total')).toBeGreaterThanOrEqual(50);
    await a.close();
    await b.close();
  });

  test('bytes count too: large publishes over --max-bytes-per-second are refused', async () => {
    const a = await connect(server.url());
    const data = 'x'.repeat(1500);
    for (let i = 0; i < 12; i++) a.send({ id: i, op: 'pub', topic: '/budget/bytes', data, ack: true });
    await a.until(() => a.replies.size === 12, 10_000, '12 replies');
    const limited = [...a.replies.values()].filter((r) => errorCode(r) === 'RATE_LIMITED');
    const ok = [...a.replies.values()].filter((r) => r.ok === true);
    // 12 x ~1.55 KB = ~18.6 KB over at most two 8 KiB windows.
    expect(limited.length).toBeGreaterThanOrEqual(1);
    expect(ok.length).toBeGreaterThanOrEqual(5);
    await a.close();
  });

  test('a session that keeps sending at several times its budget is closed with 4001; the others stay', async () => {
    const a = await connect(server.url());
    const b = await connect(server.url());
    for (let i = 0; i < 400; i++) a.send({ id: i, op: 'ping' });
    expect(await a.closed).toBe(4001);
    expect(a.closeReason).toMatch(/budget/);
    expect((await b.request({ op: 'ping' })).ok).toBe(true);
    expect(await metricSum(server, 'c10m_rate_limit_closes_total')).toBeGreaterThanOrEqual(1);
    await b.close();
  });
});

describe('topics per node', () => {
  let server: TestServer;
  const WG = 2;
  const MAX = 6; // 3 per workgroup
  beforeAll(async () => {
    server = await startServer(['--workgroups', String(WG), '--max-topics', String(MAX), '--cache-seconds', '2']);
  });
  afterAll(() => server.stop());

  test('new topics past --max-topics are refused (sub, pub with and without ack, HTTP); existing ones work; released rows make room again', async () => {
    const topics = Array.from({ length: 20 }, (_, i) => `/limit/t${i}`);
    const perOwner = [0, 0];
    for (const t of topics) perOwner[ownerOf(t, WG)]++;
    const expected = perOwner.reduce((s, n) => s + Math.min(n, MAX / WG), 0);
    const a = await connect(server.url());
    const subscribed: string[] = [];
    const refused: string[] = [];
    for (const t of topics) {
      const r = await a.sub([t]);
      if (r.ok === true) subscribed.push(t);
      else {
        expect(errorCode(r)).toBe('TOO_MANY_TOPICS');
        refused.push(t);
      }
    }
    expect(subscribed.length).toBe(expected);
    // Topics the node holds keep working.
    const ok = await a.pub(subscribed[0], 'still here');
    expect(ok.ok).toBe(true);
    await a.until(() => a.deliveries.some((d) => d.topic === subscribed[0]), 5000, 'delivery');
    // A publish that would make one more topic: with an ack, without one (the error still comes back), over HTTP.
    expect(errorCode(await a.pub(refused[0], 1))).toBe('TOO_MANY_TOPICS');
    a.send({ id: 'no-ack', op: 'pub', topic: refused[1], data: 2 });
    await a.until(() => a.replies.has('no-ack'), 5000, 'refusal of a publish without ack');
    expect(errorCode(a.replies.get('no-ack'))).toBe('TOO_MANY_TOPICS');
    const http = await httpPublish(server.port, { topic: refused[2], data: 3 });
    expect(http.status).toBe(503);
    expect(errorCode(http.body)).toBe('TOO_MANY_TOPICS');
    expect(await metricSum(server, 'c10m_topics_refused_total')).toBeGreaterThanOrEqual(refused.length + 3);
    expect(await metricWhen(server, 'c10m_topics', (v) => v === expected)).toBe(expected);
    // Let go of everything: rows with nothing cached go after min(--cache-seconds, 10 s) idle, and make room.
    expect((await a.request({ op: 'unsub', topics: subscribed })).ok).toBe(true);
    const deadline = Date.now() + 15_000;
    let r: Record<string, unknown> = {};
    while (Date.now() < deadline) {
      r = await a.sub([refused[0]]);
      if (r.ok === true) break;
      await new Promise((res) => setTimeout(res, 500));
    }
    expect(r.ok).toBe(true);
    expect(await metricSum(server, 'c10m_topics_released_total')).toBeGreaterThanOrEqual(1);
    await a.close();
  }, 40_000);
});

describe('a sub/unsub loop does not hold topic rows', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer(['--workgroups', '1', '--cache-seconds', '2', '--max-commands-per-second', '0']);
  });
  afterAll(() => server.stop());

  test('5,000 fresh topics subscribed and dropped are released after a short idle time', async () => {
    const a: TestClient = await connect(server.url());
    for (let i = 0; i < 5000; i += 100) {
      const batch = Array.from({ length: 100 }, (_, k) => `/churn/${i + k}`);
      expect((await a.sub(batch)).ok).toBe(true);
      expect((await a.request({ op: 'unsub', topics: batch })).ok).toBe(true);
    }
    expect(await metricWhen(server, 'c10m_topics', (v) => v > 1000)).toBeGreaterThan(1000);
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline && (await metricSum(server, 'c10m_topics')) > 0) await new Promise((r) => setTimeout(r, 500));
    expect(await metricSum(server, 'c10m_topics')).toBe(0);
    expect(await metricSum(server, 'c10m_topics_released_total')).toBeGreaterThanOrEqual(5000);
    await a.close();
  }, 40_000);
});
