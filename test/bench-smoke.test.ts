// A short run of each benchmark tool and scenario, at small numbers: the
// tools connect, count exactly the messages published, and write
// well-formed results (JSON, Markdown, SVG). The figures themselves are not
// checked: this machine is shared and small.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CLI, runCli, startServer, type TestServer } from './helpers/server';

jest.setTimeout(90_000);

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'c10m-bench-'));
});
afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

function jsonLines(text: string): Record<string, unknown>[] {
  return text
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

interface Result {
  scenario: string;
  env: { cpu: string; cores: number; node: string; kernel: string; uwsNative: boolean; loadgen: { native: boolean } };
  params: Record<string, unknown>;
  columns: { key: string; label: string }[];
  targets: { name: string; figures: Record<string, unknown> }[];
  ratios: { subject?: string; peer: string; key: string; ratio: number | null }[];
  checks: { name: string; ok: boolean; detail: string }[];
  charts: { title: string; series: { name: string; points: [number, number][] }[] }[];
}

/** Runs `c10m bench run` and checks the three files it writes. */
async function runScenario(args: string[], timeoutMs = 80_000): Promise<Result> {
  const out = path.join(dir, args[0]);
  const r = await runCli(['bench', 'run', ...args, '--results-dir', out, '--no-progress'], {}, timeoutMs);
  const done = jsonLines(r.stdout).find((l) => l.msg === 'bench run done');
  expect({ code: r.code, stderr: r.stderr.slice(-2000), done: done !== undefined }).toEqual({ code: 0, stderr: expect.any(String), done: true });
  const files = (done as { files: { json: string; markdown: string; svg: string } }).files;
  expect(path.basename(files.json)).toMatch(new RegExp(`^${args[0]}-\\d{4}-\\d\\d-\\d\\dT[\\d-]+Z\\.json$`));
  const result = JSON.parse(fs.readFileSync(files.json, 'utf8')) as Result;
  expect(result.scenario).toBe(args[0]);
  expect(result.env).toMatchObject({ cores: os.cpus().length, node: process.version, uwsNative: true, loadgen: { native: true } });
  expect(result.checks.length).toBeGreaterThan(0);
  expect(result.checks.filter((c) => !c.ok)).toEqual([]);
  const md = fs.readFileSync(files.markdown, 'utf8');
  expect(md).toContain(`## ${args[0]}`);
  expect(md).toContain(`| target | ${result.columns.map((c) => c.label).join(' | ')} |`);
  for (const t of result.targets) expect(md).toContain(`| ${t.name} |`);
  const svg = fs.readFileSync(files.svg, 'utf8');
  expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
  expect(svg.trim().endsWith('</svg>')).toBe(true);
  expect(svg.match(/<polyline|<circle/g)?.length ?? 0).toBeGreaterThan(0);
  expect(svg).not.toMatch(/NaN|undefined/);
  return result;
}

describe('bench sub and bench pub against a real server', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer(['--workgroups', '1']);
  });
  afterAll(async () => {
    await server.stop();
  });

  test('benchsub counts exactly what benchpub published over WebSocket and HTTP', async () => {
    const out = path.join(dir, 'sub.json');
    const sub = spawn(
      process.execPath,
      [
        CLI,
        'bench',
        'sub',
        '--url',
        server.url('/v1/ws?encoding=msgpack'),
        '--connections',
        '40',
        '--processes',
        '2',
        '--source-addresses',
        '127.0.4.1-127.0.4.4',
        '--topic-pattern',
        '/smoke/{n}',
        '--duration',
        '6',
        '--out',
        out,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    sub.stdout.on('data', (c) => (stdout += c));
    sub.stderr.on('data', (c) => (stderr += c));
    const exited = new Promise<number | null>((resolve) => sub.on('close', resolve));
    const deadline = Date.now() + 20000;
    while (!stdout.includes('benchsub ready')) {
      if (Date.now() > deadline) throw new Error(`benchsub did not get ready: ${stderr}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const ready = jsonLines(stdout).find((l) => l.msg === 'benchsub ready');
    expect(ready).toMatchObject({ engine: 'native', ready: 40, failed: 0 });
    // 400 over WebSocket and 120 over HTTP, round robin over the 40 topics: 13 for each session.
    const ws = await runCli(
      ['bench', 'pub', '--url', `ws://127.0.0.1:${server.port}`, '--topics', '40', '--topic-pattern', '/smoke/{n}', '--rate', '2000', '--count', '400', '--size', '512'],
      {},
      20000,
    );
    expect(jsonLines(ws.stdout).find((l) => l.msg === 'benchpub done')).toMatchObject({ published: 400, errors: 0 });
    const http = await runCli(
      [
        'bench',
        'pub',
        '--url',
        `ws://127.0.0.1:${server.port}`,
        '--transport',
        'http',
        '--connections',
        '4',
        '--topics',
        '40',
        '--topic-pattern',
        '/smoke/{n}',
        '--rate',
        '1000',
        '--count',
        '120',
        '--size',
        '64',
      ],
      {},
      20000,
    );
    expect(jsonLines(http.stdout).find((l) => l.msg === 'benchpub done')).toMatchObject({ published: 120, errors: 0 });
    expect(await exited).toBe(0);
    const done = jsonLines(stdout).find((l) => l.msg === 'benchsub done') as { stats: Record<string, number>; latency: Record<string, number>; minPerSession: number; maxPerSession: number };
    expect(done.stats).toMatchObject({ connected: 40, ready: 40, messages: 520, failed: 0, protocolErrors: 0, errorReplies: 0 });
    expect([done.minPerSession, done.maxPerSession]).toEqual([13, 13]);
    expect(done.latency.count).toBe(520);
    const file = JSON.parse(fs.readFileSync(out, 'utf8')) as { stats: { messages: number }; histogram: string };
    expect(file.stats.messages).toBe(520);
    expect(file.histogram.length).toBeGreaterThan(10);
  });

  test('bench sub refuses a source address off loopback', async () => {
    const r = await runCli(['bench', 'sub', '--source-addresses', '10.0.0.1', '--duration', '1'], {}, 10000);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('not a loopback address');
  });
});

describe('bench run, each scenario at small numbers', () => {
  test('reference-scaled: every session gets exactly its messages', async () => {
    const r = await runScenario(['reference-scaled', '--connections', '300', '--duration', '3']);
    const f = r.targets[0].figures;
    expect(r.targets.map((t) => t.name)).toEqual(['c10m']);
    expect(f.delivered).toBe(f.published);
    expect(f.published as number).toBeGreaterThan(600);
    expect(r.checks.map((c) => c.name)).toEqual(expect.arrayContaining(['c10m: every session got exactly its messages']));
    expect(r.charts.map((c) => c.title)).toEqual(['Latency per second (ms)', 'Delivered messages per second']);
  });

  test('reference-scaled with --peers uws: the raw uWS peer in the same run, every message exact, latency ratios', async () => {
    const r = await runScenario(['reference-scaled', '--connections', '200', '--duration', '2', '--warmup', '0', '--peers', 'uws']);
    expect(r.targets.map((t) => t.name)).toEqual(['c10m', 'uws']);
    for (const t of r.targets) {
      expect(t.figures.delivered).toBe(t.figures.published);
      expect(t.figures.published as number).toBeGreaterThan(300);
    }
    expect(r.checks.map((c) => c.name)).toEqual(expect.arrayContaining(['uws: every session got exactly its messages']));
    expect(r.ratios.filter((x) => x.peer === 'uws').map((x) => x.key)).toEqual(expect.arrayContaining(['p99Ms']));
  });

  test('fanout: ramps the rate on c10m and the socket.io peer, with ratios', async () => {
    const r = await runScenario(['fanout', '--connections', '120', '--topics', '4', '--step-seconds', '2', '--steps', '2', '--peers', 'socketio']);
    expect(r.targets.map((t) => t.name)).toEqual(['c10m', 'socketio']);
    for (const t of r.targets) expect(t.figures.delivered).toBe((t.figures.published as number) * 30);
    expect(r.ratios.filter((x) => x.peer === 'socketio').map((x) => x.key)).toEqual([
      'sustainedRate',
      'sustainedDeliveredPerSec',
      'peakDeliveredPerSec',
      'p99AtSustainedMs',
      'cpuUsPerDelivery',
      'cpuUsPerPublish',
    ]);
  });

  test('fanout --burst: bursts on c10m at one and two workgroups and the raw uWS peer, every count exact, wg2 as a ratio to wg1', async () => {
    const r = await runScenario(['fanout', '--connections', '200', '--topics', '10', '--burst', '500', '--bursts', '2', '--workgroups', '1,2', '--peers', 'uws']);
    expect(r.targets.map((t) => t.name)).toEqual(['c10m-wg1', 'c10m-wg2', 'uws']);
    expect(r.params).toMatchObject({ mode: 'burst', burst: 500, bursts: 2, pubConnections: 4 });
    for (const t of r.targets) {
      expect(t.figures.burstDeliveredPerSec as number).toBeGreaterThan(0);
      expect(t.figures.cpuUsPerDelivery).toEqual(expect.any(Number));
    }
    expect(r.checks.every((c) => c.ok)).toBe(true);
    expect(r.checks.map((c) => c.name)).toEqual(expect.arrayContaining(['c10m-wg2: every session got exactly its messages', 'uws: every session got exactly its messages']));
    expect(r.ratios.filter((x) => x.subject === 'c10m-wg2' && x.peer === 'c10m-wg1').map((x) => x.key)).toEqual(expect.arrayContaining(['burstDeliveredPerSec', 'cpuUsPerDelivery']));
  });

  test('connect-storm: sessions/s of c10m and the ws peer', async () => {
    const r = await runScenario(['connect-storm', '--connections', '400', '--peers', 'ws']);
    expect(r.targets.map((t) => [t.name, t.figures.ready])).toEqual([
      ['c10m', 400],
      ['ws', 400],
    ]);
    for (const t of r.targets) expect(t.figures.sessionsPerSec as number).toBeGreaterThan(0);
    expect(r.ratios.find((x) => x.peer === 'ws' && x.key === 'sessionsPerSec')?.ratio).toEqual(expect.any(Number));
    for (const t of r.targets) expect(t.figures.serverCpuUsPerSession).toEqual(expect.any(Number));
  });

  test('idle-memory: RSS per session of c10m and the raw uWS peer at two sizes, plain and after a forced GC, with ratios', async () => {
    const r = await runScenario(['idle-memory', '--sizes', '100,300', '--settle-seconds', '0.5', '--idle-seconds', '0.5,1', '--peers', 'uws']);
    expect(r.targets.map((t) => t.name)).toEqual(['c10m', 'uws']);
    for (const t of r.targets) {
      expect(t.figures.sessions).toBe(300);
      expect(t.figures['perSessionKB@100']).toEqual(expect.any(Number));
      expect(t.figures['perSessionKB@300']).toEqual(expect.any(Number));
      // Both ways in one run: plain readings after the burst, then one after a GC forced through the inspector (SIGUSR1).
      for (const k of ['rssEarlyMB', 'rssLateMB', 'rssGcMB', 'heapCommittedLateMB', 'heapCommittedGcMB', 'burstCpuUsPerSession']) expect(t.figures[k]).toEqual(expect.any(Number));
    }
    expect(r.ratios.filter((x) => x.peer === 'uws').map((x) => x.key)).toEqual(expect.arrayContaining(['rssEarlyMB', 'rssLateMB', 'rssGcMB']));
    expect(r.notes.join('\n')).toMatch(/c10m: JS heaps used\/committed MB per isolate/);
  });

  test('cluster: memory node against two Redis nodes, Redis saturation steps, interest routing by bytes', async () => {
    const r = await runScenario(['cluster', '--connections', '300', '--duration', '2', '--warmup', '0', '--rates', '1000', '--step-seconds', '1']);
    expect(r.targets.map((t) => t.name)).toEqual(['memory-1node', 'redis-2nodes']);
    for (const t of r.targets) {
      expect(t.figures.delivered).toBe(t.figures.published);
      expect(t.figures.published as number).toBeGreaterThan(400);
    }
    const redis = r.targets[1].figures;
    // Every process of the Redis set-up is measured, Redis included.
    for (const k of ['nodeACpuPct', 'nodeBCpuPct', 'redisCpuPct', 'nodeARssMB', 'nodeBRssMB', 'redisRssMB']) expect(redis[k]).toEqual(expect.any(Number));
    expect(redis.p50DiffMs).toEqual(expect.any(Number));
    // Half the sessions are on node B: what was published on A reached them through Redis, exactly.
    expect(r.checks.map((c) => c.name)).toEqual(expect.arrayContaining(['redis-2nodes, fleet 2 (sessions 150-299) on node-b: every session got exactly its messages']));
    const tables = (r as unknown as { tables: { title: string; rows: { name: string; figures: Record<string, unknown> }[] }[] }).tables;
    const saturation = tables.find((t) => t.title.startsWith('Redis saturation'));
    expect(saturation?.rows.map((x) => x.name)).toEqual(expect.arrayContaining(['1 node @ 1,000/s', '2 nodes @ 1,000/s']));
    for (const row of saturation?.rows.filter((x) => x.name.includes('@')) ?? []) {
      expect(row.figures.ackedPerSec as number).toBeGreaterThan(0);
      expect(row.figures.redisCpuPct).toEqual(expect.any(Number));
    }
    const interest = tables.find((t) => t.title.startsWith('Interest routing'));
    expect(interest?.rows.map((x) => x.name)).toEqual(['0 of 3', '1 of 3', '2 of 3', '3 of 3', '1 of 1']);
    // Redis sends one copy per subscribed node: 3 of 3 costs about three times 1 of 3 (the publish replies aside).
    const bytes = Object.fromEntries((interest?.rows ?? []).map((x) => [x.name, x.figures.bytesPerMessage as number]));
    expect(bytes['1 of 3']).toBeGreaterThan(512);
    expect(bytes['3 of 3'] - bytes['0 of 3']).toBeGreaterThan(2.7 * (bytes['1 of 3'] - bytes['0 of 3']));
    expect(bytes['3 of 3'] - bytes['0 of 3']).toBeLessThan(3.3 * (bytes['1 of 3'] - bytes['0 of 3']));
  });

  test('reference-scaled with --auth none,jwt: every session on its own token, counts exact, memory after GC, jwt as a ratio to none', async () => {
    const r = await runScenario(['reference-scaled', '--connections', '200', '--duration', '2', '--warmup', '0', '--auth', 'none,jwt', '--gc-readings']);
    expect(r.targets.map((t) => [t.name, t.figures.auth])).toEqual([
      ['c10m-auth-none', 'none'],
      ['c10m-auth-jwt', 'jwt'],
    ]);
    for (const t of r.targets) {
      expect(t.figures.delivered).toBe(t.figures.published);
      expect(t.figures.memoryAfterGc).toBe(true);
      expect(t.figures.rssPerSessionBytes).toEqual(expect.any(Number));
      expect(t.figures.addedRssPerSessionBytes).toEqual(expect.any(Number));
    }
    // Every session's own token was accepted at the upgrade; their claims are one grant (no {sub} in it).
    expect(r.targets[1].figures).toMatchObject({ authAccepted: 200, authGrants: 1, errorReplies: 0 });
    expect(r.targets[0].figures).toMatchObject({ authAccepted: 0, authGrants: 0 });
    expect(r.checks.map((c) => c.name)).toEqual(expect.arrayContaining(['c10m-auth-jwt: every session got exactly its messages']));
    expect(r.ratios.filter((x) => x.subject === 'c10m-auth-jwt' && x.peer === 'c10m-auth-none').map((x) => x.key)).toEqual(expect.arrayContaining(['p99Ms', 'rssPerSessionBytes']));
  });

  test('reconnect-storm: a node killed and started again on its port; with --admission-rate the crowd is refused with tickets and comes back at the pace given', async () => {
    // No pings: the crowd's return is not spread over the node's reconnectWindowMs, so that refusals and tickets happen.
    const r = await runScenario(['reconnect-storm', '--connections', '300', '--duration', '2', '--admission-rate', '100,0', '--ping-interval-ms', '0']);
    expect(r.targets.map((t) => t.name)).toEqual(['c10m-admission100', 'c10m-admission-off']);
    const [on, off] = r.targets.map((t) => t.figures);
    // Every session back (a check), the admitted ones paced: refused with a hint and a ticket, none refused again on it.
    expect(r.checks.map((c) => c.name)).toEqual(expect.arrayContaining(['c10m-admission100: every session back after the restart', 'c10m-admission-off: every session back after the restart']));
    expect(on.refused503 as number).toBeGreaterThan(0);
    expect(on.ticketsSent as number).toBeGreaterThan(0);
    expect(on.ticketRefusals).toBe(0);
    expect(on.maxAdmittedPerSec as number).toBeLessThanOrEqual(200);
    expect(on.secondsToAllBack as number).toBeGreaterThan(1);
    expect(off).toMatchObject({ refused503: 0, ticketsSent: 0, admissionRate: 'off' });
    expect(on).toMatchObject({ pingIntervalMs: 0, windowMsAtKill: 0 });
    for (const f of [on, off]) {
      expect(f.connectErrors as number).toBeGreaterThan(0);
      expect(f.calmP99Ms).toEqual(expect.any(Number));
      expect(f.stormP99Ms).toEqual(expect.any(Number));
    }
    expect(r.ratios.filter((x) => x.subject === 'c10m-admission100' && x.peer === 'c10m-admission-off').map((x) => x.key)).toEqual(expect.arrayContaining(['secondsToAllBack', 'stormP99Ms']));
    expect(r.charts.map((c) => c.title)).toEqual(['Sessions admitted and refused per second, from the restart (s)', 'Delivery latency per second, p99 (ms)', 'Sessions ready']);
  });

  test('fanout on c10m at one and two workgroups, with and without the cache: a target each, every count exact, sessions spread', async () => {
    const r = await runScenario([
      'fanout',
      '--connections',
      '200',
      '--topics',
      '10',
      '--step-seconds',
      '2',
      '--steps',
      '2',
      '--workgroups',
      '1,2',
      '--cache-messages',
      '0,1000',
      '--pub-connections',
      '2',
      '--ramp-factor',
      '1.5',
      '--peers',
      'uws',
    ]);
    expect(r.targets.map((t) => t.name)).toEqual(['c10m-wg1-cache0', 'c10m-wg1-cache1000', 'c10m-wg2-cache0', 'c10m-wg2-cache1000', 'uws']);
    for (const t of r.targets) expect(t.figures.delivered).toBe((t.figures.published as number) * 20);
    const spread = r.targets.find((t) => t.name === 'c10m-wg2-cache0')?.figures.sessionsPerWorkgroup as string;
    expect(
      spread
        .split('/')
        .map(Number)
        .reduce((a, b) => a + b, 0),
    ).toBe(200);
    expect(spread.split('/')).toHaveLength(2);
    const subjects = [...new Set((r.ratios as { subject?: string }[]).map((x) => x.subject))];
    expect(subjects).toEqual(['c10m-wg1-cache0', 'c10m-wg1-cache1000', 'c10m-wg2-cache0', 'c10m-wg2-cache1000']);
  });
});
