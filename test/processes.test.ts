// `c10m serve --processes N` (issue 18), end to end: a real redis-server,
// real node processes under the top supervisor, real sockets. The option's
// checks (exit 2); topics meeting across processes through Redis; the one
// admin port (sum and each process); the IP hash spanning the sockets of
// every process; a process killed with SIGKILL under a few hundred SDK
// sessions: restarted alone, its sessions back and resumed without loss,
// the other processes' sessions untouched.
import WebSocket from 'ws';
import { connect as sdkConnect, type C10mClient } from '../sdk';
import type { WebSocketConstructor } from '../sdk/transport';
import { connect, type TestClient } from './helpers/client';
import { sleep } from './helpers/guaranteed';
import { publishRounds } from './helpers/sdk';
import { startRedis, stopAllRedis, type TestRedis } from './helpers/redis';
import { runCli, startServer, type TestServer } from './helpers/server';
import { jmx, metricSum, sourceAddresses, waitFor } from './helpers/workgroups';

jest.setTimeout(180_000);

const servers: TestServer[] = [];
const clients: TestClient[] = [];
const sdks: C10mClient[] = [];

afterEach(async () => {
  for (const c of sdks.splice(0)) c.close();
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await Promise.all(servers.splice(0).map((s) => s.stop()));
  await stopAllRedis();
});

async function node(redis: TestRedis, processes: number, extra: string[] = []): Promise<TestServer> {
  const s = await startServer(['--engine', 'redis', '--redis-url', redis.url, '--processes', String(processes), ...extra]);
  servers.push(s);
  return s;
}

interface JmxProcess {
  Id: number;
  Pid: number;
  Listening: boolean;
  Restarts: number;
  ConnectedSessions: number;
  RSS: number | null;
}

async function processesOf(s: TestServer): Promise<JmxProcess[]> {
  return (await jmx(s)).Processes as JmxProcess[];
}

/** The sessions of each process, once the reports add up to `total` (they are at most a second old). */
async function sessionsPerProcess(s: TestServer, total: number): Promise<number[]> {
  let per: number[] = [];
  await waitFor(
    async () => {
      per = (await processesOf(s)).map((p) => p.ConnectedSessions);
      return per.reduce((a, b) => a + b, 0) === total;
    },
    15_000,
    `${total} sessions in the processes' reports`,
  );
  return per;
}

/** A WebSocket class whose connections leave from `address` (so that the IP hash places them). */
function wsFrom(address: string): WebSocketConstructor {
  class From extends WebSocket {
    constructor(url: string, protocols?: string | string[]) {
      super(url, protocols, { localAddress: address });
    }
  }
  return From as unknown as WebSocketConstructor;
}

test('--processes is checked: a bad value, or more than one process without the Redis engine, exits 2 with one clear line', async () => {
  const base = ['serve', '--port', '0', '--admin-port', '0', '--host', '127.0.0.1'];
  const noRedis = await runCli([...base, '--processes', '2']);
  expect(noRedis.code).toBe(2);
  expect(noRedis.stderr).toMatch(/--processes 2 needs --engine redis/);
  const env = await runCli(base, { C10M_PROCESSES: '3' });
  expect(env.code).toBe(2);
  expect(env.stderr).toMatch(/C10M_PROCESSES 3 needs --engine redis/);
  for (const bad of ['0', 'many', '1.5', '2000']) {
    const r = await runCli([...base, '--processes', bad]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--processes/);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
  }
  // auto at a million sessions needs many processes here (20,000 descriptors each): it says how many and why.
  const auto = await runCli([...base, '--processes', 'auto', '--max-sessions', '1000000']);
  expect(auto.code).toBe(2);
  expect(auto.stderr).toMatch(/--processes auto: --max-sessions 1000000 \/ \d+ sessions per process .* = \d+ processes, needs --engine redis/);
});

