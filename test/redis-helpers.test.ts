// The Redis test helpers (test/helpers/redis.ts) start what they claim:
// real redis-server processes on their own ports, with a password or an ACL
// user when asked, restartable on the same port without the data, and a
// Redis Cluster where sharded pub/sub works through ioredis.
import Redis, { Cluster } from 'ioredis';
import { startRedis, startRedisCluster, stopAllRedis, type TestRedis, type TestRedisCluster } from './helpers/redis';

/** A client that reports failures at once instead of retrying. */
const client = (url: string) => {
  const c = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  c.on('error', () => {});
  return c;
};

/**
 * Why a connection was refused: ioredis rejects connect() with "Connection is closed." and gives the server's reply
 * (NOAUTH, WRONGPASS) only to its 'error' event.
 */
async function refusal(url: string): Promise<string> {
  const c = client(url);
  const errors: string[] = [];
  c.on('error', (e: Error) => errors.push(e.message));
  await expect(c.connect()).rejects.toThrow(/Connection is closed/);
  c.disconnect();
  return errors.join('; ');
}

describe('standalone', () => {
  let redis: TestRedis;
  afterEach(() => redis?.stop());

  test('answers PING on a port outside the ephemeral range, and stop removes its dir', async () => {
    redis = await startRedis();
    expect(redis.port).toBeGreaterThanOrEqual(20000);
    expect(redis.port).toBeLessThanOrEqual(30999);
    expect(redis.url).toBe(`redis://127.0.0.1:${redis.port}`);
    const c = client(redis.url);
    await c.connect();
    expect(await c.ping()).toBe('PONG');
    expect(await c.config('GET', 'save')).toEqual(['save', '']);
    c.disconnect();
    const { existsSync } = await import('node:fs');
    expect(existsSync(redis.dir)).toBe(true);
    const proc = redis.proc;
    await redis.stop();
    expect(proc.exitCode !== null || proc.signalCode !== null).toBe(true);
    expect(existsSync(redis.dir)).toBe(false);
  });

  test('a second server never gets the same port', async () => {
    redis = await startRedis();
    const other = await startRedis();
    expect(other.port).not.toBe(redis.port);
    await expect(startRedis({ port: redis.port })).rejects.toThrow(/in use/);
    await other.stop();
  });

  test('a password is required (NOAUTH without it) and works in the URL', async () => {
    redis = await startRedis({ password: 's3cr:t' });
    expect(redis.url).toBe(`redis://:s3cr%3At@127.0.0.1:${redis.port}`);
    expect(await refusal(`redis://127.0.0.1:${redis.port}`)).toMatch(/NOAUTH/);
    expect(await refusal(`redis://:wrong@127.0.0.1:${redis.port}`)).toMatch(/WRONGPASS/);
    const c = client(redis.url);
    await c.connect();
    expect(await c.ping()).toBe('PONG');
    c.disconnect();
  });

  test('an ACL user logs in with its password, not with a wrong one', async () => {
    redis = await startRedis({ user: { name: 'c10m', password: 'pw' }, password: 'other' });
    expect(redis.url).toBe(`redis://c10m:pw@127.0.0.1:${redis.port}`);
    const c = client(redis.url);
    await c.connect();
    expect(await c.call('ACL', 'WHOAMI')).toBe('c10m');
    c.disconnect();
    expect(await refusal(`redis://c10m:nope@127.0.0.1:${redis.port}`)).toMatch(/WRONGPASS/);
    expect(await refusal(`redis://127.0.0.1:${redis.port}`)).toMatch(/NOAUTH/);
  });

  test('restart keeps the port and loses the data; stopFor refuses connections meanwhile', async () => {
    redis = await startRedis();
    const port = redis.port;
    await redis.command('SET', 'k', 'v');
    expect(await redis.command('GET', 'k')).toBe('v');
    const before = redis.proc.pid;
    await redis.restart();
    expect(redis.port).toBe(port);
    expect(redis.proc.pid).not.toBe(before);
    expect(await redis.command('GET', 'k')).toBeNull();

    await redis.command('SET', 'k', 'v');
    const down = redis.stopFor(500);
    await new Promise((r) => setTimeout(r, 200));
    await expect(redis.command('PING')).rejects.toThrow(/ECONNREFUSED|Connection is closed/);
    await down;
    expect(await redis.command('GET', 'k')).toBeNull();
  });

  test('pause hangs the server with its data, kill is a SIGKILL', async () => {
    redis = await startRedis();
    await redis.command('SET', 'k', 'v');
    const c = client(redis.url);
    await c.connect();
    const paused = redis.pause(400);
    const t0 = Date.now();
    expect(await c.get('k')).toBe('v');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(300);
    await paused;
    c.disconnect();
    const proc = redis.proc;
    await redis.kill();
    expect(proc.signalCode).toBe('SIGKILL');
  });

  test('clusterEnabled: a lone cluster node without slots, its bus port outside the ephemeral range', async () => {
    redis = await startRedis({ clusterEnabled: true });
    expect(String(await redis.command('CLUSTER', 'INFO'))).toMatch(/cluster_state:fail\r\ncluster_slots_assigned:0\r\n/);
    const busPort = Number(((await redis.command('CONFIG', 'GET', 'cluster-port')) as string[])[1]);
    expect(busPort).toBeGreaterThanOrEqual(20000);
    expect(busPort).toBeLessThanOrEqual(30999);
  });
});

