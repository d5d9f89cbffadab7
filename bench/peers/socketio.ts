// socket.io with rooms as topics, WebSocket transport only. The mapping of
// our protocol: the client emits "sub" with a list of topics (answered by a
// "subok" event) and "pub" with (topic, ts, data); subscribers get a "m"
// event whose one binary argument is our delivery frame, so that benchsub
// reads the timestamp out of it as from c10m.
import { createServer } from 'node:http';
import { Server } from 'socket.io';
import { announce, deliveryFrame, portArg } from './protocol';

const httpServer = createServer();
const io = new Server(httpServer, { transports: ['websocket'], perMessageDeflate: false, httpCompression: false, serveClient: false, maxHttpBufferSize: 2 * (65536 + 1024) });
const seqs = new Map<string, number>();

io.on('connection', (socket) => {
  socket.on('sub', (topics: unknown) => {
    if (Array.isArray(topics)) for (const t of topics) if (typeof t === 'string') socket.join(t);
    socket.emit('subok');
  });
  socket.on('pub', (topic: unknown, ts: unknown, data: unknown) => {
    if (typeof topic !== 'string') return;
    const seq = (seqs.get(topic) ?? 0) + 1;
    seqs.set(topic, seq);
    io.to(topic).emit('m', deliveryFrame(topic, seq, typeof ts === 'number' ? ts : Date.now() * 1000, data));
  });
});

httpServer.listen(portArg(), '127.0.0.1', () => announce('socketio', (httpServer.address() as { port: number }).port));
process.on('SIGTERM', () => process.exit(0));