test('--processes auto for few sessions is one process, the memory engine will do, and the log says why', async () => {
  const s = await startServer(['--processes', 'auto', '--max-sessions', '1000']);
  servers.push(s);
  const line = await s.waitForLog((l) => typeof l.auto === 'string');
  expect(line.auto).toMatch(/^--max-sessions 1000 \/ \d+ sessions per process .* = 1 process$/);
  const c = await connect(s.url());
  clients.push(c);
  expect((await c.sub(['/p/auto'])).ok).toBe(true);
});

test('two processes: topics meet across them, one admin port shows each process and the sum, and one client address lands in one process', async () => {
  const redis = await startRedis();
  const s = await node(redis, 2);
  const ready = await fetch(s.adminUrl('/readyz'));
  expect(ready.status).toBe(200);
  expect(await ready.json()).toMatchObject({ ready: true, processes: 2, processesListening: 2, workgroups: 2 });
  expect((await fetch(s.adminUrl('/healthz'))).status).toBe(200);
  const procs = await processesOf(s);
  expect(procs.map((p) => p.Id)).toEqual([0, 1]);
  expect(new Set(procs.map((p) => p.Pid)).size).toBe(2);
  // One client address: all its sessions in one process (the IP hash spans both processes' sockets).
  const addresses = sourceAddresses(8, 300);
  const seen = new Set<number>();
  let total = 0;
  let before = [0, 0];
  for (const address of addresses) {
    for (let i = 0; i < 4; i++) clients.push(await connect(s.url(), 'json', { localAddress: address }));
    total += 4;
    const now = await sessionsPerProcess(s, total);
    const delta = now.map((n, i) => n - before[i]);
    expect(delta.sort()).toEqual([0, 4]);
    seen.add(now.findIndex((n, i) => n - before[i] === 4));
    before = now;
  }
  // Eight addresses over two processes: both got some (1 - 2^-7 of the time for a fair hash; these eight do).
  expect([...seen].sort()).toEqual([0, 1]);
  // A publish on a session of one process reaches subscribers in both.
  const inP = new Map<number, TestClient>();
  before = await sessionsPerProcess(s, total);
  for (const address of sourceAddresses(16, 400)) {
    if (inP.size === 2) break;
    const c = await connect(s.url(), 'json', { localAddress: address });
    clients.push(c);
    total++;
    const now = await sessionsPerProcess(s, total);
    const p = now.findIndex((n, i) => n - before[i] === 1);
    before = now;
    if (!inP.has(p)) inP.set(p, c);
  }
  expect([...inP.keys()].sort()).toEqual([0, 1]);
  const sub0 = inP.get(0) as TestClient;
  const sub1 = inP.get(1) as TestClient;
  expect((await sub0.sub(['/p/meet'])).ok).toBe(true);
  expect((await sub1.sub(['/p/meet'])).ok).toBe(true);
  for (let i = 1; i <= 20; i++) expect((await (i % 2 ? sub0 : sub1).pub('/p/meet', { i })).ok).toBe(true);
  const seqs = (c: TestClient) => c.deliveries.filter((d) => d.topic === '/p/meet').map((d) => d.seq);
  await waitFor(() => seqs(sub0).length === 20 && seqs(sub1).length === 20, 10_000, 'both subscribers to get all 20');
  expect(seqs(sub0)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
  expect(seqs(sub1)).toEqual(seqs(sub0));
  // /metrics: one series per process, with the node's sum beside the process families.
  await waitFor(async () => (await metricSum(s, 'c10m_sessions')) === total, 10_000, '/metrics sessions');
  const text = await (await fetch(s.adminUrl('/metrics'))).text();
  expect(text).toMatch(/^c10m_sessions\{process="0",transport="websocket"\} \d+$/m);
  expect(text).toMatch(/^c10m_sessions\{process="1",transport="websocket"\} \d+$/m);
  expect(text).not.toMatch(/^c10m_sessions\{workgroup=/m);
  expect(text).toMatch(/^c10m_processes 2$/m);
  expect(text).toMatch(/^c10m_processes_listening 2$/m);
  expect(text).toMatch(/^c10m_process_resident_memory_bytes\{process="1"\} [1-9]\d+$/m);
  expect(text).toMatch(/^c10m_publish_to_write_latency_seconds_count \d+$/m);
  const doc = await jmx(s);
  expect(doc.ConnectedSessions).toBe(total);
  expect(doc.WorkgroupCount).toBe(2);
  expect((await fetch(s.adminUrl('/dashboard'))).status).toBe(200);
});

test('a process killed with SIGKILL under 300 sessions is restarted alone: its sessions come back and resume without loss, the others see nothing', async () => {
  const redis = await startRedis();
  const s = await node(redis, 3);
  const topics = Array.from({ length: 10 }, (_, i) => `/p/kill/${i}`);
  const SESSIONS = 300;
  const addresses = sourceAddresses(60, 700);
  const received: number[][] = [];
  let gaps = 0;
  const ready: Promise<unknown>[] = [];
  for (let i = 0; i < SESSIONS; i++) {
    const got: number[] = [];
    received.push(got);
    const c = sdkConnect(s.url(), { encoding: i % 2 === 0 ? 'json' : 'msgpack', WebSocket: wsFrom(addresses[i % addresses.length]) });
    c.on('gap', () => gaps++);
    sdks.push(c);
    ready.push(c.subscribe(topics[i % topics.length], (m) => got.push(m.seq)).ready);
    if (i % 100 === 99) await Promise.all(ready.splice(0));
  }
  await Promise.all(ready);
  const per = await sessionsPerProcess(s, SESSIONS);
  // The victim: the process with the most sessions (every process has some: 60 addresses over 3).
  expect(per.every((n) => n > 0)).toBe(true);
  const victim = per.indexOf(Math.max(...per));
  const before = await processesOf(s);
  const publisher = sdkConnect(s.url(), { WebSocket: wsFrom('127.0.0.1') });
  sdks.push(publisher);
  const PER_TOPIC = 60;
  const publishing = publishRounds(publisher, topics, PER_TOPIC);
  await waitFor(() => publishing.published() >= 10 * topics.length, 20_000, 'some publishes before the kill');
  process.kill(before[victim].Pid, 'SIGKILL');
  await publishing.done;
  await waitFor(() => received.every((r) => r.length >= PER_TOPIC), 60_000, `every session to get all ${PER_TOPIC} of its topic`);
  await sleep(300);
  for (const r of received) expect(r).toEqual(Array.from({ length: PER_TOPIC }, (_, i) => i + 1));
  expect(gaps).toBe(0);
  expect(sdks.reduce((n, c) => n + c.stats.duplicates, 0)).toBe(0);
  // Exactly the victim's sessions reconnected (the publisher is on 127.0.0.1, wherever that hashes); the others kept their one connection.
  const reconnected = sdks.slice(0, SESSIONS).filter((c) => c.stats.connections > 1).length;
  expect(reconnected).toBe(per[victim]);
  // Restarted alone: a new pid for the victim, the same for the others; the node ready again.
  await waitFor(async () => (await fetch(s.adminUrl('/readyz'))).status === 200, 30_000, 'the node ready again');
  const after = await processesOf(s);
  after.forEach((p, i) => {
    expect(p.Restarts).toBe(i === victim ? 1 : 0);
    if (i === victim) expect(p.Pid).not.toBe(before[i].Pid);
    else expect(p.Pid).toBe(before[i].Pid);
  });
  expect(await metricSum(s, 'c10m_process_restarts_total')).toBe(1);
});

/** Whether a process of this pid runs (signal 0). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

test('SIGTERM drains every node process and exits 0; a top killed with SIGKILL leaves no node process behind', async () => {
  const redis = await startRedis();
  const a = await node(redis, 2);
  const pidsA = (await processesOf(a)).map((p) => p.Pid);
  expect(await a.stop()).toBe(0);
  servers.splice(servers.indexOf(a), 1);
  expect(pidsA.filter(alive)).toEqual([]);
  const b = await node(redis, 2);
  const pidsB = (await processesOf(b)).map((p) => p.Pid);
  b.proc.kill('SIGKILL');
  // They see the IPC channel close, drain and end.
  await waitFor(() => pidsB.every((p) => !alive(p)), 20_000, 'the node processes to end after their top');
});
