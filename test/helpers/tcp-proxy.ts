// A TCP forwarder on loopback for tests that need to act on the network
// between a client and a server: drop every connection, freeze them
// (half-open), refuse new ones for a while, or send new ones to another port.
import net from 'node:net';

/** A TCP forwarder in front of a server, whose connections can be cut (a network drop) or frozen (a half-open connection). */
export class TcpProxy {
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();
  private readonly frozen = new WeakSet<net.Socket>();
  /** New connections are closed at once (the server behind seems down). */
  refusing = false;
  port = 0;
  /** Where new connections go (a restarted server may be on another port). */
  constructor(public targetPort: number) {
    this.server = net.createServer((inbound) => {
      if (this.refusing) return inbound.destroy();
      const outbound = net.connect(this.targetPort, '127.0.0.1');
      for (const [from, to] of [
        [inbound, outbound],
        [outbound, inbound],
      ]) {
        this.sockets.add(from);
        from.on('close', () => {
          this.sockets.delete(from);
          to.destroy();
        });
        from.on('error', () => undefined);
        from.on('data', (chunk) => {
          if (!this.frozen.has(from)) to.write(chunk);
        });
      }
    });
  }
  async listen(): Promise<number> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as net.AddressInfo).port;
    return this.port;
  }
  /** Drops every connection at once, with no WebSocket close frame. */
  cut(): void {
    for (const s of this.sockets) s.destroy();
  }
  /** From now on the current connections carry nothing either way, and stay open. */
  freeze(): void {
    for (const s of this.sockets) this.frozen.add(s);
  }
  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}
