// Subscriptions that cross workgroups are answered later by the topic's
// owner: what a session does meanwhile (unsub, more subs) must still mean
// what it says.
import { ownerOf } from '../workgroups/topics';
import { connect, type TestClient } from './helpers/client';
import { startServer, type TestServer } from './helpers/server';

let server: TestServer;
beforeAll(async () => {
  server = await startServer(['--workgroups', '2', '--max-subscriptions-per-session', '4']);
});
afterAll(async () => {
  await server.stop();
});

/** Topics owned by workgroup w (different from each other). */
function topicsOwnedBy(w: number, n: number, prefix: string): string[] {
  const out: string[] = [];
  for (let i = 0; out.length < n && i < 10_000; i++) if (ownerOf(`/${prefix}/${i}`, 2) === w) out.push(`/${prefix}/${i}`);
  return out;
}

async function sessionAndRemoteTopics(prefix: string, n: number): Promise<{ c: TestClient; topics: string[] }> {
  const c = await connect(server.url());
  const wg = (await c.request({ op: 'ping' })).wg as number;
  expect([0, 1]).toContain(wg);
  return { c, topics: topicsOwnedBy(1 - wg, n, prefix) };
}

test('an unsub sent right after a sub (owner in another workgroup) wins: nothing is delivered afterwards', async () => {
  const { c, topics } = await sessionAndRemoteTopics('undo', 1);
  const [topic] = topics;
  c.send({ id: 's', op: 'sub', topics: [topic] });
  c.send({ id: 'u', op: 'unsub', topics: [topic] });
  await c.until(() => c.replies.has('s') && c.replies.has('u'), 5000, 'both replies');
  expect(c.replies.get('s')?.ok).toBe(true);
  expect(c.replies.get('u')?.ok).toBe(true);
  const publisher = await connect(server.url());
  const control = await connect(server.url());
  await control.sub([topic]);
  for (let i = 0; i < 20; i++) await publisher.pub(topic, i);
  await control.until(() => control.deliveries.length === 20, 5000, 'control deliveries');
  expect(c.deliveries.filter((d) => d.topic === topic)).toEqual([]);
  await Promise.all([c.close(), publisher.close(), control.close()]);
});

test('subscriptions still in flight count against --max-subscriptions-per-session', async () => {
  const { c, topics } = await sessionAndRemoteTopics('limit', 6);
  // Two commands of 3 new topics each, sent back to back: 6 > 4, so the second must be refused.
  c.send({ id: 'a', op: 'sub', topics: topics.slice(0, 3) });
  c.send({ id: 'b', op: 'sub', topics: topics.slice(3, 6) });
  await c.until(() => c.replies.has('a') && c.replies.has('b'), 5000, 'both replies');
  expect(c.replies.get('a')?.ok).toBe(true);
  expect((c.replies.get('b')?.error as { code: string } | undefined)?.code).toBe('TOO_MANY_SUBSCRIPTIONS');
  // Once settled, one more fits (3 + 1 = 4), two more do not.
  expect((await c.sub([topics[3]])).ok).toBe(true);
  expect(((await c.sub([topics[4]])).error as { code: string }).code).toBe('TOO_MANY_SUBSCRIPTIONS');
  await c.close();
});

test('a session closed while its subscription is in flight leaves no interest behind (no delivery to its slot successor)', async () => {
  const { c, topics } = await sessionAndRemoteTopics('gone', 1);
  const [topic] = topics;
  c.send({ id: 's', op: 'sub', topics: [topic] });
  await c.close();
  // Likely the same slot, certainly the same workgroup when the address is the same.
  const successor = await connect(server.url());
  const publisher = await connect(server.url());
  for (let i = 0; i < 10; i++) await publisher.pub(topic, i);
  const control = await connect(server.url());
  await control.sub([topic]);
  await publisher.pub(topic, 'last');
  await control.until(() => control.deliveries.length === 1, 5000, 'control delivery');
  expect(successor.deliveries).toEqual([]);
  await Promise.all([successor.close(), publisher.close(), control.close()]);
});

test('a msgpack publish crossing workgroups reaches JSON and msgpack subscribers intact (long strings, nested data)', async () => {
  const { c: jsonSub, topics } = await sessionAndRemoteTopics('convert', 1);
  const [topic] = topics;
  const wg = (await jsonSub.request({ op: 'ping' })).wg as number;
  await jsonSub.sub([topic]);
  const msgpackSub = await connect(server.url(), 'msgpack');
  await msgpackSub.sub([topic]);
  const publisher = await connect(server.url(), 'msgpack');
  const data = { text: 'é'.repeat(300) + 'x'.repeat(5000), list: [1, 2.5, 'three', { four: [4] }], flag: true };
  const ack = await publisher.pub(topic, data);
  expect(ack.ok).toBe(true);
  await jsonSub.until(() => jsonSub.deliveries.length === 1, 5000, 'json delivery');
  await msgpackSub.until(() => msgpackSub.deliveries.length === 1, 5000, 'msgpack delivery');
  expect(jsonSub.deliveries[0].data).toEqual(data);
  expect(msgpackSub.deliveries[0].data).toEqual(data);
  // The topic's owner is the other workgroup: the message crossed a ring to reach jsonSub.
  expect(wg).not.toBe(ownerOf(topic, 2));
  await Promise.all([jsonSub.close(), msgpackSub.close(), publisher.close()]);
});
