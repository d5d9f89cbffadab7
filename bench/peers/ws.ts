// The `ws` package as most Node pub/sub servers use it: a Map of topic to
// sockets, one send() per subscriber of the frame encoded once.
import { WebSocketServer, type WebSocket } from 'ws';
import { announce, deliveryFrame, parseCommand, portArg, reply } from './protocol';

const topics = new Map<string, Set<WebSocket>>();
const seqs = new Map<string, number>();
const wss = new WebSocketServer({ host: '127.0.0.1', port: portArg(), path: '/v1/ws', perMessageDeflate: false, maxPayload: 2 * (65536 + 1024) });

wss.on('connection', (ws) => {
  const mine = new Set<string>();
  ws.on('message', (data: Buffer, isBinary: boolean) => {
    if (!isBinary) return;
    const cmd = parseCommand(data);
    if (!cmd) return;
    if (cmd.op === 'sub' && Array.isArray(cmd.topics)) {
      for (const t of cmd.topics) {
        let set = topics.get(t);
        if (!set) topics.set(t, (set = new Set()));
        set.add(ws);
        mine.add(t);
      }
      ws.send(reply({ id: cmd.id, ok: true }));
    } else if (cmd.op === 'pub' && typeof cmd.topic === 'string') {
      const set = topics.get(cmd.topic);
      const seq = (seqs.get(cmd.topic) ?? 0) + 1;
      seqs.set(cmd.topic, seq);
      if (!set) return;
      const frame = deliveryFrame(cmd.topic, seq, cmd.ts ?? Date.now() * 1000, cmd.data);
      for (const s of set) s.send(frame);
    }
  });
  ws.on('close', () => {
    for (const t of mine) {
      const set = topics.get(t);
      set?.delete(ws);
      if (set && set.size === 0) topics.delete(t);
    }
  });
});

wss.on('listening', () => announce('ws', (wss.address() as { port: number }).port));
process.on('SIGTERM', () => process.exit(0));
