// What the server does about V8's heap after a burst (shm/heap.ts): a full
// GC once started (main thread) and in each workgroup once it has gone quiet
// after new sessions; the workgroups' young generation capped by
// --young-generation-mb.
import { IdleGc } from '../shm/heap';
import { connect } from './helpers/client';
import { runCli, startServer, type TestServer } from './helpers/server';

describe('IdleGc: when a workgroup collects', () => {
  test('once quiet after start, then only after a burst of new sessions followed by quiet', () => {
    const g = new IdleGc(0, 100, 3000);
    expect(g.due(0, 1000)).toBe(false);
    expect(g.due(0, 3000)).toBe(true);
    expect(g.due(0, 10_000)).toBe(false);
    // A burst: not while sessions keep opening, nor before the quiet has lasted.
    expect(g.due(60, 11_000)).toBe(false);
    expect(g.due(150, 12_000)).toBe(false);
    expect(g.due(150, 14_000)).toBe(false);
    expect(g.due(150, 15_000)).toBe(true);
    expect(g.due(150, 60_000)).toBe(false);
    // Fewer new sessions than the threshold: no collection however long the quiet.
    expect(g.due(200, 61_000)).toBe(false);
    expect(g.due(200, 99_000)).toBe(false);
  });
});

describe('serve: garbage collected once started and once quiet', () => {
  let server: TestServer;
  afterEach(async () => {
    await server?.stop();
  });

  test('the main thread collects at start, and each of two workgroups once quiet (gc() is there: bin/c10m.js sets --expose-gc)', async () => {
    server = await startServer(['--workgroups', '2', '--log-level', 'debug']);
    const listening = server.logs.find((l) => l.msg === 'c10m listening');
    expect(listening?.startGcMs).toEqual(expect.any(Number));
    // A session opened meanwhile does not stop the first collection of the other workgroup, nor its own once quiet.
    const c = await connect(server.url());
    for (const wg of [0, 1]) await server.waitForLog((l) => l.msg === 'quiet after new sessions: collected the garbage' && l.wg === wg && typeof l.ms === 'number', 10_000);
    await c.close();
  });

  test('--young-generation-mb: 0 (V8 default) serves; out of range is refused', async () => {
    server = await startServer(['--young-generation-mb', '0', '--workgroups', '1']);
    const c = await connect(server.url());
    await c.close();
    const r = await runCli(['serve', '--port', '0', '--admin-port', '0', '--young-generation-mb', '5000']);
    expect(r.code).toBe(2);
    expect(r.stderr + r.stdout).toMatch(/young-generation-mb/);
  });
});
