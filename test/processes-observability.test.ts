// The admin port of a node of several processes (issue 18): /metrics keeps
// a series per process for a few key families and one node series for the
// rest; gauges that must not be summed (engine state, loop utilization and
// delay) are combined as the maximum, within a process and across them;
// /jmx (the dashboard's data) lists each process and which process each
// workgroup is in; every log line of a node process carries its index and
// pid. Real redis-server, real node processes.
import WebSocket from 'ws';
import { startRedis, stopAllRedis } from './helpers/redis';
import { startServer, type TestServer } from './helpers/server';
import { jmx, waitFor } from './helpers/workgroups';

jest.setTimeout(120_000);

const servers: TestServer[] = [];
const sockets: WebSocket[] = [];

afterEach(async () => {
  for (const ws of sockets.splice(0)) ws.terminate();
  await Promise.all(servers.splice(0).map((s) => s.stop()));
  await stopAllRedis();
});

interface JmxWg {
  Id: number;
  Process?: number;
  ConnectedSessions: number;
  EventLoopUtilization: number | null;
  EventLoopDelayMaxMs: number | null;
}
interface JmxProc {
  Id: number;
  Pid: number;
  ConnectedSessions: number;
  EventLoopUtilization: number | null;
  EventLoopDelayMaxMs: number | null;
  OutPublishMessagesPerSecond: number;
}

/** Every c10m_ sample line of /metrics: name, labels text, value. */
async function samples(s: TestServer): Promise<{ name: string; labels: string; value: number }[]> {
  const text = await (await fetch(s.adminUrl('/metrics'))).text();
  return text
    .split('\n')
    .filter((l) => l.startsWith('c10m_'))
    .map((l) => {
      const m = /^([a-z_0-9]+)(\{[^}]*\})? (\S+)$/.exec(l);
      if (!m) throw new Error(`bad sample line ${l}`);
      return { name: m[1], labels: m[2] ?? '', value: Number(m[3]) };
    });
}

test('three processes of two workgroups: per-process key series, node series for the rest, maxima not sums, and logs that name the process', async () => {
  const redis = await startRedis();
  const s = await startServer(['--engine', 'redis', '--redis-url', redis.url, '--processes', '3', '--workgroups', '2']);
  servers.push(s);
  const N = 60;
  await Promise.all(
    Array.from({ length: N }, () => {
      const ws = new WebSocket(s.url('/v1/ws'));
      sockets.push(ws);
      return new Promise((resolve, reject) => {
        ws.once('open', resolve);
        ws.once('error', reject);
      });
    }),
  );
  // Every process reports once a second: wait until the loop figures of all six workgroups are in, and the sessions add up.
  let doc: Record<string, unknown> = {};
  await waitFor(
    async () => {
      doc = await jmx(s);
      const wgs = doc.Workgroups as JmxWg[];
      return doc.ConnectedSessions === N && wgs.length === 6 && wgs.every((w) => w.EventLoopDelayMaxMs !== null && w.EventLoopUtilization !== null);
    },
    20_000,
    'the reports of 6 workgroups with loop figures',
  );
  const wgs = doc.Workgroups as JmxWg[];
  const procs = doc.Processes as JmxProc[];
  expect(procs.map((p) => p.Id)).toEqual([0, 1, 2]);
  // Which process each workgroup is in: two each, in order.
  expect(wgs.map((w) => w.Process)).toEqual([0, 0, 1, 1, 2, 2]);
  for (const p of procs) {
    const own = wgs.filter((w) => w.Process === p.Id);
    expect(p.ConnectedSessions).toBe(own.reduce((n, w) => n + w.ConnectedSessions, 0));
    // The busiest loop of the process, not the sum of its two (a sum reads over 100 % and twice the delay).
    expect(p.EventLoopDelayMaxMs).toBe(Math.max(...own.map((w) => w.EventLoopDelayMaxMs as number)));
    expect(p.EventLoopUtilization).toBe(Math.max(...own.map((w) => w.EventLoopUtilization as number)));
    expect(p.OutPublishMessagesPerSecond).toBeGreaterThanOrEqual(0);
  }

  const all = await samples(s);
  const of = (name: string) => all.filter((x) => x.name === name);
  // Key families: one series per process.
  for (const name of ['c10m_workgroup_event_loop_delay_max_seconds', 'c10m_workgroup_event_loop_utilization', 'c10m_process_resident_memory_bytes']) {
    expect(of(name).map((x) => x.labels)).toEqual(['{process="0"}', '{process="1"}', '{process="2"}']);
  }
  // Session and delivery families also carry the transport (WebSocket or SSE).
  for (const name of ['c10m_sessions', 'c10m_messages_out_total']) {
    expect(of(name).map((x) => x.labels)).toEqual(['0', '1', '2'].flatMap((p) => [`{process="${p}",transport="websocket"}`, `{process="${p}",transport="sse"}`]));
  }
  expect(of('c10m_sessions').reduce((n, x) => n + x.value, 0)).toBe(N);
  // Two workgroups up on Redis are up (state 1 each; summed, 2 read as unreachable).
  expect(of('c10m_engine_up').map((x) => x.value)).toEqual([1, 1, 1]);
  // Every other family: one series, the node's.
  for (const name of ['c10m_cache_messages', 'c10m_ring_spill_peak_bytes', 'c10m_redis_subscriptions', 'c10m_workgroup_restarts_total']) {
    expect(of(name).map((x) => x.labels)).toEqual(['']);
  }
  expect(of('c10m_sessions_opened_total').map((x) => x.labels)).toEqual(['{transport="websocket"}', '{transport="sse"}']);
  expect(of('c10m_sessions_opened_total').map((x) => x.value)).toEqual([N, 0]);
  // Labelled by process: the key families and the process ones, 3 series each; nothing else.
  const labelled = new Set(all.filter((x) => x.labels.includes('process=')).map((x) => x.name));
  expect(labelled.size).toBeLessThanOrEqual(17);
  // Three series (one per process) for each family and its other labels (transport).
  const perProcess = all.filter((x) => x.labels.includes('process='));
  expect(perProcess.length).toBe(new Set(perProcess.map((x) => x.name + x.labels.replace(/process="\d+",?/, ''))).size * 3);

  // Logs: every line of a node process (its control plane and its workgroups) names the process and its pid.
  const pids = new Map(procs.map((p) => [p.Id, p.Pid]));
  const listening = s.logs.filter((l) => l.msg === 'workgroup listening');
  expect(listening).toHaveLength(6);
  for (const l of listening) {
    expect(typeof l.process).toBe('number');
    expect(l.pid).toBe(pids.get(l.process as number));
  }
  expect(new Set(listening.map((l) => `${String(l.process)}.${String(l.wg)}`)).size).toBe(6);
  const fromProcesses = s.logs.filter((l) => l.role === 'control' && l.process !== undefined);
  expect(fromProcesses.length).toBeGreaterThan(0);
  for (const l of fromProcesses) expect(l.pid).toBe(pids.get(l.process as number));

  // The dashboard shows the processes from the same /jmx.
  const page = await (await fetch(s.adminUrl('/dashboard'))).text();
  expect(page).toContain('id="process-table"');
  const app = await (await fetch(s.adminUrl('/dashboard/app.js'))).text();
  expect(app).toContain('doc.Processes');
});
