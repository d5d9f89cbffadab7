// `serve --engine redis` at start: every --redis-url form c10m cannot use
// is refused with one line and exit 2, a Redis that refuses the credentials
// too; a Redis that is not there is waited for (--redis-wait-seconds), with
// a warning each attempt, then exit 1; one that comes up within the wait
// lets the node start. The memory engine never connects. Real redis-server
// processes on random ports, nothing mocked.
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import path from 'node:path';
import { parseRedisUrl, redisConnectionOptions } from '../shm/redis-url';
import { startRedis, type TestRedis } from './helpers/redis';
import { CLI, runCli, startServer } from './helpers/server';

const PASSWORD = 'pw-s3cret';

/** A port in 20000-30999 that nothing listens on now (it is bound and released once). */
async function freeFixedPort(): Promise<number> {
  for (;;) {
    const port = 20000 + Math.floor(Math.random() * 11000);
    const ok = await new Promise<boolean>((resolve) => {
      const s = createServer();
      s.once('error', () => resolve(false));
      s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
    });
    if (ok) return port;
  }
}

/** One line on stderr, no stack trace, the password nowhere. */
function expectOneCleanLine(stderr: string): void {
  expect(stderr.trim().split('\n')).toHaveLength(1);
  expect(stderr).not.toMatch(/^\s+at .*:\d+/m);
  expect(stderr).not.toContain(PASSWORD);
}

// Stopped by the helper's afterAll.
let redis: TestRedis;

beforeAll(async () => {
  redis = await startRedis({ password: PASSWORD });
});