describe('cluster', () => {
  let cluster: TestRedisCluster;
  beforeAll(async () => {
    cluster = await startRedisCluster(3);
  }, 20000);
  afterAll(() => cluster?.stop());

  test('three masters, every node cluster_state:ok, ports and bus ports outside the ephemeral range', async () => {
    expect(cluster.nodes).toHaveLength(3);
    for (const n of cluster.nodes) {
      for (const p of [n.port, n.clusterPort]) expect(p >= 20000 && p <= 30999).toBe(true);
      expect(String(await n.command('CLUSTER', 'INFO'))).toMatch(/cluster_state:ok/);
    }
    expect(await cluster.masters()).toHaveLength(3);
  });

  test('SSUBSCRIBE through Redis.Cluster receives an SPUBLISH from another client', async () => {
    const sub = new Cluster(cluster.seeds, { shardedSubscribers: true });
    const pub = new Cluster(cluster.seeds);
    try {
      const got: [string, string][] = [];
      sub.on('smessage', (ch: string, msg: string) => got.push([ch, msg]));
      // Channels in three different slots, one call each.
      const channels = ['c10m:{a}:c', 'c10m:{b}:c', 'c10m:{c}:c'];
      for (const ch of channels) await sub.ssubscribe(ch);
      for (const ch of channels) expect(await pub.spublish(ch, `hello ${ch}`)).toBe(1);
      const deadline = Date.now() + 5000;
      while (got.length < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      expect(got.sort()).toEqual(channels.map((ch) => [ch, `hello ${ch}`]).sort());
    } finally {
      sub.disconnect();
      pub.disconnect();
    }
  });
});

describe('cluster with replicas', () => {
  test('a killed master is replaced by its replica; sharded subscribers are subscribed again', async () => {
    const cluster = await startRedisCluster(3, { replicas: 1 });
    expect(cluster.nodes).toHaveLength(6);
    expect(await cluster.masters()).toHaveLength(3);
    const sub = new Cluster(cluster.seeds, { shardedSubscribers: true });
    const pub = new Cluster(cluster.seeds);
    // During the failover ioredis reports every failed attempt to reach the dead master.
    const errors: string[] = [];
    sub.on('error', (e: Error) => errors.push(e.message));
    pub.on('error', () => {});
    try {
      const got: string[] = [];
      sub.on('smessage', (_ch: string, msg: string) => got.push(msg));
      await sub.ssubscribe('c10m:{a}:c');
      expect(await pub.spublish('c10m:{a}:c', 'before')).toBe(1);
      const old = await cluster.masterOf('c10m:{a}:c');
      const t0 = Date.now();
      const promoted = await cluster.failover(old);
      const tookMs = Date.now() - t0;
      expect(promoted.port).not.toBe(old.port);
      expect(await cluster.masterOf('c10m:{a}:c')).toBe(promoted);
      expect(tookMs).toBeLessThan(15000);
      // Published until the resubscribed subscriber hears one (ioredis resubscribes on its own after the topology change).
      const deadline = Date.now() + 10000;
      let n = 0;
      while (!got.some((m) => m.startsWith('after')) && Date.now() < deadline) {
        await pub.spublish('c10m:{a}:c', `after ${n++}`).catch(() => 0);
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(got[0]).toBe('before');
      expect(got.some((m) => m.startsWith('after'))).toBe(true);
      expect(errors.length).toBeGreaterThan(0);
    } finally {
      sub.disconnect();
      pub.disconnect();
      await cluster.stop();
    }
    // ioredis 5.11 schedules a slots refresh (up to 2.5 s later) per failed attempt and does not cancel them on
    // disconnect(): let them run out so jest exits cleanly.
    await new Promise((r) => setTimeout(r, 2600));
  }, 30000);
});

afterAll(stopAllRedis);
