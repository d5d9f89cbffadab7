// Wildcard subscriptions (`*` one segment, `>` the rest) on a node of two
// workgroups: live delivery of topics owned by either, topics that appear
// later, unsub, limits and bad patterns, and a resume that recovers topics
// the client saw and topics it never saw.
import { ownerOf } from '../workgroups/topics';
import { connect, type TestClient } from './helpers/client';
import { startRedis } from './helpers/redis';
import { startServer, type TestServer } from './helpers/server';

let server: TestServer;
beforeAll(async () => {
  server = await startServer(['--workgroups', '2', '--max-patterns-per-session', '3']);
});
afterAll(async () => {
  await server.stop();
});

/** A topic under `prefix` owned by workgroup w. */
function ownedBy(w: number, prefix: string, from = 0): string {
  for (let i = from; ; i++) if (ownerOf(`${prefix}/${i}`, 2) === w) return `${prefix}/${i}`;
}

async function publishAll(p: TestClient, topics: string[], n: number, tag: string): Promise<void> {
  for (let i = 0; i < n; i++) for (const t of topics) expect((await p.pub(t, `${tag}${i}`)).ok).toBe(true);
}

const seqsOf = (c: TestClient, topic: string): number[] => c.deliveries.filter((d) => d.topic === topic).map((d) => d.seq);

test('a pattern delivers every matching topic of both owners with its concrete name, and nothing else', async () => {
  const sub = await connect(server.url());
  const pub = await connect(server.url());
  const a = ownedBy(0, '/px');
  const b = ownedBy(1, '/px');
  const r = await sub.sub(['/px/*']);
  expect(r.ok).toBe(true);
  const entry = (r.topics as Record<string, Record<string, unknown>>)['/px/*'];
  expect(entry.pattern).toBe(true);
  expect((entry.horizon as number[]).length).toBe(4);
  await publishAll(pub, [a, b, '/px/deeper/x', '/other/1'], 3, 'm');
  await sub.until(() => sub.deliveries.length >= 6, 5000, 'six deliveries');
  await pub.pub(a, 'last');
  await sub.until(() => sub.deliveries.length >= 7, 5000, 'the last one');
  expect(seqsOf(sub, a)).toEqual([1, 2, 3, 4]);
  expect(seqsOf(sub, b)).toEqual([1, 2, 3]);
  expect(sub.deliveries.map((d) => d.topic).filter((t) => t !== a && t !== b)).toEqual([]);
  await Promise.all([sub.close(), pub.close()]);
});

test('> matches one or more segments; an exact subscription beside it delivers once', async () => {
  const sub = await connect(server.url(), 'msgpack');
  const pub = await connect(server.url());
  expect((await sub.sub(['/gt/>', '/gt/a/b'])).ok).toBe(true);
  await publishAll(pub, ['/gt/a', '/gt/a/b', '/gt/c/d/e', '/gtx/a'], 2, 'g');
  await pub.pub('/gt/a', 'end');
  await sub.until(() => seqsOf(sub, '/gt/a').length === 3, 5000, 'three of /gt/a');
  expect(seqsOf(sub, '/gt/a/b')).toEqual([1, 2]);
  expect(seqsOf(sub, '/gt/c/d/e')).toEqual([1, 2]);
  expect(seqsOf(sub, '/gtx/a')).toEqual([]);
  // Unsubscribing the pattern keeps the exact topic.
  expect((await sub.request({ op: 'unsub', topics: ['/gt/>'] })).ok).toBe(true);
  await publishAll(pub, ['/gt/a', '/gt/a/b'], 1, 'after');
  await sub.until(() => seqsOf(sub, '/gt/a/b').length === 3, 5000, 'the exact topic');
  expect(seqsOf(sub, '/gt/a')).toEqual([1, 2, 3]);
  await Promise.all([sub.close(), pub.close()]);
});

test('bad patterns and too many patterns are refused with a clear error; the node keeps serving', async () => {
  const c = await connect(server.url());
  for (const bad of ['/a/*b', '/a/>/b', '/a//*', '/a/*/', '*', '/a/b>']) {
    const r = await c.sub([bad]);
    expect(r.ok).toBeUndefined();
    expect((r.error as { code: string }).code).toBe('BAD_TOPIC');
  }
  expect(((await c.request({ op: 'pub', topic: '/a/*', data: 1 })).error as { code: string }).code).toBe('BAD_TOPIC');
  expect((await c.sub(['/l/1/*', '/l/2/*', '/l/3/*'])).ok).toBe(true);
  const r = await c.sub(['/l/4/*']);
  expect((r.error as { code: string; message: string }).code).toBe('TOO_MANY_PATTERNS');
  expect((r.error as { message: string }).message).toMatch(/3 patterns per session/);
  // The same pattern again is no new one.
  expect((await c.sub(['/l/1/*'])).ok).toBe(true);
  const bad = await c.request({ op: 'sub', topics: ['/l/1/*'], resume: { '/l/1/*': { horizon: 'x' } } });
  expect((bad.error as { code: string }).code).toBe('BAD_REQUEST');
  const p = await connect(server.url());
  await p.pub('/l/2/x', 1);
  await c.until(() => c.deliveries.length === 1, 5000, 'a delivery');
  await Promise.all([c.close(), p.close()]);
});

