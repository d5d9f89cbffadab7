// One benchsub process: a native (or JS) loadgen client driven over IPC by
// SubscriberFleet (bench/sub.ts). It sends its stats and histogram deltas
// every tickMs; the parent merges several such processes.
import { raiseNoFileLimit } from '../native-io';
import { HistogramKind, createSubscriberClient, type CommandFrame, type SubscriberClient } from './loadgen';
import { packr } from '../protocol/codec';
import { sessionTopics, topicName } from './addresses';
import type { SubWorkerConfig, SubWorkerReport, SubWorkerRequest } from './sub';
import { mintSessionTokens } from './tokens';

let client: SubscriberClient | null = null;
let timer: NodeJS.Timeout | null = null;

function send(m: SubWorkerReport): void {
  process.send?.(m);
}

function commandsFor(c: SubWorkerConfig): (i: number) => CommandFrame[] {
  return (i) => {
    const session = c.firstSession + i;
    const topics = sessionTopics(session, c.topicsPerSession, c.topicCount).map((n) => topicName(c.topicPattern, n));
    if (c.protocol === 'socketio') {
      return [{ opcode: 1, payload: Buffer.from(`42${JSON.stringify(['sub', topics])}`) }];
    }
    const conflate = c.conflateMs ? { conflate: c.conflateMs } : {};
    if (c.resume) {
      const resume: Record<string, [number, number]> = {};
      for (const t of topics) resume[t] = [c.resume.epoch, c.resume.seq];
      return [{ opcode: 2, payload: packr.pack({ id: 1, op: 'sub', topics, resume, ...conflate }) }];
    }
    return [{ opcode: 2, payload: packr.pack({ id: 1, op: 'sub', topics, ...conflate }) }];
  };
}

function tick(final: boolean): void {
  if (!client) return;
  send({
    type: final ? 'final' : 'tick',
    stats: client.stats(),
    latency: client.takeHistogram(HistogramKind.LATENCY),
    connect: client.takeHistogram(HistogramKind.CONNECT),
    ready: client.takeHistogram(HistogramKind.READY),
  });
}

async function start(c: SubWorkerConfig): Promise<void> {
  const tokens = c.jwtSecret ? await mintSessionTokens(c.jwtSecret, c.firstSession, c.connections) : null;
  try {
    raiseNoFileLimit();
  } catch {
    // The limit stays as it is; connections past it fail and are counted.
  }
  client = createSubscriberClient(
    {
      url: c.url,
      connections: c.connections,
      sourceAddresses: c.sourceAddresses,
      commands: commandsFor(c),
      // socket.io: connect to the namespace at once, subscribe after its open packet and connect reply.
      hello: c.protocol === 'socketio' ? '40' : '',
      waitMessages: c.protocol === 'socketio' ? 2 : 0,
      expectedReplies: 1,
      engineIoPing: c.protocol === 'socketio',
      connectRate: c.connectRate,
      maxPending: c.maxPending,
      handshakeTimeoutMs: c.handshakeTimeoutMs,
      ...(tokens ? { query: (i: number) => `&token=${tokens[i]}` } : {}),
      reconnect: c.reconnect === true,
      ...(c.reconnect === true && (c.pingIntervalMs ?? 0) > 0 ? { ping: { intervalMs: c.pingIntervalMs as number, frame: { opcode: 2, payload: packr.pack({ id: 2, op: 'ping' }) } } } : {}),
    },
    c.engine,
  );
  client.start();
  timer = setInterval(() => tick(false), c.tickMs);
  send({ type: 'started', engine: client.engine });
}

process.on('message', (m: SubWorkerRequest) => {
  try {
    if (m.type === 'start') {
      start(m.config).catch((err: Error) => send({ type: 'error', message: err.message }));
    } else if (m.type === 'seconds') {
      send({ type: 'seconds', rows: client ? client.secondCounts() : new Float64Array(0) });
    } else if (m.type === 'counts') {
      send({ type: 'counts', counts: client ? client.connectionCounts() : new Uint32Array(0) });
    } else if (m.type === 'stop') {
      if (timer) clearInterval(timer);
      tick(true);
      client?.stop();
      client = null;
      process.disconnect?.();
    }
  } catch (err) {
    send({ type: 'error', message: (err as Error).message });
  }
});

process.on('disconnect', () => {
  if (timer) clearInterval(timer);
  client?.stop();
  process.exit(0);
});
