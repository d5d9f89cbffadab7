// A model check of wildcard resume on a real node of two workgroups: random
// publishes on random topics (some under the pattern, one not), random
// disconnects (some in the middle of a burst) and resumes (some with
// publishes racing them), then a final resume. The oracle is the publisher's
// acks: per matching topic, the client must have received every message
// once, in per-topic order, across all its sessions; with a small cache,
// a message may be missing only where the resume reported a gap for that
// topic. Nothing of a topic outside the pattern may arrive.
import fc from 'fast-check';
import { connect, type TestClient } from './helpers/client';
import { startServer, type TestServer } from './helpers/server';

/** What the runs exercised (checked at the end: a model that never resumed anything proves nothing). */
const exercised = { replayed: 0, unseenRecovered: 0, gaps: 0, deliveries: 0, workgroups: new Set<number>() };

type Cmd =
  | { kind: 'pub'; topic: number; count: number }
  | { kind: 'burstThenDrop'; topic: number; count: number }
  | { kind: 'drop' }
  | { kind: 'resume' }
  | { kind: 'resumeRacing'; topic: number; count: number };

const TOPICS = 4; // 0..2 under the pattern, 3 not (one segment deeper)
const cmdArb: fc.Arbitrary<Cmd> = fc.oneof(
  fc.record({ kind: fc.constant('pub' as const), topic: fc.nat(TOPICS - 1), count: fc.integer({ min: 1, max: 6 }) }),
  fc.record({ kind: fc.constant('burstThenDrop' as const), topic: fc.nat(TOPICS - 1), count: fc.integer({ min: 1, max: 8 }) }),
  fc.constant({ kind: 'drop' as const }),
  fc.constant({ kind: 'resume' as const }),
  fc.record({ kind: fc.constant('resumeRacing' as const), topic: fc.nat(TOPICS - 1), count: fc.integer({ min: 1, max: 8 }) }),
);

/** The client side of the model: what an SDK keeps for one pattern across sessions. */
class PatternClient {
  c: TestClient | null = null;
  horizon: number[] | null = null;
  readonly positions = new Map<string, [number, number]>();
  /** Every delivery of every session, in arrival order. */
  readonly seqs = new Map<string, number[]>();
  readonly gaps = new Set<string>();
  readonly problems: string[] = [];
  private read = 0;
  /** Deliveries the session had when the sub reply arrived (what came before it). */
  private beforeReply = -1;

  constructor(
    private readonly url: string,
    private readonly pattern: string,
    private readonly encoding: 'json' | 'msgpack',
  ) {}

  /** Takes the deliveries that arrived since the last call, checking each against the last position. */
  absorb(upTo = Infinity): void {
    const c = this.c;
    if (c === null) return;
    for (; this.read < Math.min(upTo, c.deliveries.length); this.read++) {
      const d = c.deliveries[this.read];
      const pos = this.positions.get(d.topic);
      if (pos !== undefined && pos[0] === d.epoch && d.seq <= pos[1]) this.problems.push(`${d.topic}: seq ${d.seq} again or out of order after ${pos[1]}`);
      this.positions.set(d.topic, [d.epoch, d.seq]);
      let list = this.seqs.get(d.topic);
      if (list === undefined) this.seqs.set(d.topic, (list = []));
      list.push(d.seq);
    }
  }

  /** Sends the sub (a resume when there is a horizon); the reply is awaited by settle(). */
  start(): Promise<void> {
    return connect(this.url, this.encoding).then((c) => {
      this.c = c;
      this.read = 0;
      this.beforeReply = -1;
      // After the client's own listener: the reply is in c.replies, the deliveries before it in c.deliveries.
      c.ws.on('message', () => {
        if (this.beforeReply < 0 && c.replies.has('sub')) this.beforeReply = c.deliveries.length;
      });
      const resume = this.horizon === null ? undefined : { [this.pattern]: { horizon: this.horizon, topics: Object.fromEntries(this.positions) } };
      c.send({ id: 'sub', op: 'sub', topics: [this.pattern], ...(resume ? { resume } : {}) });
      // Which workgroup took the session (--benchmark-mode spreads them): a resume may land on the other one.
      c.send({ id: 'ping', op: 'ping' });
    });
  }

  async settle(): Promise<void> {
    const c = this.c as TestClient;
    const knownBefore = new Set(this.positions.keys());
    await c.until(() => c.replies.has('sub'), 10_000, 'the sub reply');
    const r = c.replies.get('sub') as Record<string, unknown>;
    await c.until(() => c.replies.has('ping'), 10_000, 'the ping reply');
    exercised.workgroups.add(c.replies.get('ping')?.wg as number);
    if (r.ok !== true) throw new Error(`sub failed: ${JSON.stringify(r)}`);
    const entry = (r.topics as Record<string, Record<string, unknown>>)[this.pattern];
    if (entry.recovered === false) this.problems.push(`horizon lost: ${JSON.stringify(entry)}`);
    this.absorb(this.beforeReply);
    for (const [t, e] of Object.entries((entry.topics ?? {}) as Record<string, Record<string, unknown>>)) {
      exercised.replayed += (e.replayed as number | undefined) ?? 0;
      if (e.recovered === true && (e.replayed as number) > 0 && !knownBefore.has(t)) exercised.unseenRecovered++;
      if (e.recovered !== false) continue;
      exercised.gaps++;
      // A reported gap: the topic is live from the reply's position (what the SDK keeps too).
      this.gaps.add(t);
      this.positions.set(t, [e.epoch as number, e.seq as number]);
    }
    this.horizon = entry.horizon as number[];
    this.absorb();
  }

