// Binding the public and admin ports: checking that a port is free before
// the workgroups bind it, picking a free one, and saying why a bind failed.
import { createServer } from 'node:net';

/**
 * Throws a one-sentence Error unless `port` can be bound on `host` right now.
 * The probe is a plain listening socket without SO_REUSEPORT, so it fails
 * when any process listens there, even one whose sockets have SO_REUSEPORT:
 * a second c10m would otherwise join the first one's SO_REUSEPORT group and
 * say it listens while every connection still goes to the first. Call it
 * before the workgroups bind (they share the port with each other only).
 */
export function assertPortFree(host: string, port: number, what = 'port'): Promise<void> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', (err: NodeJS.ErrnoException) => reject(new Error(portErrorSentence(err, host, port, what))));
    probe.listen({ port, host, exclusive: true }, () => probe.close(() => resolve()));
  });
}

/** A bind error as one sentence a user can act on. */
export function portErrorSentence(err: NodeJS.ErrnoException, host: string, port: number, what = 'port'): string {
  switch (err.code) {
    case 'EADDRINUSE':
      return `${what} ${port} is already in use (another c10m or another program holds it)`;
    case 'EACCES':
      return `${what} ${port} needs privileges to bind (ports below 1024 need root or CAP_NET_BIND_SERVICE)`;
    case 'EADDRNOTAVAIL':
      return `cannot bind ${what} ${port} on ${host}: the address is not one of this host's`;
    default:
      return `cannot bind ${what} ${port} on ${host}: ${err.message}`;
  }
}

export function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, host, () => {
      const address = probe.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      probe.close(() => resolve(port));
    });
  });
}
