// The ceiling: raw uWebSockets.js pub/sub with the least code that speaks
// the benchmark's part of our protocol. Same uWS settings as a c10m
// workgroup (backpressure limit, idle timeout, automatic pings).
import { loadUws, type us_listen_socket } from '../../native-io/uws';
import { announce, deliveryFrame, parseCommand, portArg, reply } from './protocol';

const { uws } = loadUws(false);
const app = uws.App();
const seqs = new Map<string, number>();

app.ws('/v1/ws', {
  maxPayloadLength: 2 * (65536 + 1024),
  maxBackpressure: 262144,
  closeOnBackpressureLimit: 1 as unknown as number,
  idleTimeout: 120,
  sendPingsAutomatically: true,
  message: (ws, message, isBinary) => {
    if (!isBinary) return;
    const cmd = parseCommand(new Uint8Array(message));
    if (!cmd) return;
    if (cmd.op === 'sub' && Array.isArray(cmd.topics)) {
      for (const t of cmd.topics) ws.subscribe(t);
      ws.send(reply({ id: cmd.id, ok: true }), true);
    } else if (cmd.op === 'pub' && typeof cmd.topic === 'string') {
      const seq = (seqs.get(cmd.topic) ?? 0) + 1;
      seqs.set(cmd.topic, seq);
      app.publish(cmd.topic, deliveryFrame(cmd.topic, seq, cmd.ts ?? Date.now() * 1000, cmd.data), true);
    }
  },
});

let listenSocket: us_listen_socket | null = null;
app.listen('127.0.0.1', portArg(), (socket) => {
  if (!socket) {
    process.stderr.write('uws peer: could not listen\n');
    process.exit(1);
  }
  listenSocket = socket;
  announce('uws', uws.us_socket_local_port(socket as never));
});

process.on('SIGTERM', () => {
  if (listenSocket) uws.us_listen_socket_close(listenSocket);
  process.exit(0);
});