  async drop(): Promise<void> {
    const c = this.c;
    if (c === null) return;
    this.absorb();
    await c.close();
    this.absorb();
    this.c = null;
  }
}

async function runModel(server: TestServer, cmds: Cmd[], run: number, encoding: 'json' | 'msgpack', allowGaps: boolean): Promise<void> {
  const prefix = `/mc${run}x${Math.floor(Math.random() * 1e9)}`;
  const topics = [`${prefix}/a`, `${prefix}/b`, `${prefix}/c`, `${prefix}/d/e`];
  const pattern = `${prefix}/*`;
  const acked = new Map<string, number>();
  const pub = await connect(server.url());
  const publish = async (topic: string, count: number): Promise<void> => {
    const replies = await Promise.all(Array.from({ length: count }, (_, i) => pub.pub(topic, { i })));
    for (const r of replies) {
      if (r.ok !== true) throw new Error(`publish failed: ${JSON.stringify(r)}`);
      acked.set(topic, Math.max(acked.get(topic) ?? 0, r.seq as number));
    }
  };
  const client = new PatternClient(server.url(), pattern, encoding);
  await client.start();
  await client.settle();
  try {
    for (const cmd of cmds) {
      switch (cmd.kind) {
        case 'pub':
          await publish(topics[cmd.topic], cmd.count);
          client.absorb();
          break;
        case 'burstThenDrop': {
          const burst = publish(topics[cmd.topic], cmd.count);
          await client.drop();
          await burst;
          break;
        }
        case 'drop':
          await client.drop();
          break;
        case 'resume':
          if (client.c !== null) await client.drop();
          await client.start();
          await client.settle();
          break;
        case 'resumeRacing': {
          if (client.c !== null) await client.drop();
          const started = client.start();
          const racing = publish(topics[cmd.topic], cmd.count);
          await started;
          await Promise.all([client.settle(), racing]);
          break;
        }
      }
    }
    if (client.c === null) {
      await client.start();
      await client.settle();
    }
    // Quiet: everything acked under the pattern has arrived.
    const c = client.c as TestClient;
    const matching = topics.slice(0, 3);
    await c.until(
      () => {
        client.absorb();
        return matching.every((t) => (acked.get(t) ?? 0) === 0 || client.positions.get(t)?.[1] === acked.get(t));
      },
      10_000,
      'every acked message',
    );
    expect(client.problems).toEqual([]);
    for (const list of client.seqs.values()) exercised.deliveries += list.length;
    expect(client.seqs.get(topics[3])).toBeUndefined();
    for (const t of matching) {
      const got = client.seqs.get(t) ?? [];
      const n = acked.get(t) ?? 0;
      if (allowGaps && client.gaps.has(t)) {
        for (let i = 1; i < got.length; i++) expect(got[i]).toBeGreaterThan(got[i - 1]);
        // What the gap skipped is stated; the topic is live from the reply's position, which reached the last ack.
        expect(client.positions.get(t)?.[1]).toBe(n);
      } else {
        expect({ topic: t, seqs: got }).toEqual({ topic: t, seqs: Array.from({ length: n }, (_, i) => i + 1) });
      }
    }
  } finally {
    await client.drop();
    await pub.close();
  }
}

describe('wildcard resume, model-checked on a real node', () => {
  let server: TestServer;
  let small: TestServer;
  beforeAll(async () => {
    [server, small] = await Promise.all([startServer(['--workgroups', '2', '--benchmark-mode']), startServer(['--workgroups', '2', '--benchmark-mode', '--cache-messages', '3'])]);
  });
  afterAll(async () => {
    await Promise.all([server.stop(), small.stop()]);
    process.stderr.write(`wildcard model: ${JSON.stringify({ ...exercised, workgroups: [...exercised.workgroups] })}\n`);
  });

  test('every message of every matching topic once, in order, across disconnects and resumes', async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(cmdArb, { minLength: 1, maxLength: 20 }), fc.constantFrom('json' as const, 'msgpack' as const), async (cmds, encoding) => {
        await runModel(server, cmds, run++, encoding, false);
      }),
      { numRuns: 100 },
    );
    // Resumes replayed messages, some of topics the client had never seen.
    expect(exercised.replayed).toBeGreaterThan(0);
    expect(exercised.unseenRecovered).toBeGreaterThan(0);
    expect([...exercised.workgroups].sort()).toEqual([0, 1]);
  }, 120_000);

  test('with a 3-message cache, a message is missing only where the resume reported a gap for its topic', async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(cmdArb, { minLength: 1, maxLength: 20 }), async (cmds) => {
        await runModel(small, cmds, run++, 'json', true);
      }),
      { numRuns: 60 },
    );
    expect(exercised.gaps).toBeGreaterThan(0);
  }, 120_000);
});