test('a resume recovers missed messages of seen topics and of topics that appeared while away', async () => {
  const pub = await connect(server.url());
  const seen = [ownedBy(0, '/rs'), ownedBy(1, '/rs')];
  const fresh = [ownedBy(0, '/rs', 1000), ownedBy(1, '/rs', 1000)];
  const c1 = await connect(server.url());
  const r1 = await c1.sub(['/rs/*']);
  const horizon = ((r1.topics as Record<string, Record<string, unknown>>)['/rs/*'].horizon as number[]).slice();
  await publishAll(pub, seen, 2, 'a');
  await c1.until(() => c1.deliveries.length === 4, 5000, 'four deliveries');
  const positions: Record<string, [number, number]> = {};
  for (const d of c1.deliveries) positions[d.topic] = [d.epoch, d.seq];
  await c1.close();
  // Away: more on the seen topics, and two new topics.
  await publishAll(pub, [...seen, ...fresh], 3, 'b');
  const c2 = await connect(server.url());
  const r2 = await c2.sub(['/rs/*'], { resume: { '/rs/*': { horizon, topics: positions } } });
  expect(r2.ok).toBe(true);
  const entry = (r2.topics as Record<string, Record<string, unknown>>)['/rs/*'];
  expect(entry.recovered).toBeUndefined();
  const per = entry.topics as Record<string, Record<string, unknown>>;
  for (const t of [...seen, ...fresh]) expect(per[t]).toMatchObject({ recovered: true, replayed: 3 });
  for (const t of seen) expect(seqsOf(c2, t)).toEqual([3, 4, 5]);
  for (const t of fresh) expect(seqsOf(c2, t)).toEqual([1, 2, 3]);
  expect(c2.deliveries.every((d) => d.replay === true)).toBe(true);
  // Then live, after the replay, with no gap.
  await publishAll(pub, [...seen, ...fresh], 1, 'c');
  await c2.until(() => c2.deliveries.length === 16, 5000, 'live after resume');
  for (const t of seen) expect(seqsOf(c2, t)).toEqual([3, 4, 5, 6]);
  await Promise.all([c2.close(), pub.close()]);
});

test('a horizon the node does not know is reported lost; seen topics still resume', async () => {
  const pub = await connect(server.url());
  const t = ownedBy(1, '/hl');
  await pub.pub(t, 1);
  await pub.pub(t, 2);
  const epoch = (await pub.pub(t, 3)).epoch as number;
  const c = await connect(server.url());
  const r = await c.sub(['/hl/*'], { resume: { '/hl/*': { horizon: [1, 0, 1, 0], topics: { [t]: [epoch, 1] } } } });
  const entry = (r.topics as Record<string, Record<string, unknown>>)['/hl/*'];
  expect(entry).toMatchObject({ recovered: false, reason: 'horizon_lost' });
  expect(seqsOf(c, t)).toEqual([2, 3]);
  await Promise.all([c.close(), pub.close()]);
});

/** The node's c10m_pattern_subscriptions gauge: the sum of its workgroups' series. */
async function patternGauge(): Promise<number> {
  const text = await (await fetch(server.adminUrl('/metrics'))).text();
  const lines = text.split('\n').filter((l) => l.startsWith('c10m_pattern_subscriptions{'));
  expect(lines.length).toBe(2);
  return lines.reduce((sum, l) => sum + Number(l.split(' ').pop()), 0);
}

test('two sessions on one pattern: one leaving leaves the other served; the gauge counts both, then none', async () => {
  const before = await patternGauge();
  const a = await connect(server.url());
  const b = await connect(server.url());
  const pub = await connect(server.url());
  expect((await a.sub(['/two/*'])).ok).toBe(true);
  expect((await b.sub(['/two/*'])).ok).toBe(true);
  expect(await patternGauge()).toBe(before + 2);
  const t = ownedBy(1, '/two');
  await pub.pub(t, 1);
  await a.until(() => a.deliveries.length === 1, 5000, 'a delivery to a');
  await b.until(() => b.deliveries.length === 1, 5000, 'a delivery to b');
  expect((await a.request({ op: 'unsub', topics: ['/two/*'] })).ok).toBe(true);
  await b.close();
  const c = await connect(server.url());
  expect((await c.sub(['/two/*'])).ok).toBe(true);
  await pub.pub(t, 2);
  await pub.pub(ownedBy(0, '/two'), 1);
  await c.until(() => c.deliveries.length === 2, 5000, 'two deliveries to c');
  expect(a.deliveries.length).toBe(1);
  await c.close();
  await a.close();
  await pub.close();
  // Written as it changes; the admin port reads the blocks when asked.
  const deadline = Date.now() + 5000;
  while ((await patternGauge()) !== before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  expect(await patternGauge()).toBe(before);
});

test('--max-patterns bounds the node: past it a sub is refused, and a pattern let go of makes room', async () => {
  const small = await startServer(['--workgroups', '1', '--max-patterns', '2']);
  try {
    const a = await connect(small.url());
    const b = await connect(small.url());
    expect((await a.sub(['/n/1/*', '/n/2/*'])).ok).toBe(true);
    const r = await b.sub(['/n/3/*']);
    expect(r.error).toMatchObject({ code: 'TOO_MANY_PATTERNS' });
    expect((r.error as { message: string }).message).toMatch(/--max-patterns/);
    expect((await a.request({ op: 'unsub', topics: ['/n/1/*'] })).ok).toBe(true);
    expect((await b.sub(['/n/3/*'])).ok).toBe(true);
    await Promise.all([a.close(), b.close()]);
  } finally {
    await small.stop();
  }
});

test('--engine redis refuses patterns with a clear error (not in this version) and keeps serving topics', async () => {
  const redis = await startRedis();
  const node = await startServer(['--workgroups', '1', '--engine', 'redis', '--redis-url', redis.url]);
  try {
    const c = await connect(node.url());
    const r = await c.sub(['/px/*', '/px/a']);
    expect(r.error).toMatchObject({ code: 'BAD_REQUEST' });
    expect((r.error as { message: string }).message).toMatch(/--engine memory/);
    expect((await c.sub(['/px/a'])).ok).toBe(true);
    await c.close();
  } finally {
    await node.stop();
    await redis.stop();
  }
});
