// A node killed and restarted (in-memory engine) starts new epochs; what it
// took before its clients came back is cached, and a client resuming from the
// old epoch gets it (issue 15: "after a kill, 152 published before the
// subscriber returned were never delivered although cached"). End to end:
// real servers, the SDK over real sockets, SIGKILL.
//
// The subscribers reach the node through a TCP forwarder (their one URL), so
// that they can be held off while the publisher fills the restarted node: the
// restarted node listens on a port of its own, and the forwarder sends new
// connections there, as a restarted node behind the same address would get them.
import { connect, type C10mClient } from '../sdk/client';
import type { Encoding } from '../sdk/encoding';
import type { Gap } from '../sdk/stream';
import { nextEvent, until } from './helpers/sdk';
import { startServer, type TestServer } from './helpers/server';
import { TcpProxy } from './helpers/tcp-proxy';
import { topicsOwnedBy } from './helpers/workgroups';

jest.setTimeout(60_000);

const WORKGROUPS = 2;
/** Published into the restarted node before the subscribers come back (the figure). */
const N = 152;
/** Seen live before the kill. */
const SEEN = 5;

const clients: C10mClient[] = [];
const servers: TestServer[] = [];
let proxy: TcpProxy | null = null;

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await proxy?.close();
  proxy = null;
  await Promise.all(servers.splice(0).map((s) => s.stop()));
});

function client(url: string, encoding: Encoding): C10mClient {
  const c = connect(url, { encoding, reconnect: { initialDelayMs: 20, maxDelayMs: 200, factor: 2 } });
  clients.push(c);
  return c;
}

async function server(): Promise<TestServer> {
  const s = await startServer(['--workgroups', String(WORKGROUPS)]);
  servers.push(s);
  return s;
}

/** What a subscriber saw of a topic, in order: messages as [epoch, seq, data], gaps as their fields. */
type Seen = ['msg', number, number, unknown] | ['gap', Gap];

/** Long enough that the 152 replayed to another workgroup take more than one REPLAY_BATCH record (32 KiB). */
const payload = (phase: string, i: number) => ({ phase, i, pad: 'x'.repeat(300) });

test(`SIGKILL, a new node, ${N} published before the subscribers return: each gets one gap for the old epoch, then all ${N}, in order, once, then live`, async () => {
  // One topic owned by each workgroup: whichever workgroup a session lands in, one replay is local and one crosses a ring.
  const topics = [...topicsOwnedBy(0, WORKGROUPS, 1, 'restart/a'), ...topicsOwnedBy(1, WORKGROUPS, 1, 'restart/b')];
  const a = await server();
  proxy = new TcpProxy(a.port);
  await proxy.listen();
  const url = `ws://127.0.0.1:${proxy.port}`;

  const subscribers = (['json', 'msgpack'] as const).map((encoding) => {
    const c = client(url, encoding);
    const seen = new Map<string, Seen[]>(topics.map((t) => [t, []]));
    c.on('gap', (g) => seen.get(g.topic)?.push(['gap', g]));
    return { c, seen, encoding };
  });
  const oldEpochs = new Map<string, number>();
  for (const s of subscribers) {
    for (const topic of topics) {
      const at = await s.c.subscribe(topic, (m) => s.seen.get(topic)?.push(['msg', m.epoch, m.seq, m.data])).ready;
      expect(at.seq).toBe(0);
      oldEpochs.set(topic, at.epoch);
    }
  }
  const pubA = client(a.url(''), 'json');
  for (const topic of topics) for (let i = 1; i <= SEEN; i++) await pubA.publish(topic, payload('before', i));
  const count = (s: (typeof subscribers)[number], topic: string) => (s.seen.get(topic) as Seen[]).filter((e) => e[0] === 'msg').length;
  await until(() => subscribers.every((s) => topics.every((t) => count(s, t) === SEEN)), `${SEEN} live deliveries per topic`, 15_000);
  await pubA.close();

  // The node dies without a word; its subscribers find the door shut until the publisher is done.
  const dropped = subscribers.map((s) => nextEvent(s.c, 'disconnected'));
  proxy.refusing = true;
  a.proc.kill('SIGKILL');
  expect((await Promise.all(dropped)).map((d) => d.code)).toEqual([1006, 1006]);
  const b = await server();
  proxy.targetPort = b.port;
  const pubB = client(b.url(''), 'msgpack');
  const newEpochs = new Map<string, number>();
  for (const topic of topics) {
    const acks = await Promise.all(Array.from({ length: N }, (_, i) => pubB.publish(topic, payload('while away', i + 1))));
    expect(acks.map((k) => k.seq)).toEqual(Array.from({ length: N }, (_, i) => i + 1));
    expect(acks[0].epoch).not.toBe(oldEpochs.get(topic));
    newEpochs.set(topic, acks[0].epoch);
  }

  const back = subscribers.map((s) => nextEvent(s.c, 'connected', (e) => e.reconnect));
  proxy.refusing = false;
  await Promise.all(back);
  await until(() => subscribers.every((s) => topics.every((t) => count(s, t) === SEEN + N)), `${N} replayed per topic`, 15_000);
  // Live after the resume.
  for (const topic of topics) await pubB.publish(topic, payload('after', 1));
  await until(() => subscribers.every((s) => topics.every((t) => count(s, t) === SEEN + N + 1)), 'the live message after the resume', 15_000);

  for (const s of subscribers) {
    for (const topic of topics) {
      const oldEpoch = oldEpochs.get(topic) as number;
      const newEpoch = newEpochs.get(topic) as number;
      expect({ encoding: s.encoding, topic, seen: s.seen.get(topic) }).toEqual({
        encoding: s.encoding,
        topic,
        seen: [
          ...Array.from({ length: SEEN }, (_, i): Seen => ['msg', oldEpoch, i + 1, payload('before', i + 1)]),
          ['gap', { topic, reason: 'epoch_mismatch', epoch: newEpoch, fromSeq: null, toSeq: null, lastEpoch: oldEpoch, lastSeq: SEEN }],
          ...Array.from({ length: N }, (_, i): Seen => ['msg', newEpoch, i + 1, payload('while away', i + 1)]),
          ['msg', newEpoch, N + 1, payload('after', 1)],
        ],
      });
    }
    expect(s.c.stats).toMatchObject({ gaps: topics.length, duplicates: 0, delivered: topics.length * (SEEN + N + 1) });
    expect(s.c.positions()).toEqual(Object.fromEntries(topics.map((t) => [t, [newEpochs.get(t), N + 1]])));
  }
});
