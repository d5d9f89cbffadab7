// A child process of bench/floods: one kind of flood, bounded in count and
// time, against loopback only. Reports its figures as one JSON line on stdout.
//
//   connections <port> <count> <sourceAddress> <seconds>: opens `count` TCP
//     connections from sourceAddress, each sending a WebSocket upgrade, and
//     holds them; counts 101 answers, other answers and failed connects.
//   publish <url> <seconds> [reconnect]: one msgpack session publishing as
//     fast as its socket takes it (with reconnect: a new one each time it is
//     closed), as an abusive client would,
//     to a topic that another session of this process subscribes to.
import net from 'node:net';
import WebSocket from 'ws';
import { packr } from '../protocol/codec';

const [mode, ...rest] = process.argv.slice(2);

function report(figures: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(figures)}\n`);
}

const UPGRADE = 'GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n';

async function connections(port: number, count: number, localAddress: string, seconds: number): Promise<void> {
  if (!/^127\./.test(localAddress)) throw new Error('loopback source addresses only');
  const sockets: net.Socket[] = [];
  const f = { opened: 0, upgraded: 0, refused: 0, failed: 0, closedByServer: 0 };
  const deadline = Date.now() + seconds * 1000;
  // At most 256 connects in flight: a flood, but one the loopback stack takes.
  let next = 0;
  await new Promise<void>((resolve) => {
    let inFlight = 0;
    const pump = (): void => {
      while (inFlight < 256 && next < count && Date.now() < deadline) {
        next++;
        inFlight++;
        const s = net.connect({ port, host: '127.0.0.1', localAddress });
        sockets.push(s);
        let settled = false;
        const done = (): void => {
          if (settled) return;
          settled = true;
          inFlight--;
          if (next >= count && inFlight === 0) resolve();
          else pump();
        };
        s.on('connect', () => {
          f.opened++;
          s.write(UPGRADE);
        });
        s.once('data', (d) => {
          if (d.toString('latin1', 0, 12) === 'HTTP/1.1 101') f.upgraded++;
          else f.refused++;
          done();
        });
        s.on('error', () => {
          f.failed++;
          done();
        });
        s.on('close', () => {
          if (settled) f.closedByServer++;
          done();
        });
      }
      if (next >= count && inFlight === 0) resolve();
    };
    pump();
    setTimeout(resolve, Math.max(0, deadline - Date.now()));
  });
  report({ phase: 'connected', ...f });
  await new Promise((r) => setTimeout(r, Math.max(0, deadline - Date.now())));
  for (const s of sockets) s.destroy();
  report({ phase: 'done', ...f });
}

async function publish(url: string, seconds: number, reconnect: boolean): Promise<void> {
  if (!/^ws:\/\/127\./.test(url)) throw new Error('loopback only');
  const f = { sent: 0, sessions: 0, rateLimited: 0, delivered: 0, closes: {} as Record<string, number> };
  const deadline = Date.now() + seconds * 1000;
  // A subscriber of the flooded topic, so that every publish taken costs a delivery, as in a real node.
  const sink = new WebSocket(`${url}?encoding=msgpack`);
  await new Promise<void>((resolve, reject) => {
    sink.once('error', reject);
    sink.once('open', () => {
      sink.send(packr.pack({ id: 's', op: 'sub', topics: ['/flood/x'] }), { binary: true });
      sink.once('message', () => resolve());
    });
  });
  sink.on('message', () => f.delivered++);
  const frame = packr.pack({ id: 1, op: 'pub', topic: '/flood/x', data: 'y'.repeat(64) });
  while (Date.now() < deadline && (reconnect || f.sessions === 0)) {
    const ws = new WebSocket(`${url}?encoding=msgpack`);
    f.sessions++;
    await new Promise<void>((resolve) => {
      ws.on('message', (d: Buffer) => {
        if (d.includes('RATE_LIMITED')) f.rateLimited++;
      });
      ws.on('close', (code) => {
        f.closes[code] = (f.closes[code] ?? 0) + 1;
        resolve();
      });
      ws.on('error', () => resolve());
      ws.on('open', () => {
        const blast = (): void => {
          if (ws.readyState !== WebSocket.OPEN) return;
          if (Date.now() >= deadline) {
            ws.close();
            return;
          }
          // As fast as the socket takes it: up to 1 MiB unsent, then the next turn.
          for (let i = 0; i < 512 && ws.bufferedAmount < 1 << 20; i++) {
            ws.send(frame, { binary: true });
            f.sent++;
          }
          setImmediate(blast);
        };
        blast();
      });
    });
  }
  sink.close();
  report(f);
}

if (mode === 'connections') void connections(Number(rest[0]), Number(rest[1]), rest[2], Number(rest[3])).then(() => process.exit(0));
else if (mode === 'publish') void publish(rest[0], Number(rest[1]), rest[2] === 'reconnect').then(() => process.exit(0));
else {
  process.stderr.write('usage: flood-worker connections <port> <count> <sourceAddress> <seconds> | publish <url> <seconds> [reconnect]\n');
  process.exit(2);
}
