// One process of real SDK clients (sdk/client.ts) for `bench run million`
// (bench/scenarios/million.ts), driven over IPC by SdkSample
// (bench/sdk-sample.ts): `clients` sessions, each subscribed to one of
// `topics` sample topics, and one SDK publisher that numbers its messages per
// topic ({ n: 1, 2, ... }). The SDK resumes each topic from its position after
// a reconnect; this process checks that every client received every acked
// message of its topic, in order, or was told of a gap.
import WebSocket from 'ws';
import { connect, type C10mClient } from '../sdk';
import type { WebSocketConstructor } from '../sdk/transport';
import type { SampleFigures, SampleReport, SampleRequest, SampleWorkerConfig } from './sdk-sample';

let config: SampleWorkerConfig | null = null;
const clients: C10mClient[] = [];
/** Per client: the n of each message of its topic, in arrival order. */
const received: number[][] = [];
let publisher: C10mClient | null = null;
/** Per topic: the n acked by the server (an unacked publish may or may not have been stored). */
const acked: Set<number>[] = [];
let unacked = 0;
let inflight = 0;
let publishing = false;
let loop: Promise<void> | null = null;
let gaps = 0;

function send(m: SampleReport): void {
  process.send?.(m);
}

function wsFrom(address: string): WebSocketConstructor {
  class From extends WebSocket {
    constructor(url: string, protocols?: string | string[]) {
      super(url, protocols, { localAddress: address });
    }
  }
  return From as unknown as WebSocketConstructor;
}

const topicOf = (c: SampleWorkerConfig, i: number) => `${c.topicPrefix}${i % c.topics}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function start(c: SampleWorkerConfig): Promise<void> {
  config = c;
  const ready: Promise<unknown>[] = [];
  for (let i = 0; i < c.clients; i++) {
    const client = connect(c.url, { encoding: 'msgpack', WebSocket: wsFrom(c.addresses[i % c.addresses.length]), connectTimeoutMs: 30_000 });
    client.on('gap', () => gaps++);
    client.on('error', () => undefined);
    const got: number[] = [];
    received.push(got);
    clients.push(client);
    ready.push(client.subscribe(topicOf(c, i), (m) => got.push((m.data as { n: number }).n)).ready);
  }
  for (let t = 0; t < c.topics; t++) acked.push(new Set());
  publisher = connect(c.url, { encoding: 'msgpack', WebSocket: wsFrom(c.addresses[0]), connectTimeoutMs: 30_000, maxQueuedPublishes: 100_000 });
  publisher.on('error', () => undefined);
  const deadline = Date.now() + c.readyTimeoutMs;
  await Promise.race([Promise.all(ready), sleep(c.readyTimeoutMs).then(() => Promise.reject(new Error(`the sample clients were not all subscribed within ${c.readyTimeoutMs} ms`)))]);
  await Promise.race([publisher.ready(), sleep(Math.max(1, deadline - Date.now())).then(() => Promise.reject(new Error('the sample publisher did not connect')))]);
  send({ type: 'ready' });
}

/** One message per topic every periodMs, each awaited for its ack (or its failure), until stopped or maxRounds. */
async function publishLoop(c: SampleWorkerConfig, pub: C10mClient): Promise<void> {
  const next = new Array<number>(c.topics).fill(0);
  for (let round = 0; publishing && round < c.maxRounds; round++) {
    const at = Date.now();
    for (let t = 0; t < c.topics; t++) {
      const n = ++next[t];
      inflight++;
      pub.publish(`${c.topicPrefix}${t}`, { n }).then(
        () => {
          inflight--;
          acked[t].add(n);
        },
        () => {
          inflight--;
          unacked++;
        },
      );
    }
    await sleep(Math.max(0, c.periodMs - (Date.now() - at)));
  }
}

function report(settled: boolean): SampleFigures {
  const c = config as SampleWorkerConfig;
  let missing = 0;
  let outOfOrder = 0;
  let repeated = 0;
  let clientsComplete = 0;
  let reconnected = 0;
  let delivered = 0;
  let firstProblem: string | null = null;
  clients.forEach((client, i) => {
    const got = received[i];
    delivered += got.length;
    if (client.stats.connections > 1) reconnected++;
    const seen = new Set<number>();
    let last = 0;
    for (const n of got) {
      if (seen.has(n)) repeated++;
      else if (n < last) outOfOrder++;
      seen.add(n);
      last = Math.max(last, n);
    }
    let mine = 0;
    for (const n of acked[i % c.topics]) if (!seen.has(n)) mine++;
    missing += mine;
    if (mine === 0) clientsComplete++;
    else firstProblem ??= `client ${i} (${topicOf(c, i)}) lacks ${mine} acked messages`;
  });
  const ackedTotal = acked.reduce((n, s) => n + s.size, 0);
  return {
    settled,
    clients: clients.length,
    topics: c.topics,
    published: ackedTotal + unacked,
    acked: ackedTotal,
    unacked,
    delivered,
    missing,
    outOfOrder,
    repeated,
    gaps,
    duplicatesDropped: clients.reduce((n, cl) => n + cl.stats.duplicates, 0),
    reconnected,
    clientsComplete,
    firstProblem,
  };
}

async function stop(timeoutMs: number): Promise<void> {
  publishing = false;
  await loop;
  // Wait for the publishes in flight (acked or failed), then for every client to have every acked message.
  const deadline = Date.now() + timeoutMs;
  const c = config as SampleWorkerConfig;
  const owed = () => clients.reduce((n, _, i) => n + acked[i % c.topics].size, 0);
  let settled = false;
  while (Date.now() < deadline) {
    const r = report(false);
    if (inflight === 0 && r.missing === 0 && received.reduce((n, g) => n + g.length, 0) >= owed()) {
      settled = true;
      break;
    }
    await sleep(200);
  }
  send({ type: 'report', ...report(settled) });
}

process.on('message', (m: SampleRequest) => {
  if (m.type === 'start') {
    start(m.config).catch((err: Error) => send({ type: 'error', message: err.message }));
  } else if (m.type === 'go') {
    if (!config || !publisher || publishing) return;
    publishing = true;
    loop = publishLoop(config, publisher);
  } else if (m.type === 'status') {
    send({ type: 'status', ...report(false) });
  } else if (m.type === 'stop') {
    stop(m.timeoutMs).catch((err: Error) => send({ type: 'error', message: err.message }));
  }
});

process.on('disconnect', () => {
  for (const c of clients) void c.close();
  void publisher?.close();
  process.exit(0);
});