describe('--redis-url forms c10m cannot use exit 2 with one line naming the URL', () => {
  test.each([
    ['http://127.0.0.1:6379', /redis URL "http:\/\/127\.0\.0\.1:6379" has the scheme http:\/\/: only redis:\/\/ and rediss:\/\/ \(TLS\) are supported/],
    ['127.0.0.1:6379', /redis URL "127\.0\.0\.1:6379" must start with redis:\/\/ or rediss:\/\//],
    [`redis://u:${PASSWORD}@:6379`, /redis URL "redis:\/\/u:\*\*\*@:6379" has no host/],
    ['redis://127.0.0.1:99999', /redis URL "redis:\/\/127\.0\.0\.1:99999" has the port "99999": expected a whole number from 1 to 65535/],
    ['redis://127.0.0.1:63x9', /has the port "63x9"/],
    ['redis://127.0.0.1:6379/zero', /has the path "\/zero": the only path allowed is a database number/],
    ['redis://127.0.0.1:6379/0?tls=true', /has query parameters/],
    ['redis://::1:6379', /write an IPv6 address in brackets/],
    [
      'redis://10.0.0.1:7000,redis://10.0.0.2:7000/3',
      /redis URL "redis:\/\/10\.0\.0\.2:7000\/3" names database 3, but Redis Cluster has only database 0: remove \/3 \(several URLs mean Redis Cluster\)/,
    ],
    [`redis://:${PASSWORD}@10.0.0.1:7000,rediss://:${PASSWORD}@10.0.0.2:7000`, /mix redis:\/\/ and rediss:\/\//],
  ])('%s', async (url, message) => {
    const r = await runCli(['serve', '--engine', 'redis', '--redis-url', url]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^c10m: bad configuration: --redis-url: /);
    expect(r.stderr).toMatch(message);
    expectOneCleanLine(r.stderr);
    expect(r.stdout).toBe('');
  });
});

test.each([
  [['--redis-url', 'redis://127.0.0.1:6379/2', '--redis-cluster'], /Redis Cluster has only database 0: remove \/2 \(--redis-cluster is true\)/],
  [['--redis-prefix', 'my prefix'], /--redis-prefix: expected 1 to 64 letters, digits, -, _, : or \., got "my prefix"/],
  [['--engine', 'disk'], /--engine/],
  [['--redis-wait-seconds', '-1'], /--redis-wait-seconds: -1 is below the minimum 0/],
])('serve %j exits 2 with one line', async (args, message) => {
  const r = await runCli(['serve', ...args]);
  expect(r.code).toBe(2);
  expect(r.stderr).toMatch(message);
  expectOneCleanLine(r.stderr);
});

test('several URLs with Redis Cluster mode turned off in the environment exit 2', async () => {
  const r = await runCli(['serve', '--engine', 'redis', '--redis-url', 'redis://10.0.0.1:7000,redis://10.0.0.2:7000'], { C10M_REDIS_CLUSTER: 'false' });
  expect(r.code).toBe(2);
  expect(r.stderr).toMatch(/2 redis URLs given .* without Redis Cluster mode: a standalone Redis takes one URL; .*\(C10M_REDIS_CLUSTER is false\)/);
  expectOneCleanLine(r.stderr);
});

test.each([
  [`redis://:wrong@127.0.0.1:PORT`, (p: number) => `c10m: could not start: redis at redis://:***@127.0.0.1:${p} rejected the credentials: WRONGPASS`],
  [`redis://bob:${PASSWORD}x@127.0.0.1:PORT`, (p: number) => `c10m: could not start: redis at redis://bob:***@127.0.0.1:${p} rejected the credentials: WRONGPASS`],
  [`redis://127.0.0.1:PORT`, (p: number) => `c10m: could not start: redis at redis://127.0.0.1:${p} needs credentials and the URL gives none: NOAUTH`],
])('a Redis that refuses %s: exit 2 at once, with why', async (url, expected) => {
  const started = Date.now();
  const r = await runCli(['serve', '--engine', 'redis', '--redis-url', url.replace('PORT', String(redis.port)), '--port', '0', '--admin-port', '0', '--redis-wait-seconds', '20']);
  expect(r.code).toBe(2);
  expect(r.stderr.startsWith(expected(redis.port))).toBe(true);
  expectOneCleanLine(r.stderr);
  // Credentials are not waited out.
  expect(Date.now() - started).toBeLessThan(10_000);
  expect(r.stdout).not.toMatch(/waiting for redis|c10m listening/);
});

test('the environment keys are read: C10M_ENGINE and C10M_REDIS_URL with a wrong password exit 2', async () => {
  const r = await runCli(['serve', '--port', '0', '--admin-port', '0'], { C10M_ENGINE: 'redis', C10M_REDIS_URL: `redis://:nope@127.0.0.1:${redis.port}` });
  expect(r.code).toBe(2);
  expect(r.stderr).toMatch(/rejected the credentials: WRONGPASS/);
});

test('--redis-cluster against a standalone Redis exits 2', async () => {
  const r = await runCli(['serve', '--engine', 'redis', '--redis-url', `redis://:${PASSWORD}@127.0.0.1:${redis.port}`, '--redis-cluster', '--port', '0', '--admin-port', '0']);
  expect(r.code).toBe(2);
  expect(r.stderr).toMatch(/is a standalone Redis, not a Redis Cluster node: drop --redis-cluster/);
  expectOneCleanLine(r.stderr);
});

test('a database the Redis does not have exits 2', async () => {
  const r = await runCli(['serve', '--engine', 'redis', '--redis-url', `redis://:${PASSWORD}@127.0.0.1:${redis.port}/500`, '--port', '0', '--admin-port', '0']);
  expect(r.code).toBe(2);
  expect(r.stderr).toMatch(/has no database 500/);
});

test('the config-file keys are read: engine, redisUrl (a list) and redisPrefix; the node starts once Redis answers, the password masked', async () => {
  // In the Redis temp dir: removed with it.
  const file = path.join(redis.dir, 'c10m.json');
  writeFileSync(file, JSON.stringify({ engine: 'redis', redisUrl: [`redis://:${PASSWORD}@127.0.0.1:${redis.port}/0`], redisPrefix: 'app-1:' }));
  const s = await startServer(['--config', file, '--workgroups', '1']);
  try {
    const reachable = s.logs.find((l) => l.msg === 'redis reachable' && l.role === 'control');
    expect(reachable).toMatchObject({ url: `redis://:***@127.0.0.1:${redis.port}/0`, redisVersion: expect.stringMatching(/^[7-9]\.|^\d\d\./), attempts: 1, cluster: false, prefix: 'app-1:' });
    const listening = s.logs.find((l) => l.msg === 'c10m listening');
    expect(listening).toMatchObject({ engine: 'redis', redis: [`redis://:***@127.0.0.1:${redis.port}/0`] });
    expect(s.logs.findIndex((l) => l === reachable)).toBeLessThan(s.logs.findIndex((l) => l === listening));
    expect(JSON.stringify(s.logs)).not.toContain(PASSWORD);
  } finally {
    expect(await s.stop()).toBe(0);
  }
});

test('Redis not running: a warning each attempt for --redis-wait-seconds 1, then exit 1 with one line', async () => {
  const port = await freeFixedPort();
  const started = Date.now();
  const r = await runCli(['serve', '--engine', 'redis', '--redis-url', `redis://127.0.0.1:${port}`, '--redis-wait-seconds', '1', '--port', '0', '--admin-port', '0', '--log-format', 'json']);
  const ms = Date.now() - started;
  expect(r.code).toBe(1);
  expect(r.stderr).toMatch(
    new RegExp(`^c10m: could not start: redis at redis://127\\.0\\.0\\.1:${port} is not reachable after waiting 1 s \\(\\d+ attempts; --redis-wait-seconds\\): connection refused\\n$`),
  );
  const warnings = r.stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => l.level === 40 && typeof l.msg === 'string' && l.msg.startsWith('waiting for redis'));
  expect(warnings.length).toBeGreaterThanOrEqual(2);
  expect(warnings[0].msg).toBe(`waiting for redis at redis://127.0.0.1:${port} (attempt 1): connection refused`);
  expect(warnings[1].msg).toBe(`waiting for redis at redis://127.0.0.1:${port} (attempt 2): connection refused`);
  expect(r.stdout).not.toMatch(/c10m listening/);
  // It waited the second, and not much longer (node start-up included).
  expect(ms).toBeGreaterThanOrEqual(1000);
  expect(ms).toBeLessThan(8000);
});

test('Redis that comes up within --redis-wait-seconds: the node waits, then starts', async () => {
  const port = await freeFixedPort();
  const serverStarting = startServer(['--engine', 'redis', '--redis-url', `redis://127.0.0.1:${port}`, '--redis-wait-seconds', '12', '--workgroups', '1']);
  await new Promise((r) => setTimeout(r, 1500));
  const late = await startRedis({ port });
  try {
    const s = await serverStarting;
    try {
      const waits = s.logs.filter((l) => typeof l.msg === 'string' && l.msg.startsWith(`waiting for redis at redis://127.0.0.1:${port} (attempt `));
      expect(waits.length).toBeGreaterThanOrEqual(1);
      const reachable = s.logs.find((l) => l.msg === 'redis reachable' && l.role === 'control');
      expect(reachable?.attempts).toBe(waits.length + 1);
      expect(s.logs.some((l) => l.msg === 'c10m listening')).toBe(true);
    } finally {
      await s.stop();
    }
  } finally {
    await late.stop();
  }
});

test('--engine memory never connects to --redis-url', async () => {
  let connections = 0;
  const trap: Server = createServer((sock) => {
    connections++;
    sock.destroy();
  });
  await new Promise<void>((r) => trap.listen(0, '127.0.0.1', () => r()));
  const port = (trap.address() as { port: number }).port;
  try {
    const s = await startServer(['--engine', 'memory', '--redis-url', `redis://:${PASSWORD}@127.0.0.1:${port}`, '--redis-wait-seconds', '0', '--workgroups', '1']);
    try {
      await new Promise((r) => setTimeout(r, 300));
      expect(connections).toBe(0);
      expect(s.logs.find((l) => l.msg === 'c10m listening')).toMatchObject({ engine: 'memory' });
      expect(s.logs.some((l) => typeof l.msg === 'string' && /redis/.test(l.msg))).toBe(false);
    } finally {
      await s.stop();
    }
  } finally {
    trap.close();
  }
});

test('a SIGTERM while waiting for Redis ends the wait at once, exit 0', async () => {
  const port = await freeFixedPort();
  const proc = spawn(
    process.execPath,
    [CLI, 'serve', '--engine', 'redis', '--redis-url', `redis://127.0.0.1:${port}`, '--redis-wait-seconds', '60', '--port', '0', '--admin-port', '0', '--log-format', 'json'],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let stdout = '';
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  await new Promise<void>((resolve) =>
    proc.stdout.on('data', (c: Buffer) => {
      stdout += c.toString();
      if (stdout.includes('waiting for redis')) resolve();
    }),
  );
  const signalled = Date.now();
  proc.kill('SIGTERM');
  expect(await exited).toBe(0);
  expect(Date.now() - signalled).toBeLessThan(3000);
  expect(stdout).toMatch(/"msg":"stopped before start"/);
});

describe('Redis Cluster mode, against a one-node cluster', () => {
  let node: TestRedis;
  beforeAll(async () => {
    node = await startRedis({ clusterEnabled: true });
  });
  afterAll(async () => {
    await node?.stop();
  });
  const serve = (extra: string[]) => runCli(['serve', '--engine', 'redis', '--redis-url', `redis://127.0.0.1:${node.port}`, '--port', '0', '--admin-port', '0', '--log-format', 'json', ...extra]);

  test('a cluster node without --redis-cluster exits 2', async () => {
    const r = await serve([]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/is a Redis Cluster node: add --redis-cluster/);
    expectOneCleanLine(r.stderr);
  });

  test('cluster_state not ok is waited for, then exit 1; once ok, the node starts', async () => {
    const r = await serve(['--redis-cluster', '--redis-wait-seconds', '1']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/is not reachable after waiting 1 s \(\d+ attempts?; --redis-wait-seconds\): says cluster_state:fail/);
    // Every slot to the one node: the cluster becomes ok.
    expect(await node.command('CLUSTER', 'ADDSLOTSRANGE', '0', '16383')).toBe('OK');
    const s = await startServer(['--engine', 'redis', '--redis-url', `redis://127.0.0.1:${node.port}`, '--redis-cluster', '--redis-wait-seconds', '10', '--workgroups', '1']);
    try {
      expect(s.logs.find((l) => l.msg === 'redis reachable' && l.role === 'control')).toMatchObject({ cluster: true, url: `redis://127.0.0.1:${node.port}` });
    } finally {
      await s.stop();
    }
  });
});

describe('redisConnectionOptions: the URLs as ioredis options', () => {
  test('standalone, with an ACL user, a %-encoded password, TLS and a database', () => {
    expect(redisConnectionOptions(['rediss://app:p%40ss%3Aw@redis.example.com:6380/2'], false)).toEqual([
      { host: 'redis.example.com', port: 6380, username: 'app', password: 'p@ss:w', tls: {}, db: 2 },
    ]);
  });
  test('defaults: port 6379, no credentials, no TLS, no database', () => {
    expect(parseRedisUrl('redis://127.0.0.1')).toEqual({ host: '127.0.0.1', port: 6379 });
    expect(parseRedisUrl('REDIS://[::1]:7000/')).toEqual({ host: '::1', port: 7000 });
    expect(parseRedisUrl('redis://:only-a-password@h')).toEqual({ host: 'h', port: 6379, password: 'only-a-password' });
  });
  test('cluster seeds: /0 is dropped (ioredis Cluster refuses SELECT)', () => {
    expect(redisConnectionOptions(['redis://:pw@a:7000/0', 'redis://:pw@b:7001'], true)).toEqual([
      { host: 'a', port: 7000, password: 'pw' },
      { host: 'b', port: 7001, password: 'pw' },
    ]);
  });
  test('cluster seeds with different credentials are refused', () => {
    expect(() => redisConnectionOptions(['redis://:pw@a:7000', 'redis://:other@b:7001'], true)).toThrow(/"redis:\/\/:\*\*\*@a:7000" and "redis:\/\/:\*\*\*@b:7001" have different credentials/);
  });
});
