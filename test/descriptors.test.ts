// At the descriptor limit the node stops accepting for a moment instead of
// spinning on accept() (EMFILE with the listen socket still readable),
// keeps its admin port and its open sessions, says so in metrics, and
// accepts again once descriptors are free. The server runs under prlimit
// with 300 descriptors, so the test needs nothing of the host's limits.
import net from 'node:net';
import { connect } from './helpers/client';
import { startServer, type TestServer } from './helpers/server';
import { metricWhen } from './helpers/workgroups';

/** Opens a TCP connection and sends a WebSocket upgrade; resolves when the socket is connected (or failed). */
function flooder(port: number, sockets: net.Socket[]): Promise<void> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    sockets.push(s);
    s.on('error', () => resolve());
    s.on('connect', () => {
      s.write(`GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`);
      resolve();
    });
  });
}

describe('out of descriptors', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer(['--workgroups', '2', '--max-sessions', '200'], {}, ['prlimit', '--nofile=300:300', '--']);
  });
  afterAll(() => server.stop());

  test('a connection flood past the limit pauses accepting; admin, open sessions and later connections keep working', async () => {
    const before = await connect(server.url());
    expect((await before.sub(['/fd/a'])).ok).toBe(true);
    const sockets: net.Socket[] = [];
    try {
      for (let i = 0; i < 400; i += 50) await Promise.all(Array.from({ length: 50 }, () => flooder(server.port, sockets)));
      await server.waitForLog((l) => l.msg === 'out of file descriptors: not accepting connections for now', 10_000);
      // The control plane answers while the flood holds every descriptor the workgroups may take.
      const health = await fetch(server.adminUrl('/healthz'), { signal: AbortSignal.timeout(5000) });
      expect(health.status).toBeLessThan(600);
      expect(await metricWhen(server, 'c10m_accept_pauses_total', (v) => v >= 1)).toBeGreaterThanOrEqual(1);
      // A session that was already open still publishes and receives.
      expect((await before.pub('/fd/a', 'during the flood')).ok).toBe(true);
      await before.until(() => before.deliveries.some((d) => d.data === 'during the flood'), 5000, 'delivery during the flood');
    } finally {
      for (const s of sockets) s.destroy();
    }
    // Descriptors free again: accepting resumes and a new client gets in.
    const deadline = Date.now() + 15_000;
    let after = null;
    while (after === null && Date.now() < deadline) {
      after = await connect(server.url()).catch(() => null);
      if (after === null) await new Promise((r) => setTimeout(r, 250));
    }
    expect(after).not.toBeNull();
    expect((await after!.sub(['/fd/b'])).ok).toBe(true);
    expect((await before.pub('/fd/b', 'after')).ok).toBe(true);
    await after!.until(() => after!.deliveries.length === 1, 5000, 'delivery after the flood');
    await server.waitForLog((l) => l.msg === 'descriptors free again: accepting connections', 10_000);
    expect(await metricWhen(server, 'c10m_accepting_paused', (v) => v === 0)).toBe(0);
    expect(server.proc.exitCode).toBeNull();
    await before.close();
    await after!.close();
  }, 60_000);
});
