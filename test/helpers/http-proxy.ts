// A small HTTP proxy on loopback that forwards plain requests (streaming
// responses included) to a server and refuses WebSocket upgrades, as some
// corporate proxies do; it can drop every response in flight (a network cut
// of the SSE streams).
import http from 'node:http';
import type net from 'node:net';

export class UpgradeRefusingProxy {
  private readonly server: http.Server;
  private readonly inFlight = new Set<http.ServerResponse>();
  port = 0;
  /** Upgrades refused so far. */
  refusedUpgrades = 0;
  /** GET /v1/sse requests forwarded so far. */
  sseRequests = 0;
  /** The Last-Event-ID headers of those requests (a browser's EventSource sends one when it reconnects). */
  readonly lastEventIds: string[] = [];

  constructor(private readonly targetPort: number) {
    this.server = http.createServer((req, res) => {
      if ((req.url ?? '').startsWith('/v1/sse')) {
        this.sseRequests++;
        const id = req.headers['last-event-id'];
        if (typeof id === 'string') this.lastEventIds.push(id);
      }
      const upstream = http.request({ host: '127.0.0.1', port: this.targetPort, method: req.method, path: req.url, headers: req.headers }, (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      });
      upstream.on('error', () => res.destroy());
      req.pipe(upstream);
      this.inFlight.add(res);
      res.on('close', () => {
        this.inFlight.delete(res);
        upstream.destroy();
      });
    });
    this.server.on('upgrade', (_req, socket: net.Socket) => {
      this.refusedUpgrades++;
      socket.end('HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\ncontent-length: 26\r\nconnection: close\r\n\r\nwebsockets are not allowed');
    });
  }

  async listen(): Promise<number> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as net.AddressInfo).port;
    return this.port;
  }

  /** Cuts every response in flight (the SSE streams among them). */
  dropAll(): number {
    const n = this.inFlight.size;
    for (const res of this.inFlight) res.destroy();
    return n;
  }

  close(): Promise<void> {
    this.dropAll();
    this.server.closeAllConnections();
    return new Promise((r) => this.server.close(() => r()));
  }
}
