// A workgroup that dies is always restarted (C10M_FAULT_INJECTION=1 kills
// it through the admin port's /debug/crash): however often it dies, with a
// backoff that never gives up; /healthz says 503 and names it while it is
// down, 200 once it listens again; its topics are served again after each
// restart. And a workgroup killed while its cache's allocSharedAsync
// prefetch is in flight never takes the process down.
import type { TestClient } from './helpers/client';
import { startServer, type TestServer } from './helpers/server';
import { connectIn, crashWorkgroup, metricSum, metricWhen, topicsOwnedBy, waitFor, type PlacedClient } from './helpers/workgroups';

interface Health {
  status: number;
  body: { status: string; listening: number; down: { workgroup: number; restarts: number; downSeconds: number; nextRestartInSeconds: number }[] };
}

async function health(server: TestServer, path = '/healthz'): Promise<Health> {
  const res = await fetch(server.adminUrl(path));
  return { status: res.status, body: (await res.json()) as Health['body'] };
}

/** Polls /healthz every 10 ms until `pred`; the last answer. */
async function healthUntil(server: TestServer, pred: (h: Health) => boolean, timeoutMs: number, what: string): Promise<Health> {
  const started = Date.now();
  for (;;) {
    const h = await health(server);
    if (pred(h)) return h;
    if (Date.now() - started > timeoutMs) throw new Error(`timed out waiting for ${what}; last /healthz: ${h.status} ${JSON.stringify(h.body)}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const open: TestClient[] = [];
let server: TestServer | null = null;
afterEach(async () => {
  for (const c of open.splice(0)) await c.close().catch(() => {});
  await server?.stop();
  server = null;
});
function keep(p: PlacedClient): PlacedClient {
  open.push(p.client);
  return p;
}

describe('a workgroup that keeps dying is always restarted', () => {
  test('12 crashes in a row: restarted every time (backoff capped by --max-restart-delay-ms), /healthz 503 naming it while down and 200 after, its topics publish again', async () => {
    const CRASHES = 12;
    const MAX_DELAY_MS = 800;
    server = await startServer(['--workgroups', '2', '--max-restart-delay-ms', String(MAX_DELAY_MS)], { C10M_FAULT_INJECTION: '1' });
    const s = server;
    const victimTopics = topicsOwnedBy(1, 2, 3, 'restart');
    const pub = keep(await connectIn(s, 0));
    expect((await health(s)).status).toBe(200);
    const downMs: number[] = [];
    for (let i = 1; i <= CRASHES; i++) {
      const crashedAt = Date.now();
      expect(await crashWorkgroup(s, 1, i % 2 ? 'exit' : 'throw')).toBe(202);
      // While it is down: 503, naming workgroup 1 and how often it was restarted; readiness off too.
      const down = await healthUntil(s, (h) => h.status === 503, 5_000, `/healthz 503 after crash ${i}`);
      expect(down.body.status).toBe('workgroups down');
      expect(down.body.down.map((d) => [d.workgroup, d.restarts])).toEqual([[1, i]]);
      expect(down.body.down[0].nextRestartInSeconds).toBeLessThanOrEqual(MAX_DELAY_MS / 1000);
      const readyz = await fetch(s.adminUrl('/readyz'));
      await readyz.text();
      // (it may be up again already; never ready while /healthz said down)
      if (readyz.status === 200) expect((await health(s)).status).toBe(200);
      // Back: 200, and never given up on.
      await healthUntil(s, (h) => h.status === 200 && h.body.listening === 2, 15_000, `/healthz 200 after crash ${i}`);
      downMs.push(Date.now() - crashedAt);
    }
    expect(await metricSum(s, 'c10m_workgroup_restarts_total', { workgroup: '1' })).toBe(CRASHES);
    expect(await metricSum(s, 'c10m_workgroups_down')).toBe(0);
    expect(s.logs.some((l) => typeof l.msg === 'string' && /not restarting/.test(l.msg))).toBe(false);
    // The backoff grows (50 ms doubling) and is capped: late restarts take about the cap, none much more.
    expect(Math.max(...downMs)).toBeLessThan(MAX_DELAY_MS + 5_000);
    expect(downMs[CRASHES - 1]).toBeGreaterThanOrEqual(MAX_DELAY_MS - 50);
    console.log(`restart timings (crash to /healthz 200), ms: ${downMs.join(' ')}`);
    // Its topics answer again (no OWNER_TIMEOUT): publishes from workgroup 0 to topics workgroup 1 owns.
    for (const t of victimTopics) {
      const reply = await pub.client.pub(t, { after: CRASHES });
      expect(reply).toMatchObject({ ok: true });
    }
  }, 60_000);

  test('the gauge c10m_workgroups_down is 1 while a workgroup is down', async () => {
    server = await startServer(['--workgroups', '2', '--max-restart-delay-ms', '3000'], { C10M_FAULT_INJECTION: '1' });
    const s = server;
    // Each death in a row doubles the restart delay (50, 100, 200 ... ms): crash until a reading of the
    // gauge (a snapshot of up to a second ago) falls inside a down spell, at most 8 times.
    let seen = false;
    for (let crash = 1; crash <= 8 && !seen; crash++) {
      expect(await crashWorkgroup(s, 1, 'exit')).toBe(202);
      await healthUntil(s, (h) => h.status === 503, 5_000, `503 after crash ${crash}`);
      for (;;) {
        const [gauge, h] = [await metricSum(s, 'c10m_workgroups_down'), await health(s)];
        if (gauge === 1 && h.status === 503) seen = true;
        if (h.status === 200) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      await waitFor(async () => (await metricSum(s, 'c10m_workgroup_restarts_total', { workgroup: '1' })) >= crash, 5_000, `restart ${crash} counted`);
    }
    expect(seen).toBe(true);
    expect(await metricWhen(s, 'c10m_workgroups_down', (v) => v === 0)).toBe(0);
  }, 60_000);
});

describe('a workgroup killed with its cache prefetch in flight', () => {
  test('2 workgroups under publish load (16 MiB cache segments prefetched), workgroup 1 crashed 15 times: the process survives every round', async () => {
    const ROUNDS = 15;
    // 8 MiB payloads make 16 MiB arena chunks: each prefetch maps and faults in 16 MiB on a pool thread.
    server = await startServer(
      [
        '--workgroups',
        '2',
        '--max-payload-bytes',
        String(8 * 1024 * 1024),
        '--ring-bytes',
        String(16 * 1024 * 1024),
        '--cache-topic-bytes',
        '65536',
        '--cache-bytes',
        String(64 * 1024 * 1024),
        '--max-restart-delay-ms',
        '200',
      ],
      { C10M_FAULT_INJECTION: '1' },
    );
    const s = server;
    const topics = topicsOwnedBy(1, 2, 64, 'prefetch');
    const data = 'x'.repeat(16 * 1024);
    let pub = keep(await connectIn(s, 0));
    let sent = 0;
    for (let r = 1; r <= ROUNDS; r++) {
      // Publishes to a dead owner fail; after 100 failures a session is closed (1008): take a fresh one.
      if (pub.client.closeCode !== null) pub = keep(await connectIn(s, 0));
      // A burst to topics workgroup 1 owns (its cache takes segments and prefetches the next), then kill it.
      for (let k = 0; k < 200; k++) pub.client.send({ op: 'pub', topic: topics[(sent + k) % topics.length], data });
      sent += 200;
      await new Promise((res) => setTimeout(res, (r * 7) % 20));
      expect(await crashWorkgroup(s, 1, r % 3 === 0 ? 'throw' : 'exit')).toBe(202);
      await healthUntil(s, (h) => h.status === 503 || h.body.down.length > 0, 5_000, `down in round ${r}`).catch(() => null);
      await healthUntil(s, (h) => h.status === 200 && h.body.listening === 2, 15_000, `back in round ${r}`);
      expect({ exitCode: s.proc.exitCode, signal: s.proc.signalCode }).toEqual({ exitCode: null, signal: null });
    }
    expect(await metricSum(s, 'c10m_workgroup_restarts_total', { workgroup: '1' })).toBe(ROUNDS);
    // Workgroup 1 still serves its topics.
    const fresh = keep(await connectIn(s, 0));
    const reply = await fresh.client.pub(topics[0], { last: true });
    expect(reply).toMatchObject({ ok: true });
    expect(s.stderr.join('')).not.toMatch(/terminate called|Napi::Error|Aborted/);
  }, 60_000);
});
