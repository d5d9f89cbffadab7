// Both benchsub engines (the native epoll client and the JS fallback on
// `ws`) against a real c10m server: they connect from several loopback
// source addresses, subscribe, answer the server, and count exactly the
// messages published, per session, with a latency for each.
import WebSocket from 'ws';
import { HistogramKind, createSubscriberClient, type SubscriberClient } from '../bench/loadgen';
import { packr } from '../protocol/codec';
import { mintToken } from '../bench/tokens';
import { startServer, type TestServer } from './helpers/server';

jest.setTimeout(60_000);

let server: TestServer;
beforeAll(async () => {
  server = await startServer(['--workgroups', '1']);
});
afterAll(async () => {
  await server.stop();
});

async function until(pred: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function publish(port: number, messages: { topic: string; ts: number }[]): Promise<void> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/ws?encoding=msgpack`);
  await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
  const acks = new Promise<void>((resolve) => {
    let n = 0;
    ws.on('message', () => {
      if (++n === messages.length) resolve();
    });
  });
  messages.forEach((m, i) => ws.send(packr.pack({ id: i + 1, op: 'pub', topic: m.topic, data: Buffer.alloc(512, 1), ack: true, ts: m.ts })));
  await acks;
  ws.close();
}

function sum(pairs: Float64Array): number {
  let n = 0;
  for (let i = 1; i < pairs.length; i += 2) n += pairs[i];
  return n;
}

describe.each(['native', 'js'] as const)('%s engine', (engine) => {
  const SESSIONS = 30;
  const prefix = `/lg/${engine}`;
  let client: SubscriberClient;

  afterEach(() => client?.stop());

  test('connects from several source addresses, subscribes and counts every delivery per session', async () => {
    client = createSubscriberClient(
      {
        url: server.url('/v1/ws?encoding=msgpack'),
        connections: SESSIONS,
        sourceAddresses: ['127.0.3.1', '127.0.3.2', '127.0.3.3'],
        // Session i takes topics i and (i + 1) % SESSIONS.
        commands: (i) => [{ opcode: 2, payload: packr.pack({ id: 1, op: 'sub', topics: [`${prefix}/${i}`, `${prefix}/${(i + 1) % SESSIONS}`] }) }],
        expectedReplies: 1,
        maxPending: 8,
      },
      engine,
    );
    expect(client.engine).toBe(engine);
    client.start();
    await until(() => client.stats().ready === SESSIONS, 15000, 'every session ready');
    const ready = client.stats();
    expect(ready).toMatchObject({ connected: SESSIONS, failed: 0, replies: SESSIONS, errorReplies: 0 });
    expect(sum(client.takeHistogram(HistogramKind.CONNECT))).toBe(SESSIONS);
    expect(sum(client.takeHistogram(HistogramKind.READY))).toBe(SESSIONS);
    // Topic t gets t + 1 messages, so session i is owed (i + 1) + ((i + 1) % SESSIONS + 1).
    const messages: { topic: string; ts: number }[] = [];
    const now = Date.now() * 1000;
    for (let t = 0; t < SESSIONS; t++) for (let k = 0; k <= t; k++) messages.push({ topic: `${prefix}/${t}`, ts: now });
    await publish(server.port, messages);
    const owed = Array.from({ length: SESSIONS }, (_, i) => i + 1 + ((i + 1) % SESSIONS) + 1);
    const total = owed.reduce((a, b) => a + b, 0);
    await until(() => client.stats().messages >= total, 15000, `${total} deliveries`);
    await new Promise((r) => setTimeout(r, 200));
    const s = client.stats();
    expect(s).toMatchObject({ messages: total, protocolErrors: 0, closed: 0, otherMessages: 0 });
    expect(Array.from(client.connectionCounts())).toEqual(owed);
    const latency = client.takeHistogram(HistogramKind.LATENCY);
    expect(sum(latency)).toBe(total);
    // Every message was stamped before it was sent: no latency is negative, none above a minute.
    for (let i = 0; i < latency.length; i += 2) expect(latency[i]).toBeLessThan(60_000_000);
    expect(s.clockSkew).toBe(0);
    // The histogram was taken: the next take is empty.
    expect(client.takeHistogram(HistogramKind.LATENCY).length).toBe(0);
  });

  test('counts a refused subscribe as an error reply, and a refused connection as failed', async () => {
    client = createSubscriberClient(
      {
        url: server.url('/v1/ws?encoding=msgpack'),
        connections: 2,
        sourceAddresses: ['127.0.3.4'],
        commands: () => [{ opcode: 2, payload: packr.pack({ id: 7, op: 'sub', topics: ['no-leading-slash'] }) }],
        expectedReplies: 1,
      },
      engine,
    );
    client.start();
    await until(() => client.stats().ready === 2, 10000, 'replies');
    expect(client.stats()).toMatchObject({ replies: 2, errorReplies: 2, failed: 0 });
    client.stop();
    client = createSubscriberClient({ url: server.url('/v1/ws?encoding=bogus'), connections: 3, sourceAddresses: ['127.0.3.4'], commands: () => [] }, engine);
    client.start();
    await until(() => client.stats().failed === 3, 10000, 'three failures');
    expect(client.stats()).toMatchObject({ connected: 0, failed: 3 });
    expect(client.stats().firstError).toEqual(expect.any(String));
  });
});

describe('native engine: per-session queries and reconnect against a node with --auth jwt and --admission-rate', () => {
  const SESSIONS = 60;
  const RATE = 20;
  const secret = 'loadgen-test-secret-of-at-least-32-chars';
  let node: TestServer;
  let client: SubscriberClient | null = null;
  beforeAll(async () => {
    node = await startServer(['--workgroups', '1', '--auth', 'jwt', '--admission-rate', String(RATE)], { C10M_JWT_SECRET: secret });
  });
  afterAll(async () => {
    client?.stop();
    await node.stop();
  });

  test('each session presents its own token; refused upgrades wait their retryAfterMs and come back with their ticket', async () => {
    const tokens: string[] = [];
    for (let i = 0; i < SESSIONS; i++) tokens.push(await mintToken(secret, { sub: `u${i}`, subscribe: ['/lq/{sub}'] }));
    client = createSubscriberClient({
      url: node.url('/v1/ws?encoding=msgpack'),
      connections: SESSIONS,
      sourceAddresses: ['127.0.3.5', '127.0.3.6'],
      // Each session's token allows its own topic only: a session that presented another's would get FORBIDDEN.
      commands: (i) => [{ opcode: 2, payload: packr.pack({ id: 1, op: 'sub', topics: [`/lq/u${i}`] }) }],
      expectedReplies: 1,
      query: (i) => `&token=${tokens[i]}`,
      reconnect: true,
    });
    client.start();
    await until(() => client?.stats().live === SESSIONS, 30000, 'every session live');
    const s = client.stats();
    // 60 sessions at 20/s: most are refused at first and admitted on their ticket, none refused twice, none failed.
    expect(s).toMatchObject({ live: SESSIONS, ready: SESSIONS, connected: SESSIONS, failed: 0, errorReplies: 0, refused429: 0, refusedOther: 0, ticketRefusals: 0 });
    expect(s.refused503).toBeGreaterThanOrEqual(SESSIONS - 2 * RATE);
    expect(s.hinted).toBe(s.refused503);
    expect(s.ticketsSent).toBe(s.refused503);
    expect(s.allLiveAtMs).toBeGreaterThan(Date.now() - 30000);
    // No wall-clock second admitted much more than the rate (a second's unclaimed places pass to the next).
    const rows = client.secondCounts();
    let upgrades = 0;
    for (let k = 0; k < rows.length; k += 3) {
      upgrades += rows[k + 1];
      expect(rows[k + 1]).toBeLessThanOrEqual(2 * RATE);
    }
    expect(upgrades).toBe(SESSIONS);
  });

  test("with ping, each session pings when it gets ready and reads the node's reconnectWindowMs (sessions / rate)", async () => {
    const extra = 10;
    const tokens: string[] = [];
    for (let i = 0; i < extra; i++) tokens.push(await mintToken(secret, { sub: `p${i}`, subscribe: ['/lq/{sub}'] }));
    const pinging = createSubscriberClient({
      url: node.url('/v1/ws?encoding=msgpack'),
      connections: extra,
      sourceAddresses: ['127.0.3.7'],
      commands: (i) => [{ opcode: 2, payload: packr.pack({ id: 1, op: 'sub', topics: [`/lq/p${i}`] }) }],
      expectedReplies: 1,
      query: (i) => `&token=${tokens[i]}`,
      reconnect: true,
      ping: { intervalMs: 60_000, frame: { opcode: 2, payload: packr.pack({ id: 2, op: 'ping' }) } },
    });
    pinging.start();
    try {
      await until(() => pinging.stats().windowReplies >= extra, 30000, 'a ping reply with reconnectWindowMs for every session');
      const s = pinging.stats();
      expect(s).toMatchObject({ live: extra, failed: 0, windowReplies: extra, otherMessages: 0 });
      expect(s.pingsSent).toBeGreaterThanOrEqual(extra);
      // The node holds the first test's 60 sessions and these 10 at 20 a second: 1.25 x 70 / 20 s, once the last is in.
      expect(s.maxWindowMs).toBe(Math.ceil((1.25 * (SESSIONS + extra) * 1000) / RATE));
    } finally {
      pinging.stop();
    }
  });
});
